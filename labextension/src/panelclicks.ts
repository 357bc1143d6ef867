/**
 * Clicks on the cell panel's action buttons, sent on the sidebar's comm in live mode.
 *
 * The panel is an ipywidgets view: a widget's click message goes on the widget's own comm,
 * which a busy kernel reads only after the cell. The kernel marks each action button with
 * DOM classes (`dm-action`, `dm-action-<action>`, `dm-run-<id>`, see
 * `dask_magic/ui/actions.py`). A capture-phase listener reads them first; when the kernel
 * that runs that run is in live mode, it sends the action on its `dask_magic` comm (which
 * travels on a subshell) and stops the event, so the widget's own click does not queue too.
 * Anywhere else the click goes on to the widget as before. A running item's Cancel item
 * button (`dm-action-cancel_item`) also names its item (`dm-item-<index>`).
 */
import type { Action } from './protocol';

/** What a click on a panel's action button asks for. */
export interface IPanelAction {
  action: 'cancel' | 'retry' | 'cancel_item';
  runId: string;
  /** The item, for `cancel_item` only. */
  index?: number;
}

const ACTIONS: ReadonlyArray<IPanelAction['action']> = ['cancel', 'retry', 'cancel_item'];

/** `7` for `dm-item-7`; `null` for any other class (an index is a plain decimal count). */
function itemIndex(name: string): number | null {
  const digits = name.startsWith('dm-item-') ? name.slice('dm-item-'.length) : '';
  return /^(0|[1-9][0-9]{0,15})$/.test(digits) ? Number(digits) : null;
}

/** The action a click on `target` (or an element inside it) asks for, or `null`. */
export function panelAction(target: EventTarget | null): IPanelAction | null {
  const element = target as Element | null;
  if (element === null || typeof element.closest !== 'function') {
    return null;
  }
  const button = element.closest('.dm-action');
  if (button === null) {
    return null;
  }
  let action: IPanelAction['action'] | null = null;
  let runId: string | null = null;
  let index: number | null = null;
  button.classList.forEach(name => {
    index = itemIndex(name) ?? index;
    const kind = name.startsWith('dm-action-') ? name.slice('dm-action-'.length) : null;
    if (kind !== null && (ACTIONS as readonly string[]).includes(kind)) {
      action = kind as IPanelAction['action'];
    }
    if (name.startsWith('dm-run-') && name.length > 'dm-run-'.length) {
      runId = name.slice('dm-run-'.length);
    }
  });
  if (action === null || runId === null) {
    return null;
  }
  if (action === 'cancel_item') {
    return index === null ? null : { action, runId, index };
  }
  return { action, runId };
}

/** The protocol's action for a panel click. */
function toAction(found: IPanelAction): Action {
  if (found.action === 'cancel_item') {
    return { action: 'cancel_item', run_id: found.runId, index: found.index ?? -1 };
  }
  return { action: found.action, run_id: found.runId };
}

/** Where a live run's actions go: `null` when no kernel in live mode runs it. */
export interface ILiveRuns {
  liveRunsOf(runId: string): { send(action: Action): void } | null;
}

/**
 * Listen for clicks on panel buttons in `root` (capture phase); returns a function that
 * stops listening.
 */
export function installPanelClicks(root: Document | HTMLElement, runs: ILiveRuns): () => void {
  const listener = (event: Event): void => {
    const found = panelAction(event.target);
    if (found === null) {
      return;
    }
    const target = runs.liveRunsOf(found.runId);
    if (target === null) {
      return; // not live: the widget's own click does what it always did
    }
    event.stopPropagation();
    event.preventDefault();
    target.send(toAction(found));
  };
  root.addEventListener('click', listener, true);
  return () => root.removeEventListener('click', listener, true);
}

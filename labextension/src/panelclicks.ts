/**
 * Clicks on the cell panel's action buttons, sent on the sidebar's comm in live mode.
 *
 * The panel is an ipywidgets view: a widget's click message goes on the widget's own comm,
 * which a busy kernel reads only after the cell. The kernel marks each action button with
 * DOM classes (`dm-action`, `dm-action-<action>`, `dm-run-<id>`, see
 * `dask_magic/ui/actions.py`). A capture-phase listener reads them first; when the kernel
 * that runs that run is in live mode, it sends the action on its `dask_magic` comm (which
 * travels on a subshell) and stops the event, so the widget's own click does not queue too.
 * Anywhere else the click goes on to the widget as before.
 */
import type { Action } from './protocol';

/** What a click on a panel's action button asks for. */
export interface IPanelAction {
  action: 'cancel' | 'retry';
  runId: string;
}

const ACTIONS: ReadonlyArray<IPanelAction['action']> = ['cancel', 'retry'];

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
  button.classList.forEach(name => {
    const kind = name.startsWith('dm-action-') ? name.slice('dm-action-'.length) : null;
    if (kind !== null && (ACTIONS as readonly string[]).includes(kind)) {
      action = kind as IPanelAction['action'];
    }
    if (name.startsWith('dm-run-') && name.length > 'dm-run-'.length) {
      runId = name.slice('dm-run-'.length);
    }
  });
  return action !== null && runId !== null ? { action, runId } : null;
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
    target.send({ action: found.action, run_id: found.runId });
  };
  root.addEventListener('click', listener, true);
  return () => root.removeEventListener('click', listener, true);
}

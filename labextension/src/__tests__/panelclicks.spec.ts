import { installPanelClicks, panelAction } from '../panelclicks';
import type { Action } from '../protocol';

/** A stand-in for a DOM element: its classes, and `closest` for `.dm-action`. */
function element(classes: string[], parent: IFakeElement | null = null): IFakeElement {
  const node: IFakeElement = {
    classList: new Set(classes),
    closest: (selector: string) => {
      const name = selector.replace(/^\./, '');
      let at: IFakeElement | null = node;
      while (at !== null && !at.classList.has(name)) {
        at = at.parent;
      }
      return at;
    },
    parent
  };
  return node;
}

interface IFakeElement {
  classList: Set<string>;
  closest(selector: string): IFakeElement | null;
  parent: IFakeElement | null;
}

const cancelButton = element(['dm-cancel', 'dm-action', 'dm-action-cancel', 'dm-run-abc123']);
const cancelItem = (index: string) =>
  element([
    'dm-cancel-item',
    'dm-action',
    'dm-action-cancel_item',
    'dm-run-abc123',
    `dm-item-${index}`
  ]);

describe('panelAction', () => {
  it('reads the action and the run from the button or an element inside it', () => {
    expect(panelAction(cancelButton as unknown as EventTarget)).toEqual({
      action: 'cancel',
      runId: 'abc123'
    });
    const icon = element(['fa', 'fa-stop'], cancelButton);
    expect(panelAction(icon as unknown as EventTarget)).toEqual({
      action: 'cancel',
      runId: 'abc123'
    });
  });

  it("reads a Cancel item button's item index, and refuses one without a valid index", () => {
    expect(panelAction(cancelItem('7') as unknown as EventTarget)).toEqual({
      action: 'cancel_item',
      runId: 'abc123',
      index: 7
    });
    expect(panelAction(cancelItem('0') as unknown as EventTarget)?.index).toBe(0);
    for (const bad of ['', '-1', '07', '1.5', 'x', '1e3']) {
      expect(panelAction(cancelItem(bad) as unknown as EventTarget)).toBeNull();
    }
    const noItem = element(['dm-action', 'dm-action-cancel_item', 'dm-run-abc123']);
    expect(panelAction(noItem as unknown as EventTarget)).toBeNull();
  });

  it('ignores other elements, unknown actions and buttons without a run', () => {
    expect(panelAction(null)).toBeNull();
    expect(panelAction(element(['dm-more']) as unknown as EventTarget)).toBeNull();
    const odd = element(['dm-action', 'dm-action-shutdown', 'dm-run-abc']);
    expect(panelAction(odd as unknown as EventTarget)).toBeNull();
    const noRun = element(['dm-action', 'dm-action-retry']);
    expect(panelAction(noRun as unknown as EventTarget)).toBeNull();
  });
});

describe('installPanelClicks', () => {
  function setUp(live: boolean) {
    const sent: Action[] = [];
    let listener: ((event: Event) => void) | null = null;
    const root = {
      addEventListener: (_type: string, fn: (event: Event) => void, capture: boolean) => {
        expect(capture).toBe(true);
        listener = fn;
      },
      removeEventListener: () => {
        listener = null;
      }
    };
    const runs = {
      liveRunsOf: (runId: string) =>
        live && runId === 'abc123' ? { send: (a: Action) => sent.push(a) } : null
    };
    const stop = installPanelClicks(root as unknown as Document, runs);
    const click = (target: IFakeElement) => {
      const event = {
        target,
        stopped: false,
        stopPropagation() {
          this.stopped = true;
        },
        preventDefault: () => undefined
      };
      listener?.(event as unknown as Event);
      return event.stopped;
    };
    return { sent, click, stop, hasListener: () => listener !== null };
  }

  it('sends the action on the kernel comm and stops the widget click in live mode', () => {
    const { sent, click, stop, hasListener } = setUp(true);
    expect(click(cancelButton)).toBe(true);
    expect(sent).toEqual([{ action: 'cancel', run_id: 'abc123' }]);
    stop();
    expect(hasListener()).toBe(false);
  });

  it('sends cancel_item with its index in live mode', () => {
    const { sent, click } = setUp(true);
    expect(click(cancelItem('12'))).toBe(true);
    expect(sent).toEqual([{ action: 'cancel_item', run_id: 'abc123', index: 12 }]);
  });

  it('lets the click through to the widget elsewhere', () => {
    const { sent, click } = setUp(false);
    expect(click(cancelButton)).toBe(false);
    expect(sent).toEqual([]);
  });
});

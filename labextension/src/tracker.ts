/**
 * "The notebook in focus" for the model: follows the notebook tracker and each notebook's
 * kernel changes, and knows how to select a cell by id.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import type { ICurrentNotebook, INotebookTarget } from './tokens';

/**
 * Turns `INotebookTracker.currentChanged` plus the current panel's `kernelChanged` and title
 * changes into one `changed` signal. Handles the notebook that is already open when the
 * extension loads.
 */
export class NotebookFocus implements ICurrentNotebook {
  constructor(options: NotebookFocus.IOptions) {
    this._shell = options.shell;
    this._tracker = options.tracker;
    this._tracker.currentChanged.connect(this._onCurrentChanged, this);
    this._onCurrentChanged();
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get current(): INotebookTarget | null {
    const panel = this._panel;
    if (panel === null || panel.isDisposed) {
      return null;
    }
    const shell = this._shell;
    return {
      id: panel.id,
      title: panel.title.label,
      kernel: panel.sessionContext.session?.kernel ?? null,
      selectCell: (cellId: string) => selectCell(shell, panel, cellId)
    };
  }

  private _onCurrentChanged(): void {
    const panel = this._tracker.currentWidget;
    if (panel === this._panel) {
      return;
    }
    if (this._panel !== null) {
      this._panel.sessionContext.kernelChanged.disconnect(this._emit, this);
      this._panel.title.changed.disconnect(this._emit, this);
      this._panel.disposed.disconnect(this._onCurrentChanged, this);
    }
    this._panel = panel;
    if (panel !== null) {
      panel.sessionContext.kernelChanged.connect(this._emit, this);
      panel.title.changed.connect(this._emit, this);
      panel.disposed.connect(this._onCurrentChanged, this);
    }
    this._emit();
  }

  private _emit(): void {
    this._changed.emit();
  }

  private _shell: JupyterFrontEnd.IShell;
  private _tracker: INotebookTracker;
  private _panel: NotebookPanel | null = null;
  private _changed = new Signal<this, void>(this);
}

export namespace NotebookFocus {
  export interface IOptions {
    /** The application shell, to bring the notebook to the front. */
    shell: JupyterFrontEnd.IShell;
    /** The notebook tracker. */
    tracker: INotebookTracker;
  }
}

/** Bring the panel to the front, select the cell with this id and scroll it into view. */
function selectCell(shell: JupyterFrontEnd.IShell, panel: NotebookPanel, cellId: string): boolean {
  const notebook = panel.content;
  const cells = notebook.model?.cells;
  if (cells === undefined) {
    return false;
  }
  let index = -1;
  for (let i = 0; i < cells.length; i++) {
    if (cells.get(i).id === cellId) {
      index = i;
      break;
    }
  }
  if (index < 0) {
    return false;
  }
  shell.activateById(panel.id);
  notebook.mode = 'command';
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  // Not `scrollToCell`: it focuses the cell's editor, which switches to edit mode.
  void notebook.scrollToItem(index, 'center');
  return true;
}

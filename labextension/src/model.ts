/**
 * The sidebar's state: one `KernelRuns` per kernel connection (comm lifecycle, runs, cluster)
 * and a `RunsModel` that follows the notebook in focus.
 */
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import type { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import {
  Action,
  actionMessage,
  CONTROL_TARGET,
  DEFAULT_LIMIT,
  HELLO,
  ICluster,
  IRun,
  isLive,
  orderRuns,
  parseControlMessage,
  parseKernelMessage,
  TARGET_NAME
} from './protocol';
import type { ICommLike, ICurrentNotebook, IKernelLike, INotebookTarget } from './tokens';

/**
 * Where the sidebar stands with a kernel.
 *
 * - `probing`: asked the kernel for its state, no answer yet;
 * - `unavailable`: the kernel has not loaded `dask_magic` (or it was restarted);
 * - `connected`: the kernel sent its state.
 */
export type ConnectionState = 'probing' | 'unavailable' | 'connected';

/**
 * The runs of one kernel, kept up to date through the `dask_magic` comm.
 *
 * Registers the comm target (the kernel opens a comm when it loads the extension) and opens a
 * comm to the kernel's target (to get the state after a page reload). A kernel restart clears
 * everything; the next idle kernel is asked again.
 */
export class KernelRuns implements IDisposable {
  constructor(options: KernelRuns.IOptions) {
    this._kernel = options.kernel;
    this._kernel.registerCommTarget(TARGET_NAME, this._onCommOpen);
    this._kernel.statusChanged.connect(this._onStatus, this);
    this._kernel.disposed.connect(this.dispose, this);
    this._probe();
  }

  /** Emitted whenever anything below changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get kernel(): IKernelLike {
    return this._kernel;
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** Runs, newest first. */
  get runs(): readonly IRun[] {
    return this._runs;
  }

  get cluster(): ICluster | null {
    return this._cluster;
  }

  /**
   * Whether the kernel reads this page's actions while a cell runs (it said so after a
   * message reached it on a subshell): then cancel and retry act on the running run.
   */
  get live(): boolean {
    return this._live;
  }

  /** The last error the kernel reported for an action, until dismissed. */
  get error(): string | null {
    return this._error;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Ask the kernel to re-run the failed items of a run (`%parallel_retry`). */
  retry(runId: string): void {
    if (this._live && this.hasLiveRun(runId)) {
      this._sendLive({ action: 'retry', run_id: runId });
      return;
    }
    this._send({ action: 'retry', run_id: runId });
  }

  /** Ask the kernel to close the cluster. */
  closeCluster(): void {
    this._send({ action: 'close_cluster' });
  }

  /** Ask the kernel for its whole state again. */
  refresh(): void {
    this._send({ action: 'refresh' });
  }

  /** Whether `runId` is a run of this kernel that is still running. */
  hasLiveRun(runId: string): boolean {
    return this._runs.some(run => run.run_id === runId && isLive(run));
  }

  /** Send a live action (the panel's buttons, in live mode) on the control comm. */
  send(action: Action): void {
    this._sendLive(action);
  }

  /**
   * Cancel a run. In live mode the kernel's run loop cancels it at once; elsewhere the
   * kernel cannot read comms while busy, so this interrupts it.
   */
  async cancel(runId?: string): Promise<void> {
    if (this._live && runId !== undefined && this.hasLiveRun(runId)) {
      this._sendLive({ action: 'cancel', run_id: runId });
      return;
    }
    try {
      await this._kernel.interrupt();
    } catch (reason) {
      this._setError(`Could not interrupt the kernel: ${String(reason)}`);
    }
  }

  dismissError(): void {
    this._setError(null);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    if (!this._kernel.isDisposed) {
      this._kernel.removeCommTarget(TARGET_NAME, this._onCommOpen);
    }
    this._kernel.statusChanged.disconnect(this._onStatus, this);
    this._kernel.disposed.disconnect(this.dispose, this);
    this._comms.clear();
    this._changed.emit();
    Signal.clearData(this);
  }

  private _onCommOpen = (comm: Kernel.IComm, msg: KernelMessage.ICommOpenMsg): void => {
    this._attach(comm);
    this._handle(msg.content.data);
  };

  private _probe(): void {
    let comm: ICommLike;
    try {
      comm = this._kernel.createComm(TARGET_NAME);
    } catch {
      this._setState('unavailable'); // this connection does not handle comms
      return;
    }
    this._attach(comm);
    if (this._state !== 'connected') {
      this._setState('probing');
    }
    comm.open(actionMessage({ action: 'refresh' }));
  }

  private _attach(comm: ICommLike): void {
    this._comms.add(comm);
    comm.onMsg = msg => this._handle(msg.content.data);
    comm.onClose = () => this._onCommClose(comm);
  }

  private _onCommClose(comm: ICommLike): void {
    this._comms.delete(comm);
    if (this._comms.size === 0 && !this._isDisposed) {
      // The kernel has no `dask_magic` target (not loaded) or unloaded the extension.
      this._clear();
      this._setState('unavailable');
    }
  }

  private _onStatus(_: unknown, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      // JupyterLab drops a kernel's comms on restart without closing them.
      this._comms.clear();
      this._clear();
      this._needsProbe = status !== 'dead';
      this._setState('unavailable');
    } else if (status === 'idle' && this._needsProbe) {
      this._needsProbe = false;
      this._probe();
    }
  }

  private _handle(data: unknown): void {
    const msg = parseKernelMessage(data);
    if (msg === null || this._isDisposed) {
      return; // unknown type or version: ignored
    }
    switch (msg.type) {
      case 'state':
        this._limit = msg.limit;
        this._runs = orderRuns(msg.runs, this._limit);
        this._cluster = msg.cluster;
        break;
      case 'run': {
        const id = msg.run.run_id;
        const previous = this._runs.find(run => run.run_id === id);
        const run =
          msg.failuresUnchanged && previous ? { ...msg.run, failures: previous.failures } : msg.run;
        this._runs = orderRuns([run, ...this._runs.filter(r => r.run_id !== id)], this._limit);
        break;
      }
      case 'cluster':
        this._cluster = msg.cluster;
        break;
      case 'error':
        this._error = msg.message;
        break;
    }
    this._state = 'connected';
    if (!this._controlOpened) {
      this._controlOpened = true; // once per kernel: an older kernel closes it, and stays so
      this._openControl();
    }
    this._changed.emit();
  }

  /**
   * Open the control comm once it travels on a subshell, and say hello: the kernel answers
   * whether it read the hello off its main thread (then actions act during a run).
   */
  private _openControl(): void {
    let comm: ICommLike;
    try {
      comm = this._kernel.createComm(CONTROL_TARGET);
    } catch {
      return;
    }
    this._control = comm;
    comm.onMsg = msg => this._handleControl(msg.content.data);
    comm.onClose = () => {
      if (this._control === comm) {
        this._control = null;
        this._live = false;
        this._changed.emit();
      }
    };
    // Opened only once its subshell exists: an open sent before would go to the main
    // shell, and wait there behind a running cell while the hello overtakes it.
    void comm.subshellStarted?.then(
      () => {
        if (!comm.isDisposed && this._control === comm) {
          comm.open({});
          comm.send(HELLO);
        }
      },
      () => undefined
    );
  }

  private _handleControl(data: unknown): void {
    const msg = parseControlMessage(data);
    if (msg === null || this._isDisposed) {
      return;
    }
    if (msg.type === 'live') {
      this._live = msg.live;
    } else {
      this._error = msg.message;
    }
    this._changed.emit();
  }

  /** A live action goes on the control comm, which the kernel reads during the run. */
  private _sendLive(action: Action): void {
    const comm = this._control;
    if (comm === null || comm.isDisposed) {
      this._send(action);
      return;
    }
    comm.send(actionMessage(action));
  }

  private _send(action: Action): void {
    const message = actionMessage(action);
    const comms = [...this._comms].filter(comm => !comm.isDisposed);
    const comm = comms[comms.length - 1];
    if (comm === undefined) {
      this._setError('The kernel is not connected: run `%load_ext dask_magic` first.');
      return;
    }
    comm.send(message);
  }

  private _clear(): void {
    this._live = false;
    this._control = null;
    this._controlOpened = false;
    this._runs = [];
    this._cluster = null;
    this._error = null;
  }

  private _setState(state: ConnectionState): void {
    this._state = state;
    this._changed.emit();
  }

  private _setError(error: string | null): void {
    this._error = error;
    this._changed.emit();
  }

  private _kernel: IKernelLike;
  private _comms = new Set<ICommLike>();
  private _state: ConnectionState = 'probing';
  private _runs: IRun[] = [];
  private _cluster: ICluster | null = null;
  private _error: string | null = null;
  private _limit = DEFAULT_LIMIT;
  private _live = false;
  private _control: ICommLike | null = null;
  private _controlOpened = false;
  private _needsProbe = false;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}

export namespace KernelRuns {
  export interface IOptions {
    /** The kernel connection of a notebook. */
    kernel: IKernelLike;
  }
}

/**
 * What the sidebar shows: the runs of the kernel of the notebook in focus.
 *
 * Keeps one `KernelRuns` per kernel connection, so switching back to a notebook shows its
 * runs at once, and runs that went on in the background are up to date.
 */
export class RunsModel implements IDisposable {
  constructor(options: RunsModel.IOptions) {
    this._notebooks = options.notebooks;
    this._notebooks.changed.connect(this._onNotebookChanged, this);
    this._onNotebookChanged();
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The notebook in focus, if any. */
  get notebook(): INotebookTarget | null {
    return this._notebooks.current;
  }

  /** Its kernel's runs, or `null` when it has no kernel. */
  get kernelRuns(): KernelRuns | null {
    return this._current;
  }

  /** The kernel's runs that hold the running run `runId`, in live mode; else `null`. */
  liveRunsOf(runId: string): KernelRuns | null {
    for (const runs of this._byKernel.values()) {
      if (runs.live && runs.hasLiveRun(runId)) {
        return runs;
      }
    }
    return null;
  }

  /** The run whose cell was last selected from the sidebar. */
  get selectedRunId(): string | null {
    return this._selected;
  }

  /** A short note for the user (for example, a run's cell was deleted). */
  get notice(): string | null {
    return this._notice;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Scroll to and select the cell that started a run. */
  selectRun(run: IRun): boolean {
    this._selected = run.run_id;
    const notebook = this._notebooks.current;
    const found = run.cell_id !== null && notebook !== null && notebook.selectCell(run.cell_id);
    this._notice = found ? null : 'The cell that started this run is no longer in this notebook.';
    this._changed.emit();
    return found;
  }

  dismissNotice(): void {
    this._notice = null;
    this._current?.dismissError();
    this._changed.emit();
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._notebooks.changed.disconnect(this._onNotebookChanged, this);
    for (const runs of this._byKernel.values()) {
      runs.dispose();
    }
    this._byKernel.clear();
    Signal.clearData(this);
  }

  private _onNotebookChanged(): void {
    const kernel = this._notebooks.current?.kernel ?? null;
    const next = kernel === null || kernel.isDisposed ? null : this._runsFor(kernel);
    if (next !== this._current) {
      this._current?.changed.disconnect(this._onRunsChanged, this);
      next?.changed.connect(this._onRunsChanged, this);
      this._current = next;
      this._selected = null;
      this._notice = null;
    }
    this._changed.emit();
  }

  private _runsFor(kernel: IKernelLike): KernelRuns {
    let runs = this._byKernel.get(kernel);
    if (runs === undefined) {
      runs = new KernelRuns({ kernel });
      this._byKernel.set(kernel, runs);
      kernel.disposed.connect(() => this._byKernel.delete(kernel));
    }
    return runs;
  }

  private _onRunsChanged(runs: KernelRuns): void {
    if (runs.isDisposed && runs === this._current) {
      this._current = null;
    }
    this._changed.emit();
  }

  private _notebooks: ICurrentNotebook;
  private _byKernel = new Map<IKernelLike, KernelRuns>();
  private _current: KernelRuns | null = null;
  private _selected: string | null = null;
  private _notice: string | null = null;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}

export namespace RunsModel {
  export interface IOptions {
    /** The notebook in focus (see `tracker.ts`). */
    notebooks: ICurrentNotebook;
  }
}

/**
 * Typed stand-ins for a kernel connection and its comms: the test plays the kernel.
 */
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import type { JSONValue } from '@lumino/coreutils';
import { ISignal, Signal } from '@lumino/signaling';

import type { ICommLike, ICurrentNotebook, IKernelLike, INotebookTarget } from '../tokens';

type Target = (comm: Kernel.IComm, msg: KernelMessage.ICommOpenMsg) => void | PromiseLike<void>;

let counter = 0;

/** A comm whose traffic the test can read and drive. */
export class MockComm implements ICommLike {
  constructor(readonly targetName: string) {
    this.commId = `comm-${++counter}`;
    let start: () => void = () => undefined;
    this.subshellStarted = new Promise(resolve => {
      start = resolve;
    });
    this._startSubshell = start;
  }
  readonly commId: string;
  isDisposed = false;
  opened: JSONValue[] = [];
  sent: JSONValue[] = [];
  /** Resolved by `startSubshell`, as JupyterLab does once the comm's subshell exists. */
  readonly subshellStarted: Promise<void>;
  onMsg: ICommLike['onMsg'] = () => undefined;

  /** JupyterLab created the comm's subshell: from now on its messages travel there. */
  async startSubshell(): Promise<void> {
    this._startSubshell();
    await this.subshellStarted;
  }

  private _startSubshell: () => void;
  onClose: ICommLike['onClose'] = () => undefined;

  open(data?: JSONValue): void {
    this.opened.push(data ?? null);
  }

  send(data: JSONValue): void {
    this.sent.push(data);
  }

  /** The kernel sends a message on this comm. */
  receive(data: unknown): void {
    void this.onMsg({
      content: { comm_id: this.commId, data }
    } as unknown as KernelMessage.ICommMsgMsg);
  }

  /** The kernel closes this comm (for example: no such target). */
  closeFromKernel(): void {
    void this.onClose({
      content: { comm_id: this.commId, data: {} }
    } as unknown as KernelMessage.ICommCloseMsg);
  }
}

/** A kernel connection: records targets and comms, lets the test open comms and change status. */
export class MockKernel implements IKernelLike {
  constructor(readonly id = `kernel-${++counter}`) {}
  status: Kernel.Status = 'idle';
  isDisposed = false;
  targets = new Map<string, Target>();
  /** Comms the frontend opened (probes). */
  comms: MockComm[] = [];
  /** Comms the kernel opened. */
  kernelComms: MockComm[] = [];
  interrupts = 0;
  interruptError: Error | null = null;
  readonly statusChanged = new Signal<Kernel.IKernelConnection, Kernel.Status>(
    this as unknown as Kernel.IKernelConnection
  );
  readonly disposed = new Signal<Kernel.IKernelConnection, void>(
    this as unknown as Kernel.IKernelConnection
  );

  registerCommTarget(name: string, callback: Target): void {
    this.targets.set(name, callback);
  }

  removeCommTarget(name: string, callback: Target): void {
    if (this.targets.get(name) === callback) {
      this.targets.delete(name);
    }
  }

  createComm(targetName: string): MockComm {
    const comm = new MockComm(targetName);
    this.comms.push(comm);
    return comm;
  }

  async interrupt(): Promise<void> {
    this.interrupts += 1;
    if (this.interruptError) {
      throw this.interruptError;
    }
  }

  /** The kernel opens a comm to the frontend target (as `Bridge()` does). */
  openFromKernel(target: string, data: unknown): MockComm {
    const comm = new MockComm(target);
    this.kernelComms.push(comm);
    const callback = this.targets.get(target);
    if (callback === undefined) {
      throw new Error(`no target ${target}`);
    }
    const msg = { content: { comm_id: comm.commId, target_name: target, data } };
    void callback(comm as unknown as Kernel.IComm, msg as unknown as KernelMessage.ICommOpenMsg);
    return comm;
  }

  setStatus(status: Kernel.Status): void {
    this.status = status;
    this.statusChanged.emit(status);
  }

  dispose(): void {
    this.isDisposed = true;
    this.disposed.emit();
  }
}

/** A notebook in focus that records cell selections. */
export class MockNotebook implements INotebookTarget {
  constructor(
    readonly id: string,
    public kernel: MockKernel | null,
    readonly cellIds: string[] = []
  ) {}
  readonly title = `${this.id}.ipynb`;
  selected: string[] = [];

  selectCell(cellId: string): boolean {
    if (!this.cellIds.includes(cellId)) {
      return false;
    }
    this.selected.push(cellId);
    return true;
  }
}

/** The notebook tracker: the test switches notebooks. */
export class MockFocus implements ICurrentNotebook {
  current: MockNotebook | null = null;
  private readonly _changed = new Signal<ICurrentNotebook, void>(this);
  get changed(): ISignal<ICurrentNotebook, void> {
    return this._changed;
  }

  /** Tell the model the notebook (or its kernel) changed. */
  emit(): void {
    this._changed.emit();
  }

  focus(notebook: MockNotebook | null): void {
    this.current = notebook;
    this._changed.emit();
  }
}

/**
 * The narrow interfaces the model needs from JupyterLab: what it uses of a kernel connection,
 * and of "the notebook in focus". Tests implement them with small typed mocks.
 */
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import type { JSONValue } from '@lumino/coreutils';
import type { ISignal } from '@lumino/signaling';

/** The parts of a comm the model uses (`Kernel.IComm` has them). */
export interface ICommLike {
  readonly commId: string;
  readonly isDisposed: boolean;
  /**
   * Resolves once the comm's messages travel on a kernel subshell (JupyterLab 4.4+ with
   * `commsOverSubshells` on and a kernel with subshells); never resolves otherwise.
   */
  readonly subshellStarted?: Promise<void>;
  onMsg: (msg: KernelMessage.ICommMsgMsg) => void | PromiseLike<void>;
  onClose: (msg: KernelMessage.ICommCloseMsg) => void | PromiseLike<void>;
  open(data?: JSONValue): unknown;
  send(data: JSONValue): unknown;
}

/** The parts of a kernel connection the model uses. */
export type IKernelLike = Pick<
  Kernel.IKernelConnection,
  | 'id'
  | 'status'
  | 'statusChanged'
  | 'disposed'
  | 'isDisposed'
  | 'registerCommTarget'
  | 'removeCommTarget'
  | 'interrupt'
> & {
  createComm(targetName: string): ICommLike;
};

/** What the model needs of the notebook in focus. */
export interface INotebookTarget {
  /** A stable id of the notebook widget. */
  readonly id: string;
  /** Its name, for the sidebar's header. */
  readonly title: string;
  /** The kernel connection, or `null` while there is none. */
  readonly kernel: IKernelLike | null;
  /** Scroll to the cell with this id and select it; `false` when no cell has it. */
  selectCell(cellId: string): boolean;
}

/** The notebook in focus, and a signal when it or its kernel changes. */
export interface ICurrentNotebook {
  readonly current: INotebookTarget | null;
  readonly changed: ISignal<ICurrentNotebook, void>;
}

/**
 * The messages between the kernel (`dask_magic/bridge.py`) and the sidebar.
 *
 * Everything that arrives from the kernel goes through `parseKernelMessage`, which checks
 * every field: a message of an unknown type, of another protocol version, or with a field of
 * the wrong type is dropped (`null`). No JupyterLab imports here.
 */

/** The protocol version; `tests/test_bridge.py` checks it equals the Python constant. */
export const PROTOCOL_VERSION = 1;

/** The comm target name on both sides. */
export const TARGET_NAME = 'dask_magic';

/**
 * The control comm's target (`dask_magic/_control_comm.py`): opened by the front end, it
 * only carries actions and their replies, so the kernel reads it on a subshell while a cell
 * runs.
 */
export const CONTROL_TARGET = 'dask_magic_control';

/** The control comm's answer to `hello`: whether its actions act during a run. */
export interface ILiveMessage {
  type: 'live';
  live: boolean;
}

/** Parse a message on the control comm: `live`, `error`, or `null` for anything else. */
export function parseControlMessage(data: unknown): ILiveMessage | IErrorMessage | null {
  if (!isObject(data) || data.version !== PROTOCOL_VERSION) {
    return null;
  }
  if (data.type === 'live') {
    return { type: 'live', live: data.live === true };
  }
  const parsed = data.type === 'error' ? parseKernelMessage(data) : null;
  return parsed !== null && parsed.type === 'error' ? parsed : null;
}

/** The hello the front end sends on the control comm once its subshell exists. */
export const HELLO = { version: PROTOCOL_VERSION, action: 'hello' };

/** The life cycle of a run (`RunStatus` in `dask_magic/engine/results.py`). */
export type RunStatus = 'pending' | 'running' | 'finished' | 'failed' | 'interrupted' | 'error';

const RUN_STATUSES: ReadonlyArray<string> = [
  'pending',
  'running',
  'finished',
  'failed',
  'interrupted',
  'error'
];

/** Item counts at one moment. */
export interface ICounts {
  total: number;
  done: number;
  failed: number;
  running: number;
  queued: number;
  cancelled: number;
  /** Items stopped by `--timeout` (absent from kernels before it existed). */
  timeout?: number;
}

/** One failed item, with its traceback already rendered by the kernel (plain text). */
export interface IFailureItem {
  index: number;
  item: string;
  type: string;
  message: string;
  line: number | null;
  kind: string;
  hint: string;
  traceback: string;
  stdout: string;
  stderr: string;
}

/** An item running now (the longest-running few, longest first), with its loop value. */
export interface IRunningItem {
  index: number;
  item: string;
  elapsed: number | null;
}

/** Failed items of one exception type at one cell line; `items` may be fewer than `count`. */
export interface IFailureGroup {
  label: string;
  type: string;
  line: number | null;
  count: number;
  items: IFailureItem[];
}

/** The cluster a run used; `memory` in bytes. */
export interface ICluster {
  scheduler: string;
  workers: number;
  threads: number;
  memory: number;
  dashboard: string | null;
  local: boolean;
}

/** One `%%parallel_for` run. */
export interface IRun {
  run_id: string;
  name: string | null;
  status: RunStatus;
  counts: ICounts;
  started: number | null;
  elapsed: number | null;
  rate: number | null;
  eta: number | null;
  cell_id: string | null;
  message: string;
  retry_of: string | null;
  /** Items running now (absent from kernels before it existed: empty). */
  running: IRunningItem[];
  failures: { total: number; groups: IFailureGroup[] };
  cluster: ICluster | null;
}

/** The whole state: sent when a comm opens and on `refresh`. */
export interface IStateMessage {
  type: 'state';
  runs: IRun[];
  cluster: ICluster | null;
  limit: number;
  /**
   * The kernel reads this front end's comm messages on a subshell, so actions act while a
   * cell runs (`cancel`, `retry` and `cancel_item` for the running run).
   */
  live: boolean;
}

/**
 * One run changed. The kernel sends `"failures": null` when they are the same as in its last
 * message for this run: then `failuresUnchanged` is true and `run.failures` is empty.
 */
export interface IRunMessage {
  type: 'run';
  run: IRun;
  failuresUnchanged: boolean;
}

/** The cluster changed (`null`: closed). */
export interface IClusterMessage {
  type: 'cluster';
  cluster: ICluster | null;
}

/** The kernel refused an action or the action failed. */
export interface IErrorMessage {
  type: 'error';
  message: string;
  action: string | null;
}

export type KernelMessage = IStateMessage | IRunMessage | IClusterMessage | IErrorMessage;

/** What the sidebar may ask of the kernel. */
export type Action =
  | { action: 'retry'; run_id: string }
  | { action: 'cancel'; run_id: string }
  | { action: 'cancel_item'; run_id: string; index: number }
  | { action: 'close_cluster' }
  | { action: 'refresh' };

export type ActionMessage = Action & { version: number };

/** The runs a kernel keeps when it does not say (`MAX_RUNS` in bridge.py). */
export const DEFAULT_LIMIT = 20;

/**
 * Parse a message from the kernel.
 *
 * @returns the message, or `null` for anything this version does not understand.
 */
export function parseKernelMessage(data: unknown): KernelMessage | null {
  if (!isObject(data) || data.version !== PROTOCOL_VERSION) {
    return null;
  }
  switch (data.type) {
    case 'state': {
      if (!Array.isArray(data.runs)) {
        return null;
      }
      const runs = data.runs.map(parseRun).filter(isPresent);
      const limit = isCount(data.limit) && data.limit > 0 ? data.limit : DEFAULT_LIMIT;
      const live = data.live === true;
      return { type: 'state', runs, cluster: parseCluster(data.cluster), limit, live };
    }
    case 'run': {
      const run = parseRun(data.run);
      const failuresUnchanged = isObject(data.run) && data.run.failures === null;
      return run ? { type: 'run', run, failuresUnchanged } : null;
    }
    case 'cluster':
      return { type: 'cluster', cluster: parseCluster(data.cluster) };
    case 'error':
      return typeof data.message === 'string'
        ? { type: 'error', message: data.message, action: optString(data.action) }
        : null;
    default:
      return null;
  }
}

/**
 * Build the message for an action; throws for an action the protocol does not have, so a
 * caller cannot send the kernel something it would refuse.
 */
export function actionMessage(action: Action): ActionMessage {
  switch (action.action) {
    case 'retry':
    case 'cancel':
      if (typeof action.run_id !== 'string' || action.run_id === '') {
        throw new Error(`${action.action} needs a run id`);
      }
      return { version: PROTOCOL_VERSION, action: action.action, run_id: action.run_id };
    case 'cancel_item':
      if (typeof action.run_id !== 'string' || action.run_id === '' || !isCount(action.index)) {
        throw new Error('cancel_item needs a run id and an item index');
      }
      return {
        version: PROTOCOL_VERSION,
        action: 'cancel_item',
        run_id: action.run_id,
        index: action.index
      };
    case 'close_cluster':
    case 'refresh':
      return { version: PROTOCOL_VERSION, action: action.action };
    default:
      throw new Error(`unknown action ${JSON.stringify((action as { action: unknown }).action)}`);
  }
}

/** Whether a run may still change. */
export function isLive(run: IRun): boolean {
  return run.status === 'running' || run.status === 'pending';
}

/** Runs newest first (by start time, then by arrival), at most `limit`. */
export function orderRuns(runs: IRun[], limit: number): IRun[] {
  const indexed = runs.map((run, i) => ({ run, i }));
  indexed.sort((a, b) => {
    const byStart = (b.run.started ?? 0) - (a.run.started ?? 0);
    return byStart !== 0 ? byStart : a.i - b.i;
  });
  return indexed.slice(0, limit).map(x => x.run);
}

// ---------------------------------------------------------------------------- validators

type JSONObject = { [key: string]: unknown };

function isObject(value: unknown): value is JSONObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isPresent<T>(value: T | null): value is T {
  return value !== null;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

function optNumber(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function optString(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function optLine(value: unknown): number | null {
  return isCount(value) ? value : null;
}

function parseCounts(value: unknown): ICounts | null {
  if (!isObject(value)) {
    return null;
  }
  const keys = ['total', 'done', 'failed', 'running', 'queued', 'cancelled'] as const;
  if (!keys.every(key => isCount(value[key]))) {
    return null;
  }
  const counts = value as unknown as ICounts;
  return {
    total: counts.total,
    done: counts.done,
    failed: counts.failed,
    running: counts.running,
    queued: counts.queued,
    cancelled: counts.cancelled,
    timeout: isCount(value.timeout) ? value.timeout : 0
  };
}

function parseItem(value: unknown): IFailureItem | null {
  if (!isObject(value) || !isCount(value.index)) {
    return null;
  }
  return {
    index: value.index,
    item: str(value.item),
    type: str(value.type),
    message: str(value.message),
    line: optLine(value.line),
    kind: str(value.kind) || 'user',
    hint: str(value.hint),
    traceback: str(value.traceback),
    stdout: str(value.stdout),
    stderr: str(value.stderr)
  };
}

function parseGroup(value: unknown): IFailureGroup | null {
  if (!isObject(value) || typeof value.label !== 'string' || !isCount(value.count)) {
    return null;
  }
  const items = Array.isArray(value.items) ? value.items.map(parseItem).filter(isPresent) : [];
  return {
    label: value.label,
    type: str(value.type),
    line: optLine(value.line),
    count: value.count,
    items
  };
}

/** Running items kept from one message (the kernel sends a few). */
const MAX_RUNNING = 20;

function parseRunning(value: unknown): IRunningItem | null {
  if (!isObject(value) || !isCount(value.index)) {
    return null;
  }
  return { index: value.index, item: str(value.item), elapsed: optNumber(value.elapsed) };
}

/** Parse a cluster, or `null`. */
export function parseCluster(value: unknown): ICluster | null {
  if (!isObject(value) || typeof value.scheduler !== 'string') {
    return null;
  }
  return {
    scheduler: value.scheduler,
    workers: isCount(value.workers) ? value.workers : 0,
    threads: isCount(value.threads) ? value.threads : 0,
    memory: isCount(value.memory) ? value.memory : 0,
    dashboard: optString(value.dashboard),
    local: value.local === true
  };
}

/** Parse one run, or `null` when its id, status or counts are missing or malformed. */
export function parseRun(value: unknown): IRun | null {
  if (!isObject(value) || typeof value.run_id !== 'string' || value.run_id === '') {
    return null;
  }
  const status = value.status;
  const counts = parseCounts(value.counts);
  if (typeof status !== 'string' || !RUN_STATUSES.includes(status) || counts === null) {
    return null;
  }
  const failures = isObject(value.failures) ? value.failures : {};
  const groups = Array.isArray(failures.groups)
    ? failures.groups.map(parseGroup).filter(isPresent)
    : [];
  return {
    run_id: value.run_id,
    name: optString(value.name),
    status: status as RunStatus,
    counts,
    started: optNumber(value.started),
    elapsed: optNumber(value.elapsed),
    rate: optNumber(value.rate),
    eta: optNumber(value.eta),
    cell_id: optString(value.cell_id),
    message: str(value.message),
    retry_of: optString(value.retry_of),
    running: Array.isArray(value.running)
      ? value.running.slice(0, MAX_RUNNING).map(parseRunning).filter(isPresent)
      : [],
    failures: { total: isCount(failures.total) ? failures.total : counts.failed, groups },
    cluster: parseCluster(value.cluster)
  };
}

/**
 * The sidebar's React components: pure functions of their props (no JupyterLab, no comm).
 *
 * Every string from the kernel is rendered as a React text child, so it is escaped; nothing
 * is set as HTML. Links from the kernel go through `safeHttpUrl`.
 */
import * as React from 'react';

import {
  barSegments,
  formatBytes,
  formatDuration,
  formatRate,
  runTitle,
  safeHttpUrl,
  runBadge
} from './format';
import { ICluster, IFailureGroup, IFailureItem, IRun, isLive } from './protocol';
import { RunningItems } from './running';

/** What the sidebar shows, as plain data. */
export interface ISidebarViewProps {
  /** The notebook in focus; `null`: none is open. */
  notebook: string | null;
  /** `none`: the notebook has no kernel. */
  connection: 'none' | 'probing' | 'unavailable' | 'connected';
  runs: readonly IRun[];
  cluster: ICluster | null;
  selectedRunId: string | null;
  /** An error from the kernel or a note for the user. */
  notice: string | null;
  /** Resolves relative dashboard links. */
  baseUrl?: string;
  onSelectRun(run: IRun): void;
  onRetry(run: IRun): void;
  onCancel(run: IRun): void;
  /** Cancel one running item (live mode only). */
  onCancelItem?(run: IRun, index: number): void;
  /** The kernel reads actions while a cell runs: Cancel and Retry act on the running run. */
  liveControls?: boolean;
  onCloseCluster(): void;
  onDismissNotice(): void;
}

const CLS = 'jp-DaskMagic';

/** The whole sidebar. */
export function SidebarView(props: ISidebarViewProps): JSX.Element {
  return (
    <div className={`${CLS}-body`}>
      <header className={`${CLS}-header`}>
        <h2 className={`${CLS}-title`}>Parallel runs</h2>
        {props.notebook !== null && <div className={`${CLS}-notebook`}>{props.notebook}</div>}
      </header>
      {props.notice !== null && (
        <div className={`${CLS}-notice`} role="alert">
          <span>{props.notice}</span>
          <button className={`${CLS}-link`} onClick={props.onDismissNotice} title="Dismiss">
            ×
          </button>
        </div>
      )}
      <Content {...props} />
    </div>
  );
}

function Content(props: ISidebarViewProps): JSX.Element {
  if (props.notebook === null) {
    return <Hint>Open a notebook to see its parallel runs here.</Hint>;
  }
  switch (props.connection) {
    case 'none':
      return <Hint>This notebook has no kernel.</Hint>;
    case 'probing':
    case 'unavailable':
      return (
        <Hint>
          Run <code>%load_ext dask_magic</code> in this notebook, then start a loop with{' '}
          <code>%%parallel_for</code>: its runs, failures and cluster show up here.
        </Hint>
      );
    case 'connected':
      return (
        <>
          <ClusterView
            cluster={props.cluster}
            baseUrl={props.baseUrl}
            onClose={props.onCloseCluster}
          />
          <RunList {...props} />
        </>
      );
  }
}

function Hint(props: { children: React.ReactNode }): JSX.Element {
  return <p className={`${CLS}-hint`}>{props.children}</p>;
}

/** The cluster: scheduler, workers, threads, memory, dashboard link, close button. */
export function ClusterView(props: {
  cluster: ICluster | null;
  baseUrl?: string;
  onClose(): void;
}): JSX.Element {
  const { cluster } = props;
  if (cluster === null) {
    return (
      <section className={`${CLS}-cluster`}>
        <h3 className={`${CLS}-section`}>Cluster</h3>
        <p className={`${CLS}-muted`}>No cluster yet: the first run starts one.</p>
      </section>
    );
  }
  const dashboard = safeHttpUrl(cluster.dashboard, props.baseUrl);
  return (
    <section className={`${CLS}-cluster`}>
      <h3 className={`${CLS}-section`}>Cluster{cluster.local ? ' (local)' : ''}</h3>
      <div className={`${CLS}-scheduler`} title="Scheduler address">
        {cluster.scheduler}
      </div>
      <div className={`${CLS}-resources`}>
        <span>
          <span className={`${CLS}-workers`}>{cluster.workers}</span>{' '}
          {cluster.workers === 1 ? 'worker' : 'workers'}
        </span>
        <span>
          <span className={`${CLS}-threads`}>{cluster.threads}</span>{' '}
          {cluster.threads === 1 ? 'thread' : 'threads'}
        </span>
        <span>
          <span className={`${CLS}-memory`}>{formatBytes(cluster.memory)}</span> memory
        </span>
      </div>
      <div className={`${CLS}-actions`}>
        {dashboard !== null && (
          <a
            className={`${CLS}-button ${CLS}-dashboard`}
            href={dashboard}
            target="_blank"
            rel="noopener noreferrer"
            title={dashboard}
          >
            Dashboard ↗
          </a>
        )}
        <button className={`${CLS}-button ${CLS}-closeCluster`} onClick={props.onClose}>
          Close cluster
        </button>
      </div>
    </section>
  );
}

function RunList(props: ISidebarViewProps): JSX.Element {
  if (props.runs.length === 0) {
    return (
      <Hint>
        No runs yet in this kernel. Run a <code>%%parallel_for</code> cell.
      </Hint>
    );
  }
  return (
    <section>
      <h3 className={`${CLS}-section`}>Runs</h3>
      <ol className={`${CLS}-runs`}>
        {props.runs.map(run => (
          <RunView
            key={run.run_id}
            run={run}
            selected={run.run_id === props.selectedRunId}
            onSelect={props.onSelectRun}
            onRetry={props.onRetry}
            onCancel={props.onCancel}
            onCancelItem={props.onCancelItem}
            liveControls={props.liveControls ?? false}
          />
        ))}
      </ol>
    </section>
  );
}

/** One run: header (click: go to its cell), bar, counts, buttons, failures. */
export function RunView(props: {
  run: IRun;
  selected: boolean;
  onSelect(run: IRun): void;
  onRetry(run: IRun): void;
  onCancel(run: IRun): void;
  onCancelItem?(run: IRun, index: number): void;
  liveControls?: boolean;
}): JSX.Element {
  const { run } = props;
  const live = isLive(run);
  const acting = props.liveControls === true;
  const select = () => props.onSelect(run);
  return (
    <li
      className={`${CLS}-run${props.selected ? ' jp-mod-selected' : ''}`}
      data-run-id={run.run_id}
      data-cell-id={run.cell_id ?? undefined}
      data-status={run.status}
    >
      <div
        className={`${CLS}-runHeader`}
        role="button"
        tabIndex={0}
        title={`Go to the cell that started this run${startedAt(run.started)}`}
        onClick={select}
        onKeyDown={event => {
          if (event.key === 'Enter' || event.key === ' ') {
            event.preventDefault();
            select();
          }
        }}
      >
        <span className={`${CLS}-runTitle`}>{runTitle(run.name, run.run_id)}</span>
        <span className={`${CLS}-status ${CLS}-status-${runBadge(run).style}`}>
          {runBadge(run).label}
        </span>
      </div>
      <Bar run={run} />
      <Counts run={run} />
      {run.message !== '' && <div className={`${CLS}-message`}>{run.message}</div>}
      <div className={`${CLS}-actions`}>
        {live && (
          <button
            className={`${CLS}-button ${CLS}-cancel`}
            onClick={() => props.onCancel(run)}
            title={
              acting
                ? 'Cancel the run now: unfinished items are cancelled, finished ones kept'
                : 'Interrupt the kernel: unfinished items are cancelled, finished ones kept'
            }
          >
            Cancel
          </button>
        )}
        {(!live || acting) && run.counts.failed + (run.counts.timeout ?? 0) > 0 && (
          <button
            className={`${CLS}-button ${CLS}-retry`}
            onClick={() => props.onRetry(run)}
            title={
              live
                ? 'Run the failed items again now, while the rest runs'
                : 'Run %parallel_retry for this run: re-run only the failed items'
            }
          >
            Retry failed
          </button>
        )}
      </div>
      {live && <RunningItems run={run} onCancelItem={acting ? props.onCancelItem : undefined} />}
      {run.failures.groups.length > 0 && <Failures run={run} />}
    </li>
  );
}

function Bar(props: { run: IRun }): JSX.Element {
  const { counts } = props.run;
  const seg = barSegments(counts);
  const finished = counts.done + counts.failed + (counts.timeout ?? 0) + counts.cancelled;
  return (
    <div
      className={`${CLS}-bar`}
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={counts.total}
      aria-valuenow={finished}
    >
      <div className={`${CLS}-bar-done`} style={{ width: `${seg.done}%` }} />
      <div className={`${CLS}-bar-failed`} style={{ width: `${seg.failed}%` }} />
      <div className={`${CLS}-bar-running`} style={{ width: `${seg.running}%` }} />
      <div className={`${CLS}-bar-cancelled`} style={{ width: `${seg.cancelled}%` }} />
    </div>
  );
}

function Counts(props: { run: IRun }): JSX.Element {
  const { counts, elapsed, rate, eta } = props.run;
  const live = isLive(props.run);
  const parts: [string, number][] = [
    ['done', counts.done],
    ['failed', counts.failed],
    ['running', counts.running],
    ['queued', counts.queued]
  ];
  if ((counts.timeout ?? 0) > 0) {
    parts.splice(2, 0, ['timeout', counts.timeout ?? 0]);
  }
  if (counts.cancelled > 0) {
    parts.push(['cancelled', counts.cancelled]);
  }
  const speed = live ? formatRate(rate) : '';
  return (
    <div className={`${CLS}-counts`}>
      <span className={`${CLS}-countList`}>
        {parts.map(([label, n]) => (
          <span
            key={label}
            className={`${CLS}-count ${CLS}-count-${label}${n > 0 ? ' jp-mod-nonzero' : ''}`}
            data-count={label}
          >
            {n} {label}
          </span>
        ))}
      </span>
      <span className={`${CLS}-timing`}>
        {`${counts.total} items · ${formatDuration(elapsed)}`}
        {speed !== '' ? ` · ${speed}` : ''}
        {live && eta !== null ? ` · ${formatDuration(eta)} left` : ''}
      </span>
    </div>
  );
}

function Failures(props: { run: IRun }): JSX.Element {
  const { failures } = props.run;
  return (
    <div className={`${CLS}-failures`}>
      {failures.groups.map(group => (
        <FailureGroup key={`${group.label}`} group={group} />
      ))}
    </div>
  );
}

/** `2 × FileNotFoundError at line 4`, opening to its items. */
export function FailureGroup(props: { group: IFailureGroup }): JSX.Element {
  const { group } = props;
  const hidden = group.count - group.items.length;
  return (
    <details className={`${CLS}-group`}>
      <summary className={`${CLS}-groupSummary`}>
        <span className={`${CLS}-groupCount`}>{group.count} ×</span> {group.label}
      </summary>
      <ul className={`${CLS}-items`}>
        {group.items.map(item => (
          <FailureItem key={item.index} item={item} />
        ))}
      </ul>
      {hidden > 0 && <p className={`${CLS}-muted`}>…and {hidden} more (see the cell's panel)</p>}
    </details>
  );
}

/** One failed item: its loop value and error, opening to its traceback and output. */
export function FailureItem(props: { item: IFailureItem }): JSX.Element {
  const { item } = props;
  return (
    <li className={`${CLS}-item`} data-index={item.index}>
      <details>
        <summary className={`${CLS}-itemSummary`}>
          <span className={`${CLS}-itemValue`}>{item.item || `item ${item.index}`}</span>
          {' → '}
          <span className={`${CLS}-itemError`}>
            {item.message ? `${item.type}: ${firstLine(item.message)}` : item.type}
          </span>
        </summary>
        {item.hint !== '' && <p className={`${CLS}-hintText`}>{item.hint}</p>}
        <pre className={`${CLS}-traceback`}>{item.traceback}</pre>
        {item.stdout !== '' && <Output label="stdout" text={item.stdout} />}
        {item.stderr !== '' && <Output label="stderr" text={item.stderr} />}
      </details>
    </li>
  );
}

function Output(props: { label: string; text: string }): JSX.Element {
  return (
    <div className={`${CLS}-output ${CLS}-output-${props.label}`}>
      <div className={`${CLS}-muted`}>{props.label}</div>
      <pre>{props.text}</pre>
    </div>
  );
}

function startedAt(started: number | null): string {
  return started === null ? '' : ` (started ${new Date(started * 1000).toLocaleString()})`;
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0];
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

import {
  actionMessage,
  DEFAULT_LIMIT,
  IRun,
  isLive,
  orderRuns,
  parseKernelMessage,
  parseRun,
  PROTOCOL_VERSION,
  TARGET_NAME
} from '../protocol';

// Written by tests/test_bridge.py from dask_magic.bridge: both sides read the same messages.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fixture = require('./fixtures/messages.json');

describe('constants', () => {
  it('speaks version 1 on target dask_magic', () => {
    expect(PROTOCOL_VERSION).toBe(1);
    expect(TARGET_NAME).toBe('dask_magic');
  });
});

describe('parseKernelMessage', () => {
  it('reads the state the Python bridge sends', () => {
    const msg = parseKernelMessage(fixture.state);
    expect(msg?.type).toBe('state');
    if (msg?.type !== 'state') {
      return;
    }
    expect(msg.runs.map(run => run.run_id)).toEqual(['run-final', 'run-old']);
    expect(msg.limit).toBe(20);
    expect(msg.cluster).toEqual({
      scheduler: 'tcp://127.0.0.1:8786',
      workers: 2,
      threads: 2,
      memory: 4 * 2 ** 30,
      dashboard: 'http://127.0.0.1:8787/status',
      local: true
    });
  });

  it('reads a run with its failure groups exactly as sent', () => {
    const msg = parseKernelMessage(fixture.run);
    expect(msg?.type).toBe('run');
    if (msg?.type !== 'run') {
      return;
    }
    // Nothing is dropped or renamed between Python and TypeScript.
    expect(msg.run).toEqual(fixture.run.run);
    expect(msg.run.failures.groups.map(g => [g.label, g.count])).toEqual([
      ['FileNotFoundError at line 4', 2],
      ['ValueError at line 6', 1]
    ]);
  });

  it('marks a run whose failures did not change', () => {
    expect(parseKernelMessage(fixture.run)).toMatchObject({ failuresUnchanged: false });
    const msg = parseKernelMessage(fixture.run_same_failures);
    expect(msg).toMatchObject({ type: 'run', failuresUnchanged: true });
    expect(msg?.type === 'run' && msg.run.failures.groups).toEqual([]);
  });

  it('reads cluster and error messages', () => {
    expect(parseKernelMessage(fixture.cluster)).toEqual({ type: 'cluster', cluster: null });
    expect(parseKernelMessage(fixture.error)).toEqual({
      type: 'error',
      message: "unknown run 'x'",
      action: 'retry'
    });
  });

  it.each([
    ['unknown type', { version: 1, type: 'progress', run: {} }],
    ['another version', { ...fixture.run, version: 2 }],
    ['no version', { type: 'state', runs: [] }],
    ['not an object', 'state'],
    ['null', null],
    ['an array', [fixture.run]],
    ['a run without id', { version: 1, type: 'run', run: { ...fixture.run.run, run_id: 7 } }],
    ['an error without text', { version: 1, type: 'error', message: 3 }]
  ])('ignores %s', (_, data) => {
    expect(parseKernelMessage(data)).toBeNull();
  });

  it('drops malformed runs from a state but keeps the rest', () => {
    const good = fixture.state.runs[0];
    const msg = parseKernelMessage({
      version: 1,
      type: 'state',
      runs: [good, { run_id: 'x', status: 'exploded', counts: good.counts }, 42],
      cluster: { workers: 3 },
      limit: -1
    });
    expect(msg).toMatchObject({ type: 'state', cluster: null, limit: DEFAULT_LIMIT });
    expect(msg?.type === 'state' && msg.runs.map(r => r.run_id)).toEqual([good.run_id]);
  });
});

describe('parseRun', () => {
  const base = fixture.run.run;

  it('rejects bad counts', () => {
    expect(parseRun({ ...base, counts: { ...base.counts, done: -1 } })).toBeNull();
    expect(parseRun({ ...base, counts: { ...base.counts, failed: '3' } })).toBeNull();
  });

  it('turns odd optional fields into null or empty text', () => {
    const run = parseRun({
      ...base,
      name: 5,
      elapsed: 'soon',
      cell_id: null,
      message: { html: '<b>' },
      failures: { groups: [{ label: 'x', count: 1, items: [{ index: 'a' }, { index: 0 }] }] }
    });
    expect(run).not.toBeNull();
    expect(run?.name).toBeNull();
    expect(run?.elapsed).toBeNull();
    expect(run?.cell_id).toBeNull();
    expect(run?.message).toBe('');
    expect(run?.failures.total).toBe(base.counts.failed);
    expect(run?.failures.groups[0].items).toEqual([
      {
        index: 0,
        item: '',
        type: '',
        message: '',
        line: null,
        kind: 'user',
        hint: '',
        traceback: '',
        stdout: '',
        stderr: ''
      }
    ]);
  });
});

describe('actionMessage', () => {
  it('builds the three actions with the version', () => {
    expect(actionMessage({ action: 'retry', run_id: 'r1' })).toEqual({
      version: 1,
      action: 'retry',
      run_id: 'r1'
    });
    expect(actionMessage({ action: 'close_cluster' })).toEqual({
      version: 1,
      action: 'close_cluster'
    });
    expect(actionMessage({ action: 'refresh' })).toEqual({ version: 1, action: 'refresh' });
  });

  it('refuses unknown actions and retry without a run', () => {
    expect(() => actionMessage({ action: 'shutdown' } as never)).toThrow(
      'unknown action "shutdown"'
    );
    expect(() => actionMessage({ action: 'retry', run_id: '' })).toThrow('retry needs a run id');
  });
});

describe('orderRuns and isLive', () => {
  const run = (id: string, started: number | null, status = 'finished'): IRun =>
    ({ ...parseRun(fixture.run.run), run_id: id, started, status }) as IRun;

  it('puts the newest first and keeps arrival order for ties', () => {
    const runs = [run('a', 1), run('b', 3), run('c', null), run('d', 3)];
    expect(orderRuns(runs, 10).map(r => r.run_id)).toEqual(['b', 'd', 'a', 'c']);
    expect(orderRuns(runs, 2).map(r => r.run_id)).toEqual(['b', 'd']);
  });

  it('knows which runs are live', () => {
    expect(isLive(run('a', 1, 'running'))).toBe(true);
    expect(isLive(run('a', 1, 'pending'))).toBe(true);
    expect(isLive(run('a', 1, 'interrupted'))).toBe(false);
  });
});

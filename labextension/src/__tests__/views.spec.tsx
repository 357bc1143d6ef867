import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';

import { barSegments, formatBytes, formatDuration, formatRate, safeHttpUrl } from '../format';
import { IRun, parseKernelMessage, parseRun } from '../protocol';
import { ISidebarViewProps, SidebarView } from '../views';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fixture = require('./fixtures/messages.json');

const noop = () => undefined;

function props(overrides: Partial<ISidebarViewProps> = {}): ISidebarViewProps {
  const state = parseKernelMessage(fixture.state);
  if (state?.type !== 'state') {
    throw new Error('bad fixture');
  }
  return {
    notebook: 'one.ipynb',
    connection: 'connected',
    runs: state.runs,
    cluster: state.cluster,
    selectedRunId: null,
    notice: null,
    onSelectRun: noop,
    onRetry: noop,
    onCancel: noop,
    onCloseCluster: noop,
    onDismissNotice: noop,
    ...overrides
  };
}

const render = (p: ISidebarViewProps) => renderToStaticMarkup(<SidebarView {...p} />);

describe('SidebarView', () => {
  it('shows the runs, counts, failure groups and cluster', () => {
    const html = render(props());
    expect(html).toContain('7 done');
    expect(html).toContain('3 failed');
    expect(html).toContain('2 ×</span> FileNotFoundError at line 4');
    expect(html).toContain('tcp://127.0.0.1:8786');
    expect(html).toContain('4.0 GiB');
    expect(html).toContain('count-failed jp-mod-nonzero');
    expect(html).not.toContain('count-running jp-mod-nonzero');
    expect(html).toContain('href="http://127.0.0.1:8787/status"');
    expect(html).toContain('Retry failed');
    expect(html).not.toContain('>Cancel<');
    expect(html.indexOf('data-run-id="run-final"')).toBeLessThan(
      html.indexOf('data-run-id="run-old"')
    );
  });

  it('escapes everything from the kernel', () => {
    const run = parseRun({
      ...fixture.run.run,
      name: '<img src=x onerror=alert(1)>',
      message: '<script>alert(2)</script>'
    }) as IRun;
    const html = render(
      props({
        runs: [run],
        cluster: { ...props().cluster!, scheduler: '<b>bold</b>', dashboard: 'javascript:alert(3)' }
      })
    );
    expect(html).not.toMatch(/<img|<script|<b>/);
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('&lt;script&gt;');
    expect(html).not.toContain('javascript:');
    expect(html).not.toContain('Dashboard');
  });

  it('offers Cancel for a live run, not Retry', () => {
    const live = { ...props().runs[0], status: 'running' as const };
    const html = render(props({ runs: [live] }));
    expect(html).toContain('>Cancel<');
    expect(html).not.toContain('Retry failed');
  });

  it("lists a live run's running items, with Cancel item only in live mode, escaped", () => {
    const raw = {
      ...fixture.run.run,
      status: 'running',
      running: [
        { index: 7, item: "'<img src=x onerror=alert(1)>'", elapsed: 12.5 },
        { index: 'x', item: 'bad' },
        { index: 2, item: "'b.csv'", elapsed: 0.4 }
      ]
    };
    const run = parseRun(raw) as IRun;
    expect(run.running.map(r => r.index)).toEqual([7, 2]); // a malformed row is dropped
    const liveHtml = render(props({ runs: [run], liveControls: true, onCancelItem: noop }));
    expect(liveHtml.match(/>Cancel item</g)?.length).toBe(2);
    expect(liveHtml).toContain('data-index="7"');
    expect(liveHtml).not.toContain('<img');
    const notLive = render(props({ runs: [run], liveControls: false, onCancelItem: noop }));
    expect(notLive).toContain('item 7');
    expect(notLive).not.toContain('Cancel item');
    const ended = render(props({ runs: [{ ...run, status: 'finished' }], liveControls: true }));
    expect(ended).not.toContain('item 7');
    expect(parseRun({ ...fixture.run.run, running: undefined })?.running).toEqual([]);
  });

  it('badges a run whose only unfinished items were cancelled one by one as cancelled', () => {
    const first = props().runs[0];
    const counts = { ...first.counts, failed: 0, timeout: 0, cancelled: 1 };
    const html = render(props({ runs: [{ ...first, status: 'failed', counts }] }));
    expect(html).toContain('jp-DaskMagic-status-interrupted">1 cancelled<');
    const failed = render(props({ runs: [{ ...first, status: 'failed' }] }));
    expect(failed).toContain('jp-DaskMagic-status-failed">failed<');
  });

  it('counts timed-out items and offers Retry for them', () => {
    const first = props().runs[0];
    const raw = {
      ...fixture.run.run,
      counts: { ...fixture.run.run.counts, failed: 0, timeout: 2 }
    };
    const parsed = parseRun(raw);
    expect(parsed?.counts.timeout).toBe(2);
    const html = render(props({ runs: [{ ...first, counts: parsed!.counts }] }));
    expect(html).toMatch(/data-count="timeout">2 timeout</);
    expect(html).toContain('Retry failed');
    const older = parseRun({
      ...fixture.run.run,
      counts: { ...fixture.run.run.counts, timeout: undefined }
    });
    expect(older?.counts.timeout).toBe(0); // a kernel before --timeout sends no such count
  });

  it.each([
    ['unavailable', '%load_ext dask_magic'],
    ['probing', '%load_ext dask_magic'],
    ['none', 'no kernel']
  ] as const)('shows a hint when %s', (connection, text) => {
    const html = render(props({ connection, runs: [] }));
    expect(html).toContain(text);
    expect(html).not.toContain('Runs</h3>');
  });

  it('asks to open a notebook when none is', () => {
    expect(render(props({ notebook: null }))).toContain('Open a notebook');
  });

  it('marks the selected run and shows notices', () => {
    const html = render(props({ selectedRunId: 'run-old', notice: 'gone <b>' }));
    expect(html).toMatch(/jp-DaskMagic-run jp-mod-selected" data-run-id="run-old"/);
    expect(html).toContain('gone &lt;b&gt;');
  });
});

describe('format', () => {
  it('formats durations', () => {
    expect(formatDuration(null)).toBe('–');
    expect(formatDuration(0.42)).toBe('0.4 s');
    expect(formatDuration(12.25)).toBe('12 s');
    expect(formatDuration(125)).toBe('2 min 05 s');
    expect(formatDuration(3720)).toBe('1 h 02 min');
  });

  it('formats bytes and rates', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatRate(null)).toBe('');
    expect(formatRate(2.345)).toBe('2.3 items/s');
    expect(formatRate(123.4)).toBe('123 items/s');
  });

  it('keeps bar segments within 100%', () => {
    expect(
      barSegments({ total: 0, done: 0, failed: 0, running: 0, queued: 0, cancelled: 0 })
    ).toEqual({
      done: 0,
      failed: 0,
      running: 0,
      cancelled: 0
    });
    expect(
      barSegments({ total: 4, done: 2, failed: 1, running: 1, queued: 0, cancelled: 0 })
    ).toEqual({
      done: 50,
      failed: 25,
      running: 25,
      cancelled: 0
    });
    expect(
      barSegments({ total: 4, done: 1, failed: 0, running: 0, queued: 0, cancelled: 3 })
    ).toMatchObject({ cancelled: 75 });
  });

  it('only links http(s) URLs', () => {
    expect(safeHttpUrl('http://127.0.0.1:8787/status')).toBe('http://127.0.0.1:8787/status');
    expect(safeHttpUrl('javascript:alert(1)')).toBeNull();
    expect(safeHttpUrl('data:text/html,x')).toBeNull();
    expect(safeHttpUrl('not a url')).toBeNull();
    expect(safeHttpUrl('/user/me/proxy/8787/status', 'https://hub.example/lab')).toBe(
      'https://hub.example/user/me/proxy/8787/status'
    );
    expect(safeHttpUrl(null)).toBeNull();
  });
});

import { KernelRuns, RunsModel } from '../model';
import { CONTROL_TARGET, TARGET_NAME } from '../protocol';
import { MockFocus, MockKernel, MockNotebook } from './mocks';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fixture = require('./fixtures/messages.json');

const stateWith = (...runs: unknown[]) => ({ ...fixture.state, runs });
const runMsg = (overrides: Record<string, unknown>) => ({
  ...fixture.run,
  run: { ...fixture.run.run, ...overrides }
});

/** The comms the sidebar opened to the `dask_magic` target (not the control comm). */
const probes = (kernel: MockKernel) => kernel.comms.filter(c => c.targetName === TARGET_NAME);

function connected(): { kernel: MockKernel; runs: KernelRuns } {
  const kernel = new MockKernel();
  const runs = new KernelRuns({ kernel });
  kernel.openFromKernel(TARGET_NAME, fixture.state);
  return { kernel, runs };
}

describe('KernelRuns', () => {
  it('registers the target and asks the kernel for its state', () => {
    const kernel = new MockKernel();
    const runs = new KernelRuns({ kernel });
    expect(kernel.targets.has(TARGET_NAME)).toBe(true);
    expect(probes(kernel)).toHaveLength(1);
    expect(kernel.comms[0].targetName).toBe(TARGET_NAME);
    expect(kernel.comms[0].opened).toEqual([{ version: 1, action: 'refresh' }]);
    expect(runs.state).toBe('probing');
  });

  it('shows the hint when the kernel has not loaded the extension', () => {
    const kernel = new MockKernel();
    const runs = new KernelRuns({ kernel });
    let changes = 0;
    runs.changed.connect(() => changes++);
    kernel.comms[0].closeFromKernel(); // ipykernel: "No such comm target registered"
    expect(runs.state).toBe('unavailable');
    expect(changes).toBe(1);
  });

  it('connects when the kernel loads the extension later and opens its comm', () => {
    const kernel = new MockKernel();
    const runs = new KernelRuns({ kernel });
    kernel.comms[0].closeFromKernel();
    kernel.openFromKernel(TARGET_NAME, fixture.state);
    expect(runs.state).toBe('connected');
    expect(runs.runs.map(r => r.run_id)).toEqual(['run-final', 'run-old']);
    expect(runs.cluster?.workers).toBe(2);
  });

  it('gets the state on its own comm after a reload', () => {
    const kernel = new MockKernel();
    const runs = new KernelRuns({ kernel });
    kernel.comms[0].receive(fixture.state);
    expect(runs.state).toBe('connected');
    expect(runs.runs).toHaveLength(2);
  });

  it('updates one run in place, newest first, within the limit', () => {
    const { kernel, runs } = connected();
    const comm = kernel.comms[0];
    comm.receive(runMsg({ run_id: 'run-old', status: 'interrupted', started: 1 }));
    expect(runs.runs.map(r => [r.run_id, r.status])).toEqual([
      ['run-final', 'failed'],
      ['run-old', 'interrupted']
    ]);
    comm.receive(runMsg({ run_id: 'run-new', status: 'running', started: 2e9 }));
    expect(runs.runs.map(r => r.run_id)).toEqual(['run-new', 'run-final', 'run-old']);
    comm.receive({ ...fixture.state, limit: 2 });
    comm.receive(runMsg({ run_id: 'run-newer', started: 3e9 }));
    expect(runs.runs.map(r => r.run_id)).toEqual(['run-newer', 'run-final']);
  });

  it('keeps a run’s failures when the kernel says they did not change', () => {
    const { kernel, runs } = connected();
    kernel.kernelComms[0].receive(fixture.run_same_failures);
    const run = runs.runs.find(r => r.run_id === 'run-final');
    expect(run?.status).toBe('running');
    expect(run?.failures.groups.map(g => g.count)).toEqual([2, 1]);
    // a run seen for the first time without failures just has none
    kernel.kernelComms[0].receive({
      ...fixture.run_same_failures,
      run: { ...fixture.run_same_failures.run, run_id: 'unseen' }
    });
    expect(runs.runs.find(r => r.run_id === 'unseen')?.failures.groups).toEqual([]);
  });

  it('ignores unknown message types and versions without emitting', () => {
    const { kernel, runs } = connected();
    let changes = 0;
    runs.changed.connect(() => changes++);
    kernel.comms[0].receive({ version: 1, type: 'telemetry', data: 1 });
    kernel.comms[0].receive({ ...fixture.run, version: 99 });
    kernel.comms[0].receive('<script>');
    expect(changes).toBe(0);
    expect(runs.runs).toHaveLength(2);
  });

  it('follows the cluster and shows kernel errors until dismissed', () => {
    const { kernel, runs } = connected();
    kernel.comms[0].receive(fixture.cluster);
    expect(runs.cluster).toBeNull();
    kernel.comms[0].receive(fixture.error);
    expect(runs.error).toBe("unknown run 'x'");
    runs.dismissError();
    expect(runs.error).toBeNull();
  });

  it('sends retry, close_cluster and refresh on an open comm', () => {
    const { kernel, runs } = connected();
    runs.retry('run-final');
    runs.closeCluster();
    runs.refresh();
    // on the comm the kernel opened last; the probe stays quiet
    expect(kernel.comms[0].sent).toEqual([]);
    expect(kernel.kernelComms[0].sent).toEqual([
      { version: 1, action: 'retry', run_id: 'run-final' },
      { version: 1, action: 'close_cluster' },
      { version: 1, action: 'refresh' }
    ]);
  });

  it('says so when an action has no comm to go on', () => {
    const kernel = new MockKernel();
    const runs = new KernelRuns({ kernel });
    kernel.comms[0].closeFromKernel();
    runs.closeCluster();
    expect(runs.error).toMatch(/%load_ext dask_magic/);
  });

  it('cancels by interrupting the kernel', async () => {
    const { kernel, runs } = connected();
    await runs.cancel();
    expect(kernel.interrupts).toBe(1);
    kernel.interruptError = new Error('gone');
    await runs.cancel();
    expect(runs.error).toBe('Could not interrupt the kernel: Error: gone');
  });

  it('clears on restart and asks again once the new kernel is idle', () => {
    const { kernel, runs } = connected();
    kernel.setStatus('restarting');
    expect(runs.state).toBe('unavailable');
    expect(runs.runs).toEqual([]);
    expect(runs.cluster).toBeNull();
    kernel.setStatus('starting');
    expect(probes(kernel)).toHaveLength(1);
    kernel.setStatus('idle');
    expect(probes(kernel)).toHaveLength(2); // a new probe
    expect(runs.state).toBe('probing');
    kernel.setStatus('busy');
    kernel.setStatus('idle');
    expect(probes(kernel)).toHaveLength(2); // only once
  });

  it('stays connected while another comm is open', () => {
    const kernel = new MockKernel();
    const runs = new KernelRuns({ kernel });
    const fromKernel = kernel.openFromKernel(TARGET_NAME, fixture.state);
    kernel.comms[0].closeFromKernel(); // the probe raced with %load_ext and lost
    expect(runs.state).toBe('connected');
    fromKernel.closeFromKernel(); // %unload_ext dask_magic
    expect(runs.state).toBe('unavailable');
    expect(runs.runs).toEqual([]);
  });

  it('removes its target when disposed, and with its kernel', () => {
    const { kernel, runs } = connected();
    runs.dispose();
    expect(kernel.targets.has(TARGET_NAME)).toBe(false);
    expect(runs.isDisposed).toBe(true);
    const other = new MockKernel();
    const runs2 = new KernelRuns({ kernel: other });
    other.dispose();
    expect(runs2.isDisposed).toBe(true);
  });
});

describe('RunsModel', () => {
  function setup() {
    const focus = new MockFocus();
    const k1 = new MockKernel('k1');
    const k2 = new MockKernel('k2');
    const nb1 = new MockNotebook('one', k1, ['9d1f6c0e-cell']);
    const nb2 = new MockNotebook('two', k2, []);
    const model = new RunsModel({ notebooks: focus });
    return { focus, k1, k2, nb1, nb2, model };
  }

  it('shows nothing without a notebook', () => {
    const { model } = setup();
    expect(model.notebook).toBeNull();
    expect(model.kernelRuns).toBeNull();
  });

  it('switches with the notebook in focus and keeps each kernel’s runs', () => {
    const { focus, k1, k2, nb1, nb2, model } = setup();
    focus.focus(nb1);
    const first = model.kernelRuns;
    k1.openFromKernel(TARGET_NAME, fixture.state);
    expect(model.kernelRuns?.runs).toHaveLength(2);

    focus.focus(nb2);
    expect(model.notebook?.title).toBe('two.ipynb');
    expect(model.kernelRuns?.kernel).toBe(k2);
    expect(model.kernelRuns?.state).toBe('probing');
    k2.openFromKernel(TARGET_NAME, stateWith(fixture.run.run));
    expect(model.kernelRuns?.runs.map(r => r.run_id)).toEqual(['run-final']);

    focus.focus(nb1);
    expect(model.kernelRuns).toBe(first); // not a new comm per switch
    expect(probes(k1)).toHaveLength(1);
    expect(model.kernelRuns?.runs).toHaveLength(2);
  });

  it('emits when the current kernel’s runs change, not another’s', () => {
    const { focus, k1, k2, nb1, nb2, model } = setup();
    focus.focus(nb1);
    focus.focus(nb2);
    let changes = 0;
    model.changed.connect(() => changes++);
    k1.openFromKernel(TARGET_NAME, fixture.state);
    expect(changes).toBe(0);
    k2.openFromKernel(TARGET_NAME, fixture.state);
    expect(changes).toBe(1);
  });

  it('follows a kernel change of the notebook', () => {
    const { focus, nb1, model } = setup();
    focus.focus(nb1);
    nb1.kernel = null;
    focus.emit();
    expect(model.kernelRuns).toBeNull();
    const k3 = new MockKernel('k3');
    nb1.kernel = k3;
    focus.emit();
    expect(model.kernelRuns?.kernel).toBe(k3);
  });

  it('selects the cell that started a run, or says it is gone', () => {
    const { focus, k1, nb1, model } = setup();
    focus.focus(nb1);
    k1.openFromKernel(TARGET_NAME, fixture.state);
    const [final, old] = model.kernelRuns?.runs ?? [];
    expect(model.selectRun(final)).toBe(true);
    expect(nb1.selected).toEqual(['9d1f6c0e-cell']);
    expect(model.selectedRunId).toBe('run-final');
    expect(model.notice).toBeNull();
    expect(model.selectRun({ ...old, cell_id: 'deleted' })).toBe(false);
    expect(model.notice).toMatch(/no longer in this notebook/);
    model.dismissNotice();
    expect(model.notice).toBeNull();
  });

  it('forgets a disposed kernel and disposes everything with itself', () => {
    const { focus, k1, nb1, model } = setup();
    focus.focus(nb1);
    const runs = model.kernelRuns;
    k1.dispose();
    expect(runs?.isDisposed).toBe(true);
    expect(model.kernelRuns).toBeNull();
    model.dispose();
    expect(model.isDisposed).toBe(true);
  });
});

describe('live mode', () => {
  const liveRun = { ...fixture.run.run, run_id: 'run-live', status: 'running' };

  function control(kernel: MockKernel) {
    const found = kernel.comms.filter(comm => comm.targetName === CONTROL_TARGET);
    expect(found).toHaveLength(1);
    return found[0];
  }

  it('opens the control comm once connected and says hello once it is on a subshell', async () => {
    const { kernel, runs } = connected();
    const comm = control(kernel);
    expect(comm.opened).toEqual([]); // not before its subshell exists
    await comm.startSubshell();
    expect(comm.opened).toEqual([{}]);
    expect(comm.sent).toEqual([{ version: 1, action: 'hello' }]);
    expect(runs.live).toBe(false);
    comm.receive({ version: 1, type: 'live', live: true });
    expect(runs.live).toBe(true);
  });

  it('sends cancel and retry of the running run on the control comm in live mode', async () => {
    const { kernel, runs } = connected();
    const comm = control(kernel);
    kernel.kernelComms[0].receive(stateWith(liveRun));
    comm.receive({ version: 1, type: 'live', live: true });
    await runs.cancel('run-live');
    runs.retry('run-live');
    runs.send({ action: 'cancel', run_id: 'run-live' });
    expect(kernel.interrupts).toBe(0);
    expect(comm.sent).toEqual([
      { version: 1, action: 'cancel', run_id: 'run-live' },
      { version: 1, action: 'retry', run_id: 'run-live' },
      { version: 1, action: 'cancel', run_id: 'run-live' }
    ]);
    comm.receive({ version: 1, type: 'error', message: 'cancel: that run is not running' });
    expect(runs.error).toBe('cancel: that run is not running');
  });

  it('interrupts when the kernel is not live, or the run has ended', async () => {
    const { kernel, runs } = connected();
    const comm = control(kernel);
    kernel.kernelComms[0].receive(stateWith(liveRun));
    comm.receive({ version: 1, type: 'live', live: false });
    await runs.cancel('run-live');
    expect(kernel.interrupts).toBe(1);
    comm.receive({ version: 1, type: 'live', live: true });
    kernel.kernelComms[0].receive(stateWith({ ...liveRun, status: 'finished' }));
    await runs.cancel('run-live');
    expect(kernel.interrupts).toBe(2);
    expect(comm.sent).toEqual([]);
  });

  it('an older kernel without the control target stays as before', () => {
    const { kernel, runs } = connected();
    control(kernel).closeFromKernel();
    kernel.kernelComms[0].receive(stateWith(liveRun));
    expect(control(kernel).targetName).toBe(CONTROL_TARGET); // not opened again
    expect(runs.live).toBe(false);
    expect(runs.state).toBe('connected');
  });

  it('finds the kernel that runs a run, only in live mode', () => {
    const kernel = new MockKernel();
    const focus = new MockFocus();
    const model = new RunsModel({ notebooks: focus });
    focus.focus(new MockNotebook('a', kernel));
    const comm = kernel.openFromKernel(TARGET_NAME, stateWith(liveRun));
    expect(model.liveRunsOf('run-live')).toBeNull();
    control(kernel).receive({ version: 1, type: 'live', live: true });
    expect(model.liveRunsOf('run-live')).toBe(model.kernelRuns);
    expect(model.liveRunsOf('other')).toBeNull();
    comm.receive(stateWith({ ...liveRun, status: 'interrupted' }));
    expect(model.liveRunsOf('run-live')).toBeNull();
  });
});

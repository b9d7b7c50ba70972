import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, linkSync, mkdtempSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TEST_HOOKS } from '../../src/context/test-hooks.js';
import { Flow, FlowContext, ResultsManager, type FlowResult, type WeirEvent } from '../../src/index.js';
import type { CheckpointerData, CheckpointerRequest } from '../../src/storage/journal/sqlite/checkpointer-protocol.js';
import { checkpointerEntry } from '../../src/storage/journal/sqlite/checkpointer.js';
import { SqliteRunStore } from '../../src/storage/journal/sqlite/sqlite-run-store.js';
import { createTestContext } from '../../src/testing/index.js';
import { fcParams, Tally, testTimeout } from '../support/property.js';
import { brokenEventRule } from '../property/check-events.js';
import { leavesOf, nameTree, type CasePlan } from '../property/plan.js';
import { Scripted } from '../property/scripted.js';
import { bounded, expectModel, expectNothingLost, finishAfterFault, readStored } from './fault-cases.js';
import { answerAsks, faultPlan, heldEvents, prepare, STORE_CODES, type Prepared } from './fault-plans.js';
import { WriteFaults, type WriteFault } from './faulty-writes.js';

// Store faults injected into generated flows (batch mode, inline steps, now and then one on a
// thread) on real SQLite files: the store throws at random writes, the disk fills up, the file is
// replaced under a live context. Each run ends completed as the model says, or failed with a coded
// error; nothing it reported is lost; nothing hangs; once the fault clears the run finishes as the
// model says, without running again a step whose completion was stored.

let dir: string;
let cases = 0;
/** Faults injected by kind, over the whole file: each property must reach its faults (`WEIR_REPORT=1` prints them). */
const tally = new Tally('store faults');
const count = (kind: string, n = 1): void => tally.add(kind, n);
/** Warnings weir emitted: each must carry a code (and none is printed). */
const warnings: { readonly warning: unknown; readonly options: unknown }[] = [];
/** Hears each warning as it is emitted. */
let onWarning: ((message: string, code: unknown) => void) | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weir-faults-'));
  vi.spyOn(process, 'emitWarning').mockImplementation((warning: string | Error, options?: unknown) => {
    warnings.push({ warning, options });
    onWarning?.(String(warning), (options as { code?: unknown } | undefined)?.code);
  });
  // Loads the child's code once with no limit, so no limited child has to write the loader's cache.
  const warm = await child(undefined, ['warm'], 60_000);
  expect(warm.code).toBe(0);
}, 60_000);

afterAll(() => {
  vi.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
  tally.add('cases', cases);
  tally.report();
});

/** Every warning weir emitted has a `WEIR_` code. */
function expectCodedWarnings(): void {
  for (const w of warnings.splice(0)) expect(w).toMatchObject({ options: { code: expect.stringMatching(/^WEIR_/) } });
}

/** A failed result's errors are coded: the run's is a store code (of `codes`) or one the model says; each step's too, or an upstream failure. */
function expectCodedFailure(prepared: Prepared, result: FlowResult, codes: readonly string[] = STORE_CODES): void {
  const modelCodes = [...prepared.expected.steps.values()].flatMap((s) => (s.status === 'failed' && s.code !== undefined ? [s.code] : []));
  expect(result.error?.code).toBeOneOf([...codes, ...modelCodes]);
  for (const [name, step] of Object.entries(result.steps)) {
    if (step.error !== undefined) expect({ name, code: step.error.code }).toEqual({ name, code: expect.toBeOneOf([...codes, ...modelCodes, 'WEIR_UPSTREAM_FAILED']) });
  }
}

/** One or two faults at random writes of a case (of any kind, or of one), once or a few times in a row. */
function writeFaults(plan: CasePlan): fc.Arbitrary<WriteFault[]> {
  const all = leavesOf(nameTree(plan.root, ''));
  const leaves = all.length;
  const asks = all.filter((leaf) => leaf.plan.kind === 'leaf' && leaf.plan.behaviour.kind === 'ask').length;
  // About as many writes as a run makes of each kind: a commit for every other step or so (group commit), one create, a lease renewal or two in longer runs, an answer per ask.
  const last = { any: leaves + 3, commit: Math.ceil(leaves / 2) + 2, create: 1, lease: 2, input: Math.max(1, asks) };
  const kinds: WriteFault['on'][] = ['any', 'any', 'any', 'commit', 'commit', 'create', 'lease', ...(plan.mode === 'interactive' ? (['input', 'input'] as const) : [])];
  const fault = fc.constantFrom(...kinds).chain((on) =>
    fc.record({
      on: fc.constant(on),
      at: fc.integer({ min: 1, max: last[on] }),
      times: fc.integer({ min: 1, max: 3 }),
      error: fc.constantFrom<WriteFault['error']>('store', 'plain'),
    }),
  );
  return fc.array(fault, { minLength: 1, maxLength: 2 });
}

/** A fault, or none, of the first context that goes on with the run after the faulty one: at its lease, its first commits or answers. */
const recoveryFaults = fc.option(
  fc.record({
    on: fc.constantFrom<WriteFault['on']>('lease', 'lease', 'commit', 'any', 'input'),
    at: fc.integer({ min: 1, max: 3 }),
    times: fc.integer({ min: 1, max: 2 }),
    error: fc.constantFrom<WriteFault['error']>('store', 'plain'),
  }),
  { nil: undefined },
);

/** Runs a plan on a store that throws at the given writes, then checks it as the file header says. */
async function throwingCase(plan: CasePlan, spec: readonly WriteFault[], after: WriteFault | undefined): Promise<void> {
  const prefix = `t${++cases}.`;
  const prepared = prepare(plan, dir, prefix);
  const file = join(dir, `${prefix}db`);
  const faults = new WriteFaults(spec);
  // The shortest lease, so renewals (lease writes, every 33 ms) happen during the longer runs.
  const ctx = new FlowContext({ results: ResultsManager.sqlite(file), leaseTimeout: 100, [TEST_HOOKS]: { wrapStore: faults.wrap.bind(faults) } } as never);
  const held = heldEvents(ctx, prepared);
  const refused: unknown[] = [];
  answerAsks(ctx, prepared, refused);
  // A parked run whose answer was stored but that could not go on (its lease not taken) waits for recover(), and says so.
  const stuck = new Promise<undefined>((resolve) => {
    onWarning = (message, code) => {
      if (code === 'WEIR_INPUT' && message.includes(`"${prepared.runId}"`)) resolve(undefined);
    };
  });
  let result: FlowResult | undefined;
  try {
    result = await bounded(Promise.race([ctx.start(prepared.flow, prepared.input, { runId: prepared.runId, mode: prepared.mode }).result(), stuck]), 15_000, 'the run');
  } finally {
    onWarning = undefined;
    await bounded(ctx.close(), 15_000, 'close()');
  }
  for (const [kind, n] of Object.entries(faults.thrown)) count(`throw:${kind}`, n);
  // An answer the store refused was refused with its error, coded.
  for (const error of refused) expect(error).toMatchObject({ code: 'WEIR_STORE' });
  const stored = await readStored(file, prepared.runId);
  if (result === undefined) expect(stored?.run.status).toBe('waiting');
  else if (faults.injected === 0) {
    // No fault reached the run: it is exactly the run of the model, attempts and events included.
    expectModel(prepared, result);
    const attempts = new Map(leavesOf(prepared.root).map((leaf) => [leaf.name, prepared.expected.steps.get(leaf.name)!.attempts]));
    expect(brokenEventRule(stored!.events, prepared.root, attempts)).toBeUndefined();
  } else if (result.status === 'completed') expectModel(prepared, result);
  else expectCodedFailure(prepared, result);
  expectNothingLost(prepared, result, held, stored);
  const later = after === undefined ? undefined : new WriteFaults([after]);
  await finishAfterFault(file, prepared, stored, later);
  for (const [kind, n] of Object.entries(later?.thrown ?? {})) count(`throw after:${kind}`, n);
  expectCodedWarnings();
}

const PROGRAM = fileURLToPath(new URL('./programs/run-case.ts', import.meta.url));

/** Runs the case program in a child, under a file size limit of `limitKb` KB when given; a child still running after `ms` is killed and fails the case. */
function child(limitKb: number | undefined, args: readonly string[], ms: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const limit = limitKb === undefined ? '' : `ulimit -f ${limitKb}; `;
  // Node ignores SIGXFSZ: a write past the limit fails with EFBIG instead of killing the process.
  const proc = spawn('bash', ['-c', `${limit}exec "$0" "$@"`, process.execPath, '--import', 'tsx', PROGRAM, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`hang: the child did not exit within ${ms} ms; stderr: ${stderr}`));
    }, ms);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a plan in a child whose files may not grow past `limitKb` KB, on a file made beforehand, then checks it as the file header says. */
async function diskFullCase(plan: CasePlan, limitKb: number): Promise<void> {
  const prefix = `d${++cases}.`;
  const prepared = prepare(plan, dir, prefix);
  const file = join(dir, `${prefix}db`);
  const made = new SqliteRunStore(file);
  await made.open();
  await made.close();
  const run = await child(limitKb, [file, dir, prefix, JSON.stringify(plan)], 30_000);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  const { result, held, warnings: codes } = JSON.parse(run.stdout) as { result: FlowResult; held: WeirEvent[]; warnings: string[] };
  for (const code of codes) expect(code).toMatch(/^WEIR_/);
  if (result.status === 'completed') expectModel(prepared, result);
  else {
    expectCodedFailure(prepared, result);
    if (result.error?.code === 'WEIR_STORE') {
      count('disk-full');
      // What SQLite said of the write the limit refused: an I/O error (EFBIG), or a full disk.
      expect(result.error.message).toMatch(/SQLITE_IOERR|SQLITE_FULL/);
    }
  }
  const stored = await readStored(file, prepared.runId);
  expectNothingLost(prepared, result, held, stored);
  await finishAfterFault(file, prepared, stored);
}

const DURING = ['run_start', 'step_start', 'step_complete', 'step_failed', 'step_retry', 'step_skipped', 'step_progress', 'step_cancelled'] as const;

/** How the file goes away under the live context: another SQLite file renamed over it (the original renamed aside first), or unlinked (a hard link kept aside). */
type Replacement = 'replace' | 'unlink';

/**
 * Runs a plan on a SQLite file that is replaced or unlinked under the live context when the run
 * delivers its `at`-th event, then checks it as the file header says, reading the original file
 * (kept aside) back, and finishes the run once the original is back at the path.
 */
async function replacedCase(plan: CasePlan, how: Replacement, at: number): Promise<void> {
  const prefix = `r${++cases}.`;
  const prepared = prepare(plan, dir, prefix);
  const file = join(dir, `${prefix}db`);
  const aside = join(dir, `${prefix}original.db`);
  const other = join(dir, `${prefix}other.db`);
  const marker = ResultsManager.sqlite(other);
  await marker.set('marker', 'the other file');
  await marker.close();
  const ctx = new FlowContext({ results: ResultsManager.sqlite(file) });
  const held = heldEvents(ctx, prepared);
  let seen = 0;
  let replaced = false;
  const replace = (e: WeirEvent): void => {
    if (e.runId !== prepared.runId || ++seen !== at) return;
    replaced = true;
    if (how === 'replace') {
      renameSync(file, aside);
      renameSync(other, file);
    } else {
      linkSync(file, aside);
      unlinkSync(file);
    }
  };
  // Any event of the run but its end (the run must go on writing after the replacement).
  for (const type of DURING) ctx.on(type as 'run_start', replace);
  let result: FlowResult;
  try {
    result = await bounded(ctx.start(prepared.flow, prepared.input, { runId: prepared.runId, mode: 'batch' }).result(), 15_000, 'the run');
  } finally {
    await bounded(ctx.close(), 15_000, 'close()');
  }
  if (!replaced) {
    expectModel(prepared, result);
    await finishAfterFault(file, prepared, await readStored(file, prepared.runId));
    return;
  }
  if (result.status === 'completed' && (await readStored(aside, prepared.runId))?.run.status === 'completed') {
    // Replaced after the run's last write: the last step's completion, which carries the run's end (one commit).
    // Nothing is lost if the original file holds the whole run, and nothing went to the file now at the path.
    count(`file-${how}-after-end`);
    expectModel(prepared, result);
    expectNothingLost(prepared, result, held, await readStored(aside, prepared.runId));
    if (how === 'replace') expect(await readStored(file, prepared.runId)).toBeUndefined();
    return;
  }
  count(`file-${how}`);
  // The run cannot end as if nothing happened: its end is not written to a file nobody sees.
  expect(result.status).toBe('failed');
  expectCodedFailure(prepared, result, ['WEIR_STORE_REPLACED']);
  const errors = [result.error, ...Object.values(result.steps).map((s) => s.error)].filter((e) => e?.code === 'WEIR_STORE_REPLACED');
  if (prepared.expected.status === 'completed') expect(errors.length).toBeGreaterThan(0);
  for (const error of errors) expect(error!.message).toContain(`now at "${aside}"`);
  // What the run reported is in the original file; the file now at the path was not written to.
  expectNothingLost(prepared, result, held, await readStored(aside, prepared.runId));
  if (how === 'replace') {
    expect(await readStored(file, prepared.runId)).toBeUndefined();
    const there = ResultsManager.sqlite(file);
    expect(await there.get('marker')).toBe('the other file');
    await there.close();
  } else expect(existsSync(file)).toBe(false);
  // The original back at the path: the run goes on from there.
  renameSync(aside, file);
  await finishAfterFault(file, prepared, await readStored(file, prepared.runId));
  expectCodedWarnings();
}

/** When a property stops (shrinking a failure included), so it reports its counterexample before the test times out. */
const SHRINK_LIMIT = testTimeout(90_000);

describe('store faults on generated flows', () => {
  it('a store that throws at random writes: the run completes as the model says or fails coded, loses nothing, and finishes once the store works', async () => {
    await fc.assert(
      fc.asyncProperty(faultPlan({ interactive: true }).chain((plan) => fc.tuple(fc.constant(plan), writeFaults(plan))), recoveryFaults, async ([plan, spec], after) => {
        await throwingCase(plan, spec, after);
      }),
      fcParams(30, { timeout: 40_000, interruptAfterTimeLimit: SHRINK_LIMIT }),
    );
    expect(tally.get('throw:commit')).toBeGreaterThan(0);
  }, testTimeout(120_000));

  it('a disk that fills up mid-run (a child under a file size limit): the same, with the error SQLite gave', async () => {
    await fc.assert(
      fc.asyncProperty(faultPlan({ threads: false }), fc.integer({ min: 16, max: 480 }), async (plan, limitKb) => {
        await diskFullCase(plan, limitKb);
      }),
      fcParams(8, { timeout: 60_000, interruptAfterTimeLimit: SHRINK_LIMIT }),
    );
    expect(tally.get('disk-full')).toBeGreaterThan(0);
  }, testTimeout(120_000));

  it('a file replaced or unlinked under the live context: the run fails with WEIR_STORE_REPLACED naming where the original is, which has all it reported, and goes on once it is back', async () => {
    const replacement = fc.record({ how: fc.constantFrom<Replacement>('replace', 'unlink'), at: fc.integer({ min: 1, max: 40 }) });
    await fc.assert(
      fc.asyncProperty(faultPlan(), replacement, async (plan, { how, at }) => {
        await replacedCase(plan, how, at);
      }),
      fcParams(20, { timeout: 40_000, interruptAfterTimeLimit: SHRINK_LIMIT }),
    );
    expect(tally.get('file-replace') + tally.get('file-unlink')).toBeGreaterThan(0);
  }, testTimeout(120_000));
});

describe('store faults the generators found', () => {
  const oneStep: CasePlan = { mode: 'batch', root: { kind: 'parallel', edges: [], children: [{ kind: 'leaf', behaviour: { kind: 'ok' }, retries: 0, executor: 'inline', edges: [] }] } };

  it('fails the writes of a run whose file was replaced under it (WEIR_STORE_REPLACED), instead of completing it in a file nobody sees', async () => {
    await replacedCase(oneStep, 'replace', 1);
  });

  it('fails the writes of a run whose file was unlinked under it, naming the link that keeps it', async () => {
    await replacedCase(oneStep, 'unlink', 1);
  });

  it('leaves a run whose end could not be stored running in the store, instead of writing its end later without its event', async () => {
    // A step with an attempt left commits its completion alone (one on its last attempt carries the run's end,
    // test/durability/joined-end.test.ts): the second commit is the run's end.
    const withRetry: CasePlan = { mode: 'batch', root: { kind: 'parallel', edges: [], children: [{ kind: 'leaf', behaviour: { kind: 'ok' }, retries: 1, executor: 'inline', edges: [] }] } };
    const prepared = prepare(withRetry, dir, 'end.');
    const file = join(dir, 'end.db');
    const faults = new WriteFaults([{ on: 'commit', at: 2, times: 1, error: 'store' }]);
    const ctx = new FlowContext({ results: ResultsManager.sqlite(file), [TEST_HOOKS]: { wrapStore: faults.wrap.bind(faults) } } as never);
    const later = new Promise<void>((resolve) => (faults.written = (kind) => kind === 'commit' && faults.injected > 0 && resolve()));
    try {
      const result = await ctx.start(prepared.flow, prepared.input, { runId: prepared.runId }).result();
      expect(result.error).toMatchObject({ code: 'WEIR_STORE', message: expect.stringContaining('its end could not be recorded') });
      // What the run still had to write (its root's record) goes on its own.
      await later;
    } finally {
      await ctx.close();
    }
    const stored = await readStored(file, prepared.runId);
    expect({ status: stored?.run.status, last: stored?.events.at(-1)?.type }).toEqual({ status: 'running', last: 'step_complete' });
    await finishAfterFault(file, prepared, stored);
  });

  it('refuses a results write to a file replaced under it, and takes it again once the file is back', async () => {
    const file = join(dir, 'results.db');
    const aside = join(dir, 'results-aside.db');
    const results = ResultsManager.sqlite(file);
    try {
      await results.set('a', 1);
      renameSync(file, aside);
      await expect(results.set('b', 2)).rejects.toMatchObject({ code: 'WEIR_STORE_REPLACED', message: expect.stringContaining(`now at "${aside}"`) });
      renameSync(aside, file);
      await results.set('b', 2);
      expect(await results.get('b')).toBe(2);
    } finally {
      await results.close();
    }
  });

  it('retries a step whose commit the store refuses with a plain Error: a retryable WEIR_STORE, as a backend failure', async () => {
    const t = createTestContext({ store: 'sqlite' });
    try {
      const flow = new Flow(new Scripted(), { name: 'plain', retry: { maxAttempts: 2, initialInterval: 1 } });
      t.failStore({ on: 'commit', step: 'plain', error: new Error('the disk is on fire') });
      const result = await t.run(flow, {});
      expect(result.status).toBe('completed');
      expect(result.attempts.map((a) => a.error?.code)).toEqual(['WEIR_STORE', undefined]);
      expect(result.attempts[0]!.error).toMatchObject({ retryable: true, message: expect.stringContaining('the disk is on fire') });
    } finally {
      await t.close();
    }
  });

  it('keeps the checkpointer thread off a file put at the path after the store opened its own', async () => {
    const file = join(dir, 'checkpointed.db');
    const made = new SqliteRunStore(file);
    await made.open();
    await made.close();
    const worker = new Worker(checkpointerEntry(), { workerData: { file, synchronous: 'NORMAL', busyTimeout: 5000, dev: 0, ino: 0 } satisfies CheckpointerData });
    const replies: unknown[] = [];
    worker.on('message', (reply) => replies.push(reply));
    worker.postMessage('checkpoint' satisfies CheckpointerRequest);
    const [code] = (await once(worker, 'exit')) as [number];
    expect({ code, replies }).toEqual({ code: 0, replies: [] });
  });
});

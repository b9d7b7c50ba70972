/**
 * The checks every store-fault case makes: reading a run back from a SQLite file with no context in
 * between, that nothing the run reported was lost, that its failures are coded, and finishing the run
 * after the fault cleared, checked against the reference model.
 */
import { expect } from 'vitest';
import { TEST_HOOKS } from '../../src/context/test-hooks.js';
import { FlowContext, ResultsManager, type FlowResult, type RunHandle, type WeirEvent } from '../../src/index.js';
import type { RunRecord, StepRecord } from '../../src/storage/journal/run-store.js';
import { SqliteRunStore } from '../../src/storage/journal/sqlite/sqlite-run-store.js';
import { clearTimer, setTimer, type Clock } from '../../src/util/clock.js';
import { ANSWER } from '../property/model.js';
import { leavesOf, type Named } from '../property/plan.js';
import { answerAsks, executions, stepOf, STORE_CODES, type Prepared } from './fault-plans.js';
import type { WriteFaults } from './faulty-writes.js';

/** Resolves as `promise` does, or rejects naming `what` once `ms` passed: a hang fails the case. */
export async function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`hang: ${what} did not settle within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A run as a SQLite file holds it, read with no context in between. */
export interface Stored {
  readonly run: RunRecord;
  readonly steps: ReadonlyMap<string, StepRecord>;
  readonly outputs: ReadonlyMap<string, unknown>;
  readonly events: readonly WeirEvent[];
  /** The keys whose wait ended in the store (answered, expired or refused). */
  readonly inputs: ReadonlySet<string>;
}

/** Reads a run from `file`; `undefined` when the file has no such run. */
export async function readStored(file: string, runId: string): Promise<Stored | undefined> {
  const store = new SqliteRunStore(file);
  try {
    const loaded = await store.loadRun(runId);
    if (loaded === undefined) return undefined;
    const outputs = new Map<string, unknown>();
    for (const s of loaded.steps) {
      if (s.hasOutput) outputs.set(s.step, (await store.getOutput(runId, s.step))?.value);
    }
    return { run: loaded.run, steps: new Map(loaded.steps.map((s) => [s.step, s])), outputs, events: await store.readEvents(runId), inputs: new Set((await store.readInputs(runId)).map((entry) => entry.key)) };
  } finally {
    await store.close();
  }
}

/**
 * Never a silent loss: every step the result says completed, or a listener heard complete, is stored
 * completed with the model's output, a completed run is stored completed with its output, and every
 * completion or end a listener heard is stored with the same number. Events in the store are dense.
 * `result` is undefined for a run that parked and has not ended.
 */
export function expectNothingLost(prepared: Prepared, result: FlowResult | undefined, held: readonly WeirEvent[], stored: Stored | undefined): void {
  const { expected, root } = prepared;
  const heard = new Set(held.filter((e) => e.type === 'step_complete').map(stepOf));
  const claimed = leavesOf(root).filter((leaf) => result?.steps[leaf.name]?.status === 'completed' || heard.has(leaf.name));
  if (stored === undefined) {
    // A run whose record could not be stored ran nothing; its events went to listeners only, its end among them.
    expect({ claimed: claimed.map((l) => l.name), held: held.map((e) => e.type), status: result?.status }).toEqual({ claimed: [], held: ['run_failed'], status: 'failed' });
    return;
  }
  for (const leaf of claimed) {
    const want = expected.steps.get(leaf.name)!.output;
    if (result?.steps[leaf.name]?.status === 'completed') expect({ step: leaf.name, output: result.steps[leaf.name]!.output }).toEqual({ step: leaf.name, output: want });
    expect({ step: leaf.name, status: stored.steps.get(leaf.name)?.status, output: stored.outputs.get(leaf.name) }).toEqual({ step: leaf.name, status: 'completed', output: want });
  }
  if (result?.status === 'completed') {
    expect(stored.run.status).toBe('completed');
    expect(stored.run.output ?? assembled(root, stored)).toEqual(expected.output);
  }
  stored.events.forEach((e, i) => expect(e.seq).toBe(i + 1));
  for (const e of held) {
    const kept = stored.events[e.seq - 1];
    expect({ seq: e.seq, type: kept?.type, step: kept === undefined ? undefined : stepOf(kept) }).toEqual({ seq: e.seq, type: e.type, step: stepOf(e) });
  }
}

/** A composite's output from its children's stored outputs. */
function assembled(node: Named, stored: Stored): unknown {
  if (node.plan.kind === 'leaf') return stored.outputs.get(node.name);
  return Object.fromEntries(node.children.map((c) => [c.name, assembled(c, stored)]));
}

/** Far enough past any lease of a context before that a context on this clock finds its runs stale. */
const LATER = 3_600_000;

/**
 * After the fault cleared: a new context on `file`, on a clock past the faulty context's leases,
 * takes the run to its end (`recover()` for a run left running, `resume` for a failed one, answers
 * for a parked one, a new start for a run never stored), answering its asks. It ends exactly as the
 * model says, no step whose completion was stored runs again, and the stored events are dense, one
 * start, ends each followed by a resume. With `faults`, the first context's store has them: what it
 * could not do fails coded (a rejection, a failed run, a run not taken), and a second context, whose
 * store works, goes on from what the first left.
 */
export async function finishAfterFault(file: string, prepared: Prepared, stored: Stored | undefined, faults?: WriteFaults): Promise<FlowResult> {
  const first = faults === undefined ? undefined : await finishOnce(file, prepared, stored, 1, faults);
  if (first !== undefined) return first;
  return (await finishOnce(file, prepared, faults === undefined ? stored : await readStored(file, prepared.runId), 2))!;
}

/** One context's go at finishing the run; `undefined` when its faults kept it from finishing (coded). */
async function finishOnce(file: string, prepared: Prepared, stored: Stored | undefined, round: number, faults?: WriteFaults): Promise<FlowResult | undefined> {
  const clock: Clock = { now: () => Date.now() + round * LATER, setTimer, clearTimer };
  const hooks = faults === undefined ? { clock } : { clock, wrapStore: faults.wrap.bind(faults) };
  const ctx = new FlowContext({ results: ResultsManager.sqlite(file), [TEST_HOOKS]: hooks } as never);
  const { runId, expected } = prepared;
  ctx.register(prepared.flow);
  const mark = executions(prepared).length;
  const refused: unknown[] = [];
  answerAsks(ctx, prepared, refused);
  const faulty = (): boolean => faults !== undefined && faults.injected > 0;
  /** A refusal the faults explain: coded, and there are faults. */
  const faulted = (error: unknown): undefined => {
    if (!faulty()) throw error;
    expect(error).toMatchObject({ code: expect.toBeOneOf([...STORE_CODES]) });
    return undefined;
  };
  let result: FlowResult | undefined;
  try {
    result = await goOn(ctx, prepared, stored, faulted, faulty);
  } finally {
    // Closed first, so what it still had to write is written (or refused) before the file is read.
    await bounded(ctx.close(), 15_000, 'close()');
  }
  const now = await readStored(file, runId);
  expect(executions(prepared, mark).filter((name) => stored?.steps.get(name)?.status === 'completed'), 'steps whose completion was stored ran again').toEqual([]);
  if (faulty()) {
    // Never a silent loss: a run it said completed is stored completed, its end included.
    if (result?.status === 'completed') expect(endedAs(now, 'completed')).toBe(true);
    // The faults failed it, coded, or kept its end from the store (a failed run keeps its own error then): the next context goes on.
    if (result === undefined || storeFailed(result) || !endedAs(now, result.status)) {
      expect(result?.status ?? 'failed').toBe('failed');
      return undefined;
    }
  }
  expectModel(prepared, result!);
  for (const error of refused) faulted(error);
  expect(brokenLog(now!.events, expected.status), now!.events.map((e) => `${e.seq} ${e.type} ${stepOf(e) ?? ''}`).join('\n')).toBeUndefined();
  return result;
}

/** Whether the stored run ended with `status`, its end event last. */
function endedAs(stored: Stored | undefined, status: string): boolean {
  return stored?.run.status === status && stored.events.at(-1)?.type === `run_${status === 'completed' ? 'complete' : status}`;
}

/** The keys the steps of a stored run wait on. */
function waitKeys(stored: Stored): string[] {
  return [...stored.steps.values()].flatMap((s) => s.waitingFor ?? []).map((w) => w.key);
}

/** Takes the run on in `ctx` as its stored status says, to its result; `undefined` when a fault refused that. */
async function goOn(ctx: FlowContext, prepared: Prepared, stored: Stored | undefined, faulted: (error: unknown) => undefined, faulty: () => boolean): Promise<FlowResult | undefined> {
  const { runId, flow } = prepared;
  let handle: RunHandle | undefined;
  const status = stored?.run.status;
  if (status === undefined) handle = ctx.start(flow, prepared.input, { runId, mode: prepared.mode });
  else if (status === 'waiting') {
    // Parked: recover() goes on with it if a wait of it was answered, else answers do.
    const handles = await bounded(ctx.recover(), 10_000, 'recover()');
    if (handles.length === 0) {
      // A faulty store may have kept recover() from taking a run whose answer is stored: a new answer is refused then, as answered.
      if (faulty() && [...stored!.inputs].some((key) => waitKeys(stored!).includes(key))) return undefined;
      for (const key of waitKeys(stored!)) await ctx.submitInput(runId, key, ANSWER).catch(faulted);
    }
    handle = await ctx.handle(runId);
  } else if (status === 'running') {
    const handles = await bounded(ctx.recover(), 10_000, 'recover()');
    // A run the faults kept recover() from taking is warned of, and left for the next.
    if (handles.length === 0 && faulty()) return undefined;
    expect(handles.map((h) => h.runId)).toEqual([runId]);
    handle = handles[0]!;
  } else if (status === 'completed') handle = await ctx.handle(runId);
  else handle = await bounded(ctx.resume(runId), 10_000, 'resume()').catch(faulted);
  if (handle === undefined) return undefined;
  const result = await bounded(handle.result(), 15_000, 'the run after the fault');
  if (status !== 'running' || result.status !== 'failed' || !storeFailed(result) || faulty()) return result;
  // A step the fault failed for good stays failed after a recovery, as the faulty context said; resume runs it again.
  // Its own writes may meet this context's faults too (the lease it takes): refused, coded, for the next context.
  const resumed = await bounded(ctx.resume(runId), 10_000, 'resume() after recover()').catch(faulted);
  return resumed === undefined ? undefined : bounded(resumed.result(), 15_000, 'the run resumed after the fault');
}

/** Whether a store error failed the run or one of its steps. */
function storeFailed(result: FlowResult): boolean {
  const codes: readonly (string | undefined)[] = STORE_CODES;
  return codes.includes(result.error?.code) || Object.values(result.steps).some((s) => codes.includes(s.error?.code));
}

/** The run's steps, outputs, errors and status are the model's (attempts aside: a fault costs attempts). */
export function expectModel(prepared: Prepared, result: FlowResult): void {
  const { expected, root } = prepared;
  const names = [...expected.steps.keys()].filter((name) => name !== root.name);
  const actual = new Map(names.map((name) => {
    const s = result.steps[name];
    return [name, { status: s?.status, output: s?.output, code: s?.error?.code }];
  }));
  const want = new Map(names.map((name) => {
    const s = expected.steps.get(name)!;
    return [name, { status: s.status, output: s.output, code: s.codes === undefined ? s.code : expect.toBeOneOf([...s.codes]) }];
  }));
  expect(actual).toEqual(want);
  expect(result.status).toBe(expected.status);
  if (expected.status === 'completed') expect(result.output).toEqual(expected.output);
  else expect(expected.failedLeaves).toContain(result.error?.step);
}

const RUN_END = new Set(['run_complete', 'run_failed', 'run_cancelled']);

/** The first rule a log that went through faults and resumes breaks: dense, one start, each end but the last followed by a resume, nothing of a step after its completion. */
export function brokenLog(events: readonly WeirEvent[], status: string): string | undefined {
  for (let i = 0; i < events.length; i++) if (events[i]!.seq !== i + 1) return `seq ${events[i]!.seq} at position ${i + 1}`;
  if (events[0]?.type !== 'run_start' || events.filter((e) => e.type === 'run_start').length !== 1) return 'not one run_start, first';
  const last = events.at(-1)!;
  if (last.type !== (status === 'completed' ? 'run_complete' : 'run_failed')) return `the log ends with ${last.type}`;
  for (let i = 0; i < events.length - 1; i++) {
    if (RUN_END.has(events[i]!.type) && events[i + 1]!.type !== 'run_resumed') return `${events[i]!.type} (seq ${i + 1}) followed by ${events[i + 1]!.type}`;
  }
  const completed = new Set<string>();
  for (const e of events) {
    const step = stepOf(e);
    if (step === undefined || e.type.startsWith('run_')) continue;
    if (completed.has(step)) return `${e.type} of "${step}" (seq ${e.seq}) after its completion`;
    if (e.type === 'step_complete') completed.add(step);
  }
  return undefined;
}

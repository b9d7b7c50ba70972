/**
 * Manual control of stored runs: resume in place (from a step), retry as a new run, skip a step,
 * cancel. Each takes the run's free lease first, so of two contexts doing so at once exactly one
 * goes on; what it writes goes through the run's journal.
 */
import { randomUUID } from 'node:crypto';
import { CancelledError, ErrorCode, FlowError } from '../errors/errors.js';
import type { CompiledGraph, GraphNode } from '../graph/compile.js';
import type { Answers } from '../human/answers.js';
import { FlowStatus, RunMode } from '../model/status.js';
import type { Run } from '../run/run.js';
import { checkSkip } from '../run/skip.js';
import type { LoadedRun, StepRecord } from '../storage/journal/run-store.js';
import type { ContextCore } from '../context/context-core.js';
import { HOST } from '../util/host.js';
import { isStale } from './history.js';
import { releaseLease, takeFreeLeaseOrFail, underLease } from './leases.js';
import { flowChanged, restoreRun } from './restore.js';

/** Resume, retry, skip and cancel of runs, here or only in the store. */
export class ManualControl {
  readonly #core: ContextCore;
  readonly #answers: Answers;

  constructor(core: ContextCore, answers: Answers) {
    this.#core = core;
    this.#answers = answers;
  }

  /** Goes on with a failed or cancelled run in place (see `FlowContext.resume`). */
  async resume(runId: string, from: string | undefined): Promise<Run> {
    const core = this.#core;
    const loaded = await this.#loadEnded(runId, 'resume');
    if (loaded.run.status === FlowStatus.COMPLETED && from === undefined) {
      throw new FlowError(`cannot resume run "${runId}": it completed; pass { from } to run steps again`, { code: ErrorCode.RUN_STATE });
    }
    const graph = core.registry.graphFor(loaded.run);
    if (graph.fingerprint !== loaded.run.fingerprint && core.settings.onFlowChange === 'fail') throw flowChanged(loaded.run);
    if (from !== undefined) stepOf(graph, runId, from);
    const token = await takeFreeLeaseOrFail(core, loaded.run, `resume run "${runId}"`);
    await underLease(core, runId, token, async () => {
      // Waits that expired (or were refused) ended those attempts, not the questions: asked again, they wait again.
      const expired = (await core.store.readInputs(runId)).filter((e) => e.outcome !== 'answered').map((e) => e.key);
      if (expired.length > 0) await core.journalOf(runId, token, loaded.run.lastSeq).clearInputs(expired);
    });
    return restoreRun(core, graph, loaded, token, { reason: 'resumed', from, rerunEnded: true });
  }

  /** Starts a new run of an ended run's flow with the same input, each recording the other (see `FlowContext.retry`). */
  async retry(runId: string): Promise<Run> {
    const core = this.#core;
    const loaded = await this.#loadEnded(runId, 'retry');
    const graph = core.registry.graphFor(loaded.run);
    const old = loaded.run;
    if (old.retriedBy !== undefined) {
      throw new FlowError(`cannot retry run "${runId}": run "${old.retriedBy}" already retries it; retry that one`, { code: ErrorCode.RUN_STATE });
    }
    const retryId = randomUUID();
    const token = await takeFreeLeaseOrFail(core, old, `retry run "${runId}"`);
    try {
      await core.journalOf(runId, token, old.lastSeq).patchNow({ retriedBy: retryId, updatedAt: this.#core.clock.now() });
    } finally {
      await releaseLease(core, runId, token);
    }
    core.assertOpen('retry a run');
    const humanInLoop = old.mode === RunMode.INTERACTIVE || (old.mode === RunMode.HYBRID && old.humanInLoop);
    return core.runs.launch(graph, old.input, { runId: retryId, mode: old.mode, humanInLoop, timeout: undefined, signal: undefined, concurrency: Infinity, retryOf: runId });
  }

  /** Marks a step done with `output` (see `FlowContext.skip`). */
  async skip(runId: string, step: string, output: unknown): Promise<void> {
    const found = this.#core.runs.live(runId);
    const live = found instanceof Promise ? await found : found;
    if (live !== undefined) {
      await live.skip(step, output);
      return;
    }
    return this.#core.chore(this.#skipStored(runId, step, output));
  }

  async #skipStored(runId: string, step: string, output: unknown): Promise<void> {
    const core = this.#core;
    const loaded = await this.#loadEnded(runId, 'skip a step of', true);
    if (loaded.run.status === FlowStatus.COMPLETED) {
      throw new FlowError(`cannot skip "${step}" in run "${runId}": the run completed`, { code: ErrorCode.RUN_STATE });
    }
    const graph = core.registry.graphFor(loaded.run);
    const node = stepOf(graph, runId, step);
    const record = loaded.steps.find((s) => s.step === step);
    const value = checkSkip(node, runId, record?.status, output);
    if (loaded.run.status === FlowStatus.WAITING) {
      // A run waiting for input goes on once the step is skipped (its other waits, if any, wait again).
      const run = await this.#answers.continueWaiting(loaded, 'resumed', {
        apply: (token, fresh) => this.#recordSkip(fresh, token, step, fresh.steps.find((s) => s.step === step), value),
      });
      if (run === undefined) throw new FlowError(`cannot skip "${step}" in run "${runId}": another context took the run first; try again`, { code: ErrorCode.RUN_STATE });
      return;
    }
    const token = await takeFreeLeaseOrFail(core, loaded.run, `skip "${step}" in run "${runId}"`);
    try {
      await this.#recordSkip(loaded, token, step, record, value);
    } finally {
      await releaseLease(core, runId, token);
    }
  }

  /** Commits the skipped step's output, record and `step_complete` through the run's journal, under its lease. */
  async #recordSkip(loaded: LoadedRun, token: number, step: string, record: StepRecord | undefined, value: unknown): Promise<void> {
    const core = this.#core;
    const { runId } = loaded.run;
    // Read again under the lease: the seq to continue is the one stored now.
    const journal = core.journalOf(runId, token, (await core.load(runId)).run.lastSeq);
    const at = this.#core.clock.now();
    try {
      await journal.complete(
        { runId, step, status: FlowStatus.COMPLETED, attempts: record?.attempts ?? [], ...(record?.startTime === undefined ? {} : { startTime: record.startTime }), endTime: at, hasOutput: true, updatedAt: at },
        value,
        { type: 'step_complete', runId, seq: journal.nextSeq(), time: at, step, attempt: record?.attempts.length ?? 0, duration: 0, skipped: true },
        { updatedAt: at },
      );
    } finally {
      // Nothing more is written under this lease, which the caller gives back next.
      journal.stop(new FlowError(`run "${runId}": the skip of "${step}" is done`, { code: ErrorCode.RUN_STATE }));
    }
  }

  /** Cancels a run (see `FlowContext.cancel`); resolves once it has ended as `cancelled`. */
  async cancel(runId: string, reason?: string): Promise<void> {
    const core = this.#core;
    const found = core.runs.live(runId);
    const run = found instanceof Promise ? await found : found;
    if (run !== undefined) {
      run.cancel(new CancelledError(reason ?? `run "${runId}" was cancelled`));
      await run.ended();
      return;
    }
    const loaded = await core.load(runId);
    if (loaded.run.status === FlowStatus.WAITING) {
      // Waiting for input here or elsewhere: taken, and cancelled.
      const cancelled = await core.chore(this.#answers.continueWaiting(loaded, 'resumed', { cancelWith: new CancelledError(reason ?? `run "${runId}" was cancelled`) }));
      if (cancelled !== undefined) {
        await cancelled.ended();
        return;
      }
      return this.cancel(runId, reason);
    }
    throw new FlowError(
      loaded.run.status === FlowStatus.RUNNING
        ? `cannot cancel run "${runId}": another context runs it (${loaded.run.owner?.processId ?? 'its owner is gone'}); cancel it there, or recover it here first`
        : `cannot cancel run "${runId}": it has ended (${loaded.run.status})`,
      { code: ErrorCode.RUN_STATE },
    );
  }

  /** Loads a run that no one runs: for resume, retry and skip. */
  async #loadEnded(runId: string, action: string, waitingToo = false): Promise<LoadedRun> {
    const core = this.#core;
    const found = core.runs.live(runId);
    if ((found instanceof Promise ? await found : found) !== undefined) throw new FlowError(`cannot ${action} run "${runId}": it is running in this context`, { code: ErrorCode.RUN_STATE });
    const loaded = await core.load(runId);
    const { run } = loaded;
    if (run.status === FlowStatus.RUNNING) {
      const stale = isStale(run, this.#core.clock.now(), HOST);
      throw new FlowError(
        `cannot ${action} run "${runId}": it is running${stale ? ' but its owner is gone; recover() takes it over' : ` in another context (${run.owner?.processId ?? '?'})`}`,
        { code: ErrorCode.RUN_STATE },
      );
    }
    if (run.status === FlowStatus.WAITING && !waitingToo) {
      throw new FlowError(`cannot ${action} run "${runId}": it waits for input; answer it (submitInput), skip the waiting step, or cancel it`, { code: ErrorCode.RUN_STATE });
    }
    return loaded;
  }
}

/** A step of a run's graph by name. @throws FlowError `WEIR_INVALID_OPTIONS` naming the steps it has. */
function stepOf(graph: CompiledGraph, runId: string, name: string): GraphNode {
  const node = graph.byName.get(name);
  if (node === undefined || (node.index === 0 && node.processor === undefined)) {
    const known = graph.nodes.filter((n) => n.index !== 0 || n.processor !== undefined).map((n) => `"${n.name}"`).join(', ');
    throw new FlowError(`run "${runId}" has no step "${name}" (its steps: ${known})`, { code: ErrorCode.INVALID_OPTIONS });
  }
  return node;
}

/**
 * Work sharing: runs queued for any worker (`ctx.enqueue`) and runs whose owner was lost, taken by
 * the contexts that recover (`recover: true`) on the same store. On a store many hosts share
 * (Postgres, `RunStore.claims`) they are claimed in batches, each by exactly one worker, woken by
 * the store's notices and by a poll when a notice is lost; a worker announces the flow versions it
 * runs, so runs of other versions stay for the workers that have them. On the other stores, queued
 * runs are taken one by one with the lease's compare-and-set.
 */
import { ErrorCode, FlowError, WarningCode } from '../errors/errors.js';
import type { Answers } from '../human/answers.js';
import type { AnyFlow } from '../model/flow.js';
import { FlowStatus } from '../model/status.js';
import type { Run } from '../run/run.js';
import type { ClaimableFlow, RunRecord, StoreNotice } from '../storage/journal/run-store.js';
import { messageOf } from '../util/message-of.js';
import type { TimerHandle } from '../util/clock.js';
import type { ContextCore } from '../context/context-core.js';
import { releaseLease } from './leases.js';
import { restoreRun } from './restore.js';
import { versionOf } from './versions.js';

/** Runs claimed per round trip. */
const CLAIM_BATCH = 100;

/** What the rest of the context does with a run taken over (not queued): see `Recovery.goOn`. */
export type TakeOver = (run: RunRecord, token: number) => Promise<Run | undefined>;

/** Options of `ctx.enqueue`, validated. */
export interface EnqueueSettings {
  readonly runId: string;
  readonly mode: RunRecord['mode'];
  readonly humanInLoop: boolean;
  readonly priority: number;
  readonly concurrencyKey: string | undefined;
}

/** A context's part in sharing runs with the other contexts on its store. */
export class WorkSharing {
  readonly #core: ContextCore;
  readonly #answers: Answers;
  readonly #takeOver: TakeOver;
  #unsubscribe: (() => void) | undefined;
  #poll: TimerHandle | undefined;
  #announce: TimerHandle | undefined;
  #claiming: Promise<void> | undefined;
  /** The claims, one after the other. */
  #serial: Promise<unknown> = Promise.resolve();
  /** The register's writes, one after the other. */
  #announcing: Promise<void> = Promise.resolve();
  #again = false;
  #started = false;
  /** Set when the last claim found this context holding `queue.concurrency` runs. */
  #full = false;

  constructor(core: ContextCore, answers: Answers, takeOver: TakeOver) {
    this.#core = core;
    this.#answers = answers;
    this.#takeOver = takeOver;
  }

  /** The flows this context runs, at their versions, with their limits on queued runs. */
  get flows(): ClaimableFlow[] {
    return this.#core.registry.registeredFlows.map((flow) => claimableOf(this.#core, flow));
  }

  /**
   * Stores a run for whichever worker takes it first (this context too, if it recovers).
   * @throws what `RunStore.createRun` throws: `WEIR_RUN_CONFLICT` for an id that exists.
   */
  async enqueue(flow: AnyFlow, input: unknown, settings: EnqueueSettings): Promise<void> {
    const core = this.#core;
    const graph = core.registry.graphOf(flow);
    const at = core.clock.now();
    await core.store.createRun({
      runId: settings.runId,
      flow: graph.root.name,
      fingerprint: graph.fingerprint,
      version: graph.version,
      input,
      mode: settings.mode,
      humanInLoop: settings.humanInLoop,
      status: FlowStatus.PENDING,
      createdAt: at,
      updatedAt: at,
      leaseExpiresAt: 0,
      ...(settings.priority === 0 ? {} : { priority: settings.priority }),
      ...(settings.concurrencyKey === undefined ? {} : { concurrencyKey: settings.concurrencyKey }),
    });
    // A worker here need not wait for the notice or the poll.
    if (this.#started) this.wake();
  }

  /** Starts taking runs: listens for the store's notices, polls, announces this worker. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#unsubscribe = this.#core.store.claims?.subscribe((notice) => this.#heard(notice));
    this.#schedulePoll();
    this.announce();
  }

  /** Stops taking runs; with `retire`, leaves the register of workers too (else its entry runs out). */
  stop(retire: boolean): Promise<void> {
    const started = this.#started;
    this.#started = false;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    const clock = this.#core.clock;
    clock.clearTimer(this.#poll);
    clock.clearTimer(this.#announce);
    this.#poll = undefined;
    this.#announce = undefined;
    const claims = this.#core.store.claims;
    if (!retire || !started || claims === undefined) return Promise.resolve();
    const claiming = this.#claiming ?? Promise.resolve();
    return Promise.all([claiming, this.#announcing])
      .then(() => claims.retireWorker(this.#core.owner))
      .catch(() => undefined);
  }

  /** Claims now (or right after the claim under way), whatever the poll's schedule. */
  wake(): void {
    if (!this.#started || this.#core.state !== 'open') return;
    if (this.#claiming !== undefined) {
      this.#again = true;
      return;
    }
    this.#claiming = this.#core
      .chore(this.claim())
      .then(() => undefined)
      .catch((error: unknown) => {
        if (!(error instanceof FlowError && error.code === ErrorCode.CONTEXT_CLOSED)) {
          process.emitWarning(`weir: taking runs from the store failed: ${messageOf(error)}`, { code: WarningCode.RECOVERY });
        }
      })
      .finally(() => {
        this.#claiming = undefined;
        if (this.#again) {
          this.#again = false;
          this.wake();
        }
      });
  }

  /**
   * Records this worker and its flow versions in the store's register, now and every third of a
   * lease; one write at a time, each with the flows registered when it goes, so the last one wins.
   */
  announce(): void {
    const core = this.#core;
    const claims = core.store.claims;
    if (!this.#started || claims === undefined) return;
    core.clock.clearTimer(this.#announce);
    const leaseMs = core.settings.leaseMs;
    this.#announcing = this.#announcing
      .then(() => (this.#started ? claims.announceWorker(core.owner, this.flows, core.clock.now() + leaseMs) : undefined))
      .catch((error: unknown) => {
        process.emitWarning(`weir: announcing this worker failed: ${messageOf(error)}`, { code: WarningCode.LEASE_RENEWAL });
      });
    void core.chore(this.#announcing);
    this.#announce = core.clock.setTimer(() => this.announce(), Math.max(10, Math.floor(leaseMs / 3)), { unref: true, background: true });
  }

  /**
   * Takes what this context can run now: stale runs of its flows at their versions and, while it
   * holds fewer runs than `queue.concurrency`, queued ones; batch after batch until none is left.
   * @returns the runs it went on with.
   */
  claim(): Promise<Run[]> {
    // One claim at a time: each counts the runs the one before launched.
    const claimed = this.#serial.then(() => this.#claimNow());
    this.#serial = claimed.catch(() => undefined);
    return claimed;
  }

  async #claimNow(): Promise<Run[]> {
    const core = this.#core;
    const taken: Run[] = [];
    const flows = this.flows;
    if (flows.length === 0) return taken;
    for (;;) {
      if (core.state !== 'open') return taken;
      const free = core.settings.queue.concurrency - core.runs.size;
      // Full: queued runs may wait for one of these to end.
      this.#full = free <= 0;
      const limit = free > 0 ? Math.min(CLAIM_BATCH, free) : CLAIM_BATCH;
      const claimed =
        core.store.claims === undefined
          ? await this.#claimQueuedOneByOne(free > 0 ? limit : 0)
          : await core.store.claims.claimRuns(core.owner, { flows, limit, leaseMs: core.settings.leaseMs, now: core.clock.now(), queued: free > 0, skip: [...core.runs.keys()] });
      const runs = await Promise.allSettled(claimed.map((run) => this.#goOn(run)));
      for (const outcome of runs) {
        if (outcome.status === 'fulfilled') {
          if (outcome.value !== undefined) taken.push(outcome.value);
        } else if (!(outcome.reason instanceof FlowError && outcome.reason.code === ErrorCode.CONTEXT_CLOSED)) {
          process.emitWarning(`weir: a claimed run could not go on: ${messageOf(outcome.reason)}`, { code: WarningCode.RECOVERY });
        }
      }
      if (claimed.length < limit) return taken;
    }
  }

  /** Goes on with a claimed run: one that never started (no event yet) begins here, the others are taken over. */
  async #goOn(run: RunRecord): Promise<Run | undefined> {
    const core = this.#core;
    if (core.state !== 'open' || core.runs.has(run.runId)) {
      await releaseLease(core, run.runId, run.leaseToken);
      return undefined;
    }
    // One that never started and never had an owner begins here. One taken from a lost owner is taken
    // over, even before its first event (its log then begins run_start, run_resumed, as a recovery pass
    // would write it), and one that lost its owners too often fails there (a poison run).
    if (run.lastSeq > 0 || run.recoveries > 0) return this.#takeOver(run, run.leaseToken);
    const flow = core.registry.registered(run.flow);
    if (flow === undefined) {
      await releaseLease(core, run.runId, run.leaseToken);
      return undefined;
    }
    // The claim read the whole record, and a run that never started has no step records.
    return restoreRun(core, core.registry.graphOf(flow), { run, steps: [] }, run.leaseToken, { reason: 'queued' });
  }

  /**
   * Queued runs on a store without claims: listed, highest priority first, and taken one by one
   * with the lease's compare-and-set (status `running` committed under it). The flows' limits hold
   * for this context's runs.
   */
  async #claimQueuedOneByOne(limit: number): Promise<RunRecord[]> {
    const core = this.#core;
    if (limit <= 0) return [];
    const flows = new Map(this.flows.map((f) => [f.flow, f]));
    const page = await core.store.listRuns({ status: FlowStatus.PENDING, limit: 500, now: core.clock.now() });
    const candidates = page.runs
      .filter((run) => flows.get(run.flow)?.version === versionOf(run))
      .sort((a, b) => (b.priority ?? 0) - (a.priority ?? 0) || a.createdAt - b.createdAt || (a.runId < b.runId ? -1 : 1));
    const running = new Map<string, number>();
    const keyed = new Map<string, number>();
    const count = (counts: Map<string, number>, key: string): void => void counts.set(key, (counts.get(key) ?? 0) + 1);
    const keyOf = (flow: string, concurrencyKey: string | undefined): string | undefined => (concurrencyKey === undefined ? undefined : `${flow}\u001f${concurrencyKey}`);
    for (const live of core.runs.values()) {
      const name = live.graph.root.name;
      count(running, name);
      const key = keyOf(name, live.concurrencyKey);
      if (key !== undefined) count(keyed, key);
    }
    const claimed: RunRecord[] = [];
    for (const run of candidates) {
      if (claimed.length >= limit) break;
      const flow = flows.get(run.flow)!;
      const key = keyOf(run.flow, run.concurrencyKey);
      if (flow.concurrency !== undefined && (running.get(run.flow) ?? 0) >= flow.concurrency) continue;
      if (key !== undefined && flow.keyConcurrency !== undefined && (keyed.get(key) ?? 0) >= flow.keyConcurrency) continue;
      const token = await core.store.acquireLease(run.runId, core.owner, core.settings.leaseMs, core.clock.now(), { ifToken: run.leaseToken });
      if (token === undefined) continue;
      try {
        // The listing may be old: a run another worker took, ran to its end and released since still
        // has the token listed. Under the lease just taken nobody else writes the run, so this read decides.
        if ((await core.store.loadRun(run.runId))?.run.status !== FlowStatus.PENDING) {
          await releaseLease(core, run.runId, token);
          continue;
        }
        await core.store.commit({ runId: run.runId, leaseToken: token, run: { status: FlowStatus.RUNNING, updatedAt: core.clock.now() } });
      } catch (error) {
        // Left queued for the next look (here or elsewhere); the runs taken so far go on.
        await releaseLease(core, run.runId, token);
        process.emitWarning(`weir: queued run "${run.runId}" could not be taken: ${messageOf(error)}`, { code: WarningCode.RECOVERY });
        continue;
      }
      count(running, run.flow);
      if (key !== undefined) count(keyed, key);
      claimed.push({ ...run, status: FlowStatus.RUNNING, leaseToken: token });
    }
    return claimed;
  }

  #heard(notice: StoreNotice): void {
    if (notice.type === 'input') {
      const run = notice.runId;
      if (!this.#core.runs.has(run) && !this.#answers.scheduled(run)) void this.#core.chore(this.#answers.review(run));
      return;
    }
    // A run that ended somewhere frees a slot only where a limit holds runs back: a flow's, or this context's.
    if (notice.type === 'ended' && !this.#heldBack()) return;
    // New work, a freed slot, or notices missed while disconnected: look.
    this.wake();
  }

  /** Whether queued runs may be waiting on a limit: this context was full when it last looked, or a flow here has one. */
  #heldBack(): boolean {
    return this.#full || this.flows.some((f) => f.concurrency !== undefined || f.keyConcurrency !== undefined);
  }

  #schedulePoll(): void {
    const core = this.#core;
    this.#poll = core.clock.setTimer(
      () => {
        this.#poll = undefined;
        if (!this.#started || core.state !== 'open') return;
        this.wake();
        this.#schedulePoll();
      },
      core.settings.queue.pollInterval,
      { unref: true, background: true },
    );
  }
}

/** A registered flow as a worker runs it. */
function claimableOf(core: ContextCore, flow: AnyFlow): ClaimableFlow {
  const graph = core.registry.graphOf(flow);
  const config = flow.config as { readonly concurrency?: number; readonly keyConcurrency?: number };
  return {
    flow: graph.root.name,
    version: graph.version,
    ...(config.concurrency === undefined ? {} : { concurrency: config.concurrency }),
    ...(config.keyConcurrency === undefined ? {} : { keyConcurrency: config.keyConcurrency }),
  };
}

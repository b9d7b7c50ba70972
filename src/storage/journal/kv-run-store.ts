/**
 * The run journal over any key-value `ResultsBackend` (a directory, any Keyv store). Without
 * multi-key transactions, what must be atomic shares one record, and the write order makes a crash
 * between two writes lose at most the events of the commit it interrupted. The records and their
 * keys are in `kv-records`, the event chunks in `kv-event-chunks`, the per-run locks in `kv-run-lock`.
 *
 * A commit writes, in this order: (1) the run record, only if the batch names steps it does not
 * list yet, adding their names; (2) each step record with its output; (3) the event chunks, in seq
 * order; (4) the run record with the patch and the new `lastSeq`. A crash after (1) leaves a name
 * without a record (read as absent); after (2) the steps are durable but the batch's events are
 * lost; after (3) the events are stored but the run record lags: readers recompute `lastSeq` from
 * the chunks, and the run patch (a status) is lost and must be re-derived from the steps.
 *
 * `putInput` reads the run record and the entries, then writes the entries once: a crash loses at
 * most the entry being added. Its first-come-first-served check holds within a process, under the
 * run's lock (shared by every store over the same backend scope); across processes a key-value
 * store offers no compare-and-set, so two processes answering the same key at once may both be
 * told they won, and the last write is the one kept. `prune` deletes the entries before the run
 * record.
 * @internal
 */
import { ErrorCode, FlowError } from '../../errors/errors.js';
import type { WeirEvent } from '../../model/events.js';
import { encode } from '../codec.js';
import type { ResultsBackend } from '../kv/backend.js';
import { EventChunks } from './kv-event-chunks.js';
import { encodeStep, KvRecords, type StoredInputs, type StoredRun } from './kv-records.js';
import { RunLocks } from './kv-run-lock.js';
import type {
  AcquireOptions,
  CommitBatch,
  InputEntry,
  LeaseEntry,
  ListRunsQuery,
  LoadedRun,
  NewRunRecord,
  PruneOptions,
  RenewResult,
  RunOwner,
  RunPage,
  RunRecord,
  RunStore,
  StoredOutput,
} from './run-store.js';
import {
  checkBatch,
  checkEvents,
  closedError,
  conflictError,
  FINISHED,
  leaseLostError,
  mayAcquire,
  raisesToken,
  notFoundError,
  pageRuns,
  patchRun,
  wrapError,
} from './store-support.js';

/** Where a KvRunStore keeps its records. */
export interface KvRunStoreOptions {
  /** Run records; `listRuns` iterates it, so a backend of its own keeps listing cheap. */
  readonly runs: ResultsBackend;
  /** Inputs, step records with outputs, and event chunks. @default runs */
  readonly data?: ResultsBackend;
}

/** A `RunStore` over key-value backends: slower than SQLite, and just as safe against a crash. @internal */
export class KvRunStore implements RunStore {
  readonly kind = 'kv';
  readonly durable = true;
  readonly #records: KvRecords;
  readonly #events: EventChunks;
  /** Per run, the tail of its writes: shared by every store over the same backend in this process. */
  readonly #locks: RunLocks;
  /** The leases this store gave out, so a racing acquirer with the same token is noticed. */
  readonly #held = new Map<string, { token: number; processId: string }>();
  #closed = false;

  constructor(options: KvRunStoreOptions) {
    this.#records = new KvRecords(options.runs, options.data ?? options.runs);
    this.#events = new EventChunks(this.#records);
    this.#locks = new RunLocks(options.runs.scope);
  }

  async createRun(record: NewRunRecord, events: readonly WeirEvent[] = []): Promise<RunRecord> {
    this.#check(`create run ${JSON.stringify(record.runId)}`);
    const runId = record.runId;
    const lastSeq = checkEvents(this.kind, runId, 0, events);
    const { input, ...rest } = record;
    const stored: StoredRun = { ...rest, leaseToken: record.leaseToken ?? 1, recoveries: record.recoveries ?? 0, lastSeq, steps: [] };
    const inputText = encode(input, `input of run ${runId}`);
    const runText = encode(stored, `run ${runId}`);
    const encoded = events.map((e) => encode(e, `event ${e.seq}`));
    return this.#locked(runId, 'create run', async () => {
      if (await this.#records.hasRun(runId)) throw conflictError(this.kind, runId);
      // The run record goes last: until it is written, the run does not exist.
      await this.#records.writeInputText(runId, inputText);
      const tail = await this.#events.append(runId, { token: stored.leaseToken, chunk: 0, encoded: [], lastSeq: 0 }, events, encoded);
      await this.#records.writeRunText(runId, runText);
      this.#events.keep(runId, tail);
      if (record.owner !== undefined) this.#held.set(runId, { token: stored.leaseToken, processId: record.owner.processId });
      const { steps: _steps, ...run } = stored;
      return { ...run, input };
    });
  }

  async commit(batch: CommitBatch): Promise<void> {
    const runId = batch.runId;
    this.#check(`commit to run ${JSON.stringify(runId)}`);
    checkBatch(this.kind, batch);
    // Everything is serialised before the first write, so a bad value writes nothing.
    const outputs = new Map<string, unknown>();
    for (const o of batch.outputs ?? []) outputs.set(o.step, o.value);
    const stepTexts = (batch.steps ?? []).map(
      (record) => [record.step, encodeStep(runId, record, outputs.has(record.step) ? { value: outputs.get(record.step) } : undefined)] as const,
    );
    const events = batch.events ?? [];
    const eventTexts = events.map((e) => encode(e, `event ${e.seq}`));
    if (batch.run !== undefined) encode(batch.run, `run ${runId}`);
    await this.#locked(runId, 'commit', async () => {
      try {
        await this.#commitLocked(batch, stepTexts, eventTexts);
      } catch (error) {
        // A write cut short may have stored part of the batch: read the tail afresh next time.
        this.#events.forget(runId);
        throw error;
      }
    });
  }

  async #commitLocked(batch: CommitBatch, stepTexts: readonly (readonly [string, string])[], eventTexts: readonly string[]): Promise<void> {
    const runId = batch.runId;
    const events = batch.events ?? [];
    const run = await this.#records.readRun(runId);
    if (run === undefined) throw notFoundError(this.kind, runId);
    this.#fence(run, batch.leaseToken);
    const tail = await this.#events.tail(runId, run);
    checkEvents(this.kind, runId, tail.lastSeq, events);
    const known = new Set(run.steps);
    const added = stepTexts.map(([name]) => name).filter((name) => !known.has(name));
    let names = run.steps;
    if (added.length > 0) {
      names = [...run.steps, ...new Set(added)];
      await this.#records.writeRun({ ...run, steps: names });
    }
    for (const [name, text] of stepTexts) await this.#records.writeStepText(runId, name, text);
    const next = await this.#events.append(runId, tail, events, eventTexts);
    this.#events.keep(runId, next);
    const { steps: _steps, ...plain } = run;
    const patched = patchRun(plain as RunRecord, batch.run, next.lastSeq) as Omit<RunRecord, 'input'>;
    await this.#records.writeRun({ ...patched, steps: names });
    if (patched.owner === undefined) this.#held.delete(runId);
  }

  async loadRun(runId: string): Promise<LoadedRun | undefined> {
    this.#check(`load run ${JSON.stringify(runId)}`);
    return this.#guard(`could not load run ${JSON.stringify(runId)}`, async () => {
      const run = await this.#records.readRun(runId);
      if (run === undefined) return undefined;
      const [input, tail, stored] = await Promise.all([
        this.#records.readInput(runId),
        this.#events.scan(runId, run.lastSeq, run.leaseToken),
        Promise.all(run.steps.map((name) => this.#records.readStep(runId, name))),
      ]);
      const steps = stored.filter((s) => s !== undefined).map((s) => s.record);
      const { steps: _steps, ...plain } = run;
      return { run: { ...plain, input, lastSeq: tail.lastSeq }, steps };
    });
  }

  async getOutput(runId: string, step: string): Promise<StoredOutput | undefined> {
    this.#check(`read the output of ${JSON.stringify(`${runId}/${step}`)}`);
    return this.#guard(`could not read the output of ${JSON.stringify(`${runId}/${step}`)}`, async () => {
      const stored = await this.#records.readStep(runId, step);
      return stored !== undefined && 'output' in stored ? { value: stored.output } : undefined;
    });
  }

  async readEvents(runId: string, after = 0, limit = Infinity): Promise<WeirEvent[]> {
    this.#check(`read the events of run ${JSON.stringify(runId)}`);
    return this.#guard(`could not read the events of run ${JSON.stringify(runId)}`, () => this.#events.read(runId, after, limit));
  }

  async listRuns(query: ListRunsQuery): Promise<RunPage> {
    this.#check('list runs');
    return this.#guard('could not list runs', async () => {
      const all: StoredRun[] = [];
      for await (const run of this.#records.listRuns()) all.push(run);
      const page = pageRuns(this.kind, all, query);
      const runs = await Promise.all(
        page.runs.map(async (run) => {
          const { steps: _steps, ...plain } = run;
          return { ...plain, input: await this.#records.readInput(run.runId) };
        }),
      );
      return page.next === undefined ? { runs } : { runs, next: page.next };
    });
  }

  async acquireLease(runId: string, owner: RunOwner, leaseMs: number, at: number, options?: AcquireOptions): Promise<number | undefined> {
    this.#check(`acquire the lease of run ${JSON.stringify(runId)}`);
    return this.#locked(runId, 'acquire lease', async () => {
      const run = await this.#records.readRun(runId);
      if (run === undefined || !mayAcquire(run, owner.processId, at, options)) return undefined;
      const takeover = options?.takeover === true;
      const token = raisesToken(run, owner.processId, options) ? run.leaseToken + 1 : run.leaseToken;
      await this.#records.writeRun({ ...run, owner, leaseToken: token, leaseExpiresAt: at + leaseMs, recoveries: run.recoveries + (takeover ? 1 : 0) });
      // No compare-and-set here: read back, so a racing writer that came last is seen at once.
      const check = await this.#records.readRun(runId);
      if (check?.leaseToken !== token || check.owner?.processId !== owner.processId) return undefined;
      this.#held.set(runId, { token, processId: owner.processId });
      this.#events.forget(runId, token);
      return token;
    });
  }

  async renewLeases(owner: RunOwner, entries: readonly LeaseEntry[], expiresAt: number): Promise<RenewResult> {
    this.#check('renew leases');
    const renewed: string[] = [];
    const lost: string[] = [];
    await Promise.all(
      entries.map(({ runId, leaseToken }) =>
        this.#locked(runId, 'renew lease', async () => {
          const run = await this.#records.readRun(runId);
          if (run === undefined || run.leaseToken !== leaseToken || run.owner?.processId !== owner.processId) {
            lost.push(runId);
            return;
          }
          await this.#records.writeRun({ ...run, leaseExpiresAt: expiresAt });
          renewed.push(runId);
        }),
      ),
    );
    return { renewed, lost };
  }

  async releaseLease(runId: string, owner: RunOwner, leaseToken: number): Promise<boolean> {
    this.#check(`release the lease of run ${JSON.stringify(runId)}`);
    return this.#locked(runId, 'release lease', async () => {
      const run = await this.#records.readRun(runId);
      if (run === undefined || run.leaseToken !== leaseToken || run.owner?.processId !== owner.processId) return false;
      const { owner: _owner, ...rest } = run;
      await this.#records.writeRun({ ...rest, leaseExpiresAt: 0 });
      this.#held.delete(runId);
      return true;
    });
  }

  async putInput(runId: string, entry: InputEntry): Promise<boolean> {
    this.#check(`store input ${JSON.stringify(entry.key)} of run ${JSON.stringify(runId)}`);
    const stored: InputEntry =
      'value' in entry ? { key: entry.key, outcome: entry.outcome, value: entry.value, at: entry.at } : { key: entry.key, outcome: entry.outcome, at: entry.at };
    // Serialised before the lock, so a bad value writes nothing.
    const text = encode(stored, `input ${runId}/${entry.key}`);
    return this.#locked(runId, 'store input', async () => {
      if ((await this.#records.readRun(runId)) === undefined) throw notFoundError(this.kind, runId);
      const inputs = (await this.#records.readInputs(runId)) ?? [];
      if (inputs.some(([key]) => key === entry.key)) return false;
      const next: StoredInputs = [...inputs, [entry.key, text]];
      await this.#records.writeInputs(runId, next);
      return true;
    });
  }

  async clearInputs(runId: string, keys: readonly string[]): Promise<void> {
    this.#check(`clear inputs of run ${JSON.stringify(runId)}`);
    const drop = new Set(keys);
    await this.#locked(runId, 'clear inputs', async () => {
      if ((await this.#records.readRun(runId)) === undefined) throw notFoundError(this.kind, runId);
      const inputs = (await this.#records.readInputs(runId)) ?? [];
      const next: StoredInputs = inputs.filter(([key]) => !drop.has(key));
      if (next.length === inputs.length) return;
      await this.#records.writeInputs(runId, next);
    });
  }

  async readInputs(runId: string): Promise<InputEntry[]> {
    this.#check(`read the inputs of run ${JSON.stringify(runId)}`);
    return this.#guard(`could not read the inputs of run ${JSON.stringify(runId)}`, async () => {
      const inputs = (await this.#records.readInputs(runId)) ?? [];
      return inputs.map(([key, text]) => this.#records.decodeInput(runId, key, text));
    });
  }

  async prune(options: PruneOptions): Promise<number> {
    this.#check('prune');
    const old = (run: StoredRun): boolean => FINISHED.has(run.status) && (run.endedAt ?? run.updatedAt) < options.olderThan;
    const candidates = await this.#guard('prune failed', async () => {
      const ids: string[] = [];
      for await (const run of this.#records.listRuns()) if (old(run)) ids.push(run.runId);
      return ids;
    });
    let deleted = 0;
    for (const runId of candidates) {
      const gone = await this.#locked(runId, 'prune', async () => {
        const run = await this.#records.readRun(runId);
        // Read again under the lock: a run resumed since the scan is left alone.
        if (run === undefined || !old(run)) return false;
        await this.#records.deleteRun(run);
        this.#events.forget(runId);
        this.#held.delete(runId);
        return true;
      });
      if (gone) deleted += 1;
    }
    return deleted;
  }

  async open(): Promise<void> {
    this.#check('open');
    try {
      await this.#records.runs.open();
      if (this.#records.data !== this.#records.runs) await this.#records.data.open();
    } catch (error) {
      throw wrapError(this.kind, 'could not open the store', error);
    }
  }

  checkStorable(value: unknown, what: string): void {
    encode(value, what);
  }

  async close(): Promise<void> {
    this.#closed = true;
    // Writes under way finish; the backends belong to whoever gave them.
    await this.#locks.idle();
    this.#events.clear();
  }

  #check(what: string): void {
    if (this.#closed) throw closedError(this.kind, what);
  }

  /** Runs `fn` after every earlier operation on the same run, so one process never interleaves them. */
  #locked<T>(runId: string, what: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(runId, () => this.#guard(`${what} on run ${JSON.stringify(runId)} failed`, fn));
  }

  async #guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw wrapError(this.kind, what, error);
    }
  }

  #fence(run: StoredRun, token: number): void {
    if (run.leaseToken !== token) throw leaseLostError(this.kind, run.runId, run.leaseToken, token);
    const held = this.#held.get(run.runId);
    if (held !== undefined && held.token === token && run.owner !== undefined && run.owner.processId !== held.processId) {
      throw new FlowError(
        `run store (${this.kind}): commit to run ${JSON.stringify(run.runId)} refused: its lease (token ${token}) was taken by ${run.owner.processId}`,
        { code: ErrorCode.LEASE_LOST },
      );
    }
  }
}

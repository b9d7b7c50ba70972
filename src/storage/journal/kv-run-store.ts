/**
 * The run journal over any key-value `ResultsBackend` (a directory, any Keyv store). Without
 * multi-key transactions, what must be atomic shares one record, and the write order makes a crash
 * between two writes lose at most the events of the commit it interrupted.
 *
 * Keys (`P` is `weir.journal/`; ids are JSON-quoted, so any run or step name is safe):
 * - `P run/"<runId>"`: the run record: status, lease, `lastSeq`, and the names of its steps.
 *   Kept in the `runs` backend, which `listRuns` iterates.
 * - `P input/"<runId>"`: the run's input, written once.
 * - `P step/["<runId>","<step>"]`: a step record with its output: one record, written at once.
 * - `P events/"<runId>"/<n>`: events `n*32+1 .. n*32+32`, a chunk rewritten as it fills.
 * - `P inputs/"<runId>"`: the run's input entries in the order stored, each as `[key, encoded
 *   entry]`: one record, rewritten whole when an entry is added.
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
import type { ResultsBackend } from '../kv/backend.js';
import { decode, encode, JOURNAL_PREFIX } from '../codec.js';
import { now } from '../../util/clock.js';
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
  StepRecord,
  StoredOutput,
} from './run-store.js';
import {
  checkBatch,
  checkEvents,
  closedError,
  conflictError,
  corruptError,
  FINISHED,
  leaseLostError,
  mayAcquire,
  notFoundError,
  pageRuns,
  patchRun,
  type RecordKind,
  wrapError,
  isObject,
} from './store-support.js';

/** Events per chunk record. */
export const EVENT_CHUNK = 32;

/** The run record as stored: the record without its input, plus the names of its steps. */
type StoredRun = Omit<RunRecord, 'input'> & { readonly steps: readonly string[] };

/** A step record as stored: the record and, when it has one, its output. */
interface StoredStep {
  readonly record: StepRecord;
  readonly output?: unknown;
}

/** A run's input entries as stored: each key with its entry, encoded, in the order stored. */
type StoredInputs = readonly (readonly [key: string, entry: string])[];

/** The outcomes an input entry may have. */
const OUTCOMES: ReadonlySet<unknown> = new Set<InputEntry['outcome']>(['answered', 'expired', 'refused']);

/** The tail chunk of a run's events, cached by the writer that holds the lease. */
interface Tail {
  readonly token: number;
  chunk: number;
  /** The chunk's events, each already encoded. */
  encoded: string[];
  lastSeq: number;
}

/** Where a KvRunStore keeps its records. */
export interface KvRunStoreOptions {
  /** Run records; `listRuns` iterates it, so a backend of its own keeps listing cheap. */
  readonly runs: ResultsBackend;
  /** Inputs, step records with outputs, and event chunks. @default runs */
  readonly data?: ResultsBackend;
}

const chunkOf = (seq: number): number => Math.floor((seq - 1) / EVENT_CHUNK);
const runKey = (runId: string): string => `${JOURNAL_PREFIX}run/${JSON.stringify(runId)}`;
const inputKey = (runId: string): string => `${JOURNAL_PREFIX}input/${JSON.stringify(runId)}`;
const stepKey = (runId: string, step: string): string => `${JOURNAL_PREFIX}step/${JSON.stringify([runId, step])}`;
const chunkKey = (runId: string, chunk: number): string => `${JOURNAL_PREFIX}events/${JSON.stringify(runId)}/${chunk}`;
const inputsKey = (runId: string): string => `${JOURNAL_PREFIX}inputs/${JSON.stringify(runId)}`;
const RUN_PREFIX = `${JOURNAL_PREFIX}run/`;

/** A `RunStore` over key-value backends: slower than SQLite, and just as safe against a crash. @internal */
/**
 * Per-run write locks by backend scope, so two contexts of one process over the same directory or
 * Keyv take a lease in turn (a key-value store has no compare-and-set). Empty maps stay: one per scope.
 */
const LOCKS = new Map<unknown, Map<string, Promise<unknown>>>();

export class KvRunStore implements RunStore {
  readonly kind = 'kv';
  readonly durable = true;
  readonly #runs: ResultsBackend;
  readonly #data: ResultsBackend;
  /** Per run, the tail of its writes: shared by every store over the same backend in this process. */
  readonly #locks: Map<string, Promise<unknown>>;
  readonly #tails = new Map<string, Tail>();
  /** The leases this store gave out, so a racing acquirer with the same token is noticed. */
  readonly #held = new Map<string, { token: number; processId: string }>();
  #closed = false;

  constructor(options: KvRunStoreOptions) {
    this.#runs = options.runs;
    let locks = LOCKS.get(options.runs.scope);
    if (locks === undefined) LOCKS.set(options.runs.scope, (locks = new Map()));
    this.#locks = locks;
    this.#data = options.data ?? options.runs;
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
      if ((await this.#runs.get(runKey(runId))) !== undefined) throw conflictError(this.kind, runId);
      // The run record goes last: until it is written, the run does not exist.
      await this.#data.set(inputKey(runId), { value: inputText, writtenAt: now() });
      const tail = await this.#writeEvents(runId, { token: stored.leaseToken, chunk: 0, encoded: [], lastSeq: 0 }, events, encoded);
      await this.#runs.set(runKey(runId), { value: runText, writtenAt: now() });
      this.#tails.set(runId, tail);
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
      (record) =>
        [record.step, encode(outputs.has(record.step) ? { record, output: outputs.get(record.step) } : { record }, `step ${runId}/${record.step}`)] as const,
    );
    const events = batch.events ?? [];
    const eventTexts = events.map((e) => encode(e, `event ${e.seq}`));
    if (batch.run !== undefined) encode(batch.run, `run ${runId}`);
    await this.#locked(runId, 'commit', async () => {
      try {
        await this.#commitLocked(batch, stepTexts, eventTexts);
      } catch (error) {
        // A write cut short may have stored part of the batch: read the tail afresh next time.
        this.#tails.delete(runId);
        throw error;
      }
    });
  }

  async #commitLocked(batch: CommitBatch, stepTexts: readonly (readonly [string, string])[], eventTexts: readonly string[]): Promise<void> {
    const runId = batch.runId;
    const events = batch.events ?? [];
    {
      const run = await this.#readRun(runId);
      if (run === undefined) throw notFoundError(this.kind, runId);
      this.#fence(run, batch.leaseToken);
      const tail = await this.#tail(runId, run);
      checkEvents(this.kind, runId, tail.lastSeq, events);
      const known = new Set(run.steps);
      const added = stepTexts.map(([name]) => name).filter((name) => !known.has(name));
      let names = run.steps;
      if (added.length > 0) {
        names = [...run.steps, ...new Set(added)];
        await this.#writeRun({ ...run, steps: names });
      }
      for (const [name, text] of stepTexts) await this.#data.set(stepKey(runId, name), { value: text, writtenAt: now() });
      const next = await this.#writeEvents(runId, tail, events, eventTexts);
      this.#tails.set(runId, next);
      const { steps: _steps, ...plain } = run;
      const patched = patchRun(plain as RunRecord, batch.run, next.lastSeq) as Omit<RunRecord, 'input'>;
      await this.#writeRun({ ...patched, steps: names });
      if (patched.owner === undefined) this.#held.delete(runId);
    }
  }

  async loadRun(runId: string): Promise<LoadedRun | undefined> {
    this.#check(`load run ${JSON.stringify(runId)}`);
    return this.#guard(`could not load run ${JSON.stringify(runId)}`, async () => {
      const run = await this.#readRun(runId);
      if (run === undefined) return undefined;
      const [input, tail, stored] = await Promise.all([
        this.#readInput(runId),
        this.#scanTail(runId, run.lastSeq, run.leaseToken),
        Promise.all(run.steps.map((name) => this.#readStep(runId, name))),
      ]);
      const steps = stored.filter((s): s is StoredStep => s !== undefined).map((s) => s.record);
      const { steps: _steps, ...plain } = run;
      return { run: { ...plain, input, lastSeq: tail.lastSeq }, steps };
    });
  }

  async getOutput(runId: string, step: string): Promise<StoredOutput | undefined> {
    this.#check(`read the output of ${JSON.stringify(`${runId}/${step}`)}`);
    return this.#guard(`could not read the output of ${JSON.stringify(`${runId}/${step}`)}`, async () => {
      const stored = await this.#readStep(runId, step);
      return stored !== undefined && 'output' in stored ? { value: stored.output } : undefined;
    });
  }

  async readEvents(runId: string, after = 0, limit = Infinity): Promise<WeirEvent[]> {
    this.#check(`read the events of run ${JSON.stringify(runId)}`);
    return this.#guard(`could not read the events of run ${JSON.stringify(runId)}`, async () => {
      const out: WeirEvent[] = [];
      let expected = Math.max(0, after) + 1;
      for (let chunk = chunkOf(expected); out.length < limit; chunk++) {
        const texts = await this.#readChunk(runId, chunk);
        if (texts === undefined) break;
        for (let i = 0; i < texts.length && out.length < limit; i++) {
          const seq = chunk * EVENT_CHUNK + i + 1;
          if (seq < expected) continue;
          out.push(this.#decodeEvent(runId, seq, texts[i]!));
          expected = seq + 1;
        }
        if (texts.length < EVENT_CHUNK) break;
      }
      return out;
    });
  }

  async listRuns(query: ListRunsQuery): Promise<RunPage> {
    this.#check('list runs');
    return this.#guard('could not list runs', async () => {
      const all: StoredRun[] = [];
      for await (const [, entry] of this.#runs.entries(RUN_PREFIX)) {
        const run = this.#toRun(entry.value);
        if (run !== undefined) all.push(run);
      }
      const page = pageRuns(this.kind, all, query);
      const runs = await Promise.all(
        page.runs.map(async (run) => {
          const { steps: _steps, ...plain } = run;
          return { ...plain, input: await this.#readInput(run.runId) };
        }),
      );
      return page.next === undefined ? { runs } : { runs, next: page.next };
    });
  }

  async acquireLease(runId: string, owner: RunOwner, leaseMs: number, at: number, options?: AcquireOptions): Promise<number | undefined> {
    this.#check(`acquire the lease of run ${JSON.stringify(runId)}`);
    return this.#locked(runId, 'acquire lease', async () => {
      const run = await this.#readRun(runId);
      if (run === undefined || !mayAcquire(run, owner.processId, at, options?.fromToken)) return undefined;
      const takeover = options?.takeover === true;
      const token = takeover || run.owner?.processId !== owner.processId ? run.leaseToken + 1 : run.leaseToken;
      await this.#writeRun({ ...run, owner, leaseToken: token, leaseExpiresAt: at + leaseMs, recoveries: run.recoveries + (takeover ? 1 : 0) });
      // No compare-and-set here: read back, so a racing writer that came last is seen at once.
      const check = await this.#readRun(runId);
      if (check?.leaseToken !== token || check.owner?.processId !== owner.processId) return undefined;
      this.#held.set(runId, { token, processId: owner.processId });
      if (this.#tails.get(runId)?.token !== token) this.#tails.delete(runId);
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
          const run = await this.#readRun(runId);
          if (run === undefined || run.leaseToken !== leaseToken || run.owner?.processId !== owner.processId) {
            lost.push(runId);
            return;
          }
          await this.#writeRun({ ...run, leaseExpiresAt: expiresAt });
          renewed.push(runId);
        }),
      ),
    );
    return { renewed, lost };
  }

  async releaseLease(runId: string, owner: RunOwner, leaseToken: number): Promise<boolean> {
    this.#check(`release the lease of run ${JSON.stringify(runId)}`);
    return this.#locked(runId, 'release lease', async () => {
      const run = await this.#readRun(runId);
      if (run === undefined || run.leaseToken !== leaseToken || run.owner?.processId !== owner.processId) return false;
      const { owner: _owner, ...rest } = run;
      await this.#writeRun({ ...rest, leaseExpiresAt: 0 });
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
      if ((await this.#readRun(runId)) === undefined) throw notFoundError(this.kind, runId);
      const inputs = (await this.#readInputRecord(runId)) ?? [];
      if (inputs.some(([key]) => key === entry.key)) return false;
      const next: StoredInputs = [...inputs, [entry.key, text]];
      await this.#data.set(inputsKey(runId), { value: encode(next, `inputs of run ${runId}`), writtenAt: now() });
      return true;
    });
  }

  async clearInputs(runId: string, keys: readonly string[]): Promise<void> {
    this.#check(`clear inputs of run ${JSON.stringify(runId)}`);
    const drop = new Set(keys);
    await this.#locked(runId, 'clear inputs', async () => {
      if ((await this.#readRun(runId)) === undefined) throw notFoundError(this.kind, runId);
      const inputs = (await this.#readInputRecord(runId)) ?? [];
      const next: StoredInputs = inputs.filter(([key]) => !drop.has(key));
      if (next.length === inputs.length) return;
      await this.#data.set(inputsKey(runId), { value: encode(next, `inputs of run ${runId}`), writtenAt: now() });
    });
  }

  async readInputs(runId: string): Promise<InputEntry[]> {
    this.#check(`read the inputs of run ${JSON.stringify(runId)}`);
    return this.#guard(`could not read the inputs of run ${JSON.stringify(runId)}`, async () => {
      const inputs = (await this.#readInputRecord(runId)) ?? [];
      return inputs.map(([key, text]) => this.#decodeInput(runId, key, text));
    });
  }

  async prune(options: PruneOptions): Promise<number> {
    this.#check('prune');
    const candidates = await this.#guard('prune failed', async () => {
      const ids: string[] = [];
      for await (const [, entry] of this.#runs.entries(RUN_PREFIX)) {
        const run = this.#toRun(entry.value);
        if (run !== undefined && FINISHED.has(run.status) && (run.endedAt ?? run.updatedAt) < options.olderThan) ids.push(run.runId);
      }
      return ids;
    });
    let deleted = 0;
    for (const runId of candidates) {
      const gone = await this.#locked(runId, 'prune', async () => {
        const run = await this.#readRun(runId);
        // Read again under the lock: a run resumed since the scan is left alone.
        if (run === undefined || !FINISHED.has(run.status) || (run.endedAt ?? run.updatedAt) >= options.olderThan) return false;
        // The run record goes last, so a prune cut short is finished by the next one.
        for (let chunk = 0; (await this.#data.delete(chunkKey(runId, chunk))) || chunk <= chunkOf(Math.max(1, run.lastSeq)); chunk++);
        for (const name of run.steps) await this.#data.delete(stepKey(runId, name));
        await this.#data.delete(inputKey(runId));
        await this.#data.delete(inputsKey(runId));
        await this.#runs.delete(runKey(runId));
        this.#tails.delete(runId);
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
      await this.#runs.open();
      if (this.#data !== this.#runs) await this.#data.open();
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
    while (this.#locks.size > 0) await Promise.allSettled([...this.#locks.values()]);
    this.#tails.clear();
  }

  #check(what: string): void {
    if (this.#closed) throw closedError(this.kind, what);
  }

  /** Runs `fn` after every earlier operation on the same run, so one process never interleaves them. */
  #locked<T>(runId: string, what: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(runId) ?? Promise.resolve();
    const result = previous.then(
      () => this.#guard(`${what} on run ${JSON.stringify(runId)} failed`, fn),
      () => this.#guard(`${what} on run ${JSON.stringify(runId)} failed`, fn),
    );
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(runId, settled);
    void settled.then(() => {
      if (this.#locks.get(runId) === settled) this.#locks.delete(runId);
    });
    return result;
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

  async #read(backend: ResultsBackend, record: RecordKind, key: string, label: string): Promise<unknown> {
    let entry;
    try {
      entry = await backend.get(key);
    } catch (error) {
      if (error instanceof FlowError && error.code === ErrorCode.CORRUPT_RECORD) throw corruptError(this.kind, record, label, error.cause ?? error);
      throw error;
    }
    if (entry === undefined) return undefined;
    if (typeof entry.value !== 'string') throw corruptError(this.kind, record, label, new Error(`expected a string, got ${typeof entry.value}`));
    try {
      return decode(entry.value, key);
    } catch (error) {
      throw corruptError(this.kind, record, label, (error as Error).cause ?? error);
    }
  }

  async #readRun(runId: string): Promise<StoredRun | undefined> {
    const value = await this.#read(this.#runs, 'run', runKey(runId), runKey(runId));
    if (value === undefined) return undefined;
    if (!isObject(value) || value.runId !== runId || typeof value.leaseToken !== 'number' || !Array.isArray(value.steps)) {
      throw corruptError(this.kind, 'run', runKey(runId));
    }
    return value as unknown as StoredRun;
  }

  #toRun(value: unknown): StoredRun | undefined {
    if (typeof value !== 'string') return undefined;
    try {
      const run = decode(value);
      return isObject(run) && typeof run.runId === 'string' && Array.isArray(run.steps) ? (run as unknown as StoredRun) : undefined;
    } catch {
      return undefined; // loadRun reports it; the other runs stay listable
    }
  }

  async #readInput(runId: string): Promise<unknown> {
    const value = await this.#read(this.#data, 'input', inputKey(runId), inputKey(runId));
    return value;
  }

  async #readStep(runId: string, step: string): Promise<StoredStep | undefined> {
    const key = stepKey(runId, step);
    const value = await this.#read(this.#data, 'step', key, key);
    if (value === undefined) return undefined;
    if (!isObject(value) || !isObject(value.record) || value.record.step !== step) throw corruptError(this.kind, 'step', key);
    return value as unknown as StoredStep;
  }

  async #readChunk(runId: string, chunk: number): Promise<string[] | undefined> {
    const key = chunkKey(runId, chunk);
    const value = await this.#read(this.#data, 'event', key, key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length > EVENT_CHUNK || !value.every((v) => typeof v === 'string')) throw corruptError(this.kind, 'event', key);
    return value;
  }

  async #readInputRecord(runId: string): Promise<StoredInputs | undefined> {
    const key = inputsKey(runId);
    const value = await this.#read(this.#data, 'input', key, key);
    if (value === undefined) return undefined;
    const valid = Array.isArray(value) && value.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && typeof e[1] === 'string');
    if (!valid) throw corruptError(this.kind, 'input', key);
    return value as StoredInputs;
  }

  #decodeInput(runId: string, key: string, text: string): InputEntry {
    const label = `${inputsKey(runId)}#${JSON.stringify(key)}`;
    let entry: unknown;
    try {
      entry = decode(text, label);
    } catch (error) {
      throw corruptError(this.kind, 'input', label, (error as Error).cause ?? error);
    }
    if (!isObject(entry) || entry.key !== key || !OUTCOMES.has(entry.outcome) || typeof entry.at !== 'number') throw corruptError(this.kind, 'input', label);
    return entry as unknown as InputEntry;
  }

  #decodeEvent(runId: string, seq: number, text: string): WeirEvent {
    const key = `${chunkKey(runId, chunkOf(seq))}#${seq}`;
    let event: unknown;
    try {
      event = decode(text, key);
    } catch (error) {
      throw corruptError(this.kind, 'event', key, (error as Error).cause ?? error);
    }
    if (!isObject(event) || event.seq !== seq) throw corruptError(this.kind, 'event', key);
    return event as unknown as WeirEvent;
  }

  /** The writer's tail: cached while this store holds the lease, else read from the chunks. */
  async #tail(runId: string, run: StoredRun): Promise<Tail> {
    const cached = this.#tails.get(runId);
    if (cached !== undefined && cached.token === run.leaseToken && cached.lastSeq >= run.lastSeq) return cached;
    return this.#scanTail(runId, run.lastSeq, run.leaseToken);
  }

  /** Finds the true last seq: a commit cut short after its events may have stored some past `lastSeq`. */
  async #scanTail(runId: string, lastSeq: number, token: number): Promise<Tail> {
    let chunk = chunkOf(lastSeq + 1);
    let tail: Tail = { token, chunk, encoded: [], lastSeq };
    for (;;) {
      const texts = await this.#readChunk(runId, chunk);
      if (texts === undefined) return tail;
      tail = { token, chunk, encoded: texts, lastSeq: chunk * EVENT_CHUNK + texts.length };
      if (texts.length < EVENT_CHUNK) return tail;
      chunk += 1;
      tail = { token, chunk, encoded: [], lastSeq: tail.lastSeq };
    }
  }

  /** Writes events into their chunks in seq order; returns the new tail. */
  async #writeEvents(runId: string, tail: Tail, events: readonly WeirEvent[], texts: readonly string[]): Promise<Tail> {
    if (events.length === 0) return tail;
    let chunk = tail.chunk;
    let encoded = tail.encoded;
    let lastSeq = tail.lastSeq;
    let dirty = false;
    for (let i = 0; i < events.length; i++) {
      const seq = events[i]!.seq;
      const target = chunkOf(seq);
      if (target !== chunk) {
        if (dirty) await this.#data.set(chunkKey(runId, chunk), { value: encode(encoded), writtenAt: now() });
        chunk = target;
        encoded = [];
      }
      encoded = [...encoded, texts[i]!];
      dirty = true;
      lastSeq = seq;
    }
    await this.#data.set(chunkKey(runId, chunk), { value: encode(encoded), writtenAt: now() });
    return { token: tail.token, chunk, encoded, lastSeq };
  }

  async #writeRun(run: StoredRun): Promise<void> {
    await this.#runs.set(runKey(run.runId), { value: encode(run, `run ${run.runId}`), writtenAt: now() });
  }
}

/**
 * The run journal's contract: run records, step records, step outputs and the event log, written
 * atomically per commit and fenced by a lease token. Knows nothing of processors or graphs.
 * @internal
 */
import type { ErrorData } from '../../errors/error-data.js';
import type { WeirEvent } from '../../model/events.js';
import type { AttemptRecord } from '../../model/result.js';
import type { InputEntry, InputWait, StepProgress } from '../../model/waits.js';

export type { InputEntry, InputWait, StepProgress };
import type { FlowStatus, RunMode } from '../../model/status.js';

/** Who holds a run's lease: the owning context's process. */
export interface RunOwner {
  /** The owning context's id, unique per process and context (for example `host:pid:n`). */
  readonly processId: string;
  readonly host: string;
  readonly pid: number;
}

/** A run's durable state. Timestamps are ms since the epoch. */
export interface RunRecord {
  readonly runId: string;
  /** The root flow's name. */
  readonly flow: string;
  /** A fingerprint of the flow graph, computed by the caller. */
  readonly fingerprint: string;
  /** The version of the flow's code the run needs (`FlowConfig.version`), when its flow has one. */
  readonly version?: string;
  /** A queued run's priority: higher is taken first. Absent for 0. */
  readonly priority?: number;
  /** A queued run's concurrency key: at most the flow's `keyConcurrency` runs with one key run at once. */
  readonly concurrencyKey?: string;
  /** The run's input, any value the codec can serialise. */
  readonly input: unknown;
  readonly mode: RunMode;
  readonly humanInLoop: boolean;
  readonly status: FlowStatus;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly endedAt?: number;
  readonly error?: ErrorData;
  /** The run's output, kept for completed runs. */
  readonly output?: unknown;
  /** The run this one retries. */
  readonly retryOf?: string;
  /** The run that retried this one. */
  readonly retriedBy?: string;
  /** The process that last ran the run (`host:pid`), kept once its lease is released. */
  readonly ranBy?: string;
  /** Who holds the lease; absent once released. */
  readonly owner?: RunOwner;
  /** The fencing token: grows whenever the lease changes hands. */
  readonly leaseToken: number;
  /** When the lease runs out, in ms since the epoch; 0 once released. */
  readonly leaseExpiresAt: number;
  /** How many times the run was taken over after its owner was lost. */
  readonly recoveries: number;
  /** The seq of the run's last stored event; 0 before the first. */
  readonly lastSeq: number;
}

/** What `createRun` takes: a run record whose counters the store fills in. */
export type NewRunRecord = Omit<RunRecord, 'lastSeq' | 'recoveries' | 'leaseToken'> & {
  /** @default 1 */
  readonly leaseToken?: number;
  /** @default 0 */
  readonly recoveries?: number;
};

/** A step's durable state. Its output, when it has one, is stored apart and read with `getOutput`. */
export interface StepRecord {
  readonly runId: string;
  /** The step's (flow's) name, unique in its run. */
  readonly step: string;
  readonly status: FlowStatus;
  readonly attempts: readonly AttemptRecord[];
  readonly startTime?: number;
  readonly endTime?: number;
  readonly error?: ErrorData;
  /** Whether an output is stored for this step. */
  readonly hasOutput: boolean;
  /** Set for a composite's record (its output is its children's). */
  readonly composite?: boolean;
  /** A composite's children, in order: a reader without the flow's code assembles its output from theirs. */
  readonly children?: readonly string[];
  readonly progress?: StepProgress;
  /** A durable backoff deadline: the next attempt starts then, in ms since the epoch. */
  readonly retryAt?: number;
  /** How many of its attempts the retry policy does not count (made before a resume, lost with a process, or ended to wait); absent for none. */
  readonly attemptBase?: number;
  /** The inputs this step waits on. */
  readonly waitingFor?: readonly InputWait[];
  readonly updatedAt: number;
}

/**
 * The run fields a commit may change. A key present with the value `undefined` clears an optional
 * field (`endedAt`, `error`, `output`, `retriedBy`, `ranBy`); a key left out, or a required field
 * (`status`, `updatedAt`, `humanInLoop`) given as `undefined`, keeps it.
 */
export type RunPatch = {
  -readonly [K in 'status' | 'updatedAt' | 'humanInLoop' | 'endedAt' | 'error' | 'output' | 'retriedBy' | 'ranBy']?: RunRecord[K] | undefined;
};

/** One step output to store with its step record. */
export interface OutputWrite {
  readonly step: string;
  readonly value: unknown;
}

/** What one `commit` writes, all or nothing. */
export interface CommitBatch {
  readonly runId: string;
  /** The token from `createRun` or `acquireLease`; a stale one is refused. */
  readonly leaseToken: number;
  readonly run?: RunPatch;
  /** Whole step records, replacing the stored ones. */
  readonly steps?: readonly StepRecord[];
  /** Outputs, each for a step whose record is in `steps` with `hasOutput: true`. */
  readonly outputs?: readonly OutputWrite[];
  /** Events continuing the run's `lastSeq` densely: the first has `lastSeq + 1`. */
  readonly events?: readonly WeirEvent[];
}

/** A run with all its step records. */
export interface LoadedRun {
  readonly run: RunRecord;
  readonly steps: readonly StepRecord[];
}

/** A stored output: a box, so a stored `undefined` differs from no output. */
export interface StoredOutput {
  readonly value: unknown;
}

/** What `listRuns` selects. */
export interface ListRunsQuery {
  /** Only runs in this status (or one of these). */
  readonly status?: FlowStatus | readonly FlowStatus[];
  /** Only runs of this root flow. */
  readonly flow?: string;
  /** At most this many runs. @default 100 */
  readonly limit?: number;
  /** The `next` cursor of the previous page. */
  readonly before?: string;
  /** Only running runs whose lease expired before `now`. */
  readonly stale?: boolean;
  /**
   * Only runs no live context can take (stores with `claims`): pending, running or waiting runs
   * whose flow at their version no live worker has registered.
   */
  readonly stranded?: boolean;
  /** The current time, in ms since the epoch, for `stale` and `stranded`. */
  readonly now: number;
}

/** One page of runs, newest first. */
export interface RunPage {
  readonly runs: readonly RunRecord[];
  /** Pass as `before` for the next page; absent on the last page. */
  readonly next?: string;
  /** Runs on this page whose records cannot be read (SQLite): left out of `runs`; `loadRun` says why. */
  readonly corrupt?: readonly string[];
}

/** Options of `acquireLease`. */
export interface AcquireOptions {
  /** The run's owner was lost and this is a recovery: count it in `recoveries`. @default false */
  readonly takeover?: boolean;
  /**
   * Take the lease even while it is live, if its token is still this one: for an owner known to be
   * gone (same host, its pid no longer alive), read with `loadRun` or `listRuns` just before.
   */
  readonly fromToken?: number;
  /**
   * Take the lease only if nobody holds it (it is released or expired, whoever held it, this owner
   * included) and its token is still this one, and raise the token: a compare-and-set for taking an
   * ended or waiting run read just before, so of any two takers, in one process or many, exactly one
   * goes on, and nothing ever has to be given back.
   */
  readonly ifToken?: number;
}

/** One run whose lease an owner renews. */
export interface LeaseEntry {
  readonly runId: string;
  readonly leaseToken: number;
}

/** What `renewLeases` did. */
export interface RenewResult {
  /** Runs whose lease was extended. */
  readonly renewed: readonly string[];
  /** Runs the owner no longer holds (taken over, or gone): stop working on them. */
  readonly lost: readonly string[];
}

/** Options of `prune`. */
export interface PruneOptions {
  /** Delete finished runs that ended before this time, in ms since the epoch. */
  readonly olderThan: number;
}

/** A flow a worker context runs, at the version it has, with its limits on queued runs. */
export interface ClaimableFlow {
  readonly flow: string;
  readonly version: string;
  /** The most runs of the flow at once (queued runs are taken only below it). */
  readonly concurrency?: number;
  /** The most runs of the flow with one concurrency key at once. */
  readonly keyConcurrency?: number;
}

/** What `claimRuns` may take. */
export interface ClaimQuery {
  readonly flows: readonly ClaimableFlow[];
  /** At most this many runs. */
  readonly limit: number;
  readonly leaseMs: number;
  readonly now: number;
  /** Take queued (pending) runs too, after the stale ones. */
  readonly queued: boolean;
  /** Runs not to take: the caller's own (a lapsed lease of a run it still runs is renewed, not taken over). */
  readonly skip?: readonly string[];
}

/** What a shared store tells a worker: a run was queued, a run ended (a slot freed), a run got an input, or notices may have been missed. */
export type StoreNotice =
  | { readonly type: 'queued' }
  | { readonly type: 'ended' }
  | { readonly type: 'input'; readonly runId: string }
  | { readonly type: 'reconnected' };

/**
 * What a store shared by many processes on many hosts offers its workers: claiming runs in batches,
 * each by exactly one worker; notices of new work; and a register of live workers and the flow
 * versions they run.
 */
export interface RunClaims {
  /**
   * Takes up to `query.limit` runs for `owner`: running runs whose lease ran out, but for
   * `query.skip` (a takeover: token raised, and `recoveries` unless the lease was released), then, with `query.queued`, queued runs (status `pending` becomes
   * `running`, token raised), highest priority first, within the flows' limits; only runs of the
   * given flows at the given versions. A run with `lastSeq` 0 never started.
   */
  claimRuns(owner: RunOwner, query: ClaimQuery): Promise<RunRecord[]>;
  /** Hears the store's notices until the returned function is called. */
  subscribe(listener: (notice: StoreNotice) => void): () => void;
  /** Records that `owner` is alive until `expiresAt`, running these flows at these versions. */
  announceWorker(owner: RunOwner, flows: readonly ClaimableFlow[], expiresAt: number): Promise<void>;
  /** Removes `owner` from the register (it is closing). */
  retireWorker(owner: RunOwner): Promise<void>;
  /** The flows and versions some live worker runs, as `flow + '\u001f' + version`. */
  liveVersions(now: number): Promise<ReadonlySet<string>>;
}

/** The key of a flow at a version in `liveVersions`. */
export function versionKey(flow: string, version: string): string {
  return `${flow}\u001f${version}`;
}

/** Which implementation a store is. */
export type RunStoreKind = 'memory' | 'sqlite' | 'kv' | 'postgres';

/**
 * The run journal. Every method is async and rejects with a `FlowError`:
 * `WEIR_STORE` (retryable, `cause` attached) when the backend fails, `WEIR_CORRUPT_RECORD` naming
 * the record when one cannot be read, `WEIR_STORE_CLOSED` after `close()`.
 * @internal
 */
export interface RunStore {
  readonly kind: RunStoreKind;
  /** Whether what is stored survives the process. */
  readonly durable: boolean;
  /** Claiming, notices and the worker register, for stores many hosts share (Postgres). */
  readonly claims?: RunClaims;

  /**
   * Opens what the store needs (a database file, a directory) now rather than on first use, so a
   * bad path fails early. Safe to call more than once.
   * @throws `WEIR_STORE` with the backend's reason when it cannot be opened.
   */
  open(): Promise<void>;

  /**
   * Stores a new run with its first events (seq 1, 2, ...) atomically.
   * @returns the stored record, with `lastSeq`, `leaseToken` and `recoveries` filled in.
   * @throws `WEIR_RUN_CONFLICT` when `runId` exists; `WEIR_SERIALIZATION` when the input cannot be stored;
   * `WEIR_EVENT_SEQ` when the events do not start at 1 densely.
   */
  createRun(record: NewRunRecord, events?: readonly WeirEvent[]): Promise<RunRecord>;

  /**
   * Writes a batch atomically: the run patch, whole step records, outputs and events. A patch that
   * sets status `waiting`, or a finished status, also releases the lease in the same write (owner
   * cleared, expiry 0, token kept): a run that waits for a person, or has ended, is held by nobody,
   * even if its owner dies right after; the next `acquireLease` of it raises the token by one. Commits made
   * in the same tick share one transaction where the store has them; each promise settles with its
   * own batch, once it is durable.
   * @throws `WEIR_RUN_NOT_FOUND` for an unknown run; `WEIR_LEASE_LOST` when the stored lease token differs
   * from the batch's; `WEIR_EVENT_SEQ` for a gap or a duplicate seq; `WEIR_SERIALIZATION` for a value that
   * cannot be stored; `WEIR_INVALID_OPTIONS` for an output without its step record.
   */
  commit(batch: CommitBatch): Promise<void>;

  /**
   * `commit` done before it returns, for a store that writes nothing outside the process (memory):
   * a run's journal then needs no promise and no turn of the event loop per step. Throws what
   * `commit` would reject with. Absent on stores that write elsewhere.
   */
  commitNow?: ((batch: CommitBatch) => void) | undefined;

  /**
   * Reads a run and every step record it has, in no set order.
   * @returns `undefined` when there is no such run.
   * @throws `WEIR_CORRUPT_RECORD` naming the run or step record that cannot be read.
   */
  loadRun(runId: string): Promise<LoadedRun | undefined>;

  /**
   * Reads one step's output.
   * @returns `{ value }`, or `undefined` when none is stored.
   * @throws `WEIR_CORRUPT_RECORD` naming the output record when it cannot be read.
   */
  getOutput(runId: string, step: string): Promise<StoredOutput | undefined>;

  /**
   * Reads the run's events with `seq > after`, in order, at most `limit` of them.
   * @throws `WEIR_CORRUPT_RECORD` naming the event record that cannot be read.
   */
  readEvents(runId: string, after?: number, limit?: number): Promise<WeirEvent[]>;

  /**
   * Lists runs newest first (by `createdAt`, then `runId`), one page at a time.
   * @throws `WEIR_INVALID_OPTIONS` for a cursor this store did not make; `WEIR_UNSUPPORTED` for a
   * backend that cannot be iterated.
   */
  listRuns(query: ListRunsQuery): Promise<RunPage>;

  /**
   * Takes the run's lease if nobody else holds a live one (it is released, expired or already
   * `owner`'s), or if its token is still `options.fromToken`: a compare-and-set, so of two
   * concurrent callers exactly one wins. The token grows
   * unless `owner` already held the live lease; with `takeover`, `recoveries` grows too. With
   * `options.ifToken`, only a free lease whose token is still that one is taken (see `AcquireOptions`).
   * @returns the lease token to commit with, or `undefined` when the lease is held by someone else
   * or the run does not exist.
   */
  acquireLease(runId: string, owner: RunOwner, leaseMs: number, now: number, options?: AcquireOptions): Promise<number | undefined>;

  /**
   * Extends every lease `owner` still holds with the given token to `expiresAt`, in one transaction.
   * @returns which runs were renewed and which were lost.
   */
  renewLeases(owner: RunOwner, entries: readonly LeaseEntry[], expiresAt: number): Promise<RenewResult>;

  /**
   * Gives up a lease: clears the owner and expiry, keeps the token.
   * @returns whether `owner` held it with that token.
   */
  releaseLease(runId: string, owner: RunOwner, leaseToken: number): Promise<boolean>;

  /**
   * Stores how the wait for `entry.key` ended, unless an entry for that key is stored already:
   * a compare-and-set, so of two concurrent callers (in any process sharing the store) exactly one
   * wins. Not fenced by the lease: anyone may answer a run, whoever runs it.
   * @returns true when stored, false when the key already had an entry.
   * @throws `WEIR_RUN_NOT_FOUND` for an unknown run; `WEIR_SERIALIZATION` for a value that cannot be stored.
   */
  putInput(runId: string, entry: InputEntry): Promise<boolean>;

  /**
   * Deletes the entries of `keys` (those that exist), so those inputs can be asked and answered
   * again: for a run resumed after a wait expired. The caller holds the run's lease.
   * @throws `WEIR_RUN_NOT_FOUND` for an unknown run.
   */
  clearInputs(runId: string, keys: readonly string[]): Promise<void>;

  /**
   * Reads every input entry of a run, in the order they were stored.
   * @throws `WEIR_CORRUPT_RECORD` naming the entry that cannot be read.
   */
  readInputs(runId: string): Promise<InputEntry[]>;

  /**
   * Deletes finished runs (`completed`, `failed`, `cancelled`) that ended before the cutoff, with
   * their steps, outputs, events and input entries; never a running, waiting or pending run.
   * @returns how many runs were deleted.
   */
  prune(options: PruneOptions): Promise<number>;

  /**
   * Throws, synchronously, the error a later write of `value` would fail with, so a value given
   * outside a commit (heartbeat details) is refused at once instead of failing the commit it joins.
   * `what` names the value in the message.
   * @throws `WEIR_SERIALIZATION` for a value the store cannot keep.
   */
  checkStorable(value: unknown, what: string): void;

  /** Waits for pending commits, then releases handles. Idempotent. */
  close(): Promise<void>;
}

/**
 * The records a `KvRunStore` keeps in its key-value backends: their keys, their stored shapes, and
 * reading and writing each, a record that cannot be read becoming `WEIR_CORRUPT_RECORD`.
 *
 * Keys (`P` is `weir.journal/`; ids are JSON-quoted, so any run or step name is safe):
 * - `P run/"<runId>"`: the run record: status, lease, `lastSeq`, and the names of its steps.
 *   Kept in the `runs` backend, which `listRuns` iterates.
 * - `P input/"<runId>"`: the run's input, written once.
 * - `P step/["<runId>","<step>"]`: a step record with its output: one record, written at once.
 * - `P events/"<runId>"/<n>`: events `n*32+1 .. n*32+32`, a chunk rewritten as it fills.
 * - `P inputs/"<runId>"`: the run's input entries in the order stored, each as `[key, encoded
 *   entry]`: one record, rewritten whole when an entry is added.
 * @internal
 */
import { ErrorCode, FlowError } from '../../errors/errors.js';
import type { WeirEvent } from '../../model/events.js';
import { now } from '../../util/clock.js';
import { decode, encode, JOURNAL_PREFIX } from '../codec.js';
import type { ResultsBackend } from '../kv/backend.js';
import type { InputEntry, RunRecord, StepRecord } from './run-store.js';
import { corruptError, INPUT_OUTCOMES, isObject, type RecordKind } from './store-support.js';

const KIND = 'kv';

/** Events per chunk record. */
export const EVENT_CHUNK = 32;

/** The chunk that holds the event at `seq`. */
export const chunkOf = (seq: number): number => Math.floor((seq - 1) / EVENT_CHUNK);

/** The run record as stored: the record without its input, plus the names of its steps. */
export type StoredRun = Omit<RunRecord, 'input'> & { readonly steps: readonly string[] };

/** A step record as stored: the record and, when it has one, its output. */
export interface StoredStep {
  readonly record: StepRecord;
  readonly output?: unknown;
}

/** A run's input entries as stored: each key with its entry, encoded, in the order stored. */
export type StoredInputs = readonly (readonly [key: string, entry: string])[];

const runKey = (runId: string): string => `${JOURNAL_PREFIX}run/${JSON.stringify(runId)}`;
const inputKey = (runId: string): string => `${JOURNAL_PREFIX}input/${JSON.stringify(runId)}`;
const stepKey = (runId: string, step: string): string => `${JOURNAL_PREFIX}step/${JSON.stringify([runId, step])}`;
const chunkKey = (runId: string, chunk: number): string => `${JOURNAL_PREFIX}events/${JSON.stringify(runId)}/${chunk}`;
const inputsKey = (runId: string): string => `${JOURNAL_PREFIX}inputs/${JSON.stringify(runId)}`;
const RUN_PREFIX = `${JOURNAL_PREFIX}run/`;

/** A run record read while listing: `undefined` when it cannot be read (`loadRun` reports it; the other runs stay listable). */
function listedRun(value: unknown): StoredRun | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const run = decode(value);
    return isObject(run) && typeof run.runId === 'string' && Array.isArray(run.steps) ? (run as unknown as StoredRun) : undefined;
  } catch {
    return undefined;
  }
}

/** A step record with its output, when its batch has one, as `writeStepText` stores it. */
export function encodeStep(runId: string, record: StepRecord, output: { value: unknown } | undefined): string {
  return encode(output !== undefined ? { record, output: output.value } : { record }, `step ${runId}/${record.step}`);
}

/** The records of one store: run records in `runs`, everything else in `data`. */
export class KvRecords {
  readonly runs: ResultsBackend;
  readonly data: ResultsBackend;

  constructor(runs: ResultsBackend, data: ResultsBackend) {
    this.runs = runs;
    this.data = data;
  }

  async #read(backend: ResultsBackend, record: RecordKind, key: string, label: string): Promise<unknown> {
    let entry;
    try {
      entry = await backend.get(key);
    } catch (error) {
      if (error instanceof FlowError && error.code === ErrorCode.CORRUPT_RECORD) throw corruptError(KIND, record, label, error.cause ?? error);
      throw error;
    }
    if (entry === undefined) return undefined;
    if (typeof entry.value !== 'string') throw corruptError(KIND, record, label, new Error(`expected a string, got ${typeof entry.value}`));
    try {
      return decode(entry.value, key);
    } catch (error) {
      throw corruptError(KIND, record, label, (error as Error).cause ?? error);
    }
  }

  async #write(backend: ResultsBackend, key: string, text: string): Promise<void> {
    await backend.set(key, { value: text, writtenAt: now() });
  }

  async hasRun(runId: string): Promise<boolean> {
    return (await this.runs.get(runKey(runId))) !== undefined;
  }

  async readRun(runId: string): Promise<StoredRun | undefined> {
    const value = await this.#read(this.runs, 'run', runKey(runId), runKey(runId));
    if (value === undefined) return undefined;
    if (!isObject(value) || value.runId !== runId || typeof value.leaseToken !== 'number' || !Array.isArray(value.steps)) {
      throw corruptError(KIND, 'run', runKey(runId));
    }
    return value as unknown as StoredRun;
  }

  /** Writes a run record, already encoded (so a bad value is refused before any write). */
  writeRunText(runId: string, text: string): Promise<void> {
    return this.#write(this.runs, runKey(runId), text);
  }

  writeRun(run: StoredRun): Promise<void> {
    return this.#write(this.runs, runKey(run.runId), encode(run, `run ${run.runId}`));
  }

  /** Every run record that can be read, in no set order. */
  async *listRuns(): AsyncGenerator<StoredRun> {
    for await (const [, entry] of this.runs.entries(RUN_PREFIX)) {
      const run = listedRun(entry.value);
      if (run !== undefined) yield run;
    }
  }

  readInput(runId: string): Promise<unknown> {
    return this.#read(this.data, 'input', inputKey(runId), inputKey(runId));
  }

  writeInputText(runId: string, text: string): Promise<void> {
    return this.#write(this.data, inputKey(runId), text);
  }

  async readStep(runId: string, step: string): Promise<StoredStep | undefined> {
    const key = stepKey(runId, step);
    const value = await this.#read(this.data, 'step', key, key);
    if (value === undefined) return undefined;
    if (!isObject(value) || !isObject(value.record) || value.record.step !== step) throw corruptError(KIND, 'step', key);
    return value as unknown as StoredStep;
  }

  writeStepText(runId: string, step: string, text: string): Promise<void> {
    return this.#write(this.data, stepKey(runId, step), text);
  }

  /** The events of a chunk, each still encoded. */
  async readChunk(runId: string, chunk: number): Promise<string[] | undefined> {
    const key = chunkKey(runId, chunk);
    const value = await this.#read(this.data, 'event', key, key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length > EVENT_CHUNK || !value.every((v) => typeof v === 'string')) throw corruptError(KIND, 'event', key);
    return value;
  }

  writeChunk(runId: string, chunk: number, encoded: readonly string[]): Promise<void> {
    return this.#write(this.data, chunkKey(runId, chunk), encode(encoded));
  }

  decodeEvent(runId: string, seq: number, text: string): WeirEvent {
    const key = `${chunkKey(runId, chunkOf(seq))}#${seq}`;
    let event: unknown;
    try {
      event = decode(text, key);
    } catch (error) {
      throw corruptError(KIND, 'event', key, (error as Error).cause ?? error);
    }
    if (!isObject(event) || event.seq !== seq) throw corruptError(KIND, 'event', key);
    return event as unknown as WeirEvent;
  }

  async readInputs(runId: string): Promise<StoredInputs | undefined> {
    const key = inputsKey(runId);
    const value = await this.#read(this.data, 'input', key, key);
    if (value === undefined) return undefined;
    const valid = Array.isArray(value) && value.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && typeof e[1] === 'string');
    if (!valid) throw corruptError(KIND, 'input', key);
    return value as StoredInputs;
  }

  writeInputs(runId: string, inputs: StoredInputs): Promise<void> {
    return this.#write(this.data, inputsKey(runId), encode(inputs, `inputs of run ${runId}`));
  }

  decodeInput(runId: string, key: string, text: string): InputEntry {
    const label = `${inputsKey(runId)}#${JSON.stringify(key)}`;
    let entry: unknown;
    try {
      entry = decode(text, label);
    } catch (error) {
      throw corruptError(KIND, 'input', label, (error as Error).cause ?? error);
    }
    if (!isObject(entry) || entry.key !== key || !INPUT_OUTCOMES.has(entry.outcome) || typeof entry.at !== 'number') throw corruptError(KIND, 'input', label);
    return entry as unknown as InputEntry;
  }

  /** Deletes every record of a run, the run record last, so a delete cut short is finished by the next. */
  async deleteRun(run: StoredRun): Promise<void> {
    const runId = run.runId;
    for (let chunk = 0; (await this.data.delete(chunkKey(runId, chunk))) || chunk <= chunkOf(Math.max(1, run.lastSeq)); chunk++);
    for (const name of run.steps) await this.data.delete(stepKey(runId, name));
    await this.data.delete(inputKey(runId));
    await this.data.delete(inputsKey(runId));
    await this.runs.delete(runKey(runId));
  }
}

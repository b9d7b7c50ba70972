/**
 * A run's step records and outputs as its rows hold them: records carried on events and rows of
 * the step and output tables, folded in the order they were written; and the few recent folds a
 * store keeps for the `getOutput` calls that follow a `loadRun`.
 * @internal
 */
import type { StepRecord } from '../run-store.js';
import { corruptError, isObject } from '../store-support.js';
import { decodeCarried, decodeText } from './rows.js';
import type { Statements } from './statements.js';

/** How many runs' folds a store keeps. */
const FOLDS_KEPT = 16;

/** A run's step records folded in write order, and its outputs still encoded. */
export interface Fold {
  readonly lastSeq: number;
  readonly steps: Map<string, StepRecord>;
  readonly outputs: Map<string, string>;
}

/** The rows a fold reads. */
export interface FoldRows {
  readonly records: { seq: number; records: string }[];
  readonly steps: { step: string; data: string; seq: number }[];
  readonly outputs: { step: string; value: string; seq: number }[];
}

/** Reads the rows a fold of the run's step records needs; call it inside a read transaction. */
export function readFoldRows(statements: Statements, runId: string): FoldRows {
  const s = statements.fixed;
  return {
    records: s.selectRecords.all(runId) as FoldRows['records'],
    steps: s.selectSteps.all(runId) as FoldRows['steps'],
    outputs: s.selectOutputs.all(runId) as FoldRows['outputs'],
  };
}

/**
 * Folds a run's step records and outputs in the order they were written, later wins: records
 * carried by the event at seq N, and table rows written when the run's last seq was M, come in
 * seq order; on a tie the table row goes last (it was written after event M).
 * @throws `WEIR_CORRUPT_RECORD` naming the step record (or the records of an event) that cannot be read.
 */
export function fold(runId: string, lastSeq: number, rows: FoldRows): Fold {
  const steps = new Map<string, StepRecord>();
  const outputs = new Map<string, string>();
  const setStep = (record: StepRecord): void => {
    steps.set(record.step, record);
    if (!record.hasOutput) outputs.delete(record.step);
  };
  // Table rows by seq, each step record before an output of the same seq (they were written so).
  const table: { seq: number; step?: StepRecord; output?: readonly [string, string] }[] = [];
  for (const r of rows.steps) {
    const key = `${runId}/${r.step}`;
    const record = decodeText('step', key, r.data);
    if (!isObject(record) || record.step !== r.step) throw corruptError('sqlite', 'step', key);
    table.push({ seq: r.seq, step: record as unknown as StepRecord });
  }
  for (const r of rows.outputs) table.push({ seq: r.seq, output: [r.step, r.value] });
  table.sort((a, b) => a.seq - b.seq || (a.step === undefined ? 1 : 0) - (b.step === undefined ? 1 : 0));
  let next = 0;
  const applyTableBefore = (seq: number): void => {
    for (; next < table.length && table[next]!.seq < seq; next++) {
      const entry = table[next]!;
      if (entry.step !== undefined) setStep(entry.step);
      else if (entry.output !== undefined) outputs.set(entry.output[0], entry.output[1]);
    }
  };
  for (const r of rows.records) {
    applyTableBefore(r.seq);
    const carried = decodeCarried(runId, r.seq, r.records);
    for (const record of carried.s) setStep(record);
    for (const [step, value] of carried.o) outputs.set(step, value);
  }
  applyTableBefore(Infinity);
  return { lastSeq, steps, outputs };
}

/** Recent folds by run, most recently used last; each valid while its run's last seq is unchanged. */
export class FoldCache {
  readonly #folds = new Map<string, Fold>();

  /** The run's fold if one is kept, whatever its last seq: the caller compares. */
  peek(runId: string): Fold | undefined {
    return this.#folds.get(runId);
  }

  /** Keeps a fold as the most recently used, forgetting the least recently used beyond the limit. */
  remember(runId: string, fold: Fold): void {
    this.#folds.delete(runId);
    this.#folds.set(runId, fold);
    if (this.#folds.size > FOLDS_KEPT) this.#folds.delete(this.#folds.keys().next().value!);
  }

  forget(runId: string): void {
    this.#folds.delete(runId);
  }

  clear(): void {
    this.#folds.clear();
  }
}

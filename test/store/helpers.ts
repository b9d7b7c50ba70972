/** Builders of run, step and event records for the run store tests. */
import { expect } from 'vitest';
import { FlowError } from '../../src/errors/errors.js';
import type { WeirEvent } from '../../src/model/events.js';
import type { NewRunRecord, RunOwner, StepRecord } from '../../src/storage/journal/run-store.js';

export const ALICE: RunOwner = { processId: 'alice:1', host: 'alice', pid: 1 };
export const BOB: RunOwner = { processId: 'bob:2', host: 'bob', pid: 2 };
export const T0 = 1_700_000_000_000;

/** A new running run owned by ALICE, its lease alive until `T0 + 30 s`. */
export function newRun(runId: string, fields: Partial<NewRunRecord> = {}): NewRunRecord {
  return {
    runId,
    flow: 'pipeline',
    fingerprint: 'fp1',
    input: { text: 'a b c' },
    mode: 'batch',
    humanInLoop: false,
    status: 'running',
    createdAt: T0,
    updatedAt: T0,
    owner: ALICE,
    leaseExpiresAt: T0 + 30_000,
    ...fields,
  };
}

/** A `step_start` event (or any type given) with seq `seq`. */
export function event(runId: string, seq: number, type: 'step_start' | 'step_complete' = 'step_start', step = 'a'): WeirEvent {
  return type === 'step_start'
    ? { type, runId, seq, time: T0 + seq, step, attempt: 1 }
    : { type, runId, seq, time: T0 + seq, step, attempt: 1, duration: 1 };
}

/** The `run_start` event. */
export function runStart(runId: string): WeirEvent {
  return { type: 'run_start', runId, seq: 1, time: T0, flow: 'pipeline', mode: 'batch' };
}

/** A step record; `completed` ones have an attempt and an output. */
export function stepRecord(runId: string, step: string, status: StepRecord['status'] = 'completed'): StepRecord {
  const done = status === 'completed';
  return {
    runId,
    step,
    status,
    attempts: done ? [{ attempt: 1, startTime: T0, endTime: T0 + 5, duration: 5 }] : [],
    startTime: T0,
    ...(done ? { endTime: T0 + 5 } : {}),
    hasOutput: done,
    updatedAt: T0 + 5,
  };
}

/** Resolves to the FlowError `promise` rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<FlowError> {
  const outcome = await promise.then(
    (value: unknown) => ({ resolved: value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.resolved)}`);
  expect(outcome.error).toBeInstanceOf(FlowError);
  return outcome.error as FlowError;
}

/**
 * Expectations on a run's steps and events that read well and depend on no test runner: a failed
 * one throws node's `AssertionError`, whose `actual` and `expected` every runner shows as a diff.
 */
import { deepStrictEqual } from 'node:assert/strict';
import type { WeirEvent } from '../model/events.js';
import type { FlowResult, StepResult } from '../model/result.js';
import { FlowStatus } from '../model/status.js';

/** Expectations on the steps of one run's result; each returns `this`, so they chain. */
export class StepExpectations {
  readonly #result: FlowResult;

  /** @internal use `t.expectSteps(result)`. */
  constructor(result: FlowResult) {
    this.#result = result;
  }

  /** Expects exactly these steps to have run (at least one attempt started), in any order. */
  toHaveRun(names: readonly string[]): this {
    return this.#expectSet('run', (step) => step.attempts.length > 0 || step.status === FlowStatus.RUNNING, names);
  }

  /** Expects exactly these steps to have completed, in any order (composites count: a composite completes when its children do). */
  toHaveCompleted(names: readonly string[]): this {
    return this.#expectSet(FlowStatus.COMPLETED, (step) => step.status === FlowStatus.COMPLETED, names);
  }

  /** Expects exactly these steps to have failed, in any order. */
  toHaveFailed(names: readonly string[]): this {
    return this.#expectSet(FlowStatus.FAILED, (step) => step.status === FlowStatus.FAILED, names);
  }

  /** Expects exactly these steps to have been skipped, in any order. */
  toHaveSkipped(names: readonly string[]): this {
    return this.#expectSet(FlowStatus.SKIPPED, (step) => step.status === FlowStatus.SKIPPED, names);
  }

  /** Expects these steps to have made these numbers of attempts (steps not named are not checked). */
  toHaveAttempts(expected: Readonly<Record<string, number>>): this {
    const actual: Record<string, number> = {};
    for (const name of Object.keys(expected)) actual[name] = this.attempts(name);
    deepStrictEqual(actual, { ...expected }, `expected run "${this.#result.runId}" to have made these attempts`);
    return this;
  }

  /**
   * How many attempts a step made.
   * @throws AssertionError when the run has no such step.
   */
  attempts(name: string): number {
    return this.#step(name).attempts.length;
  }

  #step(name: string): StepResult {
    const step = this.#result.steps[name];
    if (step === undefined) {
      deepStrictEqual(name, undefined, `run "${this.#result.runId}" has no step "${name}" (it has ${Object.keys(this.#result.steps).map((n) => `"${n}"`).join(', ')})`);
    }
    return step!;
  }

  #expectSet(what: string, has: (step: StepResult) => boolean, names: readonly string[]): this {
    for (const name of names) this.#step(name);
    const actual = Object.values(this.#result.steps)
      .filter(has)
      .map((step) => step.name)
      .sort();
    deepStrictEqual(actual, [...names].sort(), `expected exactly these steps of run "${this.#result.runId}" to have ${what === 'run' ? 'run' : `${what === FlowStatus.SKIPPED ? 'been ' : ''}${what}`}`);
    return this;
  }
}

/**
 * One event as a short line: its type, then its step and attempt (`charge#2`), then what sets it
 * apart (an input's key, a retry's delay, a progress fraction, an error's code). No ids, no times.
 */
export function eventLine(event: WeirEvent): string {
  const parts: string[] = [event.type];
  if ('step' in event && event.step !== undefined) parts.push('attempt' in event && event.attempt !== undefined ? `${event.step}#${event.attempt}` : event.step);
  switch (event.type) {
    case 'step_retry':
      parts.push(`in ${event.delay} ms`);
      break;
    case 'step_progress':
      parts.push(`${Math.round(event.progress * 100)}%`);
      break;
    case 'input_required':
      parts.push(`"${event.key}"`);
      break;
    case 'input_received':
      parts.push(`"${event.key}"`, event.outcome);
      break;
    case 'run_resumed':
      parts.push(event.reason);
      break;
    case 'step_complete':
      if (event.skipped === true) parts.push('skipped');
      break;
    default:
  }
  if ('error' in event && event.error !== undefined) parts.push(event.error.code ?? event.error.name);
  return parts.join(' ');
}

/** The result of a run as a test compares it: no ids, no process, no times (`t.summary`). */
export interface RunSummaryForTest {
  readonly status: string;
  readonly output: unknown;
  readonly error?: { readonly code: string | undefined; readonly message: string; readonly step?: string | undefined };
  /** Each step's status and attempts, by name. */
  readonly steps: Readonly<Record<string, { readonly status: string; readonly attempts: number; readonly error?: string | undefined }>>;
}

/** A run's result as plain data, for an expectation or a snapshot (`t.summary`). */
export function summaryOf(result: FlowResult): RunSummaryForTest {
  const steps: Record<string, { status: string; attempts: number; error?: string | undefined }> = {};
  for (const [name, step] of Object.entries(result.steps)) {
    steps[name] = { status: step.status, attempts: step.attempts.length, ...(step.error === undefined ? {} : { error: step.error.code ?? step.error.name }) };
  }
  return {
    status: result.status,
    output: result.output,
    ...(result.error === undefined ? {} : { error: { code: result.error.code, message: result.error.message, ...(result.error.step === undefined ? {} : { step: result.error.step }) } }),
    steps,
  };
}

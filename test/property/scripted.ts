/**
 * The one processor of the generated flows: what it does comes from its fields (copied to a thread
 * or a child), and its output is a digest of its name, input, dependencies and answer, so the
 * reference model can say the exact output of every step and of the run.
 */
import { appendFileSync } from 'node:fs';
import { z } from 'zod';
import { FatalError, Processor, RetryableError, type Step } from '../../src/index.js';

const Any = z.unknown();
const Answer = z.object({ n: z.number() });

/** What a generated step does on each attempt. */
export type Behaviour =
  /** Completes. */
  | { readonly kind: 'ok' }
  /** Throws a `FatalError` (never retried). */
  | { readonly kind: 'fatal' }
  /** Throws a `RetryableError` on its first `failures` attempts, then completes. */
  | { readonly kind: 'flaky'; readonly failures: number }
  /** Waits for its signal: every attempt runs out its timeout. */
  | { readonly kind: 'timeout' }
  /** Asks for an input keyed by its step's name, with `fallback` as its default when given (a batch run takes it; without it, the step fails). */
  | { readonly kind: 'ask'; readonly fallback: number | null };

/** The code a generated fatal step throws with. */
export const FATAL_CODE = 'E_GENERATED_FATAL';

/** Runs a generated step's behaviour: its fields cross to threads and children by structured clone. */
export class Scripted extends Processor<typeof Any, typeof Any> {
  static module = import.meta.url;
  readonly input = Any;
  readonly output = Any;
  behaviour: Behaviour;
  /** A file each execution appends a line to as it starts and as it returns ({@link Effect}), when given. */
  effects: string | undefined;
  constructor(behaviour: Behaviour = { kind: 'ok' }, effects?: string) {
    super();
    this.behaviour = behaviour;
    this.effects = effects;
  }

  async process(input: unknown, step: Step): Promise<unknown> {
    const b = this.behaviour;
    this.#record(step, 'start');
    const deps = await step.deps.getAll();
    let answer: unknown = null;
    if (b.kind === 'fatal') throw new FatalError(`${step.name}: generated fatal failure`, { code: FATAL_CODE });
    if (b.kind === 'flaky' && step.attempt <= b.failures) throw new RetryableError(`${step.name}: generated transient failure ${step.attempt}`);
    if (b.kind === 'timeout') {
      await new Promise<never>((_, reject) => {
        const stop = (): void => reject(step.signal.reason as Error);
        if (step.signal.aborted) stop();
        else step.signal.addEventListener('abort', stop, { once: true });
      });
    }
    if (b.kind === 'ask') {
      const options = b.fallback === null ? {} : { default: { n: b.fallback } };
      answer = await step.waitForInput(step.name, Answer, options);
    }
    this.#record(step, 'end');
    return digestOutput(step.name, input, deps, answer);
  }

  #record(step: Step, phase: Effect['phase']): void {
    if (this.effects === undefined) return;
    const effect: Effect = { step: step.name, attempt: step.attempt, pid: process.pid, phase };
    appendFileSync(this.effects, `${JSON.stringify(effect)}\n`);
  }
}

/** One line of an effects file: an execution of a step began, or returned its output. */
export interface Effect {
  readonly step: string;
  readonly attempt: number;
  readonly pid: number;
  readonly phase: 'start' | 'end';
}

/** What a step returns: its name, and a digest of what it saw. */
export function digestOutput(name: string, input: unknown, deps: unknown, answer: unknown): { step: string; digest: string } {
  return { step: name, digest: fnv1a(canonical([name, input, deps, answer])) };
}

/** JSON with object keys sorted, so equal values give equal text wherever they were built. */
export function canonical(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
}

function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

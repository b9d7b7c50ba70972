/**
 * The flows of the SQLite load test, shared by the worker program and the test: four kinds (a
 * sequential chain, a parallel fan-out/fan-in with required and optional edges, a chain with a step
 * that fails retryably once or twice before it succeeds, and a sequential flow with a parallel one
 * nested in it). Every leaf is an `Effect`: each execution appends a start line and an end line to
 * its process's effects file (outside weir's store) and returns its execution id in its output, so
 * the test can tie each stored output to one execution and count the executions weir never recorded.
 */
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { Flow, Processor, RetryableError, type Step } from '../../src/index.js';

export const Seed = z.object({ n: z.number().int() });
export type Seed = z.infer<typeof Seed>;
/** Every leaf's output: the execution that made it, and a number passed on. */
export const Out = z.object({ exec: z.string(), n: z.number().int() });
export type Out = z.infer<typeof Out>;

/** Where executions are recorded. */
export interface EffectLog {
  /** Records that an execution begins; returns its id, unique across processes. */
  start(runId: string, step: string, attempt: number): string;
  end(exec: string, outcome: 'ok' | 'threw'): void;
}

/** Appends to `<dir>/effects-<pid>.log`, one short line per record, synchronously: a SIGKILL after the call cannot lose it. */
export class FileEffectLog implements EffectLog {
  readonly #file: string;
  #count = 0;
  constructor(dir: string) {
    this.#file = join(dir, `effects-${process.pid}.log`);
  }
  start(runId: string, step: string, attempt: number): string {
    const exec = `${process.pid}-${++this.#count}`;
    appendFileSync(this.#file, `S\t${exec}\t${process.pid}\t${Date.now()}\t${runId}\t${step}\t${attempt}\n`);
    return exec;
  }
  end(exec: string, outcome: 'ok' | 'threw'): void {
    appendFileSync(this.#file, `E\t${exec}\t${process.pid}\t${Date.now()}\t${outcome}\n`);
  }
}

/** One execution of a step, as the effects files tell it. */
export interface Execution {
  readonly exec: string;
  readonly pid: number;
  readonly runId: string;
  readonly step: string;
  readonly attempt: number;
  /** When it began and ended (ms since the epoch); no end: its process died first. */
  readonly startedAt: number;
  endedAt?: number;
  outcome?: 'ok' | 'threw';
}

/** Every execution recorded in `dir`'s effects files. */
export function readEffects(dir: string): Execution[] {
  const byExec = new Map<string, Execution>();
  for (const file of readdirSync(dir).filter((f) => f.startsWith('effects-'))) {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      if (line === '') continue;
      const f = line.split('\t');
      if (f[0] === 'S' && f.length === 7) {
        byExec.set(f[1]!, { exec: f[1]!, pid: Number(f[2]), startedAt: Number(f[3]), runId: f[4]!, step: f[5]!, attempt: Number(f[6]) });
      } else if (f[0] === 'E' && f.length === 5 && byExec.has(f[1]!) && (f[4] === 'ok' || f[4] === 'threw')) {
        const execution = byExec.get(f[1]!)!;
        execution.endedAt = Number(f[3]);
        execution.outcome = f[4];
      } else {
        throw new Error(`${file}: a line that is no effect record: ${JSON.stringify(line)}`);
      }
    }
  }
  return [...byExec.values()];
}

/** A small stable number from a run id, so what a step does depends on its run only. */
export function hashOf(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** How many times the flaky step of a run fails before it succeeds: 1 or 2. */
export const failuresOf = (runId: string): number => 1 + (hashOf(runId) % 2);

/**
 * A leaf: records its execution, awaits 0 to 2 ms, computes its number from its input and its
 * dependencies, and returns it with its execution id. With `fails`, it throws a `RetryableError` on
 * attempts up to `fails(runId)` (after the work, like a call that timed out).
 */
export class Effect<I extends z.ZodType> extends Processor<I, typeof Out> {
  readonly input: I;
  readonly output = Out;
  readonly #log: EffectLog;
  readonly #compute: (input: z.output<I>, step: Step) => Promise<number> | number;
  readonly #fails: ((runId: string) => number) | undefined;
  constructor(input: I, log: EffectLog, compute: (input: z.output<I>, step: Step) => Promise<number> | number, fails?: (runId: string) => number) {
    super();
    this.input = input;
    this.#log = log;
    this.#compute = compute;
    this.#fails = fails;
  }
  async process(input: z.output<I>, step: Step): Promise<Out> {
    const exec = this.#log.start(step.runId, step.name, step.attempt);
    try {
      const ms = hashOf(`${step.runId}/${step.name}`) % 3;
      if (ms > 0) await sleep(ms);
      else await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#fails !== undefined && step.attempt <= this.#fails(step.runId)) {
        throw new RetryableError(`step "${step.name}" of run "${step.runId}": the service did not answer (attempt ${step.attempt})`);
      }
      const n = await this.#compute(input, step);
      this.#log.end(exec, 'ok');
      return { exec, n };
    } catch (error) {
      this.#log.end(exec, 'threw');
      throw error;
    }
  }
}

/** Reads a dependency's number, failing loudly when a required one is missing. */
async function dep(step: Step, name: string, required: boolean): Promise<number> {
  const out = await step.deps.get<Out>(name);
  if (out === undefined && required) throw new Error(`step "${step.name}": required dependency "${name}" has no output`);
  return out?.n ?? 0;
}

export const FLOW_NAMES = ['load-chain', 'load-fan', 'load-flaky', 'load-nested'] as const;
export type FlowName = (typeof FLOW_NAMES)[number];

/** The leaves of each flow, by flow: what the test checks step by step. */
export const LEAVES: Readonly<Record<FlowName, readonly string[]>> = {
  'load-chain': ['chain-1', 'chain-2', 'chain-3', 'chain-4'],
  'load-fan': ['fan-split', 'fan-a', 'fan-b', 'fan-c', 'fan-extra', 'fan-join'],
  'load-flaky': ['flaky-prep', 'flaky-call', 'flaky-after'],
  'load-nested': ['nest-first', 'nest-x', 'nest-y', 'nest-last'],
};

/** The four flows, their leaves recording into `log`. */
export function loadFlows(log: EffectLog): Flow<Seed, Record<string, unknown>>[] {
  const add = (k: number) => (input: Seed) => input.n + k;

  const chain = Flow.sequential<Seed, Record<string, unknown>>('load-chain');
  for (const [i, name] of LEAVES['load-chain'].entries()) new Flow(new Effect(Seed, log, add(i + 1)), { name }).registerTo(chain);

  // Fan-out from a split, fan-in at a join that requires two branches and takes two optionally.
  const fan = Flow.parallel<Seed, Record<string, unknown>>('load-fan');
  const split = new Flow(new Effect(Seed, log, add(1)), { name: 'fan-split' }).registerTo(fan);
  const branch = (name: string, k: number) =>
    new Flow(new Effect(Seed, log, async (_input, step) => (await dep(step, 'fan-split', true)) + k), { name }).registerTo(fan, { required: [split] });
  const a = branch('fan-a', 10);
  const b = branch('fan-b', 20);
  const c = branch('fan-c', 30);
  const extra = new Flow(new Effect(Seed, log, add(100)), { name: 'fan-extra' }).registerTo(fan);
  new Flow(
    new Effect(Seed, log, async (_input, step) => (await dep(step, 'fan-a', true)) + (await dep(step, 'fan-b', true)) + (await dep(step, 'fan-c', false)) + (await dep(step, 'fan-extra', false))),
    { name: 'fan-join' },
  ).registerTo(fan, { required: [a, b], optional: [c, extra] });

  // The middle step fails retryably once or twice, with a backoff of 1 to 5 ms.
  const flaky = Flow.sequential<Seed, Record<string, unknown>>('load-flaky');
  new Flow(new Effect(Seed, log, add(1)), { name: 'flaky-prep' }).registerTo(flaky);
  new Flow(new Effect(Seed, log, add(2), failuresOf), { name: 'flaky-call', retry: { maxAttempts: 8, initialInterval: 1, backoffFactor: 2, maxInterval: 5 } }).registerTo(flaky);
  new Flow(new Effect(Seed, log, add(3)), { name: 'flaky-after' }).registerTo(flaky);

  // sequential(first, parallel(x, y after x), last): the inner composite's output feeds the last step.
  const nested = Flow.sequential<Seed, Record<string, unknown>>('load-nested');
  new Flow(new Effect(Seed, log, add(1)), { name: 'nest-first' }).registerTo(nested);
  const inner = Flow.parallel('nest-inner').registerTo(nested);
  const x = new Flow(new Effect(Seed, log, add(2)), { name: 'nest-x' }).registerTo(inner);
  new Flow(new Effect(Seed, log, async (input, step) => input.n + (await dep(step, 'nest-x', true))), { name: 'nest-y' }).registerTo(inner, { required: [x] });
  const Inner = z.object({ 'nest-x': Out, 'nest-y': Out });
  new Flow(new Effect(Inner, log, (input) => input['nest-x'].n + input['nest-y'].n), { name: 'nest-last' }).registerTo(nested);

  return [chain, fan, flaky, nested];
}

/** The kind of flow of the `i`th run, and its id. */
export function runOf(i: number): { runId: string; flow: FlowName; input: Seed } {
  return { runId: `load-${String(i).padStart(5, '0')}`, flow: FLOW_NAMES[i % FLOW_NAMES.length]!, input: { n: i } };
}

/** What each leaf of the run of `flow` with input `n` outputs (its `n`), whoever ran it. */
export function expectedOf(flow: FlowName, n: number): Record<string, number> {
  switch (flow) {
    case 'load-chain':
      return { 'chain-1': n + 1, 'chain-2': n + 3, 'chain-3': n + 6, 'chain-4': n + 10 };
    case 'load-fan':
      return { 'fan-split': n + 1, 'fan-a': n + 11, 'fan-b': n + 21, 'fan-c': n + 31, 'fan-extra': n + 100, 'fan-join': 4 * n + 163 };
    case 'load-flaky':
      return { 'flaky-prep': n + 1, 'flaky-call': n + 3, 'flaky-after': n + 6 };
    case 'load-nested':
      return { 'nest-first': n + 1, 'nest-x': n + 3, 'nest-y': 2 * n + 4, 'nest-last': 3 * n + 7 };
  }
}

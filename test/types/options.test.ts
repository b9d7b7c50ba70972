import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  Flow,
  type AnyFlow,
  type CleanupOptions,
  type CompositeConfig,
  type DependencyRef,
  type EventsOptions,
  type FlowConfig,
  type FlowContextOptions,
  type FlowStatus,
  type LeafType,
  type ListRunsOptions,
  type MemoryResultsOptions,
  type ProcessPoolOptions,
  type PruneRunsOptions,
  type RegisterOptions,
  type ResumeOptions,
  type RetryOption,
  type RetryPolicyInput,
  type RetryPredicate,
  type RunOptions,
  type SqliteResultsOptions,
  type Step,
  type ThreadPoolOptions,
  type ThreadResourceLimits,
  type WaitForInputOptions,
} from '../../src/index.js';

// The compiler does the checking (what runs only builds plain objects): the options types are derived
// from zod schemas, and these keep them taking and refusing what the hand-written interfaces did.

describe('options types derived from their schemas', () => {
  it('requires a FlowConfig name and takes its other fields, undefined included', () => {
    expectTypeOf<FlowConfig['name']>().toEqualTypeOf<string>();
    expectTypeOf<FlowConfig>().toEqualTypeOf<{
      readonly name: string;
      readonly description?: string | undefined;
      readonly timeout?: number | undefined;
      readonly retry?: RetryOption | undefined;
      readonly heartbeatTimeout?: number | undefined;
      readonly type?: LeafType | undefined;
      readonly allowFailure?: boolean | undefined;
      readonly version?: string | undefined;
      readonly concurrency?: number | undefined;
      readonly keyConcurrency?: number | undefined;
    }>();
    const full: FlowConfig = {
      name: 'a',
      description: undefined,
      timeout: undefined,
      retry: undefined,
      heartbeatTimeout: undefined,
      type: undefined,
      allowFailure: undefined,
      version: undefined,
      concurrency: undefined,
      keyConcurrency: undefined,
    };
    // @ts-expect-error a flow needs a name
    const nameless: FlowConfig = { timeout: 5 };
    // @ts-expect-error unknown fields are refused
    const unknown: FlowConfig = { name: 'a', retries: 3 };
    void [full, nameless, unknown];
  });

  it('types FlowConfig.type as where a leaf runs, never a composite type', () => {
    expectTypeOf<LeafType>().toEqualTypeOf<'inline' | 'thread' | 'process'>();
    // @ts-expect-error composites are made with Flow.parallel and Flow.sequential
    const composite: FlowConfig = { name: 'a', type: 'parallel' };
    void composite;
  });

  it('gives CompositeConfig the FlowConfig fields but name and type', () => {
    expectTypeOf<CompositeConfig>().toEqualTypeOf<Omit<FlowConfig, 'name' | 'type'>>();
    expectTypeOf(Flow.parallel).parameter(1).toEqualTypeOf<CompositeConfig | undefined>();
    // @ts-expect-error a composite's name is an argument of its own
    const named: CompositeConfig = { name: 'a' };
    // @ts-expect-error a composite's type is set by its factory
    const typed: CompositeConfig = { type: 'thread' };
    void [named, typed];
  });

  it('takes a number of retries or a policy as RetryOption, and nothing else', () => {
    expectTypeOf<RetryOption>().toEqualTypeOf<number | RetryPolicyInput>();
    expectTypeOf<RetryPolicyInput>().toEqualTypeOf<{
      readonly maxAttempts?: number | undefined;
      readonly initialInterval?: number | undefined;
      readonly backoffFactor?: number | undefined;
      readonly maxInterval?: number | undefined;
      readonly jitter?: number | undefined;
      readonly retryOn?: RetryPredicate | undefined;
    }>();
    expectTypeOf<RetryPredicate>().toEqualTypeOf<(error: unknown, attempt: number) => boolean>();
    const policy: RetryOption = { maxAttempts: 3, retryOn: (error) => error instanceof Error };
    // @ts-expect-error retries are a number, not a string
    const text: RetryOption = '3';
    // @ts-expect-error retryOn is a predicate
    const notAFunction: RetryOption = { retryOn: true };
    // @ts-expect-error unknown policy fields are refused
    const unknown: RetryOption = { attempts: 3 };
    void [policy, text, notAFunction, unknown];
  });

  it('nests the same retry and pool types in FlowConfig and FlowContextOptions', () => {
    expectTypeOf<Exclude<FlowConfig['retry'], undefined>>().toEqualTypeOf<RetryOption>();
    expectTypeOf<Exclude<FlowContextOptions['retry'], undefined>>().toEqualTypeOf<RetryOption>();
    expectTypeOf<Exclude<FlowContextOptions['threads'], undefined>>().toEqualTypeOf<ThreadPoolOptions>();
    expectTypeOf<Exclude<FlowContextOptions['processes'], undefined>>().toEqualTypeOf<ProcessPoolOptions>();
    expectTypeOf<Exclude<ThreadPoolOptions['resourceLimits'], undefined>>().toEqualTypeOf<ThreadResourceLimits>();
  });

  it('types RunOptions.mode as batch, interactive or hybrid', () => {
    expectTypeOf<Exclude<RunOptions['mode'], undefined>>().toEqualTypeOf<'batch' | 'interactive' | 'hybrid'>();
    expectTypeOf<RunOptions>().toEqualTypeOf<{
      readonly mode?: 'batch' | 'interactive' | 'hybrid' | undefined;
      readonly humanInLoop?: boolean | undefined;
      readonly timeout?: number | undefined;
      readonly runId?: string | undefined;
      readonly signal?: AbortSignal | undefined;
      readonly concurrency?: number | undefined;
    }>();
    // @ts-expect-error there is no 'manual' mode
    const manual: RunOptions = { mode: 'manual' };
    void manual;
  });

  it('makes every field readonly, nested policies and pools included', () => {
    const run: RunOptions = { mode: 'batch' };
    const config: FlowConfig = { name: 'a', retry: { maxAttempts: 2 } };
    const context: FlowContextOptions = { threads: { max: 2, resourceLimits: { stackSizeMb: 4 } } };
    // @ts-expect-error readonly
    run.mode = 'hybrid';
    // @ts-expect-error readonly
    config.name = 'b';
    if (typeof config.retry === 'object') {
      // @ts-expect-error readonly
      config.retry.maxAttempts = 3;
    }
    if (context.threads?.resourceLimits !== undefined) {
      // @ts-expect-error readonly
      context.threads.resourceLimits.stackSizeMb = 8;
    }
  });

  it('takes sibling flows or their names as RegisterOptions, in readonly arrays', () => {
    expectTypeOf<DependencyRef>().toEqualTypeOf<AnyFlow | string>();
    expectTypeOf<RegisterOptions>().toEqualTypeOf<{
      readonly required?: readonly DependencyRef[] | undefined;
      readonly optional?: readonly DependencyRef[] | undefined;
    }>();
    const names = ['a', 'b'] as const;
    const options: RegisterOptions = { required: names, optional: undefined };
    // @ts-expect-error a dependency is a Flow or a name
    const numbers: RegisterOptions = { required: [1] };
    void [options, numbers];
  });

  it('types the history queries: listRuns, resume and prune', () => {
    expectTypeOf<ListRunsOptions['status']>().toEqualTypeOf<FlowStatus | readonly FlowStatus[] | undefined>();
    expectTypeOf<ResumeOptions>().toEqualTypeOf<{ readonly from?: string | undefined }>();
    expectTypeOf<PruneRunsOptions>().toEqualTypeOf<{ readonly olderThan: number | Date }>();
    // @ts-expect-error prune needs olderThan
    const everything: PruneRunsOptions = {};
    // @ts-expect-error not a status
    const done: ListRunsOptions = { status: 'done' };
    void [everything, done];
  });

  it('types the options of events() and waitForInput(), the latter generic in its default', () => {
    expectTypeOf<EventsOptions>().toEqualTypeOf<{ readonly after?: number | undefined; readonly signal?: AbortSignal | undefined }>();
    expectTypeOf<WaitForInputOptions<{ ok: boolean }>['default']>().toEqualTypeOf<{ ok: boolean } | undefined>();
    expectTypeOf<WaitForInputOptions<string>['timeout']>().toEqualTypeOf<number | undefined>();
    const ask = (step: Step) => step.waitForInput('approve', z.object({ ok: z.boolean() }), { timeout: 1000, default: { ok: false } });
    expectTypeOf(ask).returns.resolves.toEqualTypeOf<{ ok: boolean }>();
    // @ts-expect-error the default must fit the ask's schema
    const wrong = (step: Step) => step.waitForInput('approve', z.object({ ok: z.boolean() }), { default: { ok: 'no' } });
    // @ts-expect-error unknown ask options are refused
    const unknown: WaitForInputOptions<string> = { retries: 1 };
    void [wrong, unknown];
  });

  it('takes an explicit undefined for every optional field, as an absent one', () => {
    const run: RunOptions = { mode: undefined, humanInLoop: undefined, timeout: undefined, runId: undefined, signal: undefined, concurrency: undefined };
    const events: EventsOptions = { after: undefined, signal: undefined };
    const ask: WaitForInputOptions<number> = { timeout: undefined, default: undefined };
    const sqlite: SqliteResultsOptions = { table: undefined, synchronous: undefined, busyTimeout: undefined };
    const memory: MemoryResultsOptions = { keepFinishedRuns: undefined, checkSerializable: undefined };
    const pools: FlowContextOptions = { threads: { max: undefined, resourceLimits: undefined }, processes: { execArgv: undefined } };
    const list: ListRunsOptions = { status: undefined, flow: undefined, limit: undefined, before: undefined, stale: undefined };
    void [run, events, ask, sqlite, memory, pools, list];
  });

  it('types the pool and results options, and refuses unknown keys', () => {
    expectTypeOf<ThreadPoolOptions['max']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<ProcessPoolOptions['execArgv']>().toEqualTypeOf<readonly string[] | undefined>();
    expectTypeOf<ThreadResourceLimits['maxOldGenerationSizeMb']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<SqliteResultsOptions['synchronous']>().toEqualTypeOf<'NORMAL' | 'FULL' | undefined>();
    expectTypeOf<MemoryResultsOptions>().toEqualTypeOf<{ readonly keepFinishedRuns?: number | undefined; readonly checkSerializable?: boolean | undefined }>();
    expectTypeOf<CleanupOptions>().toEqualTypeOf<{ readonly olderThan: number | Date }>();
    // @ts-expect-error unknown pool options are refused
    const threads: ThreadPoolOptions = { maxThreads: 2 };
    // @ts-expect-error `synchronous` is NORMAL or FULL
    const off: SqliteResultsOptions = { synchronous: 'OFF' };
    void [threads, off];
  });
});

/**
 * The options of `new FlowContext()`: one zod schema, the public type derived from it, and the
 * frozen settings the context and its parts read, every default filled in once.
 */
import { z } from 'zod';
import { processPoolSchema, processSettings, threadPoolSchema, threadSettings, type ProcessPoolSettings, type ThreadPoolSettings } from '../executors/pool-options.js';
import { DEFAULT_RETRY_POLICY, mergeRetry, retryOptionSchema, type RetryPolicy } from '../model/retry-policy.js';
import { ResultsManager } from '../results/results-manager.js';
import type { StepDoubles } from '../run/environment.js';
import type { RunStore } from '../storage/journal/run-store.js';
import { systemClock, type Clock } from '../util/clock.js';
import { TEST_HOOKS, type TestHooks } from './test-hooks.js';
import { codedStore } from '../storage/journal/coded-store.js';
import { duration, expecting, parseOptions, type OptionsOf } from '../util/parse.js';

// The shape is a const of its own so its TSDoc reaches the published types.
const contextOptionsShape = {
  /** Where step outputs and the run journal are stored. @default ResultsManager.memory() */
  results: z.custom<ResultsManager>((v) => v instanceof ResultsManager, 'a ResultsManager').optional(),
  /** The most steps that run at once across all runs of this context. @default 100 */
  concurrency: z.number().int().positive().or(z.literal(Infinity)).optional(),
  /** The retry policy under every flow's and composite's. @default 0 (a single attempt) */
  retry: retryOptionSchema.optional(),
  /** The default timeout of one step attempt, in milliseconds. @default none */
  timeout: duration().optional(),
  /** How long `close()` waits for active runs before cancelling them, in milliseconds. @default 10000 */
  closeTimeout: duration({ min: 0 }).optional(),
  /** The pool of worker threads behind `type: 'thread'` flows, made on first use. @default see `ThreadPoolOptions` */
  threads: threadPoolSchema.optional(),
  /** The pool of child processes behind `type: 'process'` flows, made on first use. @default see `ProcessPoolOptions` */
  processes: processPoolSchema.optional(),
  /**
   * Take over stale runs of registered flows by itself: on the turn after construction (so flows
   * registered right away are known), whenever a flow is registered, and every `leaseTimeout`
   * after that (so runs another process leaves behind later are taken too). @default false
   */
  recover: z.boolean().optional(),
  /**
   * How long a run's lease lasts without renewal, in milliseconds. The context renews the leases of
   * its runs every third of it; a run whose lease ran out is stale and `recover()` takes it. @default 30000
   */
  leaseTimeout: duration({ min: 100 }).optional(),
  /** How many times a run may be taken over after losing its owner before it fails with `WEIR_RECOVERY_LIMIT`. @default 5 */
  maxRecoveries: z.number().int().nonnegative().optional(),
  /**
   * What recovering or resuming a run does when its flow graph changed since the run started:
   * `fail` fails it with `WEIR_FLOW_CHANGED`, `continue` goes on with the graph as it is now. @default 'fail'
   */
  onFlowChange: z.enum(['fail', 'continue']).optional(),
  /**
   * How long a run may wait for input with nobody answering, in milliseconds, counted from when it
   * began to wait (again); then it takes `inputFallback`. @default none (it waits until answered, or until its asks' own timeouts)
   */
  inputTimeout: duration().optional(),
  /**
   * What a run nobody answered within `inputTimeout` does: `fail` fails its waiting steps (defaults
   * or not), `default` gives each waiting ask its default (or fails it), `batch` takes the person
   * out of the loop for good (this ask and later ones take their defaults or fail). @default 'fail'
   */
  inputFallback: z.enum(['fail', 'default', 'batch']).optional(),
  /**
   * How a context that recovers (`recover: true`) takes runs queued with `ctx.enqueue`, by any
   * context on the same store: `concurrency`, the most runs it holds at once before it stops taking
   * queued ones; `pollInterval`, how often it looks for them, in milliseconds, when no notice of new
   * work comes (a Postgres store sends notices; the other stores are only polled). @default { concurrency: 100, pollInterval: 1000 }
   */
  queue: z
    .strictObject({
      concurrency: expecting(z.number().int().positive(), 'a whole number >= 1').optional(),
      pollInterval: duration({ min: 10 }).optional(),
    })
    .optional(),
};
const contextOptionsSchema = z.strictObject(contextOptionsShape);

/** Options of `new FlowContext()`. */
export type FlowContextOptions = OptionsOf<typeof contextOptionsShape>;

/** What a waiting run nobody answered within `inputTimeout` falls back to. */
export type InputFallback = NonNullable<FlowContextOptions['inputFallback']>;

/** A context's options with every default filled in, frozen: what its parts read. */
export interface ContextSettings {
  readonly results: ResultsManager;
  readonly concurrency: number;
  /** The context's policy, over the built-in one: every flow's and composite's is merged over it. */
  readonly retry: RetryPolicy;
  readonly timeout: number | undefined;
  readonly closeTimeout: number;
  readonly threads: ThreadPoolSettings;
  readonly processes: ProcessPoolSettings;
  readonly recover: boolean;
  readonly leaseMs: number;
  readonly maxRecoveries: number;
  readonly onFlowChange: 'fail' | 'continue';
  readonly inputTimeout: number | undefined;
  readonly inputFallback: InputFallback;
  /** How a recovering context takes queued runs. */
  readonly queue: { readonly concurrency: number; readonly pollInterval: number };
  /** The time its runs run on: the host's, or a virtual one (`weir/testing`). */
  readonly clock: Clock;
  /** What runs instead of some steps' processors (`weir/testing`). */
  readonly doubles: StepDoubles | undefined;
  /** Wraps the run store the context writes to (`weir/testing`). */
  readonly wrapStore: ((store: RunStore) => RunStore) | undefined;
}

/**
 * Parses `new FlowContext()`'s options once into frozen settings.
 * @throws ValidationError `WEIR_INVALID_OPTIONS` naming each bad option, what it takes and what it got.
 */
export function contextSettings(options: FlowContextOptions): ContextSettings {
  const parsed = parseOptions(contextOptionsSchema, options, 'new FlowContext()');
  const hooks = (options as { readonly [TEST_HOOKS]?: TestHooks })[TEST_HOOKS];
  // A store from the test seam may throw anything: weir's callers see a coded error, as with its own stores.
  const wrapStore = hooks?.wrapStore;
  return Object.freeze({
    results: parsed.results ?? ResultsManager.memory(),
    concurrency: parsed.concurrency ?? 100,
    retry: mergeRetry(DEFAULT_RETRY_POLICY, parsed.retry),
    timeout: parsed.timeout,
    closeTimeout: parsed.closeTimeout ?? 10_000,
    threads: threadSettings(parsed.threads),
    processes: processSettings(parsed.processes),
    recover: parsed.recover ?? false,
    leaseMs: parsed.leaseTimeout ?? 30_000,
    maxRecoveries: parsed.maxRecoveries ?? 5,
    onFlowChange: parsed.onFlowChange ?? 'fail',
    inputTimeout: parsed.inputTimeout,
    inputFallback: parsed.inputFallback ?? 'fail',
    queue: Object.freeze({ concurrency: parsed.queue?.concurrency ?? 100, pollInterval: parsed.queue?.pollInterval ?? 1000 }),
    clock: hooks?.clock ?? systemClock,
    doubles: hooks?.doubles,
    wrapStore: wrapStore === undefined ? undefined : (store: RunStore) => codedStore(wrapStore(store)),
  });
}

/** The handle `ctx.start` returns: the run's id, its result, and its events. */
import { z } from 'zod';
import type { WeirEvent } from '../model/events.js';
import type { FlowResult } from '../model/result.js';
import { setRealTimer } from '../util/clock.js';
import { parseOptions, type OptionsOf } from '../util/parse.js';
import { isAborted } from './event-log.js';
import { PARKED, type Run } from './run.js';

// The shape is a const of its own so its TSDoc reaches the published types.
const eventsOptionsShape = {
  /** Replay only events with a `seq` greater than this (a whole number >= 0). @default 0 (everything) */
  after: z.number().int().nonnegative().optional(),
  /** Stops the iteration when aborted. */
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'an AbortSignal').optional(),
};
const eventsOptionsSchema = z.strictObject(eventsOptionsShape);

/** Options of `handle.events()`. */
export type EventsOptions = OptionsOf<typeof eventsOptionsShape>;

/** A started run. */
export interface RunHandle<O = unknown> {
  /** The run's id. */
  readonly runId: string;
  /** Resolves to the run's `FlowResult` when it ends; a failed step fails the result, it does not reject. */
  result(): Promise<FlowResult<O>>;
  /**
   * The run's events with `seq > after`, then each new one live, ending when the run ends. Every
   * follower keeps only its position in the run's log, so a slow one never slows the run.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` when `after` is not a whole number >= 0 or `signal` is not an AbortSignal.
   */
  events(options?: EventsOptions): AsyncIterable<WeirEvent>;
}

/**
 * Makes the handle of a run live in this context. Once the run parks to wait for input, the handle
 * follows it through `stored` (the handle of the run in the store, which sees it go on here or
 * elsewhere): the run itself knows nothing of its followers.
 */
export function handleOf<O>(run: Run, stored: () => RunHandle<O>): RunHandle<O> {
  return {
    runId: run.runId,
    result: async () => {
      const outcome = await run.ended();
      return outcome === PARKED ? stored().result() : (outcome as FlowResult<O>);
    },
    events: (options = {}) => {
      const parsed = parseOptions(eventsOptionsSchema, options, 'events options');
      return followLive(run, parsed.after ?? 0, parsed.signal, stored);
    },
  };
}

async function* followLive<O>(run: Run, after: number, signal: AbortSignal | undefined, stored: () => RunHandle<O>): AsyncGenerator<WeirEvent, void, undefined> {
  let last = after;
  for await (const event of run.eventsAfter(after, signal)) {
    yield event;
    last = event.seq;
  }
  // Parked to wait for input: it goes on in a later run of the same id, here or elsewhere.
  if (run.isParked && !isAborted(signal)) yield* stored().events(signal === undefined ? { after: last } : { after: last, signal });
}

/** How often a handle of a run owned elsewhere reads the store, in milliseconds. */
const POLL_MS = 50;
/** The slowest it reads, once nothing changed for a while (a run waiting for a person). */
const MAX_POLL_MS = 1000;

/** What a handle of a stored run reads. */
export interface StoredRunSource {
  /** The run's result once it has ended, `undefined` while it goes on. */
  finished(): Promise<FlowResult | undefined>;
  readEvents(after: number): Promise<WeirEvent[]>;
  /** Whether the run has ended (as far as the store knows). */
  ended(): Promise<boolean>;
  /** The run's events after `after` straight from its live run, while this context runs it; `undefined` when it does not. */
  liveEvents?(after: number, signal: AbortSignal | undefined): AsyncIterable<WeirEvent> | undefined;
  /** Resolves when this context takes the run (again), so a waiting handle looks at once. */
  launched?(): Promise<void>;
}

/** The handle of a run in the store that this context does not run: it reads the store until the run ends. */
export function storedHandleOf<O>(runId: string, source: StoredRunSource): RunHandle<O> {
  let result: Promise<FlowResult<O>> | undefined;
  return {
    runId,
    result: () =>
      (result ??= (async () => {
        // Quick at first, then slower: a run may wait for a person for hours.
        for (let wait = POLL_MS; ; wait = slower(wait)) {
          const done = await source.finished();
          if (done !== undefined) return done as FlowResult<O>;
          await (source.launched === undefined ? sleep(wait) : Promise.race([sleep(wait), source.launched()]));
        }
      })()),
    events: (options = {}) => {
      const parsed = parseOptions(eventsOptionsSchema, options, 'events options');
      return follow(source, parsed.after ?? 0, parsed.signal);
    },
  };
}

async function* follow(source: StoredRunSource, after: number, signal: AbortSignal | undefined): AsyncGenerator<WeirEvent, void, undefined> {
  let last = after;
  let wait = POLL_MS;
  while (!isAborted(signal)) {
    // Run here now: its events as they happen, until it ends or parks again.
    const live = source.liveEvents?.(last, signal);
    if (live !== undefined) {
      for await (const event of live) {
        yield event;
        last = event.seq;
      }
      continue;
    }
    // Whether it had ended is read before the events, so the events read after it include its last one.
    const ended = await source.ended();
    const events = await source.readEvents(last);
    for (const event of events) {
      yield event;
      last = event.seq;
      if (isAborted(signal)) return;
    }
    if (ended) return;
    wait = events.length === 0 ? slower(wait) : POLL_MS;
    if (events.length === 0) await sleep(wait);
  }
}

/** The next wait between reads that found nothing new: half as long again, up to `MAX_POLL_MS`. */
function slower(wait: number): number {
  return Math.min(MAX_POLL_MS, Math.ceil(wait * 1.5));
}

function sleep(ms: number): Promise<void> {
  // A real timer: fake timers must not stall a poll. It holds the process open as any awaited I/O
  // does, while someone waits on a run going on elsewhere; `ctx.close()` ends the wait.
  return new Promise((resolve) => setRealTimer(resolve, ms));
}

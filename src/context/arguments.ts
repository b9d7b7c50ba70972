/**
 * The arguments of the context's calls that are not an options object (a run id, a step, a key, a
 * listener), each call's as one schema, so a bad one is named as a bad option is:
 * `ctx.getRun(): runId: expected a string of 1 to 200 characters without "/" or control characters, got 5`.
 */
import { z } from 'zod';
import type { WeirEventMap } from '../model/events.js';
import { runIdSchema } from '../model/run-options.js';
import { expecting } from '../util/parse.js';

const runId = runIdSchema;

/** `ctx.getRun`, `ctx.handle`, `ctx.resume`, `ctx.retry`, `ctx.events`: the run. */
export const runArgs = z.strictObject({ runId });

/** `ctx.cancel(runId, reason?)`. */
export const cancelArgs = z.strictObject({ runId, reason: z.string().optional() });

/** `ctx.skip(runId, step, output?)`: a step is named as a flow is. */
export const skipArgs = z.strictObject({ runId, step: expecting(z.string().min(1).max(128), 'a step name of 1 to 128 characters'), output: z.unknown().optional() });

/** `ctx.submitInput(runId, key, value)`: the key as `step.waitForInput` takes it. */
export const submitArgs = z.strictObject({ runId, key: expecting(z.string().min(1).max(200), 'a string of 1 to 200 characters'), value: z.unknown().optional() });

/** `ctx.setHumanInLoop(runId, on)`. */
export const humanInLoopArgs = z.strictObject({ runId, on: z.boolean() });

// A record over the event map, so the compiler says when an event type is added and not listed here.
const EVENT_TYPES: Readonly<Record<keyof WeirEventMap, true>> = {
  event: true,
  run_start: true,
  step_start: true,
  step_progress: true,
  step_heartbeat: true,
  step_retry: true,
  step_complete: true,
  step_failed: true,
  step_skipped: true,
  step_cancelled: true,
  input_required: true,
  input_received: true,
  run_waiting: true,
  run_resumed: true,
  run_complete: true,
  run_failed: true,
  run_cancelled: true,
};

const eventType = z.enum(Object.keys(EVENT_TYPES) as [keyof WeirEventMap, ...(keyof WeirEventMap)[]]);
const fn = expecting(
  z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function'),
  'a function',
);

/** `ctx.on`, `ctx.once`, `ctx.off`: an event type (or `'event'`) and a listener. */
export const listenArgs = z.strictObject({ type: eventType, listener: fn });

/** `ctx.listenerCount(type)`. */
export const eventTypeArgs = z.strictObject({ type: eventType });

/** `ctx.beforeClose(fn)`. */
export const hookArgs = z.strictObject({ fn });

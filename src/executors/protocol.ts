/**
 * The protocol between the main thread and a worker (thread or child process): one discriminated
 * union per direction, shared by both sides. Every value travels by structured clone.
 */
import type { ErrorData } from '../errors/error-data.js';
import type { InputAnswer } from './executor.js';
import type { InputAsk } from '../human/ask.js';
import type { Mutable } from '../util/types.js';

/** The key of a processor class on every thread: `module#exportName`. */
export function processorKey(module: string, exportName: string): string {
  return `${module}#${exportName}`;
}

/** Where a worker finds a processor class, and the state to give its new instance. Kept small: it is copied on every dispatch. */
export interface ProcessorRef {
  /** A `file:` URL of the module that exports the class; with `exportName`, the key of the worker's cached instance. */
  readonly module: string;
  /** The export to take from that module. */
  readonly exportName: string;
  /** A snapshot of the instance's own enumerable data fields, `input` and `output` excepted; absent when there are none. */
  readonly state?: Readonly<Record<string, unknown>>;
  /** With `state`: which main-thread instance it is, so each gets its own worker instance and no field carries over. */
  readonly instance?: number;
  /** Set the first time a child process is sent this class: its later tasks name the class by this number alone. */
  readonly alias?: number;
}

/** A class a child process was sent before (as a `ProcessorRef` with `alias`), named by that number; copying it costs less. */
export interface ProcessorAlias {
  readonly alias: number;
  readonly state?: Readonly<Record<string, unknown>>;
  readonly instance?: number;
}

/**
 * Main to worker: run one attempt of a step. Optional fields are left out at their usual value, to
 * keep the message small. It travels as a `TaskWire` (`toWire`, `fromWire`).
 */
export interface RunTaskMessage {
  /** Unique per executor; every message about this attempt carries it. */
  readonly id: number;
  /** The class to run; to a child process, once sent, by its alias. */
  readonly processor: ProcessorRef | ProcessorAlias;
  /** The raw input; the worker validates it with the processor's own schema. */
  readonly input: unknown;
  /** The step's name, run and attempt, as the main thread's `Step` has them (its idempotency key follows from them: `idempotencyKeyOf`). */
  readonly name: string;
  readonly runId: string;
  readonly attempt: number;
  /** Set when an unanswered `waitForInput` waits for a person (interactive, or hybrid with a person in the loop). */
  readonly waits?: true;
  /** The outputs of the completed dependencies (`step.deps.getAll()` on the main thread); absent when there are none. */
  readonly deps?: Readonly<Record<string, unknown>>;
  /** How the run's waits for input ended so far, by key; absent when none did. */
  readonly answers?: Readonly<Record<string, InputAnswer>>;
  /**
   * Set when the main thread wants a `started` message once the processor is built: the step has a
   * timeout, and the main thread cannot tell whether this worker has started and loaded the module yet.
   */
  readonly notify?: true;
  /**
   * To a child process: how long to keep checking for its next task after answering this one, in
   * microseconds (`processes.spinMicros`); set only while a core is free for it (see `loop-spin.ts`).
   * Absent means no spin (a `0` travels as absent).
   */
  readonly spinMicros?: number;
}

/**
 * A `RunTaskMessage` as it travels: a flat array, its slots in the order below. The six trailing
 * slots are left out together when none of deps, answers, state or alias is set, else all written
 * (`undefined` where unset). A structured clone copies an array's slots for less than an object's
 * named properties: on a chain of trivial thread steps, 3.5-6 µs less per dispatch (about a tenth).
 */
export type TaskWire = readonly [
  id: number,
  input: unknown,
  name: string,
  runId: string,
  attempt: number,
  /** `WAITS` and `NOTIFY`, or'ed, and `spinMicros` shifted left by `SPIN_SHIFT`. */
  flags: number,
  /** The module's URL, or the processor's alias. */
  where: string | number,
  exportName?: string | undefined,
  deps?: Readonly<Record<string, unknown>> | undefined,
  answers?: Readonly<Record<string, InputAnswer>> | undefined,
  state?: Readonly<Record<string, unknown>> | undefined,
  instance?: number | undefined,
  /** With a module: the alias the class gets from now on. */
  alias?: number | undefined,
];

const WAITS = 1;
const NOTIFY = 2;
/** The bits below `spinMicros` in the flags slot. */
const SPIN_SHIFT = 2;

/** The task as it is sent. */
export function toWire(task: RunTaskMessage): TaskWire {
  const ref = task.processor;
  const flags = (task.waits === true ? WAITS : 0) | (task.notify === true ? NOTIFY : 0) | ((task.spinMicros ?? 0) << SPIN_SHIFT);
  const module = 'module' in ref ? ref : undefined;
  const alias = module?.alias;
  // Each array is written whole, as a literal: one pushed onto grows a backing store about three times its length.
  if (task.deps === undefined && task.answers === undefined && ref.state === undefined && alias === undefined) {
    return (
      module === undefined
        ? [task.id, task.input, task.name, task.runId, task.attempt, flags, ref.alias]
        : [task.id, task.input, task.name, task.runId, task.attempt, flags, module.module, module.exportName]
    ) as unknown as TaskWire;
  }
  const where = module === undefined ? ref.alias : module.module;
  return [task.id, task.input, task.name, task.runId, task.attempt, flags, where, module?.exportName, task.deps, task.answers, ref.state, ref.instance, alias] as unknown as TaskWire;
}

/** The task a worker was sent. */
export function fromWire(wire: TaskWire): RunTaskMessage {
  const where = wire[6];
  const state = wire[10];
  let processor: ProcessorRef | ProcessorAlias;
  if (typeof where === 'number') processor = state === undefined ? { alias: where } : { alias: where, state, instance: wire[11]! };
  else {
    const ref: Mutable<ProcessorRef> = { module: where, exportName: wire[7]! };
    if (state !== undefined) {
      ref.state = state;
      ref.instance = wire[11]!;
    }
    if (wire[12] !== undefined) ref.alias = wire[12];
    processor = ref;
  }
  const task: Mutable<RunTaskMessage> = { id: wire[0], processor, input: wire[1], name: wire[2], runId: wire[3], attempt: wire[4] };
  const flags = wire[5];
  if ((flags & WAITS) !== 0) task.waits = true;
  if ((flags & NOTIFY) !== 0) task.notify = true;
  if (flags >= 1 << SPIN_SHIFT) task.spinMicros = flags >> SPIN_SHIFT;
  if (wire[8] !== undefined) task.deps = wire[8];
  if (wire[9] !== undefined) task.answers = wire[9];
  return task;
}

/** Main to worker: abort the running attempt's `step.signal`. */
export interface AbortTaskMessage {
  readonly type: 'abort';
  readonly id: number;
  readonly reason: ErrorData;
}

/** Main to worker: the answer to a `deps.get` the worker could not answer from its copy. */
export interface DepsReplyMessage {
  readonly type: 'deps-reply';
  readonly id: number;
  readonly call: number;
  readonly value?: unknown;
  readonly error?: ErrorData;
}

/** Everything the main thread sends to a worker. */
export type ToWorker = TaskWire | AbortTaskMessage | DepsReplyMessage;

/** Worker to main: `step.progress(fraction, message)`. */
export interface ProgressMessage {
  readonly type: 'progress';
  readonly id: number;
  readonly fraction: number;
  readonly message?: string;
}

/** Worker to main: `step.heartbeat(details)`. */
export interface HeartbeatMessage {
  readonly type: 'heartbeat';
  readonly id: number;
  readonly details?: unknown;
}

/** Worker to main: `deps.get(name)` for a name not in the shipped outputs (absent or unknown). */
export interface DepsGetMessage {
  readonly type: 'deps-get';
  readonly id: number;
  readonly call: number;
  readonly name: string;
}

/** Worker to main: the processor of a task sent with `notify` is built and about to run. */
export interface StartedMessage {
  readonly type: 'started';
  readonly id: number;
  /** `module#exportName`: this worker has loaded that class now. */
  readonly key: string;
}

/** Worker to main: `step.waitForInput` waits for a person; the attempt ends as waiting right after. */
export interface AskMessage {
  readonly type: 'ask';
  readonly id: number;
  readonly ask: InputAsk;
}

/**
 * Worker to main: the attempt ended. `events` counts the messages sent before it, so none is lost;
 * absent when none was. `async` is set when `process` returned a promise (a thread pool pipelines
 * only classes that never do: see `pipeline.ts`).
 */
export type ResultMessage =
  | { readonly type: 'result'; readonly id: number; readonly events?: number; readonly async?: true; readonly ok: true; readonly value: unknown }
  | { readonly type: 'result'; readonly id: number; readonly events?: number; readonly async?: true; readonly ok: false; readonly error: ErrorData };

/** Child to main: an exception escaped the task; the child exits right after. */
export interface CrashMessage {
  readonly type: 'crash';
  readonly error: ErrorData;
}

/** Child to main: the child listens for tasks now. */
export interface ReadyMessage {
  readonly type: 'ready';
}

/** Messages a worker sends while an attempt runs. */
export type TaskEvent = StartedMessage | ProgressMessage | HeartbeatMessage | DepsGetMessage | AskMessage;

/** Everything a worker sends to the main thread. */
export type FromWorker = TaskEvent | ResultMessage | CrashMessage | ReadyMessage;

/** Tells this protocol's messages from anything else on a shared channel. */
export function isFromWorker(message: unknown): message is FromWorker {
  if (typeof message !== 'object' || message === null) return false;
  const type = (message as { type?: unknown }).type;
  return (
    type === 'started' || type === 'progress' || type === 'heartbeat' || type === 'deps-get' || type === 'ask' || type === 'result' || type === 'crash' || type === 'ready'
  );
}

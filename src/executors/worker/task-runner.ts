/**
 * The worker side of an attempt, shared by the thread and the child-process entries: builds the
 * processor from its module, gives it a step context backed by the task, and runs it.
 */
import { fromErrorData, toErrorData } from '../../errors/error-data.js';
import { DependencyError } from '../../errors/errors.js';
import { idempotencyKeyOf, type AnySchema, type flowOutput, type Processor, type Step, type StepDeps, type TypedFlow, type WaitForInputOptions } from '../../model/processor.js';
import { callProcessor, isThenable } from '../invoke.js';
import { installProcessorLoader, processorClass } from './processor-loader.js';
import { processorKey, type AbortTaskMessage, type DepsReplyMessage, type FromWorker, type ProcessorAlias, type ProcessorRef, type ResultMessage, type RunTaskMessage } from '../protocol.js';
import { setRealImmediate } from '../../util/clock.js';
import { askForInput, inputWaitSignal } from '../../human/ask.js';

type Send = (message: FromWorker) => void;
const EARLY_ABORTS = 64;
const NO_DEPS: Readonly<Record<string, unknown>> = Object.freeze({});

/** Runs tasks one after another (or side by side), keeping one instance per processor class. */
export class TaskRunner {
  readonly #send: Send;
  readonly #instances = new Map<string, Promise<Processor>>();
  /** The instances built, to run without waiting for their promise. */
  readonly #built = new Map<string, Processor>();
  /** Classes a child process was sent with an alias, by that alias. */
  readonly #aliases = new Map<number, ProcessorRef>();
  readonly #active = new Map<number, WorkerStep>();
  /** Aborts that arrived before their task (they travel on another channel); a few are kept. */
  readonly #early = new Map<number, unknown>();

  constructor(send: Send) {
    this.#send = send;
    installProcessorLoader();
  }

  /**
   * Runs one attempt; never rejects: a failure is a `result` with `ok: false`. Answers at once (not
   * a promise) when the processor is built and `process` is synchronous, so that the task costs no
   * turn of the microtask queue per `await` between the worker waking and its answer.
   */
  run(task: RunTaskMessage): ResultMessage | Promise<ResultMessage> {
    const step = new WorkerStep(task, this.#send);
    this.#active.set(task.id, step);
    if (this.#early.size > 0 && this.#early.has(task.id)) {
      step.abort(this.#early.get(task.id));
      this.#early.delete(task.id);
    }
    let ref: ProcessorRef;
    try {
      ref = this.#ref(task.processor);
    } catch (error) {
      this.#active.delete(task.id);
      return failed(task, step, error);
    }
    const processor = this.#built.get(instanceKey(ref));
    // Not built yet, or its asks may wait for a person (a race with the wait): the general path.
    if (processor === undefined || step.waited !== undefined) return this.#runLater(task, step, ref);
    let output: unknown;
    try {
      output = this.#call(task, ref, step, processor);
    } catch (error) {
      this.#active.delete(task.id);
      return failed(task, step, error);
    }
    if (isThenable(output)) return this.#answer(task, step, output);
    this.#active.delete(task.id);
    return succeeded(task, step, output);
  }

  /** Builds the processor (once per worker), then runs it; an ask that waits ends the task. */
  async #runLater(task: RunTaskMessage, step: WorkerStep, ref: ProcessorRef): Promise<ResultMessage> {
    let async = false;
    try {
      const processor = await this.#instance(ref);
      const output = this.#call(task, ref, step, processor);
      async = isThenable(output);
      // Only a run with a person in the loop can wait: then an ask that waits ends the task.
      const value = await (step.waited === undefined ? output : Promise.race([output, step.waited]));
      return succeeded(task, step, value, async);
    } catch (error) {
      return failed(task, step, error, async);
    } finally {
      this.#active.delete(task.id);
    }
  }

  /** Waits for an asynchronous `process`. */
  async #answer(task: RunTaskMessage, step: WorkerStep, output: PromiseLike<unknown>): Promise<ResultMessage> {
    try {
      return succeeded(task, step, await output, true);
    } catch (error) {
      return failed(task, step, error, true);
    } finally {
      this.#active.delete(task.id);
    }
  }

  /** Tells the main thread the processor starts (if it asked), gives the instance its fields and calls it. */
  #call(task: RunTaskMessage, ref: ProcessorRef, step: WorkerStep, processor: Processor): unknown {
    // Asked for only when the main thread could not tell that this worker had the class: its timeout starts now.
    if (task.notify === true) this.#send({ type: 'started', id: task.id, key: processorKey(ref.module, ref.exportName) });
    if (ref.state !== undefined) Object.assign(processor, ref.state);
    return callProcessor(processor, task.input, step);
  }

  /** The full reference of a task's class, remembering one sent with an alias and looking up one sent by it. */
  #ref(sent: ProcessorRef | ProcessorAlias): ProcessorRef {
    if ('module' in sent) {
      if (sent.alias !== undefined) this.#aliases.set(sent.alias, { module: sent.module, exportName: sent.exportName });
      return sent;
    }
    const known = this.#aliases.get(sent.alias);
    if (known === undefined) throw new Error(`weir: task names processor alias ${sent.alias}, which this worker was never sent`);
    return sent.state === undefined ? known : { module: known.module, exportName: known.exportName, state: sent.state, instance: sent.instance! };
  }

  /** Handles a message about a running task; messages about tasks no longer here are dropped. */
  receive(message: AbortTaskMessage | DepsReplyMessage): void {
    const step = this.#active.get(message.id);
    if (step === undefined) {
      if (message.type === 'abort') this.#rememberAbort(message.id, fromErrorData(message.reason));
      return;
    }
    if (message.type === 'abort') step.abort(fromErrorData(message.reason));
    else step.reply(message);
  }

  #rememberAbort(id: number, reason: unknown): void {
    this.#early.set(id, reason);
    if (this.#early.size > EARLY_ABORTS) this.#early.delete(this.#early.keys().next().value!);
  }

  #instance(ref: ProcessorRef): Promise<Processor> {
    const key = instanceKey(ref);
    let instance = this.#instances.get(key);
    if (instance === undefined) {
      instance = buildProcessor(ref);
      this.#instances.set(key, instance);
      instance.then(
        (built) => this.#built.set(key, built),
        // A failed build is not cached: the next attempt tries again and reports the same error.
        () => this.#instances.delete(key),
      );
    }
    return instance;
  }
}

/** One instance per main-thread instance with fields, so one flow's fields never reach another's. */
function instanceKey(ref: ProcessorRef): string {
  const key = processorKey(ref.module, ref.exportName);
  return ref.instance === undefined ? key : `${key}#${ref.instance}`;
}

/** The answer of a step that returned `value`; `async` when its `process` returned a promise. */
function succeeded(task: RunTaskMessage, step: WorkerStep, value: unknown, async = false): ResultMessage {
  if (async) return { type: 'result', id: task.id, events: step.events, async, ok: true, value };
  return step.events === 0 ? { type: 'result', id: task.id, ok: true, value } : { type: 'result', id: task.id, events: step.events, ok: true, value };
}

function failed(task: RunTaskMessage, step: WorkerStep, error: unknown, async = false): ResultMessage {
  if (async) return { type: 'result', id: task.id, events: step.events, async, ok: false, error: toErrorData(error) };
  return { type: 'result', id: task.id, events: step.events, ok: false, error: toErrorData(error) };
}

async function buildProcessor(ref: ProcessorRef): Promise<Processor> {
  return new (await processorClass(ref))();
}

/** The step context inside a worker: the task's copy of the step, with calls going out as messages. */
class WorkerStep implements Step, StepDeps {
  readonly name: string;
  readonly runId: string;
  readonly attempt: number;
  readonly idempotencyKey: string;
  /** How many messages this step has sent, so the main thread can wait for all of them. */
  events = 0;
  readonly #task: RunTaskMessage;
  readonly #deps: Readonly<Record<string, unknown>>;
  readonly #send: Send;
  // Made on first use, as on the main thread: most steps never read their signal.
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;
  /** Rejects with the wait signal once an ask waits (made only when asks may wait). */
  readonly waited: Promise<never> | undefined;
  #endWait: ((reason: unknown) => void) | undefined;
  // Made on first use: few steps ask the main thread anything.
  #calls: Map<number, { resolve(value: unknown): void; reject(error: unknown): void }> | undefined;

  constructor(task: RunTaskMessage, send: Send) {
    this.#task = task;
    this.#deps = task.deps ?? NO_DEPS;
    this.#send = send;
    this.name = task.name;
    this.runId = task.runId;
    this.attempt = task.attempt;
    this.idempotencyKey = idempotencyKeyOf(task.runId, task.name);
    if (task.waits === true) {
      this.waited = new Promise<never>((_, reject) => (this.#endWait = reject));
      // Rejected only when the processor waits; then the race above has a handler.
      this.waited.catch(() => undefined);
    }
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get deps(): StepDeps {
    return this;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  reply(message: DepsReplyMessage): void {
    const call = this.#calls?.get(message.call);
    if (call === undefined) return;
    this.#calls!.delete(message.call);
    if (message.error !== undefined) call.reject(fromErrorData(message.error));
    else call.resolve(message.value);
  }

  get<F extends TypedFlow>(flow: F): Promise<NonNullable<F[typeof flowOutput]> | undefined>;
  get<T = unknown>(name: string): Promise<T | undefined>;
  async get(dependency: string | { readonly name: string }): Promise<unknown> {
    const name = typeof dependency === 'string' ? dependency : dependency?.name;
    if (typeof name !== 'string') throw new DependencyError(`flow "${this.name}": deps.get takes a flow or its name, got ${typeof dependency}`);
    if (Object.hasOwn(this.#deps, name)) return this.#deps[name];
    // Not shipped: absent (undefined) or not a dependency at all; the main thread knows which.
    const call = this.events + 1;
    return new Promise((resolve, reject) => {
      (this.#calls ??= new Map()).set(call, { resolve, reject });
      this.#post({ type: 'deps-get', id: this.#task.id, call, name });
    });
  }

  async getAll(): Promise<Readonly<Record<string, unknown>>> {
    return { ...this.#deps };
  }

  progress(fraction: number, message?: string): void {
    this.#post(message === undefined ? { type: 'progress', id: this.#task.id, fraction } : { type: 'progress', id: this.#task.id, fraction, message });
  }

  heartbeat(details?: unknown): void {
    this.#post(details === undefined ? { type: 'heartbeat', id: this.#task.id } : { type: 'heartbeat', id: this.#task.id, details });
  }

  waitForInput<S extends AnySchema>(key: string, schema: S, options?: WaitForInputOptions<import('zod').output<S>>): Promise<import('zod').output<S>> {
    return askForInput(this.name, key, schema, options, {
      waits: this.#task.waits === true,
      answer: (k) => (this.#task.answers !== undefined && Object.hasOwn(this.#task.answers, k) ? this.#task.answers[k] : undefined),
      wait: (ask) => {
        this.#post({ type: 'ask', id: this.#task.id, ask });
        const end = this.#endWait;
        if (end === undefined) return;
        this.#endWait = undefined;
        // On the next turn, so asks made together (Promise.all) wait together.
        setRealImmediate(() => end(inputWaitSignal(this.name)));
      },
    });
  }

  #post(message: FromWorker): void {
    this.events++;
    this.#send(message);
  }
}

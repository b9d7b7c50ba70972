/**
 * Finding a processor class from another thread or process: its module, its export name, and the
 * state of the instance, all checked on the main thread when the flow is registered.
 */
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { serialize } from 'node:v8';
import { ErrorCode, FlowError } from '../errors/errors.js';
import type { Processor } from '../model/processor.js';
import { messageOf } from '../util/message-of.js';
import { processorKey, type ProcessorRef } from './protocol.js';

/** What a processor class may declare so that a worker can find it. */
export interface LocatableClass {
  /** The module that exports the class: `import.meta.url` in ESM, `__filename` in CommonJS. */
  readonly module?: unknown;
  /** The export to take from that module. @default the class's `name` */
  readonly exportName?: unknown;
  readonly name: string;
  new (): Processor;
}

/** A located class: where it lives, and what the main thread found wrong with its export, once it knows. */
export interface ProcessorLocation {
  /** `module#exportName`: the same class on every thread. */
  readonly key: string;
  readonly module: string;
  readonly exportName: string;
  /** The reference of an instance with no state of its own: every task of such an instance shares it. */
  readonly ref: ProcessorRef;
  /**
   * What is wrong with the export, set once the main thread's import of the module settles. Never
   * waited for: that import does not settle while the module itself awaits a run (a one-file script),
   * and the worker reports a missing export with the same code anyway.
   */
  problem: string | undefined;
}

const locations = new WeakMap<object, ProcessorLocation>();
const EXCLUDED = new Set(['input', 'output']);

/**
 * Checks that a processor can run on a thread or in a child process, and returns where it lives.
 * Cached per class; the state check runs on every call, since each instance has its own.
 * @throws FlowError `WEIR_PROCESSOR_MODULE` when `static module` is missing, malformed or names no file.
 * @throws FlowError `WEIR_PROCESSOR_CONSTRUCTOR` when `new Class()` with no arguments throws.
 * @throws FlowError `WEIR_PROCESSOR_STATE` naming the first field that cannot be structured-cloned.
 */
export function locateProcessor(processor: Processor, where: string, executor: string): ProcessorLocation {
  const ctor = processor.constructor as LocatableClass;
  let location = locations.get(ctor);
  if (location === undefined) {
    location = locateClass(ctor, where, executor);
    locations.set(ctor, location);
  }
  checkState(processor, ctor.name, where, executor);
  return location;
}

/** The location of an instance's class, checked at registration; `undefined` if it never was. */
export function locationOf(processor: Processor): ProcessorLocation | undefined {
  return locations.get(processor.constructor);
}

/** The instance's own enumerable data fields but `input` and `output`: what a worker's instance is given. */
export function processorState(processor: Processor): Record<string, unknown> {
  const state: Record<string, unknown> = {};
  for (const key of Object.keys(processor)) {
    if (!EXCLUDED.has(key)) state[key] = (processor as unknown as Record<string, unknown>)[key];
  }
  return state;
}

const instanceIds = new WeakMap<Processor, number>();
let nextInstanceId = 1;

/** The reference a task carries: the location plus a snapshot of the state (and whose it is), left out when there is none. */
export function processorRef(location: ProcessorLocation, processor: Processor): ProcessorRef {
  let state: Record<string, unknown> | undefined;
  // for...in rather than Object.keys: no array per dispatch (a class's methods are not enumerable).
  for (const key in processor) {
    if (Object.hasOwn(processor, key) && !EXCLUDED.has(key)) (state ??= {})[key] = (processor as unknown as Record<string, unknown>)[key];
  }
  if (state === undefined) return location.ref;
  let instance = instanceIds.get(processor);
  if (instance === undefined) instanceIds.set(processor, (instance = nextInstanceId++));
  return { module: location.module, exportName: location.exportName, state, instance };
}

function locateClass(ctor: LocatableClass, where: string, executor: string): ProcessorLocation {
  const label = `${where}: class ${ctor.name || '(anonymous)'} runs on the "${executor}" executor`;
  const raw = ctor.module;
  if (raw === undefined) {
    throw new FlowError(
      `${label} but does not say which module exports it; add \`static module = import.meta.url\` (or \`static module = __filename\` in CommonJS) to the class`,
      { code: ErrorCode.PROCESSOR_MODULE },
    );
  }
  const module = toFileUrl(raw);
  if (module === undefined) {
    throw new FlowError(`${label} but its static "module" is ${describe(raw)}; expected a file: URL (import.meta.url) or an absolute path (__filename)`, {
      code: ErrorCode.PROCESSOR_MODULE,
    });
  }
  const file = fileURLToPath(module);
  if (!existsSync(file)) {
    throw new FlowError(`${label} but its module ${file} does not exist; set \`static module\` to the file that exports the class`, {
      code: ErrorCode.PROCESSOR_MODULE,
    });
  }
  const exportName = ctor.exportName ?? ctor.name;
  if (typeof exportName !== 'string' || exportName === '') {
    throw new FlowError(`${label} but has no name to find it by; export it as a named class, or set \`static exportName\``, {
      code: ErrorCode.PROCESSOR_MODULE,
    });
  }
  try {
    new ctor();
  } catch (error) {
    throw new FlowError(
      `${label}, where it is built with \`new ${ctor.name}()\`, and that threw: ${messageOf(error)}; give every constructor parameter a default and keep configuration in fields`,
      { code: ErrorCode.PROCESSOR_CONSTRUCTOR, cause: error },
    );
  }
  const location: ProcessorLocation = { key: processorKey(module, exportName), module, exportName, ref: Object.freeze({ module, exportName }), problem: undefined };
  void verifyExport(module, exportName, ctor).then((problem) => (location.problem = problem));
  return location;
}

function checkState(processor: Processor, className: string, where: string, executor: string): void {
  const state = processorState(processor);
  // A child gets its task through the V8 serializer (IPC 'advanced'), which refuses more than structuredClone.
  const copy = executor === 'process' ? serialize : structuredClone;
  for (const [key, value] of Object.entries(state)) {
    try {
      copy(value);
    } catch (error) {
      throw new FlowError(
        `${where}: field "${key}" of ${className} cannot be copied to a "${executor}" worker (${messageOf(error)}); keep only structured-cloneable data in fields (no functions, sockets or class instances with methods you need), or make it a #private field set up by the constructor`,
        { code: ErrorCode.PROCESSOR_STATE, cause: error },
      );
    }
  }
}

/** Imports the module on the main thread (it is usually loaded already) to find a missing export before a worker starts. */
async function verifyExport(module: string, exportName: string, ctor: LocatableClass): Promise<string | undefined> {
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(module)) as Record<string, unknown>;
  } catch {
    return undefined; // the worker reports load errors with their own detail
  }
  const found = namespace[exportName] ?? (namespace.default as Record<string, unknown> | undefined)?.[exportName];
  if (typeof found === 'function') return undefined;
  return `module ${fileURLToPath(module)} has no export named "${exportName}" for class ${ctor.name}; export the class under that name, or set \`static exportName\` to the name it is exported as`;
}

function toFileUrl(raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  if (raw.startsWith('file:')) {
    try {
      fileURLToPath(raw);
      return raw;
    } catch {
      return undefined;
    }
  }
  return isAbsolute(raw) ? pathToFileURL(raw).href : undefined;
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : typeof value;
}

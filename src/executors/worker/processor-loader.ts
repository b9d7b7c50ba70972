/**
 * Worker side: finding a processor class by its module and export name. Usually by importing the
 * module; but a one-file script (a module that defines its processors and then awaits a run at its
 * top level) never finishes loading in a worker, since a worker never starts the runs it asks for.
 * Its classes are then taken from those it built before it asked, as `Processor` notes each one.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { setRealImmediate } from '../../util/clock.js';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isAbsolute } from 'node:path';
import { ErrorCode, FatalError } from '../../errors/errors.js';
import type { Processor } from '../../model/processor.js';
import { messageOf } from '../../util/message-of.js';
import { installWorkerLoading } from '../../util/worker-loading.js';
import type { ProcessorRef } from '../protocol.js';

type ProcessorClass = new () => Processor;
type Namespace = Record<string, unknown>;

/** One module being imported, and the tasks waiting for a class from it. */
interface Load {
  readonly url: string;
  /** Its top level asked for a run, and waits on it for ever: it will build no more classes. */
  held: boolean;
  settled: boolean;
  readonly waiters: Set<Waiter>;
}

interface Waiter {
  readonly key: string;
  readonly ref: ProcessorRef;
  readonly resolve: (found: ProcessorClass) => void;
  readonly reject: (error: unknown) => void;
}

/** Classes built in this worker, by `module#exportName`; the first of a key is kept. */
const classes = new Map<string, ProcessorClass>();
/** Imports not yet settled, by module. */
const loads = new Map<string, Load>();
/** Which import the code running now belongs to; enabled only while an import is unsettled (it slows every promise). */
const importing = new AsyncLocalStorage<Load>();

/** Installs the hook the modules a worker imports report to. Idempotent. */
export function installProcessorLoader(): void {
  installWorkerLoading({ noteClass, holdRun });
}

/** The class a task names: built already, exported by its module, or built by its module before that module stopped at a run. */
export function processorClass(ref: ProcessorRef): Promise<ProcessorClass> {
  const url = withoutQuery(ref.module);
  const key = `${url}#${ref.exportName}`;
  const known = classes.get(key);
  if (known !== undefined) return Promise.resolve(known);
  const load = loads.get(url) ?? startLoad(url, ref.module);
  if (load.held) return Promise.reject(neverBuilt(ref));
  return new Promise((resolve, reject) => load.waiters.add({ key, ref, resolve, reject }));
}

function startLoad(url: string, module: string): Load {
  const load: Load = { url, held: false, settled: false, waiters: new Set() };
  loads.set(url, load);
  importing.run(load, () => loadModule(module)).then(
    (namespace) => settle(load, namespace, undefined),
    (error: unknown) => settle(load, undefined, error),
  );
  return load;
}

function settle(load: Load, namespace: Namespace | undefined, error: unknown): void {
  load.settled = true;
  loads.delete(load.url);
  // Nothing is loading: stop tracking which import code belongs to, so promises cost what they did.
  if (loads.size === 0) importing.disable();
  for (const waiter of load.waiters) {
    if (namespace === undefined) {
      waiter.reject(error);
      continue;
    }
    const { exportName, module } = waiter.ref;
    const found = namespace[exportName] ?? (namespace.default as Namespace | undefined)?.[exportName];
    if (typeof found === 'function') waiter.resolve(found as ProcessorClass);
    else {
      waiter.reject(
        new FatalError(`module ${module} has no export named "${exportName}"; export the processor class under that name, or set \`static exportName\` on the class`, {
          code: ErrorCode.PROCESSOR_EXPORT,
        }),
      );
    }
  }
  load.waiters.clear();
}

function noteClass(ctor: abstract new (...args: never[]) => unknown): void {
  const { module, exportName, name } = ctor as unknown as { module?: unknown; exportName?: unknown; name: string };
  const url = typeof module === 'string' ? toFileUrl(module) : undefined;
  if (url === undefined) return;
  const key = `${url}#${typeof exportName === 'string' ? exportName : name}`;
  if (classes.has(key)) return;
  classes.set(key, ctor as unknown as ProcessorClass);
  for (const load of loads.values()) {
    for (const waiter of load.waiters) {
      if (waiter.key !== key) continue;
      load.waiters.delete(waiter);
      waiter.resolve(ctor as unknown as ProcessorClass);
    }
  }
}

function holdRun(): boolean {
  const load = importing.getStore();
  if (load === undefined) return false;
  if (!load.held && !load.settled) {
    load.held = true;
    // After the code that asked has run to its next await: a class it builds right after still counts.
    setRealImmediate(() => {
      if (load.settled) return;
      for (const waiter of load.waiters) waiter.reject(neverBuilt(waiter.ref));
      load.waiters.clear();
    });
  }
  return true;
}

function neverBuilt(ref: ProcessorRef): FatalError {
  const file = fileURLToPath(ref.module);
  return new FatalError(
    `could not load processor class ${ref.exportName} from ${file}: the worker imported the module, which (or a module it imports) starts a flow run at its top level, and a worker never runs those, so the module stopped there without building ${ref.exportName}; build every thread or process flow's processor (\`new ${ref.exportName}()\`) before its first run, or export the class from a module that does not start runs when it is imported`,
    { code: ErrorCode.PROCESSOR_MODULE },
  );
}

/** A `file:` URL without its query: tsx's `tsImport` adds one to the `import.meta.url` of what it loads. */
function withoutQuery(url: string): string {
  const end = url.search(/[?#]/);
  return end === -1 ? url : url.slice(0, end);
}

function toFileUrl(module: string): string | undefined {
  if (module.startsWith('file:')) return withoutQuery(module);
  return isAbsolute(module) ? pathToFileURL(module).href : undefined;
}

const TYPESCRIPT = /\.(?:ts|mts|cts|tsx)$/;
// A variable specifier: tsx is optional and must stay out of the bundle.
const TSX_API = 'tsx/esm/api';

async function loadModule(module: string): Promise<Namespace> {
  try {
    return (await import(module)) as Namespace;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (!(TYPESCRIPT.test(module) && code === 'ERR_UNKNOWN_FILE_EXTENSION')) {
      throw new FatalError(`could not load processor module ${module}: ${messageOf(error)}`, {
        code: ErrorCode.PROCESSOR_MODULE,
        cause: error,
      });
    }
  }
  let api: { tsImport(specifier: string, parent: string): Promise<unknown> };
  try {
    api = (await import(TSX_API)) as typeof api;
  } catch (error) {
    throw new FatalError(
      `processor module ${module} is TypeScript, and Node cannot load it without tsx; build it to JavaScript, or install tsx (npm i -D tsx)`,
      { code: ErrorCode.PROCESSOR_MODULE, cause: error },
    );
  }
  return (await api.tsImport(module, import.meta.url)) as Namespace;
}

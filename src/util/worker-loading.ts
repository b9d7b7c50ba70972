/**
 * What a weir worker (thread or child) lets the processor modules it imports tell it: the classes
 * they build, and that their top level asks for a run. It lives on `globalThis` under a `Symbol.for`
 * key, since a module a worker imports may load its own copy of weir.
 */

/** The hook a weir worker installs; absent everywhere else. Kept small: every copy of weir must agree on it. */
export interface WorkerLoadingHook {
  /** Records a processor class built in this worker, so one whose module is still running its top level can be used. */
  noteClass(ctor: abstract new (...args: never[]) => unknown): void;
  /** True when called from the top level of a module the worker is importing: a run asked for there must not start. */
  holdRun(): boolean;
}

const HOOK = Symbol.for('weir.worker-loading.v1');

/** The worker's hook, or `undefined` outside a weir worker (one property read: cheap enough for every call). */
export function workerLoading(): WorkerLoadingHook | undefined {
  return (globalThis as { [HOOK]?: WorkerLoadingHook })[HOOK];
}

/** Worker side: installs the hook (the first copy of weir to do so keeps it). */
export function installWorkerLoading(hook: WorkerLoadingHook): void {
  const scope = globalThis as { [HOOK]?: WorkerLoadingHook };
  scope[HOOK] ??= hook;
}

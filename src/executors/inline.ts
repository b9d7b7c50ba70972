/** The `inline` executor: the processor runs on the caller's event loop. */
import type { ExecutionRequest, Executor } from './executor.js';
import { invokeProcessor } from './invoke.js';

/** Runs processors on the current event loop; nothing to start or stop. */
export class InlineExecutor implements Executor {
  execute(request: ExecutionRequest): Promise<unknown> {
    request.started?.();
    return invokeProcessor(request.processor, request.input, request.step);
  }

  async close(): Promise<void> {}
}

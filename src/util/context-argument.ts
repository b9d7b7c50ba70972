/** The `FlowContext` given to an adapter (`weir/http`, `weir/mcp`, `weir/otel`), checked before anything is built on it. */
import { ErrorCode, FlowError } from '../errors/errors.js';
import { describeValue, invalidOptions } from './parse.js';

/**
 * Checks that `ctx` is an open `FlowContext`. The class is given by the caller: util is below the context.
 * @throws ValidationError `WEIR_INVALID_OPTIONS` when it is not a `FlowContext`.
 * @throws FlowError `WEIR_CONTEXT_CLOSED` when it is closing or closed: its close hooks have run, so nothing built on it now would be closed with it.
 */
export function checkContextArgument(ctx: unknown, FlowContext: abstract new (...args: never[]) => { readonly state: string }, where: string): void {
  if (!(ctx instanceof FlowContext)) throw invalidOptions(where, [{ path: ['ctx'], expected: 'a FlowContext', got: describeValue(ctx) }]);
  if (ctx.state !== 'open') throw new FlowError(`${where}: the FlowContext is ${ctx.state}`, { code: ErrorCode.CONTEXT_CLOSED });
}

/**
 * `weir/http`: watch and drive a `FlowContext`'s runs over HTTP: a JSON API, Server-Sent Events
 * per run and for the list of runs, an `authorize` hook. A thin adapter over the context's public API.
 */
export { createHandler } from './handler.js';
export type { HandlerOptions, WeirHandler } from './handler.js';
export { serve } from './serve.js';
export type { ServeOptions, WeirServer } from './serve.js';
export type { Authorize, HttpAction } from './access.js';

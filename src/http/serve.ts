/** `serve(ctx, options)`: listens with `createHandler` on a port of its own, until it or the context closes. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { FlowContext } from '../index.js';
import { checkContextArgument } from '../util/context-argument.js';
import { parseOptions, type OptionsOf } from '../util/parse.js';
import { createHandler, handlerShape, type HandlerOptions } from './handler.js';

const serveShape = {
  /** The port to listen on; 0 picks a free one. @default 0 */
  port: z.number().int().min(0).max(65_535).optional(),
  /** The address to listen on. @default '127.0.0.1' */
  host: z.string().min(1).optional(),
};

/** Options of `serve`: where to listen, and the handler's options. */
export type ServeOptions = OptionsOf<typeof serveShape> & HandlerOptions;

/** A listening server. */
export interface WeirServer {
  /** The URL it serves, such as `http://127.0.0.1:8080/`. */
  readonly url: string;
  readonly port: number;
  /** The `node:http` server. */
  readonly server: Server;
  /** Ends its event streams and connections and stops listening. Idempotent; `ctx.close()` does it too. */
  close(): Promise<void>;
}

/**
 * Listens with `createHandler(ctx, options)` on `host:port` (127.0.0.1 and a free port by default).
 * The server closes with the context (`ctx.close()`), or with `close()`.
 * @throws ValidationError `WEIR_INVALID_OPTIONS` for bad options, or a `ctx` that is not a FlowContext;
 * FlowError `WEIR_CONTEXT_CLOSED` for a context that is closing or closed; rejects with the listen error (a port in use).
 * @example
 * const { url } = await serve(ctx, { port: 8080 });
 */
export async function serve(ctx: FlowContext, options: ServeOptions = {}): Promise<WeirServer> {
  checkContextArgument(ctx, FlowContext, 'serve()');
  // Checked as one object first: `null` or `5` cannot be taken apart into the handler's options and the server's.
  const { port, host, ...handlerOptions } = parseOptions(z.strictObject({ ...serveShape, ...handlerShape }), options, 'serve() options');
  const where = { port, host };
  const handler = createHandler(ctx, handlerOptions);
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(where.port ?? 0, where.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      removeHook();
      handler.closeStreams();
      server.close(() => resolve());
      server.closeAllConnections();
    }));
  const removeHook = ctx.beforeClose(close);
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `http://${shown}:${address.port}/`, port: address.port, server, close };
}

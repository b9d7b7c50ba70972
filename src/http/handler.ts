/**
 * `createHandler(ctx, options)`: a `(req, res, next?)` function for `node:http`, Express, Fastify
 * (through its middie), Connect, or Hono's node adapter, serving the JSON API and the event streams
 * of a `FlowContext`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { ErrorCode } from '../errors/errors.js';
import { FlowContext } from '../index.js';
import { checkContextArgument } from '../util/context-argument.js';
import { parseOptions, type OptionsOf } from '../util/parse.js';
import { authorize, type Authorize } from './access.js';
import { readJson } from './body.js';
import { HttpError, sendError, sendJson } from './errors.js';
import { RUN_ROUTES, routes, type Route } from './routes.js';
import { EventStream, RunFeed, SummaryHub } from './sse.js';
import { PAGE_CSS, PAGE_HTML } from './dashboard/page.js';
import { PAGE_SCRIPT } from './dashboard/script.js';

export const handlerShape = {
  /**
   * A path prefix the handler serves under, stripped before routing (`'/weir'`). Leave it out when
   * the framework strips its mount path itself (Express's `app.use('/weir', handler)`). @default ''
   */
  prefix: z.string().regex(/^(\/[\w.~-]+)*$/).optional(),
  /** Decides whether a request may do an action (see `Authorize`). @default none: loopback clients only, unless `allowRemote` */
  authorize: z.custom<Authorize>((v) => typeof v === 'function', 'a function').optional(),
  /** Without `authorize`, serve clients on other hosts too. @default false */
  allowRemote: z.boolean().optional(),
  /** The largest request body accepted, in bytes. @default 1048576 (1 MB) */
  bodyLimit: z.number().int().positive().optional(),
  /** How often an event stream sends a keep-alive comment, in milliseconds. @default 15000 */
  keepAlive: z.number().int().positive().optional(),
};

/** Options of `createHandler`. */
export type HandlerOptions = OptionsOf<typeof handlerShape>;

/** A handler of HTTP requests for one `FlowContext`. */
export interface WeirHandler {
  /** Serves a request. With `next` (as middleware), a path it does not serve goes to `next`; without, it is answered 404. */
  (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): void;
  /** How many event streams are open now. */
  readonly streams: number;
  /** Ends every open event stream (a server closing). */
  closeStreams(): void;
}

const RUN_ID = /^[^/\p{Cc}]{1,200}$/u;

/** The dashboard's files, by the last segment of their path. */
const ASSETS: Readonly<Record<string, 'page' | 'script' | 'styles'>> = { 'index.html': 'page', 'dashboard.js': 'script', 'dashboard.css': 'styles' };

/** Sends one of the dashboard's files, which may load nothing but each other and the API. */
function sendAsset(res: ServerResponse, file: 'page' | 'script' | 'styles'): void {
  const [type, body] = file === 'page' ? ['text/html', PAGE_HTML] : file === 'script' ? ['text/javascript', PAGE_SCRIPT] : ['text/css', PAGE_CSS];
  res.writeHead(200, {
    'content-type': `${type}; charset=utf-8`,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
  });
  res.end(body);
}

/**
 * Makes the handler. Routes, under the handler's root: `GET /` (the dashboard); `GET /health`
 * (`ctx.health()`: 200 when ok, else 503); `GET /api/flows`; `GET /api/graph?flow=` (a flow's tree and edges); `GET /api/runs` (`?status=&flow=&limit=&before=`); `POST /api/runs`
 * (`{ flow, input, runId?, mode?, ... }`: 202 `{ runId }`); `GET /api/runs/:id`;
 * `GET /api/runs/:id/events` (SSE; `Last-Event-ID` or `?after=`); `GET /api/events` (SSE of every
 * run's summary); `POST /api/runs/:id/input` (`{ key, value }`), `/human-in-loop` (`{ on }`),
 * `/resume` (`{ from? }`), `/retry`, `/skip` (`{ step, output? }`), `/cancel` (`{ reason? }`).
 * @throws ValidationError `WEIR_INVALID_OPTIONS` for bad options, or a `ctx` that is not a FlowContext.
 * @throws FlowError `WEIR_CONTEXT_CLOSED` for a context that is closing or closed.
 * @example
 * const server = http.createServer(createHandler(ctx)).listen(8080, '127.0.0.1');
 */
export function createHandler(ctx: FlowContext, options: HandlerOptions = {}): WeirHandler {
  checkContextArgument(ctx, FlowContext, 'createHandler()');
  const parsed = parseOptions(z.strictObject(handlerShape), options, 'createHandler() options');
  const prefix = parsed.prefix ?? '';
  const bodyLimit = parsed.bodyLimit ?? 1024 * 1024;
  const keepAlive = parsed.keepAlive ?? 15_000;
  const allowRemote = parsed.allowRemote ?? false;
  const streams = new Set<EventStream>();
  const hub = new SummaryHub(ctx);
  /** One feed per run being watched, shared by its clients. */
  const feeds = new Map<string, RunFeed>();

  const open = (req: IncomingMessage, res: ServerResponse): EventStream => {
    const stream = new EventStream(req, res, keepAlive);
    streams.add(stream);
    stream.signal.addEventListener('abort', () => streams.delete(stream), { once: true });
    return stream;
  };

  const serve = async (req: IncomingMessage, res: ServerResponse, next: ((error?: unknown) => void) | undefined): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://weir.invalid');
    if (prefix !== '' && url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) return notOurs(res, next);
    const segments = url.pathname.slice(prefix.length).split('/').filter((s) => s !== '');
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    // GET /health: ctx.health(), 200 when it is ok, else 503.
    if (segments.length === 1 && segments[0] === 'health') {
      allow(method, ['GET']);
      await authorize(req, 'read', undefined, parsed.authorize, allowRemote);
      const health = await ctx.health();
      sendJson(res, health.ok ? 200 : 503, health);
      return;
    }
    // The dashboard: the page at the root, its script and its styles.
    const file = segments.length === 0 ? 'page' : segments.length === 1 ? ASSETS[segments[0]!] : undefined;
    if (file !== undefined) {
      allow(method, ['GET']);
      await authorize(req, 'read', undefined, parsed.authorize, allowRemote);
      // The page's links are relative: it must be served under a path that ends with a slash.
      const shown = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
      const path = shown.split('?')[0]!;
      if (file === 'page' && !path.endsWith('/')) {
        res.writeHead(308, { location: `${path}/${shown.slice(path.length)}` }).end();
        return;
      }
      sendAsset(res, file);
      return;
    }
    if (segments[0] !== 'api') return notOurs(res, next);

    // GET /api/events: every run's summary, live.
    if (segments.length === 2 && segments[1] === 'events') {
      allow(method, ['GET']);
      await authorize(req, 'read', undefined, parsed.authorize, allowRemote);
      hub.add(open(req, res));
      return;
    }
    const runId = segments.length >= 3 && segments[1] === 'runs' ? runIdOf(segments[2]!) : undefined;
    // GET /api/runs/:id/events: one run's events, replayed then live.
    if (runId !== undefined && segments.length === 4 && segments[3] === 'events') {
      allow(method, ['GET']);
      await authorize(req, 'read', runId, parsed.authorize, allowRemote);
      const after = afterOf(req, url.searchParams);
      const info = await ctx.getRun(runId);
      // An ended run with nothing after `after`: 204, which tells an EventSource not to come back.
      if (info.status !== 'running' && info.status !== 'waiting' && info.status !== 'pending' && info.lastSeq <= after) {
        res.writeHead(204).end();
        return;
      }
      let feed = feeds.get(runId);
      if (feed === undefined) feeds.set(runId, (feed = new RunFeed(ctx, runId, () => feeds.delete(runId))));
      feed.add(open(req, res), after);
      return;
    }
    const table = routeTable(segments);
    if (table === undefined) return notOurs(res, next);
    const route = table[method];
    if (route === undefined) allow(method, Object.keys(table));
    await authorize(req, route!.action, runId, parsed.authorize, allowRemote);
    let body: Promise<unknown> | undefined;
    const reply = await route!.handle({ req, ctx, query: url.searchParams, runId, body: () => (body ??= readJson(req, bodyLimit)) });
    sendJson(res, reply.status, reply.body);
  };

  const handler = ((req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): void => {
    serve(req, res, next).catch((error: unknown) => sendError(res, error));
  }) as WeirHandler;
  Object.defineProperties(handler, {
    streams: { get: () => streams.size },
    closeStreams: { value: () => [...streams].forEach((stream) => stream.close()) },
  });
  return handler;
}

/** The routes for a path under `/api`, or `undefined` when there are none. */
function routeTable(segments: readonly string[]): Partial<Record<string, Route>> | undefined {
  if (segments.length === 2 && segments[1] === 'flows') return routes.flows;
  if (segments.length === 2 && segments[1] === 'graph') return routes.graph;
  if (segments.length === 2 && segments[1] === 'runs') return routes.runs;
  if (segments[1] !== 'runs') return undefined;
  if (segments.length === 3) return routes.run;
  const action = segments[3] as (typeof RUN_ROUTES)[number];
  return segments.length === 4 && RUN_ROUTES.includes(action) ? routes[action] : undefined;
}

/**
 * The run id in a path segment.
 * @throws ValidationError `WEIR_INVALID_OPTIONS` for one that is not a valid run id.
 */
function runIdOf(segment: string): string {
  let id: string;
  try {
    id = decodeURIComponent(segment);
  } catch {
    id = '';
  }
  if (!RUN_ID.test(id)) {
    throw new HttpError(400, ErrorCode.INVALID_OPTIONS, 'the run id in the path must be 1 to 200 characters, without "/" or control characters');
  }
  return id;
}

/** `Last-Event-ID` (what an EventSource sends when it reconnects), else `?after=`, else 0. */
function afterOf(req: IncomingMessage, query: URLSearchParams): number {
  const header = req.headers['last-event-id'];
  const raw = (Array.isArray(header) ? header[0] : header) ?? query.get('after') ?? '0';
  if (!/^\d{1,15}$/.test(raw)) throw new HttpError(400, ErrorCode.INVALID_OPTIONS, `after: expected a whole number >= 0 (Last-Event-ID or ?after=), got ${JSON.stringify(raw.slice(0, 40))}`);
  return Number(raw);
}

/** @throws HttpError 405 `WEIR_METHOD_NOT_ALLOWED` when the route does not take `method`. */
function allow(method: string, methods: readonly string[]): void {
  if (methods.includes(method)) return;
  throw new HttpError(405, ErrorCode.METHOD_NOT_ALLOWED, `${method} is not allowed here (${methods.join(', ')})`, { allow: methods.join(', ') });
}

function notOurs(res: ServerResponse, next: ((error?: unknown) => void) | undefined): void {
  if (next !== undefined) next();
  else sendError(res, new HttpError(404, ErrorCode.ROUTE_NOT_FOUND, 'no such route'));
}

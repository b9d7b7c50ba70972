/**
 * Server-Sent Events: one run's events (replayed from the store after `Last-Event-ID`, then live,
 * each with its `seq` as its id), and one stream of every run's summary for a list page. A client
 * that goes away releases what it held: its follower, its timers, its place in the hub.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FlowContext } from '../index.js';
import type { WeirEvent } from '../model/events.js';
import { clearRealTimer, setRealTimer, type TimerHandle } from '../util/clock.js';
import { liveSummary } from './routes.js';

/** A server-sent event stream on one response. */
export class EventStream {
  readonly #res: ServerResponse;
  readonly #controller = new AbortController();
  readonly #keepAlive: ReturnType<typeof setInterval>;

  /** Starts the stream: its headers, and a keep-alive comment every `keepAliveMs`. */
  constructor(req: IncomingMessage, res: ServerResponse, keepAliveMs: number) {
    this.#res = res;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // Reconnect after a second when cut off.
    res.write('retry: 1000\n\n');
    this.#keepAlive = setInterval(() => res.write(': keep-alive\n\n'), keepAliveMs);
    this.#keepAlive.unref();
    const gone = (): void => this.close();
    req.once('close', gone);
    res.once('close', gone);
  }

  /** Aborted once the client goes away or the stream is closed. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Sends one event; resolves once the socket takes more (backpressure), or the client is gone. */
  async send(data: unknown, options: { readonly id?: number; readonly event?: string } = {}): Promise<void> {
    if (this.signal.aborted) return;
    let frame = '';
    if (options.event !== undefined) frame += `event: ${options.event}\n`;
    if (options.id !== undefined) frame += `id: ${options.id}\n`;
    frame += `data: ${JSON.stringify(data, replacer)}\n\n`;
    if (this.#res.write(frame)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.#res.off('drain', done);
        this.signal.removeEventListener('abort', done);
        resolve();
      };
      this.#res.once('drain', done);
      this.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Ends the stream (and the response). Idempotent. */
  close(): void {
    if (this.signal.aborted) return;
    clearInterval(this.#keepAlive);
    this.#controller.abort();
    this.#res.end();
  }
}

/** JSON for what events may carry: a bigint as a string. */
function replacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/**
 * Streams a run's events with `seq > after`, then live ones, and ends after its last event with an
 * `end` event (a client that reconnects after it gets 204, which stops an EventSource for good).
 */
export async function streamRun(ctx: FlowContext, runId: string, after: number, stream: EventStream): Promise<void> {
  try {
    for await (const event of ctx.events(runId, { after, signal: stream.signal })) {
      await stream.send(event, { id: event.seq });
    }
    if (!stream.signal.aborted) await stream.send({ runId }, { event: 'end' });
  } finally {
    stream.close();
  }
}

/** How long a run's summary waits for more of its events before it is read and sent, in ms. */
const SUMMARY_DELAY_MS = 50;

/**
 * The stream of every run's summary: each time a run's events come, its summary (as `getRun` has
 * it, without the steps) goes to every client, at most once per `SUMMARY_DELAY_MS` a run. One
 * listener on the context while any client listens; none once the last one went.
 */
export class SummaryHub {
  readonly #ctx: FlowContext;
  readonly #clients = new Set<EventStream>();
  readonly #due = new Map<string, TimerHandle>();
  readonly #onEvent = (event: WeirEvent): void => {
    if (this.#due.has(event.runId)) return;
    this.#due.set(
      event.runId,
      setRealTimer(() => void this.#publish(event.runId), SUMMARY_DELAY_MS, { unref: true }),
    );
  };

  constructor(ctx: FlowContext) {
    this.#ctx = ctx;
  }

  /** How many clients listen. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Adds a client until its stream closes. */
  add(stream: EventStream): void {
    if (this.#clients.size === 0) this.#ctx.on('event', this.#onEvent);
    this.#clients.add(stream);
    stream.signal.addEventListener('abort', () => this.#remove(stream), { once: true });
  }

  #remove(stream: EventStream): void {
    if (!this.#clients.delete(stream) || this.#clients.size > 0) return;
    this.#ctx.off('event', this.#onEvent);
    for (const timer of this.#due.values()) clearRealTimer(timer);
    this.#due.clear();
  }

  async #publish(runId: string): Promise<void> {
    this.#due.delete(runId);
    if (this.#clients.size === 0 || this.#ctx.state !== 'open') return;
    let summary: unknown;
    try {
      summary = liveSummary(await this.#ctx.getRun(runId));
    } catch {
      // The run went (pruned) or the context is closing: nothing to tell.
      return;
    }
    await Promise.all([...this.#clients].map((client) => client.send(summary, { event: 'summary' })));
  }
}

/**
 * Server-Sent Events: one run's events (replayed from the store after `Last-Event-ID`, then live,
 * each with its `seq` as its id) through one feed per run shared by its clients, and one stream of
 * every run's summary for a list page. A client that goes away releases what it held: its place in
 * the feed (which stops with its last client) or the hub, its keep-alive timer.
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
  /** Frames waiting for the next write. */
  readonly #pending: string[] = [];
  /** Set while the socket takes no more: resolves when it drains. */
  #drained: Promise<void> | undefined;

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

  /**
   * Sends one event. Frames sent in one turn of the event loop go out as one write on the next. The
   * promise resolves at once, or, while the socket takes no more (backpressure), once it drains or
   * the client is gone.
   */
  async send(data: unknown, options: { readonly id?: number; readonly event?: string } = {}): Promise<void> {
    this.sendFrame(frameOf(data, options));
    await this.#drained;
  }

  /** Queues a frame made already (by a feed), for the next write. */
  sendFrame(frame: string): void {
    if (this.signal.aborted) return;
    this.#pending.push(frame);
    if (this.#pending.length === 1) setImmediate(() => this.#flush());
  }

  /** Writes what is pending in one write; when the socket takes no more, `send` waits until it drains. */
  #flush(): void {
    if (this.signal.aborted || this.#pending.length === 0) return;
    const frames = this.#pending.join('');
    this.#pending.length = 0;
    if (this.#res.write(frames)) return;
    this.#drained = new Promise<void>((resolve) => {
      const done = (): void => {
        this.#res.off('drain', done);
        this.signal.removeEventListener('abort', done);
        this.#drained = undefined;
        resolve();
      };
      this.#res.once('drain', done);
      this.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Ends the stream (and the response), after what is pending. Idempotent. */
  close(): void {
    if (this.signal.aborted) return;
    clearInterval(this.#keepAlive);
    this.#controller.abort();
    this.#res.end(this.#pending.join(''));
    this.#pending.length = 0;
  }
}

/** One server-sent event's frame. */
function frameOf(data: unknown, options: { readonly id?: number; readonly event?: string }): string {
  let frame = '';
  if (options.event !== undefined) frame += `event: ${options.event}\n`;
  if (options.id !== undefined) frame += `id: ${options.id}\n`;
  return `${frame}data: ${JSON.stringify(data, replacer)}\n\n`;
}

/** JSON for what events may carry: a bigint as a string. */
function replacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** How long a feed gathers a run's events before it writes them to its clients, in ms: one write a client per batch. */
const FEED_BATCH_MS = 16;

/** Where a client of a feed is: the next frame to send it, and the seq it has had. */
interface Client {
  next: number;
  readonly after: number;
}

/**
 * One run's events for every client that watches it: a single follower of the run (whatever the
 * number of clients), each event's frame made once, and every `FEED_BATCH_MS` each client sent, in
 * one write, what it has not had: the run pays for one follower, not one per client. Its frames are
 * kept while clients watch, so one that joins late starts anywhere; the last client to leave stops it.
 */
export class RunFeed {
  /** The run's events so far, in order; each one's frame is made when first sent (off the run's path). */
  readonly #events: WeirEvent[] = [];
  readonly #frames: string[] = [];
  readonly #clients = new Map<EventStream, Client>();
  readonly #controller = new AbortController();
  #ended = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #runId: string;
  readonly #onEmpty: () => void;

  /** Starts following the run from its first event; `onEmpty` runs once the last client left, or the run ended. */
  constructor(ctx: FlowContext, runId: string, onEmpty: () => void) {
    this.#runId = runId;
    this.#onEmpty = onEmpty;
    void this.#follow(ctx, runId);
  }

  /** Sends the client every event with `seq > after` (what the feed has now at once), then each new one, then `end` once the run ended. */
  add(stream: EventStream, after: number): void {
    let next = 0;
    while (next < this.#events.length && this.#events[next]!.seq <= after) next++;
    const client: Client = { next, after };
    this.#clients.set(stream, client);
    stream.signal.addEventListener('abort', () => this.#remove(stream), { once: true });
    this.#deliver(stream, client);
  }

  async #follow(ctx: FlowContext, runId: string): Promise<void> {
    try {
      for await (const event of ctx.events(runId, { signal: this.#controller.signal })) {
        this.#events.push(event);
        this.#timer ??= setTimeout(() => this.#deliverAll(), FEED_BATCH_MS);
      }
    } catch {
      // The run went away (pruned), or the context closed: the clients' streams end.
    }
    this.#ended = true;
    this.#deliverAll();
    this.#onEmpty();
  }

  #deliverAll(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const [stream, client] of this.#clients) this.#deliver(stream, client);
  }

  #deliver(stream: EventStream, client: Client): void {
    let text = '';
    for (; client.next < this.#events.length; client.next++) {
      const event = this.#events[client.next]!;
      if (event.seq > client.after) text += this.#frames[client.next] ??= frameOf(event, { id: event.seq });
    }
    if (this.#ended) text += frameOf({ runId: this.#runId }, { event: 'end' });
    if (text !== '') stream.sendFrame(text);
    if (this.#ended) stream.close();
  }

  #remove(stream: EventStream): void {
    if (!this.#clients.delete(stream) || this.#clients.size > 0 || this.#ended) return;
    clearTimeout(this.#timer);
    this.#controller.abort();
    this.#onEmpty();
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

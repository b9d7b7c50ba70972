/**
 * weir/http: a 200-step run watched by 100 SSE clients against the same run unwatched (and that
 * every client got every event, in order); the time to first byte of the runs list and of the page
 * with 1,000 runs stored on SQLite; runs started per second over HTTP with keep-alive against
 * `ctx.start` called directly. Run alone with `node --import ./bench/loader/register.mjs bench/http.bench.ts`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager } from '../src/index.js';
import { serve } from '../src/http/index.js';
import { Inc } from './processors.js';
import { measure, row } from './harness.js';

const N = z.object({ n: z.number() });

/** Holds the run until `gate` opens. */
class Gate extends Processor<typeof N, typeof N> {
  readonly input = N;
  readonly output = N;
  readonly #gate: Promise<void>;
  constructor(gate: Promise<void>) {
    super();
    this.#gate = gate;
  }
  async process(input: z.infer<typeof N>): Promise<z.infer<typeof N>> {
    await this.#gate;
    return input;
  }
}

/** Reads one run's event stream to its end; resolves to the seqs it got. */
function watch(url: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const seqs: number[] = [];
    request(url, { agent: false }, (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const id = /^id: (\d+)$/m.exec(frame);
          if (id !== null) seqs.push(Number(id[1]));
        }
      });
      res.on('end', () => resolve(seqs));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

/** The time to the first byte of a GET, in ms. */
function firstByte(url: string, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    request(url, { agent }, (res) => {
      res.once('data', () => resolve(performance.now() - start));
      res.resume();
    })
      .on('error', reject)
      .end();
  });
}

/** POSTs a JSON body; resolves once the answer is read. */
function post(url: string, body: string, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end(body);
  });
}

export async function httpBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-http-'));
  try {
    console.log('\n== weir/http: a 200-step run watched by 100 SSE clients (memory store) ==');
    let everyEvent = true;
    /** The run's time from its gate opening to its end, with `clients` SSE clients following it. */
    const timed = async (clients: number, runId: string): Promise<number> => {
      const ctx = new FlowContext();
      const { url } = await serve(ctx);
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const root = Flow.sequential<z.infer<typeof N>>('chain');
      new Flow(new Gate(gate), { name: 'gate' }).registerTo(root);
      for (let i = 0; i < 200; i++) new Flow(new Inc(), { name: `s${i}` }).registerTo(root);
      const handle = ctx.start(root, { n: 0 }, { runId });
      const watchers = Array.from({ length: clients }, () => watch(`${url}api/runs/${runId}/events`));
      // Every client has connected and replayed what there was before the run goes on.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const start = performance.now();
      open();
      await handle.result();
      const ran = performance.now() - start;
      const got = await Promise.all(watchers);
      const last = (await ctx.getRun(runId)).lastSeq;
      everyEvent &&= got.every((seqs) => seqs.length === last && seqs.every((seq, i) => seq === i + 1));
      await ctx.close();
      return ran;
    };
    // Taken turn about, 21 times each after a warm-up, so drift in the machine's speed falls on both alike.
    const bare: number[] = [];
    const followed: number[] = [];
    for (let i = 0; i < 25; i++) {
      const a = await timed(0, `u-${i}`);
      const b = await timed(100, `w-${i}`);
      if (i >= 4) {
        bare.push(a);
        followed.push(b);
      }
    }
    const median = (values: number[]): number => values.sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
    const unwatched = median(bare);
    const watched = median(followed);
    row('', 'ms', 'vs unwatched');
    row('unwatched', unwatched.toFixed(2), '1.00x');
    row('watched by 100 clients', watched.toFixed(2), `${(watched / unwatched).toFixed(2)}x`);
    console.log(`every client got every event, in order: ${everyEvent}`);

    console.log('\n== weir/http: 1,000 runs stored on SQLite: time to first byte ==');
    const ctx = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'runs.db')) });
    const one = new Flow(new Inc(), { name: 'one' });
    ctx.register(one);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => ctx.run(one, { n: i })));
    const { url } = await serve(ctx);
    const agent = new Agent({ keepAlive: true });
    const list = await measure('GET /api/runs (100 a page)', () => firstByte(`${url}api/runs?limit=100`, agent), { warmup: 5, runs: 21 });
    const page = await measure('GET / (the page)', () => firstByte(url, agent), { warmup: 5, runs: 21 });
    row('', 'ms');
    row(list.name, list.ms.toFixed(2));
    row(page.name, page.ms.toFixed(2));

    console.log('\n== weir/http: runs started per second, 1,000 at once (memory store) ==');
    const memory = new FlowContext({ concurrency: 1000 });
    memory.register(one);
    const served = await serve(memory);
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 32 });
    const direct = await measure('ctx.start', async () => {
      await Promise.all(Array.from({ length: 1000 }, (_, i) => memory.start(one, { n: i }).result()));
    }, { warmup: 2, runs: 7 });
    const body = JSON.stringify({ flow: 'one', input: { n: 1 } });
    const overHttp = await measure('POST /api/runs (keep-alive, 32 sockets)', async () => {
      const statuses = await Promise.all(Array.from({ length: 1000 }, () => post(`${served.url}api/runs`, body, keepAlive)));
      if (statuses.some((s) => s !== 202)) throw new Error('a start was refused');
    }, { warmup: 2, runs: 7 });
    row('', 'runs/s', 'vs direct');
    row(direct.name, (1000 / (direct.ms / 1000)).toFixed(0), '1.00x');
    row(overHttp.name, (1000 / (overHttp.ms / 1000)).toFixed(0), `${(direct.ms / overHttp.ms).toFixed(2)}x`);
    agent.destroy();
    keepAlive.destroy();
    await ctx.close();
    await memory.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await httpBench();

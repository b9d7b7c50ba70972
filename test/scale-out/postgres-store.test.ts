import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { z } from 'zod';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext, FlowError, ResultsManager, type FlowContextOptions, type Step } from '../../src/index.js';
import { runStoreOf } from '../../src/results/results-manager.js';
import type { PostgresRunStore } from '../../src/storage/journal/postgres/postgres-run-store.js';
import { SCHEMA_VERSION } from '../../src/storage/journal/postgres/schema.js';
import { AddOne, Fn } from '../fixtures/processors.js';
import { nextWaiting } from '../fixtures/waiting.js';
import { describePostgres, postgresUrl, testDatabase } from '../support/postgres.js';

// What the Postgres store does beyond the RunStore contract: its schema and migrations, group
// commit, and the notices that wake workers (with the poll behind them).

let db: { url: string; drop(): Promise<void> } = { url: '', drop: async () => undefined };
let admin: pg.Pool | undefined;
let schemas = 0;

beforeAll(async () => {
  if (postgresUrl() === '') return;
  db = await testDatabase();
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
});

afterAll(async () => {
  await admin?.end();
  await db.drop();
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

function results(schema: string): ResultsManager {
  const made = ResultsManager.postgres(db.url, { schema });
  closers.push(() => made.close());
  return made;
}

function context(schema: string, options: FlowContextOptions = {}): FlowContext {
  const ctx = new FlowContext({ results: results(schema), ...options });
  closers.push(() => ctx.close());
  return ctx;
}

async function versions(schema: string): Promise<number[]> {
  const { rows } = await admin!.query<{ version: number }>(`SELECT version FROM ${schema}.migrations ORDER BY version`);
  return rows.map((r) => r.version);
}

describe('ResultsManager.postgres options', () => {
  it('refuses what is neither a postgres:// URL nor a Pool, and bad options, naming each', () => {
    const error = (fn: () => unknown): FlowError => {
      try {
        fn();
      } catch (e) {
        return e as FlowError;
      }
      throw new Error('did not throw');
    };
    const notUrl = error(() => ResultsManager.postgres('mysql://x'));
    expect(notUrl.code).toBe(ErrorCode.INVALID_OPTIONS);
    expect(notUrl.message).toContain('a postgres:// connection string or a pg Pool');
    const options = error(() => ResultsManager.postgres('postgres://localhost/db', { schema: 'Bad-Name', poolSize: 1, reconnect: 5 } as never));
    expect(options.code).toBe(ErrorCode.INVALID_OPTIONS);
    expect(options.message).toMatch(/schema/);
    expect(options.message).toMatch(/poolSize/);
    expect(options.message).toMatch(/reconnect/);
  });

  it('fails ready() with WEIR_STORE and the reason when no server answers', async () => {
    const results = ResultsManager.postgres('postgres://postgres@127.0.0.1:1/none', { reconnectFor: 0 });
    closers.push(() => results.close());
    const error = (await results.ready().catch((e: unknown) => e)) as FlowError;
    expect(error.code).toBe(ErrorCode.STORE);
    expect(error.message).toMatch(/ECONNREFUSED/);
  });
});

describePostgres('the Postgres store', () => {
  it('migrates a new schema exactly once when several processes open it at once', async () => {
    const schema = `migrate_${++schemas}`;
    // Each store has its own pool: as many connections racing as processes would.
    await Promise.all(Array.from({ length: 4 }, () => results(schema).ready()));
    expect(await versions(schema)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    // Opening a current schema again changes nothing.
    await results(schema).ready();
    expect(await versions(schema)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
  });

  it('brings a schema made by an earlier version up to date, in order, keeping its runs', async () => {
    const schema = `older_${++schemas}`;
    const add = new Flow(new AddOne(), { name: 'add' });
    const first = context(schema).register(add);
    expect((await first.run(add, { n: 1 }, { runId: 'kept' })).status).toBe('completed');
    // As version 1 left it: no register of workers, no claim function.
    await admin!.query(`DROP TABLE ${schema}.workers; DROP FUNCTION ${schema}.claim; DELETE FROM ${schema}.migrations WHERE version >= 2`);
    const later = context(schema, { recover: true }).register(add);
    await later.ready();
    expect(await versions(schema)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    expect((await later.getRun('kept')).status).toBe('completed');
    const queued = await later.enqueue(add, { n: 5 });
    expect((await queued.result()).output).toEqual({ n: 6 });
  });

  it('commits the completions of many runs in few round trips (group commit)', async () => {
    const schema = `group_${++schemas}`;
    const add = new Flow(new AddOne(), { name: 'add' });
    const ctx = context(schema).register(add);
    await ctx.ready();
    const store = runStoreOf(ctx.results) as PostgresRunStore;
    const before = { ...store.writeStats };
    const done = await Promise.all(Array.from({ length: 200 }, (_, i) => ctx.run(add, { n: i })));
    expect(done.every((r) => r.status === 'completed')).toBe(true);
    const writes = store.writeStats.writes - before.writes;
    const groups = store.writeStats.groups - before.groups;
    // Each run writes its create, its step's completion and its end.
    expect(writes).toBeGreaterThanOrEqual(600);
    expect(groups).toBeLessThan(writes / 10);
  });

  it('wakes a worker when another context answers its parked run: a notice, not a poll', async () => {
    const schema = `notice_${++schemas}`;
    const asks = new Flow(new Fn(async (_input, step: Step) => `got ${await step.waitForInput('name', z.string())}`), { name: 'asks' });
    // Polls and reviews far apart: only the notice can wake it within the test.
    const worker = context(schema, { recover: true, queue: { pollInterval: 3_600_000 }, leaseTimeout: 3_600_000 }).register(asks);
    const parked = nextWaiting(worker);
    worker.start(asks, null, { mode: 'interactive', runId: 'parked' });
    await parked;
    expect((await worker.getRun('parked')).status).toBe('waiting');
    // Another process without the flow: it can only store the answer.
    const other = context(schema);
    await other.submitInput('parked', 'name', 'Ada');
    const result = await (await other.handle('parked')).result();
    expect(result.status).toBe('completed');
    expect(result.output).toBe('got Ada');
  });

  it('during a rolling deploy, a parked run answered while workers of both versions live goes on in the one with its version', async () => {
    const schema = `deploy_${++schemas}`;
    const asking = (version: string) =>
      new Flow(new Fn(async (_input, step: Step) => `${version} got ${await step.waitForInput('name', z.string())}`), { name: 'deploy', version });
    const slow = { recover: true, queue: { pollInterval: 3_600_000 }, leaseTimeout: 3_600_000 } as const;
    const old = context(schema, slow).register(asking('v1'));
    const parked = nextWaiting(old);
    old.start(asking('v1'), null, { mode: 'interactive', runId: 'deploying' });
    await parked;
    // The new version's worker is live too, and hears the same notice.
    const fresh = context(schema, slow).register(asking('v2'));
    await fresh.ready();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Answered through the new worker itself: it would go on with the run at once, were it not of another version.
    await fresh.submitInput('deploying', 'name', 'Ada');
    const result = await (await fresh.handle('deploying')).result();
    expect(result.output).toBe('v1 got Ada');
    expect((await fresh.getRun('deploying')).version).toBe('v1');
  });

  it('lets a worker process exit by itself after close(): no connection, listener or timer left', async () => {
    const program = join(import.meta.dirname, 'programs/close-exits.ts');
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', program, db.url, `exits_${++schemas}`], { timeout: 15_000 });
    expect(JSON.parse(stdout)).toEqual({ status: 'completed', output: { n: 42 } });
    // It left the register of workers as it closed.
    const { rows } = await admin!.query<{ n: number }>(`SELECT count(*)::integer AS n FROM exits_${schemas}.workers`);
    expect(rows[0]!.n).toBe(0);
  });

  it('finds queued runs by its poll when its listening connection was dropped and notices were missed', async () => {
    const schema = `poll_${++schemas}`;
    const add = new Flow(new AddOne(), { name: 'add' });
    const worker = context(schema, { recover: true, queue: { pollInterval: 100 } }).register(add);
    await worker.ready();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { rows } = await admin!.query<{ n: number }>(
      "SELECT count(pg_terminate_backend(pid))::integer AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    );
    expect(rows[0]!.n).toBeGreaterThan(0);
    const client = context(schema).register(add);
    const handle = await client.enqueue(add, { n: 41 });
    expect((await handle.result()).output).toEqual({ n: 42 });
  });
});

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
import { newRun, runStart, T0 } from '../store/helpers.js';
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
  // The context closes its results.
  const ctx = new FlowContext({ results: ResultsManager.postgres(db.url, { schema }), ...options });
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
    const options = error(() => ResultsManager.postgres('postgres://localhost/db', { schema: 'Bad-Name', poolSize: 2, reconnect: 5 } as never));
    expect(options.code).toBe(ErrorCode.INVALID_OPTIONS);
    expect(options.message).toMatch(/schema/);
    expect(options.message).toMatch(/poolSize: expected a whole number >= 3/);
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
    // Each run writes its create, then its step's completion with its end (one write: test/durability/joined-end.test.ts).
    expect(writes).toBeGreaterThanOrEqual(400);
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

  it('claims each stale run for exactly one of many concurrent claimers, in batches', async () => {
    const schema = `claims_${++schemas}`;
    const stores = Array.from({ length: 4 }, () => runStoreOf(results(schema)));
    const first = stores[0]!;
    // 300 runs whose owner stopped renewing at T0 + 30 s.
    await Promise.all(Array.from({ length: 300 }, (_, i) => first.createRun(newRun(`stale-${i}`, { version: 'v' }), [runStart(`stale-${i}`)])));
    const owners = stores.map((_, i) => ({ processId: `claimer:${i}`, host: 'h', pid: 1000 + i }));
    const claimed = await Promise.all(
      stores.map(async (store, i) => {
        const mine: string[] = [];
        for (;;) {
          const batch = await store.claims!.claimRuns(owners[i]!, { flows: [{ flow: 'pipeline', version: 'v' }], limit: 25, leaseMs: 60_000, now: T0 + 60_000, queued: false });
          mine.push(...batch.map((r) => r.runId));
          for (const run of batch) expect(run).toMatchObject({ owner: owners[i], leaseToken: 2, recoveries: 1 });
          if (batch.length < 25) return mine;
        }
      }),
    );
    const all = claimed.flat();
    expect(all).toHaveLength(300);
    expect(new Set(all).size).toBe(300);
    // Of another version, or not stale: nothing.
    expect(await first.claims!.claimRuns(owners[0]!, { flows: [{ flow: 'pipeline', version: 'v' }], limit: 25, leaseMs: 60_000, now: T0 + 60_000, queued: false })).toEqual([]);
  });

  it("keeps a flow's limits exact when many claim its queued runs at once", async () => {
    const schema = `limits_${++schemas}`;
    const stores = Array.from({ length: 4 }, () => runStoreOf(results(schema)));
    const first = stores[0]!;
    await Promise.all(
      Array.from({ length: 60 }, (_, i) => {
        // Queued: nobody holds it.
        const { owner: _owner, ...queued } = newRun(`q-${i}`, { status: 'pending', leaseExpiresAt: 0, version: 'v', concurrencyKey: `k${i % 3}`, priority: i % 5 });
        return first.createRun(queued);
      }),
    );
    const flows = [{ flow: 'pipeline', version: 'v', concurrency: 5, keyConcurrency: 2 }];
    const claimed = (
      await Promise.all(stores.map((store, i) => store.claims!.claimRuns({ processId: `c:${i}`, host: 'h', pid: i }, { flows, limit: 50, leaseMs: 60_000, now: T0, queued: true })))
    ).flat();
    expect(claimed).toHaveLength(5);
    const perKey = new Map<string, number>();
    for (const run of claimed) perKey.set(run.concurrencyKey!, (perKey.get(run.concurrencyKey!) ?? 0) + 1);
    expect(Math.max(...perKey.values())).toBeLessThanOrEqual(2);
    // Highest priority first.
    expect(claimed.every((r) => r.priority === 4)).toBe(true);
    expect(claimed.every((r) => r.status === 'running' && r.lastSeq === 0)).toBe(true);
  });

  it('fails a queued run whose workers kept dying before it began (more than maxRecoveries), instead of starting it again', async () => {
    const schema = `poison_${++schemas}`;
    const add = new Flow(new AddOne(), { name: 'add' });
    const client = context(schema).register(add);
    await client.enqueue(add, { n: 1 }, { runId: 'poison' });
    const store = runStoreOf(client.results);
    // Six workers took it and died before it recorded anything: each lease ran out at once.
    const flows = [{ flow: 'add', version: (await client.getRun('poison')).version }];
    for (let i = 0; i < 6; i++) {
      const claimed = await store.claims!.claimRuns({ processId: `dead:${i}`, host: 'h', pid: i }, { flows, limit: 1, leaseMs: -1, now: Date.now(), queued: true });
      expect(claimed.map((r) => [r.runId, r.lastSeq])).toEqual([['poison', 0]]);
    }
    expect((await client.getRun('poison')).recoveries).toBe(5);
    const worker = context(schema, { recover: true, queue: { pollInterval: 20 } }).register(add);
    const result = await (await worker.handle('poison')).result();
    expect(result.status).toBe('failed');
    expect(result.error?.code).toBe('WEIR_RECOVERY_LIMIT');
  });

  it('never takes over its own runs: a lease that ran out while its event loop was blocked, and nobody took, is renewed', async () => {
    const schema = `own_${++schemas}`;
    const blocked = Flow.sequential('blocked');
    for (const name of ['a', 'b', 'c']) {
      new Flow(
        new Fn(() => {
          // Longer than the lease: no renewal can happen meanwhile.
          const until = Date.now() + 900;
          while (Date.now() < until);
          return name;
        }),
        { name },
      ).registerTo(blocked);
    }
    const worker = context(schema, { recover: true, leaseTimeout: 600, queue: { pollInterval: 50 } }).register(blocked);
    const handle = await worker.enqueue(blocked, null, { runId: 'blocked' });
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect((await worker.getRun('blocked')).recoveries).toBe(0);
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

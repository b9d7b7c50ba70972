import pg from 'pg';
import { expect, it } from 'vitest';
import { describePostgres, postgresUrl, testDatabase } from './postgres.js';
import { startPostgres } from './postgres-server.js';

const query = async (url: string, sql: string): Promise<unknown[]> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
};

describePostgres('the test PostgreSQL server', () => {
  it('answers a query', async () => {
    expect(await query(postgresUrl(), 'select 1 as one')).toEqual([{ one: 1 }]);
  });

  it('makes a fresh database per test and drops it, connections and all', async () => {
    const db = await testDatabase();
    expect(db.url).toMatch(/\/weir_[0-9a-f]{12}$/);
    const name = new URL(db.url).pathname.slice(1);
    expect(await query(db.url, 'select current_database() as name')).toEqual([{ name }]);
    const open = new pg.Client({ connectionString: db.url });
    open.on('error', () => {});
    await open.connect();
    await db.drop();
    await expect(open.query('select 1')).rejects.toThrow();
    await open.end().catch(() => {});
    expect(await query(postgresUrl(), `select count(*)::int as n from pg_database where datname = '${name}'`)).toEqual([{ n: 0 }]);
  });

  it.for([{ immediate: false }, { immediate: true }])('restart(%o) drops connected clients and comes back on the same port', async (options) => {
    // fsync on: with synchronous_commit off an immediate restart may lose the last commits (see StartPostgresOptions).
    const server = await startPostgres();
    try {
      const client = new pg.Client({ connectionString: server.url });
      const errors: Error[] = [];
      client.on('error', (error) => errors.push(error));
      await client.connect();
      await query(server.url, 'create table kept (n int); insert into kept values (7)');
      await server.restart(options);
      await expect(client.query('select 1')).rejects.toThrow();
      await client.end().catch(() => {});
      expect(await query(server.url, 'select n from kept')).toEqual([{ n: 7 }]);
      expect(new URL(server.url).port).toBe(String(server.port));
    } finally {
      await server.stop();
    }
  });
});

/**
 * What a test of Postgres code imports: the shared server (started by ./postgres-setup.ts),
 * `describePostgres` for suites that need it, and a database of its own per test file or test.
 */
import { describe, inject } from 'vitest';
import { freshDatabase } from './postgres-server.js';

/** The shared server's URL, or '' when there is none (see `describePostgres`). */
export function postgresUrl(): string {
  return inject('postgresUrl');
}

const skipReason = (): string => inject('postgresSkipReason') || 'no PostgreSQL server was provided to the tests';

/** `describe` when there is a Postgres server; else `describe.skip`, after saying why. */
export const describePostgres: ReturnType<typeof describe.skipIf> = (() => {
  if (postgresUrl() !== '') return describe;
  console.warn(`weir tests: Postgres tests skipped: ${skipReason()}`);
  return describe.skip;
})();

/** A new database on the shared server; `drop()` it when done. */
export async function testDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const url = postgresUrl();
  if (url === '') throw new Error(`testDatabase: no PostgreSQL server (${skipReason()}); use describePostgres`);
  return freshDatabase(url);
}

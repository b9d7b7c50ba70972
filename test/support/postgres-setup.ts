/**
 * vitest globalSetup: one PostgreSQL server for the whole run, its URL provided to the tests as
 * `postgresUrl` (read it through ./postgres.ts). `WEIR_TEST_POSTGRES_URL` names a server to use
 * instead, and then nothing is started. A server that cannot start never fails the run: the
 * Postgres tests skip, and say why.
 */
import type { TestProject } from 'vitest/node';
import { postgresUnavailable, startPostgres } from './postgres-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The shared server's URL (`postgres://postgres@127.0.0.1:PORT/postgres`), or '' when there is none. */
    postgresUrl: string;
    /** Why there is no server, when `postgresUrl` is ''. */
    postgresSkipReason: string;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const given = process.env.WEIR_TEST_POSTGRES_URL;
  if (given !== undefined && given !== '') {
    project.provide('postgresUrl', given);
    project.provide('postgresSkipReason', '');
    return undefined;
  }
  const skip = (reason: string) => {
    console.warn(`weir tests: Postgres tests skipped: ${reason}`);
    project.provide('postgresUrl', '');
    project.provide('postgresSkipReason', reason);
    return undefined;
  };
  try {
    const reason = await postgresUnavailable();
    if (reason !== undefined) return skip(reason);
    const server = await startPostgres({ fsync: false });
    project.provide('postgresUrl', server.url);
    project.provide('postgresSkipReason', '');
    return () => server.stop();
  } catch (error) {
    return skip(error instanceof Error ? error.message : String(error));
  }
}

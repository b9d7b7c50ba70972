/**
 * vitest globalSetup: one PostgreSQL server for the whole run, its URL provided to the tests as
 * `postgresUrl` (read it through ./postgres.ts). `WEIR_TEST_POSTGRES_URL` names a server to use
 * instead, and then nothing is started. A server that cannot start fails the run, saying why: the
 * Postgres tests never skip unasked. `WEIR_TEST_SKIP_POSTGRES=1` skips them instead (each suite
 * says so), for a machine without Debian's postgresql package.
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
    if (process.env.WEIR_TEST_SKIP_POSTGRES !== '1') {
      throw new Error(`weir tests: no PostgreSQL server for the Postgres tests: ${reason} (name a server in WEIR_TEST_POSTGRES_URL instead, or skip these tests with WEIR_TEST_SKIP_POSTGRES=1)`);
    }
    console.warn(`weir tests: Postgres tests skipped (WEIR_TEST_SKIP_POSTGRES=1): ${reason}`);
    project.provide('postgresUrl', '');
    project.provide('postgresSkipReason', `WEIR_TEST_SKIP_POSTGRES=1: ${reason}`);
    return undefined;
  };
  let reason: string | undefined;
  try {
    reason = await postgresUnavailable();
    if (reason === undefined) {
      const server = await startPostgres({ fsync: false });
      project.provide('postgresUrl', server.url);
      project.provide('postgresSkipReason', '');
      return () => server.stop();
    }
  } catch (error) {
    reason = error instanceof Error ? error.message : String(error);
  }
  return skip(reason);
}

/**
 * A throwaway PostgreSQL server for the tests and the benchmarks, started from the binaries of
 * Debian's `postgresql` package (or any on PATH): initdb into a fresh temp dir, a postmaster on a
 * free port of 127.0.0.1 with trust auth, stopped fast and deleted by `stop()`.
 *
 * The server refuses to run as root, so when we are root initdb and the postmaster run as the
 * `postgres` OS user (spawn's uid/gid: the postmaster stays our direct child, so its signals are
 * ours to send, not a wrapper's like runuser's, which turns SIGINT into SIGTERM). Otherwise they
 * run as the current user.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, rmSync } from 'node:fs';
import { access, chown, constants, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve as resolvePath } from 'node:path';
import pg from 'pg';

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  readonly url: string;
  readonly port: number;
  /**
   * Stops the postmaster (fast shutdown, SIGINT; or immediate, SIGQUIT, a crash the next start
   * recovers from) and starts it again on the same port and data dir. Every connection is dropped.
   */
  restart(options?: { immediate?: boolean }): Promise<void>;
  /** Fast shutdown (SIGKILL after 10 s), then deletes the data dir. Idempotent. */
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /**
   * `false` turns off fsync, synchronous_commit and full_page_writes (the tests); benchmarks keep
   * them. Without synchronous_commit a commit is acknowledged before its WAL is written, so
   * `restart({ immediate: true })` can lose the commits of the last few hundred milliseconds.
   * @default true
   */
  fsync?: boolean;
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

interface Binaries {
  dir: string;
  initdb: string;
  postgres: string;
}

interface RunAs {
  uid: number;
  gid: number;
}

/** Runs a program to its end; rejects with its exit code and output. */
const execFileText = (file: string, args: string[], options: { uid?: number; gid?: number; cwd?: string } = {}): Promise<{ stdout: string; stderr: string }> =>
  new Promise((resolve, reject) => {
    execFile(file, args, { ...options, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }, (error, stdout, stderr) => {
      if (!error) return resolve({ stdout, stderr });
      const how = typeof error.code === 'number' ? `exit code ${error.code}` : (error.signal ?? error.code ?? 'failed');
      const output = `${stdout}\n${stderr}`.trim();
      reject(new Error(`${file} ${args.join(' ')}: ${how}${output === '' ? '' : `\n${output}`}`, { cause: error }));
    });
  });

const executable = async (path: string): Promise<boolean> => {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

const binariesIn = async (dir: string): Promise<Binaries | undefined> => {
  const initdb = join(dir, 'initdb');
  const postgres = join(dir, 'postgres');
  return (await executable(initdb)) && (await executable(postgres)) ? { dir, initdb, postgres } : undefined;
};

let binariesLookup: Promise<Binaries | undefined> | undefined;

/** Debian's /usr/lib/postgresql/<version>/bin, newest first; then `pg_config --bindir`; then PATH. */
const findBinaries = (): Promise<Binaries | undefined> =>
  (binariesLookup ??= (async () => {
    const root = '/usr/lib/postgresql';
    const versions = await readdir(root).catch(() => [] as string[]);
    versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a) || b.localeCompare(a));
    for (const version of versions) {
      const found = await binariesIn(join(root, version, 'bin'));
      if (found) return found;
    }
    const bindir = await execFileText('pg_config', ['--bindir']).then(({ stdout }) => stdout.trim(), () => '');
    if (bindir !== '') {
      const found = await binariesIn(bindir);
      if (found) return found;
    }
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (dir === '') continue;
      const found = await binariesIn(dir);
      if (found) return found;
    }
    return undefined;
  })());

let runAsLookup: Promise<RunAs | string | undefined> | undefined;

/** Whom to run as: the `postgres` user when we are root, else ourselves (undefined); a string says why we can't. */
const findRunAs = (): Promise<RunAs | string | undefined> =>
  (runAsLookup ??= (async () => {
    if (process.getuid?.() !== 0) return undefined;
    try {
      const uid = Number((await execFileText('id', ['-u', 'postgres'])).stdout.trim());
      const gid = Number((await execFileText('id', ['-g', 'postgres'])).stdout.trim());
      if (!Number.isInteger(uid) || !Number.isInteger(gid)) return 'cannot read the uid and gid of the postgres user';
      return { uid, gid };
    } catch {
      return 'running as root and there is no postgres OS user to run the server as (PostgreSQL refuses to run as root)';
    }
  })());

/** Why no server can be started here, or undefined when one can. */
export async function postgresUnavailable(): Promise<string | undefined> {
  if (!(await findBinaries())) {
    return 'no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin, `pg_config --bindir` or PATH; install Debian\'s postgresql package';
  }
  const runAs = await findRunAs();
  return typeof runAs === 'string' ? runAs : undefined;
}

/** Can `who` pass through every directory on the way to `path` (by the mode bits; ACLs aside)? */
const traversable = async (path: string, who: RunAs): Promise<boolean> => {
  for (let dir = resolvePath(path); ; dir = dirname(dir)) {
    try {
      const { mode, uid, gid } = await stat(dir);
      const ok = uid === who.uid ? mode & 0o100 : gid === who.gid ? mode & 0o010 : mode & 0o001;
      if (!ok) return false;
    } catch {
      return false;
    }
    if (dirname(dir) === dir) return true;
  }
};

/**
 * Where to make the server's temp dir: the system temp dir, unless the postgres user can't reach
 * it (a TMPDIR under /root, say); then the first of /tmp, /var/tmp and /dev/shm it can.
 */
const tempBase = async (runAs: RunAs | undefined): Promise<string> => {
  if (!runAs) return tmpdir();
  for (const candidate of [tmpdir(), '/tmp', '/var/tmp', '/dev/shm']) {
    if (await traversable(candidate, runAs)) return candidate;
  }
  throw new Error(`the postgres user (uid ${runAs.uid}) can enter none of ${tmpdir()}, /tmp, /var/tmp and /dev/shm for the server's data dir`);
};

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const tail = async (path: string, lines = 30): Promise<string> => {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
};

/** Gone, or never started (a failed spawn leaves no pid). */
const exited = (child: ChildProcess): boolean => child.pid === undefined || child.exitCode !== null || child.signalCode !== null;

const waitForExit = (child: ChildProcess, ms: number): Promise<boolean> =>
  exited(child)
    ? Promise.resolve(true)
    : new Promise((resolve) => {
        const timer = setTimeout(() => {
          child.off('exit', onExit);
          resolve(false);
        }, ms);
        const onExit = () => {
          clearTimeout(timer);
          resolve(true);
        };
        child.once('exit', onExit);
      });

/** The postmasters this process started and has not stopped: killed if we exit without stopping them. */
const live = new Map<ChildProcess, string>();
let exitHookInstalled = false;
const installExitHook = () => {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [child, dir] of live) {
      try {
        if (!exited(child)) child.kill('SIGKILL');
      } catch {
        // already gone
      }
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // best effort: its backends may still be writing
      }
    }
  });
};

/** Resolves once a client can connect and query; rejects if the postmaster exits or 30 s pass. */
const waitUntilReady = async (url: string, child: ChildProcess, logPath: string): Promise<void> => {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (exited(child)) {
      throw new Error(`PostgreSQL exited during startup (code ${String(child.exitCode)}, signal ${String(child.signalCode)}); its log:\n${await tail(logPath)}`);
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('select 1');
      await client.end();
      return;
    } catch (error) {
      lastError = error;
      await client.end().catch(() => {});
    }
    await sleep(100);
  }
  throw new Error(`PostgreSQL did not accept connections within ${READY_TIMEOUT_MS / 1000} s (last error: ${(lastError as Error | undefined)?.message ?? 'none'}); its log:\n${await tail(logPath)}`);
};

export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const reason = await postgresUnavailable();
  if (reason !== undefined) throw new Error(`cannot start PostgreSQL: ${reason}`);
  const binaries = (await findBinaries())!;
  const runAs = (await findRunAs()) as RunAs | undefined;
  const owned = async (path: string) => {
    if (runAs) await chown(path, runAs.uid, runAs.gid);
  };

  const dir = await mkdtemp(join(await tempBase(runAs), 'weir-pg-'));
  const data = join(dir, 'data');
  const sockets = join(dir, 'sock');
  const logPath = join(dir, 'postgres.log');
  let started = false;
  try {
    await owned(dir);
    await mkdir(sockets, { mode: 0o700 });
    await owned(sockets);

    try {
      await execFileText(
        binaries.initdb,
        ['-D', data, '-U', 'postgres', '--encoding=UTF8', '--no-locale', '--auth=trust', '--no-sync', '--no-instructions'],
        { ...runAs, cwd: dir },
      );
    } catch (error) {
      throw new Error(`initdb failed: ${(error as Error).message}`, { cause: error });
    }
    // Trust over TCP from 127.0.0.1 only (and the private socket dir, which only its owner can enter).
    const hba = join(data, 'pg_hba.conf');
    await writeFile(hba, 'local all all trust\nhost all all 127.0.0.1/32 trust\n', { mode: 0o600 });
    await owned(hba);

    const settings = ['listen_addresses=127.0.0.1', `unix_socket_directories=${sockets}`, 'max_connections=200'];
    if (options.fsync === false) settings.push('fsync=off', 'synchronous_commit=off', 'full_page_writes=off');

    let child: ChildProcess | undefined;
    let port = 0;
    let url = '';

    const launch = () => {
      const log = openSync(logPath, 'a');
      try {
        const args = ['-D', data, '-p', String(port), ...settings.flatMap((setting) => ['-c', setting])];
        const spawned = spawn(binaries.postgres, args, { ...runAs, cwd: dir, stdio: ['ignore', log, log], env: { ...process.env, LC_ALL: 'C' } });
        spawned.on('error', () => {}); // a failed spawn leaves no pid: waitUntilReady reports it with the log
        spawned.unref(); // a forgotten stop() must not keep the process alive: the exit hook kills it
        live.set(spawned, dir);
        installExitHook();
        return spawned;
      } finally {
        closeSync(log);
      }
    };

    const halt = async (signal: NodeJS.Signals) => {
      const current = child;
      if (!current) return;
      if (!exited(current)) {
        current.kill(signal);
        if (!(await waitForExit(current, STOP_TIMEOUT_MS))) {
          current.kill('SIGKILL');
          await waitForExit(current, STOP_TIMEOUT_MS);
        }
      }
      live.delete(current);
      child = undefined;
    };

    // A free port can be taken between our probe and the postmaster's bind: try a few.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      child = launch();
      try {
        await waitUntilReady(url, child, logPath);
        break;
      } catch (error) {
        await halt('SIGQUIT');
        const portTaken = /could not bind|Address already in use/i.test(await tail(logPath, 10));
        if (!portTaken || attempt >= 3) throw error;
      }
    }
    started = true;

    let stopping: Promise<void> | undefined;
    const server: PostgresServer = {
      url,
      port,
      async restart({ immediate = false } = {}) {
        if (stopping) throw new Error('this PostgreSQL server is stopped');
        await halt(immediate ? 'SIGQUIT' : 'SIGINT');
        child = launch();
        await waitUntilReady(url, child, logPath);
      },
      stop() {
        return (stopping ??= (async () => {
          await halt('SIGINT');
          await rm(dir, { recursive: true, force: true, maxRetries: 5 });
        })());
      },
    };
    return server;
  } finally {
    if (!started) await rm(dir, { recursive: true, force: true, maxRetries: 5 }).catch(() => {});
  }
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

const withClient = async <T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
};

/**
 * Creates a database of its own (`<prefix>_<random>`) on the server at `url` and returns its URL
 * (the same user, host and options). `drop()` ends its connections and drops it.
 */
export async function freshDatabase(url: string, prefix = 'weir'): Promise<{ url: string; drop(): Promise<void> }> {
  if (!/^[a-z_][a-z0-9_]*$/i.test(prefix)) throw new Error(`freshDatabase: the prefix must be a plain SQL name, not ${JSON.stringify(prefix)}`);
  const name = `${prefix}_${randomBytes(6).toString('hex')}`.toLowerCase();
  await withClient(url, (client) => client.query(`create database ${quoteIdent(name)}`));
  const own = new URL(url);
  own.pathname = `/${name}`;
  let dropping: Promise<void> | undefined;
  return {
    url: own.toString(),
    drop: () =>
      (dropping ??= withClient(url, async (client) => {
        // A backend can connect between the terminate and the drop: retry while the drop says "in use".
        for (let attempt = 1; ; attempt++) {
          await client.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name]);
          try {
            await client.query(`drop database if exists ${quoteIdent(name)}`);
            return;
          } catch (error) {
            if ((error as { code?: string }).code !== '55006' || attempt >= 20) throw error;
            await sleep(50);
          }
        }
      })),
  };
}

/**
 * The `weir` command: list, inspect, watch and repair the runs in a SQLite or Postgres store from a terminal.
 * A thin adapter over the public `FlowContext` API. Exit codes: 0 done, 1 refused (the error's code
 * and message on stderr, one line), 2 usage.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ErrorCode, FlowError } from '../errors/errors.js';
import { Flow, FlowContext, ResultsManager, type AnyFlow, type RunInfo } from '../index.js';
import { serve } from '../http/index.js';
import { serveMcpStdio } from '../mcp/index.js';
import { table, eventLine, since, progressBar } from './format.js';

/** Where a command writes: stdout and stderr, and whether stdout is a terminal. */
export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly tty: boolean;
}

/**
 * Refuses a Postgres store whose schema weir never made (a wrong URL or schema), before opening it
 * would make one. @throws FlowError `WEIR_STORE`.
 */
async function checkSchema(url: string, schema: string): Promise<void> {
  let client: import('pg').Client | undefined;
  try {
    const { default: pg } = await import('pg');
    client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query<{ found: string | null }>('SELECT to_regclass($1) AS found', [`"${schema.replaceAll('"', '""')}".runs`]);
    if (rows[0]?.found === null) throw new FlowError(`no store at ${url} in schema "${schema}": it has no weir tables`, { code: ErrorCode.STORE });
  } catch (error) {
    if (error instanceof FlowError) throw error;
    throw new FlowError(`no store at ${url}: ${error instanceof Error ? error.message : String(error)}`, { code: ErrorCode.STORE, cause: error });
  } finally {
    await client?.end().catch(() => undefined);
  }
}

/** tsx's loader API: an optional peer, named in a variable so no bundler or dependency check takes it for a dependency. */
const TSX_API = 'tsx/esm/api';
const DAY = 86_400_000;
const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY, w: 7 * DAY };

/**
 * Runs the command line `argv` (without node and the script), writing to `io`.
 * @returns the exit code.
 */
export async function main(argv: readonly string[], io: Io = processIo()): Promise<number> {
  let ctx: FlowContext | undefined;
  let keepOpen = false;
  const program = new Command('weir')
    .description('List, inspect, watch and repair weir runs stored in a SQLite file or a Postgres database.')
    .addOption(new Option('--store <file-or-url>', 'the SQLite file of the runs, or a postgres:// URL').env('WEIR_STORE'))
    .addOption(new Option('--schema <name>', 'the Postgres schema of the runs').env('WEIR_SCHEMA').default('weir'))
    .option('--module <file>', 'a module that exports the flows (for resume, retry, watch of live runs, graph, serve)')
    .option('--json', 'print JSON for scripts instead of tables')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError();

  const open = async (): Promise<FlowContext> => {
    const { store, module, schema } = program.opts<{ store?: string; module?: string; schema: string }>();
    if (store === undefined) throw new FlowError('no store: give --store <file-or-url> or set WEIR_STORE', { code: ErrorCode.INVALID_OPTIONS });
    const postgres = /^postgres(ql)?:\/\//.test(store);
    // A read must never make a store: a file (or a schema) that is not there is refused, not created.
    if (postgres) await checkSchema(store, schema);
    else if (!existsSync(store)) throw new FlowError(`no store at ${store}: the file does not exist`, { code: ErrorCode.STORE });
    ctx = new FlowContext({ results: postgres ? ResultsManager.postgres(store, { schema }) : ResultsManager.sqlite(store) });
    await ctx.ready();
    if (module !== undefined) for (const flow of await flowsOf(module)) ctx.register(flow);
    return ctx;
  };
  const json = (): boolean => program.opts<{ json?: boolean }>().json === true;
  const print = (value: unknown, text: () => string): void => io.out(json() ? `${JSON.stringify(value, null, 2)}\n` : text());

  program
    .command('runs')
    .description('list runs, newest first')
    .option('--status <status>', 'only runs in this status (running, waiting, completed, failed, cancelled)')
    .option('--flow <name>', 'only runs of this flow')
    .option('--limit <n>', 'at most this many', (v) => integer(v, '--limit'), 50)
    .option('--before <cursor>', 'the page after this cursor (the "next" of the page before)')
    .option('--stranded', 'only runs no live context can take (no live worker has their flow at their version)')
    .action(async (options: { status?: string; flow?: string; limit: number; before?: string; stranded?: boolean }) => {
      const c = await open();
      const page = await c.listRuns({
        limit: options.limit,
        ...(options.stranded === true ? { stranded: true } : {}),
        ...(options.status === undefined ? {} : { status: options.status as never }),
        ...(options.flow === undefined ? {} : { flow: options.flow }),
        ...(options.before === undefined ? {} : { before: options.before }),
      });
      print(page, () =>
        table(
          ['RUN', 'FLOW', 'STATUS', 'CREATED', 'UPDATED', 'ERROR'],
          page.runs.map((r) => [r.runId, r.flow, r.status, since(r.createdAt), since(r.updatedAt), r.error === undefined ? '' : `${r.error.code ?? r.error.name}: ${r.error.message}`]),
        ) + (page.next === undefined ? '' : `more: --before ${page.next}\n`),
      );
    });

  program
    .command('show <runId>')
    .description('a run: its steps with status, attempts, timings and errors, and what it waits for')
    .action(async (runId: string) => {
      const info = await (await open()).getRun(runId);
      print(info, () => showRun(info));
    });

  program
    .command('watch <runId>')
    .description('follow a run live until it ends (Ctrl-C stops watching and leaves the run alone)')
    .option('--no-tty', 'plain lines, no progress bars redrawn in place')
    .action(async (runId: string, options: { tty: boolean }) => {
      const c = await open();
      await c.getRun(runId);
      const redraw = options.tty && io.tty && !json();
      const bars = new Map<string, string>();
      const status = (): string => [...bars].map(([step, bar]) => `${step} ${bar}`).join('   ');
      for await (const event of c.events(runId)) {
        if (json()) {
          io.out(`${JSON.stringify(event)}\n`);
          continue;
        }
        if (event.type === 'step_progress') bars.set(event.step, progressBar(event.progress, event.message));
        else if (event.type === 'step_complete' || event.type === 'step_failed' || event.type === 'step_cancelled') bars.delete(event.step);
        // In a terminal the progress line is redrawn under the log; elsewhere each event is a line.
        if (redraw) io.out(`\r\x1b[2K${eventLine(event)}\n${status()}`);
        else io.out(`${eventLine(event)}\n`);
      }
      if (redraw) io.out('\r\x1b[2K');
    });

  program
    .command('answer <runId> <key> <json>')
    .description('answer what a run waits for, with a JSON value')
    .action(async (runId: string, key: string, text: string) => {
      const value = parseJson(text, 'the answer');
      await (await open()).submitInput(runId, key, value);
      print({ ok: true }, () => `answered "${key}" of run ${runId}\n`);
    });

  program
    .command('resume <runId>')
    .description('go on with a failed or cancelled run (--from: run that step and what follows again); needs --module')
    .option('--from <step>', 'the step to run again, with everything downstream of it')
    .action(async (runId: string, options: { from?: string }) => {
      const handle = await (await open()).resume(runId, options.from === undefined ? {} : { from: options.from });
      const result = await handle.result();
      print(result, () => `run ${runId}: ${result.status}\n`);
    });

  program
    .command('retry <runId>')
    .description('start a failed or cancelled run again from the start, as a new run; needs --module')
    .action(async (runId: string) => {
      const handle = await (await open()).retry(runId);
      const result = await handle.result();
      print(result, () => `run ${handle.runId} (a retry of ${runId}): ${result.status}\n`);
    });

  program
    .command('skip <runId> <step> [json]')
    .description('mark a step of a run done without running it, with an output given as JSON')
    .action(async (runId: string, step: string, text?: string) => {
      const output = text === undefined ? undefined : parseJson(text, 'the output');
      await (await open()).skip(runId, step, output);
      print({ ok: true }, () => `skipped "${step}" of run ${runId}\n`);
    });

  program
    .command('cancel <runId>')
    .description('cancel a run (a waiting one needs --module)')
    .option('--reason <text>', 'why, kept with the run')
    .action(async (runId: string, options: { reason?: string }) => {
      await (await open()).cancel(runId, options.reason);
      print({ ok: true }, () => `cancelled run ${runId}\n`);
    });

  program
    .command('prune')
    .description('delete finished runs older than a given age')
    .requiredOption('--older-than <age>', 'an age: 30m, 12h, 7d, 2w')
    .action(async (options: { olderThan: string }) => {
      const deleted = await (await open()).prune({ olderThan: age(options.olderThan) });
      print({ deleted }, () => `deleted ${deleted} run${deleted === 1 ? '' : 's'}\n`);
    });

  program
    .command('graph <module> [flow]')
    .description('print a flow of a module as Mermaid (the only flow, or the one named)')
    .action(async (module: string, name?: string) => {
      const flows = await flowsOf(module);
      const flow = name === undefined ? (flows.length === 1 ? flows[0] : undefined) : flows.find((f) => f.name === name);
      if (flow === undefined) {
        const names = flows.map((f) => `"${f.name}"`).join(', ') || 'none';
        throw new FlowError(name === undefined ? `${module} exports ${flows.length} flows (${names}): name one` : `${module} exports no flow named "${name}" (it exports ${names})`, {
          code: ErrorCode.INVALID_OPTIONS,
        });
      }
      io.out(flow.toMermaid());
    });

  program
    .command('mcp')
    .description('serve the runs as MCP tools for an agent, over stdin and stdout (until stdin closes)')
    .action(async () => {
      await serveMcpStdio(await open());
    });

  program
    .command('serve')
    .description('serve the runs over HTTP with the dashboard (until Ctrl-C)')
    .option('--port <n>', 'the port', (v) => integer(v, '--port'), 8080)
    .option('--host <host>', 'the address to listen on', '127.0.0.1')
    .action(async (options: { port: number; host: string }) => {
      const c = await open();
      const { url } = await serve(c, { port: options.port, host: options.host });
      io.out(`weir dashboard: ${url}\n`);
      keepOpen = true;
      await new Promise<void>((resolve) => process.once('SIGINT', resolve));
      keepOpen = false;
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    const code = error instanceof FlowError ? error.code : ErrorCode.UNKNOWN;
    const hint = code === ErrorCode.FLOW_NOT_REGISTERED && program.opts<{ module?: string }>().module === undefined ? '; give --module <file> that exports it' : '';
    io.err(`weir: ${code}: ${error instanceof Error ? error.message : String(error)}${hint}\n`);
    return 1;
  } finally {
    if (!keepOpen) await ctx?.close();
  }
}

/** A run in detail, for people. */
function showRun(info: RunInfo): string {
  const lines = [
    `run ${info.runId}  ${info.flow}  ${info.status}  ${info.progress.done}/${info.progress.total} steps  created ${since(info.createdAt)}`,
    ...(info.error === undefined ? [] : [`error: ${info.error.code ?? info.error.name}: ${info.error.message}${info.error.step === undefined ? '' : ` (step "${info.error.step}")`}`]),
    '',
    table(
      ['STEP', 'STATUS', 'ATTEMPTS', 'STARTED', 'TOOK', 'ERROR'],
      Object.values(info.steps).map((s) => [
        s.name,
        s.status + (s.progress !== undefined && s.status === 'running' ? ` ${Math.round(s.progress.fraction * 100)}%` : ''),
        String(s.attempts.length),
        s.startTime === undefined ? '' : since(s.startTime),
        s.startTime !== undefined && s.endTime !== undefined ? `${s.endTime - s.startTime} ms` : '',
        s.error === undefined ? '' : `${s.error.code ?? s.error.name}: ${s.error.message}`,
      ]),
    ).trimEnd(),
  ];
  for (const wait of info.waitingFor ?? []) lines.push('', `waits for "${wait.key}" (step "${wait.step}")${wait.deadline === undefined ? '' : ` until ${new Date(wait.deadline).toISOString()}`}: weir answer ${info.runId} ${wait.key} '<json>'`);
  return `${lines.join('\n')}\n`;
}

/**
 * The flows a module exports (its named exports and default export that are flows).
 * @throws FlowError `WEIR_PROCESSOR_MODULE` when it cannot be loaded; `WEIR_INVALID_OPTIONS` when it exports no flow.
 */
async function flowsOf(module: string): Promise<AnyFlow[]> {
  const url = pathToFileURL(resolve(module)).href;
  if (!existsSync(resolve(module))) throw new FlowError(`no module at ${module}`, { code: ErrorCode.PROCESSOR_MODULE });
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw new FlowError(`cannot load ${module}: ${(error as Error).message}`, { code: ErrorCode.PROCESSOR_MODULE });
    // A TypeScript module: through tsx, when it is installed.
    try {
      const { tsImport } = (await import(TSX_API)) as { tsImport: (specifier: string, parent: string) => Promise<Record<string, unknown>> };
      namespace = await tsImport(url, import.meta.url);
    } catch (inner) {
      throw new FlowError(`cannot load ${module}: a TypeScript module needs tsx installed, or build it to JavaScript (${(inner as Error).message})`, { code: ErrorCode.PROCESSOR_MODULE });
    }
  }
  const flows = [...new Set(Object.values(namespace).filter((value): value is AnyFlow => value instanceof Flow))].filter((flow) => flow.parent === undefined);
  if (flows.length === 0) throw new FlowError(`${module} exports no flow (export the root flows, such as "export const pipeline = Flow.sequential(...)")`, { code: ErrorCode.INVALID_OPTIONS });
  return flows;
}

/**
 * A JSON value given on the command line.
 * @throws FlowError `WEIR_VALIDATION` naming `what` for text that is not JSON.
 */
function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new FlowError(`${what} is not JSON: ${(error as Error).message} (quote it for the shell: '{"ok":true}')`, { code: ErrorCode.VALIDATION });
  }
}

/** `7d`, `12h`, `30m`, `2w`, `500ms` in milliseconds. */
function age(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(text.trim());
  if (match === null) throw new FlowError(`--older-than: expected an age such as 30m, 12h, 7d or 2w, got "${text}"`, { code: ErrorCode.INVALID_OPTIONS });
  return Number(match[1]) * UNITS[match[2]!]!;
}

function integer(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError(`${what}: expected a whole number, got "${text}"`);
  return Number(text);
}

function processIo(): Io {
  return { out: (text) => process.stdout.write(text), err: (text) => process.stderr.write(text), tty: process.stdout.isTTY === true };
}


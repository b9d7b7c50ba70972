/**
 * The JSON API over a `FlowContext`: one function per route, each through the context's public
 * API only. A request's body is validated here (its shape) and by the context (the flow's input,
 * a run's options), and every refusal is the context's `FlowError`.
 */
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { ErrorCode, FlowError, ValidationError, type ValidationIssue } from '../errors/errors.js';
import type { AnyFlow, FlowContext, ListRunsOptions, RunInfo } from '../index.js';
import { siblingEdges } from '../model/edges.js';
import { FlowType } from '../model/status.js';
import { parseOptions, parseValue } from '../util/parse.js';
import type { HttpAction } from './access.js';

/** What a route answers: a status and a JSON body. */
export interface Reply {
  readonly status: number;
  readonly body: unknown;
}

/** One request as a route sees it. */
export interface RouteRequest {
  readonly req: IncomingMessage;
  readonly ctx: FlowContext;
  readonly query: URLSearchParams;
  /** The run id in the path, validated. */
  readonly runId: string | undefined;
  /** Reads and parses the JSON body (once). */
  readonly body: () => Promise<unknown>;
}

/** A route: what it asks to do, and how it answers. */
export interface Route {
  readonly action: HttpAction;
  readonly handle: (request: RouteRequest) => Promise<Reply>;
}

const startSchema = z.strictObject({
  flow: z.string().min(1),
  input: z.unknown().optional(),
  runId: z.string().optional(),
  mode: z.string().optional(),
  humanInLoop: z.boolean().optional(),
  timeout: z.number().optional(),
  concurrency: z.number().optional(),
});
const inputSchema = z.strictObject({ key: z.string().min(1), value: z.unknown() });
const humanSchema = z.strictObject({ on: z.boolean() });
const resumeSchema = z.strictObject({ from: z.string().min(1).optional() });
const skipSchema = z.strictObject({ step: z.string().min(1), output: z.unknown().optional() });
const cancelSchema = z.strictObject({ reason: z.string().max(1000).optional() });

/** The run or flow of a request, by the name in its body. */
function flowNamed(ctx: FlowContext, name: string): AnyFlow {
  const flow = ctx.getFlow(name);
  if (flow === undefined) throw new FlowError(`no flow named "${name}" is registered`, { code: ErrorCode.FLOW_NOT_REGISTERED });
  return flow;
}

/** The leaves that receive a run's input: a parallel composite's children all do, a sequential one's first child does. */
function entryLeaves(flow: AnyFlow): AnyFlow[] {
  if (!flow.isComposite) return [flow];
  const children = flow.children;
  if (flow.type === FlowType.SEQUENTIAL) return children.length === 0 ? [] : entryLeaves(children[0]!);
  return children.flatMap(entryLeaves);
}

/**
 * Checks a run's input against the input schema of every step that receives it, so a bad one is
 * refused before a run is made.
 * @throws ValidationError `WEIR_VALIDATION` with every step's issues, each path led by the step's name.
 */
export function checkInput(flow: AnyFlow, input: unknown): void {
  const issues: ValidationIssue[] = [];
  const failing: string[] = [];
  for (const leaf of entryLeaves(flow)) {
    try {
      parseValue(leaf.processor!.input, input, `the input of "${leaf.name}"`);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      failing.push(error.message);
      issues.push(...error.issues.map((issue) => ({ ...issue, path: [leaf.name, ...issue.path] })));
    }
  }
  if (failing.length > 0) throw new ValidationError(`flow "${flow.name}": ${failing.join('; ')}`, { issues });
}

/** A flow as the API lists it: its name, type, description and the JSON Schema of the input it takes. */
export function flowInfo(flow: AnyFlow): unknown {
  const schemas = entryLeaves(flow).map((leaf) => z.toJSONSchema(leaf.processor!.input, { io: 'input', unrepresentable: 'any' }));
  return {
    name: flow.name,
    type: flow.type,
    ...(flow.config.description === undefined ? {} : { description: flow.config.description }),
    input: schemas.length === 1 ? schemas[0] : { allOf: schemas },
  };
}

/** A list query from plain values (as a tool's arguments give them); `ctx.listRuns` checks them. */
export function listQueryOf(query: {
  readonly status?: string | undefined;
  readonly flow?: string | undefined;
  readonly limit?: number | undefined;
  readonly before?: string | undefined;
  readonly stranded?: boolean | undefined;
}): ListRunsOptions {
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(query)) if (value !== undefined) options[key] = value;
  return options;
}

/** `?status=running&status=failed` or `?status=running,failed`, `?flow=`, `?limit=`, `?before=`, `?stranded=true`. */
function listQuery(query: URLSearchParams): ListRunsOptions {
  const statuses = query.getAll('status').flatMap((s) => s.split(',')).filter((s) => s !== '');
  const limit = query.get('limit');
  const options: Record<string, unknown> = {};
  if (statuses.length === 1) options.status = statuses[0];
  else if (statuses.length > 1) options.status = statuses;
  if (query.get('flow') !== null) options.flow = query.get('flow');
  if (limit !== null) options.limit = /^\d+$/.test(limit) ? Number(limit) : limit;
  if (query.get('before') !== null) options.before = query.get('before');
  const stranded = query.get('stranded');
  // Anything but true or false is left as it is, for the options check to refuse by name.
  if (stranded !== null) options.stranded = stranded === 'true' ? true : stranded === 'false' ? false : stranded;
  return options;
}

/** A flow's tree as the dashboard draws it: every flow (composites too) with its parent, and the edges between siblings. */
export function graphOf(flow: AnyFlow): unknown {
  const nodes: { name: string; type: string; parent: string | null }[] = [];
  const edges: { from: string; to: string; required: boolean }[] = [];
  const visit = (node: AnyFlow, parent: AnyFlow | undefined): void => {
    nodes.push({ name: node.name, type: node.type, parent: parent?.name ?? null });
    for (const child of node.children) visit(child, node);
    for (const edge of siblingEdges(node)) edges.push({ from: edge.from.name, to: edge.to.name, required: edge.kind !== 'optional' });
  };
  visit(flow, undefined);
  return { root: flow.name, nodes, edges };
}

/** A run as the list shows it: `getRun` without the steps, with the step at work and its last progress as `current`. */
export function liveSummary(info: RunInfo): unknown {
  const { steps, ...rest } = info;
  const name = rest.running[0];
  const progress = name === undefined ? undefined : steps[name]?.progress;
  return { ...rest, ...(name === undefined ? {} : { current: { step: name, ...(progress === undefined ? {} : { progress }) } }) };
}

/** A page of runs, the running and waiting ones with their progress (one `getRun` each). */
async function listPage(ctx: FlowContext, query: ListRunsOptions): Promise<unknown> {
  const page = await ctx.listRuns(query);
  const runs = await Promise.all(
    page.runs.map(async (run) => {
      if (run.status !== 'running' && run.status !== 'waiting') return run;
      return ctx.getRun(run.runId).then(liveSummary, () => run);
    }),
  );
  return { ...page, runs };
}

const accepted = (runId: string): Reply => ({ status: 202, body: { runId } });
const done: Reply = { status: 200, body: { ok: true } };

/** The routes of the API, by method, under `/api`. */
export const routes = {
  flows: {
    GET: { action: 'read', handle: async ({ ctx }) => ({ status: 200, body: { flows: ctx.flows.map(flowInfo) } }) },
  },
  graph: {
    GET: {
      action: 'read',
      handle: async ({ ctx, query }) => ({ status: 200, body: graphOf(flowNamed(ctx, query.get('flow') ?? '')) }),
    },
  },
  runs: {
    GET: { action: 'read', handle: async ({ ctx, query }) => ({ status: 200, body: await listPage(ctx, listQuery(query)) }) },
    POST: {
      action: 'start',
      handle: async ({ ctx, body }) => {
        const { flow: name, input, ...options } = parseOptions(startSchema, await body(), 'POST /api/runs body');
        const flow = flowNamed(ctx, name);
        checkInput(flow, input);
        // Started here and answered at once: the run goes on; its events and result are read through the API.
        const handle = ctx.start(flow, input, options as Parameters<FlowContext['start']>[2]);
        return accepted(handle.runId);
      },
    },
  },
  run: {
    GET: { action: 'read', handle: async ({ ctx, runId }) => ({ status: 200, body: await ctx.getRun(runId!) }) },
  },
  input: {
    POST: {
      action: 'answer',
      handle: async ({ ctx, runId, body }) => {
        const { key, value } = parseOptions(inputSchema, await body(), 'POST input body');
        await ctx.submitInput(runId!, key, value);
        return done;
      },
    },
  },
  'human-in-loop': {
    POST: {
      action: 'control',
      handle: async ({ ctx, runId, body }) => {
        await ctx.setHumanInLoop(runId!, parseOptions(humanSchema, await body(), 'POST human-in-loop body').on);
        return done;
      },
    },
  },
  resume: {
    POST: {
      action: 'control',
      handle: async ({ ctx, runId, body }) => accepted((await ctx.resume(runId!, parseOptions(resumeSchema, (await body()) ?? {}, 'POST resume body'))).runId),
    },
  },
  retry: {
    POST: { action: 'control', handle: async ({ ctx, runId }) => accepted((await ctx.retry(runId!)).runId) },
  },
  skip: {
    POST: {
      action: 'control',
      handle: async ({ ctx, runId, body }) => {
        const { step, output } = parseOptions(skipSchema, await body(), 'POST skip body');
        await ctx.skip(runId!, step, output);
        return done;
      },
    },
  },
  cancel: {
    POST: {
      action: 'control',
      handle: async ({ ctx, runId, body }) => {
        await ctx.cancel(runId!, parseOptions(cancelSchema, (await body()) ?? {}, 'POST cancel body').reason);
        return done;
      },
    },
  },
} satisfies Record<string, Partial<Record<'GET' | 'POST', Route>>>;

/** The routes on a run, after `/api/runs/:id/`. */
export const RUN_ROUTES = ['input', 'human-in-loop', 'resume', 'retry', 'skip', 'cancel'] as const;

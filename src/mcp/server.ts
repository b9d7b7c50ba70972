/**
 * `weir/mcp`: a `FlowContext`'s runs as MCP tools for agents, on the official SDK: list flows,
 * start, read, list, follow, answer and control runs. Each tool's input is a zod schema; a refusal
 * is a tool error carrying the `FlowError` code. A thin adapter over the public API.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ErrorCode, FlowError } from '../errors/errors.js';
import { FlowContext, type RunOptions, type WeirEvent } from '../index.js';
import { checkInput, flowInfo, listQueryOf } from '../http/routes.js';
import { checkContextArgument } from '../util/context-argument.js';
import { parseOptions, type OptionsOf } from '../util/parse.js';

// The shape is a const of its own so its TSDoc reaches the published types.
const mcpServerShape = {
  /** The server's name, as clients see it. @default 'weir' */
  name: z.string().min(1).max(200).optional(),
  /** Its version. @default the package's */
  version: z.string().min(1).max(200).optional(),
};
const mcpServerSchema = z.strictObject(mcpServerShape);

/** Options of `createMcpServer`. */
export type McpServerOptions = OptionsOf<typeof mcpServerShape>;

const runId = z.string().min(1).max(200).describe('the run id');

/** The answer of a tool: its value as JSON text and as structured content. */
function ok(value: unknown): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(value, null, 2) }], structuredContent: { result: value as Record<string, unknown> } };
}

/** A refusal as a tool error: `CODE: message`, and the code and message as structured content. */
function refused(error: unknown): CallToolResult {
  const code = error instanceof FlowError ? error.code : ErrorCode.UNKNOWN;
  const message = error instanceof Error ? error.message : String(error);
  return { isError: true, content: [{ type: 'text', text: `${code}: ${message}` }], structuredContent: { error: { code, message } } };
}

/** Runs a tool's work; a throw becomes a tool error. */
async function tool(work: () => Promise<unknown>): Promise<CallToolResult> {
  try {
    return ok(await work());
  } catch (error) {
    return refused(error);
  }
}

/**
 * The events of a run after `after`, as far as it has them now (at most `limit`), without waiting
 * for more.
 */
async function eventsNow(ctx: FlowContext, id: string, after: number, limit: number): Promise<WeirEvent[]> {
  const { lastSeq } = await ctx.getRun(id);
  const events: WeirEvent[] = [];
  if (lastSeq <= after) return events;
  const controller = new AbortController();
  try {
    for await (const event of ctx.events(id, { after, signal: controller.signal })) {
      events.push(event);
      if (event.seq >= lastSeq || events.length >= limit) break;
    }
  } finally {
    controller.abort();
  }
  return events;
}

/**
 * Makes an MCP server whose tools drive `ctx`: `list_flows`, `start_run`, `get_run`, `list_runs`,
 * `run_events`, `submit_input`, `resume_run`, `retry_run`, `skip_step`, `cancel_run`. Connect it
 * to a transport (`serveMcpStdio` does stdio).
 * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad option, or a `ctx` that is not a FlowContext;
 * FlowError `WEIR_CONTEXT_CLOSED` for a context that is closing or closed.
 */
export function createMcpServer(ctx: FlowContext, given: McpServerOptions = {}): McpServer {
  checkContextArgument(ctx, FlowContext, 'createMcpServer()');
  const options = parseOptions(mcpServerSchema, given, 'createMcpServer() options');
  const server = new McpServer({ name: options.name ?? 'weir', version: options.version ?? '0.1.0' });

  server.registerTool(
    'list_flows',
    { description: 'The flows that can be started, each with the JSON Schema of the input it takes.', inputSchema: {} },
    async () => tool(async () => ({ flows: ctx.flows.map(flowInfo) })),
  );
  server.registerTool(
    'start_run',
    {
      description: 'Starts a run of a flow with an input (checked against its schema) and answers its run id at once. The same runId again is the same run.',
      inputSchema: {
        flow: z.string().min(1).describe('the name of a flow from list_flows'),
        input: z.unknown().optional().describe("the run's input, as the flow's input schema says"),
        runId: runId.optional().describe('your own id for the run, to make the start idempotent'),
        mode: z.enum(['batch', 'interactive', 'hybrid']).optional().describe('how the run treats a step that asks a person: batch (it takes the default or fails), interactive (it waits), hybrid'),
      },
    },
    async ({ flow: name, input, runId: id, mode }) =>
      tool(async () => {
        const flow = ctx.getFlow(name);
        if (flow === undefined) throw new FlowError(`no flow named "${name}" is registered (list_flows lists them)`, { code: ErrorCode.FLOW_NOT_REGISTERED });
        checkInput(flow, input);
        const options: RunOptions = { ...(id === undefined ? {} : { runId: id }), ...(mode === undefined ? {} : { mode }) };
        return { runId: ctx.start(flow, input, options).runId };
      }),
  );
  server.registerTool(
    'get_run',
    { description: 'A run: its status, progress, steps (status, attempts, errors) and what it waits for.', inputSchema: { runId } },
    async ({ runId: id }) => tool(() => ctx.getRun(id)),
  );
  server.registerTool(
    'list_runs',
    {
      description: 'Runs, newest first, a page at a time; pass the answer\'s "next" as "before" for the next page.',
      inputSchema: {
        status: z.enum(['pending', 'running', 'waiting', 'completed', 'failed', 'cancelled']).optional(),
        flow: z.string().min(1).optional(),
        limit: z.number().int().min(1).max(1000).optional(),
        before: z.string().min(1).optional(),
        stranded: z.boolean().optional().describe('only the runs no live context can take: no live worker has their flow at their version'),
      },
    },
    async (query) => tool(() => ctx.listRuns(listQueryOf(query))),
  );
  server.registerTool(
    'run_events',
    {
      description: "A run's events after a seq (0: from the start), as far as it has them now; call again with the last seq to follow it.",
      inputSchema: { runId, after: z.number().int().min(0).optional(), limit: z.number().int().min(1).max(1000).optional() },
    },
    async ({ runId: id, after, limit }) => tool(async () => ({ events: await eventsNow(ctx, id, after ?? 0, limit ?? 200) })),
  );
  server.registerTool(
    'submit_input',
    { description: 'Answers what a run waits for (see get_run\'s waitingFor): the value must pass the ask\'s schema.', inputSchema: { runId, key: z.string().min(1), value: z.unknown() } },
    async ({ runId: id, key, value }) =>
      tool(async () => {
        await ctx.submitInput(id, key, value);
        return { ok: true };
      }),
  );
  server.registerTool(
    'resume_run',
    { description: 'Goes on with a failed or cancelled run; with "from", runs that step and what follows it again.', inputSchema: { runId, from: z.string().min(1).optional() } },
    async ({ runId: id, from }) => tool(async () => ({ runId: (await ctx.resume(id, from === undefined ? {} : { from })).runId })),
  );
  server.registerTool(
    'retry_run',
    { description: 'Runs a failed or cancelled run again from the start, as a new run.', inputSchema: { runId } },
    async ({ runId: id }) => tool(async () => ({ runId: (await ctx.retry(id)).runId })),
  );
  server.registerTool(
    'skip_step',
    { description: 'Marks a step of a run done without running it, with an output.', inputSchema: { runId, step: z.string().min(1), output: z.unknown().optional() } },
    async ({ runId: id, step, output }) =>
      tool(async () => {
        await ctx.skip(id, step, output);
        return { ok: true };
      }),
  );
  server.registerTool(
    'cancel_run',
    { description: 'Cancels a run.', inputSchema: { runId, reason: z.string().max(1000).optional() } },
    async ({ runId: id, reason }) =>
      tool(async () => {
        await ctx.cancel(id, reason);
        return { ok: true };
      }),
  );
  return server;
}

/** Serves `createMcpServer(ctx)` over stdin and stdout until stdin closes; then resolves. Rejects as `createMcpServer` throws. */
export async function serveMcpStdio(ctx: FlowContext, options: McpServerOptions = {}): Promise<void> {
  const server = createMcpServer(ctx, options);
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => (transport.onclose = resolve));
  await server.connect(transport);
  process.stdin.once('end', () => void server.close());
  await closed;
}

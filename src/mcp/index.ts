/** `weir/mcp`: a FlowContext's runs as MCP tools for agents (see docs/mcp.md). */
export { createMcpServer, serveMcpStdio } from './server.js';
export type { McpServerOptions } from './server.js';

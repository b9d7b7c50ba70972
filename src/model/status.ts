/** The states of a run and of each step in it. */
export const FlowStatus = {
  PENDING: 'pending',
  RUNNING: 'running',
  WAITING: 'waiting',
  COMPLETED: 'completed',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  SKIPPED: 'skipped',
} as const;
/** `pending | running | waiting | completed | failed | cancelled | skipped`. */
export type FlowStatus = (typeof FlowStatus)[keyof typeof FlowStatus];

/** Where a flow runs: leaves are `inline`, `thread` or `process`; composites `parallel` or `sequential`. */
export const FlowType = {
  INLINE: 'inline',
  THREAD: 'thread',
  PROCESS: 'process',
  PARALLEL: 'parallel',
  SEQUENTIAL: 'sequential',
} as const;
/** `inline | thread | process | parallel | sequential`. */
export type FlowType = (typeof FlowType)[keyof typeof FlowType];

/**
 * How a run treats `step.waitForInput`: `batch` never waits for a person (the ask's default, or
 * the step fails), `interactive` waits, `hybrid` waits while a person is in the loop
 * (`ctx.setHumanInLoop`).
 */
export const RunMode = {
  BATCH: 'batch',
  INTERACTIVE: 'interactive',
  HYBRID: 'hybrid',
} as const;
/** The run's mode. */
export type RunMode = (typeof RunMode)[keyof typeof RunMode];


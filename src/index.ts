/** weir's public surface: named exports, and the one wiring of the model to the runtime (`flow.execute`). */
export { Processor } from './model/processor.js';
export type { AnySchema, Step, StepDeps, WaitForInputOptions, ProcessorInput, ProcessorOutput } from './model/processor.js';
export { Flow } from './model/flow.js';
export type { AnyFlow, FlowConfig, CompositeConfig, LeafType, RegisterOptions, DependencyRef } from './model/flow.js';
export type { MermaidOptions } from './model/mermaid.js';
export { FlowContext } from './context/flow-context.js';
export type { ContextState } from './context/flow-context.js';
export type { ContextHealth } from './context/health.js';
export type { FlowContextOptions } from './context/options.js';
export { transfer } from './executors/transfer.js';
export type { ThreadPoolOptions, ProcessPoolOptions, ThreadResourceLimits } from './executors/pool-options.js';
export { ResultsManager } from './results/results-manager.js';
export type { SqliteResultsOptions, MemoryResultsOptions, PostgresResultsOptions, CleanupOptions, ResultsKind } from './results/results-manager.js';
export { FlowStatus, FlowType, RunMode } from './model/status.js';
export type { FlowResult, StepResult, AttemptRecord } from './model/result.js';
export type { RunOptions, EnqueueOptions, ResumeOptions, ListRunsOptions, PruneRunsOptions } from './model/run-options.js';
export type { RunInfo, RunSummary, RunList, StepInfo } from './durability/history.js';
export type { StepProgress, InputWait, WaitInfo } from './model/waits.js';
export type { RunHandle, EventsOptions } from './run/handle.js';
export type { RetryOption, RetryPolicyInput, RetryPredicate } from './model/retry-policy.js';
export {
  ErrorCode,
  WarningCode,
  FlowError,
  FatalError,
  RetryableError,
  InputRequiredError,
  TimeoutError,
  CancelledError,
  CycleError,
  DependencyError,
  ValidationError,
  UpstreamFailedError,
} from './errors/errors.js';
export type { FlowErrorOptions, ValidationIssue } from './errors/errors.js';
export { toErrorData, fromErrorData, registerErrorClass } from './errors/error-data.js';
export type { ErrorData } from './errors/error-data.js';
export type {
  EventBase,
  RunStartEvent,
  StepStartEvent,
  StepProgressEvent,
  StepHeartbeatEvent,
  StepRetryEvent,
  StepCompleteEvent,
  StepFailedEvent,
  StepSkippedEvent,
  StepCancelledEvent,
  InputRequiredEvent,
  InputReceivedEvent,
  RunWaitingEvent,
  RunResumedEvent,
  RunCompleteEvent,
  RunFailedEvent,
  RunCancelledEvent,
  WeirEvent,
  WeirEventType,
  WeirEventMap,
} from './model/events.js';

import { FlowContext as DefaultContext } from './context/flow-context.js';
import { setDefaultRunner } from './model/flow.js';
// `flow.execute(input)` runs on the default context: wired in the entry, so the model never imports the context.
setDefaultRunner((flow, input, options) => DefaultContext.getInstance().run(flow, input, options));

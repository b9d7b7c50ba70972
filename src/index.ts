export { Processor } from './processor.js';
export type { AnySchema, Step, StepDeps, WaitForInputOptions, ProcessorInput, ProcessorOutput } from './processor.js';
export { Flow } from './flow.js';
export type { AnyFlow, FlowConfig, CompositeConfig, LeafType, RegisterOptions, DependencyRef } from './flow.js';
export { FlowContext } from './context.js';
export type { FlowContextOptions, ContextState } from './context.js';
export { transfer } from './executors/transfer.js';
export type { ThreadPoolOptions, ProcessPoolOptions, ThreadResourceLimits } from './executors/pool-options.js';
export { ResultsManager } from './results/results-manager.js';
export type { SqliteResultsOptions, MemoryResultsOptions, CleanupOptions, ResultsKind } from './results/results-manager.js';
export { FlowStatus, FlowType, RunMode } from './status.js';
export type { FlowResult, StepResult, AttemptRecord } from './result.js';
export type { RunOptions, ResumeOptions, ListRunsOptions, PruneRunsOptions } from './run/run-options.js';
export type { RunInfo, RunSummary, RunList, StepInfo, WaitInfo } from './run/history.js';
export type { StepProgress, InputWait } from './store/run-store.js';
export type { RunHandle, EventsOptions } from './run/handle.js';
export type { RetryOption, RetryPolicyInput, RetryPredicate } from './run/retry.js';
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
} from './errors.js';
export type { FlowErrorOptions, ValidationIssue } from './errors.js';
export { toErrorData, fromErrorData, registerErrorClass } from './error-data.js';
export type { ErrorData } from './error-data.js';
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
} from './events.js';

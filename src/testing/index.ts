/**
 * `weir/testing`: unit-test flows in-process in milliseconds, on a virtual clock, with step
 * doubles, crashes and store faults. Depends on no test runner.
 */
export { createTestContext, TestContext } from './test-context.js';
export type { TestContextOptions, FailOptions, RestartOptions, RunStepOptions } from './test-context.js';
export type { RunSummaryForTest } from './expect-steps.js';
export type { StepRef } from './doubles.js';
export type { FailStoreOptions, StoreWrite } from './faulty-store.js';
export { StepExpectations } from './expect-steps.js';
export { TestStep } from './test-step.js';
export type { TestStepOptions, ProgressReport, InputAskRecord } from './test-step.js';
export type { Duration } from './durations.js';

/**
 * `weir/testing`: unit-test flows in-process in milliseconds, on a virtual clock, with step doubles.
 * Depends on no test runner.
 */
export { createTestContext, TestContext } from './test-context.js';
export type { TestContextOptions, StepRef, FailOptions } from './test-context.js';
export { VirtualClock } from './virtual-clock.js';
export type { Duration } from './durations.js';

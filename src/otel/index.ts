/** `weir/otel`: a FlowContext's runs as OpenTelemetry spans and metrics (see docs/observability.md). */
export { instrument } from './instrument.js';
export type { InstrumentOptions } from './instrument.js';

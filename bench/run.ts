/** `npm run bench`: every benchmark, each reporting ratios against a baseline measured in the same run. */
import { coldStartBench } from './cold-start.bench.js';
import { coreBench } from './core.bench.js';
import { durableBench } from './durable.bench.js';
import { executorsBench } from './executors.bench.js';
import { httpBench } from './http.bench.js';
import { memoryBench } from './memory.bench.js';
import { otelBench } from './otel.bench.js';
import { postgresBench } from './postgres.bench.js';
import { recoveryBench } from './recovery.bench.js';
import { storeBench } from './store.bench.js';
import { testingBench } from './testing.bench.js';
import { waitingBench } from './waiting.bench.js';
import { watchBench } from './watch.bench.js';

console.log(`weir benchmarks on Node ${process.version}, ${(await import('node:os')).availableParallelism()} cores`);
await coreBench();
await durableBench();
await memoryBench();
await executorsBench();
await storeBench();
await recoveryBench();
await coldStartBench();
await watchBench();
await waitingBench();
await testingBench();
await httpBench();
await otelBench();
await postgresBench();

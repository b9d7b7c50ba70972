/** This host and this process, as runs record them: a run's owner is provably gone only if it ran here. */
import { hostname } from 'node:os';

/** This host's name. */
export const HOST = hostname();
/** This process, as `host:pid` (`FlowResult.processId`). */
export const PROCESS_ID = `${HOST}:${process.pid}`;

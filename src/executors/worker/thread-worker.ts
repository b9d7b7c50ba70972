/**
 * The worker-thread entry Piscina loads: runs each task it is given, sends the step's progress,
 * heartbeats and dependency look-ups on `parentPort`, and hears aborts on the pool's broadcast channel.
 */
import { BroadcastChannel, parentPort, threadId, workerData } from 'node:worker_threads';
import { fromWire, type AbortTaskMessage, type DepsReplyMessage, type ResultMessage, type TaskWire } from '../protocol.js';
import { Piscina } from 'piscina';
import { markRunning } from '../running-table.js';
import { collectTransfers, takeTransfers } from '../transfer.js';
import { TaskRunner } from './task-runner.js';
import { toErrorData } from '../../errors/error-data.js';
import { CancelledError } from '../../errors/errors.js';
import { installSpinWait } from '../spin-wait.js';

const { channel: channelName, running, spinMicros, spinGate } = workerData as { channel: string; running: Int32Array; spinMicros: number; spinGate: Int32Array };
// Before Piscina parks this thread for the first time: it does so once this module has loaded.
installSpinWait(spinMicros, spinGate);
const port = parentPort!;
const runner = new TaskRunner((message) => port.postMessage(message));
const channel = new BroadcastChannel(channelName);
channel.unref();
channel.onmessage = (event) => {
  // Only aborts and replies come this way: tasks come through Piscina.
  runner.receive((event as { data: AbortTaskMessage | DepsReplyMessage }).data);
};

/** Piscina calls this for each task; buffers the step passed to `transfer()` are moved, not copied. */
export default function runTask(wire: TaskWire): ResultMessage | Promise<ResultMessage> {
  const task = fromWire(wire);
  // Aborted while it waited on this thread's port behind another task (see `pipeline.ts`): it never starts.
  if (!markRunning(running, task.id, threadId)) return notStarted(task.id);
  collectTransfers();
  const result = runner.run(task);
  // A synchronous answer goes back without a promise: Piscina awaits whatever this returns.
  return result instanceof Promise ? result.then(withTransfers) : withTransfers(result);
}

function withTransfers(result: ResultMessage): ResultMessage {
  const transfers = takeTransfers();
  if (transfers.length === 0 || !result.ok) return result;
  return Piscina.move({ [Piscina.transferableSymbol]: transfers, [Piscina.valueSymbol]: result } as never) as unknown as ResultMessage;
}

function notStarted(id: number): ResultMessage {
  return { type: 'result', id, ok: false, error: toErrorData(new CancelledError('the step was stopped before it started')) };
}

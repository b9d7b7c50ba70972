/**
 * The worker-thread entry Piscina loads: runs each task it is given, sends the step's progress,
 * heartbeats and dependency look-ups on `parentPort`, and hears aborts on the pool's broadcast channel.
 */
import { BroadcastChannel, parentPort, workerData } from 'node:worker_threads';
import type { ResultMessage, RunTaskMessage, ToWorker } from './protocol.js';
import { TaskRunner } from './worker-runner.js';

const port = parentPort!;
const runner = new TaskRunner((message) => port.postMessage(message));
const channel = new BroadcastChannel((workerData as { channel: string }).channel);
channel.unref();
channel.onmessage = (event) => {
  const message = (event as { data: ToWorker }).data;
  if (message.type !== 'run') runner.receive(message);
};

/** Piscina calls this for each task. */
export default function runTask(task: RunTaskMessage): Promise<ResultMessage> {
  return runner.run(task);
}

/**
 * The worker-thread entry Piscina loads: runs each task it is given, sends the step's progress,
 * heartbeats and dependency look-ups on `parentPort`, and hears aborts on the pool's broadcast channel.
 */
import { BroadcastChannel, parentPort, threadId, workerData } from 'node:worker_threads';
import type { ResultMessage, RunTaskMessage, ToWorker } from './protocol.js';
import { markRunning } from './running-table.js';
import { TaskRunner } from './worker-runner.js';

const { channel: channelName, running } = workerData as { channel: string; running: Int32Array };
const port = parentPort!;
const runner = new TaskRunner((message) => port.postMessage(message));
const channel = new BroadcastChannel(channelName);
channel.unref();
channel.onmessage = (event) => {
  const message = (event as { data: ToWorker }).data;
  if (message.type !== 'run') runner.receive(message);
};

/** Piscina calls this for each task. */
export default function runTask(task: RunTaskMessage): Promise<ResultMessage> {
  markRunning(running, task.id, threadId);
  return runner.run(task);
}

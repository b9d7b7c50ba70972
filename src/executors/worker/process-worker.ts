/**
 * The child-process entry of the process executor: takes tasks over IPC, one at a time, and reports
 * an exception that escapes a task before exiting, so the main thread can say what happened.
 */
import { toErrorData } from '../../errors/error-data.js';
import { fromWire, type AbortTaskMessage, type DepsReplyMessage, type FromWorker, type ResultMessage, type TaskWire, type ToWorker } from '../protocol.js';
import { TaskRunner } from './task-runner.js';
import { LoopSpin } from '../loop-spin.js';

const send = (message: FromWorker, done?: () => void): void => {
  if (process.connected) process.send!(message, undefined, undefined, done);
  else done?.();
};
const runner = new TaskRunner(send);
/** After an answer, checks for the next task for as long as the task said (`RunTaskMessage.spinMicros`). */
const spin = new LoopSpin();

process.on('message', (message: ToWorker) => {
  // A task is an array (`TaskWire`); aborts and replies are objects.
  if (!Array.isArray(message)) runner.receive(message as AbortTaskMessage | DepsReplyMessage);
  else {
    spin.stop();
    const task = fromWire(message as TaskWire);
    const result = runner.run(task);
    if (result instanceof Promise) void result.then((answer) => answered(answer, task.spinMicros));
    else answered(result, task.spinMicros);
  }
});

function answered(result: ResultMessage, spinMicros: number | undefined): void {
  send(result);
  if (spinMicros !== undefined) spin.extend(spinMicros);
}
process.on('uncaughtException', (error) => {
  process.exitCode = 70;
  send({ type: 'crash', error: toErrorData(error) }, () => process.exit(70));
});
// The parent went away: nothing more will come.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });

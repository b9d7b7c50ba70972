// Records the packages this process loads from the moment it is imported: every ES module URL
// resolved, through a resolve hook, and every file `require` resolves. Import it before what it watches.
import Module, { register } from 'node:module';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';

const seen = new Set<string>();
const { port1, port2 } = new MessageChannel();
port1.unref();
register('./record-loads-hook.ts', import.meta.url, { data: { port: port2 }, transferList: [port2] });

const cjs = Module as unknown as { _resolveFilename: (...args: unknown[]) => string };
const resolveFilename = cjs._resolveFilename;
cjs._resolveFilename = function (this: unknown, ...args: unknown[]): string {
  const file = resolveFilename.apply(this, args);
  seen.add(file);
  return file;
};

/** The names of the packages under node_modules loaded so far, sorted. */
export function loadedPackages(): string[] {
  // The hook runs on the loader thread: take what it has posted so far, synchronously.
  for (let message = receiveMessageOnPort(port1); message !== undefined; message = receiveMessageOnPort(port1)) seen.add(message.message as string);
  const names = new Set<string>();
  for (const where of seen) {
    const match = /node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)/.exec(where);
    if (match !== null) names.add(match[1]!.replace('\\', '/'));
  }
  return [...names].sort();
}

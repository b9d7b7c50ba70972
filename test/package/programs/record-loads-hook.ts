// The resolve hook of record-loads.ts, on the loader thread: posts every resolved URL to the main thread.
import type { MessagePort } from 'node:worker_threads';

interface Resolved {
  readonly url: string;
}

let port: MessagePort | undefined;

export function initialize(data: { port: MessagePort }): void {
  port = data.port;
}

export async function resolve(specifier: string, context: unknown, next: (specifier: string, context: unknown) => Promise<Resolved>): Promise<Resolved> {
  const resolved = await next(specifier, context);
  port?.postMessage(resolved.url);
  return resolved;
}

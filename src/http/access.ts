/** Who may do what: the `authorize` hook before every action, or else loopback clients only. */
import type { IncomingMessage } from 'node:http';
import { ErrorCode } from '../errors/errors.js';
import { HttpError } from './errors.js';

/** What a request asks to do: start a run, read runs and events, answer a wait, or control a run (resume, retry, skip, cancel, human in the loop). */
export type HttpAction = 'start' | 'read' | 'answer' | 'control';

/**
 * Decides whether a request may do `action` (on run `runId`, where there is one): `true` lets it,
 * `false` refuses with 403, `401` refuses with 401 (not authenticated).
 */
export type Authorize = (req: IncomingMessage, action: HttpAction, runId: string | undefined) => boolean | 401 | 403 | Promise<boolean | 401 | 403>;

/** Whether the request comes from this host. */
export function isLoopback(req: IncomingMessage): boolean {
  const address = req.socket.remoteAddress ?? '';
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/**
 * Lets the request do `action`, or throws the refusal.
 * @throws HttpError 401 `WEIR_UNAUTHORIZED` or 403 `WEIR_FORBIDDEN`.
 */
export async function authorize(req: IncomingMessage, action: HttpAction, runId: string | undefined, hook: Authorize | undefined, allowRemote: boolean): Promise<void> {
  if (hook === undefined) {
    if (allowRemote || isLoopback(req)) return;
    throw new HttpError(403, ErrorCode.FORBIDDEN, 'only clients on this host are served (give the handler an authorize hook, or allowRemote: true)');
  }
  const verdict = await hook(req, action, runId);
  if (verdict === true) return;
  if (verdict === 401) throw new HttpError(401, ErrorCode.UNAUTHORIZED, `not authenticated to ${action}`);
  throw new HttpError(403, ErrorCode.FORBIDDEN, `not allowed to ${action}${runId === undefined ? '' : ` run "${runId}"`}`);
}

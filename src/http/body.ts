/** Reading a request's JSON body, refused before it is parsed when it is too large or not JSON. */
import type { IncomingMessage } from 'node:http';
import { ErrorCode, ValidationError } from '../errors/errors.js';
import { HttpError } from './errors.js';

/**
 * The request's body parsed as JSON; `undefined` for an empty body.
 * @throws HttpError 413 `WEIR_BODY_TOO_LARGE` past `limit` bytes (by `content-length`, or as it streams in);
 * 415 `WEIR_UNSUPPORTED_MEDIA_TYPE` for a body that is not `application/json`.
 * @throws ValidationError `WEIR_VALIDATION` for a body that is not valid JSON.
 */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      // Refused now; the rest is read and dropped, so the refusal reaches the client before the connection closes.
      req.off('data', onData).off('end', onEnd);
      req.resume();
      reject(tooLarge(limit));
    };
    const onEnd = (): void => resolve(Buffer.concat(chunks));
    req.on('data', onData).once('end', onEnd).once('error', reject);
  });
  const size = body.length;
  if (size === 0) return undefined;
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
    throw new HttpError(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, `the body must be JSON (content-type: application/json), got ${type === '' ? 'no content-type' : JSON.stringify(type)}`);
  }
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (error) {
    throw new ValidationError(`the body is not valid JSON: ${(error as Error).message}`, { code: ErrorCode.VALIDATION });
  }
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, ErrorCode.BODY_TOO_LARGE, `the body is larger than ${limit} bytes`, { connection: 'close' });
}

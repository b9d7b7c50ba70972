/**
 * Refusals as HTTP: a status for each `FlowError` code, and a JSON body `{ error: { code, message,
 * issues? } }` with no stack and no file path.
 */
import type { ServerResponse } from 'node:http';
import { ErrorCode, FlowError, ValidationError, type ValidationIssue } from '../errors/errors.js';

/** The status of a refusal with this code. */
const STATUS: Readonly<Record<string, number>> = {
  [ErrorCode.VALIDATION]: 400,
  [ErrorCode.INVALID_OPTIONS]: 400,
  [ErrorCode.INVALID_CONFIG]: 400,
  [ErrorCode.RUN_NOT_FOUND]: 404,
  [ErrorCode.FLOW_NOT_REGISTERED]: 404,
  [ErrorCode.RUN_STATE]: 409,
  [ErrorCode.RUN_CONFLICT]: 409,
  [ErrorCode.INPUT_NOT_AWAITED]: 409,
  [ErrorCode.INPUT_ANSWERED]: 409,
  [ErrorCode.LEASE_LOST]: 409,
  [ErrorCode.FLOW_CHANGED]: 409,
  [ErrorCode.RECOVERY_LIMIT]: 409,
  [ErrorCode.CONTEXT_CLOSED]: 503,
  [ErrorCode.STORE]: 503,
  [ErrorCode.STORE_CLOSED]: 503,
};

/** A refusal with its HTTP status. */
export class HttpError extends FlowError {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, code: string, message: string, headers: Readonly<Record<string, string>> = {}) {
    super(message, { code });
    this.name = 'HttpError';
    this.status = status;
    this.headers = headers;
  }
}

/** What an error answers: its status, and a body with its code and message (and issues, for a validation). */
export function refusalOf(error: unknown): { status: number; headers: Readonly<Record<string, string>>; body: { error: { code: string; message: string; issues?: readonly ValidationIssue[] } } } {
  if (error instanceof HttpError) return { status: error.status, headers: error.headers, body: { error: { code: error.code, message: error.message } } };
  if (error instanceof FlowError) {
    const status = STATUS[error.code] ?? 500;
    // A server-side failure says what failed, not where: a store's message names its file.
    const message = status >= 500 ? serverMessage(error.code) : error.message;
    const issues = error instanceof ValidationError && status < 500 ? error.issues : undefined;
    return { status, headers: {}, body: { error: { code: error.code, message, ...(issues === undefined ? {} : { issues }) } } };
  }
  return { status: 500, headers: {}, body: { error: { code: ErrorCode.UNKNOWN, message: 'internal error' } } };
}

function serverMessage(code: string): string {
  switch (code) {
    case ErrorCode.CONTEXT_CLOSED:
      return 'the FlowContext is closed';
    case ErrorCode.STORE:
    case ErrorCode.STORE_CLOSED:
      return 'the run store failed; try again';
    default:
      return 'internal error';
  }
}

/** Sends a JSON body with `status`. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

/** Sends the refusal that `error` makes. */
export function sendError(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { status, headers, body } = refusalOf(error);
  sendJson(res, status, body, headers);
}

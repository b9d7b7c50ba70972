/**
 * `transfer()`: lets a step's output move buffers out of a worker thread instead of copying them.
 * The list lives on `globalThis` under a `Symbol.for` key, so it works whichever copy of weir the
 * processor's module imported.
 */

import { MessagePort, type TransferListItem } from 'node:worker_threads';
import { describeValue, invalidOptions } from '../util/parse.js';

const KEY = Symbol.for('weir.executors.transfers');
type Holder = { [KEY]?: TransferListItem[] | undefined };

/**
 * Marks `value` (an `ArrayBuffer`, a typed array's buffer, a `MessagePort`), or the items of
 * `transferList`, to be moved rather than copied when this step's output leaves a worker thread.
 * After the step returns, the worker can no longer use them. A no-op inline and in a child process,
 * where values are always copied (but checked everywhere). Returns `value`.
 * @throws ValidationError `WEIR_INVALID_OPTIONS` when, without `transferList`, `value` is not a typed
 * array, an `ArrayBuffer` or a `MessagePort`, or when `transferList` is not an array of transferables.
 *
 * @example
 * const pixels = new Uint8Array(width * height);
 * return { pixels: transfer(pixels) };
 */
export function transfer<T>(value: T, transferList?: readonly TransferListItem[]): T {
  // Checked everywhere, so a mistake shows inline and in tests, not only on a thread.
  checkTransfer(value, transferList);
  const list = (globalThis as Holder)[KEY];
  if (list === undefined) return value;
  if (transferList !== undefined) list.push(...transferList);
  else if (ArrayBuffer.isView(value)) list.push(value.buffer as ArrayBuffer);
  else if (value instanceof ArrayBuffer || value instanceof MessagePort) list.push(value as TransferListItem);
  return value;
}

const TRANSFERABLE = 'an ArrayBuffer, a MessagePort, a FileHandle, a web stream or an AbortSignal';

/** @throws ValidationError `WEIR_INVALID_OPTIONS` for what cannot be moved: a value without a list, or a list item. */
function checkTransfer(value: unknown, transferList: unknown): void {
  if (transferList === undefined) {
    if (value instanceof ArrayBuffer || value instanceof MessagePort || (ArrayBuffer.isView(value) && value.buffer instanceof ArrayBuffer)) return;
    const got = ArrayBuffer.isView(value) ? `${describeValue(value)} over a SharedArrayBuffer` : describeValue(value);
    throw invalidOptions('transfer()', [{ path: ['value'], expected: 'a typed array, an ArrayBuffer or a MessagePort, or a transferList saying what to move', got }]);
  }
  if (!Array.isArray(transferList)) {
    throw invalidOptions('transfer()', [{ path: ['transferList'], expected: `an array of transferables (${TRANSFERABLE})`, got: describeValue(transferList) }]);
  }
  const problems = transferList.flatMap((item: unknown, i) =>
    isTransferable(item) ? [] : [{ path: ['transferList', i], expected: `${TRANSFERABLE}${ArrayBuffer.isView(item) ? ' (for a typed array, its .buffer)' : ''}`, got: describeValue(item) }],
  );
  if (problems.length > 0) throw invalidOptions('transfer()', problems);
}

function isTransferable(item: unknown): boolean {
  if (item instanceof ArrayBuffer || item instanceof MessagePort || item instanceof AbortSignal) return true;
  if (item instanceof ReadableStream || item instanceof WritableStream || item instanceof TransformStream) return true;
  // fs/promises exports no FileHandle class to test against.
  return typeof item === 'object' && item !== null && (item as { constructor?: { name?: unknown } }).constructor?.name === 'FileHandle';
}

/** Worker side: starts collecting transfers for the task about to run. */
export function collectTransfers(): void {
  (globalThis as Holder)[KEY] = [];
}

/** Worker side: the transfers the task asked for, without duplicates; collection stops. */
export function takeTransfers(): TransferListItem[] {
  const list = (globalThis as Holder)[KEY];
  (globalThis as Holder)[KEY] = undefined;
  return list === undefined || list.length === 0 ? [] : [...new Set(list)];
}

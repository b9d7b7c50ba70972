/**
 * `transfer()`: lets a step's output move buffers out of a worker thread instead of copying them.
 * The list lives on `globalThis` under a `Symbol.for` key, so it works whichever copy of weir the
 * processor's module imported.
 */

import { MessagePort, type TransferListItem } from 'node:worker_threads';

const KEY = Symbol.for('weir.executors.transfers');
type Holder = { [KEY]?: TransferListItem[] | undefined };

/**
 * Marks `value` (an `ArrayBuffer`, a typed array's buffer, a `MessagePort`), or the items of
 * `transferList`, to be moved rather than copied when this step's output leaves a worker thread.
 * After the step returns, the worker can no longer use them. A no-op inline and in a child process,
 * where values are always copied. Returns `value`.
 *
 * @example
 * const pixels = new Uint8Array(width * height);
 * return { pixels: transfer(pixels) };
 */
export function transfer<T>(value: T, transferList?: readonly TransferListItem[]): T {
  const list = (globalThis as Holder)[KEY];
  if (list === undefined) return value;
  if (transferList !== undefined) list.push(...transferList);
  else if (ArrayBuffer.isView(value)) list.push(value.buffer as ArrayBuffer);
  else if (value instanceof ArrayBuffer || value instanceof MessagePort) list.push(value as TransferListItem);
  return value;
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

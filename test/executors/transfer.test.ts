import { MessageChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext, transfer, ValidationError } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';

let ctx: FlowContext | undefined;
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

describe('transfer()', () => {
  it('takes a typed array, an ArrayBuffer or a MessagePort, or any value with a list of transferables, and returns the value', () => {
    const bytes = new Uint8Array(4);
    expect(transfer(bytes)).toBe(bytes);
    expect(transfer(bytes.buffer)).toBe(bytes.buffer);
    const { port1, port2 } = new MessageChannel();
    expect(transfer(port1)).toBe(port1);
    const output = { bytes, port: port2 };
    expect(transfer(output, [bytes.buffer, port2])).toBe(output);
    port1.close();
    port2.close();
  });

  it.each([
    [() => transfer(5), 'transfer(): value: expected a typed array, an ArrayBuffer or a MessagePort, or a transferList saying what to move, got 5'],
    [() => transfer({ bytes: new Uint8Array(1) }), 'transfer(): value: expected a typed array, an ArrayBuffer or a MessagePort, or a transferList saying what to move, got an object'],
    [
      () => transfer(new Uint8Array(new SharedArrayBuffer(4))),
      'transfer(): value: expected a typed array, an ArrayBuffer or a MessagePort, or a transferList saying what to move, got a Uint8Array over a SharedArrayBuffer',
    ],
    [() => transfer({}, 'all' as never), 'transfer(): transferList: expected an array of transferables (an ArrayBuffer, a MessagePort, a FileHandle, a web stream or an AbortSignal), got "all"'],
    [
      () => transfer({}, [new ArrayBuffer(1), new Uint8Array(1) as never, 5 as never]),
      'transfer(): transferList[1]: expected an ArrayBuffer, a MessagePort, a FileHandle, a web stream or an AbortSignal (for a typed array, its .buffer), got a Uint8Array; transferList[2]: expected an ArrayBuffer, a MessagePort, a FileHandle, a web stream or an AbortSignal, got 5',
    ],
  ])('refuses what cannot be moved with WEIR_INVALID_OPTIONS, saying what (%#)', (call, message) => {
    expect(call).toThrow(ValidationError);
    expect(call).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_OPTIONS, message }));
  });

  it('fails an inline step that misuses it, as it would fail on a thread', async () => {
    ctx = new FlowContext();
    const result = await ctx.run(new Flow(new Fn(() => ({ n: transfer(5) })), { name: 'moves' }), {});
    expect(result).toMatchObject({ status: 'failed', error: { name: 'ValidationError', code: ErrorCode.INVALID_OPTIONS, message: expect.stringContaining('transfer(): value') } });
  });
});

import { describe, expect, it } from 'vitest';
import { FatalError, FlowError, fromErrorData, RetryableError, registerErrorClass, toErrorData } from '../../src/index.js';

class QuotaExceeded extends FatalError {
  constructor(message: string, options: { cause?: unknown; code?: string } = {}) {
    super(message, { ...options, code: options.code ?? 'QUOTA' });
    this.name = 'QuotaExceeded';
  }
}
registerErrorClass(QuotaExceeded);

class NotRegistered extends RetryableError {
  constructor(message: string) {
    super(message, { code: 'NOT_REGISTERED' });
    this.name = 'NotRegistered';
  }
}

class Stubborn extends FlowError {
  override readonly retryable = true;
  constructor(message: string) {
    super(message, { code: 'STUBBORN' });
    this.name = 'Stubborn';
  }
}

describe('error data across a boundary', () => {
  it('keeps the recorded code of a registered user class', () => {
    const rebuilt = fromErrorData(toErrorData(new QuotaExceeded('over quota', { code: 'QUOTA_DAILY' })));
    expect(rebuilt).toBeInstanceOf(QuotaExceeded);
    expect(rebuilt).toMatchObject({ name: 'QuotaExceeded', message: 'over quota', code: 'QUOTA_DAILY', retryable: false });
  });

  it('rebuilds an unregistered subclass of a weir class as that class, keeping its name, code and retryable flag', () => {
    const rebuilt = fromErrorData(toErrorData(new NotRegistered('try later')));
    expect(rebuilt).toBeInstanceOf(RetryableError);
    expect(rebuilt).toMatchObject({ name: 'NotRegistered', code: 'NOT_REGISTERED', retryable: true });
    const stubborn = fromErrorData(toErrorData(new Stubborn('again')));
    expect(stubborn).toBeInstanceOf(FlowError);
    expect(stubborn).toMatchObject({ name: 'Stubborn', code: 'STUBBORN', retryable: true });
  });

  it("rebuilds JavaScript's own error classes as themselves, so retryOn sees the same class", () => {
    const rebuilt = fromErrorData(toErrorData(new TypeError('x is not a function')));
    expect(rebuilt).toBeInstanceOf(TypeError);
    expect(rebuilt.message).toBe('x is not a function');
  });

  it('keeps the cause chain and the stack', () => {
    const original = new QuotaExceeded('outer', { cause: new Error('middle', { cause: new RangeError('inner') }) });
    const rebuilt = fromErrorData(toErrorData(original));
    expect(rebuilt.stack).toBe(original.stack);
    const middle = rebuilt.cause as Error;
    expect(middle.message).toBe('middle');
    expect(middle.cause).toBeInstanceOf(RangeError);
  });
});

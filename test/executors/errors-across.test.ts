import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext, registerErrorClass } from '../../src/index.js';
import { BadOutput, PaymentDeclined, Throw } from '../fixtures/remote.js';

registerErrorClass(PaymentDeclined);

let ctx: FlowContext;
afterEach(() => ctx.close());

describe.each(['thread', 'process'] as const)('errors thrown on a %s', (type) => {
  const run = (kind: string, failUntil = Infinity) =>
    ctx.run(new Flow(Object.assign(new Throw(), { kind, failUntil }), { name: 'step', type, retry: { maxAttempts: 3, initialInterval: 0 } }), null);

  it('arrive as the same class with message, code and stack, and are retried as inline', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const fatal = await run('fatal');
    expect(fatal.attempts).toHaveLength(1);
    expect(fatal.error).toMatchObject({ name: 'FatalError', message: 'bad credentials', code: 'AUTH', retryable: false, step: 'step' });
    expect(fatal.error?.stack).toContain('fixtures/remote.ts');

    const retried = await run('retryable', 2);
    expect(retried.status).toBe('completed');
    expect(retried.output).toEqual({ ok: 3 });
    expect(retried.steps.step?.attempts.map((a) => a.error?.name)).toEqual(['RetryableError', 'RetryableError', undefined]);

    const typeError = await run('type');
    expect(typeError.attempts).toHaveLength(1);
    expect(typeError.error).toMatchObject({ name: 'TypeError', message: 'x is not a function' });

    const invalid = await ctx.run(new Flow(new BadOutput(), { name: 'bad', type, retry: 2 }), null);
    expect(invalid.attempts).toHaveLength(1);
    expect(invalid.error).toMatchObject({ name: 'ValidationError', code: ErrorCode.VALIDATION });
  });

  it('keep a registered user class, its code and its cause chain; an unregistered one keeps its name and retry flag', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const user = await run('user');
    expect(user.attempts).toHaveLength(1);
    expect(user.error).toMatchObject({
      name: 'PaymentDeclined',
      code: 'PAYMENT_DECLINED',
      retryable: false,
      cause: { name: 'Error', message: 'issuer said no', cause: { name: 'TypeError', message: 'deep' } },
    });
    const flaky = await run('flaky', 1);
    expect(flaky.output).toEqual({ ok: 2 });
    expect(flaky.steps.step?.attempts[0]?.error).toMatchObject({ name: 'Flaky', code: 'FLAKY', retryable: true });
  });
});

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CancelledError,
  CycleError,
  DependencyError,
  ErrorCode,
  FatalError,
  FlowError,
  InputRequiredError,
  RetryableError,
  TimeoutError,
  UpstreamFailedError,
  ValidationError,
  WarningCode,
  Flow,
  FlowContext,
  fromErrorData,
  registerErrorClass,
  toErrorData,
} from '../../src/index.js';
import { AddOne } from '../fixtures/processors.js';

describe('the FlowError hierarchy', () => {
  it('gives every class a name, a default code and the retryable flag of DESIGN.md', () => {
    const cases: [FlowError, string, string, boolean][] = [
      [new FatalError('x'), 'FatalError', 'WEIR_FATAL', false],
      [new RetryableError('x'), 'RetryableError', 'WEIR_RETRYABLE', true],
      [new InputRequiredError('x'), 'InputRequiredError', 'WEIR_INPUT_REQUIRED', false],
      [new TimeoutError('x'), 'TimeoutError', 'WEIR_TIMEOUT', true],
      [new CancelledError('x'), 'CancelledError', 'WEIR_CANCELLED', false],
      [new CycleError('x', { cycle: ['a', 'b', 'a'] }), 'CycleError', 'WEIR_CYCLE', false],
      [new DependencyError('x'), 'DependencyError', 'WEIR_DEPENDENCY', false],
      [new ValidationError('x'), 'ValidationError', 'WEIR_VALIDATION', false],
      [new UpstreamFailedError('x'), 'UpstreamFailedError', 'WEIR_UPSTREAM_FAILED', false],
    ];
    for (const [error, name, code, retryable] of cases) {
      expect(error).toBeInstanceOf(FlowError);
      expect(error).toBeInstanceOf(Error);
      expect([error.name, error.code, error.retryable]).toEqual([name, code, retryable]);
    }
    expect(new FatalError('x')).not.toBeInstanceOf(RetryableError);
  });

  it('takes a code and a native cause', () => {
    const cause = new Error('socket closed');
    const error = new RetryableError('upstream down', { cause, code: 'E_UPSTREAM' });
    expect(error.code).toBe('E_UPSTREAM');
    expect(error.cause).toBe(cause);
  });

  it('holds instanceof across two copies of the package', async () => {
    const secondCopy: string = '../../src/errors/errors.js?second-copy';
    const copy = (await import(secondCopy)) as typeof import('../../src/errors/errors.js');
    expect(copy.FatalError).not.toBe(FatalError);
    const foreign = new copy.FatalError('from the other copy');
    expect(foreign).toBeInstanceOf(FatalError);
    expect(foreign).toBeInstanceOf(FlowError);
    expect(foreign).not.toBeInstanceOf(RetryableError);
    expect(new TimeoutError('x')).toBeInstanceOf(copy.TimeoutError);
    expect(new Error('plain')).not.toBeInstanceOf(copy.FlowError);
  });

  it('keeps instanceof for user subclasses', () => {
    class RateLimited extends RetryableError {}
    const error = new RateLimited('slow down');
    expect(error).toBeInstanceOf(RateLimited);
    expect(error).toBeInstanceOf(RetryableError);
    expect(new RetryableError('x')).not.toBeInstanceOf(RateLimited);
  });
});

describe('errors as data', () => {
  it('round-trips a FlowError with its class, code, stack, details and a cause chain', () => {
    const root = new TypeError('bad');
    const error = new CycleError('a -> b -> a', { cycle: ['a', 'b', 'a'], cause: new RetryableError('mid', { cause: root }) });
    const data = toErrorData(error);
    expect(JSON.parse(JSON.stringify(data))).toEqual(data);
    expect(data).toMatchObject({ name: 'CycleError', code: 'WEIR_CYCLE', retryable: false, details: { cycle: ['a', 'b', 'a'] } });
    const back = fromErrorData(data);
    expect(back).toBeInstanceOf(CycleError);
    expect((back as CycleError).cycle).toEqual(['a', 'b', 'a']);
    expect(back.stack).toBe(error.stack);
    expect(back.cause).toBeInstanceOf(RetryableError);
    expect((back.cause as Error).cause).toMatchObject({ name: 'TypeError', message: 'bad' });
  });

  it('keeps ValidationError issues and plain error codes', () => {
    const data = toErrorData(new ValidationError('bad', { issues: [{ path: ['a'], message: 'required', code: 'invalid_type' }] }));
    expect((fromErrorData(data) as ValidationError).issues).toEqual([{ path: ['a'], message: 'required', code: 'invalid_type' }]);
    const sys = Object.assign(new Error('nope'), { code: 'ENOENT' });
    expect(toErrorData(sys)).toMatchObject({ code: 'ENOENT', retryable: false, name: 'Error' });
    expect((fromErrorData(toErrorData(sys)) as Error & { code: string }).code).toBe('ENOENT');
  });

  it('describes thrown values that are not errors', () => {
    expect(toErrorData('just a string')).toMatchObject({ message: 'just a string', code: ErrorCode.UNKNOWN });
    expect(toErrorData({ reason: 1 }).message).toBe('non-error value thrown: {"reason":1}');
  });

  it('bounds a cyclic cause chain', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    let depth = 0;
    for (let d: { cause?: unknown } | undefined = toErrorData(a); d !== undefined; d = d.cause as typeof d) depth++;
    expect(depth).toBe(6);
  });

  it('rebuilds registered user classes by name', () => {
    class QuotaError extends FatalError {
      constructor(message: string, options?: { cause?: unknown }) {
        super(message, { ...options, code: 'E_QUOTA' });
        this.name = 'QuotaError';
      }
    }
    registerErrorClass(QuotaError);
    const back = fromErrorData(toErrorData(new QuotaError('over quota')));
    expect(back).toBeInstanceOf(QuotaError);
    expect((back as QuotaError).code).toBe('E_QUOTA');
  });
});

describe('registerErrorClass', () => {
  it.each([
    [42, undefined, 'registerErrorClass(): ctor: expected a class extending Error, got 42'],
    [() => new Error('x'), undefined, 'registerErrorClass(): ctor: expected a class extending Error, got a function'],
    [Date, undefined, 'registerErrorClass(): ctor: expected a class extending Error, got the class Date'],
    [class extends Error {}, undefined, 'registerErrorClass(): name: expected a class with a name (or a name given for an anonymous one), got ""'],
    [class Named extends Error {}, '', 'registerErrorClass(): name: expected a non-empty string, got ""'],
  ])('refuses %s (name %j) with WEIR_INVALID_OPTIONS, saying what was wrong', (ctor, name, message) => {
    const call = () => registerErrorClass(ctor as never, name);
    expect(call).toThrow(ValidationError);
    expect(call).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_OPTIONS, message }));
  });

  it('takes an anonymous class under a name given', () => {
    const Anonymous = (() => class extends FatalError {})();
    registerErrorClass(Anonymous, 'AnonymousError');
    const data = { ...toErrorData(new Anonymous('x')), name: 'AnonymousError' };
    expect(fromErrorData(data)).toBeInstanceOf(Anonymous);
  });
});

describe('WarningCode', () => {
  const root = join(import.meta.dirname, '..', '..');
  const sources = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));

  it('has a stable WEIR_ code for each warning, apart from the error codes', () => {
    const codes = Object.values(WarningCode);
    expect(codes.length).toBeGreaterThan(0);
    for (const code of codes) expect(code).toMatch(/^WEIR_[A-Z_]+$/);
    expect(new Set(codes).size).toBe(codes.length);
    expect(codes.filter((c) => (Object.values(ErrorCode) as string[]).includes(c))).toEqual([]);
  });

  it('is what every process.emitWarning in weir uses, and docs/errors.md lists each one', () => {
    const literal: string[] = [];
    for (const file of sources(join(root, 'src'))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/emitWarning\([\s\S]*?\{ code: ([^}]*) \}/g)) if (!m[1]!.startsWith('WarningCode.')) literal.push(`${file}: ${m[1]!}`);
    }
    expect(literal).toEqual([]);
    const docs = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
    const warnings = docs.slice(docs.indexOf('## Warnings'));
    for (const code of Object.values(WarningCode)) expect(warnings).toContain(`| \`${code}\` |`);
  });

  it('marks the warning of a listener that throws', async () => {
    const ctx = new FlowContext();
    const warned = new Promise<Error & { code?: string }>((resolve) => process.once('warning', resolve));
    ctx.on('run_start', () => {
      throw new Error('listener bug');
    });
    await ctx.run(new Flow(new AddOne(), { name: 'add' }), { n: 1 });
    await expect(warned).resolves.toMatchObject({ code: WarningCode.LISTENER_ERROR, message: expect.stringContaining('listener bug') });
    await ctx.close();
  });
});

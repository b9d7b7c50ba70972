/** Durations as tests write them: `500` (ms), `'500ms'`, `'30s'`, `'10m'`, `'1.5h'`, `'2d'`. */
import { z } from 'zod';
import { ErrorCode, ValidationError } from '../errors/errors.js';
import { describeValue, expecting } from '../util/parse.js';

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/;

/** A duration of virtual time: milliseconds, or a number with a unit (`ms`, `s`, `m`, `h`, `d`). */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

const EXPECTED = "a duration (milliseconds >= 0, or a number with ms, s, m, h or d, such as '30s')";

/** The schema of a `Duration` option; `toMs` turns what it passes into milliseconds. */
export const durationSchema = expecting(z.union([z.number().min(0).max(Number.MAX_SAFE_INTEGER), z.string().regex(PATTERN)]), EXPECTED) as z.ZodType<Duration>;

/**
 * The milliseconds of `value`.
 * @throws ValidationError `WEIR_INVALID_OPTIONS` naming `where` for anything else (a negative number, an unknown unit).
 */
export function toMs(value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  const match = typeof value === 'string' ? PATTERN.exec(value) : null;
  if (match !== null) return Number(match[1]) * UNITS[match[2]!]!;
  const message = `${where}: expected ${EXPECTED}, got ${describeValue(value)}`;
  throw new ValidationError(message, { code: ErrorCode.INVALID_OPTIONS, issues: [{ code: 'custom', path: [], message }] });
}

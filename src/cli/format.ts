/** How the `weir` command shows things to people: tables, ages, event lines, progress bars. */
import type { WeirEvent } from '../index.js';

/** Columns padded to their widest cell, a header first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '(none)\n';
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

/** How long ago `ms` (since the epoch) was: `12s ago`, `3m ago`, `5h ago`, `2d ago`. */
export function since(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** An event as a line: its seq, type, step and attempt, and what sets it apart. */
export function eventLine(event: WeirEvent): string {
  const parts = [String(event.seq).padStart(4), event.type];
  if ('step' in event && event.step !== undefined) parts.push('attempt' in event && event.attempt !== undefined ? `${event.step}#${event.attempt}` : event.step);
  if (event.type === 'step_progress') parts.push(`${Math.round(event.progress * 100)}%${event.message === undefined ? '' : ` ${event.message}`}`);
  if (event.type === 'step_retry') parts.push(`in ${event.delay} ms`);
  if (event.type === 'input_required' || event.type === 'input_received') parts.push(`"${event.key}"`);
  if ('error' in event && event.error !== undefined) parts.push(`${event.error.code ?? event.error.name}: ${event.error.message}`);
  return parts.join('  ');
}

/** `[#####.....]  50% message`. */
export function progressBar(fraction: number, message: string | undefined, width = 20): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%${message === undefined ? '' : ` ${message}`}`;
}

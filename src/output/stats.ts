// Human-readable generation statistics for stderr, one `name value` pair per line,
// using the same names as the JSON output so the two can be compared directly.

import type { GenerationStats } from '../engine.js';

export function formatStats(stats: GenerationStats): string {
  const entries = Object.entries(stats);
  const width = Math.max(0, ...entries.map(([name]) => name.length));
  return entries.map(([name, value]) => `${name.padEnd(width)}  ${formatNumber(value)}\n`).join('');
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

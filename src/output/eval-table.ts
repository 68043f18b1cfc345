// `glimpse eval`'s tables for stdout: one row per reduction spec under the names its JSON
// summary uses, and with `--by-kind` the accuracy of each kind of question under each spec.

import type { SpecSummary } from '../eval/summary.js';
import { formatFlops } from './stats.js';

export function formatEvalTable(summaries: readonly SpecSummary[]): string {
  const header = [
    'reduce',
    'correct',
    'accuracy',
    'relative_accuracy',
    'after_encoder',
    'after_prefill',
    'equal_tokens',
    'flops_prefill',
    'flops_ratio',
    'ms_prefill',
  ];
  const rows = summaries.map((summary) => [
    summary.reduce,
    `${summary.correct}/${summary.lines}`,
    percent(summary.accuracy),
    ratio(summary.relative_accuracy),
    summary.after_encoder.toFixed(1),
    summary.after_prefill.toFixed(1),
    summary.equal_tokens.toFixed(1),
    formatFlops(summary.flops_prefill),
    ratio(summary.flops_ratio),
    summary.ms_prefill.toFixed(1),
  ]);
  return layout([header, ...rows]);
}

/** Rows are the kinds in the order they first appear, columns the specs. */
export function formatKindTable(summaries: readonly SpecSummary[]): string {
  const kinds = summaries[0]?.by_kind ?? [];
  const header = ['kind', 'lines', ...summaries.map((summary) => summary.reduce)];
  const rows = kinds.map(({ kind, lines }) => [
    kind ?? '-',
    String(lines),
    ...summaries.map((summary) => {
      const found = summary.by_kind.find((entry) => entry.kind === kind);
      return found === undefined ? '-' : percent(found.accuracy);
    }),
  ]);
  return layout([header, ...rows]);
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

function ratio(value: number | null): string {
  return value === null ? '-' : value.toFixed(2);
}

/** The first column left-aligned (names), the others right-aligned (numbers). */
function layout(table: string[][]): string {
  const widths = table[0]!.map((_, column) => Math.max(...table.map((cells) => cells[column]?.length ?? 0)));
  const pad = (cell: string, column: number) =>
    column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!);
  const line = (cells: string[]) => cells.map(pad).join('  ');
  return table.map((cells) => `${line(cells)}\n`).join('');
}

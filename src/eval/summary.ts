// Per-spec figures of an evaluation: accuracy, and the means of what the reduction kept and
// cost, each compared with the baseline spec (`none` when it was run, else the first).

import type { LineResult } from './run.js';

export interface KindAccuracy {
  /** The lines' `kind`; null for lines without one. */
  kind: string | null;
  lines: number;
  correct: number;
  /** correct / lines, from 0 to 1. */
  accuracy: number;
}

export interface SpecSummary {
  reduce: string;
  lines: number;
  correct: number;
  /** correct / lines, from 0 to 1. */
  accuracy: number;
  /** accuracy / the baseline's; null when the baseline got nothing right. */
  relative_accuracy: number | null;
  /** Means per line (one image each) of the engine's stats of the same names. */
  after_encoder: number;
  after_prefill: number;
  equal_tokens: number;
  flops_prefill: number;
  /** flops_prefill / the baseline's. */
  flops_ratio: number | null;
  ms_prefill: number;
  /** In the order the kinds first appear in the file. */
  by_kind: KindAccuracy[];
}

/** The spec the others are compared with: `none` when it is among them, else the first. */
export function baselineIndex(specs: readonly string[]): number {
  return Math.max(0, specs.indexOf('none'));
}

/** One summary per spec, in the order of `specs`. */
export function summarise(specs: readonly string[], results: readonly LineResult[]): SpecSummary[] {
  const own = specs.map((spec) => summariseSpec(spec, results.filter((result) => result.reduce === spec)));
  const baseline = own[baselineIndex(specs)];
  return own.map((summary) => ({
    ...summary,
    relative_accuracy: ratio(summary.accuracy, baseline?.accuracy),
    flops_ratio: ratio(summary.flops_prefill, baseline?.flops_prefill),
  }));
}

function summariseSpec(spec: string, results: readonly LineResult[]): SpecSummary {
  const mean = (value: (result: LineResult) => number) =>
    results.length === 0 ? 0 : results.reduce((sum, result) => sum + value(result), 0) / results.length;
  const correct = results.filter((result) => result.correct).length;
  return {
    reduce: spec,
    lines: results.length,
    correct,
    accuracy: results.length === 0 ? 0 : correct / results.length,
    relative_accuracy: null,
    after_encoder: mean((result) => result.stats.after_encoder),
    after_prefill: mean((result) => result.stats.after_prefill),
    equal_tokens: mean((result) => result.stats.equal_tokens),
    flops_prefill: mean((result) => result.stats.flops_prefill),
    flops_ratio: null,
    ms_prefill: mean((result) => result.stats.ms_prefill),
    by_kind: byKind(results),
  };
}

function byKind(results: readonly LineResult[]): KindAccuracy[] {
  const kinds = new Map<string | null, { lines: number; correct: number }>();
  for (const result of results) {
    const kind = result.item.kind ?? null;
    const tally = kinds.get(kind) ?? { lines: 0, correct: 0 };
    tally.lines += 1;
    if (result.correct) tally.correct += 1;
    kinds.set(kind, tally);
  }
  return [...kinds].map(([kind, { lines, correct }]) => ({ kind, lines, correct, accuracy: correct / lines }));
}

function ratio(value: number, baseline: number | undefined): number | null {
  return baseline === undefined || baseline === 0 ? null : value / baseline;
}

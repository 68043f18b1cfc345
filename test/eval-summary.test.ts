// The per-spec summary of `glimpse eval` and its tables, from hand-made results.

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import type { GenerationStats } from '../src/engine.js';
import type { EvalItem } from '../src/eval/dataset.js';
import type { LineResult } from '../src/eval/run.js';
import { baselineIndex, summarise } from '../src/eval/summary.js';
import { formatEvalTable, formatKindTable } from '../src/output/eval-table.js';

function item(line: number, kind?: string): EvalItem {
  return { line, image: 'a.png', imagePath: '/a.png', question: 'Q?', expect: { answers: ['x'] }, kind };
}

function result(entry: EvalItem, reduce: string, correct: boolean, stats: Partial<GenerationStats>): LineResult {
  return { item: entry, reduce, answer: 'x', correct, finish_reason: 'eos', stats: stats as GenerationStats };
}

const ITEMS = [item(1, 'colour'), item(2, 'count'), item(4, 'colour'), item(5)];
const FULL = { after_encoder: 576, after_prefill: 576, equal_tokens: 576, flops_prefill: 2e12, ms_prefill: 400 };

function results(): LineResult[] {
  const fastv = (i: number) => ({
    after_encoder: 576,
    after_prefill: 64,
    equal_tokens: 100 + i,
    flops_prefill: 4e11 + i * 1e11,
    ms_prefill: 90 + i,
  });
  return ITEMS.flatMap((entry, i) => [
    result(entry, 'fastv:keep=64', i === 0, fastv(i)),
    result(entry, 'none', i !== 3, FULL),
  ]);
}

test('the baseline is none when it is there, else the first spec', () => {
  assert.is(baselineIndex(['fastv:keep=64', 'none']), 1);
  assert.is(baselineIndex(['fastv:keep=64', 'mustdrop:keep=64']), 0);
});

test('accuracy, means and ratios per spec, and accuracy per kind in file order', () => {
  const [fastv, none] = summarise(['fastv:keep=64', 'none'], results());
  assert.equal(none, {
    reduce: 'none',
    lines: 4,
    correct: 3,
    accuracy: 0.75,
    relative_accuracy: 1,
    ...FULL,
    flops_ratio: 1,
    by_kind: [
      { kind: 'colour', lines: 2, correct: 2, accuracy: 1 },
      { kind: 'count', lines: 1, correct: 1, accuracy: 1 },
      { kind: null, lines: 1, correct: 0, accuracy: 0 },
    ],
  });
  assert.is(fastv!.accuracy, 0.25);
  assert.is(fastv!.relative_accuracy, 0.25 / 0.75);
  assert.is(fastv!.after_prefill, 64);
  assert.is(fastv!.equal_tokens, 101.5);
  assert.is(fastv!.flops_prefill, 5.5e11);
  assert.is(fastv!.flops_ratio, 0.275);
  assert.is(fastv!.ms_prefill, 91.5);
});

test('a baseline with nothing right leaves the relative accuracy undefined', () => {
  const wrong = results().map((r) => ({ ...r, correct: r.reduce === 'fastv:keep=64' && r.correct }));
  const [fastv, none] = summarise(['fastv:keep=64', 'none'], wrong);
  assert.is(none!.relative_accuracy, null);
  assert.is(fastv!.relative_accuracy, null);
  assert.is(fastv!.accuracy, 0.25);
});

test('the tables', () => {
  const summaries = summarise(['none', 'fastv:keep=64'], results());
  assert.is(
    formatEvalTable(summaries),
    [
      'reduce         correct  accuracy  relative_accuracy  after_encoder  after_prefill  equal_tokens  flops_prefill  flops_ratio  ms_prefill',
      'none               3/4     75.0%               1.00          576.0          576.0         576.0    2.00 TFLOPs         1.00       400.0',
      'fastv:keep=64      1/4     25.0%               0.33          576.0           64.0         101.5     550 GFLOPs         0.28        91.5',
      '',
    ].join('\n'),
  );
  assert.is(
    formatKindTable(summaries),
    [
      'kind    lines    none  fastv:keep=64',
      'colour      2  100.0%          50.0%',
      'count       1  100.0%           0.0%',
      '-           1    0.0%           0.0%',
      '',
    ].join('\n'),
  );
});

test.run();

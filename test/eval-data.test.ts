// Reading and checking `glimpse eval` data files: what a line may hold, and errors that
// name the line before anything is generated.

import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { readDataset } from '../src/eval/dataset.js';
import { FIXTURES } from './helpers/cli.js';
import { glimpseErrorMessage } from './helpers/errors.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { pngClaimingSize } from './helpers/png.js';

test.after.each(removeTempDirs);

/** A data folder with `images/shapes.png` and `data.jsonl` holding `lines`. */
function dataFile(lines: string[]): string {
  const dir = tempDir();
  mkdirSync(join(dir, 'images'));
  copyFileSync(join(FIXTURES, 'images', 'shapes-64x40.png'), join(dir, 'images', 'shapes.png'));
  const file = join(dir, 'data.jsonl');
  writeFileSync(file, lines.join('\n'));
  return file;
}

const GOOD = JSON.stringify({ image: 'images/shapes.png', question: 'Colour?', answers: ['red'] });

test('lines become items with their line numbers, images resolved against the file folder', async () => {
  const file = dataFile([
    GOOD,
    '',
    JSON.stringify({
      id: 'q2',
      image: 'images/shapes.png',
      question: 'Describe it.',
      must_mention: ['red triangle'],
      kind: 'caption',
      max_tokens: 48,
    }),
    '   ',
  ]);
  const items = await readDataset(file);
  assert.equal(
    items.map((item) => [item.line, item.id, item.kind, item.maxTokens, item.expect]),
    [
      [1, undefined, undefined, undefined, { answers: ['red'] }],
      [3, 'q2', 'caption', 48, { must_mention: ['red triangle'] }],
    ],
  );
  assert.is(items[0]!.image, 'images/shapes.png');
  assert.is(items[0]!.imagePath, join(file, '..', 'images', 'shapes.png'));
});

test('a bad line is an input error naming the file and the line', async () => {
  const cases: Array<[string, RegExp]> = [
    ['{"image": "images/shapes.png", "question": ', /line 2: not valid JSON/],
    ['["images/shapes.png"]', /line 2: expected a JSON object/],
    ['{"question": "Q?", "answers": ["a"]}', /line 2: missing 'image'/],
    ['{"image": "images/shapes.png", "question": "", "answers": ["a"]}', /line 2: 'question' must be a non-empty string/],
    ['{"image": "images/shapes.png", "question": "Q?"}', /line 2: needs 'answers' .* or 'must_mention'/],
    ['{"image": "images/shapes.png", "question": "Q?", "answers": []}', /line 2: 'answers' must be a non-empty list/],
    ['{"image": "images/shapes.png", "question": "Q?", "answers": [3]}', /line 2: 'answers' must be a non-empty list/],
    ['{"image": "images/shapes.png", "question": "Q?", "answers": [" ?! "]}', /line 2: 'answers' has an entry with nothing/],
    [
      '{"image": "images/shapes.png", "question": "Q?", "answers": ["a"], "must_mention": ["b"]}',
      /line 2: give either 'answers' or 'must_mention', not both/,
    ],
    ['{"image": "images/shapes.png", "question": "Q?", "answer": ["a"]}', /line 2: unknown field 'answer'/],
    ['{"image": "images/shapes.png", "question": "Q?", "answers": ["a"], "max_tokens": 0}', /line 2: 'max_tokens'/],
    ['{"image": "images/shapes.png", "question": "Q?", "answers": ["a"], "kind": 7}', /line 2: 'kind' must be/],
    ['{"image": "images/missing.png", "question": "Q?", "answers": ["a"]}', /line 2: image images\/missing.png not found/],
    ['{"image": "images", "question": "Q?", "answers": ["a"]}', /line 2: image images is not a file/],
    ['{"image": "data.jsonl", "question": "Q?", "answers": ["a"]}', /line 2: image data.jsonl is not an image/],
  ];
  for (const [line, expected] of cases) {
    const file = dataFile([GOOD, line, GOOD]);
    const message = await glimpseErrorMessage('input', () => readDataset(file));
    assert.ok(message.startsWith(`${file} line 2: `), message);
    assert.match(message, expected);
  }
});

test('an accepted answer that normalises to a word is fine, even an article', async () => {
  const line = JSON.stringify({ image: 'images/shapes.png', question: 'Q?', answers: ['The.'] });
  assert.equal((await readDataset(dataFile([line])))[0]!.expect, { answers: ['The.'] });
});

test('the first bad line is the one reported, whatever is wrong with it', async () => {
  const missing = JSON.stringify({ image: 'images/gone.png', question: 'Q?', answers: ['a'] });
  const message = await glimpseErrorMessage('input', () => readDataset(dataFile([GOOD, missing, GOOD, '{broken'])));
  assert.match(message, /line 2: image images\/gone.png not found$/);
  const broken = await glimpseErrorMessage('input', () => readDataset(dataFile([GOOD, '{broken', missing])));
  assert.match(broken, /line 2: not valid JSON/);
});

test('an image over the pixel limit is refused from its header', async () => {
  const file = dataFile([JSON.stringify({ image: 'big.png', question: 'Q?', answers: ['a'] })]);
  writeFileSync(join(file, '..', 'big.png'), pngClaimingSize(20_000, 20_000));
  const message = await glimpseErrorMessage('input', () => readDataset(file));
  assert.match(message, /line 1: image big.png is 20000x20000, over the limit of 100000000 pixels/);
});

test('an empty file or a missing one is an input error', async () => {
  assert.match(await glimpseErrorMessage('input', () => readDataset(dataFile(['', '  ']))), /no questions in the file/);
  const nowhere = join(tempDir(), 'none.jsonl');
  assert.is(await glimpseErrorMessage('input', () => readDataset(nowhere)), `data file not found: ${nowhere}`);
});

test.run();

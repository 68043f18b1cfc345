// LLaVA-NeXT from the command line: the tiny NeXT fixture answers as transformers does, a
// reduction reports its tokens crop by crop, every method holds its budget over all crops,
// `--show-kept` draws the base crop and the tiles, and `--max-image-tokens` picks a smaller
// tile grid or says why it cannot.

import { copyFileSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { PANEL_GAP } from '../src/output/kept-image.js';
import { errorLine, FIXTURES, runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';

test.after.each(removeTempDirs);

const MODEL = join(FIXTURES, 'models', 'tiny-llava-next-mistral');
const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, 'expected', 'tiny-llava-next-mistral.json'), 'utf8')) as {
  greedy_text: string;
  image_tokens: number[];
};
const SHAPES = join(FIXTURES, 'images', 'shapes-64x40.png');
const QUESTION = 'What is shown in this image?';

test('ask answers with the greedy text transformers produced', () => {
  const result = runCli(['ask', '--model', MODEL, '--max-tokens', '16', '--temperature', '0', SHAPES, QUESTION]);
  assert.is(result.code, 0, result.stderr);
  assert.is(result.stdout, `${EXPECTED.greedy_text}\n`);
});

test('--stats gives the tokens of every crop; --show-kept draws the base crop beside the tiles', async () => {
  const png = join(tempDir(), 'kept.png');
  const reduce = 'mustdrop:keep=120,layers=1,tau=0.5,evict=0';
  const result = runCli([
    'ask',
    '--model',
    MODEL,
    '--max-tokens',
    '2',
    '--reduce',
    reduce,
    '--stats',
    '--show-kept',
    png,
    SHAPES,
    QUESTION,
  ]);
  assert.is(result.code, 0, result.stderr);
  // 64×40 on a 1×2 grid: 12 feature rows, columns 2..22 of 24 (10 in each tile).
  const crops = cropCounts(result.stderr);
  assert.equal(
    crops.map((m) => [m[1], Number(m[2])]),
    [
      ['base', 144],
      ['tile 1,1', 120],
      ['tile 1,2', 120],
      ['newlines', 12],
    ],
  );
  assert.is(
    crops.reduce((sum, m) => sum + Number(m[2]), 0),
    EXPECTED.image_tokens[0],
  );
  assert.is(
    crops.reduce((sum, m) => sum + Number(m[4]), 0),
    120,
    'the budget holds over all crops',
  );
  const { width, height } = await sharp(png).metadata();
  assert.equal([width, height], [64 + PANEL_GAP + 64, 40]);
});

test('every method keeps its budget over all crops of a tiled image', () => {
  const kept = (model: string, reduce: string) => {
    const result = runCli(['ask', '--model', model, '--max-tokens', '2', '--reduce', reduce, '--stats', SHAPES, QUESTION]);
    assert.is(result.code, 0, result.stderr);
    return cropCounts(result.stderr).reduce((sum, m) => sum + Number(m[4]), 0);
  };
  for (const reduce of ['fastv:k=1,keep=40', 'sparsevlm:keep=40', 'mustdrop:keep=40']) {
    assert.is(kept(MODEL, reduce), 40, reduce);
  }
  // Dynamic-LLaVA's predictors come from the reduction fixture (the same hidden size), beside
  // a copy of the NeXT model, with the sparse layer moved into its two layers.
  const withPredictors = tempDir();
  cpSync(MODEL, withPredictors, { recursive: true });
  const reduceModel = join(FIXTURES, 'models', 'tiny-llava-reduce');
  copyFileSync(join(reduceModel, 'predictors.safetensors'), join(withPredictors, 'predictors.safetensors'));
  const sparse = (JSON.parse(readFileSync(join(reduceModel, 'config.json'), 'utf8')) as { sparse_config: object })
    .sparse_config;
  const config = JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  config.sparse_config = { ...sparse, sparse_layer: 1 };
  writeFileSync(join(withPredictors, 'config.json'), JSON.stringify(config));
  assert.is(kept(withPredictors, 'dynamic:keep_rate=0.25,text=off'), Math.floor(EXPECTED.image_tokens[0]! / 4));
});

test('--max-image-tokens picks a smaller grid, and says when none is small enough', () => {
  const json = (extra: string[]) => {
    const result = runCli(['ask', '--model', MODEL, '--json', '--max-tokens', '1', ...extra, SHAPES, QUESTION]);
    assert.is(result.code, 0, result.stderr);
    const events = result.stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; vision_tokens_in?: number });
    return events.find((event) => event.type === 'stats')!.vision_tokens_in!;
  };
  assert.is(json([]), EXPECTED.image_tokens[0]);
  // 396 tokens on the 1×2 grid; every other grid gives this image fewer.
  assert.ok(json(['--max-image-tokens', '395']) < 396);
  const failed = runCli(['ask', '--model', MODEL, '--max-image-tokens', '200', SHAPES, QUESTION]);
  assert.is(failed.code, 1);
  assert.is(
    errorLine(failed),
    'glimpse: --max-image-tokens 200 is too few for a 64×40 image: its smallest tile grid gives it 248 tokens',
  );
  const zero = runCli(['ask', '--model', MODEL, '--max-image-tokens', '0', SHAPES, QUESTION]);
  assert.is(zero.code, 1);
  assert.match(errorLine(zero), /--max-image-tokens/);
});

test('inspect gives the architecture, the tile grids and the most tokens an image can take', () => {
  const result = runCli(['inspect', '--json', MODEL]);
  assert.is(result.code, 0, result.stderr);
  const info = JSON.parse(result.stdout) as { architecture: string; image_tokens: number; tile_grids: number[][] };
  assert.is(info.architecture, 'LlavaNextForConditionalGeneration');
  const config = JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as { image_grid_pinpoints: number[][] };
  assert.equal(info.tile_grids, config.image_grid_pinpoints);
  // The 2×2 grid (96×96 pixels, 24×24 features): 144 + 24 × 25.
  assert.is(info.image_tokens, 744);
  const text = runCli(['inspect', MODEL]);
  assert.match(text.stdout, /image tokens +up to 744 \(the whole image plus its tiles, on a grid of 96×48, 48×96, 96×96, 48×144, 144×48 pixels\)/);
});

test.run();

/** The `image_1_crops` line of `--stats`, one match per crop: name, tokens in, after the
 * encoder, kept. */
function cropCounts(stderr: string): RegExpMatchArray[] {
  const line = stderr.split('\n').find((l) => l.startsWith('image_1_crops'));
  assert.ok(line, stderr);
  return [...line.matchAll(/(base|tile \d,\d|newlines) (\d+)→(\d+)→(\d+)/g)];
}

// `glimpse caption` end to end: the real CLI on the tiny reference checkpoint.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { shardOf } from '../src/caption/shard.js';
import {
  FAST,
  FIXTURE_IMAGES,
  imageFolder,
  MODEL,
  manyImages,
  parseJsonl,
  readJsonl,
  type Row,
} from './caption-helpers.js';
import { errorLine, ROOT, runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { pngClaimingSize } from './helpers/png.js';

test.after.each(removeTempDirs);

const [RINGS = '', SHAPES = '', STRIPES = ''] = FIXTURE_IMAGES;
const SAMPLING = ['--temperature', '0.9', '--seed', '7'];
const PROMPT = 'What is in this picture?';

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** What `ask` answers for one image with the same model, prompt and sampling. */
function askAnswer(image: string): string {
  const result = runCli(['ask', ...FAST, ...SAMPLING, image, PROMPT]);
  assert.is(result.code, 0, result.stderr);
  return result.stdout.trim();
}

test('a folder: one record per image, in path order, captions as ask gives them', () => {
  const dir = imageFolder({ 'b.png': SHAPES, 'a.png': RINGS, 'c.png': STRIPES, 'notes.txt': RINGS });
  const out = join(dir, 'captions.jsonl');
  const result = runCli(['caption', ...FAST, ...SAMPLING, '--prompt', PROMPT, dir, '--output', out]);
  assert.is(result.code, 0, result.stderr);
  assert.is(result.stdout, '');
  const records = readJsonl(out);
  assert.equal(
    records.map((record) => record.path),
    ['a.png', 'b.png', 'c.png'].map((name) => join(dir, name)),
  );
  for (const record of records) {
    assert.equal(Object.keys(record), [
      'path',
      'sha256',
      'caption',
      'model',
      'reduce',
      'seed',
      'prompt_tokens',
      'generated_tokens',
      'finish_reason',
      'ms',
      'stats',
    ]);
    assert.is(record.caption, askAnswer(record.path));
    assert.is(record.sha256, sha256(record.path));
    assert.is(record.model, MODEL);
    assert.is(record.reduce, 'none');
    assert.is(record.seed, 7);
    assert.is(record.generated_tokens, 4);
    assert.is(record.finish_reason, 'length');
    const stats = record.stats as Record<string, number>;
    assert.is(record.prompt_tokens, stats.prompt_tokens);
    assert.is(stats.generated_tokens, 4);
    assert.ok(typeof record.ms === 'number' && record.ms > 0, `ms: ${String(record.ms)}`);
  }
});

test('without --output the records are all of stdout', () => {
  const dir = imageFolder({ 'one.png': RINGS, 'two.jpg': SHAPES });
  writeFileSync(join(dir, 'broken.png'), 'not a png');
  const result = runCli(['caption', ...FAST, dir]);
  assert.is(result.code, 2, result.stderr);
  const records = parseJsonl(result.stdout);
  assert.equal(
    records.map((record) => [basename(record.path), record.code ?? 'ok']),
    [
      ['broken.png', 'not_image'],
      ['one.png', 'ok'],
      ['two.jpg', 'ok'],
    ],
  );
  // The default prompt is the one documented.
  const asked = runCli(['ask', ...FAST, join(dir, 'one.png'), 'Describe this image in one sentence.']);
  assert.is(records[1]?.caption, asked.stdout.trim());
});

test('sub-folders need --recursive; patterns select by wildcard', () => {
  const dir = imageFolder({
    'top.png': RINGS,
    'sub/inner.png': SHAPES,
    'sub/deep/leaf.webp': STRIPES,
    '.hidden/x.png': RINGS,
  });
  const paths = (...args: string[]): string[] => {
    const result = runCli(['caption', ...FAST, ...args]);
    assert.is(result.code, 0, result.stderr);
    return parseJsonl(result.stdout).map((record) => record.path.slice(dir.length + 1));
  };
  assert.equal(paths(dir), ['top.png']);
  assert.equal(paths('--recursive', dir), ['sub/deep/leaf.webp', 'sub/inner.png', 'top.png']);
  assert.equal(paths(`${dir}/**/*.png`), ['sub/inner.png', 'top.png']);
  assert.equal(paths(`${dir}/s?b/*`), ['sub/inner.png']);
  // A file named twice, directly and through its folder, is captioned once.
  assert.equal(paths(join(dir, 'top.png'), dir), ['top.png']);
});

test('failed images become error records, the others are captioned, and the exit code is 2', () => {
  const dir = imageFolder({ 'good.png': RINGS });
  writeFileSync(join(dir, 'garbage.jpg'), 'definitely not a jpeg');
  writeFileSync(join(dir, 'truncated.png'), readFileSync(RINGS).subarray(0, 400));
  writeFileSync(join(dir, 'huge.png'), pngClaimingSize(200, 200));
  const missing = join(dir, 'missing.png');
  const out = join(dir, 'out.jsonl');
  const result = runCli(['caption', ...FAST, '--max-pixels', '10000', dir, missing, '-o', out]);
  assert.is(result.code, 2, result.stderr);
  const records = readJsonl(out);
  assert.equal(
    records.map((record) => [basename(record.path), record.code ?? 'ok']),
    [
      ['garbage.jpg', 'not_image'],
      ['good.png', 'ok'],
      ['huge.png', 'too_large'],
      ['missing.png', 'not_found'],
      ['truncated.png', 'corrupt'],
    ],
  );
  for (const record of records.filter((each) => each.code !== undefined)) {
    assert.equal(Object.keys(record), ['path', 'error', 'code']);
    assert.ok(String(record.error).includes(record.path), String(record.error));
    assert.match(result.stderr, `glimpse: ${String(record.error)}\n`);
  }
  assert.match(String(records.find((record) => record.code === 'too_large')?.error), /200x200 \(40000 pixels\)/);
});

test('--batch 3 gives each image the record --batch 1 gives it, a corrupt image included', () => {
  const dir = imageFolder({ 'a.png': RINGS, 'b.png': SHAPES, 'd.png': STRIPES, 'e.png': SHAPES, 'f.png': RINGS });
  // In the first batch, between two images that caption.
  writeFileSync(join(dir, 'c.png'), readFileSync(RINGS).subarray(0, 400));
  const caption = (batch: string, sampling: string[]): Row[] => {
    const out = join(tempDir(), 'captions.jsonl');
    // The stop string ends some captions early: they leave the batch while others go on.
    const args = ['--model', MODEL, '--max-tokens', '12', '--stop', 're', ...sampling, '--batch', batch];
    const result = runCli(['caption', ...args, dir, '-o', out]);
    assert.is(result.code, 2, result.stderr);
    assert.match(result.stderr, '6 of 6 images done (5 captioned, 1 failed)');
    return readJsonl(out);
  };
  // What does not depend on the batch: everything but the timings.
  const comparable = (record: Row): unknown => {
    const stats = { ...(record.stats as Record<string, unknown>) };
    for (const key of ['ms_encode', 'ms_prefill', 'ms_decode', 'tokens_per_s', 'prefill_tokens_per_s']) {
      delete stats[key];
    }
    return { ...record, ms: undefined, stats: record.stats === undefined ? undefined : stats };
  };
  for (const sampling of [[], SAMPLING]) {
    const alone = caption('1', sampling);
    const together = caption('3', sampling);
    assert.equal(
      together.map((record) => [basename(record.path), record.code ?? 'ok']),
      [
        ['a.png', 'ok'],
        ['b.png', 'ok'],
        ['c.png', 'corrupt'],
        ['d.png', 'ok'],
        ['e.png', 'ok'],
        ['f.png', 'ok'],
      ],
    );
    assert.equal(together.map(comparable), alone.map(comparable));
    const reasons = new Set(together.map((record) => record.finish_reason).filter(Boolean));
    assert.equal([...reasons].sort(), ['length', 'stop'], 'captions end at different steps');
    for (const record of together.filter((each) => each.code === undefined)) {
      assert.ok(typeof record.ms === 'number' && record.ms > 0, `ms: ${String(record.ms)}`);
    }
  }
});

test('an image from a pipe is captioned: each file is read once, its hash and pixels from the same bytes', () => {
  // A pipe gives its bytes to one reader only: a second read of the file would wait forever.
  const dir = tempDir();
  const pipe = join(dir, 'piped.png');
  execFileSync('mkfifo', [pipe]);
  const writer = spawn('sh', ['-c', 'cat "$1" > "$2"', 'sh', RINGS, pipe], { stdio: 'ignore' });
  try {
    const result = runCli(['caption', ...FAST, ...SAMPLING, '--prompt', PROMPT, pipe], { timeoutMs: 30_000 });
    assert.is(result.code, 0, result.stderr);
    const [record, ...rest] = parseJsonl(result.stdout);
    assert.equal(rest, []);
    assert.is(record?.path, pipe);
    assert.is(record?.sha256, sha256(RINGS));
    assert.is(record?.caption, askAnswer(RINGS));
  } finally {
    writer.kill();
  }
});

test('--shard I/N: the N slices partition the images exactly, each by its path hash', () => {
  const { dir, sources } = manyImages(14);
  const all = [...sources.keys()].sort();
  const slices = [0, 1, 2].map((index) => {
    const result = runCli(['caption', ...FAST, dir, '--shard', `${index}/3`]);
    assert.is(result.code, 0, result.stderr);
    return parseJsonl(result.stdout).map((record) => record.path);
  });
  assert.equal(slices.flat().sort(), all);
  assert.is(new Set(slices.flat()).size, all.length);
  slices.forEach((slice, index) => {
    assert.equal(slice, all.filter((path) => shardOf(path, 3) === index));
  });
  assert.ok(slices.every((slice) => slice.length > 0), 'every shard got some of the 14 images');
});

test('usage mistakes are one line and exit 1; finding no image exits 2', () => {
  const dir = imageFolder({ 'a.png': RINGS });
  const usage = (args: string[]): string => {
    const result = runCli(['caption', ...args]);
    assert.is(result.code, 1, result.stderr);
    return errorLine(result);
  };
  assert.is(
    usage([dir, '--shard', '3/3']),
    `glimpse: Invalid value for --shard: expected I/N with 0 <= I < N, e.g. 0/4 (got "3/3") (see 'glimpse --help')`,
  );
  assert.match(usage([dir, '--shard', '1']), /got "1"/);
  assert.is(usage([dir, '--resume']), 'glimpse: --resume needs --output FILE: it continues that file');
  assert.is(usage([dir, '--prompt', ' ']), 'glimpse: the prompt is empty');
  assert.is(
    usage([dir, '--batch', '0']),
    `glimpse: Invalid value for --batch: expected to be at least 1 (got 0) (see 'glimpse --help')`,
  );
  assert.match(usage([dir, '--batch', '2.5']), 'expected to be an integer (got 2.5)');
  assert.match(usage([dir, '--batch', 'four']), 'expected a number (got "four")');
  assert.is(usage([]), `glimpse: Not enough positional arguments (see 'glimpse --help')`);

  const out = join(dir, 'out.jsonl');
  writeFileSync(out, '{"path":"x"}\n');
  assert.is(
    usage([...FAST, dir, '-o', out]),
    `glimpse: output file ${out} already has records; use --resume to continue it, or remove it first`,
  );

  const empty = tempDir();
  const result = runCli(['caption', ...FAST, empty, `${empty}/*.png`]);
  assert.is(result.code, 2);
  assert.is(errorLine(result), `glimpse: no images found in ${empty}, ${empty}/*.png`);
});

test('examples/caption-folder.sh runs as it is on the built-in model', () => {
  const out = join(tempDir(), 'captions.jsonl');
  const env: Record<string, string | undefined> = { ...process.env };
  delete env.GLIMPSE_MODEL;
  const result = spawnSync('bash', ['examples/caption-folder.sh', out], { cwd: ROOT, env, encoding: 'utf8' });
  assert.is(result.status, 0, result.stderr);
  const records = readJsonl(out);
  assert.equal(
    records.map((record) => record.path),
    ['examples/images/shapes.png'],
  );
  assert.is(records[0]?.model, join(ROOT, 'models', 'default'));
  assert.is(result.stdout, `${records[0]?.path}\t${String(records[0]?.caption)}\n`);
});

test('caption is listed in --help', () => {
  const result = runCli(['--help']);
  assert.is(result.code, 0);
  assert.match(result.stdout, /glimpse caption /);
});

test.run();

// `--reduce` and `--stats` through the real CLI on the tiny reference checkpoint: spec errors
// fail early with one line, the engine's numbers reach `--stats`, `--json` and caption
// records, and the help lists the engine's methods.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { Model, type ReductionReport, reductionMethods } from '../src/engine.js';
import { findFfmpeg } from '../src/media/ffmpeg.js';
import { extractFrames, probeVideo, sampleTimes } from '../src/media/video.js';
import type { ImageTokens } from '../src/output/image-tokens.js';
import { formatBytes, formatFlops, formatStats } from '../src/output/stats.js';
import { errorLine, FIXTURES, runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { SQUARE_VIDEO } from './helpers/video.js';

test.after.each(removeTempDirs);

type FrameTokens = ImageTokens & { frame: number; vision_tokens: number };

const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');
const RINGS = join(FIXTURES, 'images', 'rings-90x72.png');
// FastV with k=1 filters after layer 0, which the two-layer fixture model has.
const REDUCE = 'fastv:k=1,keep=40';
const ASK = ['ask', '--model', MODEL, '--max-tokens', '3'];

function usageError(args: string[]): string {
  const result = runCli(args);
  assert.is(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
  return errorLine(result);
}

test('a bad spec fails before the model or the image is read', () => {
  const nowhere = join(tempDir(), 'no-model');
  for (const command of [
    ['ask', '--model', nowhere, 'missing.png', 'hi'],
    ['caption', '--model', nowhere, 'missing.png'],
    ['video', '--model', nowhere, 'missing.mp4'],
  ]) {
    const known = reductionMethods()
      .map((m) => m.name)
      .join(', ');
    assert.is(
      usageError([...command, '--reduce', 'tome:r=8']),
      `glimpse: unknown reduction method 'tome' (known: ${known})`,
    );
    assert.match(usageError([...command, '--reduce', 'fastv:kep=3']), /^glimpse: .*unknown setting 'kep'/);
  }
});

test('a spec that does not fit the model is a usage error once it loads', () => {
  assert.is(
    usageError([...ASK, '--reduce', 'fastv:k=1,keep=400', RINGS, 'hi']),
    'glimpse: --reduce fastv: keep=400 must be between 1 and the 144 tokens of an image',
  );
  assert.match(usageError([...ASK, '--reduce', 'mustdrop:keep=8,layers=5', RINGS, 'hi']), /layer 5 does not exist/);
});

test('--show-kept wants a .png or .html name in a writable folder, and an image', () => {
  const nowhere = join(tempDir(), 'no-model');
  assert.is(
    usageError(['ask', '--model', nowhere, '--show-kept', 'kept.jpg', RINGS, 'hi']),
    'glimpse: --show-kept kept.jpg: the file name must end in .png or .html',
  );
  const missing = join(tempDir(), 'missing', 'kept.png');
  assert.match(usageError(['ask', '--model', nowhere, '--show-kept', missing, RINGS, 'hi']), /cannot write into/);
  assert.is(usageError(['ask', '--model', nowhere, '--show-kept', 'kept.png', 'hi']), 'glimpse: --show-kept needs an image');
});

test('--stats shows the reduction in the JSON names, with the same values as --json', () => {
  const text = runCli([...ASK, '--stats', '--reduce', REDUCE, RINGS, 'What is this?']);
  assert.is(text.code, 0, text.stderr);
  const json = runCli([...ASK, '--json', '--reduce', REDUCE, RINGS, 'What is this?']);
  assert.is(json.code, 0, json.stderr);
  assert.is(`${JSON.parse(json.stdout.trimEnd().split('\n').at(-1)!).text}\n`, text.stdout);
  const stats = json.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .find((event) => event.type === 'stats')!;
  assert.is(stats.reduce, REDUCE);
  assert.is(stats.vision_tokens_in, 144);
  assert.is(stats.after_encoder, 144);
  assert.is(stats.after_prefill, 40);
  assert.equal(stats.layer_vision_tokens, [144, 40]);
  assert.is(stats.equal_tokens, 92);

  const lines = text.stderr.trimEnd().split('\n');
  const row = (name: string) => lines.find((line) => line.startsWith(`${name} `))?.slice(name.length).trim();
  assert.is(row('reduce'), REDUCE);
  assert.is(row('vision_tokens_in'), '144');
  assert.is(row('after_encoder'), '144');
  assert.is(row('after_prefill'), '40');
  assert.is(row('equal_tokens'), '92.0');
  assert.is(row('kv_bytes_peak'), formatBytes(stats.kv_bytes_peak as number));
  assert.is(row('flops_prefill'), formatFlops(stats.flops_prefill as number));
  assert.is(row('flops_vision'), formatFlops(stats.flops_vision as number));
  // FastV decides nothing while decoding.
  assert.is(row('decode_kv_admitted'), undefined);
  assert.is(row('decode_evicted'), undefined);
});

test('evictions while decoding show under --stats, as many as --json reports', () => {
  const model = join(FIXTURES, 'models', 'tiny-llava-reduce');
  const args = ['ask', '--model', model, '--max-tokens', '8', '--reduce', 'mustdrop:keep=16,evict=0.5,warmup=2'];
  const text = runCli([...args, '--stats', RINGS, 'What is in this picture?']);
  assert.is(text.code, 0, text.stderr);
  const json = runCli([...args, '--json', RINGS, 'What is in this picture?']);
  const done = JSON.parse(json.stdout.trimEnd().split('\n').at(-1)!) as { reduction: { decode_evicted: unknown[] } };
  const evicted = done.reduction.decode_evicted.length;
  assert.ok(evicted > 0, 'nothing evicted');
  assert.ok(text.stderr.includes(`\ndecode_evicted        ${evicted}\n`), text.stderr);
  assert.not.ok(text.stderr.includes('decode_kv_admitted'), text.stderr);
});

test('--json carries the reduction report in its done event only when --reduce is given', () => {
  const events = (args: string[]) =>
    runCli([...ASK, '--json', ...args, RINGS, 'What is this?'])
      .stdout.trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const plain = events([]).at(-1)!;
  assert.equal(Object.keys(plain), ['type', 'text', 'finish_reason']);
  const reduced = events(['--reduce', REDUCE]).at(-1)!;
  const report = reduced.reduction as { spec: string; images: Array<{ tokens: unknown[] }>; filters: unknown[] };
  assert.is(report.spec, REDUCE);
  assert.is(report.images[0]?.tokens.length, 144);
  assert.equal(
    report.filters.map((f) => (f as { layer: number; kept: number[][] }).kept[0]?.length),
    [40],
  );
});

test('caption records name the spec and carry its stats', () => {
  const result = runCli(['caption', '--model', MODEL, '--max-tokens', '2', '--reduce', REDUCE, RINGS]);
  assert.is(result.code, 0, result.stderr);
  const record = JSON.parse(result.stdout) as { reduce: string; stats: Record<string, unknown> };
  assert.is(record.reduce, REDUCE);
  assert.is(record.stats.after_prefill, 40);
});

test('video reduces every frame', () => {
  const args = ['video', '--model', MODEL, '--max-tokens', '2', '--frames', '2', '--json', '--reduce', REDUCE];
  const result = runCli([...args, SQUARE_VIDEO]);
  assert.is(result.code, 0, result.stderr);
  const stats = result.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .find((event) => event.type === 'stats')!;
  assert.is(stats.vision_tokens_in, 288);
  assert.is(stats.after_prefill, 80);
});

test('video --stats and --json say how many tokens each frame kept, as the engine does for that frame alone', async () => {
  // MustDrop merges alike windows per image (so frames differ after the encoder), filters
  // each frame down to the budget in prefill, and evicts while decoding.
  const model = join(FIXTURES, 'models', 'tiny-llava-reduce');
  const spec = 'mustdrop:keep=16,evict=0.5,warmup=2';
  const args = ['video', '--model', model, '--max-tokens', '8', '--frames', '3', '--reduce', spec, SQUARE_VIDEO];
  const json = runCli([...args, '--json']);
  assert.is(json.code, 0, json.stderr);
  const events = json.stdout
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const stats = events.find((event) => event.type === 'stats')!;
  const done = events.at(-1) as { frames: FrameTokens[]; reduction: ReductionReport };
  assert.equal(Object.keys(done), ['type', 'text', 'finish_reason', 'frames', 'reduction']);

  const engine = await Model.load(model);
  const video = await probeVideo(findFfmpeg(), SQUARE_VIDEO);
  const frames = await extractFrames(findFfmpeg(), video, sampleTimes(video.durationS, { frames: 3 }));
  for (const [i, frame] of done.frames.entries()) {
    const alone = await engine.generate({
      messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe this frame.' }] }],
      images: [frames[i]!.image],
      reduce: spec,
      maxTokens: 1,
    }).result;
    const evicted = done.reduction.decode_evicted.filter((eviction) => eviction.image === i).length;
    assert.equal(frame, {
      frame: i,
      vision_tokens: 144,
      after_encoder: alone.stats.after_encoder,
      after_prefill: 16,
      decode_evicted: evicted,
    });
  }
  // The frames are merged differently: the counts are each frame's own, not a share of the sum.
  assert.ok(new Set(done.frames.map((frame) => frame.after_encoder)).size > 1, JSON.stringify(done.frames));
  const sum = (key: keyof FrameTokens) => done.frames.reduce((total, frame) => total + frame[key], 0);
  assert.is(sum('after_encoder'), stats.after_encoder);
  assert.is(sum('after_prefill'), stats.after_prefill);
  assert.is(sum('decode_evicted'), stats.decode_evicted);
  assert.ok(sum('decode_evicted') > 0, 'nothing evicted');

  const text = runCli([...args, '--stats']);
  assert.is(text.code, 0, text.stderr);
  const table = text.stderr.split('\n').slice(0, 4);
  assert.equal(table, [
    'frame  timestamp_s  size   vision_tokens  after_encoder  after_prefill  decode_evicted',
    ...done.frames.map(
      (frame, i) =>
        `${i}      ${['0.333', '1.000', '1.667'][i]}        64x48  144            ` +
        `${String(frame.after_encoder).padEnd(13)}  16             ${frame.decode_evicted}`,
    ),
  ]);
  // Without evictions the table has no column of zeros; without --reduce, no reduction columns.
  const noEviction = runCli([...args.slice(0, -3), '--reduce', 'mustdrop:keep=16', '--stats', SQUARE_VIDEO]);
  assert.is(noEviction.code, 0, noEviction.stderr);
  assert.is(noEviction.stderr.split('\n')[0], 'frame  timestamp_s  size   vision_tokens  after_encoder  after_prefill');
  const plain = runCli(['video', '--model', model, '--max-tokens', '1', '--frames', '3', '--stats', SQUARE_VIDEO]);
  assert.is(plain.stderr.split('\n')[0], 'frame  timestamp_s  size   vision_tokens');
});

test('video --show-kept draws each frame of the summary', async () => {
  const dir = tempDir();
  const args = ['video', '--model', MODEL, '--max-tokens', '2', '--frames', '2', '--reduce', REDUCE];
  const result = runCli([...args, '--show-kept', join(dir, 'kept.png'), SQUARE_VIDEO]);
  assert.is(result.code, 0, result.stderr);
  assert.equal(readdirSync(dir).sort(), ['kept-1.png', 'kept-2.png']);
  for (const file of ['kept-1.png', 'kept-2.png']) {
    const { width, height } = await sharp(join(dir, file)).metadata();
    assert.equal([width, height], [64, 48]);
  }
});

test('help lists every method the engine knows, with its settings', () => {
  const methods = reductionMethods();
  for (const name of ['none', 'mustdrop', 'fastv', 'sparsevlm', 'dynamic']) {
    assert.ok(
      methods.some((m) => m.name === name),
      `${name} is listed`,
    );
  }
  for (const command of ['ask', 'caption', 'video']) {
    const help = runCli([command, '--help']).stdout.replace(/\s+/g, ' ');
    for (const { name, settings } of methods) {
      assert.ok(help.includes(`- \`${name}\`: ${settings}`), `${command} --help lacks ${name}: ${help}`);
    }
  }
});

test('stats table: units and the decode lines only when a policy acted', () => {
  assert.is(formatBytes(512), '512 B');
  assert.is(formatBytes(1536), '1.5 KiB');
  assert.is(formatBytes(1024 * 1024 - 1), '1.0 MiB');
  assert.is(formatBytes(3.25 * 1024 ** 3), '3.3 GiB');
  assert.is(formatFlops(950), '950 FLOPs');
  assert.is(formatFlops(2.5e9), '2.50 GFLOPs');
  assert.is(formatFlops(999.96e6), '1.00 GFLOPs');
  assert.is(formatFlops(1.234e13), '12.3 TFLOPs');

  const stats = {
    backend: 'cpu (4 threads)',
    reduce: 'mustdrop:keep=64',
    prompt_tokens: 600,
    generated_tokens: 20,
    vision_tokens_in: 576,
    after_encoder: 400,
    after_prefill: 64,
    layer_vision_tokens: [400, 400, 200],
    equal_tokens: 333.3333,
    flops_prefill: 4.2e12,
    flops_vision: 3.5e11,
    kv_bytes_peak: 300 * 1024 * 1024,
    kv_bytes_final: 120 * 1024 * 1024,
    decode_kv_admitted: 0,
    decode_kv_rejected: 0,
    decode_evicted: 5,
    ms_encode: 120.04,
    ms_prefill: 800,
    ms_decode: 1500.75,
    tokens_per_s: 13.333,
    prefill_tokens_per_s: 750,
    crops: [],
  };
  assert.is(
    formatStats(stats),
    [
      'backend               cpu (4 threads)',
      'reduce                mustdrop:keep=64',
      'prompt_tokens         600',
      'generated_tokens      20',
      'vision_tokens_in      576',
      'after_encoder         400',
      'after_prefill         64',
      'equal_tokens          333.3',
      'kv_bytes_peak         300.0 MiB',
      'kv_bytes_final        120.0 MiB',
      'flops_prefill         4.20 TFLOPs',
      'flops_vision          350 GFLOPs',
      'ms_encode             120.0',
      'ms_prefill            800.0',
      'ms_decode             1500.8',
      'prefill_tokens_per_s  750.0',
      'tokens_per_s          13.3',
      'decode_evicted        5',
      '',
    ].join('\n'),
  );
  const admitting = formatStats({ ...stats, decode_kv_admitted: 12, decode_evicted: 0 });
  assert.ok(admitting.endsWith('decode_kv_admitted    12\ndecode_kv_rejected    0\n'), admitting);
  // A tiled image's crops, after an image taken whole (which has none).
  const crop = (name: string, tokens_in: number, after_encoder: number, kept: number) => ({
    crop: name,
    tokens_in,
    after_encoder,
    kept,
  });
  const tiled = formatStats({
    ...stats,
    decode_evicted: 0,
    crops: [[], [crop('base', 576, 400, 30), crop('tile 1,1', 480, 300, 20), crop('newlines', 20, 20, 4)]],
  });
  assert.ok(tiled.endsWith('image_2_crops         base 576→400→30, tile 1,1 480→300→20, newlines 20→20→4\n'), tiled);
  assert.not.ok(tiled.includes('image_1_crops'), tiled);
});

test.run();

// Stopping and resuming `glimpse caption`: a run killed at any moment leaves valid JSONL,
// `--resume` repairs an unfinished last line and captions exactly what is missing.

import { appendFileSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { dropUnfinishedLine, readCaptioned } from '../src/caption/resume.js';
import {
  FAST,
  FIXTURE_IMAGES,
  imageFolder,
  manyImages,
  parseJsonl,
  readJsonl,
  type Row,
  spawnCli,
  waitForLines,
} from './caption-helpers.js';
import { runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';

test.after.each(removeTempDirs);

const [RINGS = '', SHAPES = '', STRIPES = ''] = FIXTURE_IMAGES;

/** The caption of each fixture image, from one uninterrupted run. */
function referenceCaptions(): Map<string, string> {
  const result = runCli(['caption', ...FAST, ...FIXTURE_IMAGES]);
  assert.is(result.code, 0, result.stderr);
  return new Map(parseJsonl(result.stdout).map((record) => [record.path, String(record.caption)]));
}

/** Every image captioned exactly once, with the caption its content gets in a clean run. */
function assertComplete(records: Row[], sources: Map<string, string>): void {
  const reference = referenceCaptions();
  assert.equal(records.map((record) => record.path).sort(), [...sources.keys()].sort());
  for (const record of records) {
    assert.is(record.error, undefined, String(record.error));
    assert.is(record.caption, reference.get(sources.get(record.path) ?? ''), record.path);
  }
}

test('dropUnfinishedLine cuts only an unfinished last line', () => {
  const dir = tempDir();
  const file = join(dir, 'out.jsonl');
  assert.is(dropUnfinishedLine(file), 0, 'a missing file is left alone');
  writeFileSync(file, '{"path":"a"}\n{"path":"b"}\n');
  assert.is(dropUnfinishedLine(file), 0);
  assert.is(readFileSync(file, 'utf8'), '{"path":"a"}\n{"path":"b"}\n');
  // Longer than one 64 KiB read, so the search for the last newline spans chunks.
  const unfinished = `{"path":"c","caption":"${'x'.repeat(200_000)}`;
  appendFileSync(file, unfinished);
  assert.is(dropUnfinishedLine(file), Buffer.byteLength(unfinished));
  assert.is(readFileSync(file, 'utf8'), '{"path":"a"}\n{"path":"b"}\n');
  writeFileSync(file, '{"pa');
  assert.is(dropUnfinishedLine(file), 4);
  assert.is(readFileSync(file, 'utf8'), '');
});

test('readCaptioned keeps the latest record of each path; failures mean "retry"', async () => {
  const file = join(tempDir(), 'out.jsonl');
  assert.equal(await readCaptioned(file), new Map());
  writeFileSync(
    file,
    [
      { path: 'a', sha256: '1', caption: 'x' },
      { path: 'b', error: 'broken', code: 'corrupt' },
      { path: 'c', sha256: '3', caption: 'x' },
      { path: 'c', error: 'gone', code: 'not_found' },
      { path: 'b', sha256: '2', caption: 'y' },
      { path: 'a', sha256: '4', caption: 'z' },
    ]
      .map((record) => `${JSON.stringify(record)}\n`)
      .join('') + '\n',
  );
  assert.equal(
    await readCaptioned(file),
    new Map([
      ['a', '4'],
      ['b', '2'],
    ]),
  );
  appendFileSync(file, 'not json\n');
  let message = '';
  await readCaptioned(file).catch((error: Error) => (message = error.message));
  assert.is(message, `cannot resume: line 8 of ${file} is not a caption record; fix or remove it`);
});

test('a run killed mid-way, with a half-written line, resumes without losing or repeating an image', async () => {
  const { dir, sources } = manyImages(90);
  const out = join(dir, 'captions.jsonl');
  const run = spawnCli(['caption', ...FAST, dir, '--output', out]);
  await waitForLines(out, 1);
  run.child.kill('SIGKILL');
  assert.equal(await run.exit, { code: null, signal: 'SIGKILL' });

  // Whatever the kill interrupted, what is on disk is whole lines.
  const beforeResume = readFileSync(out, 'utf8');
  const kept = parseJsonl(beforeResume.slice(0, beforeResume.lastIndexOf('\n') + 1));
  assert.ok(kept.length >= 1 && kept.length < sources.size, `${kept.length} records before the kill`);
  // As if the kill had landed in the middle of writing a record.
  appendFileSync(out, `{"path":${JSON.stringify(join(dir, 'img-089.png'))},"sha256":"0`);

  const resumed = runCli(['caption', ...FAST, dir, '--output', out, '--resume']);
  assert.is(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, `${out}: dropped an unfinished last line`);
  assert.match(resumed.stderr, `${out}: ${kept.length} of 90 images already captioned\n`);
  const complete = readFileSync(out, 'utf8');
  const records = parseJsonl(complete);
  assert.equal(records.slice(0, kept.length), kept, 'records from before the kill are kept as they were');
  assertComplete(records, sources);

  const again = runCli(['caption', ...FAST, dir, '--output', out, '--resume']);
  assert.is(again.code, 0, again.stderr);
  assert.is(readFileSync(out, 'utf8'), complete, 'a finished file is left as it is');
  assert.match(again.stderr, 'nothing to caption');
});

test('Ctrl-C stops after the current image, keeps the file valid and exits 130', async () => {
  const { dir, sources } = manyImages(90);
  const out = join(dir, 'captions.jsonl');
  const run = spawnCli(['caption', ...FAST, dir, '--output', out]);
  await waitForLines(out, 1);
  run.child.kill('SIGINT');
  assert.equal(await run.exit, { code: 130, signal: null });
  const kept = readJsonl(out);
  assert.ok(kept.length >= 1 && kept.length < sources.size, `${kept.length} records before Ctrl-C`);

  const resumed = runCli(['caption', ...FAST, dir, '--output', out, '--resume']);
  assert.is(resumed.code, 0, resumed.stderr);
  assert.not.match(resumed.stderr, 'dropped');
  assertComplete(readJsonl(out), sources);
});

test('with --batch, a kill or Ctrl-C keeps every finished record whole, and --resume completes the run', async () => {
  for (const signal of ['SIGKILL', 'SIGINT'] as const) {
    const { dir, sources } = manyImages(90);
    const out = join(dir, 'captions.jsonl');
    const run = spawnCli(['caption', ...FAST, '--batch', '4', dir, '--output', out]);
    await waitForLines(out, 1);
    run.child.kill(signal);
    const exit = await run.exit;
    assert.equal(exit, signal === 'SIGINT' ? { code: 130, signal: null } : { code: null, signal: 'SIGKILL' });
    const text = readFileSync(out, 'utf8');
    const kept = parseJsonl(text.slice(0, text.lastIndexOf('\n') + 1));
    assert.ok(kept.length >= 1 && kept.length < sources.size, `${kept.length} records before ${signal}`);
    if (signal === 'SIGINT') assert.is(text, `${kept.map((record) => JSON.stringify(record)).join('\n')}\n`);

    const resumed = runCli(['caption', ...FAST, '--batch', '4', dir, '--output', out, '--resume']);
    assert.is(resumed.code, 0, resumed.stderr);
    const records = readJsonl(out);
    assert.equal(records.slice(0, kept.length), kept, 'records from before the stop are kept as they were');
    assertComplete(records, sources);
  }
});

test('--resume captions a changed file again and retries failed images', () => {
  const dir = imageFolder({ 'a.png': RINGS, 'b.png': SHAPES, 'c.png': STRIPES });
  writeFileSync(join(dir, 'd.png'), 'not yet an image');
  const out = join(dir, 'captions.jsonl');
  const first = runCli(['caption', ...FAST, dir, '--output', out]);
  assert.is(first.code, 2, first.stderr);
  const before = readJsonl(out);
  assert.equal(
    before.map((record) => [basename(record.path), record.code ?? 'ok']),
    [
      ['a.png', 'ok'],
      ['b.png', 'ok'],
      ['c.png', 'ok'],
      ['d.png', 'not_image'],
    ],
  );

  copyFileSync(STRIPES, join(dir, 'b.png')); // b changes content
  copyFileSync(RINGS, join(dir, 'd.png')); // d becomes readable
  const resumed = runCli(['caption', ...FAST, dir, '--output', out, '--resume']);
  assert.is(resumed.code, 0, resumed.stderr);
  const after = readJsonl(out);
  assert.equal(after.slice(0, 4), before, 'earlier records stay');
  const added = after.slice(4);
  assert.equal(
    added.map((record) => basename(record.path)),
    ['b.png', 'd.png'],
  );
  const byPath = new Map(before.map((record) => [basename(record.path), record]));
  // The new b is the stripes image: same hash and caption as c, which has that content.
  assert.is(added[0]?.sha256, byPath.get('c.png')?.sha256);
  assert.is(added[0]?.caption, byPath.get('c.png')?.caption);
  assert.is(added[1]?.sha256, byPath.get('a.png')?.sha256);
  assert.is(added[1]?.caption, byPath.get('a.png')?.caption);
});

test('a resumed run that still has failures exits 2', () => {
  const dir = imageFolder({ 'a.png': RINGS });
  writeFileSync(join(dir, 'b.png'), 'broken');
  const out = join(dir, 'captions.jsonl');
  assert.is(runCli(['caption', ...FAST, dir, '-o', out]).code, 2);
  const resumed = runCli(['caption', ...FAST, dir, '-o', out, '--resume']);
  assert.is(resumed.code, 2, resumed.stderr);
  assert.equal(
    readJsonl(out).map((record) => [basename(record.path), record.code ?? 'ok']),
    [
      ['a.png', 'ok'],
      ['b.png', 'not_image'],
      ['b.png', 'not_image'],
    ],
  );
});

test.run();

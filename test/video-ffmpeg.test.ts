// Which ffmpeg glimpse runs: $GLIMPSE_FFMPEG, else `ffmpeg` on PATH, else the npm build.

import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { findFfmpeg } from '../src/media/ffmpeg.js';
import { errorLine, runCli } from './helpers/cli.js';
import { glimpseErrorMessage } from './helpers/errors.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { SQUARE_VIDEO } from './helpers/video.js';

const BUNDLED = (createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path: string }).path;

test.after.each(removeTempDirs);

function writeScript(dir: string, name: string, body: string, mode = 0o755): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, mode);
  return path;
}

test('GLIMPSE_FFMPEG wins over PATH; a bare name is looked up on PATH', () => {
  const dir = tempDir();
  const configured = writeScript(join(dir, 'custom'), 'my-ffmpeg', 'exit 0');
  writeScript(join(dir, 'bin'), 'ffmpeg', 'exit 0');
  const PATH = [join(dir, 'bin'), join(dir, 'custom')].join(':');
  assert.equal(findFfmpeg({ GLIMPSE_FFMPEG: configured, PATH }), { path: configured, origin: 'GLIMPSE_FFMPEG' });
  assert.equal(findFfmpeg({ GLIMPSE_FFMPEG: 'my-ffmpeg', PATH }), { path: configured, origin: 'GLIMPSE_FFMPEG' });
});

test('then the first executable ffmpeg on PATH', () => {
  const dir = tempDir();
  writeScript(join(dir, 'a'), 'ffmpeg', 'exit 0', 0o644); // not executable: skipped
  const onPath = writeScript(join(dir, 'b'), 'ffmpeg', 'exit 0');
  const PATH = ['', join(dir, 'missing'), join(dir, 'a'), join(dir, 'b')].join(':');
  assert.equal(findFfmpeg({ PATH }), { path: onPath, origin: 'PATH' });
  assert.equal(findFfmpeg({ GLIMPSE_FFMPEG: '', PATH }), { path: onPath, origin: 'PATH' });
});

test('then the static build from the npm package', () => {
  assert.ok(existsSync(BUNDLED), BUNDLED);
  assert.equal(findFfmpeg({ PATH: tempDir() }), { path: BUNDLED, origin: '@ffmpeg-installer/ffmpeg' });
});

test('a GLIMPSE_FFMPEG that is not an executable file is an input error', async () => {
  const dir = tempDir();
  const notExecutable = writeScript(dir, 'ffmpeg', 'exit 0', 0o644);
  for (const value of [join(dir, 'nope'), notExecutable, dir, 'no-such-ffmpeg']) {
    assert.is(
      await glimpseErrorMessage('input', () => findFfmpeg({ GLIMPSE_FFMPEG: value, PATH: dir })),
      `ffmpeg not found: GLIMPSE_FFMPEG is ${value}, which is not an executable file`,
    );
  }
});

test('the CLI runs the ffmpeg found on PATH', () => {
  const dir = tempDir();
  const calls = join(dir, 'calls.log');
  // Logs each call, then hands over to the real ffmpeg.
  writeScript(join(dir, 'bin'), 'ffmpeg', `echo called >> '${calls}'\nexec '${BUNDLED}' "$@"`);
  const result = runCli(['video', '--frames', '2', '--max-tokens', '1', SQUARE_VIDEO], {
    env: { PATH: `${join(dir, 'bin')}:${process.env.PATH ?? ''}`, GLIMPSE_FFMPEG: undefined },
  });
  assert.is(result.code, 0, result.stderr);
  // One probe and one extraction per frame.
  assert.is(readFileSync(calls, 'utf8'), 'called\n'.repeat(3));
});

test('GLIMPSE_FFMPEG pointing nowhere fails the CLI with exit code 2', () => {
  const result = runCli(['video', SQUARE_VIDEO], { env: { GLIMPSE_FFMPEG: '/nonexistent/ffmpeg' } });
  assert.is(result.code, 2);
  assert.is(
    errorLine(result),
    'glimpse: ffmpeg not found: GLIMPSE_FFMPEG is /nonexistent/ffmpeg, which is not an executable file',
  );
});

test('a GLIMPSE_FFMPEG that is not ffmpeg is named in the error', () => {
  const dir = tempDir();
  const silent = writeScript(dir, 'silent', 'exit 1');
  const result = runCli(['video', SQUARE_VIDEO], { env: { GLIMPSE_FFMPEG: silent } });
  assert.is(result.code, 2);
  assert.is(errorLine(result), `glimpse: ${silent} said nothing about ${SQUARE_VIDEO} (exit code 1); is it ffmpeg?`);
});

test.run();

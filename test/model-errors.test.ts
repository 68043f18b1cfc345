import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { errorLine, runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';

test.after.each(removeTempDirs);

function modelFailure(args: string[], env?: Record<string, string>): string {
  const result = runCli(args, { env });
  assert.is(result.code, 3, result.stderr);
  return errorLine(result);
}

test('a missing model directory exits 3 with one line', () => {
  const missing = join(tempDir(), 'no-such-model');
  assert.is(modelFailure(['ask', '--model', missing, 'hi']), `glimpse: model directory not found: ${missing}`);
  assert.is(modelFailure(['inspect', missing]), `glimpse: model directory not found: ${missing}`);
});

test('GLIMPSE_MODEL is used when --model is absent', () => {
  const missing = join(tempDir(), 'env-model');
  assert.is(modelFailure(['ask', 'hi'], { GLIMPSE_MODEL: missing }), `glimpse: model directory not found: ${missing}`);
});

test('a repo id missing from the Hugging Face cache exits 3 naming the cache', () => {
  const hubCache = tempDir();
  const line = modelFailure(['ask', '--model', 'org/not-downloaded', 'hi'], { HF_HUB_CACHE: hubCache });
  assert.ok(line.includes("'org/not-downloaded'") && line.includes(hubCache), line);
});

test('a directory without config.json exits 3 with one line naming the file', () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'empty-model'));
  const model = join(dir, 'empty-model');
  const line = modelFailure(['ask', '--model', model, 'hi']);
  assert.ok(line.includes('config.json'), line);
  assert.is(modelFailure(['inspect', model]), line);
});

test('a config.json that is not JSON exits 3 with one line', () => {
  const model = tempDir();
  writeFileSync(join(model, 'config.json'), '{ "model_type": "llava", ');
  const line = modelFailure(['inspect', '--model', model]);
  assert.ok(line.includes('config.json'), line);
});

test.run();

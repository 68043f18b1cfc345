import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { DEFAULT_MODEL_DIR, findInHubCache, hubCacheDir, resolveModelDir } from '../src/model-path.js';
import { ROOT } from './helpers/cli.js';
import { glimpseErrorMessage } from './helpers/errors.js';
import { removeTempDirs, tempDir } from './helpers/files.js';

/** Lays out a repo the way huggingface_hub caches it; returns the snapshot folder. */
function cacheRepo(hubCache: string, repoId: string, revision: string, pointRefAtIt = true): string {
  const repoDir = join(hubCache, `models--${repoId.replace('/', '--')}`);
  const snapshot = join(repoDir, 'snapshots', revision);
  mkdirSync(snapshot, { recursive: true });
  writeFileSync(join(snapshot, 'config.json'), '{}');
  if (pointRefAtIt) {
    mkdirSync(join(repoDir, 'refs'), { recursive: true });
    writeFileSync(join(repoDir, 'refs', 'main'), `${revision}\n`);
  }
  return snapshot;
}

function modelError(run: () => unknown): Promise<string> {
  return glimpseErrorMessage('model', run);
}

test.after.each(removeTempDirs);

test('a directory is used as it is, made absolute', () => {
  const dir = tempDir();
  assert.is(resolveModelDir(dir, {}), dir);
  assert.is(resolveModelDir('test', {}), resolve('test'));
});

test('--model wins over GLIMPSE_MODEL, which wins over the default', () => {
  const flagDir = tempDir();
  const envDir = tempDir();
  const defaultDir = tempDir();
  assert.is(resolveModelDir(flagDir, { GLIMPSE_MODEL: envDir }, defaultDir), flagDir);
  assert.is(resolveModelDir(undefined, { GLIMPSE_MODEL: envDir }, defaultDir), envDir);
  assert.is(resolveModelDir(undefined, { GLIMPSE_MODEL: '' }, defaultDir), defaultDir);
  assert.is(resolveModelDir(undefined, {}, defaultDir), defaultDir);
});

test('a missing default model is a model error that says how to pick one', async () => {
  const missing = join(tempDir(), 'default');
  const message = await modelError(() => resolveModelDir(undefined, {}, missing));
  assert.ok(message.includes(missing), message);
  assert.ok(message.includes('--model'), message);
});

test('the default model lives in models/default under the package root', () => {
  assert.is(DEFAULT_MODEL_DIR, join(ROOT, 'models', 'default'));
});

test('a repo id is found in HF_HUB_CACHE through refs/main', () => {
  const hubCache = tempDir();
  cacheRepo(hubCache, 'org/model', 'aaaa1111', false);
  const snapshot = cacheRepo(hubCache, 'org/model', 'bbbb2222');
  assert.is(resolveModelDir('org/model', { HF_HUB_CACHE: hubCache }), snapshot);
});

test('HF_HOME/hub is the cache when HF_HUB_CACHE is not set', () => {
  const hfHome = tempDir();
  const snapshot = cacheRepo(join(hfHome, 'hub'), 'llava-hf/llava-1.5-7b-hf', 'c0ffee');
  assert.is(resolveModelDir('llava-hf/llava-1.5-7b-hf', { HF_HOME: hfHome }), snapshot);
});

test('HF_HUB_CACHE takes precedence over HF_HOME', () => {
  const hubCache = tempDir();
  const hfHome = tempDir();
  const wanted = cacheRepo(hubCache, 'org/model', 'one');
  cacheRepo(join(hfHome, 'hub'), 'org/model', 'two');
  assert.is(resolveModelDir('org/model', { HF_HUB_CACHE: hubCache, HF_HOME: hfHome }), wanted);
});

test('without HF variables the cache is under XDG_CACHE_HOME or ~/.cache', () => {
  const xdg = tempDir();
  assert.is(hubCacheDir({ XDG_CACHE_HOME: xdg }), join(xdg, 'huggingface', 'hub'));
  assert.ok(hubCacheDir({}).endsWith(join('.cache', 'huggingface', 'hub')));
  const snapshot = cacheRepo(join(xdg, 'huggingface', 'hub'), 'org/model', 'abc');
  assert.is(resolveModelDir('org/model', { XDG_CACHE_HOME: xdg }), snapshot);
});

test('a repo id that is not cached is a model error naming the cache', async () => {
  const hubCache = tempDir();
  const message = await modelError(() => resolveModelDir('org/absent', { HF_HUB_CACHE: hubCache }));
  assert.ok(message.includes("'org/absent'"), message);
  assert.ok(message.includes(hubCache), message);
});

test('a ref pointing at a snapshot that is not there counts as not cached', async () => {
  const hubCache = tempDir();
  const repoDir = join(hubCache, 'models--org--model');
  mkdirSync(join(repoDir, 'refs'), { recursive: true });
  writeFileSync(join(repoDir, 'refs', 'main'), 'deadbeef');
  assert.is(findInHubCache('org/model', { HF_HUB_CACHE: hubCache }), undefined);
  await modelError(() => resolveModelDir('org/model', { HF_HUB_CACHE: hubCache }));
});

test('a missing path or a file is a model error', async () => {
  const dir = tempDir();
  const file = join(dir, 'model.safetensors');
  writeFileSync(file, '');
  assert.is(await modelError(() => resolveModelDir(file, {})), `model path is not a directory: ${file}`);
  const missing = join(dir, 'nope');
  assert.is(await modelError(() => resolveModelDir(missing, {})), `model directory not found: ${missing}`);
  assert.is(await modelError(() => resolveModelDir('./nope/', {})), 'model directory not found: ./nope/');
});

test.run();

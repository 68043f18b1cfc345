// Finds the model directory from --model, GLIMPSE_MODEL or the bundled default.
// A Hugging Face repo id is looked up in the local HF cache only; glimpse never downloads.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { GlimpseError } from './errors.js';

/** `<package root>/models/default`; this file sits one level below the root in src/ and dist/. */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../models/default', import.meta.url));

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** The hub cache folder, following huggingface_hub's own precedence. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  const hfHome = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(hfHome, 'hub');
}

/** The snapshot folder `refs/main` points at, or undefined when the repo is not cached. */
export function findInHubCache(repoId: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const repoDir = join(hubCacheDir(env), `models--${repoId.replaceAll('/', '--')}`);
  let revision: string;
  try {
    revision = readFileSync(join(repoDir, 'refs', 'main'), 'utf8').trim();
  } catch {
    return undefined;
  }
  const snapshot = join(repoDir, 'snapshots', revision);
  return revision !== '' && isDirectory(snapshot) ? snapshot : undefined;
}

/**
 * Resolves the model to a directory: `flag`, else `GLIMPSE_MODEL`, else the default model.
 * Whether the directory holds a usable model is for the engine to judge.
 */
export function resolveModelDir(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  defaultDir: string = DEFAULT_MODEL_DIR,
): string {
  const spec = flag ?? (env.GLIMPSE_MODEL || undefined);
  if (spec === undefined) {
    if (isDirectory(defaultDir)) return defaultDir;
    throw new GlimpseError(
      'model',
      `no model given and the default model is missing (${defaultDir}); use --model DIR or set GLIMPSE_MODEL`,
    );
  }
  if (isDirectory(spec)) return resolve(spec);
  if (existsSync(spec)) throw new GlimpseError('model', `model path is not a directory: ${spec}`);
  if (REPO_ID.test(spec)) {
    const snapshot = findInHubCache(spec, env);
    if (snapshot) return snapshot;
    throw new GlimpseError(
      'model',
      `model not found: '${spec}' is neither a directory nor in the Hugging Face cache (${hubCacheDir(env)})`,
    );
  }
  throw new GlimpseError('model', `model directory not found: ${spec}`);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

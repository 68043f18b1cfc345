// Finds an ffmpeg executable and runs it with its output piped back to us.
// Order: $GLIMPSE_FFMPEG, then `ffmpeg` on PATH (the user's own build, usually the newest
// codecs), then the static build shipped inside the @ffmpeg-installer npm package.

import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';

import { GlimpseError, oneLine } from '../errors.js';

export interface Ffmpeg {
  path: string;
  /** Where the path came from, for messages: `GLIMPSE_FFMPEG`, `PATH` or the npm package. */
  origin: string;
}

const BUNDLED_PACKAGE = '@ffmpeg-installer/ffmpeg';

export function findFfmpeg(env: NodeJS.ProcessEnv = process.env): Ffmpeg {
  const configured = env.GLIMPSE_FFMPEG;
  if (configured !== undefined && configured !== '') {
    // A name without a slash is looked up on PATH, as a shell would.
    const path = configured.includes('/') ? configured : searchPath(configured, env);
    if (path === undefined || !isExecutableFile(path)) {
      const problem = `GLIMPSE_FFMPEG is ${configured}, which is not an executable file`;
      throw new GlimpseError('input', `ffmpeg not found: ${problem}`);
    }
    return { path, origin: 'GLIMPSE_FFMPEG' };
  }
  const onPath = searchPath('ffmpeg', env);
  if (onPath !== undefined) return { path: onPath, origin: 'PATH' };
  const bundled = bundledFfmpeg();
  if (bundled !== undefined) return { path: bundled, origin: BUNDLED_PACKAGE };
  throw new GlimpseError(
    'input',
    'ffmpeg not found: install ffmpeg on PATH, or set GLIMPSE_FFMPEG to the ffmpeg executable',
  );
}

function searchPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The package throws (a string, not an Error) when its platform binary is not installed. */
function bundledFfmpeg(): string | undefined {
  try {
    const { path } = createRequire(import.meta.url)(BUNDLED_PACKAGE) as { path: string };
    return isExecutableFile(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

export interface FfmpegResult {
  /** The exit status; null when ffmpeg was ended by a signal. */
  code: number | null;
  stderr: string;
}

export interface RunOptions {
  /** Receives stdout as it arrives; throwing stops ffmpeg and rejects with that error. */
  onStdout?: (chunk: Buffer) => void;
  /** Aborting kills ffmpeg and rejects with a cancelled error. */
  signal?: AbortSignal;
}

/** ffmpeg's stderr is only read for messages; a runaway log must not fill memory. */
const MAX_STDERR_BYTES = 1 << 20;

/** Runs ffmpeg to completion. A non-zero exit is not an error here: callers judge the output. */
export function runFfmpeg(ffmpeg: Ffmpeg, args: string[], options: RunOptions = {}): Promise<FfmpegResult> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new GlimpseError('cancelled', 'cancelled'));
      return;
    }
    const child = spawn(ffmpeg.path, args, { stdio: ['ignore', 'pipe', 'pipe'], signal: options.signal });
    const stderr: Buffer[] = [];
    let stderrBytes = 0;
    let failure: unknown;

    child.stdout.on('data', (chunk: Buffer) => {
      if (failure !== undefined) return;
      try {
        options.onStdout?.(chunk);
      } catch (error) {
        failure = error;
        child.kill();
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderrBytes >= MAX_STDERR_BYTES) return;
      stderr.push(chunk);
      stderrBytes += chunk.length;
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.name === 'AbortError') failure ??= new GlimpseError('cancelled', 'cancelled');
      else failure ??= new GlimpseError('input', `cannot run ffmpeg (${ffmpeg.path}): ${oneLine(error.message)}`);
      // 'close' may never come when the process could not start.
      if (child.pid === undefined) reject(failure);
    });
    child.on('close', (code) => {
      if (failure !== undefined) reject(failure);
      else resolve({ code, stderr: Buffer.concat(stderr).toString('utf8') });
    });
  });
}

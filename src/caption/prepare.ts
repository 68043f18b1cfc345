// Reads, hashes and decodes one image ahead of its turn. The result is always a value,
// never a rejection: a prefetched image whose turn never comes (Ctrl-C, a fatal error)
// must not surface later as an unhandled rejection.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

import { GlimpseError, toGlimpseError } from '../errors.js';
import { loadImage, type RgbImage } from '../media/image.js';
import type { FailureCode, FailureRecord } from './records.js';

export interface ReadyImage {
  kind: 'ready';
  path: string;
  sha256: string;
  image: RgbImage;
}

export type PreparedImage =
  | ReadyImage
  | { kind: 'failed'; record: FailureRecord }
  /** Not the image's fault (a bug): the run stops with this error. */
  | { kind: 'fatal'; error: GlimpseError };

export async function prepareImage(path: string, maxPixels: number | undefined): Promise<PreparedImage> {
  let sha256: string;
  try {
    sha256 = await hashFile(path);
  } catch (error) {
    return { kind: 'failed', record: readFailure(path, error as NodeJS.ErrnoException) };
  }
  try {
    // The decoder reads the file again; both reads come from the page cache.
    const image = await loadImage(path, { maxPixels });
    return { kind: 'ready', path, sha256, image };
  } catch (error) {
    const failure = toGlimpseError(error);
    if (failure.kind !== 'input') return { kind: 'fatal', error: failure };
    return { kind: 'failed', record: { path, error: failure.message, code: decodeFailureCode(failure.message) } };
  }
}

/** SHA-256 of the file's bytes, hex. */
export async function hashFile(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

function readFailure(path: string, error: NodeJS.ErrnoException): FailureRecord {
  switch (error.code) {
    case 'ENOENT':
      return { path, error: `image not found: ${path}`, code: 'not_found' };
    case 'EISDIR':
      return { path, error: `${path}: is a directory, not an image`, code: 'unreadable' };
    case 'EACCES':
      return { path, error: `${path}: permission denied`, code: 'unreadable' };
    default:
      return { path, error: `${path}: cannot read (${error.message})`, code: 'unreadable' };
  }
}

/**
 * The decoder (media/image.ts) reports every failure as an input error whose message says
 * which it was; the file was readable a moment ago, so the rest are decoding failures.
 */
function decodeFailureCode(message: string): FailureCode {
  if (/over the limit of \d+ pixels/.test(message)) return 'too_large';
  if (/not an image/.test(message)) return 'not_image';
  if (/^image not found/.test(message)) return 'not_found';
  if (/(permission denied|is a directory|cannot read)/.test(message)) return 'unreadable';
  return 'corrupt';
}

// Reads, hashes and decodes one image ahead of its turn. The file is read once, and the
// hash and the pixels both come from those bytes, so a record's `sha256` is always that of
// what was captioned, and a pipe (`<(curl ...)`) can be captioned too. The result is always
// a value, never a rejection: a prefetched image whose turn never comes (Ctrl-C, a fatal
// error) must not surface later as an unhandled rejection.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

import { GlimpseError, toGlimpseError } from '../errors.js';
import { decodeImage, type RgbImage } from '../media/image.js';
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
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    return { kind: 'failed', record: readFailure(path, error as NodeJS.ErrnoException) };
  }
  try {
    const image = await decodeImage(bytes, path, { maxPixels });
    return { kind: 'ready', path, sha256: sha256Hex(bytes), image };
  } catch (error) {
    const failure = toGlimpseError(error);
    if (failure.kind !== 'input') return { kind: 'fatal', error: failure };
    return { kind: 'failed', record: { path, error: failure.message, code: decodeFailureCode(failure.message) } };
  }
}

/** SHA-256 of the file's bytes, hex. */
export async function hashFile(path: string): Promise<string> {
  return sha256Hex(await readFile(path));
}

function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
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

/** The decoder (media/image.ts) reports every failure as an input error whose message says which it was. */
function decodeFailureCode(message: string): FailureCode {
  if (/over the limit of \d+ pixels/.test(message)) return 'too_large';
  if (/not an image/.test(message)) return 'not_image';
  return 'corrupt';
}

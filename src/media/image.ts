// Decodes an image file into the raw 8-bit RGB pixels the engine takes.
// Orientation follows EXIF (what a viewer shows), colour is converted to sRGB and any
// alpha channel is dropped without compositing (as PIL's convert('RGB') does).

import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';

import sharp from 'sharp';

import { GlimpseError, oneLine } from '../errors.js';

export interface RgbImage {
  width: number;
  height: number;
  /** `width * height * 3` bytes, row-major, no padding. */
  data: Uint8Array;
}

/** Refuse images above this many pixels unless told otherwise (decompression bombs). */
export const DEFAULT_MAX_PIXELS = 100_000_000;

export interface ImageOptions {
  maxPixels?: number;
}

export async function loadImage(path: string, options: ImageOptions = {}): Promise<RgbImage> {
  return decodeImage(await readImageFile(path), path, options);
}

/** Decodes the bytes of an image file already read; `path` only names it in errors. */
export async function decodeImage(bytes: Buffer, path: string, options: ImageOptions = {}): Promise<RgbImage> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const decoderOptions = { limitInputPixels: maxPixels, autoOrient: true, failOn: 'error' } as const;

  // The header alone tells the size, so an oversized image is refused before decoding,
  // with its real size in the message (the decoder's own limit check would not say).
  const { width, height } = await sharp(bytes, { limitInputPixels: false })
    .metadata()
    .catch((error: unknown) => {
      throw decodeError(path, error);
    });
  if (width * height > maxPixels) {
    throw new GlimpseError(
      'input',
      `${path}: image is ${width}x${height} (${width * height} pixels), over the limit of ${maxPixels} pixels`,
    );
  }

  const { data, info } = await sharp(bytes, decoderOptions)
    .toColourspace('srgb')
    .removeAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true })
    .catch((error: unknown) => {
      throw decodeError(path, error);
    });
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new GlimpseError('input', `${path}: decoded to ${info.channels} channels instead of RGB`);
  }
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

async function readImageFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new GlimpseError('input', `image not found: ${path}`);
    if (code === 'EISDIR') throw new GlimpseError('input', `${path}: is a directory, not an image`);
    if (code === 'EACCES') throw new GlimpseError('input', `${path}: permission denied`);
    throw new GlimpseError('input', `${path}: cannot read (${(error as Error).message})`);
  }
}

function decodeError(path: string, error: unknown): GlimpseError {
  const message = oneLine(error instanceof Error ? error.message : String(error));
  if (/unsupported image format/i.test(message)) {
    return new GlimpseError('input', `${path}: not an image (unsupported or unrecognised format)`);
  }
  return new GlimpseError('input', `${path}: cannot decode image (${message})`);
}

/** File extensions taken as images (folders and patterns in `caption`; telling an image from a prompt in `ask`). */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  '.avif',
  '.bmp',
  '.gif',
  '.heic',
  '.heif',
  '.jpeg',
  '.jpg',
  '.png',
  '.tif',
  '.tiff',
  '.webp',
]);

export function hasImageExtension(path: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(path).toLowerCase());
}

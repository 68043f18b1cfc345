// `--show-kept FILE`: writes the images with what the reduction kept drawn on them, as PNG
// (one file per image) or as one HTML page with the answer too. The file name is checked
// before the model loads, so a wrong extension or folder fails at once.

import { accessSync, constants } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, extname } from 'node:path';

import sharp from 'sharp';

import type { GenerateOutput } from '../engine.js';
import { GlimpseError, oneLine } from '../errors.js';
import type { RgbImage } from '../media/image.js';
import { type AnswerPiece, keptHtml } from './kept-html.js';
import { drawKept } from './kept-image.js';

export type ShowKeptFormat = 'png' | 'html';

/** The format `path` asks for; a usage error for other names or a folder that cannot be written. */
export function checkShowKeptPath(path: string): ShowKeptFormat {
  const format = formatOf(path);
  if (format === undefined) {
    throw new GlimpseError('usage', `--show-kept ${path}: the file name must end in .png or .html`);
  }
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch {
    throw new GlimpseError('usage', `--show-kept ${path}: cannot write into ${dirname(path)}`);
  }
  return format;
}

function formatOf(path: string): ShowKeptFormat | undefined {
  const extension = extname(path).toLowerCase();
  return extension === '.png' ? 'png' : extension === '.html' ? 'html' : undefined;
}

/** `out.png` for one image; `out-1.png`, `out-2.png`… for several. */
export function pngPaths(path: string, count: number): string[] {
  if (count === 1) return [path];
  const extension = extname(path);
  const stem = path.slice(0, path.length - extension.length);
  return Array.from({ length: count }, (_, i) => `${stem}-${i + 1}${extension}`);
}

/**
 * Draws every image of the generation and writes the file(s) `path` names; `answer` is the
 * streamed answer, for the HTML page. Returns the paths written.
 */
export async function writeShowKept(
  path: string,
  images: RgbImage[],
  result: GenerateOutput,
  answer: AnswerPiece[],
): Promise<string[]> {
  const reports = result.reduction.images;
  if (reports.length !== images.length) {
    throw new GlimpseError('internal', `internal error: ${images.length} images but ${reports.length} image reports`);
  }
  const pngs = await Promise.all(images.map((image, i) => encodePng(drawKept(image, reports[i]!))));
  if (formatOf(path) === 'html') {
    await write(path, keptHtml({ images: pngs, answer, report: result.reduction }));
    return [path];
  }
  const paths = pngPaths(path, pngs.length);
  await Promise.all(paths.map((file, i) => write(file, pngs[i]!)));
  return paths;
}

export async function encodePng(image: RgbImage): Promise<Uint8Array> {
  const raw = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.length);
  return sharp(raw, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
}

async function write(path: string, content: string | Uint8Array): Promise<void> {
  try {
    await writeFile(path, content);
  } catch (error) {
    throw new GlimpseError('input', `cannot write ${path}: ${oneLine((error as Error).message)}`);
  }
}

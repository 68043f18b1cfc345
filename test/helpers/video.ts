// The fixture videos and how to read a frame of the moving-square video back to its index.

import { join } from 'node:path';

import type { RgbImage } from '../../src/media/image.js';
import { FIXTURES } from './cli.js';

export const VIDEOS = join(FIXTURES, 'videos');

/**
 * test/fixtures/videos/square-64x48-10fps.mp4 (made by tools/make_example_media.mjs):
 * 20 frames at 10 fps; in frame i an orange 8x8 square has its left edge at x = 4 + 2i.
 */
export const SQUARE_VIDEO = join(VIDEOS, 'square-64x48-10fps.mp4');
export const SQUARE_VIDEO_FPS = 10;
export const SQUARE_VIDEO_FRAMES = 20;

/** Which frame of the square video this is, from the mean column of its orange pixels. */
export function squareFrameIndex(image: RgbImage): number {
  let sum = 0;
  let count = 0;
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const at = (y * image.width + x) * 3;
      const [r, , b] = [image.data[at]!, image.data[at + 1]!, image.data[at + 2]!];
      if (r > 180 && b < 100) {
        sum += x;
        count += 1;
      }
    }
  }
  if (count === 0) throw new Error('no orange square in the frame');
  const index = (sum / count - 7.5) / 2; // the square's centre column is 4 + 2i + 3.5
  if (Math.abs(index - Math.round(index)) > 0.25) throw new Error(`square between positions: ${index}`);
  return Math.round(index);
}

/** The frame on screen at time t in a constant-rate video: the last one starting at or before t. */
export function frameOnScreen(timeS: number, fps = SQUARE_VIDEO_FPS): number {
  return Math.floor(timeS * fps + 1e-9);
}

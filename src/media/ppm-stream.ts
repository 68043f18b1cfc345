// Splits a stream of binary PPM images (what `ffmpeg -c:v ppm -f image2pipe` writes) into
// RGB frames. Each frame is raw 8-bit RGB behind a short text header that states its size,
// so the size is read from the frames themselves: whatever ffmpeg did to them (rotation
// from metadata, aspect-ratio correction, the size cap), the bytes are cut correctly.

import type { RgbImage } from './image.js';

/** `P6 <width> <height> 255` and one whitespace byte; ffmpeg writes no comments. */
const HEADER = /^P6\s+(\d+)\s+(\d+)\s+(\d+)\s/;
/** A header is a few dozen bytes; more without a match means the stream is not PPM. */
const MAX_HEADER_BYTES = 64;

export class PpmStreamError extends Error {}

export class PpmFrameStream {
  readonly #maxSide: number;
  readonly #onFrame: (frame: RgbImage) => void;
  #header = Buffer.alloc(0);
  #frame: RgbImage | undefined;
  #filled = 0;

  /** Frames wider or taller than `maxSide` are refused before their bytes are stored. */
  constructor(maxSide: number, onFrame: (frame: RgbImage) => void) {
    this.#maxSide = maxSide;
    this.#onFrame = onFrame;
  }

  push(chunk: Buffer): void {
    let rest = chunk;
    while (rest.length > 0) {
      if (this.#frame === undefined) rest = this.#readHeader(rest);
      else rest = this.#readPixels(rest, this.#frame);
    }
  }

  /** Throws if the stream stopped inside a frame. */
  end(): void {
    if (this.#frame !== undefined || this.#header.length > 0) {
      throw new PpmStreamError('ffmpeg output ended in the middle of a frame');
    }
  }

  #readHeader(chunk: Buffer): Buffer {
    const pending = Buffer.concat([this.#header, chunk]);
    const match = HEADER.exec(pending.subarray(0, MAX_HEADER_BYTES).toString('latin1'));
    if (match === null) {
      if (pending.length >= MAX_HEADER_BYTES || !'P6'.startsWith(pending.subarray(0, 2).toString('latin1'))) {
        throw new PpmStreamError('ffmpeg output is not a stream of RGB frames');
      }
      this.#header = pending;
      return Buffer.alloc(0);
    }
    const width = Number(match[1]);
    const height = Number(match[2]);
    const maxValue = Number(match[3]);
    if (maxValue !== 255) throw new PpmStreamError(`ffmpeg wrote ${maxValue + 1}-level frames instead of 8-bit ones`);
    if (width < 1 || height < 1 || width > this.#maxSide || height > this.#maxSide) {
      throw new PpmStreamError(`ffmpeg wrote a ${width}x${height} frame, outside 1..${this.#maxSide} pixels a side`);
    }
    this.#header = Buffer.alloc(0);
    this.#frame = { width, height, data: new Uint8Array(width * height * 3) };
    this.#filled = 0;
    return pending.subarray(match[0].length);
  }

  #readPixels(chunk: Buffer, frame: RgbImage): Buffer {
    const take = Math.min(chunk.length, frame.data.length - this.#filled);
    frame.data.set(chunk.subarray(0, take), this.#filled);
    this.#filled += take;
    if (this.#filled === frame.data.length) {
      this.#frame = undefined;
      this.#onFrame(frame);
    }
    return chunk.subarray(take);
  }
}

// `--show-kept`: the user's image with what a reduction did drawn on it. The patches of
// tokens a prefill filter dropped are blended towards white, those evicted from the cache
// while decoding less so; tokens standing for several patches (merged or recycled) are
// outlined and key tokens get a small dot. Patches are placed on the source image through
// the geometry the engine reports, so the drawing matches what the model saw of it.
//
// A pixel belongs to a box when its centre lies inside it, so every pixel is either wholly
// in a patch or not, and the result is exact (no anti-aliasing to guess at in tests).

import type { ImageGeometry, ImageReport, TokenReport } from '../engine.js';
import type { RgbImage } from '../media/image.js';

/** How far dropped and evicted patches are blended towards white (0 = untouched, 1 = white). */
export const DROPPED_WHITEN = 0.75;
export const EVICTED_WHITEN = 0.4;
export const OUTLINE_COLOUR: readonly [number, number, number] = [255, 128, 0];
export const KEY_COLOUR: readonly [number, number, number] = [230, 0, 160];

/** A rectangle in canvas pixels, right and bottom exclusive. */
export interface CanvasBox {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

type PatchState = 'kept' | 'evicted' | 'dropped';

/** A copy of `image` with the report drawn on it. */
export function drawKept(image: RgbImage, report: ImageReport): RgbImage {
  const geometry = report.geometry;
  if (geometry === null) throw new Error('the reduction report has no image geometry');
  const out: RgbImage = { width: image.width, height: image.height, data: Uint8Array.from(image.data) };
  const painter = new Painter(out, geometry);

  patchStates(report).forEach((state, patch) => {
    if (state === 'kept') return;
    const amount = state === 'dropped' ? DROPPED_WHITEN : EVICTED_WHITEN;
    painter.fill(patchBox(geometry, report.grid, patch), (pixel) => whiten(pixel, amount));
  });

  const width = outlineWidth(geometry, report.grid);
  for (const token of report.tokens) {
    if (token.patches.length < 2) continue;
    for (const box of outlineBoxes(geometry, report.grid, token.patches, width)) {
      painter.fill(box, () => OUTLINE_COLOUR);
    }
  }
  for (const token of report.tokens) {
    if (token.key) painter.fill(keyDot(geometry, report.grid, token.patches), () => KEY_COLOUR);
  }
  return out;
}

/**
 * What became of each patch: kept while any token standing for it stayed to the end,
 * evicted when the last of them left the cache during decoding, dropped otherwise.
 */
export function patchStates(report: ImageReport): PatchState[] {
  const rank: Record<PatchState, number> = { dropped: 0, evicted: 1, kept: 2 };
  const states: PatchState[] = new Array<PatchState>(report.grid * report.grid).fill('dropped');
  for (const token of report.tokens) {
    const state = tokenState(token);
    for (const patch of token.patches) {
      if (rank[state] > rank[states[patch]!]) states[patch] = state;
    }
  }
  return states;
}

function tokenState(token: TokenReport): PatchState {
  if (token.dropped_after_layer !== null) return 'dropped';
  if (token.evicted_at_step !== null) return 'evicted';
  return 'kept';
}

/** The canvas box of one patch (raster index), clipped to the part of the canvas holding the image. */
export function patchBox(geometry: ImageGeometry, grid: number, patch: number): CanvasBox {
  const size = patchSize(geometry, grid);
  const [x, y] = [patch % grid, Math.floor(patch / grid)];
  const [left, top, right, bottom] = geometry.content;
  return {
    left: Math.max(left, x * size.width),
    top: Math.max(top, y * size.height),
    right: Math.min(right, (x + 1) * size.width),
    bottom: Math.min(bottom, (y + 1) * size.height),
  };
}

function patchSize(geometry: ImageGeometry, grid: number): { width: number; height: number } {
  return { width: geometry.canvas_width / grid, height: geometry.canvas_height / grid };
}

/** About a tenth of a patch, and at least one source pixel, in canvas pixels. */
function outlineWidth(geometry: ImageGeometry, grid: number): number {
  const size = patchSize(geometry, grid);
  const patchPixels = Math.min(size.width * geometry.scale_x, size.height * geometry.scale_y);
  return Math.max(1, Math.round(patchPixels / 10)) / Math.min(geometry.scale_x, geometry.scale_y);
}

/**
 * Bands along the border of a set of patches, inside it: for each patch, one band per side
 * whose neighbour is not in the set.
 */
function outlineBoxes(geometry: ImageGeometry, grid: number, patches: number[], width: number): CanvasBox[] {
  const members = new Set(patches);
  const boxes: CanvasBox[] = [];
  for (const patch of patches) {
    const [x, y] = [patch % grid, Math.floor(patch / grid)];
    const box = patchBox(geometry, grid, patch);
    const open = (dx: number, dy: number) => {
      const [nx, ny] = [x + dx, y + dy];
      return nx < 0 || ny < 0 || nx >= grid || ny >= grid || !members.has(ny * grid + nx);
    };
    if (open(0, -1)) boxes.push({ ...box, bottom: Math.min(box.bottom, box.top + width) });
    if (open(0, 1)) boxes.push({ ...box, top: Math.max(box.top, box.bottom - width) });
    if (open(-1, 0)) boxes.push({ ...box, right: Math.min(box.right, box.left + width) });
    if (open(1, 0)) boxes.push({ ...box, left: Math.max(box.left, box.right - width) });
  }
  return boxes;
}

/** A small square at the centre of the token's patches. */
function keyDot(geometry: ImageGeometry, grid: number, patches: number[]): CanvasBox {
  const size = patchSize(geometry, grid);
  const xs = patches.map((p) => p % grid);
  const ys = patches.map((p) => Math.floor(p / grid));
  const cx = ((Math.min(...xs) + Math.max(...xs) + 1) / 2) * size.width;
  const cy = ((Math.min(...ys) + Math.max(...ys) + 1) / 2) * size.height;
  const half = Math.min(size.width, size.height) / 8;
  return { left: cx - half, top: cy - half, right: cx + half, bottom: cy + half };
}

function whiten(pixel: readonly number[], amount: number): [number, number, number] {
  return [0, 1, 2].map((c) => Math.round(pixel[c]! + (255 - pixel[c]!) * amount)) as [number, number, number];
}

/** Writes into the source image through the geometry. */
class Painter {
  readonly #image: RgbImage;
  readonly #geometry: ImageGeometry;

  constructor(image: RgbImage, geometry: ImageGeometry) {
    this.#image = image;
    this.#geometry = geometry;
  }

  /** Sets every pixel whose centre lies in `box` to `colour(its current value)`. */
  fill(box: CanvasBox, colour: (pixel: readonly number[]) => readonly number[]): void {
    const { scale_x: sx, scale_y: sy, offset_x: ox, offset_y: oy } = this.#geometry;
    const [x0, x1] = pixelRange(box.left * sx + ox, box.right * sx + ox, this.#image.width);
    const [y0, y1] = pixelRange(box.top * sy + oy, box.bottom * sy + oy, this.#image.height);
    const data = this.#image.data;
    for (let y = y0; y < y1; y += 1) {
      for (let x = x0; x < x1; x += 1) {
        const at = (y * this.#image.width + x) * 3;
        const value = colour([data[at]!, data[at + 1]!, data[at + 2]!]);
        data[at] = value[0]!;
        data[at + 1] = value[1]!;
        data[at + 2] = value[2]!;
      }
    }
  }
}

/** The pixels whose centre `i + 0.5` lies in [start, end), clipped to [0, size). */
export function pixelRange(start: number, end: number, size: number): [number, number] {
  const first = Math.max(0, Math.ceil(start - 0.5));
  const last = Math.min(size, Math.ceil(end - 0.5));
  return [first, Math.max(first, last)];
}

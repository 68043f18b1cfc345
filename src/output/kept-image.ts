// `--show-kept`: the user's image with what a reduction did drawn on it. The patches of
// tokens a prefill filter dropped are blended towards white, those evicted from the cache
// while decoding less so; tokens standing for several patches (merged or recycled) are
// outlined and key tokens get a small dot. Patches are placed on the source image through
// the geometry the engine reports, so the drawing matches what the model saw of it.
//
// An image the model cut into tiles (LLaVA-NeXT) is drawn twice, side by side: on the left
// the whole image as the model's base crop saw it, on the right its tiles.
//
// A pixel belongs to a box when its centre lies inside it, so every pixel is either wholly
// in a patch or not, and the result is exact (no anti-aliasing to guess at in tests).

import type { ImageGeometry, ImageReport, TileReport, TokenReport } from '../engine.js';
import type { RgbImage } from '../media/image.js';

/** How far dropped and evicted patches are blended towards white (0 = untouched, 1 = white). */
export const DROPPED_WHITEN = 0.75;
export const EVICTED_WHITEN = 0.4;
export const OUTLINE_COLOUR: readonly [number, number, number] = [255, 128, 0];
export const KEY_COLOUR: readonly [number, number, number] = [230, 0, 160];
/** Blank columns between the base-crop and the tiles drawing of a tiled image. */
export const PANEL_GAP = 8;

/** A rectangle in canvas pixels, right and bottom exclusive. */
export interface CanvasBox {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

type PatchState = 'kept' | 'evicted' | 'dropped';

/**
 * A canvas the vision tower saw, cut into `cols × rows` patches: `id` names the report's
 * patch at a cell, `cell` the cell of a patch id (undefined when it lies on another canvas).
 */
export interface PatchCanvas {
  geometry: ImageGeometry;
  cols: number;
  rows: number;
  id(x: number, y: number): number;
  cell(patch: number): [number, number] | undefined;
}

/** The canvases of an image's report: one, or a tiled image's base crop and tile grid. */
export function patchCanvases(report: ImageReport): PatchCanvas[] {
  const geometry = report.geometry;
  if (geometry === null) throw new Error('the reduction report has no image geometry');
  const grid = report.grid;
  const whole: PatchCanvas = {
    geometry,
    cols: grid,
    rows: grid,
    id: (x, y) => y * grid + x,
    cell: (patch) => (patch < grid * grid ? [patch % grid, Math.floor(patch / grid)] : undefined),
  };
  return report.tiles === null ? [whole] : [whole, tileCanvas(report.tiles, grid)];
}

/** The tiles side by side; crop `1 + r·cols + c` holds the patches of the tile at (r, c). */
function tileCanvas(tiles: TileReport, grid: number): PatchCanvas {
  const perCrop = grid * grid;
  return {
    geometry: tiles.geometry,
    cols: tiles.cols * grid,
    rows: tiles.rows * grid,
    id: (x, y) => {
      const crop = 1 + Math.floor(y / grid) * tiles.cols + Math.floor(x / grid);
      return crop * perCrop + (y % grid) * grid + (x % grid);
    },
    cell: (patch) => {
      const crop = Math.floor(patch / perCrop);
      if (crop < 1) return undefined;
      const [tileRow, tileCol] = [Math.floor((crop - 1) / tiles.cols), (crop - 1) % tiles.cols];
      const local = patch % perCrop;
      return [tileCol * grid + (local % grid), tileRow * grid + Math.floor(local / grid)];
    },
  };
}

/** A copy of `image` with the report drawn on it (two panels side by side for a tiled image). */
export function drawKept(image: RgbImage, report: ImageReport): RgbImage {
  const states = patchStates(report);
  const panels = patchCanvases(report).map((canvas) => drawCanvas(image, report, canvas, states));
  return sideBySide(panels, PANEL_GAP);
}

function drawCanvas(image: RgbImage, report: ImageReport, canvas: PatchCanvas, states: Map<number, PatchState>): RgbImage {
  const out: RgbImage = { width: image.width, height: image.height, data: Uint8Array.from(image.data) };
  const painter = new Painter(out, canvas.geometry);
  for (let y = 0; y < canvas.rows; y += 1) {
    for (let x = 0; x < canvas.cols; x += 1) {
      const state = states.get(canvas.id(x, y)) ?? 'dropped';
      if (state === 'kept') continue;
      const amount = state === 'dropped' ? DROPPED_WHITEN : EVICTED_WHITEN;
      painter.fill(cellBox(canvas, x, y), (pixel) => whiten(pixel, amount));
    }
  }
  const width = outlineWidth(canvas);
  const onCanvas = (patches: number[]) =>
    patches.map((patch) => canvas.cell(patch)).filter((cell) => cell !== undefined);
  for (const token of report.tokens) {
    if (token.patches.length < 2) continue;
    for (const box of outlineBoxes(canvas, onCanvas(token.patches), width)) {
      painter.fill(box, () => OUTLINE_COLOUR);
    }
  }
  for (const token of report.tokens) {
    const cells = onCanvas(token.patches);
    if (token.key && cells.length > 0) painter.fill(keyDot(canvas, cells), () => KEY_COLOUR);
  }
  return out;
}

/** The images left to right on white, `gap` columns apart. */
function sideBySide(images: RgbImage[], gap: number): RgbImage {
  if (images.length === 1) return images[0]!;
  const height = Math.max(...images.map((image) => image.height));
  const width = images.reduce((sum, image) => sum + image.width, 0) + gap * (images.length - 1);
  const data = new Uint8Array(width * height * 3).fill(255);
  let left = 0;
  for (const image of images) {
    for (let y = 0; y < image.height; y += 1) {
      const row = image.data.subarray(y * image.width * 3, (y + 1) * image.width * 3);
      data.set(row, (y * width + left) * 3);
    }
    left += image.width + gap;
  }
  return { width, height, data };
}

/**
 * What became of each patch the report names: kept while any token standing for it stayed
 * to the end, evicted when the last of them left the cache during decoding, dropped
 * otherwise (patches no token stands for are dropped too).
 */
export function patchStates(report: ImageReport): Map<number, PatchState> {
  const rank: Record<PatchState, number> = { dropped: 0, evicted: 1, kept: 2 };
  const states = new Map<number, PatchState>();
  for (const token of report.tokens) {
    const state = tokenState(token);
    for (const patch of token.patches) {
      if (rank[state] > rank[states.get(patch) ?? 'dropped']) states.set(patch, state);
    }
  }
  return states;
}

function tokenState(token: TokenReport): PatchState {
  if (token.dropped_after_layer !== null) return 'dropped';
  if (token.evicted_at_step !== null) return 'evicted';
  return 'kept';
}

/** The canvas box of the patch at cell (x, y), clipped to the part of the canvas holding the image. */
export function cellBox(canvas: PatchCanvas, x: number, y: number): CanvasBox {
  const size = patchSize(canvas);
  const [left, top, right, bottom] = canvas.geometry.content;
  return {
    left: Math.max(left, x * size.width),
    top: Math.max(top, y * size.height),
    right: Math.min(right, (x + 1) * size.width),
    bottom: Math.min(bottom, (y + 1) * size.height),
  };
}

function patchSize(canvas: PatchCanvas): { width: number; height: number } {
  return { width: canvas.geometry.canvas_width / canvas.cols, height: canvas.geometry.canvas_height / canvas.rows };
}

/** About a tenth of a patch, and at least one source pixel, in canvas pixels. */
function outlineWidth(canvas: PatchCanvas): number {
  const { geometry } = canvas;
  const size = patchSize(canvas);
  const patchPixels = Math.min(size.width * geometry.scale_x, size.height * geometry.scale_y);
  return Math.max(1, Math.round(patchPixels / 10)) / Math.min(geometry.scale_x, geometry.scale_y);
}

/**
 * Bands along the border of a set of cells, inside it: for each cell, one band per side
 * whose neighbour is not in the set.
 */
function outlineBoxes(canvas: PatchCanvas, cells: Array<[number, number]>, width: number): CanvasBox[] {
  const members = new Set(cells.map(([x, y]) => y * canvas.cols + x));
  const boxes: CanvasBox[] = [];
  for (const [x, y] of cells) {
    const box = cellBox(canvas, x, y);
    const open = (dx: number, dy: number) => {
      const [nx, ny] = [x + dx, y + dy];
      return nx < 0 || ny < 0 || nx >= canvas.cols || ny >= canvas.rows || !members.has(ny * canvas.cols + nx);
    };
    if (open(0, -1)) boxes.push({ ...box, bottom: Math.min(box.bottom, box.top + width) });
    if (open(0, 1)) boxes.push({ ...box, top: Math.max(box.top, box.bottom - width) });
    if (open(-1, 0)) boxes.push({ ...box, right: Math.min(box.right, box.left + width) });
    if (open(1, 0)) boxes.push({ ...box, left: Math.max(box.left, box.right - width) });
  }
  return boxes;
}

/** A small square at the centre of the token's cells. */
function keyDot(canvas: PatchCanvas, cells: Array<[number, number]>): CanvasBox {
  const size = patchSize(canvas);
  const xs = cells.map(([x]) => x);
  const ys = cells.map(([, y]) => y);
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

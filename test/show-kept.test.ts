// `--show-kept`: the drawn picture is held pixel by pixel to the patch boxes computed here
// from the engine's report (its geometry and which tokens were dropped), and the HTML page
// to the answer and the admission verdicts.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import type { ImageReport, ReductionReport } from '../src/engine.js';
import { loadImage, type RgbImage } from '../src/media/image.js';
import { answerSpans, keptHtml } from '../src/output/kept-html.js';
import {
  DROPPED_WHITEN,
  drawKept,
  EVICTED_WHITEN,
  KEY_COLOUR,
  OUTLINE_COLOUR,
  PANEL_GAP,
} from '../src/output/kept-image.js';
import { FIXTURES, runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';

test.after.each(removeTempDirs);

const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');
/** Twenty language-model layers: room for MustDrop's filter layers. */
const REDUCE_MODEL = join(FIXTURES, 'models', 'tiny-llava-reduce');
// FastV with k=1 filters after layer 0, which the two-layer fixture model has.
const KEEP = 40;
const REDUCE = `fastv:k=1,keep=${KEEP}`;
const RINGS = join(FIXTURES, 'images', 'rings-90x72.png');
const SHAPES = join(FIXTURES, 'images', 'shapes-64x40.png');

type Event = Record<string, unknown>;

interface Run {
  model?: string;
  reduce?: string;
  maxTokens?: number;
}

/** Runs `ask --json --show-kept target`; returns the reduction report of its done event and its tokens. */
function askShowingKept(
  target: string,
  images: string[],
  { model = MODEL, reduce = REDUCE, maxTokens = 6 }: Run = {},
): { report: ReductionReport; answer: Event[] } {
  const args = ['ask', '--model', model, '--json', '--max-tokens', String(maxTokens), '--reduce', reduce];
  const result = runCli([...args, '--show-kept', target, ...images, 'What is in this picture?']);
  assert.is(result.code, 0, result.stderr);
  assert.is(result.stderr, '');
  const events = result.stdout
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Event);
  const done = events.at(-1)!;
  assert.is(done.type, 'done');
  return { report: done.reduction as ReductionReport, answer: events.filter((event) => event.type === 'token') };
}

async function readRgb(path: string): Promise<RgbImage> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  assert.is(info.channels, 3);
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

type Box = [number, number, number, number];

/** A patch's box [x0, y0, x1, y1) on the source image, from the report's geometry. */
function sourceBox(report: ImageReport, patch: number): Box {
  const geometry = report.geometry!;
  const size = geometry.canvas_width / report.grid;
  const [px, py] = [patch % report.grid, Math.floor(patch / report.grid)];
  return [
    px * size * geometry.scale_x + geometry.offset_x,
    py * size * geometry.scale_y + geometry.offset_y,
    (px + 1) * size * geometry.scale_x + geometry.offset_x,
    (py + 1) * size * geometry.scale_y + geometry.offset_y,
  ];
}

const inBox = ([x0, y0, x1, y1]: Box, x: number, y: number) => x >= x0 && x < x1 && y >= y0 && y < y1;

/**
 * What the drawing must be, from the report alone: per patch, kept while any token standing
 * for it stayed, evicted when the last one left during decoding, dropped otherwise; the border
 * of a token standing for several patches, one source pixel wide inside it, in the outline
 * colour. Patches of key tokens (their dot has its own test) are left out.
 */
function expectedDrawing(report: ImageReport) {
  const rank = { dropped: 0, evicted: 1, kept: 2 } as const;
  const state = new Map<number, keyof typeof rank>();
  const keyPatches = new Set<number>();
  const borders: Box[] = [];
  for (const token of report.tokens) {
    const tokenState = token.dropped_after_layer !== null ? 'dropped' : token.evicted_at_step !== null ? 'evicted' : 'kept';
    for (const patch of token.patches) {
      if (rank[tokenState] >= rank[state.get(patch) ?? 'dropped']) state.set(patch, tokenState);
      if (token.key) keyPatches.add(patch);
      if (token.patches.length < 2) continue;
      const [x0, y0, x1, y1] = sourceBox(report, patch);
      const outside = (dx: number, dy: number) => {
        const [nx, ny] = [(patch % report.grid) + dx, Math.floor(patch / report.grid) + dy];
        return !(nx >= 0 && ny >= 0 && nx < report.grid && ny < report.grid && token.patches.includes(ny * report.grid + nx));
      };
      if (outside(0, -1)) borders.push([x0, y0, x1, y0 + 1]);
      if (outside(0, 1)) borders.push([x0, y1 - 1, x1, y1]);
      if (outside(-1, 0)) borders.push([x0, y0, x0 + 1, y1]);
      if (outside(1, 0)) borders.push([x1 - 1, y0, x1, y1]);
    }
  }
  const boxes = [...state.keys()].map((patch) => ({ patch, box: sourceBox(report, patch) }));
  return { state, keyPatches, borders, boxes };
}

/** Checks every pixel of `drawn`; returns how many pixels each patch state covered. */
function assertDrawing(drawn: RgbImage, original: RgbImage, report: ImageReport): Record<string, number> {
  assert.equal([drawn.width, drawn.height], [original.width, original.height]);
  const { state, keyPatches, borders, boxes } = expectedDrawing(report);
  const counts: Record<string, number> = { kept: 0, evicted: 0, dropped: 0, outline: 0 };
  for (let y = 0; y < original.height; y += 1) {
    for (let x = 0; x < original.width; x += 1) {
      const [cx, cy] = [x + 0.5, y + 0.5];
      const patch = boxes.find(({ box }) => inBox(box, cx, cy))?.patch;
      if (patch !== undefined && keyPatches.has(patch)) continue;
      const at = (y * original.width + x) * 3;
      const source = Array.from(original.data.subarray(at, at + 3));
      let expected = source;
      if (patch !== undefined) {
        const whiten = { kept: 0, evicted: EVICTED_WHITEN, dropped: DROPPED_WHITEN }[state.get(patch)!];
        expected = source.map((v) => Math.round(v + (255 - v) * whiten));
        counts[state.get(patch)!]! += 1;
      }
      if (borders.some((box) => inBox(box, cx, cy))) {
        expected = [...OUTLINE_COLOUR];
        counts.outline! += 1;
      }
      const actual = Array.from(drawn.data.subarray(at, at + 3));
      if (actual.join() !== expected.join()) assert.unreachable(`pixel (${x}, ${y}) is ${actual}, expected ${expected}`);
    }
  }
  return counts;
}

test('the PNG whitens exactly the patches of dropped tokens, on the source image', async () => {
  const dir = tempDir();
  const { report } = askShowingKept(join(dir, 'kept.png'), [RINGS]);
  assert.is(report.spec, REDUCE);
  const [image] = report.images;
  assert.ok(image);
  assert.is(image.grid, 12);
  assert.is(image.tokens.filter((t) => t.dropped_after_layer === 0).length, 144 - KEEP);
  // 90x72 is resized to 60x48 and cropped 6 pixels in from the left: a 4-pixel patch is 6 source pixels.
  assert.equal(image.geometry, {
    canvas_width: 48,
    canvas_height: 48,
    scale_x: 1.5,
    scale_y: 1.5,
    offset_x: 9,
    offset_y: 0,
    content: [0, 0, 48, 48],
  });
  const drawn = await readRgb(join(dir, 'kept.png'));
  const counts = assertDrawing(drawn, await loadImage(RINGS), image);
  // 72 columns of 90 are in the crop.
  assert.equal(counts, { kept: KEEP * 36, evicted: 0, dropped: (144 - KEEP) * 36, outline: 0 });
});

test('MustDrop: merged tokens outlined, dropped and evicted ones whitened, all else untouched', async () => {
  const dir = tempDir();
  // A low merge threshold merges windows of this random model; a high eviction share after
  // two steps evicts some tokens while decoding.
  const reduce = 'mustdrop:keep=16,tau=0.3,evict=0.5,warmup=2';
  const { report } = askShowingKept(join(dir, 'kept.png'), [RINGS], { model: REDUCE_MODEL, reduce, maxTokens: 8 });
  const image = report.images[0]!;
  const tokens = image.tokens;
  assert.ok(tokens.some((t) => t.patches.length > 1 && t.dropped_after_layer === null), 'no kept merged token');
  assert.ok(tokens.some((t) => t.patches.length > 1 && t.dropped_after_layer !== null), 'no dropped merged token');
  assert.ok(tokens.some((t) => t.evicted_at_step !== null), 'no evicted token');
  assert.ok(image.keys.length > 0, 'no key token');
  const counts = assertDrawing(await readRgb(join(dir, 'kept.png')), await loadImage(RINGS), image);
  for (const [name, count] of Object.entries(counts)) assert.ok(count > 0, `no ${name} pixel`);
});

test('several images give FILE-1.png, FILE-2.png, each drawn from its own report', async () => {
  const dir = tempDir();
  const { report } = askShowingKept(join(dir, 'kept.png'), [RINGS, SHAPES]);
  assert.is(report.images.length, 2);
  for (const [i, path] of [RINGS, SHAPES].entries()) {
    const drawn = await readRgb(join(dir, `kept-${i + 1}.png`));
    const counts = assertDrawing(drawn, await loadImage(path), report.images[i]!);
    assert.ok(counts.dropped! > 0, `image ${i + 1}: nothing whitened`);
  }
});

test('the HTML page embeds the same drawing and every answer token', async () => {
  const dir = tempDir();
  const { report, answer } = askShowingKept(join(dir, 'kept.html'), [RINGS]);
  const html = readFileSync(join(dir, 'kept.html'), 'utf8');
  const dataUrl = /<img src="data:image\/png;base64,([A-Za-z0-9+/=]+)"/.exec(html);
  assert.ok(dataUrl, 'no embedded PNG');
  const { data, info } = await sharp(Buffer.from(dataUrl[1]!, 'base64')).raw().toBuffer({ resolveWithObject: true });
  const embedded = { width: info.width, height: info.height, data: new Uint8Array(data) };
  assertDrawing(embedded, await loadImage(RINGS), report.images[0]!);
  // FastV decides nothing while decoding: every token is plain.
  assert.equal(report.decode_admitted, []);
  const spans = [...html.matchAll(/<span( class="[^"]*")?( data-token="(\d+)")?>([^<]*)<\/span>/g)];
  assert.equal(
    spans.map((m) => [m[1] ?? '', m[3] === undefined ? undefined : Number(m[3]), unescape(m[4]!)]),
    answer.map((event) => ['', event.id, event.text]),
  );
});

function unescape(text: string): string {
  return text.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)));
}

test('answer spans grey exactly the tokens whose keys and values were not admitted', () => {
  const answer = [
    { id: 11, text: 'A' },
    { id: 12, text: ' <b>' },
    { id: 13, text: '' },
    { id: 14, text: ' cat' },
    { id: 15, text: '.' },
    { text: '"' },
  ];
  assert.equal(answerSpans(answer, [true, false, false, true]), [
    '<span data-token="11">A</span>',
    '<span class="not-kept" data-token="12"> &#60;b&#62;</span>',
    '<span class="not-kept" data-token="13"></span>',
    '<span data-token="14"> cat</span>',
    // Never fed back, so never judged; the flushed text has no token.
    '<span data-token="15">.</span>',
    '<span>&#34;</span>',
  ]);
  const report: ReductionReport = {
    spec: 'dynamic:keep_rate=0.2',
    images: [],
    filters: [],
    decode_admitted: [true, false, false, true],
    decode_evicted: [],
  };
  const html = keptHtml({ images: [], answer, report });
  assert.ok(html.includes(`<p class="answer">${answerSpans(answer, report.decode_admitted).join('')}</p>`), html);
  assert.ok(html.includes('not kept (2 of 4)'), html);
  assert.ok(html.includes('<title>glimpse --reduce dynamic:keep_rate=0.2</title>'), html);
});

/** One visual token of a report, on `patches`, kept unless `extra` says otherwise. */
function token(patches: number[], extra: Partial<ImageReport['tokens'][number]> = {}): ImageReport['tokens'][number] {
  return {
    patches,
    key: false,
    recycled: false,
    dropped_after_layer: null,
    evicted_at_step: null,
    ...extra,
  };
}

/** A 3×3 grid on a 6-pixel canvas drawn 2:1 onto a 12×14 image shifted down by 1 (a pad-to-square). */
function syntheticReport(): { image: RgbImage; report: ImageReport } {
  const image: RgbImage = { width: 12, height: 14, data: new Uint8Array(12 * 14 * 3).fill(100) };
  const report: ImageReport = {
    grid: 3,
    tokens: [
      token([0, 1, 3, 4]), // merged 2×2 block, kept
      token([2], { dropped_after_layer: 1 }),
      token([5], { evicted_at_step: 3 }),
      token([6], { dropped_after_layer: 0 }),
      token([7], { key: true }),
      token([8], { dropped_after_layer: 0 }),
      token([8], { recycled: true }), // patch 8 lives on in a recycled token
    ],
    keys: [4],
    window_similarity: [],
    geometry: {
      canvas_width: 6,
      canvas_height: 6,
      scale_x: 2,
      scale_y: 2,
      offset_x: 0,
      offset_y: 1,
      content: [0, 0, 6, 6],
    },
    tiles: null,
  };
  return { image, report };
}

test('drawing: states, outlines of merged tokens and key dots land on the right pixels', () => {
  const { image, report } = syntheticReport();
  const drawn = drawKept(image, report);
  const pixel = (x: number, y: number) => Array.from(drawn.data.subarray((y * 12 + x) * 3, (y * 12 + x) * 3 + 3));
  const white = (amount: number) => [0, 0, 0].map(() => Math.round(100 + 155 * amount));
  // Row 0 (y=0) and row 13 lie outside the canvas: untouched.
  for (let x = 0; x < 12; x += 1) {
    assert.equal(pixel(x, 0), [100, 100, 100]);
    assert.equal(pixel(x, 13), [100, 100, 100]);
  }
  // Patch 2 (x 8..12, y 1..5) dropped; patch 5 (x 8..12, y 5..9) evicted; patch 6 (x 0..4, y 9..13) dropped.
  assert.equal(pixel(9, 2), white(DROPPED_WHITEN));
  assert.equal(pixel(9, 6), white(EVICTED_WHITEN));
  assert.equal(pixel(1, 11), white(DROPPED_WHITEN));
  // Patch 8 was dropped but a recycled token still stands for it.
  assert.equal(pixel(9, 10), [100, 100, 100]);
  // The merged block (x 0..8, y 1..9) is outlined one source pixel wide, inside its border.
  for (const [x, y] of [[0, 1], [7, 1], [0, 8], [7, 8], [3, 1], [0, 4], [7, 5], [4, 8]] as const) {
    assert.equal(pixel(x, y), [...OUTLINE_COLOUR], `(${x}, ${y})`);
  }
  for (const [x, y] of [[1, 2], [6, 7], [3, 4], [4, 5]] as const) assert.equal(pixel(x, y), [100, 100, 100], `(${x}, ${y})`);
  // Key token 4 (patch 7: x 4..8, y 9..13) gets a dot a quarter of a patch wide at its
  // centre, here the one pixel (5, 10); nothing else of it changes.
  assert.equal(pixel(5, 10), [...KEY_COLOUR]);
  for (const [x, y] of [[4, 10], [6, 10], [5, 9], [5, 11]] as const) assert.equal(pixel(x, y), [100, 100, 100]);
  // The input is left as it was.
  assert.ok(image.data.every((v) => v === 100));
});

test('a tiled image is drawn twice: the base crop on the left, its tiles on the right', () => {
  // An 8×4 image; crops of 2×2 patches. The base crop stretches it onto a 4×4 canvas (2:1
  // across); the two tiles, side by side, cover it exactly (an 8×4 canvas, 1:1).
  const image: RgbImage = { width: 8, height: 4, data: new Uint8Array(8 * 4 * 3).fill(100) };
  const geometry = (width: number, scaleX: number) => ({
    canvas_width: width,
    canvas_height: 4,
    scale_x: scaleX,
    scale_y: 1,
    offset_x: 0,
    offset_y: 0,
    content: [0, 0, width, 4] as [number, number, number, number],
  });
  const report: ImageReport = {
    grid: 2,
    tokens: [
      token([0]),
      token([1], { dropped_after_layer: 0 }), // base, top right
      token([2]),
      token([3]),
      token([4], { dropped_after_layer: 0 }), // tile 1,1, top left
      token([5, 7]), // tile 1,1, its right column merged
      token([6]),
      token([8]),
      token([9]),
      token([10], { evicted_at_step: 2 }), // tile 1,2, bottom left
      token([11]),
      token([]), // a row's newline
    ],
    keys: [],
    window_similarity: [],
    geometry: geometry(4, 2),
    tiles: { rows: 1, cols: 2, kept_rows: [0, 2], kept_cols: [0, 4], geometry: geometry(8, 1) },
  };
  const drawn = drawKept(image, report);
  assert.is(drawn.width, 8 + PANEL_GAP + 8);
  assert.is(drawn.height, 4);
  const pixel = (x: number, y: number) =>
    Array.from(drawn.data.subarray((y * drawn.width + x) * 3, (y * drawn.width + x) * 3 + 3));
  const white = (amount: number) => [0, 0, 0].map(() => Math.round(100 + 155 * amount));
  // Left: base patch 1 covers source x 4..8, y 0..2.
  assert.equal(pixel(5, 1), white(DROPPED_WHITEN));
  assert.equal(pixel(1, 1), [100, 100, 100]);
  assert.equal(pixel(5, 3), [100, 100, 100]);
  // The gap is blank.
  for (let x = 8; x < 8 + PANEL_GAP; x += 1) assert.equal(pixel(x, 2), [255, 255, 255]);
  // Right: tile 1,1's patch 4 is source x 0..2, y 0..2; tile 1,2's patch 10 is x 4..6, y 2..4.
  const right = 8 + PANEL_GAP;
  assert.equal(pixel(right + 1, 1), white(DROPPED_WHITEN));
  assert.equal(pixel(right + 4, 3), white(EVICTED_WHITEN));
  assert.equal(pixel(right + 6, 3), [100, 100, 100]);
  // The merged column (x 2..4, y 0..4) is outlined along its border.
  assert.equal(pixel(right + 2, 0), [...OUTLINE_COLOUR]);
  assert.equal(pixel(right + 3, 3), [...OUTLINE_COLOUR]);
});

test.run();

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import sharp, { type Sharp } from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { loadImage } from '../src/media/image.js';
import { errorLine, runCli } from './helpers/cli.js';
import { glimpseErrorMessage } from './helpers/errors.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { pngClaimingSize } from './helpers/png.js';

// 3x2 RGB, every pixel distinct so any reordering shows.
const WIDTH = 3;
const HEIGHT = 2;
const PIXELS = [
  [200, 10, 20], [30, 210, 40], [50, 60, 220],
  [70, 80, 90], [100, 110, 120], [130, 140, 150],
];

function rgbBytes(pixels: number[][]): Buffer {
  return Buffer.from(pixels.flat());
}

async function writePng(path: string, image: Sharp): Promise<string> {
  await image.png().toFile(path);
  return path;
}

function rawImage(pixels: number[][], width: number, height: number, channels: 3 | 4): Sharp {
  return sharp(rgbBytes(pixels), { raw: { width, height, channels } });
}

function inputError(path: string, options = {}): Promise<string> {
  return glimpseErrorMessage('input', () => loadImage(path, options));
}

test.after.each(removeTempDirs);

test('an RGB PNG comes back as the same raw bytes', async () => {
  const path = await writePng(join(tempDir(), 'rgb.png'), rawImage(PIXELS, WIDTH, HEIGHT, 3));
  const image = await loadImage(path);
  assert.is(image.width, WIDTH);
  assert.is(image.height, HEIGHT);
  assert.equal([...image.data], PIXELS.flat());
});

test('alpha is dropped without compositing, even where fully transparent', async () => {
  const rgba = PIXELS.map((rgb, i) => [...rgb, i * 50]);
  const path = await writePng(join(tempDir(), 'rgba.png'), rawImage(rgba, WIDTH, HEIGHT, 4));
  const image = await loadImage(path);
  assert.is(image.data.length, WIDTH * HEIGHT * 3);
  assert.equal([...image.data], PIXELS.flat());
});

test('grey images become three equal channels', async () => {
  const path = join(tempDir(), 'grey.png');
  await sharp(Buffer.from([0, 64, 128, 255]), { raw: { width: 2, height: 2, channels: 1 } }).png().toFile(path);
  const image = await loadImage(path);
  assert.equal([...image.data], [0, 0, 0, 64, 64, 64, 128, 128, 128, 255, 255, 255]);
});

/** Where source pixel (x, y) of a WIDTH x HEIGHT image lands for each EXIF orientation. */
const ORIENTATIONS: Array<[number, number, number, (x: number, y: number) => [number, number]]> = [
  // [orientation, displayed width, displayed height, source (x, y) -> displayed (x, y)]
  [3, WIDTH, HEIGHT, (x, y) => [WIDTH - 1 - x, HEIGHT - 1 - y]], // rotated 180°
  [6, HEIGHT, WIDTH, (x, y) => [HEIGHT - 1 - y, x]], // shown rotated 90° clockwise
  [8, HEIGHT, WIDTH, (x, y) => [y, WIDTH - 1 - x]], // shown rotated 90° anticlockwise
];

for (const [orientation, width, height, place] of ORIENTATIONS) {
  test(`EXIF orientation ${orientation} is applied`, async () => {
    const path = await writePng(
      join(tempDir(), `oriented-${orientation}.png`),
      rawImage(PIXELS, WIDTH, HEIGHT, 3).withMetadata({ orientation }),
    );
    const expected = new Array<number>(width * height * 3);
    PIXELS.forEach((rgb, index) => {
      const [dx, dy] = place(index % WIDTH, Math.floor(index / WIDTH));
      expected.splice((dy * width + dx) * 3, 3, ...rgb);
    });
    const image = await loadImage(path);
    assert.equal([image.width, image.height], [width, height]);
    assert.equal([...image.data], expected);
  });
}

test('a missing file is an input error naming it', async () => {
  const path = join(tempDir(), 'absent.png');
  assert.is(await inputError(path), `image not found: ${path}`);
});

test('a text file named .png is not an image', async () => {
  const path = join(tempDir(), 'notes.png');
  writeFileSync(path, 'just some text, not pixels\n');
  assert.is(await inputError(path), `${path}: not an image (unsupported or unrecognised format)`);
});

test('a truncated PNG fails to decode', async () => {
  const dir = tempDir();
  const noisy = Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 251));
  const whole = await sharp(noisy, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer();
  const path = join(dir, 'truncated.png');
  writeFileSync(path, whole.subarray(0, Math.floor(whole.length / 2)));
  const message = await inputError(path);
  assert.ok(message.startsWith(`${path}: cannot decode image (`), message);
  assert.not.ok(message.includes('\n'));
});

test('an image over the pixel limit is refused before decoding', async () => {
  const path = join(tempDir(), 'bomb.png');
  writeFileSync(path, pngClaimingSize(20_000, 20_000));
  assert.is(
    await inputError(path),
    `${path}: image is 20000x20000 (400000000 pixels), over the limit of 100000000 pixels`,
  );
  const small = await writePng(join(tempDir(), 'small.png'), rawImage(PIXELS, WIDTH, HEIGHT, 3));
  assert.ok((await inputError(small, { maxPixels: 5 })).includes('over the limit of 5 pixels'));
  assert.is((await loadImage(small, { maxPixels: 6 })).width, WIDTH);
});

// The same failures through the CLI: exit code 2 and one line, before any model is loaded.
const badImages: Array<[string, (dir: string) => string]> = [
  ['missing file', (dir) => join(dir, 'absent.png')],
  [
    'text file named .png',
    (dir) => {
      writeFileSync(join(dir, 'notes.png'), 'hello');
      return join(dir, 'notes.png');
    },
  ],
  [
    'oversized PNG',
    (dir) => {
      writeFileSync(join(dir, 'bomb.png'), pngClaimingSize(30_000, 30_000));
      return join(dir, 'bomb.png');
    },
  ],
];

for (const [name, make] of badImages) {
  test(`glimpse ask with a ${name} exits 2 with one line`, () => {
    const dir = tempDir();
    const image = make(dir);
    const result = runCli(['ask', '--model', dir, image, 'What is this?']);
    assert.is(result.code, 2, result.stderr);
    assert.ok(errorLine(result).includes(image), result.stderr);
  });
}

test('--max-pixels lowers the limit', () => {
  const dir = tempDir();
  const image = join(dir, 'wide.png');
  writeFileSync(image, pngClaimingSize(100, 100));
  const result = runCli(['ask', '--model', dir, '--max-pixels', '9999', image, 'What is this?']);
  assert.is(result.code, 2);
  assert.ok(errorLine(result).endsWith('over the limit of 9999 pixels'), result.stderr);
});

test.run();

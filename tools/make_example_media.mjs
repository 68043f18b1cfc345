#!/usr/bin/env node
// Makes the videos glimpse ships for its tests and examples. Every picture is drawn here
// and piped to ffmpeg as raw RGB frames; nothing comes from elsewhere.
//
//   node tools/make_example_media.mjs
//
// Uses the ffmpeg bundled through npm (@ffmpeg-installer/ffmpeg, a pinned build) so that
// the files come out byte for byte the same; GLIMPSE_FFMPEG overrides it.

import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FFMPEG = process.env.GLIMPSE_FFMPEG || createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg').path;

/** No encoder version strings or dates in the files, one encoder thread: reproducible output. */
const REPRODUCIBLE = ['-threads', '1', '-fflags', '+bitexact', '-map_metadata', '-1'];
const H264 = ['-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-flags:v', '+bitexact', '-movflags', '+faststart'];

class Canvas {
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.pixels = Buffer.alloc(width * height * 3);
  }

  set(x, y, [r, g, b]) {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const at = (y * this.width + x) * 3;
    this.pixels[at] = r;
    this.pixels[at + 1] = g;
    this.pixels[at + 2] = b;
  }

  rect(left, top, width, height, colour) {
    for (let y = top; y < top + height; y++) for (let x = left; x < left + width; x++) this.set(x, y, colour);
  }

  circle(centreX, centreY, radius, colour) {
    for (let y = Math.floor(centreY - radius); y <= centreY + radius; y++) {
      for (let x = Math.floor(centreX - radius); x <= centreX + radius; x++) {
        if ((x + 0.5 - centreX) ** 2 + (y + 0.5 - centreY) ** 2 <= radius ** 2) this.set(x, y, colour);
      }
    }
  }
}

/** Encodes `frameCount` frames drawn by `draw(canvas, index)` into `path`. */
function encode(path, { width, height, fps, frameCount, draw, options }) {
  const frames = [];
  for (let index = 0; index < frameCount; index++) {
    const canvas = new Canvas(width, height);
    draw(canvas, index);
    frames.push(canvas.pixels);
  }
  const input = ['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps), '-i', 'pipe:0'];
  run(path, [...input, ...options], Buffer.concat(frames));
}

function run(path, args, input) {
  mkdirSync(dirname(path), { recursive: true });
  const result = spawnSync(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-y', ...args, ...REPRODUCIBLE, path], {
    input,
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  if (result.status !== 0) throw new Error(`ffmpeg failed on ${path}`);
  console.log(`${relative(ROOT, path)}  ${statSync(path).size} bytes`);
}

// Test fixture: an orange 8x8 square on navy, 2 px further right in each of 20 frames at
// 10 fps, so a frame's index can be read back from where the square is (x = 4 + 2 * index).
// Keyframes every 8 frames and B-frames, so that seeking has real work to do.
encode(join(ROOT, 'test/fixtures/videos/square-64x48-10fps.mp4'), {
  width: 64,
  height: 48,
  fps: 10,
  frameCount: 20,
  draw: (canvas, index) => {
    canvas.rect(0, 0, 64, 48, [20, 30, 90]);
    canvas.rect(4 + 2 * index, 20, 8, 8, [250, 140, 20]);
  },
  options: [...H264, '-crf', '12', '-g', '8', '-bf', '2'],
});

// Test fixture: an MP4 holding only one second of a 440 Hz tone (no video stream).
run(join(ROOT, 'test/fixtures/videos/audio-only.mp4'), [
  ...['-f', 'lavfi', '-i', 'sine=frequency=440:duration=1'],
  ...['-c:a', 'aac', '-b:a', '24k', '-flags:a', '+bitexact'],
]);

// Test fixture: an MP4 into which not a single frame was written.
run(join(ROOT, 'test/fixtures/videos/no-frames.mp4'), [
  ...['-f', 'lavfi', '-i', 'color=c=black:s=64x48:r=10:d=1'],
  ...['-frames:v', '0', ...H264],
]);

// Example: three seconds of a red ball bouncing left to right past a tree, under a sun.
const SKY_TOP = [110, 170, 235];
const SKY_BOTTOM = [190, 225, 250];
encode(join(ROOT, 'examples/videos/bouncing-ball.mp4'), {
  width: 256,
  height: 192,
  fps: 12,
  frameCount: 36,
  draw: (canvas, index) => {
    const horizon = 140;
    for (let y = 0; y < horizon; y++) {
      const mix = y / horizon;
      canvas.rect(0, y, 256, 1, SKY_TOP.map((top, c) => Math.round(top + (SKY_BOTTOM[c] - top) * mix)));
    }
    canvas.rect(0, horizon, 256, 192 - horizon, [70, 150, 60]);
    canvas.circle(214, 34, 16, [250, 215, 60]);
    canvas.rect(150, 88, 10, 54, [110, 75, 40]);
    canvas.circle(155, 78, 24, [40, 120, 45]);
    const progress = index / 35;
    const radius = 12;
    const ballX = 20 + progress * 216;
    // Three bounces: |sin| keeps the ball above the ground.
    const ballY = horizon - radius - Math.abs(Math.sin(progress * Math.PI * 3)) * 70;
    canvas.circle(ballX, ballY, radius, [215, 35, 35]);
  },
  options: [...H264, '-crf', '20', '-g', '12'],
});

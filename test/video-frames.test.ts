// Frame sampling and extraction through the real ffmpeg, on videos made for the tests:
// which frame comes back for each time is read from the picture itself.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { findFfmpeg, runFfmpeg } from '../src/media/ffmpeg.js';
import type { RgbImage } from '../src/media/image.js';
import { PpmFrameStream, PpmStreamError } from '../src/media/ppm-stream.js';
import {
  extractFrames,
  MAX_FRAMES,
  parseProbeReport,
  probeVideo,
  sampleTimes,
  type Sampling,
} from '../src/media/video.js';
import { glimpseErrorMessage } from './helpers/errors.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { frameOnScreen, SQUARE_VIDEO, SQUARE_VIDEO_FRAMES, squareFrameIndex } from './helpers/video.js';

const ffmpeg = findFfmpeg();

test.after.each(removeTempDirs);

test('the fixture video probes as 2 s of 64x48 at 10 fps', async () => {
  const video = await probeVideo(ffmpeg, SQUARE_VIDEO);
  assert.equal(video, { path: SQUARE_VIDEO, durationS: 2, width: 64, height: 48, fps: 10 });
});

const samplings: Array<[Sampling, number[]]> = [
  [{ frames: 1 }, [1]],
  [{ frames: 2 }, [0.5, 1.5]],
  [{ frames: 4 }, [0.25, 0.75, 1.25, 1.75]],
  [{ frames: 3 }, [0.333333, 1, 1.666667]],
  [{ fps: 4 }, [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75]],
  [{ fps: 3 }, [0, 0.333333, 0.666667, 1, 1.333333, 1.666667]],
  [{ fps: 0.4 }, [0]],
];

test('sample times: N in the middles of N equal parts, or every 1/R s from 0', () => {
  for (const [sampling, times] of samplings) assert.equal(sampleTimes(2, sampling), times, JSON.stringify(sampling));
  assert.equal(sampleTimes(2, { fps: 10 }), Array.from({ length: 20 }, (_, i) => i / 10));
  assert.is(sampleTimes(2, { fps: 10.5 }).length, 21);
});

test('more frames than the limit is a usage error', async () => {
  assert.is(sampleTimes(3600, { fps: MAX_FRAMES / 3600 }).length, MAX_FRAMES);
  const message = await glimpseErrorMessage('usage', () => sampleTimes(3600, { fps: 30 }));
  assert.is(message, `--fps 30 samples 108000 frames from this 3600.000 s video, more than the limit of ${MAX_FRAMES}`);
});

test('each sampled time gets the frame on screen then, as w*h*3 RGB bytes', async () => {
  const video = await probeVideo(ffmpeg, SQUARE_VIDEO);
  for (const [sampling] of samplings) {
    const times = sampleTimes(video.durationS, sampling);
    const frames = await extractFrames(ffmpeg, video, times);
    assert.equal(
      frames.map((frame) => [frame.index, frame.timestampS]),
      times.map((time, index) => [index, time]),
    );
    for (const frame of frames) {
      assert.is(frame.image.width, 64);
      assert.is(frame.image.height, 48);
      assert.is(frame.image.data.length, 64 * 48 * 3);
    }
    assert.equal(
      frames.map((frame) => squareFrameIndex(frame.image)),
      times.map((time) => frameOnScreen(time)),
      JSON.stringify(sampling),
    );
  }
});

test('one sample per frame returns every frame, the last one included', async () => {
  const video = await probeVideo(ffmpeg, SQUARE_VIDEO);
  const frames = await extractFrames(ffmpeg, video, sampleTimes(video.durationS, { frames: SQUARE_VIDEO_FRAMES }));
  assert.equal(
    frames.map((frame) => squareFrameIndex(frame.image)),
    Array.from({ length: SQUARE_VIDEO_FRAMES }, (_, i) => i),
  );
});

function runFfmpegSync(args: string[]): void {
  const result = spawnSync(ffmpeg.path, ['-hide_banner', '-loglevel', 'error', ...args]);
  assert.is(result.status, 0, String(result.stderr));
}

/** A 0.3 s clip of one colour, from ffmpeg's own synthetic source, with extra options. */
function makeClip(dir: string, name: string, size: string, options: string[]): string {
  const path = join(dir, name);
  runFfmpegSync(['-f', 'lavfi', '-i', `color=c=red:s=${size}:r=10:d=0.3`, ...options, '-pix_fmt', 'yuv420p', path]);
  return path;
}

/** The clip with a rotation tag, as phones write it (the encoder would drop the tag, a copy keeps it). */
function rotated(path: string, degrees: number): string {
  const output = path.replace(/\.mp4$/, `-rotated.mp4`);
  runFfmpegSync(['-i', path, '-c', 'copy', '-metadata:s:v:0', `rotate=${degrees}`, output]);
  return output;
}

test('frames come at display size: capped at 1024 a side, square pixels, rotated', async () => {
  const dir = tempDir();
  const cases: Array<[string, number, number]> = [
    [makeClip(dir, 'large.mp4', '1280x720', []), 1024, 576],
    [makeClip(dir, 'tall.mp4', '300x2000', []), 154, 1024],
    [makeClip(dir, 'anamorphic.mp4', '64x48', ['-vf', 'setsar=2']), 128, 48],
    [rotated(makeClip(dir, 'upright.mp4', '64x48', []), 90), 48, 64],
  ];
  for (const [path, width, height] of cases) {
    const video = await probeVideo(ffmpeg, path);
    const [frame] = await extractFrames(ffmpeg, video, [0.15]);
    assert.equal([frame?.image.width, frame?.image.height], [width, height], path);
    assert.is(frame?.image.data.length, width * height * 3);
  }
});

test('an unreadable or frameless file is an input error naming it', async () => {
  const dir = tempDir();
  const text = join(dir, 'notes.mp4');
  writeFileSync(text, 'not a video\n');
  const cases: Array<[string, string]> = [
    [join(dir, 'missing.mp4'), `video not found: ${join(dir, 'missing.mp4')}`],
    [dir, `${dir}: is a directory, not a video`],
    [text, `${text}: not a video ffmpeg can read (Invalid data found when processing input)`],
  ];
  for (const [path, expected] of cases) {
    assert.is(await glimpseErrorMessage('input', () => probeVideo(ffmpeg, path)), expected);
  }
});

test('the probe report: duration, first video stream that is not cover art, complaint', () => {
  const report = parseProbeReport(
    [
      "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/videos/a.mp4':",
      '  Duration: 01:02:03.50, start: 0.000000, bitrate: 900 kb/s',
      '  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp (default)',
      '  Stream #0:1[0x2](und): Video: mjpeg (Baseline), yuvj420p(pc), 600x600 [SAR 1:1 DAR 1:1], 90k tbr (attached pic)',
      '  Stream #0:2[0x3](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], 29.97 fps, 29.97 tbr, 30k tbn (default)',
      'At least one output file must be specified',
    ].join('\n'),
  );
  assert.equal(report, {
    format: 'mov,mp4,m4a,3gp,3g2,mj2',
    durationS: 3723.5,
    video: { width: 1920, height: 1080, fps: 29.97 },
    complaint: '',
  });
  assert.equal(
    parseProbeReport(
      "Input #0, h264, from 'file:/v.h264':\n  Duration: N/A, bitrate: N/A\n    Stream #0:0: Video: h264 (High), yuv420p(progressive), 64x48, 25 tbr, 1200k tbn\n",
    ),
    { format: 'h264', durationS: undefined, video: { width: 64, height: 48, fps: 25 }, complaint: '' },
  );
  assert.equal(parseProbeReport('file:/tmp/x y.mp4: Invalid data found when processing input\n'), {
    format: undefined,
    durationS: undefined,
    video: undefined,
    complaint: 'Invalid data found when processing input',
  });
});

function ppm(width: number, height: number, firstByte: number): Buffer {
  const pixels = Buffer.from(Array.from({ length: width * height * 3 }, (_, i) => (firstByte + i) % 256));
  return Buffer.concat([Buffer.from(`P6\n${width} ${height}\n255\n`, 'latin1'), pixels]);
}

test('PPM frames are cut at their stated size, however the stream is chunked', () => {
  // The pixels begin with whitespace and digits, which must not be read as header.
  const stream = Buffer.concat([ppm(3, 2, 10), ppm(1, 1, 48), ppm(2, 1, 32)]);
  for (const chunkSize of [1, 2, 7, stream.length]) {
    const frames: RgbImage[] = [];
    const reader = new PpmFrameStream(4, (frame) => frames.push(frame));
    for (let at = 0; at < stream.length; at += chunkSize) reader.push(stream.subarray(at, at + chunkSize));
    reader.end();
    assert.equal(
      frames.map((frame) => [frame.width, frame.height, [...frame.data]]),
      [
        [3, 2, [...ppm(3, 2, 10).subarray(-18)]],
        [1, 1, [48, 49, 50]],
        [2, 1, [32, 33, 34, 35, 36, 37]],
      ],
      `chunks of ${chunkSize}`,
    );
  }
});

test('PPM streams that are cut short, oversized or not PPM are refused', () => {
  const failure = (bytes: Buffer): string => {
    const reader = new PpmFrameStream(4, () => {});
    try {
      reader.push(bytes);
      reader.end();
    } catch (error) {
      assert.instance(error, PpmStreamError);
      return (error as Error).message;
    }
    throw new Error('expected a PpmStreamError');
  };
  assert.is(failure(ppm(2, 2, 0).subarray(0, 20)), 'ffmpeg output ended in the middle of a frame');
  assert.is(failure(Buffer.from('P6\n2 ')), 'ffmpeg output ended in the middle of a frame');
  assert.is(failure(ppm(5, 1, 0)), 'ffmpeg wrote a 5x1 frame, outside 1..4 pixels a side');
  assert.is(failure(Buffer.from('P6\n1 1\n65535\n')), 'ffmpeg wrote 65536-level frames instead of 8-bit ones');
  assert.is(failure(Buffer.from('GIF89a')), 'ffmpeg output is not a stream of RGB frames');
  assert.is(failure(Buffer.from(`P6 ${'1'.repeat(80)}`)), 'ffmpeg output is not a stream of RGB frames');
});

test('aborting stops ffmpeg and rejects as cancelled', async () => {
  const controller = new AbortController();
  let bytes = 0;
  // An endless synthetic video: only the abort can end this run.
  const endless = ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc', '-f', 'rawvideo', 'pipe:1'];
  const run = runFfmpeg(ffmpeg, endless, {
    signal: controller.signal,
    onStdout: (chunk) => {
      bytes += chunk.length;
      controller.abort();
    },
  });
  assert.is(await glimpseErrorMessage('cancelled', () => run), 'cancelled');
  assert.ok(bytes > 0);
});

test.run();

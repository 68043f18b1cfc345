// Reads frames out of a video file with ffmpeg, as RGB images the engine takes like any
// other image. Times are in seconds from the start of the file, as a player shows them.

import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { resolve } from 'node:path';

import { GlimpseError, oneLine } from '../errors.js';
import { type Ffmpeg, runFfmpeg } from './ffmpeg.js';
import type { RgbImage } from './image.js';
import { PpmFrameStream, PpmStreamError } from './ppm-stream.js';

/** Frames are scaled down to at most this many pixels a side, which bounds memory per frame. */
export const MAX_FRAME_SIDE = 1024;

/** The most frames one run samples (at the size cap, about 3 MB each). */
export const MAX_FRAMES = 256;

export interface VideoInfo {
  /** The path as the user gave it, for messages. */
  path: string;
  durationS: number;
  /** The stored size of the first video stream (before rotation or aspect correction). */
  width: number;
  height: number;
  /** Frames per second, when ffmpeg can tell. */
  fps: number | undefined;
}

export interface VideoFrame {
  index: number;
  /** The sampled time; the frame is the one on screen at that moment. */
  timestampS: number;
  image: RgbImage;
}

export type Sampling = { frames: number } | { fps: number };

/** What `ffmpeg -i FILE` (with no output) says about a file on stderr. */
export interface ProbeReport {
  /** The demuxer names of the `Input #0, <names>, from ...` line; undefined when ffmpeg could not open the file. */
  format: string | undefined;
  /** Undefined when ffmpeg prints `Duration: N/A`. */
  durationS: number | undefined;
  /** The first video stream that is not cover art. */
  video: { width: number; height: number; fps: number | undefined } | undefined;
  /** Why ffmpeg could not open the file (its last line), when it could not. */
  complaint: string;
}

export function parseProbeReport(stderr: string): ProbeReport {
  const format = /^Input #0, (.+?), from /m.exec(stderr)?.[1];
  const duration = /^\s*Duration: (?:N\/A|(\d+):(\d+):(\d+(?:\.\d+)?))/m.exec(stderr);
  const durationS =
    duration?.[1] === undefined
      ? undefined
      : Number(duration[1]) * 3600 + Number(duration[2]) * 60 + Number(duration[3]);
  const complaint = format === undefined ? lastComplaint(stderr) : '';
  return { format, durationS, video: firstVideoStream(stderr), complaint };
}

function firstVideoStream(stderr: string): ProbeReport['video'] {
  for (const [, description] of stderr.matchAll(/^\s*Stream #0:\d+.*?: Video: (.*)$/gm)) {
    if (description === undefined || description.includes('(attached pic)')) continue;
    // `, 1920x1080` and never the codec tag `(avc1 / 0x31637661)`, which follows a slash.
    const size = /, (\d+)x(\d+)\b/.exec(description);
    if (size === null) return undefined;
    const rate = /, (\d+(?:\.\d+)?)(k?) fps\b/.exec(description) ?? /, (\d+(?:\.\d+)?)(k?) tbr\b/.exec(description);
    const fps = rate === null ? undefined : Number(rate[1]) * (rate[2] === 'k' ? 1000 : 1);
    return { width: Number(size[1]), height: Number(size[2]), fps: fps !== undefined && fps > 0 ? fps : undefined };
  }
  return undefined;
}

/** ffmpeg's last line, minus the `file:/abs/path: ` prefix it puts on input errors. */
function lastComplaint(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && line !== 'At least one output file must be specified');
  const last = lines.at(-1) ?? '';
  return last.replace(/^file:.*?: /, '');
}

/** Checks that `path` is a readable video and learns its length, size and frame rate. */
export async function probeVideo(ffmpeg: Ffmpeg, path: string, signal?: AbortSignal): Promise<VideoInfo> {
  await checkReadableFile(path);
  const { code, stderr } = await runFfmpeg(ffmpeg, ['-hide_banner', '-nostdin', '-i', ffmpegInput(path)], { signal });
  const report = parseProbeReport(stderr);
  if (report.format === undefined && report.complaint === '') {
    throw new GlimpseError('input', `${ffmpeg.path} said nothing about ${path} (exit code ${code}); is it ffmpeg?`);
  }
  if (report.format === undefined) {
    throw new GlimpseError('input', `${path}: not a video ffmpeg can read (${report.complaint})`);
  }
  // ffmpeg renders text files as ANSI-art video; nobody means that.
  if (report.format === 'tty') throw new GlimpseError('input', `${path}: not a video (a text file)`);
  if (report.durationS === 0) throw new GlimpseError('input', `${path}: the video has no frames (zero duration)`);
  if (report.video === undefined) throw new GlimpseError('input', `${path}: has no video stream`);
  if (report.durationS === undefined) {
    throw new GlimpseError(
      'input',
      `${path}: the file does not say how long the video is (a still image, or a stream without a container?)`,
    );
  }
  return { path, durationS: report.durationS, ...report.video };
}

async function checkReadableFile(path: string): Promise<void> {
  let size: number;
  try {
    const info = await stat(path);
    if (info.isDirectory()) throw new GlimpseError('input', `${path}: is a directory, not a video`);
    size = info.size;
    await access(path, constants.R_OK);
  } catch (error) {
    if (error instanceof GlimpseError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new GlimpseError('input', `video not found: ${path}`);
    if (code === 'EACCES') throw new GlimpseError('input', `${path}: permission denied`);
    throw new GlimpseError('input', `${path}: cannot read (${oneLine((error as Error).message)})`);
  }
  if (size === 0) throw new GlimpseError('input', `${path}: the file is empty`);
}

/** `file:` keeps ffmpeg from reading a name like `http:...` or `concat:...` as a protocol. */
function ffmpegInput(path: string): string {
  return `file:${resolve(path)}`;
}

/**
 * The times to sample, rounded to microseconds (ffmpeg's resolution). `frames`: N times
 * evenly spread, each in the middle of its N-th of the video. `fps`: every 1/R seconds
 * from the start, while inside the video.
 */
export function sampleTimes(durationS: number, sampling: Sampling): number[] {
  let count: number;
  let timeOf: (i: number) => number;
  if ('frames' in sampling) {
    count = sampling.frames;
    timeOf = (i) => (durationS * (i + 0.5)) / sampling.frames;
  } else {
    // The epsilon keeps 2 s at 10 fps at 20 frames despite floating-point products.
    count = Math.max(1, Math.ceil(durationS * sampling.fps - 1e-9));
    timeOf = (i) => i / sampling.fps;
  }
  if (count > MAX_FRAMES) {
    const asked = 'frames' in sampling ? `--frames ${sampling.frames}` : `--fps ${sampling.fps}`;
    const video = `this ${durationS.toFixed(3)} s video`;
    throw new GlimpseError('usage', `${asked} samples ${count} frames from ${video}, more than the limit of ${MAX_FRAMES}`);
  }
  return Array.from({ length: count }, (_, i) => Math.round(timeOf(i) * 1e6) / 1e6);
}

export interface ExtractOptions {
  signal?: AbortSignal;
  /** Called as each frame is ready (for progress). */
  onFrame?: (frame: VideoFrame) => void;
}

/** The frame on screen at each time, in order. */
export async function extractFrames(
  ffmpeg: Ffmpeg,
  video: VideoInfo,
  times: number[],
  options: ExtractOptions = {},
): Promise<VideoFrame[]> {
  const frames: VideoFrame[] = [];
  // One at a time: ffmpeg already decodes with several threads, and memory stays at one
  // frame in flight.
  for (const [index, timestampS] of times.entries()) {
    const frame = { index, timestampS, image: await frameOnScreen(ffmpeg, video, timestampS, options.signal) };
    frames.push(frame);
    options.onFrame?.(frame);
  }
  return frames;
}

/**
 * The last frame that starts at or before `timeS`. ffmpeg's accurate seek gives the first
 * frame at or after a time, so we seek a little earlier, keep the frames up to `timeS`
 * and take the last; if none starts in that window (a variable frame rate, or a video
 * track that ends early), the window grows back towards the start.
 */
async function frameOnScreen(ffmpeg: Ffmpeg, video: VideoInfo, timeS: number, signal?: AbortSignal): Promise<RgbImage> {
  const interval = frameInterval(video.fps);
  const timeUs = toMicroseconds(timeS);
  // ffmpeg rounds times to the stream's time base on the way; a frame that starts within a
  // quarter frame after `timeS` still counts as on screen, and the next never does.
  const endUs = timeUs + toMicroseconds(interval / 4);
  let lookbackUs = toMicroseconds(2 * interval);
  for (;;) {
    const startUs = Math.max(0, timeUs - lookbackUs);
    const window = `trim=end=${seconds(endUs - startUs)},${SCALE_FILTER}`;
    const frame = await lastFrame(ffmpeg, video, timeS, ['-ss', seconds(startUs)], ['-vf', window], signal);
    if (frame !== undefined) return frame;
    if (startUs === 0) break;
    lookbackUs *= 8;
  }
  // Nothing starts at or before `timeS` (the video track begins late): the first one after.
  const after = ['-frames:v', '1', '-vf', SCALE_FILTER];
  const frame = await lastFrame(ffmpeg, video, timeS, ['-ss', seconds(timeUs)], after, signal);
  if (frame === undefined) {
    throw new GlimpseError('input', `${video.path}: ffmpeg decoded no video frame at ${timeS.toFixed(3)} s`);
  }
  return frame;
}

/** Between 1/240 s and 1 s: a guessed rate (`90k tbr`) must not shrink the margins to nothing. */
function frameInterval(fps: number | undefined): number {
  return Math.min(1, Math.max(1 / 240, 1 / (fps ?? 25)));
}

/**
 * Display size (square pixels, after any rotation ffmpeg applies from metadata), scaled
 * down to MAX_FRAME_SIDE on the longest side but never up.
 */
const FIT = `min(1,${MAX_FRAME_SIDE}/max(iw*sar,ih))`;
const SCALE_FILTER = `scale=w='max(1,round(iw*sar*${FIT}))':h='max(1,round(ih*${FIT}))':flags=bicubic,setsar=1`;

async function lastFrame(
  ffmpeg: Ffmpeg,
  video: VideoInfo,
  timeS: number,
  inputOptions: string[],
  outputOptions: string[],
  signal?: AbortSignal,
): Promise<RgbImage | undefined> {
  let last: RgbImage | undefined;
  const frames = new PpmFrameStream(MAX_FRAME_SIDE, (frame) => (last = frame));
  const args = [
    ...['-hide_banner', '-nostdin', '-loglevel', 'error', '-vsync', 'passthrough'],
    ...inputOptions,
    ...['-i', ffmpegInput(video.path), '-map', '0:V:0'],
    ...outputOptions,
    ...['-pix_fmt', 'rgb24', '-c:v', 'ppm', '-f', 'image2pipe', 'pipe:1'],
  ];
  try {
    const { code, stderr } = await runFfmpeg(ffmpeg, args, { signal, onStdout: (chunk) => frames.push(chunk) });
    if (code !== 0) {
      const reason = lastComplaint(stderr) || `exit code ${code}`;
      throw new GlimpseError('input', `${video.path}: cannot decode the frame at ${timeS.toFixed(3)} s (${reason})`);
    }
    frames.end();
  } catch (error) {
    if (error instanceof PpmStreamError) {
      throw new GlimpseError('input', `${video.path}: unexpected output from ${ffmpeg.path}: ${error.message}`);
    }
    throw error;
  }
  return last;
}

function toMicroseconds(seconds: number): number {
  return Math.round(seconds * 1e6);
}

function seconds(microseconds: number): string {
  return (microseconds / 1e6).toFixed(6);
}

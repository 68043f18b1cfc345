// `glimpse video` end to end: the real CLI on the tiny reference checkpoint and the
// moving-square fixture video, held to what the engine answers for the same frames.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { DEFAULT_FRAME_PROMPT, DEFAULT_VIDEO_PROMPT } from '../src/commands/video.js';
import { type GenerateOutput, type Message, Model } from '../src/engine.js';
import { findFfmpeg } from '../src/media/ffmpeg.js';
import type { RgbImage } from '../src/media/image.js';
import { extractFrames, probeVideo, sampleTimes } from '../src/media/video.js';
import { errorLine, FIXTURES, runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { SQUARE_VIDEO, VIDEOS } from './helpers/video.js';

const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');
const MAX_TOKENS = 8;
// The tiny random model answers greedily with the same tokens for nearly any input; hot,
// seeded sampling turns the smallest change in the input (a frame swapped, shifted or
// missing) into different tokens, so equal answers mean equal inputs.
const SAMPLING = { maxTokens: MAX_TOKENS, temperature: 3, seed: 7 };
const SAMPLING_ARGS = ['--max-tokens', String(MAX_TOKENS), '--temperature', '3', '--seed', '7'];
const BASE_ARGS = ['video', '--model', MODEL, ...SAMPLING_ARGS, '--frames', '2', SQUARE_VIDEO];

test.after.each(removeTempDirs);

type Event = Record<string, unknown>;

function events(stdout: string): Event[] {
  return stdout
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Event);
}

/** What the engine answers for these frames and this conversation. */
async function engineAnswer(images: RgbImage[], prompt: string, system?: string): Promise<GenerateOutput> {
  const messages: Message[] = [];
  if (system !== undefined) messages.push({ role: 'system', content: [{ type: 'text', text: system }] });
  const frameParts = images.map(() => ({ type: 'image' as const }));
  messages.push({ role: 'user', content: [...frameParts, { type: 'text', text: prompt }] });
  const model = await Model.load(MODEL);
  return model.generate({ messages, images, ...SAMPLING }).result;
}

async function squareFrames(count: number): Promise<RgbImage[]> {
  const ffmpeg = findFfmpeg();
  const video = await probeVideo(ffmpeg, SQUARE_VIDEO);
  const frames = await extractFrames(ffmpeg, video, sampleTimes(video.durationS, { frames: count }));
  return frames.map((frame) => frame.image);
}

test('--json: video, frame events, then the tokens, stats and done', () => {
  const result = runCli([...BASE_ARGS, '--json']);
  assert.is(result.stderr, '');
  assert.is(result.code, 0);
  const all = events(result.stdout);
  assert.equal(all.slice(0, 3), [
    { type: 'video', duration_s: 2, width: 64, height: 48, fps: 10 },
    { type: 'frame', frame: 0, timestamp_s: 0.5, width: 64, height: 48, vision_tokens: 144 },
    { type: 'frame', frame: 1, timestamp_s: 1.5, width: 64, height: 48, vision_tokens: 144 },
  ]);
  const tokens = all.slice(3, -2);
  assert.ok(tokens.length > 0 && tokens.every((event) => event.type === 'token'));
  const [stats, done] = all.slice(-2);
  assert.is(stats?.type, 'stats');
  assert.is(stats?.vision_tokens_in, 2 * 144);
  assert.is(stats?.generated_tokens, MAX_TOKENS);
  assert.equal(done, { type: 'done', text: tokens.map((event) => event.text).join(''), finish_reason: 'length' });
});

test('the summary is what the engine answers for the frames, then the prompt; stdout holds only it', async () => {
  const expected = await engineAnswer(await squareFrames(2), DEFAULT_VIDEO_PROMPT);
  const result = runCli(BASE_ARGS);
  assert.is(result.stderr, '');
  assert.is(result.code, 0);
  assert.is(result.stdout, `${expected.text}\n`);
});

test('--prompt, --prompt - (stdin) and --system reach the model', async () => {
  const frames = await squareFrames(2);
  const prompt = 'Where does the square go?';
  const expected = await engineAnswer(frames, prompt, 'Be brief.');
  const given = runCli([...BASE_ARGS, '--prompt', prompt, '--system', 'Be brief.']);
  assert.is(given.code, 0, given.stderr);
  assert.is(given.stdout, `${expected.text}\n`);
  const piped = runCli([...BASE_ARGS, '--prompt', '-', '--system', 'Be brief.'], { input: `${prompt}\n` });
  assert.is(piped.code, 0, piped.stderr);
  assert.is(piped.stdout, `${expected.text}\n`);
});

test('--stats prints the frames and the generation statistics to stderr', () => {
  const result = runCli([...BASE_ARGS, '--stats']);
  assert.is(result.code, 0);
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.slice(0, 3), [
    'frame  timestamp_s  size   vision_tokens',
    '0      0.500        64x48  144',
    '1      1.500        64x48  144',
  ]);
  assert.ok(lines.some((line) => /^vision_tokens_in +288$/.test(line)), result.stderr);
  assert.ok(lines.some((line) => new RegExp(`^generated_tokens +${MAX_TOKENS}$`).test(line)), result.stderr);
  assert.is(result.stdout, runCli(BASE_ARGS).stdout);
});

test('--per-frame writes one caption line per frame, each what the engine says of that frame alone', async () => {
  const frames = await squareFrames(2);
  const dir = tempDir();
  const captions = join(dir, 'captions.jsonl');
  const result = runCli([...BASE_ARGS, '--per-frame', captions]);
  assert.is(result.code, 0, result.stderr);
  assert.is(result.stdout, runCli(BASE_ARGS).stdout);
  const lines = readFileSync(captions, 'utf8').split('\n');
  assert.is(lines.pop(), '');
  assert.is(lines.length, 2);
  for (const [i, line] of lines.entries()) {
    const expected = await engineAnswer([frames[i]!], DEFAULT_FRAME_PROMPT);
    assert.equal(JSON.parse(line), {
      frame: i,
      timestamp_s: [0.5, 1.5][i],
      width: 64,
      height: 48,
      vision_tokens: 144,
      caption: expected.text,
      finish_reason: expected.finish_reason,
    });
  }
  const custom = runCli([...BASE_ARGS, '--per-frame', captions, '--frame-prompt', 'What colour is the square?']);
  assert.is(custom.code, 0, custom.stderr);
  const first = JSON.parse(readFileSync(captions, 'utf8').split('\n')[0]!) as { caption: string };
  assert.is(first.caption, (await engineAnswer([frames[0]!], 'What colour is the square?')).text);
});

/** Exit code 2 and exactly the one line `glimpse: <message>`. */
function inputError(args: string[], env?: Record<string, string | undefined>): string {
  const result = runCli(args, { env });
  assert.is(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
  return errorLine(result);
}

test('a missing file, a text file named .mp4, a file without video or frames: exit 2, one line', () => {
  const dir = tempDir();
  const missing = join(dir, 'missing.mp4');
  const text = join(dir, 'notes.mp4');
  writeFileSync(text, 'These are my notes, not a video.\n');
  const audio = join(VIDEOS, 'audio-only.mp4');
  const empty = join(VIDEOS, 'no-frames.mp4');
  const video = (file: string) => ['video', '--model', MODEL, file];
  assert.is(inputError(video(missing)), `glimpse: video not found: ${missing}`);
  assert.is(
    inputError(video(text)),
    `glimpse: ${text}: not a video ffmpeg can read (Invalid data found when processing input)`,
  );
  assert.is(inputError(video(audio)), `glimpse: ${audio}: has no video stream`);
  assert.is(inputError(video(empty)), `glimpse: ${empty}: the video has no frames (zero duration)`);
});

test('more frames than the context window holds: exit 2 with the largest --frames that fits', () => {
  // 144 vision tokens a frame and a 1024-token window: 8 cannot fit on vision tokens alone.
  assert.is(
    inputError(['video', '--model', MODEL, SQUARE_VIDEO]),
    'glimpse: 8 frames of 144 vision tokens each make 1152 vision tokens, ' +
      "over the model's context window of 1024 tokens: use --frames 7 or fewer",
  );
  // 7 frames are 1008 tokens; the prompt's text tips them over, as only the engine can tell.
  const seven = inputError(['video', '--model', MODEL, '--frames', '7', SQUARE_VIDEO]);
  const match = new RegExp(
    '^glimpse: 7 frames of 144 vision tokens each make a (\\d+)-token prompt, ' +
      "over the model's context window of 1024 tokens: use --frames (\\d+) or fewer$",
  ).exec(seven);
  assert.ok(match, seven);
  const textTokens = Number(match[1]) - 7 * 144;
  const fitting = Math.floor((1023 - textTokens) / 144);
  assert.is(Number(match[2]), fitting);
  const result = runCli(['video', '--model', MODEL, '--frames', String(fitting), '--max-tokens', '1', SQUARE_VIDEO]);
  assert.is(result.code, 0, result.stderr);
});

test('--frames with --fps, or an empty prompt, is a usage error', () => {
  const both = runCli(['video', '--frames', '2', '--fps', '1', SQUARE_VIDEO]);
  assert.is(both.code, 1);
  assert.is(errorLine(both), 'glimpse: --frames and --fps cannot be used together');
  const empty = runCli(['video', '--prompt', ' ', SQUARE_VIDEO]);
  assert.is(empty.code, 1);
  assert.is(errorLine(empty), 'glimpse: the prompt is empty');
  const tooMany = runCli(['video', '--frames', '257', SQUARE_VIDEO]);
  assert.is(tooMany.code, 1);
  assert.is(
    errorLine(tooMany),
    "glimpse: Invalid value for --frames: expected to be at most 256 (got 257) (see 'glimpse --help')",
  );
});

test.run();

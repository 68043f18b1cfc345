// `glimpse video FILE`: sample frames from a video and summarize them in one answer,
// optionally captioning each frame on its own first.

import { type FileHandle, open } from 'node:fs/promises';
import { text as readAll } from 'node:stream/consumers';

import { Option } from 'clipanion';
import * as t from 'typanion';

import {
  checkReduceSpec,
  contextOverflow,
  type GenerateOutput,
  type Message,
  Model,
  type SamplingOptions,
} from '../engine.js';
import { EXIT_CODES, GlimpseError, oneLine } from '../errors.js';
import { Interrupt } from '../interrupt.js';
import { findFfmpeg } from '../media/ffmpeg.js';
import { extractFrames, MAX_FRAMES, probeVideo, sampleTimes, type VideoFrame, type VideoInfo } from '../media/video.js';
import { resolveModelDir } from '../model-path.js';
import { formatFrameTable, type FrameRow } from '../output/frame-table.js';
import { tokensPerImage } from '../output/image-tokens.js';
import type { AnswerPiece } from '../output/kept-html.js';
import { NdjsonWriter } from '../output/ndjson.js';
import { type Progress, startProgress } from '../output/spinner.js';
import { checkShowKeptPath, writeShowKept } from '../output/show-kept.js';
import { formatStats } from '../output/stats.js';
import { TextPrinter } from '../output/text-printer.js';
import { DEFAULT_MAX_TOKENS } from './ask.js';
import {
  deviceOption,
  dtypeOption,
  maxImageTokensOption,
  GlimpseCommand,
  isAbove,
  isWholeNumber,
  reduceHelp,
  reduceOption,
  showKeptOption,
  threadsOption,
  visionTowerOption,
} from './base.js';

export const DEFAULT_FRAMES = 8;
export const DEFAULT_VIDEO_PROMPT = 'These are frames from a video, in order. Summarize what happens.';
export const DEFAULT_FRAME_PROMPT = 'Describe this frame.';

export class VideoCommand extends GlimpseCommand {
  static override paths = [['video']];

  static override usage = GlimpseCommand.Usage({
    description: 'Summarize a video from frames sampled across it',
    details: `
      Samples frames from FILE with ffmpeg (\`--frames\` evenly spaced, 8 by default, or
      \`--fps\`), shows them to the model in order in one message followed by the prompt, and
      streams the answer to standard output. \`--json\` prints NDJSON events instead: one
      \`video\` event, a \`frame\` event per frame, then \`token\`, \`stats\` and \`done\`.

      Every frame costs the model's full count of image tokens (576 for LLaVA-1.5), and all
      of them must fit the context window with the prompt: \`--frames\` bounds that.

      \`--per-frame FILE.jsonl\` first captions each frame alone (with \`--frame-prompt\`) and
      writes one JSON line per frame: frame, timestamp_s, width, height, vision_tokens,
      caption, finish_reason.

      ffmpeg is \`$GLIMPSE_FFMPEG\`, else \`ffmpeg\` on PATH, else the build bundled with glimpse.
${reduceHelp()}
      \`--reduce\` applies to every frame, and to the per-frame captions too; the context
      window must still hold every frame's full count of image tokens. \`--show-kept\` draws
      the summary's frames (\`FILE-1.png\`… or one \`FILE.html\` page), as \`glimpse ask\` does.
      With \`--reduce\`, \`--stats\` says how many visual tokens each frame kept after the
      encoder and after prefill (and how many were evicted while decoding), and the \`done\`
      event of \`--json\` carries the same counts as \`frames\`.
    `,
    examples: [
      ['Summarize a clip', '$0 video clip.mp4'],
      ['Ask something else about 4 frames', '$0 video --frames 4 --prompt "Where is the ball at the end?" clip.mp4'],
      ['One frame every 2 seconds, each also captioned', '$0 video --fps 0.5 --per-frame captions.jsonl clip.mp4'],
      ['16 frames with a quarter of their tokens', '$0 video --frames 16 --reduce fastv:keep=144 --stats clip.mp4'],
    ],
  });

  file = Option.String({ name: 'file' });

  frames = Option.String('--frames', {
    description: `Frames to sample, evenly spaced (default: ${DEFAULT_FRAMES}, at most ${MAX_FRAMES}); each costs context`,
    validator: t.cascade(isWholeNumber(1), [t.isAtMost(MAX_FRAMES)]),
  });
  fps = Option.String('--fps', {
    description: 'Sample R frames per second from the start instead of --frames',
    validator: t.cascade(t.isNumber(), [isAbove(0)]),
  });
  prompt = Option.String('--prompt', {
    description: `What to ask about the frames; - reads it from stdin (default: "${DEFAULT_VIDEO_PROMPT}")`,
  });
  perFrame = Option.String('--per-frame', { description: 'Also caption each frame alone, into this JSON Lines file' });
  framePrompt = Option.String('--frame-prompt', {
    description: `Prompt for each frame with --per-frame (default: "${DEFAULT_FRAME_PROMPT}")`,
  });

  model = Option.String('--model', { description: 'Model directory or cached Hugging Face repo id' });
  system = Option.String('--system', { description: 'System message to put before the question' });
  maxTokens = Option.String('--max-tokens', {
    description: `Most tokens to generate, per answer (default: ${DEFAULT_MAX_TOKENS})`,
    validator: isWholeNumber(1),
  });
  temperature = Option.String('--temperature', {
    description: 'Sampling temperature; 0 picks the likeliest token every time (default: 0)',
    validator: t.cascade(t.isNumber(), [t.isAtLeast(0)]),
  });
  topK = Option.String('--top-k', {
    description: 'Sample only from the K likeliest tokens; 0 = no limit (default: 0)',
    validator: isWholeNumber(0),
  });
  topP = Option.String('--top-p', {
    description: 'Sample only from the likeliest tokens whose probabilities sum to P (default: 1)',
    validator: t.cascade(t.isNumber(), [isAbove(0), t.isAtMost(1)]),
  });
  repetitionPenalty = Option.String('--repetition-penalty', {
    description: 'Penalty for repeating earlier tokens; 1 = none (default: 1)',
    validator: t.cascade(t.isNumber(), [isAbove(0)]),
  });
  seed = Option.String('--seed', { description: 'Random seed for sampling (default: 0)', validator: isWholeNumber(0) });
  stop = Option.Array('--stop', { description: 'Stop when this text is generated (repeatable)' });
  threads = threadsOption();
  visionTower = visionTowerOption();
  device = deviceOption();
  dtype = dtypeOption();
  maxImageTokens = maxImageTokensOption();
  json = Option.Boolean('--json', false, { description: 'Print NDJSON events instead of text' });
  stats = Option.Boolean('--stats', false, { description: 'Print the frames and generation statistics to stderr' });
  reduce = reduceOption();
  showKept = showKeptOption();

  async execute(): Promise<number> {
    if (this.frames !== undefined && this.fps !== undefined) {
      throw new GlimpseError('usage', '--frames and --fps cannot be used together');
    }
    if (this.reduce !== undefined) checkReduceSpec(this.reduce);
    if (this.showKept !== undefined) checkShowKeptPath(this.showKept);
    const prompt = await this.readPrompt();
    const framePrompt = this.framePrompt ?? DEFAULT_FRAME_PROMPT;
    if (framePrompt.trim() === '') throw new GlimpseError('usage', 'the frame prompt is empty');
    const modelDir = resolveModelDir(this.model);
    const output = this.json ? new NdjsonWriter(this.context.stdout) : new TextPrinter(this.context.stdout);
    const interrupt = new Interrupt(() => output.mute());
    let prepared: Prepared | undefined;
    try {
      const progress = startProgress('Reading video', Boolean(process.stderr.isTTY) && !this.json);
      try {
        prepared = await this.prepare(modelDir, progress, interrupt.signal);
      } finally {
        progress.stop();
      }
      const { video, frames, model, visionTokens, captions } = prepared;
      const rows = frames.map((frame) => frameRow(frame, visionTokens));
      if (output instanceof NdjsonWriter) {
        output.write({
          type: 'video',
          duration_s: video.durationS,
          width: video.width,
          height: video.height,
          fps: video.fps ?? null,
        });
        for (const row of rows) output.write({ type: 'frame', ...row });
      }

      interrupt.generationStarted();
      if (captions !== undefined) await this.captionEach(model, frames, rows, framePrompt, captions, interrupt.signal);
      if (interrupt.interrupted) return EXIT_CODES.cancelled;
      const answer: AnswerPiece[] = [];
      const result = await this.summarize(model, frames, prompt, visionTokens, output, interrupt.signal, answer);
      if (interrupt.interrupted || result.finish_reason === 'cancelled') return EXIT_CODES.cancelled;
      this.finish(result, rows, output);
      if (this.showKept !== undefined) {
        const images = frames.map((frame) => frame.image);
        await writeShowKept(this.showKept, images, result, answer);
      }
      return EXIT_CODES.ok;
    } catch (error) {
      if (interrupt.interrupted) return EXIT_CODES.cancelled;
      throw error;
    } finally {
      await prepared?.captions?.close();
      interrupt.dispose();
    }
  }

  /**
   * The video is probed before the model loads (a bad file fails in a moment), and frames
   * are extracted only once the model says they fit its context window.
   */
  private async prepare(modelDir: string, progress: Progress, signal: AbortSignal): Promise<Prepared> {
    const ffmpeg = findFfmpeg();
    const video = await probeVideo(ffmpeg, this.file, signal);
    const captions = this.perFrame === undefined ? undefined : await openCaptionsFile(this.perFrame);
    const times = sampleTimes(
      video.durationS,
      this.fps === undefined ? { frames: this.frames ?? DEFAULT_FRAMES } : { fps: this.fps },
    );
    try {
      progress.update('Loading model');
      const model = await Model.load(modelDir, {
        threads: this.threads,
        visionTower: this.visionTower,
        device: this.device,
        dtype: this.dtype,
        maxImageTokens: this.maxImageTokens,
      });
      const { image_tokens: visionTokens, context_length: context } = model.info();
      if (times.length * visionTokens >= context) throw frameOverflow(times.length, visionTokens, context);
      progress.update(`Extracting frames (0/${times.length})`);
      const frames = await extractFrames(ffmpeg, video, times, {
        signal,
        onFrame: (frame) => progress.update(`Extracting frames (${frame.index + 1}/${times.length})`),
      });
      return { video, frames, model, visionTokens, captions };
    } catch (error) {
      await captions?.close();
      throw error;
    }
  }

  private async captionEach(
    model: Model,
    frames: VideoFrame[],
    rows: FrameRow[],
    framePrompt: string,
    captions: FileHandle,
    signal: AbortSignal,
  ): Promise<void> {
    const progress = startProgress('Captioning frames', Boolean(process.stderr.isTTY) && !this.json);
    try {
      for (const [i, frame] of frames.entries()) {
        progress.update(`Captioning frame ${i + 1}/${frames.length}`);
        const generation = model.generate(
          {
            messages: this.conversation(1, framePrompt),
            images: [frame.image],
            reduce: this.reduce,
            ...this.sampling(),
          },
          signal,
        );
        const result = await generation.result;
        if (result.finish_reason === 'cancelled') return;
        const line = {
          ...rows[i],
          vision_tokens: result.stats.vision_tokens_in,
          caption: result.text,
          finish_reason: result.finish_reason,
        };
        await captions.write(`${JSON.stringify(line)}\n`);
      }
    } finally {
      progress.stop();
    }
  }

  private async summarize(
    model: Model,
    frames: VideoFrame[],
    prompt: string,
    visionTokens: number,
    output: TextPrinter | NdjsonWriter,
    signal: AbortSignal,
    answer: AnswerPiece[],
  ): Promise<GenerateOutput> {
    const generation = model.generate(
      {
        messages: this.conversation(frames.length, prompt),
        images: frames.map((frame) => frame.image),
        reduce: this.reduce,
        ...this.sampling(),
      },
      signal,
    );
    try {
      for await (const event of generation) {
        answer.push(event);
        if (output instanceof NdjsonWriter) output.write({ type: 'token', text: event.text, id: event.id });
        else output.write(event.text);
      }
      return await generation.result;
    } catch (error) {
      const overflow = contextOverflow(error);
      if (overflow === undefined) throw error;
      throw frameOverflow(frames.length, visionTokens, overflow.contextLength, overflow.promptTokens);
    }
  }

  private finish(result: GenerateOutput, rows: FrameRow[], output: TextPrinter | NdjsonWriter): void {
    // What the reduction left of each frame; the stats only give sums over all frames.
    const kept = this.reduce === undefined ? undefined : tokensPerImage(result.reduction);
    if (output instanceof NdjsonWriter) {
      output.write({ type: 'stats', ...result.stats });
      const reduction =
        kept === undefined
          ? {}
          : {
              frames: rows.map((row, i) => ({ frame: row.frame, vision_tokens: row.vision_tokens, ...kept[i] })),
              reduction: result.reduction,
            };
      output.write({ type: 'done', text: result.text, finish_reason: result.finish_reason, ...reduction });
      return;
    }
    output.finish();
    if (this.stats) this.context.stderr.write(formatFrameTable(rows, kept) + formatStats(result.stats));
  }

  private sampling(): SamplingOptions {
    return {
      maxTokens: this.maxTokens ?? DEFAULT_MAX_TOKENS,
      temperature: this.temperature ?? 0,
      topK: this.topK,
      topP: this.topP,
      repetitionPenalty: this.repetitionPenalty,
      seed: this.seed,
      stop: this.stop,
    };
  }

  /** One user message: the frames in order, then the question. */
  private conversation(imageCount: number, prompt: string): Message[] {
    const messages: Message[] = [];
    if (this.system !== undefined) messages.push({ role: 'system', content: [{ type: 'text', text: this.system }] });
    const images = Array.from({ length: imageCount }, () => ({ type: 'image' as const }));
    messages.push({ role: 'user', content: [...images, { type: 'text', text: prompt }] });
    return messages;
  }

  private async readPrompt(): Promise<string> {
    const given = this.prompt ?? DEFAULT_VIDEO_PROMPT;
    const prompt = given === '-' ? (await readAll(this.context.stdin)).trim() : given;
    if (prompt.trim() === '') throw new GlimpseError('usage', 'the prompt is empty');
    return prompt;
  }
}

interface Prepared {
  video: VideoInfo;
  frames: VideoFrame[];
  model: Model;
  /** Image tokens each frame brings to the prompt (before any reduction). */
  visionTokens: number;
  /** The open --per-frame file. */
  captions: FileHandle | undefined;
}

function frameRow(frame: VideoFrame, visionTokens: number): FrameRow {
  return {
    frame: frame.index,
    timestamp_s: frame.timestampS,
    width: frame.image.width,
    height: frame.image.height,
    vision_tokens: visionTokens,
  };
}

/**
 * Too many frames for the context window, with the largest --frames that fits. Before
 * tokenizing (`promptTokens` unknown) only the image tokens count, so that is an upper bound.
 */
function frameOverflow(frames: number, perFrame: number, context: number, promptTokens?: number): GlimpseError {
  const textTokens = promptTokens === undefined ? 0 : promptTokens - frames * perFrame;
  const fitting = Math.floor((context - 1 - textTokens) / perFrame);
  const size = promptTokens === undefined ? `${frames * perFrame} vision tokens` : `a ${promptTokens}-token prompt`;
  const advice = fitting >= 1 ? `use --frames ${fitting} or fewer` : 'not even one frame fits with this prompt';
  const window = `the model's context window of ${context} tokens`;
  return new GlimpseError('input', `${frames} frames of ${perFrame} vision tokens each make ${size}, over ${window}: ${advice}`);
}

async function openCaptionsFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'w');
  } catch (error) {
    throw new GlimpseError('input', `cannot write ${path}: ${oneLine((error as Error).message)}`);
  }
}

// `glimpse caption PATH...`: one caption per image, as JSON lines, with the model loaded
// once. Built for long unattended runs: failed images are recorded and skipped, the output
// file stays valid whenever the process dies, `--resume` picks up where a run stopped and
// `--shard` splits the work between several workers.

import { Option } from 'clipanion';
import * as t from 'typanion';

import { captionImages } from '../caption/run.js';
import { selectImages } from '../caption/select.js';
import { inShard, parseShard } from '../caption/shard.js';
import { dropUnfinishedLine, imagesToCaption, readCaptioned } from '../caption/resume.js';
import { FileSink, type RecordSink, StreamSink } from '../caption/sink.js';
import { checkReduceSpec, type Message, Model } from '../engine.js';
import { EXIT_CODES, GlimpseError } from '../errors.js';
import { Interrupt } from '../interrupt.js';
import { DEFAULT_MAX_PIXELS } from '../media/image.js';
import { resolveModelDir } from '../model-path.js';
import { BatchProgress } from '../output/progress.js';
import { startProgress } from '../output/spinner.js';
import {
  deviceOption,
  dtypeOption,
  maxImageTokensOption,
  GlimpseCommand,
  isAbove,
  isWholeNumber,
  reduceHelp,
  reduceOption,
  threadsOption,
  visionTowerOption,
} from './base.js';

export const DEFAULT_CAPTION_PROMPT = 'Describe this image in one sentence.';
export const DEFAULT_CAPTION_MAX_TOKENS = 64;

export class CaptionCommand extends GlimpseCommand {
  static override paths = [['caption']];

  static override usage = GlimpseCommand.Usage({
    description: 'Caption many images, one JSON line each',
    details: `
      Each PATH is an image, a folder (its images, by file extension; \`--recursive\` for
      sub-folders too) or a quoted wildcard pattern (\`*\`, \`?\`, \`**\`). Images are captioned
      in sorted path order, and each becomes one JSON line on standard output or in
      \`--output\`: its caption, or \`error\` and \`code\` when it failed; the run goes on.

      \`--resume\` continues an output file: images already captioned with the same content
      are skipped, failed ones are tried again. \`--shard I/N\` takes the images whose path
      hashes to I out of N, so N workers split the set exactly.

      \`--batch N\` captions N images together: the model decodes their captions in one pass
      per token, reading its weights once for all of them, which raises images per minute.
      Each caption is the one the image gets alone (same tokens, same sampling and seed).
      Records are still written one per image, in order, once their batch is done, and each
      record's \`ms\` is then its batch's time shared by its captions; a stopped run loses at
      most the batch it was in.

      Exits 0 when every image was captioned, 2 when any failed (or none was found).
${reduceHelp()}
      Each record's \`reduce\` field names the spec its caption was made with.
    `,
    examples: [
      ['Caption a folder into a file', '$0 caption photos/ --output captions.jsonl'],
      ['Continue after a stop', '$0 caption photos/ --output captions.jsonl --resume'],
      ['One of four workers', '$0 caption --recursive photos/ --shard 2/4 --output part-2.jsonl'],
      ['Only some files', `$0 caption 'photos/**/*.jpg' --prompt 'List the objects in this picture.'`],
      ['From 64 visual tokens per image', '$0 caption photos/ --reduce mustdrop:keep=64 --output captions.jsonl'],
      ['Four images at a time', '$0 caption photos/ --batch 4 --output captions.jsonl'],
    ],
  });

  inputs = Option.Rest({ name: 'path', required: 1 });

  output = Option.String('-o,--output', { description: 'Append the JSON lines to this file (default: stdout)' });
  recursive = Option.Boolean('-r,--recursive', false, { description: 'Look for images in sub-folders too' });
  resume = Option.Boolean('--resume', false, {
    description: 'Continue the --output file: skip images captioned there, retry failed ones',
  });
  shard = Option.String('--shard', { description: 'Take only shard I of N (I/N, 0-based) of the images' });
  batch = Option.String('--batch', {
    description: 'Caption N images together, for more images per minute (default: 1)',
    validator: isWholeNumber(1),
  });
  prompt = Option.String('--prompt', {
    description: `What to ask about each image (default: "${DEFAULT_CAPTION_PROMPT}")`,
  });
  model = Option.String('--model', { description: 'Model directory or cached Hugging Face repo id' });
  system = Option.String('--system', { description: 'System message to put before the prompt' });
  maxTokens = Option.String('--max-tokens', {
    description: `Most tokens per caption (default: ${DEFAULT_CAPTION_MAX_TOKENS})`,
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
  seed = Option.String('--seed', {
    description: 'Random seed for sampling, the same for every image (default: 0)',
    validator: isWholeNumber(0),
  });
  stop = Option.Array('--stop', { description: 'Stop a caption when this text is generated (repeatable)' });
  threads = threadsOption();
  visionTower = visionTowerOption();
  device = deviceOption();
  dtype = dtypeOption();
  maxImageTokens = maxImageTokensOption();
  reduce = reduceOption();
  maxPixels = Option.String('--max-pixels', {
    description: `Refuse larger images (default: ${DEFAULT_MAX_PIXELS})`,
    validator: isWholeNumber(1),
  });

  async execute(): Promise<number> {
    const shard = this.shard === undefined ? undefined : parseShard(this.shard);
    if (this.reduce !== undefined) checkReduceSpec(this.reduce);
    if (this.resume && this.output === undefined) {
      throw new GlimpseError('usage', '--resume needs --output FILE: it continues that file');
    }
    const messages = this.conversation();
    const modelDir = resolveModelDir(this.model);

    const selected = selectImages(this.inputs, { recursive: this.recursive });
    if (selected.length === 0) throw new GlimpseError('input', `no images found in ${this.inputs.join(', ')}`);
    const mine = shard === undefined ? selected : selected.filter((path) => inShard(path, shard));
    const paths = this.output !== undefined && this.resume ? await this.resumeFile(this.output, mine) : mine;
    const sink: RecordSink =
      this.output === undefined
        ? new StreamSink(this.context.stdout)
        : new FileSink(this.output, { resume: this.resume });

    const interrupt = new Interrupt();
    try {
      if (paths.length === 0) {
        this.context.stderr.write('nothing to caption\n');
        return EXIT_CODES.ok;
      }
      const model = await this.loadModel(modelDir);
      interrupt.generationStarted();
      const stderr = this.context.stderr as NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
      const progress = new BatchProgress(stderr, {
        total: paths.length,
        terminal: stderr.isTTY === true,
        columns: stderr.columns,
      });
      const outcome = await captionImages({
        model,
        modelName: modelDir,
        paths,
        batchSize: this.batch ?? 1,
        messages,
        sampling: {
          maxTokens: this.maxTokens ?? DEFAULT_CAPTION_MAX_TOKENS,
          temperature: this.temperature ?? 0,
          topK: this.topK,
          topP: this.topP,
          repetitionPenalty: this.repetitionPenalty,
          seed: this.seed ?? 0,
          stop: this.stop,
        },
        reduce: this.reduce,
        maxPixels: this.maxPixels,
        signal: interrupt.signal,
        sink,
        progress,
      });
      progress.end(outcome.interrupted);
      if (outcome.interrupted) return EXIT_CODES.cancelled;
      return outcome.failed > 0 ? EXIT_CODES.input : EXIT_CODES.ok;
    } finally {
      interrupt.dispose();
      sink.close();
    }
  }

  /** Repairs `file` after a killed run and returns the images of `paths` it lacks. */
  private async resumeFile(file: string, paths: string[]): Promise<string[]> {
    const dropped = dropUnfinishedLine(file);
    if (dropped > 0) this.context.stderr.write(`${file}: dropped an unfinished last line (${dropped} bytes)\n`);
    const remaining = await imagesToCaption(paths, await readCaptioned(file));
    const done = paths.length - remaining.length;
    if (done > 0) this.context.stderr.write(`${file}: ${done} of ${paths.length} images already captioned\n`);
    return remaining;
  }

  private async loadModel(modelDir: string): Promise<Model> {
    const spinner = startProgress('Loading model', Boolean(process.stderr.isTTY));
    try {
      return await Model.load(modelDir, {
        threads: this.threads,
        visionTower: this.visionTower,
        device: this.device,
        dtype: this.dtype,
        maxImageTokens: this.maxImageTokens,
      });
    } finally {
      spinner.stop();
    }
  }

  private conversation(): Message[] {
    const prompt = this.prompt ?? DEFAULT_CAPTION_PROMPT;
    if (prompt.trim() === '') throw new GlimpseError('usage', 'the prompt is empty');
    const messages: Message[] = [];
    if (this.system !== undefined) messages.push({ role: 'system', content: [{ type: 'text', text: this.system }] });
    messages.push({ role: 'user', content: [{ type: 'image' }, { type: 'text', text: prompt }] });
    return messages;
  }
}

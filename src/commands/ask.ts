// `glimpse ask [IMAGE...] PROMPT`: answer one question about zero or more images.

import { existsSync } from 'node:fs';
import { text as readAll } from 'node:stream/consumers';

import { Option } from 'clipanion';
import * as t from 'typanion';

import { Conversation } from '../chat/conversation.js';
import { QuestionReader } from '../chat/questions.js';
import { checkReduceSpec, contextOverflow, type GenerateOutput, type Message, Model } from '../engine.js';
import { EXIT_CODES, GlimpseError } from '../errors.js';
import { Interrupt } from '../interrupt.js';
import { DEFAULT_MAX_PIXELS, hasImageExtension, loadImage, type RgbImage } from '../media/image.js';
import { resolveModelDir } from '../model-path.js';
import { NdjsonWriter } from '../output/ndjson.js';
import { startProgress } from '../output/spinner.js';
import type { AnswerPiece } from '../output/kept-html.js';
import { checkShowKeptPath, writeShowKept } from '../output/show-kept.js';
import { formatStats } from '../output/stats.js';
import { TextPrinter } from '../output/text-printer.js';
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

export const DEFAULT_MAX_TOKENS = 256;

export class AskCommand extends GlimpseCommand {
  static override paths = [['ask']];

  static override usage = GlimpseCommand.Usage({
    description: 'Ask a question about images',
    details: `
      The last argument is the prompt (\`-\` reads it from standard input); the ones before it
      are images, each shown to the model in order. With no image the model answers text only.

      The answer is streamed to standard output. \`--json\` prints one JSON event per line
      instead: \`token\` events, then \`stats\` and \`done\` (with the \`reduction\` report
      when \`--reduce\` is given).
${reduceHelp()}
      \`--show-kept FILE.png\` writes the image with the patches of dropped tokens whitened,
      tokens that stand for several patches outlined and key tokens dotted (\`FILE-1.png\`,
      \`FILE-2.png\`… for several images). \`FILE.html\` is one page with the images and the
      answer, greying the tokens whose keys and values the cache did not keep.

      \`--chat\` keeps the conversation going: after the answer to PROMPT, each line of
      standard input is the next question (at a terminal, after a \`> \` prompt on stderr),
      answered in the light of the questions and answers before it, until end of input.
      With an image or \`-\` in PROMPT's place every question comes from standard input.
      Each turn sends the whole conversation to the model again, so the images are encoded
      again and the prompt grows every turn; a conversation that outgrows the context window
      ends with exit code 2. Ctrl-C ends the chat (exit code 130).
    `,
    examples: [
      ['Describe a photo', '$0 ask photo.jpg "What is in this picture?"'],
      ['Compare two images with a local checkpoint', '$0 ask --model ./llava-1.5-7b-hf a.png b.png "What changed?"'],
      ['Read the prompt from a file', '$0 ask chart.png - < question.txt'],
      ['Keep 64 visual tokens, see which', '$0 ask --reduce mustdrop:keep=64 --show-kept kept.png cat.jpg "Breed?"'],
      ['Talk about a photo, a question per line', '$0 ask --chat photo.jpg'],
    ],
  });

  images = Option.Rest({ name: 'image' });
  prompt = Option.String({ name: 'prompt' });

  model = Option.String('--model', { description: 'Model directory or cached Hugging Face repo id' });
  system = Option.String('--system', { description: 'System message to put before the question' });
  maxTokens = Option.String('--max-tokens', {
    description: `Most tokens to generate (default: ${DEFAULT_MAX_TOKENS})`,
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
  maxPixels = Option.String('--max-pixels', {
    description: `Refuse larger images (default: ${DEFAULT_MAX_PIXELS})`,
    validator: isWholeNumber(1),
  });
  json = Option.Boolean('--json', false, { description: 'Print NDJSON events instead of text' });
  stats = Option.Boolean('--stats', false, { description: 'Print generation statistics to stderr' });
  reduce = reduceOption();
  showKept = showKeptOption();
  chat = Option.Boolean('--chat', false, {
    description: 'Go on with a question per line of stdin, each answered with the conversation so far',
  });

  async execute(): Promise<number> {
    if (this.chat) return this.executeChat();
    this.checkReductionOptions();
    const prompt = await this.readPrompt();
    const modelDir = resolveModelDir(this.model);
    const output = this.json ? new NdjsonWriter(this.context.stdout) : new TextPrinter(this.context.stdout);
    const interrupt = new Interrupt(() => output.mute());
    try {
      const { images, model } = await this.prepare(modelDir, this.images);
      interrupt.generationStarted();
      const answer: AnswerPiece[] = [];
      const result = await this.generate(model, this.conversation(prompt), images, output, interrupt.signal, answer);
      if (interrupt.interrupted || result.finish_reason === 'cancelled') return EXIT_CODES.cancelled;
      this.finish(result, output);
      if (this.showKept !== undefined) await writeShowKept(this.showKept, images, result, answer);
      return EXIT_CODES.ok;
    } catch (error) {
      if (interrupt.interrupted) return EXIT_CODES.cancelled;
      throw error;
    } finally {
      interrupt.dispose();
    }
  }

  /**
   * `--chat`: PROMPT is the first question, and each line of stdin the next. An image in
   * PROMPT's place (`glimpse ask --chat photo.jpg`) is one more image, and `-` means that
   * every question comes from stdin.
   */
  private async executeChat(): Promise<number> {
    if (this.showKept !== undefined) throw new GlimpseError('usage', '--show-kept cannot be used with --chat');
    this.checkReductionOptions();
    const promptIsImage = hasImageExtension(this.prompt);
    const imagePaths = promptIsImage ? [...this.images, this.prompt] : this.images;
    const first = promptIsImage || this.prompt === '-' ? undefined : this.prompt.trim();
    if (first === '') throw new GlimpseError('usage', 'the prompt is empty');
    const modelDir = resolveModelDir(this.model);
    const output = this.json ? new NdjsonWriter(this.context.stdout) : new TextPrinter(this.context.stdout);
    let reader: QuestionReader | undefined;
    const interrupt = new Interrupt(() => {
      output.mute();
      reader?.close();
    });
    try {
      const { images, model } = await this.prepare(modelDir, imagePaths);
      reader = new QuestionReader(this.context.stdin, this.context.stderr);
      interrupt.generationStarted();
      const conversation = new Conversation(images.length, this.system);
      for await (const question of reader.questions(first)) {
        const messages = conversation.withQuestion(question);
        const result = await this.generate(model, messages, images, output, interrupt.signal, []);
        if (interrupt.interrupted || result.finish_reason === 'cancelled') return EXIT_CODES.cancelled;
        this.finish(result, output);
        conversation.answered(question, result.text.trim());
      }
      return interrupt.interrupted ? EXIT_CODES.cancelled : EXIT_CODES.ok;
    } catch (error) {
      if (interrupt.interrupted) return EXIT_CODES.cancelled;
      const overflow = contextOverflow(error);
      if (overflow === undefined) throw error;
      const size = `the conversation is now ${overflow.promptTokens} tokens`;
      const window = `the model's context window of ${overflow.contextLength}`;
      throw new GlimpseError('input', `${size}, over ${window}: start a new chat`);
    } finally {
      reader?.close();
      interrupt.dispose();
    }
  }

  /** `--reduce` and `--show-kept` mistakes are found before anything is read or loaded. */
  private checkReductionOptions(): void {
    if (this.reduce !== undefined) checkReduceSpec(this.reduce);
    if (this.showKept === undefined) return;
    if (this.images.length === 0) throw new GlimpseError('usage', '--show-kept needs an image');
    checkShowKeptPath(this.showKept);
  }

  /** Images first: a bad file should fail fast, before a model takes seconds to load. */
  private async prepare(modelDir: string, paths: string[]): Promise<{ images: RgbImage[]; model: Model }> {
    const progress = startProgress(
      paths.length > 0 ? 'Reading images' : 'Loading model',
      Boolean(process.stderr.isTTY) && !this.json,
    );
    try {
      const images = await Promise.all(paths.map((path) => loadImage(path, { maxPixels: this.maxPixels })));
      progress.update('Loading model');
      const model = await Model.load(modelDir, {
        threads: this.threads,
        visionTower: this.visionTower,
        device: this.device,
        dtype: this.dtype,
        maxImageTokens: this.maxImageTokens,
      });
      return { images, model };
    } finally {
      progress.stop();
    }
  }

  private async generate(
    model: Model,
    messages: Message[],
    images: RgbImage[],
    output: TextPrinter | NdjsonWriter,
    signal: AbortSignal,
    answer: AnswerPiece[],
  ): Promise<GenerateOutput> {
    const generation = model.generate(
      {
        messages,
        images,
        reduce: this.reduce,
        maxTokens: this.maxTokens ?? DEFAULT_MAX_TOKENS,
        temperature: this.temperature ?? 0,
        topK: this.topK,
        topP: this.topP,
        repetitionPenalty: this.repetitionPenalty,
        seed: this.seed,
        stop: this.stop,
      },
      signal,
    );
    for await (const event of generation) {
      answer.push(event);
      if (output instanceof NdjsonWriter) output.write({ type: 'token', text: event.text, id: event.id });
      else output.write(event.text);
    }
    return generation.result;
  }

  private finish(result: GenerateOutput, output: TextPrinter | NdjsonWriter): void {
    if (output instanceof NdjsonWriter) {
      output.write({ type: 'stats', ...result.stats });
      const reduction = this.reduce === undefined ? {} : { reduction: result.reduction };
      output.write({ type: 'done', text: result.text, finish_reason: result.finish_reason, ...reduction });
      return;
    }
    output.finish();
    if (this.stats) this.context.stderr.write(formatStats(result.stats));
  }

  private conversation(prompt: string): Message[] {
    const messages: Message[] = [];
    if (this.system !== undefined) messages.push({ role: 'system', content: [{ type: 'text', text: this.system }] });
    messages.push({
      role: 'user',
      content: [...this.images.map(() => ({ type: 'image' as const })), { type: 'text', text: prompt }],
    });
    return messages;
  }

  private async readPrompt(): Promise<string> {
    // `glimpse ask photo.jpg` (prompt forgotten) would otherwise ask the text "photo.jpg".
    if (hasImageExtension(this.prompt) && existsSync(this.prompt)) {
      throw new GlimpseError(
        'usage',
        `missing prompt: the last argument must be the question, not an image (${this.prompt})`,
      );
    }
    const prompt = this.prompt === '-' ? (await readAll(this.context.stdin)).trim() : this.prompt;
    if (prompt === '') throw new GlimpseError('usage', 'the prompt is empty');
    return prompt;
  }
}

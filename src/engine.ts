// Typed wrapper over the native binding: models load in the background, generations
// stream their tokens as an async iterable, and native failures become GlimpseErrors.

import * as native from '../native/index.js';
import { GlimpseError, toGlimpseError } from './errors.js';
import type { RgbImage } from './media/image.js';

/** What `inspect` shows; keys are the engine's own (snake_case). */
export interface ModelInfo {
  dir: string;
  architecture: string;
  parameters: number;
  dtype: string;
  weight_bytes: number;
  vision_layers: number;
  text_layers: number;
  hidden_size: number;
  image_tokens: number;
  context_length: number;
  /** KV-cache bytes one token of context occupies. */
  kv_bytes_per_token: number;
  backend: string;
}

/** Numbers a generation reports, under the vocabulary shared by CLI and JSON output. */
export type GenerationStats = Record<string, number>;

export type FinishReason = 'eos' | 'stop' | 'length' | 'cancelled';

export interface GenerateOutput {
  text: string;
  token_ids: number[];
  finish_reason: FinishReason;
  stats: GenerationStats;
}

export type ContentPart = { type: 'image' } | { type: 'text'; text: string };

export interface Message {
  role: 'system' | 'user' | 'assistant';
  content: ContentPart[];
}

export interface SamplingOptions {
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
  stop?: string[];
  /** Keep generating through end-of-sequence tokens. */
  ignoreEos?: boolean;
}

export interface GenerateRequest extends SamplingOptions {
  messages: Message[];
  /** Fill the `{type: 'image'}` parts of `messages`, in order. */
  images: RgbImage[];
}

/**
 * Text as it is generated, with the id of the token that completed it. A last event
 * without `id` releases text the engine held back; all texts together are the answer.
 */
export type TokenEvent = native.TokenEvent;

/** A running generation: iterate it for tokens, then read `result`. */
export class Generation implements AsyncIterable<TokenEvent> {
  readonly result: Promise<GenerateOutput>;
  readonly #pending: TokenEvent[] = [];
  #settled = false;
  #wake: (() => void) | undefined;

  constructor(start: (onEvent: (event: TokenEvent) => void) => Promise<GenerateOutput>) {
    this.result = start((event) => {
      this.#pending.push(event);
      this.#wakeUp();
    });
    // The native side delivers every token before settling, so once settled the queue is complete.
    this.result.then(
      () => this.#finish(),
      () => this.#finish(),
    );
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    for (;;) {
      const event = this.#pending.shift();
      if (event) {
        yield event;
      } else if (this.#settled) {
        break;
      } else {
        await new Promise<void>((wake) => (this.#wake = wake));
      }
    }
    await this.result; // surfaces the failure, if any
  }

  #finish(): void {
    this.#settled = true;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

export class Model {
  readonly #native: native.Model;

  private constructor(handle: native.Model) {
    this.#native = handle;
  }

  static async load(dir: string, options: { threads?: number } = {}): Promise<Model> {
    try {
      return new Model(await native.loadModel(dir, options));
    } catch (error) {
      throw toGlimpseError(error);
    }
  }

  info(): ModelInfo {
    try {
      return this.#native.info() as unknown as ModelInfo;
    } catch (error) {
      throw toGlimpseError(error);
    }
  }

  /** Starts generating; aborting `signal` stops at the next token with a cancelled error. */
  generate(request: GenerateRequest, signal?: AbortSignal): Generation {
    return new Generation(async (onEvent) => {
      if (signal?.aborted) throw new GlimpseError('cancelled', 'generation cancelled');
      try {
        const output = await this.#native.generate(request, onEvent, signal);
        return output as unknown as GenerateOutput;
      } catch (error) {
        throw toGlimpseError(error);
      }
    });
  }
}

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
  /** For a tiling model (LLaVA-NeXT), the most tokens one image can take. */
  image_tokens: number;
  /** A tiling model's grids of tiles, [height, width] in pixels; empty otherwise. */
  tile_grids: Array<[number, number]>;
  context_length: number;
  /** KV-cache bytes one token of context occupies. */
  kv_bytes_per_token: number;
  backend: string;
}

/** Numbers a generation reports, under the vocabulary shared by CLI and JSON output. */
export interface GenerationStats {
  /** The backend the run used, e.g. `cpu (8 threads)` or `cuda (NVIDIA H100 80GB HBM3, sm_90)`. */
  backend: string;
  /** The `--reduce` spec the run used. */
  reduce: string;
  prompt_tokens: number;
  generated_tokens: number;
  /** Visual tokens the images bring, summed over images. */
  vision_tokens_in: number;
  /** After merging in the vision tower. */
  after_encoder: number;
  /** Entering the language-model layers after the last prefill filter. */
  after_prefill: number;
  /** Visual rows each language-model layer processed during prefill. */
  layer_vision_tokens: number[];
  /** Mean of `layer_vision_tokens` per image. */
  equal_tokens: number;
  flops_prefill: number;
  flops_vision: number;
  kv_bytes_peak: number;
  kv_bytes_final: number;
  decode_kv_admitted: number;
  decode_kv_rejected: number;
  decode_evicted: number;
  ms_encode: number;
  ms_prefill: number;
  ms_decode: number;
  tokens_per_s: number;
  prefill_tokens_per_s: number;
  /** Per image, its tokens per crop when the model cut it into tiles (else an empty list). */
  crops: CropCount[][];
}

/**
 * Where the model's canvas lies on the source image: canvas point (x, y) is source point
 * (x·scale_x + offset_x, y·scale_y + offset_y), both in pixels with edges at whole numbers.
 */
export interface ImageGeometry {
  canvas_width: number;
  canvas_height: number;
  scale_x: number;
  scale_y: number;
  offset_x: number;
  offset_y: number;
  /** [left, top, right, bottom] of the canvas part holding image pixels (the rest is padding). */
  content: [number, number, number, number];
}

/** One visual token: the patches it stands for and what the reduction did to it. */
export interface TokenReport {
  /** Raster indices into the image's patch grid. */
  patches: number[];
  key: boolean;
  /** Made by a filter from dropped tokens. */
  recycled: boolean;
  /** The layer after which a prefill filter removed it. */
  dropped_after_layer: number | null;
  /** The decode step at which the cache policy evicted it. */
  evicted_at_step: number | null;
}

export interface ImageReport {
  /** Patches per side (of each crop, for a tiled image). */
  grid: number;
  tokens: TokenReport[];
  keys: number[];
  window_similarity: number[];
  /** Where the model's canvas lies on the image (a tiled image's base crop). */
  geometry: ImageGeometry | null;
  /** For an image the model cut into tiles (LLaVA-NeXT). */
  tiles: TileReport | null;
}

/**
 * A tiled image's crops. Patches are numbered across them: crop 0 is the whole image, crop
 * `1 + r·cols + c` the tile at (r, c); crop k owns patches k·grid² … (k+1)·grid² − 1, each in
 * raster order. Tokens without patches are end-of-row (newline) tokens.
 */
export interface TileReport {
  rows: number;
  cols: number;
  /** [start, end) of the tile grid's feature rows and columns the model keeps after unpadding. */
  kept_rows: [number, number];
  kept_cols: [number, number];
  /** Where the tiles, side by side, lie on the image. */
  geometry: ImageGeometry;
}

/** One crop's share of a tiled image's visual tokens. */
export interface CropCount {
  /** `base`, `tile R,C` (from 1) or `newlines`. */
  crop: string;
  tokens_in: number;
  after_encoder: number;
  /** Neither dropped at prefill nor evicted while decoding. */
  kept: number;
}

/** What a reduction did to each visual token and to the generated tokens. */
export interface ReductionReport {
  spec: string;
  images: ImageReport[];
  /** Per filter layer, the tokens of each image that went on. */
  filters: Array<{ layer: number; kept: number[][] }>;
  /** For each generated token fed back, whether its keys/values stayed in the cache (empty without such a policy). */
  decode_admitted: boolean[];
  decode_evicted: Array<{ step: number; image: number; token: number }>;
}

export type FinishReason = 'eos' | 'stop' | 'length' | 'cancelled';

export interface GenerateOutput {
  text: string;
  token_ids: number[];
  finish_reason: FinishReason;
  stats: GenerationStats;
  reduction: ReductionReport;
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
  /** Visual-token reduction spec, e.g. `mustdrop:keep=64`; none when left out. */
  reduce?: string;
}

/**
 * Text as it is generated, with the id of the token that completed it. A last event
 * without `id` releases text the engine held back; all texts together are the answer.
 */
export type TokenEvent = native.TokenEvent;

/** A reduction method and the `k=v` settings its spec takes. */
export type ReductionMethod = native.ReductionMethod;

/** The reduction methods the engine knows, in its order. */
export function reductionMethods(): ReductionMethod[] {
  return native.reductionMethods();
}

/**
 * Throws a usage error unless `spec` is a valid `--reduce` spec. Needs no model, so a typo
 * fails at once; whether the spec fits a model is checked when it generates.
 */
export function checkReduceSpec(spec: string): void {
  try {
    native.checkReduceSpec(spec);
  } catch (error) {
    throw toGlimpseError(error);
  }
}

/** The engine's refusal of a prompt longer than the context window (an input error). */
const CONTEXT_OVERFLOW = /^the prompt is (\d+) tokens but the model's context window is (\d+)$/;

/** The sizes in `error` when it is the engine refusing a prompt too long for the context window. */
export function contextOverflow(error: unknown): { promptTokens: number; contextLength: number } | undefined {
  const match = error instanceof GlimpseError ? CONTEXT_OVERFLOW.exec(error.message) : null;
  return match === null ? undefined : { promptTokens: Number(match[1]), contextLength: Number(match[2]) };
}

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

/** How a model is loaded (`--threads`, `--vision-tower`, `--device`, `--dtype`). */
export interface LoadOptions {
  threads?: number;
  visionTower?: string;
  /** `auto` (a CUDA GPU when one is usable, else the CPU), `cuda` or `cpu`. */
  device?: string;
  /** `auto` (the checkpoint's type), `f32`, `f16` or `bf16`. */
  dtype?: string;
  /** The most tokens one image may take before reduction (tiling models pick smaller grids). */
  maxImageTokens?: number;
}

export class Model {
  readonly #native: native.Model;

  private constructor(handle: native.Model) {
    this.#native = handle;
  }

  static async load(dir: string, options: LoadOptions = {}): Promise<Model> {
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

  /**
   * Runs several generations together, streaming nothing (the engine stacks their decode
   * steps, so each weight is read once per step for all of them). Resolves with one result
   * per request, in order: its output, or the error that request failed with on its own.
   * Aborting `signal` ends every unfinished generation at its next token, with
   * `finish_reason` `cancelled` (or a cancelled error for one that had not started).
   * Rejects only when the whole batch fails.
   */
  async generateBatch(
    requests: GenerateRequest[],
    signal?: AbortSignal,
  ): Promise<Array<GenerateOutput | GlimpseError>> {
    if (signal?.aborted) throw new GlimpseError('cancelled', 'generation cancelled');
    let items: Array<Record<string, unknown>>;
    try {
      items = await this.#native.generateBatch(requests, signal);
    } catch (error) {
      throw toGlimpseError(error);
    }
    return items.map((item) => {
      if ('output' in item) return item.output as GenerateOutput;
      const { message, code } = item.error as { message: string; code: string };
      return toGlimpseError(Object.assign(new Error(message), { code }));
    });
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

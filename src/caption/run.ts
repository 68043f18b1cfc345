// The captioning loop: one image at a time through the loaded model, in order, with the
// next image read and decoded while the current one generates. Every image ends as one
// record; an image that fails is recorded and the run goes on.

import { performance } from 'node:perf_hooks';

import type { GenerateOutput, Message, Model, SamplingOptions } from '../engine.js';
import { toGlimpseError } from '../errors.js';
import type { BatchProgress } from '../output/progress.js';
import { type PreparedImage, prepareImage, type ReadyImage } from './prepare.js';
import type { CaptionRecord, FailureRecord } from './records.js';
import type { RecordSink } from './sink.js';

export interface CaptionJob {
  model: Model;
  /** Written into every record as `model`. */
  modelName: string;
  paths: readonly string[];
  /** The conversation for one image: a single image part, then the prompt. */
  messages: Message[];
  sampling: SamplingOptions & { seed: number };
  /** `--reduce`, for every image. */
  reduce: string | undefined;
  maxPixels: number | undefined;
  /** Aborting stops the current generation at its next token and ends the run. */
  signal: AbortSignal;
  sink: RecordSink;
  progress: BatchProgress;
}

export interface CaptionOutcome {
  captioned: number;
  failed: number;
  interrupted: boolean;
}

export async function captionImages(job: CaptionJob): Promise<CaptionOutcome> {
  const outcome: CaptionOutcome = { captioned: 0, failed: 0, interrupted: false };
  const prefetch = (index: number): Promise<PreparedImage> | undefined => {
    const path = job.paths[index];
    return path === undefined ? undefined : prepareImage(path, job.maxPixels);
  };
  let next = prefetch(0);
  let previousEnd = performance.now();
  for (let index = 0; next !== undefined; index += 1) {
    if (job.signal.aborted) break;
    const path = job.paths[index] ?? '';
    job.progress.started(path);
    const prepared = await next;
    next = prefetch(index + 1);
    if (prepared.kind === 'fatal') throw prepared.error;

    const record = prepared.kind === 'failed' ? prepared.record : await captionOne(job, prepared, previousEnd);
    if (record === 'cancelled') break;
    job.progress.clear();
    job.sink.write(record);
    if ('error' in record) {
      job.progress.note(`glimpse: ${record.error}`);
      outcome.failed += 1;
    } else {
      outcome.captioned += 1;
    }
    job.progress.finished(!('error' in record));
    previousEnd = performance.now();
  }
  outcome.interrupted = job.signal.aborted;
  return outcome;
}

/** `startedAt`: when the previous image was done; the wait for decoding counts too. */
async function captionOne(
  job: CaptionJob,
  { path, sha256, image }: ReadyImage,
  startedAt: number,
): Promise<CaptionRecord | FailureRecord | 'cancelled'> {
  let output: GenerateOutput;
  try {
    const request = { messages: job.messages, images: [image], reduce: job.reduce, ...job.sampling };
    output = await job.model.generate(request, job.signal).result;
  } catch (error) {
    const failure = toGlimpseError(error);
    if (failure.kind === 'cancelled') return 'cancelled';
    // The engine refusing this request (say, more image tokens than the context holds)
    // is about this image; anything else (a broken model, a bug) ends the run.
    if (failure.kind === 'input') return { path, error: failure.message, code: 'rejected' };
    throw failure;
  }
  if (output.finish_reason === 'cancelled') return 'cancelled';
  return {
    path,
    sha256,
    caption: output.text.trim(),
    model: job.modelName,
    reduce: output.stats.reduce,
    seed: job.sampling.seed,
    prompt_tokens: output.stats.prompt_tokens,
    generated_tokens: output.stats.generated_tokens,
    finish_reason: output.finish_reason,
    ms: roundTo(performance.now() - startedAt, 1),
    stats: output.stats,
  };
}

function roundTo(value: number, decimals: number): number {
  const scale = 10 ** decimals;
  return Math.round(value * scale) / scale;
}

// The captioning loop: the images in order, `batchSize` at a time through the loaded model
// (which decodes a batch's captions together), with the next batch's images read and
// decoded while the current batch generates. Every image ends as one record, written in
// input order as soon as its batch is done; an image that fails is recorded and the run
// goes on.

import { performance } from 'node:perf_hooks';

import type { GenerateOutput, Message, Model, SamplingOptions } from '../engine.js';
import { GlimpseError, toGlimpseError } from '../errors.js';
import type { BatchProgress } from '../output/progress.js';
import { type PreparedImage, prepareImage, type ReadyImage } from './prepare.js';
import type { CaptionRecord, FailureRecord } from './records.js';
import type { RecordSink } from './sink.js';

export interface CaptionJob {
  model: Model;
  /** Written into every record as `model`. */
  modelName: string;
  paths: readonly string[];
  /** Images captioned together (`--batch`), at least 1. */
  batchSize: number;
  /** The conversation for one image: a single image part, then the prompt. */
  messages: Message[];
  sampling: SamplingOptions & { seed: number };
  /** `--reduce`, for every image. */
  reduce: string | undefined;
  maxPixels: number | undefined;
  /** Aborting stops the current batch at its next token and ends the run. */
  signal: AbortSignal;
  sink: RecordSink;
  progress: BatchProgress;
}

export interface CaptionOutcome {
  captioned: number;
  failed: number;
  interrupted: boolean;
}

/** What became of one image of a batch. */
type Outcome =
  | { kind: 'captioned'; image: ReadyImage; output: GenerateOutput }
  | { kind: 'failed'; record: FailureRecord }
  /** The run was stopped before this image was done. */
  | { kind: 'cancelled' }
  /** Not the image's fault (a bug, a broken model): the run stops with this error. */
  | { kind: 'fatal'; error: GlimpseError };

export async function captionImages(job: CaptionJob): Promise<CaptionOutcome> {
  const outcome: CaptionOutcome = { captioned: 0, failed: 0, interrupted: false };
  const prefetch = (start: number): Promise<PreparedImage[]> | undefined => {
    const paths = job.paths.slice(start, start + job.batchSize);
    return paths.length === 0 ? undefined : prepareInTurn(paths, job.maxPixels);
  };
  let next = prefetch(0);
  let previousEnd = performance.now();
  for (let start = 0; next !== undefined; start += job.batchSize) {
    if (job.signal.aborted) break;
    job.progress.started(describeBatch(job.paths.slice(start, start + job.batchSize)));
    const prepared = await next;
    next = prefetch(start + job.batchSize);

    const outcomes = await captionBatch(job, prepared);
    // The batch's wall time since the previous batch ended, shared by its captions.
    const captions = outcomes.filter((each) => each.kind === 'captioned').length;
    const ms = roundTo((performance.now() - previousEnd) / Math.max(captions, 1), 1);
    for (const each of outcomes) {
      if (each.kind === 'cancelled') break;
      if (each.kind === 'fatal') throw each.error;
      const record = each.kind === 'failed' ? each.record : captionRecord(job, each.image, each.output, ms);
      job.progress.clear();
      job.sink.write(record);
      if ('error' in record) {
        job.progress.note(`glimpse: ${record.error}`);
        outcome.failed += 1;
      } else {
        outcome.captioned += 1;
      }
      job.progress.finished(!('error' in record));
    }
    if (outcomes.some((each) => each.kind === 'cancelled')) break;
    previousEnd = performance.now();
  }
  outcome.interrupted = job.signal.aborted;
  return outcome;
}

/**
 * Reads and decodes a batch's images one after another. Side by side, a failed decode could
 * lose its reason: libvips keeps the last error in one buffer for the whole process, and
 * decodes running at the same time were seen to report "Unknown error".
 */
async function prepareInTurn(paths: readonly string[], maxPixels: number | undefined): Promise<PreparedImage[]> {
  const prepared: PreparedImage[] = [];
  for (const path of paths) prepared.push(await prepareImage(path, maxPixels));
  return prepared;
}

/** The progress line's "current file" for a batch. */
function describeBatch(paths: readonly string[]): string {
  const [first = ''] = paths;
  return paths.length > 1 ? `${first} (+${paths.length - 1} more)` : first;
}

/**
 * Captions the images of one batch that could be read, together; one outcome per image, in
 * order. An image that failed fatally ends the batch: nothing after it is captioned.
 */
async function captionBatch(job: CaptionJob, prepared: PreparedImage[]): Promise<Outcome[]> {
  const fatal = prepared.findIndex((image) => image.kind === 'fatal');
  const usable = fatal < 0 ? prepared : prepared.slice(0, fatal + 1);
  const ready = usable.filter((image): image is ReadyImage => image.kind === 'ready');
  let outputs: Array<GenerateOutput | GlimpseError> = [];
  if (ready.length > 0) {
    const requests = ready.map(({ image }) => ({
      messages: job.messages,
      images: [image],
      reduce: job.reduce,
      ...job.sampling,
    }));
    try {
      outputs = await job.model.generateBatch(requests, job.signal);
    } catch (error) {
      const failure = toGlimpseError(error);
      outputs = ready.map(() => failure);
    }
  }
  let index = 0;
  return usable.map((image): Outcome => {
    switch (image.kind) {
      case 'failed':
        return { kind: 'failed', record: image.record };
      case 'fatal':
        return { kind: 'fatal', error: image.error };
      case 'ready':
        return outcomeOf(image, outputs[index++]);
    }
  });
}

function outcomeOf(image: ReadyImage, output: GenerateOutput | GlimpseError | undefined): Outcome {
  if (output === undefined) {
    return { kind: 'fatal', error: new GlimpseError('internal', 'internal error: a batch came back short of outputs') };
  }
  if (output instanceof GlimpseError) {
    if (output.kind === 'cancelled') return { kind: 'cancelled' };
    // The engine refusing this request (say, more image tokens than the context holds)
    // is about this image; anything else (a broken model, a bug) ends the run.
    if (output.kind === 'input') {
      return { kind: 'failed', record: { path: image.path, error: output.message, code: 'rejected' } };
    }
    return { kind: 'fatal', error: output };
  }
  if (output.finish_reason === 'cancelled') return { kind: 'cancelled' };
  return { kind: 'captioned', image, output };
}

function captionRecord(
  job: CaptionJob,
  { path, sha256 }: ReadyImage,
  output: GenerateOutput,
  ms: number,
): CaptionRecord {
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
    ms,
    stats: output.stats,
  };
}

function roundTo(value: number, decimals: number): number {
  const scale = 10 ** decimals;
  return Math.round(value * scale) / scale;
}

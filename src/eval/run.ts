// The evaluation loop: every question once per reduction spec, greedily, through one loaded
// model. Questions go in file order and each question runs under all specs before the next,
// so the image is decoded once per question and an interrupted run has compared the specs
// on the same questions.

import type { FinishReason, GenerationStats, Message, Model } from '../engine.js';
import { GlimpseError, toGlimpseError } from '../errors.js';
import { loadImage, type RgbImage } from '../media/image.js';
import type { BatchProgress } from '../output/progress.js';
import type { EvalItem } from './dataset.js';
import { matchesAnswer, mentionsAll } from './score.js';

export interface EvalJob {
  model: Model;
  /** The data file, to name it in messages. */
  file: string;
  items: readonly EvalItem[];
  specs: readonly string[];
  /** For items without their own `max_tokens`. */
  maxTokens: number;
  /** Aborting stops the current generation at its next token and ends the run. */
  signal: AbortSignal;
  progress: BatchProgress;
}

/** One question answered under one spec. */
export interface LineResult {
  item: EvalItem;
  reduce: string;
  answer: string;
  correct: boolean;
  finish_reason: FinishReason;
  stats: GenerationStats;
}

export interface EvalOutcome {
  /** Item-major: the results of the first item under every spec, then the second… */
  results: LineResult[];
  interrupted: boolean;
}

export async function evaluate(job: EvalJob): Promise<EvalOutcome> {
  const results: LineResult[] = [];
  let decoded: { path: string; image: RgbImage } | undefined;
  for (const [index, item] of job.items.entries()) {
    if (decoded?.path !== item.imagePath) {
      decoded = { path: item.imagePath, image: await decode(job.file, item) };
    }
    if (index === 0 && (await warmUp(job, item, decoded.image)) === 'cancelled') return { results, interrupted: true };
    const answered: LineResult[] = [];
    for (const spec of job.specs) {
      job.progress.started(`line ${item.line}, ${spec}`);
      const result = await answer(job, item, decoded.image, spec);
      if (result === 'cancelled') return { results, interrupted: true };
      answered.push(result);
      job.progress.finished(true);
    }
    results.push(...answered);
  }
  return { results, interrupted: job.signal.aborted };
}

/**
 * One answer that is not scored, before the first that is: the first generation of a process
 * pays one-off costs (weights paged in from disk, threads started) that would otherwise
 * land on the first spec's prefill time.
 */
async function warmUp(job: EvalJob, item: EvalItem, image: RgbImage): Promise<'done' | 'cancelled'> {
  const result = await answer(job, { ...item, maxTokens: 1 }, image, job.specs[0] ?? 'none');
  return result === 'cancelled' ? 'cancelled' : 'done';
}

async function decode(file: string, item: EvalItem): Promise<RgbImage> {
  try {
    return await loadImage(item.imagePath);
  } catch (error) {
    throw atLine(file, item, error);
  }
}

async function answer(job: EvalJob, item: EvalItem, image: RgbImage, spec: string): Promise<LineResult | 'cancelled'> {
  const messages: Message[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: item.question }] }];
  let output;
  try {
    const request = {
      messages,
      images: [image],
      reduce: spec,
      maxTokens: item.maxTokens ?? job.maxTokens,
      temperature: 0,
    };
    output = await job.model.generate(request, job.signal).result;
  } catch (error) {
    const failure = toGlimpseError(error);
    if (failure.kind === 'cancelled') return 'cancelled';
    // A spec that does not fit the model says so itself; anything about the input names its line.
    throw failure.kind === 'input' ? atLine(job.file, item, failure) : failure;
  }
  if (output.finish_reason === 'cancelled') return 'cancelled';
  const expect = item.expect;
  const correct =
    'answers' in expect ? matchesAnswer(output.text, expect.answers) : mentionsAll(output.text, expect.must_mention);
  return {
    item,
    reduce: spec,
    answer: output.text,
    correct,
    finish_reason: output.finish_reason,
    stats: output.stats,
  };
}

function atLine(file: string, item: EvalItem, error: unknown): GlimpseError {
  const failure = toGlimpseError(error);
  return new GlimpseError(failure.kind, `${file} line ${item.line}: ${failure.message}`);
}

// The lines `caption` writes: one JSON object per image, either its caption or why it
// has none. Field names follow the engine's stats vocabulary (snake_case).

import type { FinishReason, GenerationStats } from '../engine.js';

export interface CaptionRecord {
  path: string;
  /** SHA-256 of the file's bytes, hex: what `--resume` compares to spot a changed file. */
  sha256: string;
  caption: string;
  /** The model directory the caption came from. */
  model: string;
  /** The visual-token reduction applied (`--reduce`), `none` without one. */
  reduce: string;
  seed: number;
  prompt_tokens: number;
  generated_tokens: number;
  finish_reason: FinishReason;
  /** Wall time for this image: from the end of the previous one to the end of this one. */
  ms: number;
  stats: GenerationStats;
}

/**
 * Why an image has no caption:
 * - `not_found`: no such file
 * - `unreadable`: the file cannot be read (permissions, a folder, an I/O error)
 * - `not_image`: not in an image format the decoder knows
 * - `corrupt`: an image format, but decoding failed (truncated, damaged)
 * - `too_large`: more pixels than `--max-pixels`
 * - `rejected`: the model refused the request (e.g. the prompt does not fit its context)
 */
export type FailureCode = 'not_found' | 'unreadable' | 'not_image' | 'corrupt' | 'too_large' | 'rejected';

export interface FailureRecord {
  path: string;
  error: string;
  code: FailureCode;
}

export type OutputRecord = CaptionRecord | FailureRecord;

export function isFailure(record: OutputRecord): record is FailureRecord {
  return 'error' in record;
}

/** One whole line, newline included, so that it can be written in one call. */
export function toJsonLine(record: OutputRecord): string {
  return `${JSON.stringify(record)}\n`;
}

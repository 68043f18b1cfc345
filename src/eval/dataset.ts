// Reads an evaluation file (JSON Lines, one question about one image per line) and checks
// all of it, the images included, before any model loads: a mistake on line 900 should
// not surface an hour into a run.

import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';

import sharp from 'sharp';

import { GlimpseError } from '../errors.js';
import { DEFAULT_MAX_PIXELS } from '../media/image.js';
import { normalise } from './score.js';

/** How a line is scored: against accepted answers, or by phrases its output must contain. */
export type Expectation = { answers: string[] } | { must_mention: string[] };

export interface EvalItem {
  /** 1-based line number in the file, for messages and results. */
  line: number;
  /** The line's own `id`, when it has one. */
  id?: string | number;
  /** The image path as written in the file. */
  image: string;
  /** `image` resolved against the file's folder. */
  imagePath: string;
  question: string;
  expect: Expectation;
  kind?: string;
  maxTokens?: number;
}

const KNOWN_FIELDS = new Set(['id', 'image', 'question', 'answers', 'must_mention', 'kind', 'max_tokens']);

/**
 * The items of `file`, in order; blank lines are skipped. Throws an input error naming the
 * first bad line: not a JSON object, a missing or mistyped field, an unknown field, or an
 * image that is missing, not an image sharp recognises, or over `maxPixels`.
 */
export async function readDataset(file: string, maxPixels = DEFAULT_MAX_PIXELS): Promise<EvalItem[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new GlimpseError('input', `data file not found: ${file}`);
    throw new GlimpseError('input', `${file}: cannot read (${code ?? (error as Error).message})`);
  }
  const folder = dirname(resolve(file));
  const items: EvalItem[] = [];
  // Whether each image passed, so an image several questions share is opened once.
  const checked = new Map<string, string | undefined>();
  for (const [index, raw] of text.split('\n').entries()) {
    if (raw.trim() === '') continue;
    const line = index + 1;
    let item: EvalItem;
    try {
      item = parseItem(raw, line, folder);
    } catch (error) {
      if (error instanceof LineError) throw new GlimpseError('input', `${file} line ${line}: ${error.message}`);
      throw error;
    }
    if (!checked.has(item.imagePath)) checked.set(item.imagePath, await imageProblem(item.imagePath, maxPixels));
    const problem = checked.get(item.imagePath);
    if (problem !== undefined) throw new GlimpseError('input', `${file} line ${line}: image ${item.image} ${problem}`);
    items.push(item);
  }
  if (items.length === 0) throw new GlimpseError('input', `${file}: no questions in the file`);
  return items;
}

/** What is wrong with one line; the caller adds the file and line number. */
class LineError extends Error {}

function parseItem(raw: string, line: number, folder: string): EvalItem {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new LineError(`not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LineError('expected a JSON object');
  }
  const record = value as Record<string, unknown>;
  const unknown = Object.keys(record).filter((key) => !KNOWN_FIELDS.has(key));
  if (unknown.length > 0) {
    throw new LineError(`unknown field '${unknown[0]}' (known: ${[...KNOWN_FIELDS].join(', ')})`);
  }

  const image = nonEmptyString(record, 'image', true)!;
  const question = nonEmptyString(record, 'question', true)!;
  const kind = nonEmptyString(record, 'kind', false);
  const item: EvalItem = {
    line,
    image,
    imagePath: isAbsolute(image) ? image : resolve(folder, image),
    question,
    expect: expectation(record),
  };
  if (record.id !== undefined) {
    if (typeof record.id !== 'string' && typeof record.id !== 'number') {
      throw new LineError("'id' must be a string or a number");
    }
    item.id = record.id;
  }
  if (kind !== undefined) item.kind = kind;
  if (record.max_tokens !== undefined) {
    const max = record.max_tokens;
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) {
      throw new LineError("'max_tokens' must be a whole number of at least 1");
    }
    item.maxTokens = max;
  }
  return item;
}

function nonEmptyString(record: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const value = record[field];
  if (value === undefined && !required) return undefined;
  if (value === undefined) throw new LineError(`missing '${field}'`);
  if (typeof value !== 'string' || value.trim() === '') throw new LineError(`'${field}' must be a non-empty string`);
  return value;
}

function expectation(record: Record<string, unknown>): Expectation {
  const hasAnswers = record.answers !== undefined;
  const hasPhrases = record.must_mention !== undefined;
  if (hasAnswers && hasPhrases) throw new LineError("give either 'answers' or 'must_mention', not both");
  if (hasAnswers) return { answers: phraseList(record.answers, 'answers') };
  if (hasPhrases) return { must_mention: phraseList(record.must_mention, 'must_mention') };
  throw new LineError("needs 'answers' (accepted answers) or 'must_mention' (phrases the output must contain)");
}

/** A non-empty list of strings, each with something left once normalised. */
function phraseList(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((entry) => typeof entry === 'string')) {
    throw new LineError(`'${field}' must be a non-empty list of strings`);
  }
  const empty = value.find((entry) => normalise(entry) === '');
  if (empty !== undefined) {
    throw new LineError(`'${field}' has an entry with nothing to compare: ${JSON.stringify(empty)}`);
  }
  return value;
}

/** What is wrong with an image, judged from its header only; undefined when nothing. */
async function imageProblem(path: string, maxPixels: number): Promise<string | undefined> {
  try {
    if (!(await stat(path)).isFile()) return 'is not a file';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'not found' : `cannot be read (${code ?? (error as Error).message})`;
  }
  let size: { width: number; height: number };
  try {
    size = await sharp(path, { limitInputPixels: false }).metadata();
  } catch {
    return 'is not an image (unsupported or unrecognised format)';
  }
  if (size.width * size.height > maxPixels) {
    return `is ${size.width}x${size.height}, over the limit of ${maxPixels} pixels`;
  }
  return undefined;
}

// `--resume`: picks up an output file left by an earlier run, finished or not. Records are
// appended one whole line per write, so a run killed at any moment leaves at most one
// unfinished last line; that line is cut off, and the images whose caption is in the file
// for the same content (path and SHA-256) are skipped. Failed images are tried again.

import { closeSync, createReadStream, fstatSync, ftruncateSync, openSync, readSync } from 'node:fs';
import { createInterface } from 'node:readline';

import { GlimpseError } from '../errors.js';
import { hashFile } from './prepare.js';

const NEWLINE = 0x0a;
const CHUNK = 64 * 1024;

/**
 * Cuts an unfinished last line (no newline at its end) off `file`. Returns how many bytes
 * were dropped; 0 when the file ends cleanly, is empty or does not exist.
 */
export function dropUnfinishedLine(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw outputError(file, error);
  }
  try {
    const size = fstatSync(fd).size;
    const keep = endOfLastLine(fd, size);
    if (keep < size) ftruncateSync(fd, keep);
    return size - keep;
  } finally {
    closeSync(fd);
  }
}

/** The length of the file up to and including its last newline. */
function endOfLastLine(fd: number, size: number): number {
  const buffer = Buffer.alloc(CHUNK);
  for (let end = size; end > 0; end -= CHUNK) {
    const start = Math.max(0, end - CHUNK);
    const length = readSync(fd, buffer, 0, end - start, start);
    const newline = buffer.subarray(0, length).lastIndexOf(NEWLINE);
    if (newline >= 0) return start + newline + 1;
  }
  return 0;
}

/**
 * The SHA-256 of every image whose latest record in `file` is a caption, by path. A later
 * record for a path supersedes an earlier one, so a failure after a caption means "retry".
 */
export async function readCaptioned(file: string): Promise<Map<string, string>> {
  const captioned = new Map<string, string>();
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber += 1;
      if (line.trim() === '') continue;
      const record = parseRecord(line);
      if (!record) {
        throw new GlimpseError(
          'usage',
          `cannot resume: line ${lineNumber} of ${file} is not a caption record; fix or remove it`,
        );
      }
      if (record.error === undefined && typeof record.sha256 === 'string') captioned.set(record.path, record.sha256);
      else captioned.delete(record.path);
    }
  } catch (error) {
    if (error instanceof GlimpseError) throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return captioned;
    throw outputError(file, error);
  }
  return captioned;
}

function parseRecord(line: string): { path: string; sha256?: unknown; error?: unknown } | undefined {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value === 'object' && value !== null && typeof (value as { path?: unknown }).path === 'string') {
      return value as { path: string };
    }
  } catch {
    // not JSON: reported by the caller with the line number
  }
  return undefined;
}

/** The images of `paths` still to caption: not captioned yet, or changed since. */
export async function imagesToCaption(paths: readonly string[], captioned: Map<string, string>): Promise<string[]> {
  const remaining: string[] = [];
  for (const path of paths) {
    const previous = captioned.get(path);
    if (previous === undefined || previous !== (await hashOrUndefined(path))) remaining.push(path);
  }
  return remaining;
}

/** A file that cannot be read now is captioned again, and fails there with its reason. */
async function hashOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await hashFile(path);
  } catch {
    return undefined;
  }
}

export function outputError(file: string, error: unknown): GlimpseError {
  const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return new GlimpseError('usage', `cannot use output file ${file} (${reason})`);
}

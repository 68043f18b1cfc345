// Where records go: standard output, or a JSONL file opened for appending. Each record is
// one whole line handed to the system in one write (no buffering in between), so a
// process killed at any moment leaves every finished record on disk and at most one
// unfinished line after them, which `--resume` cuts off.

import { closeSync, openSync, statSync, writeFileSync } from 'node:fs';

import { GlimpseError } from '../errors.js';
import { type OutputRecord, toJsonLine } from './records.js';
import { outputError } from './resume.js';

export interface RecordSink {
  write(record: OutputRecord): void;
  close(): void;
}

export class StreamSink implements RecordSink {
  readonly #out: NodeJS.WritableStream;

  constructor(out: NodeJS.WritableStream) {
    this.#out = out;
  }

  write(record: OutputRecord): void {
    this.#out.write(toJsonLine(record));
  }

  close(): void {}
}

export class FileSink implements RecordSink {
  readonly #fd: number;
  readonly #file: string;

  /**
   * Opens `file` for appending, creating it. Without `resume` the file must be new or
   * empty: appending a second run's records to a first run's would duplicate them.
   */
  constructor(file: string, options: { resume: boolean }) {
    if (!options.resume && fileSize(file) > 0) {
      throw new GlimpseError(
        'usage',
        `output file ${file} already has records; use --resume to continue it, or remove it first`,
      );
    }
    try {
      this.#fd = openSync(file, 'a');
    } catch (error) {
      throw outputError(file, error);
    }
    this.#file = file;
  }

  write(record: OutputRecord): void {
    try {
      // writeFileSync on a descriptor keeps writing until the whole line is out.
      writeFileSync(this.#fd, toJsonLine(record));
    } catch (error) {
      throw outputError(this.#file, error);
    }
  }

  close(): void {
    closeSync(this.#fd);
  }
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

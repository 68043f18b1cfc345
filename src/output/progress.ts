// Progress of a run over many items (images to caption, answers to evaluate), on stderr. At
// a terminal it is one line redrawn in place: a bar, the count, items per minute, the time
// left and the current item. Otherwise (a log file, a job scheduler) it is a plain line
// every 10 items or every 5 seconds, whichever comes first. A summary line ends the run.

const LINE_EVERY_IMAGES = 10;
const LINE_EVERY_MS = 5_000;
const BAR_WIDTH = 20;
const CLEAR_LINE = '\r\u001b[2K';

export interface BatchProgressOptions {
  /** Items this run will go through. */
  total: number;
  /** What an item is called in the lines, plural (default `images`). */
  unit?: string;
  /** Redraw one line in place (stderr is a terminal) instead of printing lines. */
  terminal: boolean;
  /** Terminal width; the line is cut to fit so it never wraps. */
  columns?: number;
  now?: () => number;
}

export class BatchProgress {
  readonly #out: NodeJS.WritableStream;
  readonly #total: number;
  readonly #unit: string;
  readonly #terminal: boolean;
  readonly #columns: number;
  readonly #now: () => number;
  readonly #startedAt: number;
  #lastLineAt: number;
  #done = 0;
  #failed = 0;
  #current = '';

  constructor(out: NodeJS.WritableStream, options: BatchProgressOptions) {
    this.#out = out;
    this.#total = options.total;
    this.#unit = options.unit ?? 'images';
    this.#terminal = options.terminal;
    // A pseudo-terminal may report 0 columns.
    this.#columns = options.columns || 80;
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
    this.#lastLineAt = this.#startedAt;
  }

  /** Work on `label` (the image being captioned, the question being answered) starts now. */
  started(label: string): void {
    this.#current = label;
    if (this.#terminal) this.#redraw();
  }

  /** The current item is done, with success or with a failure. */
  finished(succeeded: boolean): void {
    this.#done += 1;
    if (!succeeded) this.#failed += 1;
    if (this.#terminal) {
      this.#redraw();
      return;
    }
    const now = this.#now();
    if (this.#done % LINE_EVERY_IMAGES === 0 || now - this.#lastLineAt >= LINE_EVERY_MS) {
      this.#lastLineAt = now;
      this.#out.write(`${this.#done}/${this.#total} ${this.#unit}, ${this.#rateText()}, ETA ${this.#etaText()}\n`);
    }
  }

  /**
   * Takes the progress line off the screen until the next update, so that output to the
   * same terminal (records on stdout) starts on a clean line.
   */
  clear(): void {
    if (this.#terminal) this.#out.write(CLEAR_LINE);
  }

  /** A message of its own line (e.g. a failed image), kept clear of the progress line. */
  note(line: string): void {
    if (this.#terminal) this.#out.write(CLEAR_LINE);
    this.#out.write(`${line}\n`);
    if (this.#terminal) this.#redraw();
  }

  /** Replaces the progress line with a summary of a captioning run. */
  end(interrupted: boolean): void {
    if (this.#terminal) this.#out.write(CLEAR_LINE);
    const captioned = this.#done - this.#failed;
    const elapsed = formatDuration(this.#now() - this.#startedAt);
    this.#out.write(
      `${interrupted ? 'interrupted: ' : ''}${this.#done} of ${this.#total} images done ` +
        `(${captioned} captioned, ${this.#failed} failed) in ${elapsed}, ${this.#rateText()}\n`,
    );
  }

  #redraw(): void {
    const filled = this.#total === 0 ? BAR_WIDTH : Math.round((this.#done / this.#total) * BAR_WIDTH);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`;
    const status = `${bar} ${this.#done}/${this.#total}  ${this.#rateText()}  ETA ${this.#etaText()}  `;
    // One column spare: writing into the last column makes some terminals wrap.
    const room = this.#columns - 1 - status.length;
    this.#out.write(`${CLEAR_LINE}${(status + shortenPath(this.#current, room)).slice(0, this.#columns - 1)}`);
  }

  #itemsPerMs(): number | undefined {
    const elapsed = this.#now() - this.#startedAt;
    return this.#done > 0 && elapsed > 0 ? this.#done / elapsed : undefined;
  }

  #rateText(): string {
    const rate = this.#itemsPerMs();
    return rate === undefined ? `- ${this.#unit}/min` : `${(rate * 60_000).toFixed(1)} ${this.#unit}/min`;
  }

  #etaText(): string {
    const rate = this.#itemsPerMs();
    return rate === undefined ? '-' : formatDuration((this.#total - this.#done) / rate);
  }
}

/** `43s`, `1m12s`, `2h05m`. */
export function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/** Keeps the end of a path, where the file name is, when it does not fit in `room`. */
function shortenPath(path: string, room: number): string {
  if (path.length <= room) return path;
  if (room <= 1) return '';
  return `…${path.slice(path.length - room + 1)}`;
}

// Ctrl-C handling. While a generation runs, the first Ctrl-C asks the engine to stop at
// the next token (so the process can exit cleanly); at any other time, or on a second
// Ctrl-C, the process exits at once. Either way the exit code is 130.

import { EXIT_CODES } from './errors.js';

export class Interrupt {
  readonly #controller = new AbortController();
  readonly #onAbort: () => void;
  #generating = false;
  readonly #handler = (): void => {
    if (!this.#generating || this.#controller.signal.aborted) process.exit(EXIT_CODES.cancelled);
    this.#onAbort();
    this.#controller.abort();
  };

  /** `onAbort` runs first, on the first Ctrl-C during a generation. */
  constructor(onAbort: () => void = () => {}) {
    this.#onAbort = onAbort;
    process.on('SIGINT', this.#handler);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get interrupted(): boolean {
    return this.#controller.signal.aborted;
  }

  /** From now on Ctrl-C cancels the generation instead of exiting. */
  generationStarted(): void {
    this.#generating = true;
  }

  dispose(): void {
    process.off('SIGINT', this.#handler);
  }
}

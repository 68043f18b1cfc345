// Streams answer text to stdout as it arrives and ends it with exactly one newline.

export class TextPrinter {
  readonly #out: NodeJS.WritableStream;
  #muted = false;

  constructor(out: NodeJS.WritableStream) {
    this.#out = out;
  }

  write(text: string): void {
    if (!this.#muted && text !== '') this.#out.write(text);
  }

  /** After Ctrl-C nothing more reaches stdout, not even the final newline. */
  mute(): void {
    this.#muted = true;
  }

  finish(): void {
    if (!this.#muted) this.#out.write('\n');
  }
}

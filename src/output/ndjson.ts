// One JSON object per line, so a consumer can act on each event as it arrives.

export class NdjsonWriter {
  readonly #out: NodeJS.WritableStream;
  #muted = false;

  constructor(out: NodeJS.WritableStream) {
    this.#out = out;
  }

  write(event: { type: string } & Record<string, unknown>): void {
    if (!this.#muted) this.#out.write(`${JSON.stringify(event)}\n`);
  }

  mute(): void {
    this.#muted = true;
  }
}

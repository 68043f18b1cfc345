// The questions of a chat, one per line of standard input. At a terminal each question is
// asked for with a `> ` prompt on stderr (stdout carries only answers); from a pipe, the
// lines are read as they come. Blank lines are skipped; end of input ends the chat.

import { createInterface, type Interface } from 'node:readline';

export class QuestionReader {
  readonly #lines: Interface;
  /** Made at once: lines that arrive before there is an iterator would be lost. */
  readonly #lineIterator: AsyncIterator<string>;
  readonly #interactive: boolean;

  constructor(input: NodeJS.ReadableStream, prompts: NodeJS.WritableStream) {
    this.#interactive = Boolean((input as { isTTY?: boolean }).isTTY && (prompts as { isTTY?: boolean }).isTTY);
    this.#lines = createInterface({
      input,
      output: this.#interactive ? prompts : undefined,
      terminal: this.#interactive,
      crlfDelay: Infinity,
    });
    this.#lineIterator = this.#lines[Symbol.asyncIterator]();
    this.#lines.setPrompt('> ');
    // A terminal in line-editing mode delivers Ctrl-C as a key, not a signal: pass it on as
    // the signal, so it ends the chat as it ends every other command.
    this.#lines.on('SIGINT', () => process.kill(process.pid, 'SIGINT'));
  }

  /** `first` (a question given on the command line) comes before the lines of input. */
  async *questions(first?: string): AsyncGenerator<string> {
    if (first !== undefined) yield first;
    for (;;) {
      if (this.#interactive) this.#lines.prompt();
      const next = await this.#lineIterator.next();
      if (next.done === true) return;
      const question = next.value.trim();
      if (question !== '') yield question;
    }
  }

  /** Ends the questions: the reader stops at once, and stdin is let go. */
  close(): void {
    this.#lines.close();
  }
}

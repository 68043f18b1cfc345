// Progress on stderr while nothing else is happening on screen (loading, decoding).
// Only for a human at a terminal: never when stderr is redirected or output is JSON.

import ora, { type Ora } from 'ora';

export interface Progress {
  update(text: string): void;
  stop(): void;
}

const SILENT: Progress = { update: () => {}, stop: () => {} };

/** The width taken for a terminal that does not say (as the caption progress bar does). */
const ASSUMED_COLUMNS = 80;

export function startProgress(text: string, enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!enabled) return SILENT;
  const spinner: Ora = ora({ text, stream: withKnownWidth(stream), discardStdin: false }).start();
  return {
    update: (next) => {
      spinner.text = next;
    },
    stop: () => {
      spinner.stop();
    },
  };
}

/**
 * `stream` as the spinner should see it: a width of 0 columns reads as 80. ora divides the
 * text's width by the columns to know how many lines to clear, so a pseudo-terminal that
 * reports 0 columns (`script`, some CI runners) made that count infinite and its clearing
 * loop spin forever. Everything else goes straight to `stream`.
 */
function withKnownWidth(stream: NodeJS.WriteStream): NodeJS.WriteStream {
  const view = {
    isTTY: stream.isTTY,
    get columns() {
      return stream.columns || ASSUMED_COLUMNS;
    },
    get rows() {
      return stream.rows;
    },
    // ora replaces `write` on the streams it draws to while it spins, and puts it back after.
    write: stream.write.bind(stream),
    cursorTo: stream.cursorTo.bind(stream),
    moveCursor: stream.moveCursor.bind(stream),
    clearLine: stream.clearLine.bind(stream),
    once: stream.once.bind(stream),
    removeListener: stream.removeListener.bind(stream),
  };
  // The members above are all ora (and cli-cursor, which hides the cursor) use.
  return view as unknown as NodeJS.WriteStream;
}

// Progress on stderr while nothing else is happening on screen (loading, decoding).
// Only for a human at a terminal: never when stderr is redirected or output is JSON.

import ora, { type Ora } from 'ora';

export interface Progress {
  update(text: string): void;
  stop(): void;
}

const SILENT: Progress = { update: () => {}, stop: () => {} };

export function startProgress(text: string, enabled: boolean): Progress {
  if (!enabled) return SILENT;
  const spinner: Ora = ora({ text, stream: process.stderr, discardStdin: false }).start();
  return {
    update: (next) => {
      spinner.text = next;
    },
    stop: () => {
      spinner.stop();
    },
  };
}

// The spinner on a fake terminal: it must draw and clear its line whatever width the
// terminal reports, including the 0 columns of a pseudo-terminal without a size.

import { Writable } from 'node:stream';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { startProgress } from '../src/output/spinner.js';

/** More line clears than any spinner line needs: past it, clearing would never end. */
const RUNAWAY = 1000;

interface FakeTerminal {
  stream: NodeJS.WriteStream;
  text: () => string;
  /** Lines cleared (`clearLine`) and cursor moves up (`moveCursor`) so far. */
  clears: () => number;
  moves: () => number;
}

function fakeTerminal(columns: number): FakeTerminal {
  let text = '';
  let clears = 0;
  let moves = 0;
  const stream = new Writable({
    write(chunk, _encoding, done) {
      text += String(chunk);
      done();
    },
  });
  Object.assign(stream, {
    isTTY: true,
    columns,
    rows: 24,
    cursorTo: () => true,
    moveCursor: () => {
      moves += 1;
      return true;
    },
    clearLine: () => {
      clears += 1;
      if (clears > RUNAWAY) throw new Error(`the spinner cleared more than ${RUNAWAY} lines`);
      return true;
    },
  });
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => text, clears: () => clears, moves: () => moves };
}

/** ora stays quiet under CI or a dumb terminal; these tests need it to draw. */
function asAtAnInteractiveTerminal(run: () => void): void {
  const saved = { CI: process.env.CI, TERM: process.env.TERM };
  delete process.env.CI;
  process.env.TERM = 'xterm';
  try {
    run();
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

test('a terminal that reports 0 columns: the line is drawn and cleared once', () => {
  const terminal = fakeTerminal(0);
  asAtAnInteractiveTerminal(() => {
    const progress = startProgress('Loading model', true, terminal.stream as never);
    progress.update('Reading images');
    progress.stop();
  });
  assert.ok(terminal.text().includes('Loading model'), terminal.text());
  assert.is(terminal.clears(), 1);
  assert.is(terminal.moves(), 0);
});

test('a terminal that reports 0 columns is taken as 80 wide', () => {
  // Spinner, space and 100 characters: two lines of 80 to clear.
  const terminal = fakeTerminal(0);
  asAtAnInteractiveTerminal(() => startProgress('x'.repeat(100), true, terminal.stream as never).stop());
  assert.is(terminal.clears(), 2);
  assert.is(terminal.moves(), 1);
});

test('a terminal of known width: as many lines cleared as the text took', () => {
  const terminal = fakeTerminal(40);
  asAtAnInteractiveTerminal(() => startProgress('x'.repeat(100), true, terminal.stream as never).stop());
  assert.is(terminal.clears(), 3);
  assert.is(terminal.moves(), 2);
});

test('disabled: nothing is written', () => {
  const terminal = fakeTerminal(80);
  asAtAnInteractiveTerminal(() => startProgress('Loading model', false, terminal.stream).stop());
  assert.is(terminal.text(), '');
  assert.is(terminal.clears(), 0);
});

test.run();

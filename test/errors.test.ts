import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { EXIT_CODES, GlimpseError, oneLine, reportError, toGlimpseError } from '../src/errors.js';

function nativeError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

test('native error codes map to kinds and exit codes', () => {
  const cases: Array<[string, keyof typeof EXIT_CODES, number]> = [
    ['GLIMPSE_USAGE', 'usage', 1],
    ['GLIMPSE_INPUT', 'input', 2],
    ['GLIMPSE_MODEL', 'model', 3],
    ['GLIMPSE_INTERNAL', 'internal', 4],
    ['GLIMPSE_CANCELLED', 'cancelled', 130],
  ];
  for (const [code, kind, exitCode] of cases) {
    const error = toGlimpseError(nativeError(code, 'boom'));
    assert.is(error.kind, kind);
    assert.is(error.message, 'boom');
    assert.is(EXIT_CODES[kind], exitCode);
  }
});

test('anything unexpected is an internal error, never a usage error', () => {
  assert.equal(
    [toGlimpseError(new TypeError('x is undefined')).kind, toGlimpseError(new TypeError('x is undefined')).message],
    ['internal', 'internal error: x is undefined'],
  );
  assert.is(toGlimpseError(nativeError('InvalidArg', 'bad')).kind, 'internal');
  assert.is(toGlimpseError('a string').message, 'internal error: a string');
});

test('reportError writes one prefixed line and returns the exit code', () => {
  let written = '';
  const stderr = { write: (text: string) => (written += text) } as unknown as NodeJS.WritableStream;
  assert.is(reportError(new GlimpseError('input', 'photo.png:\n  not an image'), stderr), 2);
  assert.is(written, 'glimpse: photo.png: not an image\n');
});

test('a cancelled run exits 130 without a message', () => {
  let written = '';
  const stderr = { write: (text: string) => (written += text) } as unknown as NodeJS.WritableStream;
  assert.is(reportError(new GlimpseError('cancelled', 'generation cancelled'), stderr), 130);
  assert.is(written, '');
});

test('oneLine joins lines and squeezes whitespace', () => {
  assert.is(oneLine('  first\n\n   second\tpart \n'), 'first second part');
});

test.run();

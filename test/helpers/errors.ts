// Capturing the error a call is expected to throw, so a test can check all of it.

import * as assert from 'uvu/assert';

import { type ErrorKind, GlimpseError } from '../../src/errors.js';

/** The message of the GlimpseError `run` throws or rejects with; fails unless its kind is `kind`. */
export async function glimpseErrorMessage(kind: ErrorKind, run: () => unknown): Promise<string> {
  let caught: unknown;
  try {
    await run();
  } catch (error) {
    caught = error;
  }
  assert.instance(caught, GlimpseError, `expected a ${kind} error`);
  assert.is((caught as GlimpseError).kind, kind, (caught as Error).message);
  return (caught as GlimpseError).message;
}

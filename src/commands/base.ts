// Shared plumbing for glimpse's commands: error reporting and the common options.

import { Command, Option } from 'clipanion';
import * as t from 'typanion';

import { reportError } from '../errors.js';

export abstract class GlimpseCommand extends Command {
  /** Every failure, including option validation, ends as one stderr line and its exit code. */
  override async validateAndExecute(): Promise<number> {
    try {
      return await super.validateAndExecute();
    } catch (error) {
      return reportError(error, this.context.stderr);
    }
  }
}

export const isWholeNumber = (min: number) => t.cascade(t.isNumber(), [t.isInteger(), t.isAtLeast(min)]);

/** Strictly greater than `min` (typanion's own predicates only offer "at least"). */
export const isAbove = (min: number) =>
  t.makeValidator<number>({
    test: (value, state) => {
      if (value > min) return true;
      state?.errors?.push(`${state.p ?? '.'}: Expected to be above ${min} (got ${value})`);
      return false;
    },
  });

export const threadsOption = () =>
  Option.String('--threads', {
    description: 'CPU worker threads (default: all cores)',
    validator: isWholeNumber(1),
  });

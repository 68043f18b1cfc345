// Shared plumbing for glimpse's commands: error reporting and the common options.

import { Command, Option } from 'clipanion';
import * as t from 'typanion';

import { reductionMethods } from '../engine.js';
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

export const deviceOption = () =>
  Option.String('--device', {
    description: 'Where the model runs: auto (a CUDA GPU when one is usable, else the CPU), cuda or cpu (default: auto)',
    validator: t.isEnum(['auto', 'cuda', 'cpu']),
  });

export const dtypeOption = () =>
  Option.String('--dtype', {
    description: "Type the weights are kept in: auto (the checkpoint's), f32, f16 or bf16 (default: auto)",
    validator: t.isEnum(['auto', 'f32', 'f16', 'bf16']),
  });

export const maxImageTokensOption = () =>
  Option.String('--max-image-tokens', {
    description:
      'Most tokens one image may take before any reduction; a tiling model (LLaVA-NeXT) cuts images into smaller grids to fit (default: no limit)',
    validator: isWholeNumber(1),
  });

export const visionTowerOption = () =>
  Option.String('--vision-tower', {
    description: 'CLIP checkpoint directory for an original-layout LLaVA model that ships without its vision tower',
  });

export const reduceOption = () =>
  Option.String('--reduce', {
    description: 'Visual-token reduction METHOD[:k=v,...], e.g. mustdrop:keep=64 (default: none)',
  });

export const showKeptOption = () =>
  Option.String('--show-kept', {
    description: 'Draw what the reduction kept on the image(s): FILE.png, or FILE.html with the answer',
  });

/**
 * The `--reduce` paragraphs of a command's help, listing every method with its settings as
 * the engine has them; indented like the commands' `details` text, which clipanion dedents.
 */
export function reduceHelp(): string {
  const methods = reductionMethods().map(({ name, settings }) => `      - \`${name}\`: ${settings}`);
  return [
    '',
    '      `--reduce METHOD:k=v,...` removes or merges visual tokens. Budgets are per image, lists',
    '      are joined with `/` (`layers=2/6/10/14`), and every method also takes',
    '      `positions=original|compact`. The methods and their settings, with defaults:',
    '',
    ...methods,
    '',
  ].join('\n');
}

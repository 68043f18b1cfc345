import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { errorLine, ROOT, runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { pngClaimingSize } from './helpers/png.js';

test.after.each(removeTempDirs);

function usageError(args: string[], input?: string): string {
  const result = runCli(args, { input });
  assert.is(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
  return errorLine(result);
}

test('an unknown flag is a one-line usage error', () => {
  assert.is(
    usageError(['ask', '--frobnicate', 'hi']),
    `glimpse: Unsupported option name ("--frobnicate") (see 'glimpse --help')`,
  );
});

test('an unknown command is a one-line usage error', () => {
  assert.is(usageError(['describe', 'x']), "glimpse: unknown command: describe (see 'glimpse --help')");
});

test('a missing prompt is a usage error', () => {
  assert.is(usageError(['ask']), "glimpse: Not enough positional arguments (see 'glimpse --help')");
  const dir = tempDir();
  const image = join(dir, 'photo.png');
  writeFileSync(image, pngClaimingSize(4, 4));
  assert.is(
    usageError(['ask', '--model', dir, image]),
    `glimpse: missing prompt: the last argument must be the question, not an image (${image})`,
  );
});

test('an empty prompt is a usage error, also from stdin', () => {
  const dir = tempDir();
  assert.is(usageError(['ask', '--model', dir, '']), 'glimpse: the prompt is empty');
  assert.is(usageError(['ask', '--model', dir, '-'], ' \n\n'), 'glimpse: the prompt is empty');
});

const badValues: Array<[string, string, string]> = [
  ['--temperature', 'warm', 'expected a number (got "warm")'],
  ['--temperature', '-0.5', 'expected to be at least 0 (got -0.5)'],
  ['--max-tokens', '0', 'expected to be at least 1 (got 0)'],
  ['--max-tokens', '2.5', 'expected to be an integer (got 2.5)'],
  ['--top-p', '0', 'expected to be above 0 (got 0)'],
  ['--top-p', '1.5', 'expected to be at most 1 (got 1.5)'],
  ['--top-k', '-1', 'expected to be at least 0 (got -1)'],
  ['--repetition-penalty', '0', 'expected to be above 0 (got 0)'],
  ['--seed', 'x', 'expected a number (got "x")'],
  ['--threads', '0', 'expected to be at least 1 (got 0)'],
];

for (const [flag, value, reason] of badValues) {
  test(`${flag} ${value} is a usage error`, () => {
    assert.is(
      // `--flag=value` keeps a negative value from being read as an option name.
      usageError(['ask', `${flag}=${value}`, 'hi']),
      `glimpse: Invalid value for ${flag}: ${reason} (see 'glimpse --help')`,
    );
  });
}

test('--version prints the package version', () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const result = runCli(['--version']);
  assert.is(result.code, 0);
  assert.is(result.stdout, `${version}\n`);
});

test('--help lists both commands, without colours when piped', () => {
  const result = runCli(['--help'], { env: { NO_COLOR: undefined } });
  assert.is(result.code, 0);
  assert.match(result.stdout, /glimpse ask /);
  assert.match(result.stdout, /glimpse inspect /);
  assert.not.match(result.stdout, /\u001b\[/);
  assert.is(result.stderr, '');
});

test('ask --help explains the arguments', () => {
  const result = runCli(['ask', '--help']);
  assert.is(result.code, 0);
  assert.match(result.stdout, /The last argument is the prompt/);
  assert.match(result.stdout, /--max-tokens/);
});

test.run();

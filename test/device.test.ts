// `--device` and `--dtype`: the CPU always works, `auto` runs wherever it can, and asking
// for CUDA where no GPU is usable is one clear line and a non-zero exit, never a crash or
// a silent fallback.

import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { errorLine, FIXTURES, runCli } from './helpers/cli.js';

const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');
const BF16_MODEL = join(FIXTURES, 'models', 'tiny-llava-bf16');

/** Whether this machine has an NVIDIA GPU (its driver's control device). */
const HAS_GPU = existsSync('/dev/nvidiactl');

function inspect(...flags: string[]): { backend: string; dtype: string } {
  const result = runCli(['inspect', MODEL, '--json', ...flags]);
  assert.is(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as { backend: string; dtype: string };
}

test('--device cpu runs on the CPU', () => {
  assert.match(inspect('--device', 'cpu').backend, /^cpu \(\d+ threads\)$/);
});

test('--device auto runs on the GPU when one is usable, else on the CPU', () => {
  const backend = inspect('--device', 'auto').backend;
  if (HAS_GPU) assert.match(backend, /^(cuda|cpu) \(/);
  else assert.match(backend, /^cpu \(/);
  assert.is(inspect().backend, backend, 'auto is the default');
});

// On a machine with a GPU this case cannot be made here; the GPU checks cover that side.
(HAS_GPU ? test.skip : test)('--device cuda without a usable GPU exits 1 with one line saying why', () => {
  for (const command of [
    ['inspect', MODEL, '--device', 'cuda'],
    ['ask', '--model', MODEL, '--device', 'cuda', '--max-tokens', '2', 'hi'],
  ]) {
    const result = runCli(command);
    assert.is(result.code, 1, result.stderr);
    const line = errorLine(result);
    assert.match(line, /^glimpse: --device cuda: no usable CUDA GPU/);
  }
});

test('--dtype converts the weights on load and says so', () => {
  assert.match(inspect('--device', 'cpu', '--dtype', 'bf16').backend, /^cpu \(\d+ threads, bf16 weights\)$/);
  // A bf16 checkpoint widened to f32 answers exactly as it does in bf16: widening is exact
  // and the CPU computes in f32 either way.
  const answer = (dtype: string) => {
    const result = runCli(['ask', '--model', BF16_MODEL, '--device', 'cpu', '--dtype', dtype, '--max-tokens', '6', 'hi']);
    assert.is(result.code, 0, result.stderr);
    return result.stdout;
  };
  assert.is(answer('f32'), answer('auto'));
});

test('--stats names the backend that ran', () => {
  const result = runCli(['ask', '--model', MODEL, '--device', 'cpu', '--stats', '--max-tokens', '2', 'hi']);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stderr, /^backend +cpu \(\d+ threads\)$/m);
});

test('unknown --device and --dtype values are usage errors', () => {
  for (const flags of [
    ['--device', 'tpu'],
    ['--dtype', 'int4'],
  ]) {
    const result = runCli(['inspect', MODEL, ...flags]);
    assert.is(result.code, 1, result.stderr);
    assert.ok(errorLine(result).includes(flags[0]!), result.stderr);
  }
});

test.run();

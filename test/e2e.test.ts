// The real CLI on a tiny random LLaVA checkpoint, held to the outputs of the reference
// implementation (Hugging Face transformers) recorded in test/fixtures/expected/.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { FIXTURES, runCli } from './helpers/cli.js';

interface Expected {
  messages: Array<{ content: Array<{ type: string; text?: string }> }>;
  images: string[];
  num_image_tokens_per_image: number;
  greedy_ids: number[];
  greedy_text: string;
}

const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');

/** Read inside each test, so that a missing fixture fails those tests, not the whole run. */
function reference(): { expected: Expected; askArgs: string[] } {
  const expected = JSON.parse(readFileSync(join(FIXTURES, 'expected', 'tiny-llava-mha.json'), 'utf8')) as Expected;
  const prompt = expected.messages[0]?.content.find((part) => part.type === 'text')?.text ?? '';
  const images = expected.images.map((image) => join(FIXTURES, image));
  const greedy = ['--max-tokens', String(expected.greedy_ids.length), '--temperature', '0'];
  return { expected, askArgs: ['--model', MODEL, ...images, prompt, ...greedy] };
}

test('ask prints the reference greedy answer and nothing else', () => {
  const { expected, askArgs } = reference();
  const result = runCli(['ask', ...askArgs]);
  assert.is(result.stderr, '');
  assert.is(result.code, 0);
  assert.is(result.stdout, `${expected.greedy_text}\n`);
});

test('ask --json streams the reference tokens, then stats and done', () => {
  const { expected, askArgs } = reference();
  const result = runCli(['ask', '--json', ...askArgs]);
  assert.is(result.stderr, '');
  assert.is(result.code, 0);
  const events = result.stdout
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const tokens = events.filter((event) => event.type === 'token');
  // A final event without id may release held-back text; it adds no token.
  assert.equal(
    tokens.filter((event) => event.id !== undefined).map((event) => event.id),
    expected.greedy_ids,
  );
  assert.is(tokens.map((event) => event.text).join(''), expected.greedy_text);
  const [stats, done] = events.slice(tokens.length);
  assert.is(events.length, tokens.length + 2);
  assert.is(stats?.type, 'stats');
  assert.is(stats?.generated_tokens, expected.greedy_ids.length);
  assert.equal(done, { type: 'done', text: expected.greedy_text, finish_reason: 'length' });
});

/** Element and byte totals over every tensor in a .safetensors file, from its header. */
function safetensorsTotals(path: string): { parameters: number; bytes: number } {
  const file = readFileSync(path);
  const headerLength = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { shape: number[]; data_offsets: [number, number] }
  >;
  let parameters = 0;
  let bytes = 0;
  for (const [name, tensor] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    parameters += tensor.shape.reduce((product, size) => product * size, 1);
    bytes += tensor.data_offsets[1] - tensor.data_offsets[0];
  }
  return { parameters, bytes };
}

test('inspect --json describes the checkpoint', () => {
  const { expected } = reference();
  const config = JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8'));
  const totals = safetensorsTotals(join(MODEL, 'model.safetensors'));
  const result = runCli(['inspect', '--json', MODEL]);
  assert.is(result.stderr, '');
  assert.is(result.code, 0);
  const info = JSON.parse(result.stdout);
  assert.is(info.dir, MODEL);
  assert.is(info.parameters, totals.parameters);
  assert.is(info.weight_bytes, totals.bytes);
  assert.is(info.text_layers, config.text_config.num_hidden_layers);
  assert.is(info.vision_layers, config.vision_config.num_hidden_layers);
  assert.is(info.hidden_size, config.text_config.hidden_size);
  assert.is(info.image_tokens, expected.num_image_tokens_per_image);
  assert.is(info.context_length, config.text_config.max_position_embeddings);
});

test.run();

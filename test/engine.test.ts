import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { type GenerateOutput, type GenerationStats, Generation, type TokenEvent } from '../src/engine.js';
import { GlimpseError } from '../src/errors.js';
import { glimpseErrorMessage } from './helpers/errors.js';

const OUTPUT: GenerateOutput = {
  text: 'a cat',
  token_ids: [7, 8],
  finish_reason: 'eos',
  stats: { generated_tokens: 2 } as GenerationStats,
  reduction: { spec: 'none', images: [], filters: [], decode_admitted: [], decode_evicted: [] },
};

async function collect(generation: Generation): Promise<TokenEvent[]> {
  const events: TokenEvent[] = [];
  for await (const event of generation) events.push(event);
  return events;
}

test('yields every event, including those sent right before the result', async () => {
  const generation = new Generation(async (onEvent) => {
    onEvent({ id: 7, text: 'a' });
    await new Promise((resolve) => setTimeout(resolve, 5));
    onEvent({ id: 8, text: ' cat' });
    return OUTPUT;
  });
  assert.equal(await collect(generation), [
    { id: 7, text: 'a' },
    { id: 8, text: ' cat' },
  ]);
  assert.is(await generation.result, OUTPUT);
});

test('events delivered before iteration starts are not lost', async () => {
  const generation = new Generation(async (onEvent) => {
    onEvent({ id: 1, text: 'x' });
    return OUTPUT;
  });
  await generation.result;
  assert.equal(await collect(generation), [{ id: 1, text: 'x' }]);
});

test('a failure ends the iteration with that error after the earlier events', async () => {
  const seen: TokenEvent[] = [];
  const generation = new Generation(async (onEvent) => {
    onEvent({ id: 3, text: 'partial' });
    throw new GlimpseError('cancelled', 'generation cancelled');
  });
  const message = await glimpseErrorMessage('cancelled', async () => {
    for await (const event of generation) seen.push(event);
  });
  assert.is(message, 'generation cancelled');
  assert.equal(seen, [{ id: 3, text: 'partial' }]);
});

test.run();

// Cancellation on the tiny reference checkpoint. The abort comes right after the first
// token is seen; the engine polls the flag once per token, so at most one more token may
// already be on its way, and nothing after that.

import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { main } from '../src/cli.js';
import { Model } from '../src/engine.js';
import { loadImage } from '../src/media/image.js';
import { glimpseErrorMessage } from './helpers/errors.js';
import { FIXTURES } from './helpers/cli.js';
import { sink } from './helpers/sink.js';

const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');
const IMAGE = join(FIXTURES, 'images', 'shapes-64x40.png');

test('aborting the signal stops generation at the next token', async () => {
  const model = await Model.load(MODEL);
  const controller = new AbortController();
  const generation = model.generate(
    {
      messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe it.' }] }],
      images: [await loadImage(IMAGE)],
      maxTokens: 64,
      temperature: 0,
    },
    controller.signal,
  );
  const seen: (number | undefined)[] = [];
  let outcome: string | undefined;
  try {
    for await (const event of generation) {
      seen.push(event.id);
      controller.abort();
    }
    outcome = (await generation.result).finish_reason;
  } catch {
    outcome = await glimpseErrorMessage('cancelled', () => generation.result);
  }
  assert.ok(seen.length >= 1 && seen.length <= 2, `saw ${seen.length} tokens`);
  assert.ok(outcome === 'cancelled' || outcome === 'generation cancelled', outcome);
});

test('Ctrl-C during ask prints nothing more and exits 130', async () => {
  let interrupted = false;
  const stdout = sink(() => {
    if (!interrupted) {
      interrupted = true;
      process.emit('SIGINT', 'SIGINT');
    }
  });
  const stderr = sink();
  const code = await main(['ask', '--json', '--model', MODEL, IMAGE, 'Describe it.', '--max-tokens', '64'], {
    stdout,
    stderr,
  });
  assert.is(code, 130);
  assert.is(stdout.text.trimEnd().split('\n').length, 1);
  assert.is(JSON.parse(stdout.text).type, 'token');
  assert.is(stderr.text, '');
});

test.run();

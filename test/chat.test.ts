// `glimpse ask --chat`: questions piped on stdin, each answered as the engine answers the
// whole conversation so far, on the tiny reference checkpoint.

import { join } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { type GenerateOutput, type Message, Model } from '../src/engine.js';
import { loadImage } from '../src/media/image.js';
import { errorLine, FIXTURES, runCli } from './helpers/cli.js';

const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');
const RINGS = join(FIXTURES, 'images', 'rings-90x72.png');
// Hot, seeded sampling turns any change in the prompt into different tokens, so equal
// answers mean equal conversations.
const SAMPLING = { maxTokens: 6, temperature: 3, seed: 7 };
const ARGS = ['ask', '--chat', '--model', MODEL, '--max-tokens', '6', '--temperature', '3', '--seed', '7'];

let model: Model | undefined;

/** The engine's answer to `messages` about `imagePaths`, sampled as the CLI is told to. */
async function engineAnswer(messages: Message[], imagePaths: string[]): Promise<GenerateOutput> {
  model ??= await Model.load(MODEL);
  const images = await Promise.all(imagePaths.map((path) => loadImage(path)));
  return model.generate({ messages, images, ...SAMPLING }).result;
}

const text = (value: string) => [{ type: 'text' as const, text: value }];

/** The answers the engine gives, turn by turn, when each sees the conversation before it. */
async function expectedTurns(questions: string[], imagePaths: string[], system?: string): Promise<string[]> {
  const history: Message[] = system === undefined ? [] : [{ role: 'system', content: text(system) }];
  const answers: string[] = [];
  for (const [turn, question] of questions.entries()) {
    const images = turn === 0 ? imagePaths.map(() => ({ type: 'image' as const })) : [];
    const user: Message = { role: 'user', content: [...images, ...text(question)] };
    const answer = (await engineAnswer([...history, user], imagePaths)).text;
    history.push(user, { role: 'assistant', content: text(answer.trim()) });
    answers.push(answer);
  }
  return answers;
}

test('each line of stdin is the next question, answered with the conversation before it', async () => {
  const result = runCli([...ARGS, RINGS], { input: 'What is in this picture?\n\n   And its colours?  \n' });
  assert.is(result.code, 0, result.stderr);
  assert.is(result.stderr, '');
  const answers = await expectedTurns(['What is in this picture?', 'And its colours?'], [RINGS]);
  assert.is(result.stdout, answers.map((answer) => `${answer}\n`).join(''));
  // The second answer depends on the first turn: asked alone, the question gets another.
  const askedAlone: Message = { role: 'user', content: [{ type: 'image' }, ...text('And its colours?')] };
  const alone = await engineAnswer([askedAlone], [RINGS]);
  assert.is.not(alone.text, answers[1]);
});

test('PROMPT is the first question, --system leads the conversation, and - takes all from stdin', async () => {
  const system = 'Answer briefly.';
  const given = runCli([...ARGS, '--system', system, RINGS, 'What is this?'], { input: 'Why?\n' });
  assert.is(given.code, 0, given.stderr);
  const answers = await expectedTurns(['What is this?', 'Why?'], [RINGS], system);
  assert.is(given.stdout, answers.map((answer) => `${answer}\n`).join(''));

  const textOnly = runCli([...ARGS, '-'], { input: 'Hello.\nHow are you?\n' });
  assert.is(textOnly.code, 0, textOnly.stderr);
  const textAnswers = await expectedTurns(['Hello.', 'How are you?'], []);
  assert.is(textOnly.stdout, textAnswers.map((answer) => `${answer}\n`).join(''));
});

test('--json: token, stats and done events for every turn', async () => {
  const result = runCli([...ARGS, '--json', RINGS], { input: 'What is this?\nWhy?\n' });
  assert.is(result.code, 0, result.stderr);
  const events = result.stdout
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as { type: string; text?: string });
  const dones = events.filter((event) => event.type === 'done').map((event) => event.text);
  assert.equal(dones, await expectedTurns(['What is this?', 'Why?'], [RINGS]));
  assert.equal(
    events.filter((event) => event.type !== 'token').map((event) => event.type),
    ['stats', 'done', 'stats', 'done'],
  );
});

test('no question: nothing is asked; a conversation past the context window ends with exit 2', () => {
  const none = runCli([...ARGS, RINGS], { input: '\n\n' });
  assert.is(none.code, 0, none.stderr);
  assert.is(none.stdout, '');

  const question = 'Tell me everything about this picture, every detail of it, again and again.';
  const long = runCli([...ARGS, '--max-tokens', '64', RINGS], { input: `${question}\n`.repeat(100) });
  assert.is(long.code, 2, long.stderr);
  assert.ok(long.stdout.split('\n').length > 2, 'some turns were answered first');
  const line = long.stderr.trimEnd();
  const overflow = /^glimpse: the conversation is now (\d+) tokens, over the model's context window of 1024: /;
  const match = overflow.exec(line);
  assert.ok(line.endsWith(': start a new chat'), line);
  assert.ok(match !== null && Number(match[1]) >= 1024, line);
});

test('--chat with --show-kept, or an empty first question, is a usage error', () => {
  const usage = (args: string[]) => {
    const result = runCli(args);
    assert.is(result.code, 1, result.stderr);
    return errorLine(result);
  };
  assert.is(usage([...ARGS, '--show-kept', 'kept.png', RINGS]), 'glimpse: --show-kept cannot be used with --chat');
  assert.is(usage([...ARGS, RINGS, ' ']), 'glimpse: the prompt is empty');
});

test.run();

// `glimpse eval` end to end: the real CLI on the tiny fixture checkpoints. The expected
// scores come from the answers `glimpse ask` gives to the same questions.

import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { main } from '../src/cli.js';
import { matchesAnswer, normalise } from '../src/eval/score.js';
import { PLOT_HEIGHT, PLOT_WIDTH } from '../src/output/eval-plot.js';
import { errorLine, FIXTURES, runCli } from './helpers/cli.js';
import { removeTempDirs, tempDir } from './helpers/files.js';
import { sink } from './helpers/sink.js';

test.after.each(removeTempDirs);

const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');
const REDUCE_MODEL = join(FIXTURES, 'models', 'tiny-llava-reduce');
const IMAGES = { rings: 'rings-90x72.png', shapes: 'shapes-64x40.png', stripes: 'stripes-45x70.png' };
type ImageName = keyof typeof IMAGES;

/** A folder with the fixture images under `images/` and `data.jsonl` holding `lines`. */
function dataFile(lines: unknown[]): string {
  const dir = tempDir('glimpse-eval-');
  mkdirSync(join(dir, 'images'));
  for (const name of Object.values(IMAGES)) copyFileSync(join(FIXTURES, 'images', name), join(dir, 'images', name));
  const file = join(dir, 'data.jsonl');
  writeFileSync(file, lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line))).join('\n') + '\n');
  return file;
}

/** What `glimpse ask` answers (greedy), without its closing newline. */
function askAnswer(model: string, image: ImageName, question: string, maxTokens: number, reduce?: string): string {
  const extra = reduce === undefined ? [] : ['--reduce', reduce];
  const path = join(FIXTURES, 'images', IMAGES[image]);
  const result = runCli(['ask', '--model', model, '--max-tokens', String(maxTokens), ...extra, path, question]);
  assert.is(result.code, 0, result.stderr);
  assert.ok(result.stdout.endsWith('\n'));
  return result.stdout.slice(0, -1);
}

/** The first word of the normalised text made only of letters: something a phrase can name. */
function aWordOf(text: string): string {
  const word = normalise(text)
    .split(' ')
    .find((candidate) => /^\p{L}{2,}$/u.test(candidate));
  if (word === undefined) throw new Error(`no word in the answer ${JSON.stringify(text)}`);
  return word;
}

interface Report {
  data: string;
  model: string;
  max_tokens: number;
  questions: number;
  specs: string[];
  summary: Array<Record<string, unknown> & { reduce: string; accuracy: number; after_prefill: number }>;
  results: Array<Record<string, unknown> & { line: number; reduce: string; answer: string; correct: boolean }>;
}

function readReport(file: string): Report {
  return JSON.parse(readFileSync(file, 'utf8')) as Report;
}

/** The table's rows as cells, by the header's column names. */
function tableRows(text: string): Array<Record<string, string>> {
  // Cells are at least two spaces apart; a value such as `69.3 MFLOPs` has one inside.
  const [header, ...rows] = text.trimEnd().split('\n').map((line) => line.trim().split(/\s{2,}/));
  return rows.map((cells) => Object.fromEntries(header!.map((name, i) => [name, cells[i] ?? ''])));
}

test('accuracy counts exactly the lines whose answer matches, by the scoring rules', () => {
  const q = {
    colour: 'What colour is the biggest shape?',
    count: 'How many rings are there?',
    describe: 'Describe the image.',
  };
  const answers = {
    first: askAnswer(MODEL, 'shapes', q.colour, 6),
    second: askAnswer(MODEL, 'rings', q.count, 6),
    described: askAnswer(MODEL, 'stripes', q.describe, 6),
    short: askAnswer(MODEL, 'rings', q.describe, 2),
  };
  const file = dataFile([
    // right: the whole answer, as ask gave it
    { image: 'images/shapes-64x40.png', question: q.colour, answers: ['zebra', answers.first], kind: 'colour' },
    // right through the first-word rule, with other capitals and punctuation
    { image: 'images/rings-90x72.png', question: q.count, answers: [`${aWordOf(answers.second).toUpperCase()}!`] },
    // wrong
    { image: 'images/shapes-64x40.png', question: q.colour, answers: ['not what it says'], kind: 'colour' },
    '',
    // right: one of its words is mentioned
    { image: 'images/stripes-45x70.png', question: q.describe, must_mention: [aWordOf(answers.described)], kind: 'caption' },
    // wrong: one phrase of two is not there
    {
      image: 'images/stripes-45x70.png',
      question: q.describe,
      must_mention: [aWordOf(answers.described), 'qqqq'],
      kind: 'caption',
    },
    // a line's max_tokens wins over --max-tokens; right
    { id: 7, image: 'images/rings-90x72.png', question: q.describe, answers: [answers.short], max_tokens: 2 },
  ]);
  // Line 2 is right only through the first-word rule: the answer is more than its first word.
  assert.is(aWordOf(answers.second), normalise(answers.second).split(' ')[0]);
  assert.is.not(normalise(answers.second), aWordOf(answers.second));

  const json = join(file, '..', 'report.json');
  const result = runCli(['eval', '--model', MODEL, '--max-tokens', '6', '--json', json, file]);
  assert.is(result.code, 0, result.stderr);
  const [row, ...others] = tableRows(result.stdout);
  assert.is(others.length, 0, result.stdout);
  assert.is(row!.reduce, 'none');
  assert.is(row!.correct, '4/6');
  assert.is(row!.accuracy, '66.7%');
  assert.is(row!.relative_accuracy, '1.00');
  assert.is(row!.after_prefill, '144.0');
  assert.match(result.stderr, /^6 answers \(6 questions under 1 spec\) in \d+s\n$/);

  const report = readReport(json);
  assert.equal(
    report.results.map((r) => [r.line, r.correct]),
    [
      [1, true],
      [2, true],
      [3, false],
      [5, true],
      [6, false],
      [7, true],
    ],
  );
  assert.equal(
    report.results.map((r) => r.answer),
    [answers.first, answers.second, answers.first, answers.described, answers.described, answers.short],
  );
  assert.is(report.results[5]!.id, 7);
  assert.ok((report.results[5]!.stats as { generated_tokens: number }).generated_tokens <= 2);
  assert.is(report.summary[0]!.accuracy, 4 / 6);
});

test('--json holds the run, a summary per spec and every answer with its stats', () => {
  const file = dataFile([
    { image: 'images/shapes-64x40.png', question: 'What is this?', answers: ['x'], kind: 'a' },
    { image: 'images/rings-90x72.png', question: 'What is this?', must_mention: ['y'] },
  ]);
  const json = join(file, '..', 'report.json');
  const reduce = ['--reduce', 'fastv:k=1,keep=40', '--reduce', 'none'];
  const result = runCli(['eval', '--model', MODEL, '--max-tokens', '2', ...reduce, '--json', json, file]);
  assert.is(result.code, 0, result.stderr);
  const report = readReport(json);
  assert.equal(Object.keys(report), ['data', 'model', 'max_tokens', 'questions', 'specs', 'summary', 'results']);
  assert.is(report.data, file);
  assert.is(report.model, MODEL);
  assert.is(report.max_tokens, 2);
  assert.is(report.questions, 2);
  assert.equal(report.specs, ['fastv:k=1,keep=40', 'none']);
  for (const summary of report.summary) {
    assert.equal(Object.keys(summary), [
      'reduce',
      'lines',
      'correct',
      'accuracy',
      'relative_accuracy',
      'after_encoder',
      'after_prefill',
      'equal_tokens',
      'flops_prefill',
      'flops_ratio',
      'ms_prefill',
      'by_kind',
    ]);
  }
  const [fastv, none] = report.summary;
  assert.is(fastv!.after_prefill, 40);
  assert.is(none!.after_prefill, 144);
  assert.is(none!.flops_ratio, 1);
  // The baseline is `none` even when it comes second.
  assert.is(fastv!.flops_ratio, (fastv!.flops_prefill as number) / (none!.flops_prefill as number));
  assert.ok((fastv!.flops_ratio as number) < 1);
  assert.is(fastv!.equal_tokens, 92); // the two layers see 144, then 40
  assert.equal(fastv!.by_kind, [
    { kind: 'a', lines: 1, correct: 0, accuracy: 0 },
    { kind: null, lines: 1, correct: 0, accuracy: 0 },
  ]);
  // Each question under every spec before the next question.
  assert.equal(
    report.results.map((r) => [r.line, r.reduce]),
    [
      [1, 'fastv:k=1,keep=40'],
      [1, 'none'],
      [2, 'fastv:k=1,keep=40'],
      [2, 'none'],
    ],
  );
  assert.equal(Object.keys(report.results[0]!), [
    'line',
    'image',
    'question',
    'kind',
    'answers',
    'reduce',
    'answer',
    'correct',
    'finish_reason',
    'stats',
  ]);
  assert.equal(report.results[2]!.must_mention, ['y']);
  assert.is(report.results[2]!.kind, null);
  assert.is((report.results[0]!.stats as { reduce: string }).reduce, 'fastv:k=1,keep=40');
  // Nothing right, so there is no accuracy to compare with.
  assert.is(fastv!.relative_accuracy, null);
  const rows = tableRows(result.stdout);
  assert.equal(
    rows.map((row) => [row.reduce, row.correct, row.accuracy, row.relative_accuracy, row.after_prefill]),
    [
      ['fastv:k=1,keep=40', '0/2', '0.0%', '-', '40.0'],
      ['none', '0/2', '0.0%', '-', '144.0'],
    ],
  );
});

test('two reductions on the reduce fixture: one row each, kept tokens as asked, a plot and kinds', async () => {
  const question = 'What is in this picture?';
  const plain = askAnswer(REDUCE_MODEL, 'rings', question, 4);
  const reduced = askAnswer(REDUCE_MODEL, 'shapes', question, 4, 'fastv:keep=8');
  const file = dataFile([
    { image: 'images/rings-90x72.png', question, answers: [plain], kind: 'plain' },
    { image: 'images/shapes-64x40.png', question, answers: [reduced], kind: 'reduced' },
    { image: 'images/stripes-45x70.png', question, answers: ['nothing like it'], kind: 'plain' },
  ]);
  const plot = join(file, '..', 'accuracy.png');
  const json = join(file, '..', 'report.json');
  const args = ['eval', '--model', REDUCE_MODEL, '--max-tokens', '4', '--reduce', 'none', '--reduce', 'fastv:keep=8'];
  const result = runCli([...args, '--by-kind', '--plot', plot, '--json', json, file]);
  assert.is(result.code, 0, result.stderr);

  const report = readReport(json);
  const answerOf = (line: number, reduce: string) =>
    report.results.find((r) => r.line === line && r.reduce === reduce)!.answer;
  assert.is(answerOf(1, 'none'), plain);
  assert.is(answerOf(2, 'fastv:keep=8'), reduced);
  // Each answer scored by the rules: lines 1 and 2 are right at least under the spec their
  // accepted answer came from; line 3 is wrong under both.
  const expected = (reduce: string) => [
    matchesAnswer(answerOf(1, reduce), [plain]),
    matchesAnswer(answerOf(2, reduce), [reduced]),
    false,
  ];
  assert.is(expected('none')[0], true);
  assert.is(expected('fastv:keep=8')[1], true);
  for (const reduce of ['none', 'fastv:keep=8']) {
    const flags = report.results.filter((r) => r.reduce === reduce).map((r) => r.correct);
    assert.equal(flags, expected(reduce), reduce);
  }
  const correct = (reduce: string) => expected(reduce).filter(Boolean).length;

  const [tableText, kindText] = result.stdout.split('\n\n');
  const rows = tableRows(tableText!);
  assert.equal(
    rows.map((row) => [row.reduce, row.correct, row.after_prefill]),
    [
      ['none', `${correct('none')}/3`, '144.0'],
      ['fastv:keep=8', `${correct('fastv:keep=8')}/3`, '8.0'],
    ],
  );
  assert.is(rows[1]!.relative_accuracy, (correct('fastv:keep=8') / correct('none')).toFixed(2));
  assert.ok(Number(rows[1]!.flops_ratio) < 1, rows[1]!.flops_ratio);
  for (const r of report.results) {
    assert.is((r.stats as { after_prefill: number }).after_prefill, r.reduce === 'none' ? 144 : 8);
  }

  const percent = (hits: boolean[]) => `${((hits.filter(Boolean).length / hits.length) * 100).toFixed(1)}%`;
  const plainLines = (reduce: string) => [expected(reduce)[0]!, expected(reduce)[2]!];
  assert.equal(tableRows(kindText!), [
    { kind: 'plain', lines: '2', none: percent(plainLines('none')), 'fastv:keep=8': percent(plainLines('fastv:keep=8')) },
    { kind: 'reduced', lines: '1', none: percent([expected('none')[1]!]), 'fastv:keep=8': '100.0%' },
  ]);

  const meta = await sharp(plot).metadata();
  assert.is(meta.format, 'png');
  assert.is(meta.width, PLOT_WIDTH);
  assert.is(meta.height, PLOT_HEIGHT);
  // Something was drawn: the picture is not one flat colour.
  const { channels } = await sharp(plot).stats();
  assert.ok(channels.some((channel) => channel.min < 128), 'the plot is blank');
});

test('a malformed line fails before the model loads, with exit code 2 and its line number', () => {
  const file = dataFile([
    { image: 'images/shapes-64x40.png', question: 'Q?', answers: ['a'] },
    { image: 'images/shapes-64x40.png', question: 'Q?', answers: ['a'] },
    '{"image": "images/shapes-64x40.png", "question": "Q?", answers: ["a"]}',
  ]);
  // A folder without a model: loading it would fail with exit code 3.
  const nowhere = tempDir();
  const result = runCli(['eval', '--model', nowhere, file]);
  assert.is(result.code, 2, result.stderr);
  assert.match(errorLine(result), new RegExp(`^glimpse: ${file} line 3: not valid JSON`));

  const missing = dataFile([{ image: 'images/gone.png', question: 'Q?', answers: ['a'] }]);
  const gone = runCli(['eval', '--model', nowhere, missing]);
  assert.is(gone.code, 2);
  assert.is(errorLine(gone), `glimpse: ${missing} line 1: image images/gone.png not found`);
});

test('option mistakes are usage errors found before anything is read', () => {
  const nowhere = join(tempDir(), 'nothing');
  const usage = (args: string[]) => {
    const result = runCli(['eval', '--model', nowhere, ...args, join(nowhere, 'data.jsonl')]);
    assert.is(result.code, 1, result.stderr);
    return errorLine(result);
  };
  assert.match(usage(['--reduce', 'tome:r=8']), /^glimpse: unknown reduction method 'tome'/);
  assert.is(usage(['--reduce', 'none', '--reduce', 'none']), 'glimpse: --reduce none is given twice');
  assert.is(usage(['--plot', 'acc.svg']), 'glimpse: --plot acc.svg: the file name must end in .png');
  assert.match(usage(['--json', join(nowhere, 'out', 'r.json')]), /--json .*: cannot write into/);
  assert.match(usage(['--limit', '0']), /^glimpse: .*--limit/);
});

test('--limit takes the first questions only', () => {
  const line = { image: 'images/shapes-64x40.png', question: 'What is this?', answers: ['x'] };
  const file = dataFile([line, line, line]);
  const result = runCli(['eval', '--model', MODEL, '--max-tokens', '1', '--limit', '2', file]);
  assert.is(result.code, 0, result.stderr);
  assert.is(tableRows(result.stdout)[0]!.correct, '0/2');
});

test('Ctrl-C stops the run with exit code 130, printing and writing nothing more', async () => {
  const line = { image: 'images/rings-90x72.png', question: 'Describe it.', answers: ['x'] };
  const file = dataFile(Array.from({ length: 200 }, () => line));
  const json = join(file, '..', 'report.json');
  let interrupted = false;
  // Without a terminal the progress is a line every 10 answers: interrupt at the first.
  const stderr = sink((text) => {
    if (!interrupted && text.includes('answers')) {
      interrupted = true;
      process.emit('SIGINT', 'SIGINT');
    }
  });
  const stdout = sink();
  const code = await main(['eval', '--model', MODEL, '--max-tokens', '8', '--json', json, file], { stdout, stderr });
  assert.ok(interrupted, stderr.text);
  assert.is(code, 130);
  assert.is(stdout.text, '');
  assert.not.ok(existsSync(json));
  assert.match(stderr.text, /^10\/200 answers, [^\n]*\n$/);
});

test.run();

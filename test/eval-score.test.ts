// The scoring rules of `glimpse eval`, as pure functions.

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { matchesAnswer, mentionsAll, normalise } from '../src/eval/score.js';

test('normalise: lowercase, whitespace collapsed and trimmed, end punctuation and a leading article dropped', () => {
  assert.is(normalise('  The  Red\ttriangle.\n'), 'red triangle');
  assert.is(normalise('Red!?'), 'red');
  assert.is(normalise('An owl'), 'owl');
  assert.is(normalise('a  cat ...'), 'cat');
  // Only one article, only at the start, only as a word of its own.
  assert.is(normalise('The a team'), 'a team');
  assert.is(normalise('Theatre'), 'theatre');
  assert.is(normalise('apple'), 'apple');
  assert.is(normalise('A'), 'a');
  assert.is(normalise('the.'), 'the');
  // Punctuation inside stays.
  assert.is(normalise('3.5 cm.'), '3.5 cm');
  assert.is(normalise('red, blue.'), 'red, blue');
  assert.is(normalise('...'), '');
});

test('normalise strips punctuation at the end only', () => {
  assert.is(normalise('"Blue."'), '"blue');
  assert.is(normalise('(red)'), '(red');
});

test('an answer matches when it or its first word equals an accepted answer', () => {
  assert.ok(matchesAnswer('Red.', ['red']));
  assert.ok(matchesAnswer('The red one', ['red one']));
  assert.ok(matchesAnswer('red triangle', ['Red Triangle!']));
  assert.ok(matchesAnswer('Red, I think.', ['red']));
  assert.ok(matchesAnswer('Yes, it is.', ['no', 'yes']));
  assert.ok(matchesAnswer('A. The first one', ['a']));
  // The leading article goes before the first word is taken.
  assert.ok(matchesAnswer('A red triangle', ['red']));
  assert.not.ok(matchesAnswer('Dark red', ['red']));
  assert.not.ok(matchesAnswer('reddish', ['red']));
  assert.not.ok(matchesAnswer('', ['red']));
  assert.not.ok(matchesAnswer('It is red', ['red']));
});

test('must_mention: every phrase, normalised, as whole words of the normalised output', () => {
  const output = 'A red triangle next to a Blue  circle, on grey.';
  assert.ok(mentionsAll(output, ['red triangle', 'blue circle']));
  assert.ok(mentionsAll(output, ['The red triangle', 'grey.']));
  assert.not.ok(mentionsAll(output, ['red triangle', 'green square']));
  // Word-bounded: "red" inside "bored" or "tri" inside "triangle" do not count.
  assert.not.ok(mentionsAll('I am bored', ['red']));
  assert.not.ok(mentionsAll(output, ['tri']));
  assert.ok(mentionsAll('red-ish, red.', ['red']));
  // Phrases are matched literally, not as patterns.
  assert.ok(mentionsAll('costs $5 (approx.) now', ['$5 (approx.']));
  assert.not.ok(mentionsAll('costs 505 now', ['5.5']));
  assert.ok(mentionsAll('déjà vu', ['Déjà vu']));
  assert.not.ok(mentionsAll('déjàvu', ['déjà']));
});

test.run();

// How `glimpse eval` decides whether an answer is right. Both the model's answer and the
// accepted answers are normalised the same way first, so that "The red." and "red" agree.

/** Articles dropped from the start of a normalised text. */
const LEADING_ARTICLE = /^(?:a|an|the) /;
/** Any run of punctuation (Unicode category P: `.`, `!`, `"`, `)`…) at the end. */
const TRAILING_PUNCTUATION = /\p{P}+$/u;

/**
 * Lowercase, whitespace runs collapsed to one space, trimmed, punctuation at the end and one
 * leading article (`a`, `an`, `the`) removed: `"  The  Red triangle.\n"` → `"red triangle"`.
 */
export function normalise(text: string): string {
  const collapsed = text.toLowerCase().replace(/\s+/g, ' ').trim();
  return collapsed.replace(TRAILING_PUNCTUATION, '').trimEnd().replace(LEADING_ARTICLE, '');
}

/**
 * Right when the normalised answer, or its first word (normalised too, so `"Red, I think"`
 * counts as `"red"`), equals one of the normalised accepted answers.
 */
export function matchesAnswer(answer: string, accepted: readonly string[]): boolean {
  const wanted = new Set(accepted.map(normalise));
  const whole = normalise(answer);
  const firstWord = normalise(whole.split(' ')[0] ?? '');
  return wanted.has(whole) || (firstWord !== '' && wanted.has(firstWord));
}

/**
 * Right when every phrase, normalised, occurs in the normalised output as whole words: not
 * preceded or followed by a letter or digit, so `"red"` is not found in `"bored"`.
 */
export function mentionsAll(output: string, phrases: readonly string[]): boolean {
  const text = normalise(output);
  return phrases.every((phrase) => wholeWords(normalise(phrase)).test(text));
}

function wholeWords(phrase: string): RegExp {
  const escaped = phrase.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
  return new RegExp(`(?<![\\p{L}\\p{N}])${escaped}(?![\\p{L}\\p{N}])`, 'u');
}

// Which images `caption` takes: folders, wildcard patterns, plain paths, and shards.

import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { expandGlob, segmentMatcher } from '../src/caption/glob.js';
import { selectImages } from '../src/caption/select.js';
import { inShard, parseShard, shardOf } from '../src/caption/shard.js';
import { GlimpseError } from '../src/errors.js';
import { removeTempDirs, tempDir } from './helpers/files.js';

test.after.each(removeTempDirs);

/** A folder tree of empty files (content does not matter for selection). */
function tree(files: string[]): string {
  const root = tempDir('glimpse-select-');
  for (const file of files) {
    mkdirSync(join(root, file, '..'), { recursive: true });
    writeFileSync(join(root, file), '');
  }
  return root;
}

const TREE = [
  'a.png',
  'B.JPG',
  'c.txt',
  '.hidden.png',
  '._a.png',
  'photo?.png',
  'sub/d.webp',
  'sub/e.png',
  'sub/deeper/f.tiff',
  'sub/deeper/g.gif',
  '.cache/h.png',
  'other/i.jpeg',
];

function relativeTo(root: string, paths: string[]): string[] {
  return paths.map((path) => relative(root, path));
}

test('segmentMatcher: * and ? within a name, other characters literal, dot names only by a dot', () => {
  const matches = (segment: string, name: string): boolean => segmentMatcher(segment)(name);
  assert.ok(matches('*.png', 'a.png'));
  assert.ok(matches('img_??.jp*', 'img_07.jpeg'));
  assert.not.ok(matches('img_??.jp*', 'img_7.jpeg'));
  assert.not.ok(matches('*.png', 'apng'), '. is literal');
  assert.ok(matches('a+(b)[c].png', 'a+(b)[c].png'), 'regex characters are literal');
  assert.not.ok(matches('*.png', '.hidden.png'));
  assert.ok(matches('.*.png', '.hidden.png'));
  assert.not.ok(matches('*.png', 'a.PNG'), 'case-sensitive, like the file system');
});

test('expandGlob: ** spans any number of folders, none included, but not hidden ones', () => {
  const root = tree(TREE);
  const expand = (pattern: string): string[] => relativeTo(root, expandGlob(join(root, pattern))).sort();
  assert.equal(expand('**/*.png'), ['a.png', 'photo?.png', 'sub/e.png']);
  assert.equal(expand('sub/**'), ['sub/d.webp', 'sub/deeper/f.tiff', 'sub/deeper/g.gif', 'sub/e.png']);
  assert.equal(expand('*/deeper/?.*'), ['sub/deeper/f.tiff', 'sub/deeper/g.gif']);
  assert.equal(expand('*/*'), ['other/i.jpeg', 'sub/d.webp', 'sub/e.png']);
  assert.equal(expand('.*/*.png'), ['.cache/h.png']);
  assert.equal(expand('nowhere/**/*.png'), []);
});

test('expandGlob works on relative patterns', () => {
  const root = tree(['x/one.png', 'x/two.png']);
  const previous = process.cwd();
  process.chdir(root);
  try {
    assert.equal(expandGlob('x/*.png').sort(), ['x/one.png', 'x/two.png']);
    assert.equal(expandGlob('*/one.p?g'), ['x/one.png']);
  } finally {
    process.chdir(previous);
  }
});

test('selectImages: a folder gives its images by extension, sorted; --recursive adds sub-folders', () => {
  const root = tree(TREE);
  assert.equal(relativeTo(root, selectImages([root], { recursive: false })), ['B.JPG', 'a.png', 'photo?.png']);
  assert.equal(relativeTo(root, selectImages([`${root}/`], { recursive: true })), [
    'B.JPG',
    'a.png',
    'other/i.jpeg',
    'photo?.png',
    'sub/d.webp',
    'sub/deeper/f.tiff',
    'sub/deeper/g.gif',
    'sub/e.png',
  ]);
});

test('selectImages: patterns keep images only; named files are taken as they are, once', () => {
  const root = tree(TREE);
  const select = (...args: string[]): string[] =>
    relativeTo(root, selectImages(args.map((arg) => join(root, arg)), { recursive: false }));
  assert.equal(select('**/*'), [
    'B.JPG',
    'a.png',
    'other/i.jpeg',
    'photo?.png',
    'sub/d.webp',
    'sub/deeper/f.tiff',
    'sub/deeper/g.gif',
    'sub/e.png',
  ]);
  // An existing name is a file, even with a wildcard character in it.
  assert.equal(select('photo?.png'), ['photo?.png']);
  // Named explicitly, a non-image or missing file is kept, to be reported as failed.
  assert.equal(select('c.txt', 'missing.png', 'a.png', '.', './a.png'), [
    'B.JPG',
    'a.png',
    'c.txt',
    'missing.png',
    'photo?.png',
  ]);
});

test('selectImages: a symlinked folder is not entered by --recursive, a symlinked image is taken', () => {
  const root = tree(['real/a.png']);
  symlinkSync(join(root, 'real'), join(root, 'real', 'loop'));
  symlinkSync(join(root, 'real', 'a.png'), join(root, 'link.png'));
  assert.equal(relativeTo(root, selectImages([root], { recursive: true })), ['link.png', 'real/a.png']);
  const matched = selectImages([join(root, '**/*.png')], { recursive: false });
  assert.equal(relativeTo(root, matched), ['link.png', 'real/a.png']);
});

test('parseShard accepts I/N with 0 <= I < N only', () => {
  assert.equal(parseShard('0/1'), { index: 0, count: 1 });
  assert.equal(parseShard('6/7'), { index: 6, count: 7 });
  for (const bad of ['1/1', '0/0', '-1/2', '1', '1/2/3', 'a/b', '1.5/3', ' 0/2']) {
    let caught: unknown;
    try {
      parseShard(bad);
    } catch (error) {
      caught = error;
    }
    assert.instance(caught, GlimpseError, bad);
    assert.is((caught as GlimpseError).kind, 'usage');
  }
});

test('shards: every path in exactly one, decided by the SHA-256 of the path alone', () => {
  const paths = Array.from({ length: 1000 }, (_, index) => `photos/${index}.jpg`);
  const count = 7;
  const shards = Array.from({ length: count }, (_, index) => paths.filter((path) => inShard(path, { index, count })));
  assert.equal(shards.flat().sort(), [...paths].sort());
  const sizes = shards.map((shard) => shard.length);
  assert.ok(
    sizes.every((size) => size > 100 && size < 190),
    `roughly balanced: ${sizes.join(', ')}`,
  );
  // `printf a.png | sha256sum` starts 7f071235805f: its first 48 bits, mod 7.
  assert.is(shardOf('a.png', 7), 0x7f071235805f % 7);
});

test.run();

// Expands wildcard patterns against the file system, for patterns that reach glimpse
// unexpanded (quoted on the command line, or written in a script). `*` matches any run of
// characters within one path segment, `?` one character, and a `**` segment any number of
// folders, none included. As in the shell, a name starting with a dot is matched only by a
// segment that starts with a dot, and `**` does not descend into symlinked folders (so a
// link cycle cannot make it loop).

import { type Dirent, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { GlimpseError } from '../errors.js';

export function isGlob(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

/** Every file that `pattern` matches, each once, in no particular order. */
export function expandGlob(pattern: string): string[] {
  const absolute = pattern.startsWith('/');
  const segments = pattern.split('/').filter((segment) => segment !== '');
  // `dir/**` means every file below dir, as `dir/**/*` does.
  if (segments.at(-1) === '**') segments.push('*');
  let base = absolute ? '/' : '';
  while (segments.length > 1 && !isGlob(segments[0] ?? '')) base = join(base, segments.shift() ?? '');
  const found = new Set<string>();
  walk(base, segments, found);
  return [...found];
}

function walk(base: string, segments: string[], found: Set<string>): void {
  const [segment, ...rest] = segments;
  if (segment === undefined) {
    if (isFile(base)) found.add(base);
    return;
  }
  if (segment === '**') {
    walk(base, rest, found);
    for (const entry of listIfFolder(base)) {
      if (entry.isDirectory() && !entry.name.startsWith('.')) walk(join(base, entry.name), segments, found);
    }
    return;
  }
  if (!isGlob(segment)) {
    walk(join(base, segment), rest, found);
    return;
  }
  const matches = segmentMatcher(segment);
  for (const entry of listIfFolder(base)) {
    if (matches(entry.name)) walk(join(base, entry.name), rest, found);
  }
}

/** A test for one path segment, e.g. `IMG_????.jp*`. */
export function segmentMatcher(segment: string): (name: string) => boolean {
  const source = [...segment]
    .map((char) => {
      if (char === '*') return '.*';
      if (char === '?') return '.';
      return char.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
    })
    .join('');
  const regex = new RegExp(`^${source}$`, 'su');
  const matchesDotNames = segment.startsWith('.');
  return (name) => (matchesDotNames || !name.startsWith('.')) && regex.test(name);
}

/** The entries of `dir`; nothing when it does not exist or is not a folder. */
function listIfFolder(dir: string): Dirent[] {
  try {
    return readdirSync(dir === '' ? '.' : dir, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw new GlimpseError('input', `${dir}: cannot list folder (${code ?? (error as Error).message})`);
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

// Turns the PATH arguments of `caption` into the sorted list of images to caption.
// A folder contributes the images in it (by file extension), a wildcard pattern the images
// it matches, and any other argument is taken as an image file as it stands: if it is
// missing or not an image, that shows up as a failed record rather than vanishing.

import { type Dirent, readdirSync, statSync } from 'node:fs';
import { join, normalize } from 'node:path';

import { GlimpseError } from '../errors.js';
import { hasImageExtension } from '../media/image.js';
import { expandGlob, isGlob } from './glob.js';

export interface SelectOptions {
  /** Look through sub-folders of folder arguments too. */
  recursive: boolean;
}

/**
 * The images named by `args`, each once, sorted by code unit (so the order is the same
 * on every machine and locale). Paths keep the form they were given in, normalised.
 */
export function selectImages(args: readonly string[], options: SelectOptions): string[] {
  const selected = new Set<string>();
  for (const arg of args) {
    for (const path of expandArgument(arg, options)) selected.add(path);
  }
  return [...selected].sort();
}

function expandArgument(arg: string, options: SelectOptions): string[] {
  const stats = statOrUndefined(arg);
  if (stats?.isDirectory()) return imagesInFolder(normalize(arg), options.recursive);
  // An existing file wins over a pattern reading of its name (`photo?.png` may be real).
  if (stats === undefined && isGlob(arg)) return expandGlob(arg).filter(hasImageExtension);
  return [normalize(arg)];
}

/** Names starting with a dot are skipped: hidden files, and macOS `._name.jpg` metadata. */
function imagesInFolder(dir: string, recursive: boolean): string[] {
  const images: string[] = [];
  for (const entry of listFolder(dir)) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    // Symlinked folders are not entered, so a link cycle cannot make the walk loop.
    if (entry.isDirectory()) {
      if (recursive) images.push(...imagesInFolder(path, true));
    } else if ((entry.isFile() || entry.isSymbolicLink()) && hasImageExtension(entry.name)) {
      images.push(path);
    }
  }
  return images;
}

function listFolder(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new GlimpseError('input', `${dir}: cannot list folder (${code ?? (error as Error).message})`);
  }
}

function statOrUndefined(path: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

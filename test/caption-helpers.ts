// Shared by the caption tests: folders of fixture images, the fast caption arguments, and
// reading JSONL output strictly (every line whole and valid).

import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import * as assert from 'uvu/assert';

import { FIXTURES, ROOT } from './helpers/cli.js';
import { tempDir } from './helpers/files.js';

export const MODEL = join(FIXTURES, 'models', 'tiny-llava-mha');
export const FIXTURE_IMAGES = ['rings-90x72.png', 'shapes-64x40.png', 'stripes-45x70.png'].map((name) =>
  join(FIXTURES, 'images', name),
);
/** Four tokens keep each caption to a few milliseconds on the tiny model. */
export const FAST = ['--model', MODEL, '--max-tokens', '4'];

/** A fresh folder holding `files` (relative path → fixture image to copy there). */
export function imageFolder(files: Record<string, string>): string {
  const dir = tempDir('glimpse-caption-');
  for (const [relative, source] of Object.entries(files)) {
    const target = join(dir, relative);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(source, target);
  }
  return dir;
}

/** `count` images named img-000.png, img-001.png, ..., cycling through the fixtures. */
export function manyImages(count: number): { dir: string; sources: Map<string, string> } {
  const files: Record<string, string> = {};
  for (let index = 0; index < count; index += 1) {
    files[`img-${String(index).padStart(3, '0')}.png`] = FIXTURE_IMAGES[index % FIXTURE_IMAGES.length] ?? '';
  }
  const dir = imageFolder(files);
  return { dir, sources: new Map(Object.entries(files).map(([name, source]) => [join(dir, name), source])) };
}

export type Row = Record<string, unknown> & { path: string };

/** Parses JSONL, failing the test on an unfinished last line or a line that is not JSON. */
export function parseJsonl(text: string): Row[] {
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), `output ends with an unfinished line: ${JSON.stringify(text.slice(-80))}`);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as Row);
}

export function readJsonl(file: string): Row[] {
  return parseJsonl(readFileSync(file, 'utf8'));
}

/** The CLI as a child process, for tests that must stop it while it runs. */
export interface Exit {
  code: number | null;
  signal: string | null;
}

export function spawnCli(args: string[]): { child: ChildProcess; exit: Promise<Exit> } {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: '1' };
  delete env.GLIMPSE_MODEL;
  const child = spawn(process.execPath, ['bin/glimpse.js', ...args], { cwd: ROOT, env, stdio: 'ignore' });
  const exit = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, exit };
}

/** Resolves once `file` holds at least `lines` complete lines (polling, the run is fast). */
export async function waitForLines(file: string, lines: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // not created yet
    }
    if (text.split('\n').length - 1 >= lines) return;
    if (Date.now() > deadline) throw new Error(`${file} did not reach ${lines} lines in ${timeoutMs} ms`);
    await new Promise((wake) => setTimeout(wake, 2));
  }
}

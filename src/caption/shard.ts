// `--shard I/N`: which images one of N workers takes. An image belongs to shard
// SHA-256(path) mod N, from its path alone (the path as written in its record), so N
// workers given the same PATH arguments partition the images exactly, and an image keeps
// its shard when files are added to or removed from the set between runs, which keeps
// `--resume` of each worker's own output file correct.

import { createHash } from 'node:crypto';

import { GlimpseError } from '../errors.js';

export interface Shard {
  index: number;
  count: number;
}

export function parseShard(text: string): Shard {
  const match = /^(\d+)\/(\d+)$/.exec(text);
  const index = Number(match?.[1]);
  const count = Number(match?.[2]);
  if (!match || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new GlimpseError(
      'usage',
      `Invalid value for --shard: expected I/N with 0 <= I < N, e.g. 0/4 (got "${text}") (see 'glimpse --help')`,
    );
  }
  return { index, count };
}

/** The shard, 0 to `count - 1`, that `path` belongs to. */
export function shardOf(path: string, count: number): number {
  const digest = createHash('sha256').update(path, 'utf8').digest();
  // 48 bits keep the modulo bias negligible and stay exact in a double.
  return digest.readUIntBE(0, 6) % count;
}

export function inShard(path: string, shard: Shard): boolean {
  return shardOf(path, shard.count) === shard.index;
}

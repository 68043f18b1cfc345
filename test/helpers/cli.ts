// Runs the built CLI (bin/glimpse.js) as a user would, in a controlled environment.

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('../fixtures', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  /** Kill the CLI after this long (default 2 minutes); a killed run throws. */
  timeoutMs?: number;
}

/** Variables that would change which model is picked or how output looks. */
const ISOLATED_ENV = ['GLIMPSE_MODEL', 'HF_HOME', 'HF_HUB_CACHE', 'XDG_CACHE_HOME', 'FORCE_COLOR'];

export function runCli(args: string[], options: CliOptions = {}): CliResult {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: '1' };
  for (const name of ISOLATED_ENV) delete env[name];
  Object.assign(env, options.env);
  const result = spawnSync(process.execPath, ['bin/glimpse.js', ...args], {
    cwd: ROOT,
    env,
    input: options.input ?? '',
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 120_000,
  });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The CLI's error contract: exactly one `glimpse: ...` line on stderr, nothing on stdout. */
export function errorLine(result: CliResult): string {
  const lines = result.stderr.split('\n');
  if (lines.length !== 2 || lines[1] !== '' || !lines[0]?.startsWith('glimpse: ')) {
    throw new Error(`expected one 'glimpse: ' line on stderr, got ${JSON.stringify(result.stderr)}`);
  }
  if (result.stdout !== '') throw new Error(`expected no stdout, got ${JSON.stringify(result.stdout)}`);
  return lines[0];
}

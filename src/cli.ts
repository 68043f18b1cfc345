// Entry point: parses the command line and runs a command, turning every failure into
// one `glimpse: <message>` line on stderr and an exit code.

import { readFileSync } from 'node:fs';

import { Builtins, Cli, type BaseContext, type Command } from 'clipanion';

import { AskCommand } from './commands/ask.js';
import { CaptionCommand } from './commands/caption.js';
import { EvalCommand } from './commands/eval.js';
import { InspectCommand } from './commands/inspect.js';
import { VideoCommand } from './commands/video.js';
import { EXIT_CODES, GlimpseError, oneLine, reportError } from './errors.js';

function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

export function createCli(enableColors: boolean): Cli<BaseContext> {
  const cli = new Cli<BaseContext>({
    binaryLabel: 'glimpse',
    binaryName: 'glimpse',
    binaryVersion: packageVersion(),
    enableColors,
  });
  cli.register(AskCommand);
  cli.register(CaptionCommand);
  cli.register(EvalCommand);
  cli.register(InspectCommand);
  cli.register(VideoCommand);
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  return cli;
}

export async function main(argv: string[], context: Partial<BaseContext> = {}): Promise<number> {
  const fullContext = { ...Cli.defaultContext, ...context };
  try {
    // clipanion's default colour choice ignores whether stdout is a terminal.
    const toTerminal = fullContext.stdout === process.stdout && process.stdout.isTTY === true;
    const cli = createCli(toTerminal && process.stdout.hasColors());
    let command: Command<BaseContext>;
    try {
      command = cli.process(argv, fullContext);
    } catch (error) {
      throw new GlimpseError('usage', `${syntaxErrorReason(error, argv)} (see 'glimpse --help')`);
    }
    // clipanion's run() prints help for --help and fills in the command's context;
    // GlimpseCommand reports its own failures, so nothing reaches clipanion's error printer.
    return await cli.run(command, fullContext);
  } catch (error) {
    return reportError(error, fullContext.stderr);
  }
}

/** clipanion appends usage lines to syntax errors; its first line says what is wrong. */
function syntaxErrorReason(error: unknown, argv: string[]): string {
  const firstLine = oneLine((error as Error).message.split('\n')[0] ?? '').replace(/\.$/, '');
  return firstLine.startsWith('Command not found') ? `unknown command: ${argv[0] ?? ''}` : firstLine;
}

/**
 * Process-wide safety nets for the command-line entry point: a reader that went away
 * (`glimpse ask ... | head -1`) ends the run quietly, and an error escaping every handler
 * still ends as one line rather than a stack trace.
 */
export function installProcessHandlers(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT_CODES.ok);
    process.stderr.write(`glimpse: cannot write output: ${oneLine(error.message)}\n`);
    process.exit(EXIT_CODES.internal);
  });
  const lastResort = (error: unknown): void => {
    process.exit(reportError(error, process.stderr));
  };
  process.on('uncaughtException', lastResort);
  process.on('unhandledRejection', lastResort);
}

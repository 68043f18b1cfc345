// Every failure ends as one line on stderr and an exit code chosen by its kind.

export type ErrorKind = 'usage' | 'input' | 'model' | 'cancelled' | 'internal';

export const EXIT_CODES: Readonly<Record<ErrorKind | 'ok', number>> = {
  ok: 0,
  usage: 1,
  input: 2,
  model: 3,
  internal: 4,
  // What a shell reports for a process ended by SIGINT (128 + 2).
  cancelled: 130,
};

export class GlimpseError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string) {
    super(message);
    this.name = 'GlimpseError';
    this.kind = kind;
  }
}

/** The `code` the native binding puts on its errors, e.g. `GLIMPSE_INPUT`. */
const NATIVE_KINDS: Readonly<Record<string, ErrorKind>> = {
  GLIMPSE_USAGE: 'usage',
  GLIMPSE_INPUT: 'input',
  GLIMPSE_MODEL: 'model',
  GLIMPSE_CANCELLED: 'cancelled',
  GLIMPSE_INTERNAL: 'internal',
};

/** Classifies anything thrown; unknown errors are internal (a bug), never silently usage. */
export function toGlimpseError(error: unknown): GlimpseError {
  if (error instanceof GlimpseError) return error;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const kind = typeof code === 'string' ? NATIVE_KINDS[code] : undefined;
    // clipanion's UsageError and UnknownSyntaxError both carry `clipanion.type: 'usage'`.
    const clipanionType = (error as { clipanion?: { type?: unknown } }).clipanion?.type;
    if (kind) return new GlimpseError(kind, error.message);
    if (clipanionType === 'usage') return new GlimpseError('usage', error.message);
    return new GlimpseError('internal', `internal error: ${error.message}`);
  }
  return new GlimpseError('internal', `internal error: ${String(error)}`);
}

/** Squeezes a possibly multi-line message (clipanion, libvips) into one line. */
export function oneLine(message: string): string {
  return message
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .join(' ')
    .replace(/\s+/g, ' ');
}

/** Writes `glimpse: <message>` and returns the exit code for the error. */
export function reportError(error: unknown, stderr: NodeJS.WritableStream): number {
  const failure = toGlimpseError(error);
  if (failure.kind !== 'cancelled') stderr.write(`glimpse: ${oneLine(failure.message)}\n`);
  return EXIT_CODES[failure.kind];
}

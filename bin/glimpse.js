#!/usr/bin/env node
// npm's `glimpse` command: runs the compiled CLI in dist/.

let cli;
try {
  cli = await import('../dist/cli.js');
} catch (error) {
  const reason = error?.code === 'ERR_MODULE_NOT_FOUND'
      ? "not built yet: run 'npm run build'"
      : String(error?.message ?? error).split('\n')[0];
  process.stderr.write(`glimpse: ${reason}\n`);
  process.exit(4);
}
cli.installProcessHandlers();
process.exitCode = await cli.main(process.argv.slice(2));

#!/usr/bin/env node
import type * as Program from './cli/program.js';

// The CLI's argument parser, commander, is an optional peer dependency (library users who never
// run lk-memory do not install it), so it is loaded here, with a message when it is missing.
let program: typeof Program;
try {
  program = await import('./cli/program.js');
} catch (error) {
  const code = (error as { code?: unknown }).code;
  if (code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes("'commander'")) {
    process.stderr.write(
      'lk-memory: the command line needs the package commander, which is not installed: run `npm install commander` ' +
        '(or `npx -p commander -p livekit-user-memory lk-memory ...`)\n',
    );
    process.exit(2);
  }
  throw error;
}

const code = await program.runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  readStdin: async () => {
    let text = '';
    for await (const chunk of process.stdin) text += chunk;
    return text;
  },
});
process.exitCode = code;

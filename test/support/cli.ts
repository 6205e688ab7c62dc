import { runCli } from '../../scripts/cli/program.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** lk-memory run in this process with exactly the environment given (and standard input, when given). */
export async function cli(args: string[], env: NodeJS.ProcessEnv, stdin?: string): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    env,
    readStdin: stdin === undefined ? undefined : async () => stdin,
  });
  return { code, stdout, stderr };
}

/** A usage error as lk-memory must report it: exactly one non-empty line on stderr, nothing on stdout. */
export function oneLine(result: CliResult): string {
  const lines = result.stderr.split('\n');
  if (lines.length !== 2 || lines[1] !== '' || lines[0]!.trim() === '') {
    throw new Error(`expected exactly one line on stderr, got ${JSON.stringify(result.stderr)} (exit ${result.code})`);
  }
  return lines[0]!;
}

/** `url` with a password in its userinfo and another in its query: what must never be printed. */
export function withPasswords(url: string, userinfoSecret: string, querySecret: string): string {
  const u = new URL(url);
  u.password = userinfoSecret;
  u.searchParams.set('password', querySecret);
  u.searchParams.set('sslmode', 'disable');
  return u.toString();
}

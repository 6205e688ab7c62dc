import { type Command, InvalidArgumentError } from 'commander';
import {
  MemoryError,
  checkCategory,
  checkDatabaseUrl,
  checkKey,
  checkValue,
  identityToUserId,
  loadMemoryConfig,
  openMemory,
  type MemoryStore,
  type OpenMemoryOptions,
} from '../../memory/index.js';
import { EXIT } from './exit-codes.js';
import { humanText } from './format.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Standard input, for secrets given as NAME=- (absent: none available). */
  readStdin?: () => Promise<string>;
}

export interface GlobalOptions {
  databaseUrl?: string;
  dataDir?: string;
  namespace?: string;
}

/** The process's exit code, set by a command that ends without an error (retrieve's "not found"). */
export class Outcome {
  code: number = EXIT.OK;
}

export function parseLimit(text: string): number {
  const limit = Number(text);
  if (!/^\d+$/.test(text) || limit < 1 || limit > 10_000)
    throw new InvalidArgumentError('expected a whole number from 1 to 10000');
  return limit;
}

export interface Input {
  identity: string;
  category?: string;
  key?: string;
  value?: string;
}

/** Human output on stdout: terminal-active characters of stored or typed text shown escaped. */
export function say(io: CliIo, text: string): void {
  io.stdout(humanText(text));
}

/**
 * Node decodes argv as UTF-8 lossily: the bytes \xff and \xfe both arrive as U+FFFD, and two
 * different identities would become one user. A U+FFFD typed on purpose cannot be told apart
 * from that, so the command line refuses it in names (the library accepts it).
 */
export function checkArgvText(text: string, what: string): void {
  if (text.includes('\uFFFD')) {
    throw new MemoryError(
      what === 'identity' ? 'INVALID_IDENTITY' : 'INVALID_KEY',
      `the ${what} is not valid UTF-8 on the command line (it contains U+FFFD, which is also what invalid bytes become): pass it as UTF-8`,
    );
  }
}

/** --database-url checked like DATABASE_URL, naming the option (exit 2 before anything connects). */
function checkGlobals(command: Command): GlobalOptions {
  const globals = command.optsWithGlobals<GlobalOptions>();
  if (globals.databaseUrl) checkDatabaseUrl(globals.databaseUrl, '--database-url');
  return globals;
}

/** Bad input exits 2 whatever state the backend is in: check it all before opening anything. */
export function precheck(command: Command, io: CliIo, input: Input): void {
  checkGlobals(command);
  const config = loadMemoryConfig(io.env);
  checkArgvText(input.identity, 'identity');
  if (input.key !== undefined) checkArgvText(input.key, 'key');
  identityToUserId(input.identity, command.optsWithGlobals<GlobalOptions>().namespace ?? config.namespace);
  if (input.category !== undefined) checkCategory(input.category);
  if (input.key !== undefined) checkKey(input.key);
  if (input.value !== undefined) checkValue(input.value, config.maxValueBytes);
}

export async function withMemory<T>(
  command: Command,
  io: CliIo,
  fn: (memory: MemoryStore) => Promise<T>,
  extra: OpenMemoryOptions = {},
): Promise<T> {
  const globals = checkGlobals(command);
  const memory = await openMemory({
    ...extra,
    env: io.env,
    databaseUrl: globals.databaseUrl,
    dataDir: globals.dataDir,
    namespace: globals.namespace,
    // A short-lived command uses a running worker's socket when there is one, and otherwise opens
    // the folder itself without serving it.
    embeddedRole: 'auto',
    serve: false,
    maxConnections: 1,
    component: 'cli',
  });
  try {
    return await fn(memory);
  } finally {
    await memory.close();
  }
}

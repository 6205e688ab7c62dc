import { Command, InvalidArgumentError } from 'commander';
import {
  checkCategory,
  checkKey,
  checkValue,
  identityToUserId,
  loadMemoryConfig,
  openMemory,
  type MemoryStore,
  type OpenMemoryOptions,
} from '../../memory/index.js';
import { EXIT } from './exit-codes.js';

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
  if (!/^\d+$/.test(text) || limit < 1 || limit > 10_000) throw new InvalidArgumentError('expected a whole number from 1 to 10000');
  return limit;
}

export interface Input {
  identity: string;
  category?: string;
  key?: string;
  value?: string;
}

/** Bad input exits 2 whatever state the backend is in: check it all before opening anything. */
export function precheck(command: Command, io: CliIo, input: Input): void {
  const config = loadMemoryConfig(io.env);
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
  const globals = command.optsWithGlobals<GlobalOptions>();
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


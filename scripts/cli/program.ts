import { Command, CommanderError } from 'commander';
import { InvalidArgumentError } from 'commander';
import {
  DNS_NAMESPACE,
  MemoryError,
  checkQuery,
  identityToUserId,
  isMemoryError,
  loadMemoryConfig,
  redactText,
  secretsOf,
} from '../../memory/index.js';
import { registerAdminCommands } from './admin-commands.js';
import { registerConsentCommands } from './consent-commands.js';
import {
  Outcome,
  checkArgvText,
  parseLimit,
  precheck,
  say,
  withMemory,
  type CliIo,
  type GlobalOptions,
} from './context.js';
import { registerDoctor } from './doctor.js';
import { readImportFile, registerExportCommands } from './export-commands.js';
import { EXIT, describeError, exitCodeFor } from './exit-codes.js';
import { humanText, memoryJson, memoryLine } from './format.js';
import { registerSettingsCommands } from './settings-commands.js';

export type { CliIo } from './context.js';

function parseSearchLimit(text: string): number {
  const limit = Number(text);
  if (!/^\d+$/.test(text) || limit < 1 || limit > 100)
    throw new InvalidArgumentError('expected a whole number from 1 to 100');
  return limit;
}

export function buildProgram(io: CliIo, outcome: Outcome): Command {
  const program = new Command('lk-memory')
    .description(
      'Per-user memory for LiveKit agents. Uses PostgreSQL when DATABASE_URL is set, else the embedded database in MEMORY_DATA_DIR (default .data/). ' +
        'Identities and keys must be valid UTF-8: the command line refuses U+FFFD in them, since invalid bytes arrive as U+FFFD and two different identities would become one.',
    )
    // The environment is read by openMemory from io.env (not by commander from process.env), so
    // that the CLI run in-process by the tests sees only the environment it is given.
    .option('--database-url <url>', 'PostgreSQL connection string (default: $DATABASE_URL)')
    .option('--data-dir <dir>', 'embedded database folder (default: $MEMORY_DATA_DIR, else .data)')
    .option(
      '--namespace <uuid>',
      `UUIDv5 namespace for user ids (default: $MEMORY_UUID_NAMESPACE, else ${DNS_NAMESPACE})`,
    )
    // Commander's own usage errors ("unknown command", with a "Did you mean" on a second line) are
    // folded into one line, like every other error of lk-memory.
    .configureOutput({
      writeOut: io.stdout,
      // A command group run without its command (`lk-memory`, `lk-memory settings`) makes
      // commander print the whole help on stderr; a usage error is one line naming the problem.
      writeErr: (text) => {
        const usage = /^Usage: (\S+(?: [a-z][\w-]*)*) \[options\] \[command\]/.exec(text);
        io.stderr(usage ? `lk-memory: ${usage[1]} needs a command: run \`${usage[1]} --help\` to list them\n` : text);
      },
      outputError: (text, write) => write(`${humanText(text.trim().replace(/\s*\n\s*/g, ' '))}\n`),
    })
    .exitOverride();

  program
    .command('uuid')
    .description('print the user id (UUIDv5) of an identity; needs no database')
    .argument('<identity>', 'participant identity, e.g. alice@example.com')
    .option('--namespace <uuid>', 'namespace UUID (default: the DNS namespace, as Python uuid.NAMESPACE_DNS)')
    .action((identity: string, _options, command: Command) => {
      const { namespace } = command.optsWithGlobals<GlobalOptions>();
      checkArgvText(identity, 'identity');
      io.stdout(`${identityToUserId(identity, namespace ?? io.env.MEMORY_UUID_NAMESPACE ?? DNS_NAMESPACE)}\n`);
    });

  program
    .command('store')
    .description("store a value under a category and key in an identity's memory (provisions the user if new)")
    .argument('<identity>', 'participant identity')
    .argument('<category>', 'upper-case category, e.g. FACT or PREFERENCE')
    .argument('<key>', 'key, 1 to 256 characters')
    .argument('<value>', 'the text to remember')
    .action(async (identity: string, category: string, key: string, value: string, _options, command: Command) => {
      precheck(command, io, { identity, category, key, value });
      await withMemory(command, io, async (memory) => {
        const handle = memory.forIdentity(identity);
        try {
          await memory.provision(identity);
        } catch (error) {
          // Unreachable: the write goes to the journal, whose replay provisions the user first.
          if (!isMemoryError(error, 'BACKEND_UNAVAILABLE') && !isMemoryError(error, 'TIMEOUT')) throw error;
        }
        const receipt = await handle.store(category, key, value);
        say(
          io,
          receipt.savedTo === 'journal'
            ? `saved ${category}/${key} for ${identity} (${handle.user.id}) locally: the database is unreachable; it will be synced (lk-memory sync)\n`
            : `stored ${category}/${key} for ${identity} (${handle.user.id})\n`,
        );
      });
    });

  program
    .command('retrieve')
    .description('print the value stored under a category and key; prints nothing and exits 1 when there is none')
    .argument('<identity>', 'participant identity')
    .argument('<category>', 'upper-case category')
    .argument('<key>', 'key')
    .action(async (identity: string, category: string, key: string, _options, command: Command) => {
      precheck(command, io, { identity, category, key });
      const value = await withMemory(command, io, (memory) => memory.forIdentity(identity).retrieve(category, key));
      if (value === null) {
        outcome.code = EXIT.NOT_FOUND;
        return;
      }
      io.stdout(value.endsWith('\n') ? value : `${value}\n`);
    });

  program
    .command('list')
    .description(
      "list an identity's memories, most recently updated first (tab-separated: category, key, value, updated)",
    )
    .argument('<identity>', 'participant identity')
    .option('--category <category>', 'only this category')
    .option('--limit <n>', 'at most this many (1 to 10000)', parseLimit, 100)
    .option('--json', 'print JSON')
    .action(
      async (identity: string, options: { category?: string; limit: number; json?: boolean }, command: Command) => {
        precheck(command, io, { identity, category: options.category });
        const memories = await withMemory(command, io, (memory) =>
          memory.forIdentity(identity).list({ category: options.category, limit: options.limit }),
        );
        if (options.json) {
          io.stdout(`${JSON.stringify(memories.map(memoryJson), null, 2)}\n`);
        } else {
          // memoryLine escapes every field; nothing else of the line is user text.
          for (const memory of memories) io.stdout(`${memoryLine(memory)}\n`);
        }
      },
    );

  program
    .command('search')
    .description(
      "search an identity's memories by words, best first (tab-separated: category, key, value, updated, score); typos and partial words match too",
    )
    .argument('<identity>', 'participant identity')
    .argument('<query>', 'words to look for, in any language')
    .option('--category <category>', 'only this category')
    .option('--limit <n>', 'at most this many (1 to 100)', parseSearchLimit, 10)
    .option('--json', 'print JSON')
    .action(
      async (
        identity: string,
        query: string,
        options: { category?: string; limit: number; json?: boolean },
        command: Command,
      ) => {
        precheck(command, io, { identity, category: options.category });
        checkQuery(query);
        const matches = await withMemory(command, io, (memory) =>
          memory.forIdentity(identity).search(query, { category: options.category, limit: options.limit }),
        );
        if (options.json) {
          io.stdout(
            `${JSON.stringify(
              matches.map((m) => ({ ...memoryJson(m), score: m.score })),
              null,
              2,
            )}\n`,
          );
        } else {
          for (const match of matches) io.stdout(`${memoryLine(match)}\t${match.score.toFixed(6)}\n`);
        }
      },
    );

  program
    .command('import')
    .description(
      'store the memories of a JSON file for an identity, all or none: an array of {"category", "key", "value"}, or a document of ' +
        '`lk-memory export` (its memories with their expiry; expired ones are skipped; settings and pending writes are not restored). ' +
        'Every entry is checked like a store first, and one bad entry means nothing is written',
    )
    .argument('<identity>', 'participant identity')
    .argument(
      '<file>',
      'JSON file, e.g. [{"category":"FACT","key":"home_city","value":"Lisbon"}], or an export document',
    )
    .option('--allow-other-identity', 'import an export document made for another identity (by default refused)')
    .action(async (identity: string, file: string, options: { allowOtherIdentity?: boolean }, command: Command) => {
      precheck(command, io, { identity });
      const plan = readImportFile(file);
      if (plan.documentIdentity !== undefined && plan.documentIdentity !== identity && !options.allowOtherIdentity) {
        throw new MemoryError(
          'INVALID_OPTION',
          `${file} is the export of ${JSON.stringify(plan.documentIdentity)}, not of ${JSON.stringify(identity)}: nothing was written; add --allow-other-identity to import it for ${JSON.stringify(identity)}`,
        );
      }
      const entries = plan.entries;
      // Every entry is checked like a store before anything is opened: a bad file exits 2 and
      // writes nothing, whatever the backend's state.
      entries.forEach((entry, i) => {
        try {
          precheck(command, io, { identity, category: entry.category, key: entry.key, value: entry.value });
        } catch (error) {
          if (error instanceof MemoryError) throw new MemoryError(error.code, `${file}: entry ${i}: ${error.message}`);
          throw error;
        }
      });
      const stored = await withMemory(command, io, async (memory) => {
        await memory.provision(identity);
        return memory.forIdentity(identity).storeMany(entries);
      });
      say(
        io,
        `imported ${stored} memor${stored === 1 ? 'y' : 'ies'} for ${identity} (${identityToUserId(identity, command.optsWithGlobals<GlobalOptions>().namespace ?? loadMemoryConfig(io.env).namespace)})\n`,
      );
      const { settings, pendingJournal } = plan.notRestored;
      const notes = [
        plan.expired ? `${plan.expired} expired memor${plan.expired === 1 ? 'y' : 'ies'} skipped` : '',
        settings ? `${settings} settings row(s) not restored (exports mask secrets: save settings again)` : '',
        pendingJournal ? `${pendingJournal} pending journal write(s) of the export not restored` : '',
      ].filter(Boolean);
      if (notes.length > 0) say(io, `note: ${notes.join('; ')}\n`);
    });

  program
    .command('forget')
    .description('delete the memory under a category and key')
    .argument('<identity>', 'participant identity')
    .argument('<category>', 'upper-case category')
    .argument('<key>', 'key')
    .action(async (identity: string, category: string, key: string, _options, command: Command) => {
      precheck(command, io, { identity, category, key });
      const deleted = await withMemory(command, io, (memory) => memory.forIdentity(identity).forget(category, key));
      say(
        io,
        deleted
          ? `forgot ${category}/${key} for ${identity}\n`
          : `nothing stored under ${category}/${key} for ${identity}\n`,
      );
    });

  program
    .command('migrate')
    .description(
      'apply pending schema migrations (openMemory does this too; use it to prepare a database ahead of time)',
    )
    .action(async (_options, command: Command) => {
      await withMemory(
        command,
        io,
        async (memory) => {
          const result = await memory.migrate();
          say(io, `database: ${redactText(memory.backend.location, secretsOf(io.env))}\n`);
          io.stdout(
            result.applied.length > 0
              ? `applied ${result.applied.join(', ')}; schema is at ${result.current}\n`
              : `nothing to apply; schema is at ${result.current}\n`,
          );
        },
        { migrate: false },
      );
    });

  registerSettingsCommands(program, io, outcome);
  registerAdminCommands(program, io, outcome);
  registerExportCommands(program, io, outcome);
  registerConsentCommands(program, io);
  registerDoctor(program, io, outcome);
  return program;
}

/** Run the CLI with arguments (without `node script`); returns the exit code. */
export async function runCli(argv: string[], rawIo: CliIo): Promise<number> {
  // Whatever reaches stderr is for a person: no credential (of the environment, or of a URL given
  // with --database-url) and no terminal-active character, on every path.
  const secrets = secretsOf(
    rawIo.env,
    argv.map((a) => a.replace(/^--database-url=/, '')).filter((a) => /^postgres(ql)?:/i.test(a)),
  );
  let wroteError = false;
  const io: CliIo = {
    ...rawIo,
    stderr: (text) => {
      wroteError = true;
      rawIo.stderr(humanText(redactText(text, secrets)));
    },
  };
  const outcome = new Outcome();
  const program = buildProgram(io, outcome);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return outcome.code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end through here with exit code 0.
      if (error.exitCode === 0) return EXIT.OK;
      // Commander printed its own errors; one thrown by an action (an argument parser) was not.
      if (!wroteError) io.stderr(`lk-memory: ${error.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')}\n`);
      return EXIT.BAD_INPUT;
    }
    io.stderr(`${describeError(error)}\n`);
    return exitCodeFor(error);
  }
}

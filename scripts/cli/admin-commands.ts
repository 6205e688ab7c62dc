import { type Command } from 'commander';
import { MemoryError, loadMemoryConfig, type Memory, type Profile } from '../../memory/index.js';
import { clockTime } from '../../memory/journal/clock.js';
import type { JournalOp, JournalProblem } from '../../memory/journal/journal.js';
import { importOptional } from '../../memory/optional-dependency.js';
import { precheck, say, withMemory, type CliIo, type Outcome } from './context.js';
import { EXIT } from './exit-codes.js';
import { memoryJson, memoryLine } from './format.js';
import { settingsLines, settingsView } from './settings-commands.js';

function describePending(op: JournalOp): string {
  if (op.op === 'settings') {
    return `settings (tenant ${op.tenant})${op.config ? ' config' : ''}${Object.keys(op.secrets).length ? ` secrets ${Object.keys(op.secrets).join(', ')} (encrypted)` : ''} at ${clockTime(op.clock).toISOString()}`;
  }
  return `${op.op} ${op.category}/${JSON.stringify(op.key)}${op.op === 'store' ? ` = ${JSON.stringify(op.value)}` : ''} at ${clockTime(op.clock).toISOString()}`;
}

function inspectText(
  profile: Profile,
  memories: Memory[],
  location: string,
  pending: JournalOp[],
  journalDir: string | undefined,
  problems: JournalProblem[],
): string {
  const lines = [`identity:  ${profile.identity}`, `user id:   ${profile.userId}`];
  if (!profile.user) {
    lines.push('profile:   not provisioned (no row in memory_users; the first session will create it)');
  } else {
    const u = profile.user;
    lines.push(
      `profile:   created ${u.createdAt.toISOString()}, last seen ${u.lastSeenAt.toISOString()}, ${u.sessionCount} session(s), ` +
        (u.authUserId ? `linked to Supabase Auth user ${u.authUserId}` : 'not linked to a Supabase Auth user'),
    );
  }
  lines.push(
    `consent:   ${profile.consent.recorded ? `${profile.consent.recorded} (recorded ${profile.consent.at?.toISOString() ?? ''})` : 'not recorded (MEMORY_CONSENT_DEFAULT applies)'}`,
  );
  lines.push(`memories:  ${profile.memoryCount}`);
  for (const m of memories) lines.push(`  ${memoryLine(m)}`);
  if (profile.settings.length === 0) lines.push('settings:  none');
  for (const s of profile.settings)
    lines.push(...settingsLines(s).map((l, i) => (i === 0 ? `settings:  ${l}` : `           ${l}`)));
  lines.push('where it lives:');
  lines.push(
    `  database ${location}: memory_users ${profile.user ? 1 : 0} row, memories ${profile.memoryCount} rows, ` +
      `memory_settings ${profile.settings.length} rows, memory_audit_log ${profile.audit.length}${profile.audit.length === 20 ? '+' : ''} entries`,
  );
  if (pending.length === 0) lines.push(`  local journal${journalDir ? ` ${journalDir}` : ''}: nothing waiting`);
  else {
    lines.push(
      `  local journal ${journalDir}: ${pending.length} write(s) waiting for the database (run \`lk-memory sync\`)`,
    );
    for (const op of pending) lines.push(`    ${describePending(op)}`);
  }
  // Lines that failed validation belong to nobody we can name (their user id is not trusted): they
  // are shown for the whole folder, never served, and `sync` moves them to <file>.rejected.
  if (problems.length > 0) {
    lines.push(
      `  local journal: ${problems.length} line(s) or file(s) set aside, never served or applied (\`lk-memory sync\` moves lines to <file>.rejected):`,
    );
    for (const p of problems.slice(0, 20))
      lines.push(`    ${p.kind}: ${p.file}${p.line ? `:${p.line}` : ''}: ${p.reason}`);
  }
  if (profile.audit.length > 0) {
    lines.push('recent audit:');
    for (const a of profile.audit.slice(0, 10))
      lines.push(`  ${a.at.toISOString()} ${a.action} by ${a.component}${a.tenant ? ` (tenant ${a.tenant})` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

export function registerAdminCommands(program: Command, io: CliIo, outcome: Outcome): void {
  program
    .command('inspect')
    .description(
      'everything stored for an identity and where it lives: profile, memories, settings (secrets masked), audit',
    )
    .argument('<identity>', 'participant identity')
    .option('--json', 'print JSON')
    .action(async (identity: string, options: { json?: boolean }, command: Command) => {
      precheck(command, io, { identity });
      await withMemory(command, io, async (memory) => {
        const profile = await memory.profile(identity);
        const memories = await memory.forIdentity(identity).list({ limit: 1000 });
        const pending = await memory.pendingFor(identity);
        const problems = memory.journal ? (await memory.journal.inspect()).problems : [];
        if (!options.json) {
          // Stored text (identity, config, pending values) may hold terminal escapes: shown escaped.
          say(io, inspectText(profile, memories, memory.backend.location, pending, memory.journal?.dir, problems));
          return;
        }
        io.stdout(
          `${JSON.stringify(
            {
              identity,
              userId: profile.userId,
              profile: profile.user,
              consent: profile.consent,
              memories: memories.map(memoryJson),
              settings: profile.settings.map(settingsView),
              audit: profile.audit,
              locations: {
                database: {
                  backend: memory.backend.location,
                  memoryUsers: profile.user ? 1 : 0,
                  memories: profile.memoryCount,
                  settings: profile.settings.length,
                },
                journal: memory.journal?.dir ?? null,
                pendingOutsideDatabase: pending.map((op) =>
                  op.op === 'settings'
                    ? { ...op, secrets: Object.keys(op.secrets), at: clockTime(op.clock).toISOString() }
                    : { ...op, at: clockTime(op.clock).toISOString() },
                ),
                journalSetAside: problems,
              },
            },
            null,
            2,
          )}\n`,
        );
      });
    });

  program
    .command('link')
    .description(
      'link an identity to a Supabase Auth user, so that user can read and change this memory under Row Level Security',
    )
    .argument('<identity>', 'participant identity')
    .argument('[auth-user-id]', 'the Supabase Auth user id (Authentication > Users)')
    .option('--unlink', 'remove the link')
    .option(
      '--create-auth-user',
      'create the Auth user with auth.admin.createUser, its id being the UUIDv5 (needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY)',
    )
    .action(
      async (
        identity: string,
        authUserId: string | undefined,
        options: { unlink?: boolean; createAuthUser?: boolean },
        command: Command,
      ) => {
        precheck(command, io, { identity });
        const given = [authUserId !== undefined, Boolean(options.unlink), Boolean(options.createAuthUser)].filter(
          Boolean,
        ).length;
        if (given !== 1)
          throw new MemoryError(
            'INVALID_OPTION',
            'give exactly one of: an auth user id, --unlink, or --create-auth-user',
          );
        const supabase = loadMemoryConfig(io.env).supabase;
        if (options.createAuthUser && !supabase) {
          throw new MemoryError(
            'INVALID_CONFIG',
            '--create-auth-user needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY',
          );
        }
        await withMemory(command, io, async (memory) => {
          await memory.provision(identity);
          const target = options.unlink
            ? null
            : options.createAuthUser
              ? await (
                  await importOptional(
                    '@supabase/supabase-js',
                    'creating a Supabase Auth user',
                    () => import('../../memory/supabase-auth.js'),
                  )
                ).ensureAuthUser(supabase!, memory.userIdFor(identity), identity)
              : authUserId!;
          const { previous } = await memory.link(identity, target);
          say(
            io,
            target
              ? `linked ${identity} (${memory.userIdFor(identity)}) to auth user ${target}${previous && previous !== target ? ` (was ${previous})` : ''}\n`
              : `unlinked ${identity}${previous ? ` from auth user ${previous}` : ' (it was not linked)'}\n`,
          );
        });
      },
    );

  program
    .command('sync')
    .description(
      'replay the local journal now: writes made while the database was unreachable, by this or by stopped processes',
    )
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      await withMemory(
        command,
        io,
        async (memory) => {
          const before = memory.journal ? (await memory.journal.pending()).length : 0;
          const report = await memory.sync();
          if (options.json) {
            io.stdout(
              `${JSON.stringify({ pendingBefore: before, ...report, journal: memory.journal?.dir ?? null }, null, 2)}\n`,
            );
          } else {
            io.stdout(
              `journal ${memory.journal?.dir ?? '(none)'}: ${before} pending; moved to the database ${report.applied}, ` +
                `already superseded by newer writes ${report.older}, still waiting ${report.remaining}` +
                `${report.erased ? `, dropped ${report.erased} of users erased after they were made` : ''}` +
                `${report.skippedFiles ? `, ${report.skippedFiles} file(s) of running processes left to them` : ''}\n`,
            );
            for (const p of report.problems) io.stderr(`set aside (${p.kind}): ${p.file}:${p.line}: ${p.reason}\n`);
          }
          if (report.remaining > 0 || report.problems.length > 0) outcome.code = EXIT.FAILED;
        },
        { backgroundSync: false },
      );
    });

  program
    .command('rotate-key')
    .description(
      're-encrypt every stored secret under MEMORY_ENCRYPTION_KEY, reading old ones with the keys in MEMORY_ENCRYPTION_PREVIOUS_KEYS (comma-separated)',
    )
    .action(async (_options, command: Command) => {
      await withMemory(command, io, async (memory) => {
        const report = await memory.rotateSecrets();
        io.stdout(`re-encrypted ${report.rotated} settings row(s) under key ${report.keyId}\n`);
        for (const failure of report.failed)
          io.stderr(`not re-encrypted: user ${failure.userId} tenant ${failure.tenant}: ${failure.reason}\n`);
        if (report.failed.length > 0) outcome.code = EXIT.FAILED;
      });
    });
}

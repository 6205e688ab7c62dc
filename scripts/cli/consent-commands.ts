import { InvalidArgumentError, type Command } from 'commander';
import { identityToUserId, loadMemoryConfig, type MemoryConsent } from '../../memory/index.js';
import { precheck, say, withMemory, type CliIo, type GlobalOptions } from './context.js';

function parseConsent(text: string): 'granted' | 'denied' {
  if (text !== 'granted' && text !== 'denied') throw new InvalidArgumentError('expected granted or denied');
  return text;
}

function parseBatch(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 10_000)
    throw new InvalidArgumentError('expected a whole number from 1 to 10000');
  return n;
}

const MEANING: Record<MemoryConsent, string> = {
  granted: 'memory on',
  denied: 'memory off at their request: nothing is stored for them',
  ask: 'not asked yet (MEMORY_CONSENT_DEFAULT=ask): nothing is stored until they agree',
};

/** lk-memory consent and lk-memory purge: the memory lifecycle (consent, retention). */
export function registerConsentCommands(program: Command, io: CliIo): void {
  program
    .command('consent')
    .description(
      "show or record an identity's memory consent; `denied` erases everything stored for them and stores nothing more until `granted` (audited)",
    )
    .argument('<identity>', 'participant identity')
    .argument('[state]', 'granted or denied (omit to show the current state)', parseConsent)
    .option('--json', 'print JSON')
    .action(
      async (
        identity: string,
        state: 'granted' | 'denied' | undefined,
        options: { json?: boolean },
        command: Command,
      ) => {
        precheck(command, io, { identity });
        const userId = identityToUserId(
          identity,
          command.optsWithGlobals<GlobalOptions>().namespace ?? loadMemoryConfig(io.env).namespace,
        );
        await withMemory(command, io, async (memory) => {
          if (state === undefined) {
            const profile = await memory.profile(identity);
            const consent = memory.effectiveConsent(profile.consent.recorded);
            if (options.json) {
              io.stdout(
                `${JSON.stringify({ identity, userId, consent, recorded: profile.consent.recorded, at: profile.consent.at })}\n`,
              );
              return;
            }
            const source = profile.consent.recorded
              ? `recorded ${profile.consent.at?.toISOString() ?? ''}`.trim()
              : 'the deployment default, MEMORY_CONSENT_DEFAULT';
            say(io, `consent for ${identity} (${userId}): ${consent} (${source}); ${MEANING[consent]}\n`);
            return;
          }
          const change = await memory.setConsent(identity, state);
          if (options.json) {
            io.stdout(`${JSON.stringify({ identity, userId, ...change })}\n`);
            return;
          }
          say(
            io,
            state === 'denied'
              ? `consent for ${identity} (${userId}): denied; erased ${change.erased} memor${change.erased === 1 ? 'y' : 'ies'}; nothing more is stored until \`lk-memory consent ${identity} granted\`\n`
              : `consent for ${identity} (${userId}): granted (was ${change.previous ?? 'the deployment default'})\n`,
          );
        });
      },
    );

  program
    .command('purge')
    .description(
      'remove expired memories (their own expiry, or older than MEMORY_RETENTION_DAYS) and tombstones older than any journal entry, in short batches (audited per user); expired memories are never served even before this runs',
    )
    .option('--batch-size <n>', 'rows per statement, each its own transaction (1 to 10000)', parseBatch, 1000)
    .option('--json', 'print JSON (the totals) instead of progress')
    .action(async (options: { batchSize: number; json?: boolean }, command: Command) => {
      await withMemory(command, io, async (memory) => {
        const retention = memory.lifecycle.retentionDays;
        if (!options.json) {
          say(io, `purging expired memories${retention ? ` and memories not updated for ${retention} days` : ''}...\n`);
        }
        const report = await memory.purge({
          batchSize: options.batchSize,
          onBatch: (r) => {
            if (!options.json && (r.memories > 0 || r.tombstones > 0))
              say(io, `  batch ${r.batches}: ${r.memories} memories, ${r.tombstones} tombstones so far\n`);
          },
        });
        if (options.json) {
          io.stdout(`${JSON.stringify({ ...report, retentionDays: retention })}\n`);
          return;
        }
        say(
          io,
          `removed ${report.memories} expired memor${report.memories === 1 ? 'y' : 'ies'} and ${report.tombstones} old tombstone${report.tombstones === 1 ? '' : 's'} in ${report.batches} batch${report.batches === 1 ? '' : 'es'}\n`,
        );
      });
    });
}

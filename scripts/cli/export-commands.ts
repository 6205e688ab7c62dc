import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { type Command } from 'commander';
import {
  EXPORT_FORMAT,
  MemoryError,
  parseExportDocument,
  type ErasureReport,
  type ExportDocument,
} from '../../memory/index.js';
import { parseUntrustedJson } from '../../memory/export-format.js';
import { precheck, say, withMemory, type CliIo, type Outcome } from './context.js';
import { EXIT } from './exit-codes.js';

/** Largest import file read (an export of 10,000 memories of the largest values is far below it). */
const MAX_IMPORT_BYTES = 512 * 1024 * 1024;

export interface ImportPlan {
  entries: Array<{ category: string; key: string; value: string; expiresAt?: Date }>;
  /** The identity the export document was made for (absent: a plain array). */
  documentIdentity?: string;
  /** Memories of the document that had expired already: not imported. */
  expired: number;
  /** Parts of a document import does not restore, with how many. */
  notRestored: { settings: number; pendingJournal: number };
}

/**
 * The file of `import`: a JSON array of {category, key, value} with string fields and nothing else,
 * or an export document (lk-memory export), checked whole against its schema. Untrusted: any
 * problem is INVALID_VALUE (exit 2) before anything is opened.
 */
export function readImportFile(file: string): ImportPlan {
  let text: string;
  try {
    const size = fs.statSync(file).size;
    if (size > MAX_IMPORT_BYTES) {
      throw new MemoryError('INVALID_VALUE', `${file} is ${size} bytes; import reads at most ${MAX_IMPORT_BYTES}`);
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (error instanceof MemoryError) throw error;
    throw new MemoryError('INVALID_VALUE', `${file} is not a readable JSON file: ${(error as Error).message}`);
  }
  const parsed = parseUntrustedJson(text, file);
  if (Array.isArray(parsed)) {
    const entries = parsed.map((entry: unknown, i) => {
      const fields = typeof entry === 'object' && entry !== null && !Array.isArray(entry) ? Object.keys(entry) : [];
      const e = entry as Record<string, unknown>;
      if (
        fields.length !== 3 ||
        typeof e.category !== 'string' ||
        typeof e.key !== 'string' ||
        typeof e.value !== 'string'
      ) {
        throw new MemoryError(
          'INVALID_VALUE',
          `${file}: entry ${i} must be an object with exactly the string fields category, key and value`,
        );
      }
      return { category: e.category, key: e.key, value: e.value };
    });
    return { entries, expired: 0, notRestored: { settings: 0, pendingJournal: 0 } };
  }
  if (typeof parsed !== 'object' || parsed === null || !('format' in parsed)) {
    throw new MemoryError(
      'INVALID_VALUE',
      `${file} must hold a JSON array of {"category", "key", "value"} objects, or an export document of lk-memory export ("format": "${EXPORT_FORMAT}")`,
    );
  }
  const doc = parseExportDocument(parsed, file);
  const now = Date.now();
  const live = doc.memories.filter((m) => m.expiresAt === null || Date.parse(m.expiresAt) > now);
  return {
    // A memory keeps its own expiry (expired ones were skipped above).
    entries: live.map((m) => ({
      category: m.category,
      key: m.key,
      value: m.value,
      ...(m.expiresAt === null ? {} : { expiresAt: new Date(m.expiresAt) }),
    })),
    documentIdentity: doc.identity,
    expired: doc.memories.length - live.length,
    notRestored: {
      settings: doc.settings.length,
      pendingJournal: doc.pendingJournal.length,
    },
  };
}

/**
 * Where `export --out` writes, checked before anything is opened: the folder must exist and be
 * writable, the path must not be a folder, and an existing file is replaced only with --force.
 */
function checkOut(out: string, force: boolean): string {
  const file = path.resolve(out);
  const dir = path.dirname(file);
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error('not a folder');
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (error) {
    throw new MemoryError(
      'INVALID_OPTION',
      `--out ${out}: cannot write in ${dir} (${(error as Error).message}): choose a folder you can write to`,
    );
  }
  const existing = fs.lstatSync(file, { throwIfNoEntry: false });
  if (existing?.isDirectory()) throw new MemoryError('INVALID_OPTION', `--out ${out} is a folder: give a file name`);
  if (existing && !force)
    throw new MemoryError('INVALID_OPTION', `--out ${out} exists: choose another name, or add --force to replace it`);
  return file;
}

/**
 * Write the whole document or nothing: a private temporary file (0600: an export is personal data)
 * in the same folder, fsynced, then renamed over the target.
 */
function writeAtomically(file: string, text: string): void {
  const temp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  try {
    const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      fs.writeFileSync(fd, text, 'utf8');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (error) {
    fs.rmSync(temp, { force: true });
    throw new MemoryError(
      'INVALID_OPTION',
      `could not write ${file} (${(error as Error).message}): nothing was written; choose another --out`,
    );
  }
}

function summary(doc: ExportDocument): string {
  return (
    `${doc.memories.length} memor${doc.memories.length === 1 ? 'y' : 'ies'}, ${doc.settings.length} settings row(s) (secrets masked), ` +
    `${doc.deletions.length} deletion(s), ${doc.audit.length} audit entr${doc.audit.length === 1 ? 'y' : 'ies'}, ` +
    `${doc.pendingJournal.length} pending journal write(s)`
  );
}

function erasureLines(report: ErasureReport): string[] {
  const d = report.database;
  const lines = [
    `erased ${report.identity} (${report.userId}) at ${report.erasedAt.toISOString()}`,
    `  database: user row ${d.user ? 1 : 0} (with its Auth link and consent), memories ${d.memories}, deletions ${d.tombstones}, ` +
      `settings ${d.settings}, embeddings ${d.embeddings}, audit entries ${d.audit}`,
  ];
  if (report.journal) {
    lines.push(
      `  local journal: ${report.journal.removed} pending write(s) removed, ${report.journal.rejectedRemoved} set-aside line(s) removed` +
        (report.journal.skippedFiles
          ? `; ${report.journal.skippedFiles} file(s) of running processes left to them (their replay drops this user's writes)`
          : ''),
    );
  }
  lines.push(
    '  kept: one audit record that an erasure happened, when and by which component, without user id or content',
  );
  return lines;
}

export function registerExportCommands(program: Command, io: CliIo, outcome: Outcome): void {
  program
    .command('export')
    .description(
      'everything stored about an identity as one JSON document (docs/export-format.md): user, consent, memories with times and expiry, ' +
        'deletions, settings (secrets masked), audit entries, pending journal writes; to stdout, or to --out; audited',
    )
    .argument('<identity>', 'participant identity')
    .option('--out <file>', 'write the document to this file (created 0600, written whole or not at all)')
    .option('--force', 'with --out: replace an existing file')
    .option('--json', 'with --out: print the summary as JSON')
    .action(async (identity: string, options: { out?: string; force?: boolean; json?: boolean }, command: Command) => {
      precheck(command, io, { identity });
      const out = options.out !== undefined ? checkOut(options.out, Boolean(options.force)) : undefined;
      const doc = await withMemory(command, io, (memory) => memory.exportUser(identity));
      const text = `${JSON.stringify(doc, null, 2)}\n`;
      if (out === undefined) {
        io.stdout(text);
        return;
      }
      writeAtomically(out, text);
      if (options.json) {
        io.stdout(
          `${JSON.stringify(
            {
              identity,
              userId: doc.userId,
              out,
              memories: doc.memories.length,
              settings: doc.settings.length,
              deletions: doc.deletions.length,
              audit: doc.audit.length,
              pendingJournal: doc.pendingJournal.length,
            },
            null,
            2,
          )}\n`,
        );
      } else say(io, `exported ${identity} (${doc.userId}) to ${out}: ${summary(doc)}\n`);
    });

  program
    .command('erase')
    .description(
      'erase an identity (right to be forgotten): user row, Auth link, consent, memories, deletions, settings, embeddings, audit entries ' +
        "and this host's pending journal writes, in one transaction; leaves one audit record without user id or content. " +
        'Without --yes it only prints what would be erased and exits 2',
    )
    .argument('<identity>', 'participant identity')
    .option('--yes', 'erase (without it: a dry run)')
    .option('--json', 'print JSON')
    .action(async (identity: string, options: { yes?: boolean; json?: boolean }, command: Command) => {
      precheck(command, io, { identity });
      await withMemory(command, io, async (memory) => {
        if (!options.yes) {
          const profile = await memory.profile(identity);
          const pending = await memory.pendingFor(identity);
          if (!profile.user && profile.audit.length === 0 && pending.length === 0) {
            throw new MemoryError(
              'USER_NOT_FOUND',
              `nothing is stored for ${JSON.stringify(identity)} (user id ${profile.userId}) in the database or in this host's journal: check the identity and the namespace (MEMORY_UUID_NAMESPACE)`,
            );
          }
          const plan = {
            identity,
            userId: profile.userId,
            erased: false,
            wouldErase: {
              user: profile.user !== null,
              memories: profile.memoryCount,
              settings: profile.settings.length,
              auditEntries: profile.audit.length,
              pendingJournal: pending.length,
            },
          };
          if (options.json) io.stdout(`${JSON.stringify(plan, null, 2)}\n`);
          else
            say(
              io,
              `would erase ${identity} (${profile.userId}): user row ${plan.wouldErase.user ? 1 : 0}, memories ${plan.wouldErase.memories}, ` +
                `settings ${plan.wouldErase.settings}, audit entries ${plan.wouldErase.auditEntries}${plan.wouldErase.auditEntries === 20 ? '+' : ''}, ` +
                `pending journal writes ${plan.wouldErase.pendingJournal}\n`,
            );
          io.stderr(
            'lk-memory: nothing was erased: run again with --yes to erase (it cannot be undone; export first)\n',
          );
          outcome.code = EXIT.BAD_INPUT;
          return;
        }
        const report = await memory.eraseUser(identity);
        if (options.json) io.stdout(`${JSON.stringify({ ...report, erased: true }, null, 2)}\n`);
        else say(io, `${erasureLines(report).join('\n')}\n`);
      });
    });
}

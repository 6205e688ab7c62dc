import { REJECTED_SUFFIX, SUFFIX, openPrivateFile, rewriteAtomically } from './files.js';
import type { JournalReader } from './reader.js';

/**
 * Erasure's side of the journal: one user's lines out of a file whose writer is this process or
 * dead (the caller holds its gate or lock). Everything else in the file stays exactly as it was.
 */

/**
 * Whether a line that did not decode (unauthenticated, invalid, torn) names the user. Such a line
 * is nobody's we can prove, but if it names the erased user it may hold their content, so it goes
 * too. The body's fields come in a fixed order (v, target, at, pid, op, userId, identity, ...), so
 * a line cut short after its first hundred bytes still names them.
 */
export function namesUser(text: string, userId: string, identity: string): boolean {
  return text.includes(`"userId":"${userId}"`) || text.includes(`"identity":${JSON.stringify(identity)}`);
}

/** Remove the user's entries (and undecodable lines naming them) from a journal file; returns how many entries. */
export async function removeUserFromFile(
  file: string,
  reader: JournalReader,
  userId: string,
  identity: string,
  beforeRewrite: () => Promise<void> = async () => {},
): Promise<number> {
  const read = await reader.read(file);
  if (read === 'missing' || 'unsafe' in read) return 0;
  const { parsed } = read;
  const removed = parsed.entries.filter((e) => e.op.userId === userId).length;
  const keptBad = parsed.bad.filter((b) => !namesUser(b.text, userId, identity));
  const keepTorn = parsed.torn && !namesUser(parsed.torn.text, userId, identity) ? parsed.torn : undefined;
  if (removed === 0 && keptBad.length === parsed.bad.length && keepTorn === parsed.torn) return 0;
  const lines = [
    ...parsed.entries.filter((e) => e.op.userId !== userId).map((e) => ({ line: e.line, text: e.text })),
    ...keptBad.map((b) => ({ line: b.line, text: b.text })),
  ].sort((a, b) => a.line - b.line);
  // A torn last line stays the unterminated last line, as replay expects to find it.
  const text = lines.map((l) => `${l.text}\n`).join('') + (keepTorn ? keepTorn.text : '');
  await beforeRewrite();
  await rewriteAtomically(file, text);
  reader.forget(file);
  return removed;
}

/** Remove the records naming the user from the `.rejected` companion of a journal file; returns how many. */
export async function removeUserFromRejected(file: string, userId: string, identity: string): Promise<number> {
  const target = `${file.slice(0, -SUFFIX.length)}${REJECTED_SUFFIX}`;
  const opened = await openPrivateFile(target);
  if (opened === 'missing' || 'unsafe' in opened) return 0;
  let text: string;
  try {
    text = await opened.handle.readFile('utf8');
  } finally {
    await opened.handle.close();
  }
  const records = text.split('\n').filter((l) => l !== '');
  const kept = records.filter((record) => {
    let inner: unknown;
    try {
      inner = (JSON.parse(record) as { text?: unknown }).text;
    } catch {
      inner = record; // not a record this journal wrote: judged by its raw text
    }
    return !namesUser(typeof inner === 'string' ? inner : record, userId, identity);
  });
  if (kept.length === records.length) return 0;
  await rewriteAtomically(target, kept.map((r) => `${r}\n`).join(''));
  return records.length - kept.length;
}

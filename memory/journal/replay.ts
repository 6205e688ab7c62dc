import type { JournalReader } from './reader.js';
import { appendRejected, rewriteAtomically } from './files.js';
import { Unreachable, type ApplyOutcome, type JournalOp, type ReplayReport } from './types.js';

export type ApplyFn = (op: JournalOp) => Promise<ApplyOutcome>;

/**
 * Replay one journal file, whose writer is this process or dead (the caller holds its lock):
 * - lines that are torn, unauthenticated or invalid are set aside first: appended to
 *   `<name>.rejected` with their reason, reported, and never applied;
 * - valid entries go to `apply` in file order (the order they were acknowledged in); Unreachable
 *   stops the file there, keeping that entry and the ones after it; any other error sets that
 *   entry aside as `rejected`; an entry whose user was erased after it was made is dropped and
 *   reported (`erased`, `dropped`), never set aside: the set-aside file would keep its content;
 * - then the file is rewritten atomically with what is left (removed when nothing is).
 * `beforeRewrite` lets the owner close its append handle first.
 */
export async function replayFile(
  file: string,
  reader: JournalReader,
  apply: ApplyFn,
  report: ReplayReport,
  beforeRewrite: () => Promise<void> = async () => {},
): Promise<void> {
  const read = await reader.read(file);
  if (read === 'missing') return;
  if ('unsafe' in read) {
    // Not ours to trust, nor to move: reported, left where it is.
    report.problems.push({ file, line: 0, kind: 'unsafe', reason: read.unsafe });
    return;
  }
  const { parsed } = read;
  const rejected: object[] = [];
  for (const bad of parsed.bad) {
    report.problems.push({ file, line: bad.line, kind: bad.kind, reason: bad.reason });
    rejected.push({ kind: bad.kind, reason: bad.reason, line: bad.line, text: bad.text });
  }
  if (parsed.torn) {
    // Another file's owner is dead (we hold its lock), and our own appends are serialised, so an
    // unterminated line is a write a crash cut short. It was never acknowledged (that waits for
    // the fsync of the whole line), but it is kept and reported, not dropped.
    const reason = 'unterminated last line (a write cut short by a crash)';
    report.problems.push({ file, line: parsed.torn.line, kind: 'torn', reason });
    rejected.push({ kind: 'torn', reason, line: parsed.torn.line, text: parsed.torn.text });
  }
  let done = 0;
  for (const entry of parsed.entries) {
    try {
      const outcome = await apply(entry.op);
      if (outcome === 'applied') report.applied += 1;
      else if (outcome === 'older') report.older += 1;
      else {
        report.erased += 1;
        report.dropped.push({
          file,
          line: entry.line,
          kind: 'erased',
          op: entry.op.op,
          reason: `user ${entry.op.userId} was erased after this ${entry.op.op} was made: dropped, not applied`,
        });
      }
    } catch (error) {
      if (error instanceof Unreachable) break;
      const reason = (error as Error).message;
      report.problems.push({ file, line: entry.line, kind: 'rejected', reason });
      rejected.push({ kind: 'rejected', reason, line: entry.line, text: entry.text });
    }
    done += 1;
  }
  const left = parsed.entries.slice(done);
  report.remaining += left.length;
  // Set aside before the rewrite: a crash in between leaves a line in both places, never in neither.
  await appendRejected(file, rejected);
  if (done === 0 && rejected.length === 0) return;
  await beforeRewrite();
  await rewriteAtomically(file, left.map((e) => `${e.text}\n`).join(''));
  reader.forget(file);
}

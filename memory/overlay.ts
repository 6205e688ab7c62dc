import { clockTime } from './journal/clock.js';
import type { JournalOp } from './journal/journal.js';
import { pendingIsLive } from './lifecycle.js';
import type { MemoryRow } from './rpc.js';
import type { Memory } from './types.js';

type MemoryOp = Exclude<JournalOp, { op: 'settings' }>;

/**
 * The pending-write overlay: a user's own writes still waiting in the journal are part of what
 * that user reads. Everywhere (retrieve, list, session start) the same rule decides between a
 * pending write and the database: the greater write clock wins.
 */

export function toMemory(row: MemoryRow): Memory {
  return {
    category: row.category,
    key: row.key,
    value: row.value,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    ...(row.expires_at ? { expiresAt: new Date(row.expires_at) } : {}),
  };
}

/**
 * Pending writes as reads must see them: a pending store that has expired (its own expiry, or
 * older than the retention, by this process's clock: the database may not be there to ask) is
 * never served, from the moment it expires. It still counts as the newest write of its key, so it
 * hides an older value in the database: it becomes a deletion at its clock.
 */
export function livePending(ops: readonly JournalOp[], retentionDays: number | null, now = Date.now()): JournalOp[] {
  return ops.map((op) =>
    op.op === 'store' && !pendingIsLive(op, retentionDays, now)
      ? { op: 'forget', userId: op.userId, identity: op.identity, category: op.category, key: op.key, clock: op.clock }
      : op,
  );
}

/** The newest pending write (store or forget) of one category and key. */
export function newestPending(ops: readonly JournalOp[], category: string, key: string): MemoryOp | undefined {
  let newest: MemoryOp | undefined;
  for (const op of ops) {
    if (op.op === 'settings' || op.category !== category || op.key !== key) continue;
    if (!newest || op.clock > newest.clock) newest = op;
  }
  return newest;
}

/** What a read of one key answers when a pending write and the database's state are both known. */
export function resolvePending(
  pending: MemoryOp,
  db: { value: string | null; clock: string | null; deleted: string | null },
): string | null {
  const dbClock = [db.clock ?? '', db.deleted ?? ''].sort().at(-1)!;
  if (pending.clock > dbClock) return pending.op === 'store' ? pending.value : null;
  return db.value;
}

/** Database rows with the user's pending journal writes laid over them, newest first. */
export function mergePending(rows: MemoryRow[], pending: readonly JournalOp[], category?: string): MemoryRow[] {
  if (pending.length === 0) return rows;
  const slot = (category: string, key: string) => `${category}\u0000${key}`;
  const byKey = new Map<string, MemoryRow>();
  for (const row of rows) byKey.set(slot(row.category, row.key), row);
  const overlay: Array<MemoryRow & { clock: string }> = [];
  const ops = [...pending].sort((a, b) => (a.clock < b.clock ? -1 : 1));
  for (const op of ops) {
    if (op.op === 'settings' || (category && op.category !== category)) continue;
    const existing = byKey.get(slot(op.category, op.key));
    if (existing?.clock && existing.clock >= op.clock) continue;
    if (op.op === 'forget') {
      byKey.delete(slot(op.category, op.key));
      continue;
    }
    const at = clockTime(op.clock);
    const row = {
      category: op.category,
      key: op.key,
      value: op.value,
      created_at: at,
      updated_at: at,
      clock: op.clock,
      expires_at: op.expiresAt ?? null,
    };
    byKey.set(slot(op.category, op.key), row);
    overlay.push(row);
  }
  const current = (r: MemoryRow) => byKey.get(slot(r.category, r.key)) === r;
  const newestFirst = overlay.filter(current).sort((a, b) => (a.clock < b.clock ? 1 : -1));
  return [...newestFirst, ...rows.filter(current)];
}

/** The words of a query as a pending write is matched against it: runs of letters and digits, lower-case. */
export function queryWords(query: string): string[] {
  return [...new Set(query.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [])];
}

/**
 * Search results with the user's pending journal writes laid over them, by the rule of the other
 * reads (the greater clock wins): a pending deletion removes a result, a pending store replaces
 * its value, and a pending store of a key the database does not have yet is a result when the
 * query's words occur in its key or value. A replaced value that no longer holds any of the words
 * is dropped. Pending matches are scored by the share of the words they hold, on the scale of the
 * database's fused ranks (a match at the top of both rankings scores 2/61).
 */
export function mergePendingSearch<R extends MemoryRow & { score: number }>(
  rows: R[],
  pending: readonly JournalOp[],
  query: string,
  category?: string,
): Array<MemoryRow & { score: number }> {
  if (pending.length === 0) return rows;
  const words = queryWords(query);
  const share = (key: string, value: string) => {
    if (words.length === 0) return 0;
    const text = `${key.replace(/_/g, ' ')} ${value}`.toLowerCase();
    return words.filter((w) => text.includes(w)).length / words.length;
  };
  const slot = (c: string, k: string) => `${c}\u0000${k}`;
  const newest = new Map<string, MemoryOp>();
  for (const op of pending) {
    if (op.op === 'settings' || (category && op.category !== category)) continue;
    const s = slot(op.category, op.key);
    const known = newest.get(s);
    if (!known || op.clock > known.clock) newest.set(s, op);
  }
  const out: Array<MemoryRow & { score: number }> = [];
  for (const row of rows) {
    const op = newest.get(slot(row.category, row.key));
    newest.delete(slot(row.category, row.key));
    if (!op || (row.clock && row.clock >= op.clock)) {
      out.push(row);
      continue;
    }
    if (op.op === 'forget' || share(op.key, op.value) === 0) continue;
    const at = clockTime(op.clock);
    out.push({ ...row, value: op.value, updated_at: at, clock: op.clock });
  }
  for (const op of newest.values()) {
    if (op.op !== 'store') continue;
    const matched = share(op.key, op.value);
    if (matched === 0) continue;
    const at = clockTime(op.clock);
    out.push({
      category: op.category,
      key: op.key,
      value: op.value,
      created_at: at,
      updated_at: at,
      clock: op.clock,
      score: (2 / 61) * matched,
    });
  }
  return out.sort((a, b) => b.score - a.score);
}

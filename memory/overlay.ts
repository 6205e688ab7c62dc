import { clockTime } from './journal/clock.js';
import type { JournalOp } from './journal/journal.js';
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
  };
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
    };
    byKey.set(slot(op.category, op.key), row);
    overlay.push(row);
  }
  const current = (r: MemoryRow) => byKey.get(slot(r.category, r.key)) === r;
  const newestFirst = overlay.filter(current).sort((a, b) => (a.clock < b.clock ? 1 : -1));
  return [...newestFirst, ...rows.filter(current)];
}

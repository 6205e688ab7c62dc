import type { EncryptedSecret } from '../settings/cipher.js';

/** A write that could not reach the database, as the journal keeps it until it does. */
export type JournalOp =
  | {
      op: 'store';
      userId: string;
      identity: string;
      category: string;
      key: string;
      value: string;
      clock: string;
      /** The memory's own expiry (ISO), when it has one. */
      expiresAt?: string;
    }
  | { op: 'forget'; userId: string; identity: string; category: string; key: string; clock: string }
  | {
      op: 'settings';
      userId: string;
      identity: string;
      tenant: string;
      config: Record<string, unknown> | null;
      /** Already encrypted, as in the database: the journal never holds a plaintext secret. */
      secrets: Record<string, EncryptedSecret>;
      removeSecrets: string[];
      clock: string;
    };

export type JournalOpKind = JournalOp['op'];

export interface PendingEntry {
  file: string;
  line: number;
  op: JournalOp;
}

/**
 * Why a line or file was set aside:
 * - `torn`: an unterminated last line, a write cut short by a crash;
 * - `corrupt`: not a line this journal wrote (no valid MAC under the journal key, unreadable);
 * - `invalid`: authenticated, but it fails the checks a direct write must pass (wrong user id for
 *   its identity, over a limit, unknown op or field, another database, ...);
 * - `rejected`: the database refused it on replay;
 * - `unsafe`: a whole file another OS user could have written (owner or mode): not read at all.
 */
export type JournalProblemKind = 'torn' | 'corrupt' | 'invalid' | 'rejected' | 'unsafe';

export interface JournalProblem {
  file: string;
  /** 0 for a problem with the whole file (`unsafe`). */
  line: number;
  kind: JournalProblemKind;
  reason: string;
}

/**
 * `erased`: the entry's user was erased after the entry was made (memory_erase_user): it is
 * dropped, not applied and not set aside (a set-aside line would keep the erased user's content).
 */
export type ApplyOutcome = 'applied' | 'older' | 'erased';

/** An entry replay removed without applying it, and why. Never carries the entry's content. */
export interface JournalDrop {
  file: string;
  line: number;
  kind: 'erased';
  op: JournalOpKind;
  reason: string;
}

export interface ReplayReport {
  applied: number;
  /** Replayed, but the database already held a newer write (or this very one): nothing changed. */
  older: number;
  /** Still waiting: the database was unreachable again. */
  remaining: number;
  /** Lines and files set aside (never silently dropped, never applied), each with its reason. */
  problems: JournalProblem[];
  /** Journal files of live processes, which those processes replay themselves. */
  skippedFiles: number;
  /** Entries dropped because their user was erased after they were made (see `dropped`). */
  erased: number;
  /** Each dropped entry, with its reason. */
  dropped: JournalDrop[];
}

/** What removing one user's entries from this host's journal did (Journal.removeUser). */
export interface JournalRemoval {
  /** Pending entries of the user removed. */
  removed: number;
  /** Set-aside records (`.rejected` files) that held a line of the user, removed. */
  rejectedRemoved: number;
  /** Journal files of live processes: their writer owns them; replay drops the user's entries there. */
  skippedFiles: number;
}

/** Thrown by an apply function to say "the database is unreachable: keep this entry and stop". */
export class Unreachable extends Error {}

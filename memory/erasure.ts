import { createHash } from 'node:crypto';
import { MemoryError, isMemoryError } from './errors.js';
import type { JournalRemoval } from './journal/journal.js';
import { rpc } from './rpc.js';
import { isUnreachable, liveTransport, type StoreState } from './store-state.js';

/**
 * Erasure (right to be forgotten): everything of one user goes, in one database transaction
 * (memory_erase_user), then from this host's journal. What stays is one audit row saying that an
 * erasure happened, when, and which component did it, with no user id and no content, only the
 * erasure marker below and the erasure's clock.
 *
 * Why a marker at all: a write made while the database was down may still wait in a journal, on
 * this host (in a running process's file) or on another. Replay provisions a user it does not
 * find, so without a record of the erasure that write would bring the user back. Replay looks the
 * marker up (memory_erased) and drops, and reports, every entry of the user made before the
 * erasure. A write made after it (the person called again) is a new user's and applies.
 *
 * Why not the user id: the UUIDv5 of an identity is computable by anyone who knows or guesses the
 * identity (a phone number can be guessed), so a dump holding it would still say who was here.
 * With MEMORY_ENCRYPTION_KEY configured the marker is an HMAC of the user id under a key derived
 * from it, which the database never sees: a dump alone cannot confirm that any identity was
 * erased. Without a key it is a plain SHA-256 of the user id (domain-separated): still not the id,
 * but testable by someone holding both a dump and a candidate identity. Replay checks the markers
 * under every key it knows (current, previous) and the keyless one, so configuring or rotating
 * the key later does not forget earlier erasures.
 */

const PURPOSE = 'erasure-marker/v1';

function keylessMarker(userId: string): string {
  return createHash('sha256').update(`livekit-user-memory/${PURPOSE}\u0000${userId}`, 'utf8').digest('hex');
}

/** The marker an erasure writes now: keyed by the current key when there is one. */
export function erasureMarker(state: StoreState, userId: string): string {
  return state.cipher ? state.cipher.digests(PURPOSE, userId)[0]! : keylessMarker(userId);
}

/** Every marker an earlier erasure of this user may have written. */
export function erasureMarkers(state: StoreState, userId: string): string[] {
  return [...(state.cipher?.digests(PURPOSE, userId) ?? []), keylessMarker(userId)];
}

export interface ErasureReport {
  userId: string;
  identity: string;
  /** When the database recorded the erasure. */
  erasedAt: Date;
  /** What the database held and no longer holds. */
  database: {
    user: boolean;
    memories: number;
    tombstones: number;
    settings: number;
    /** Audit rows about the user (they name keys, secret names, Auth ids). */
    audit: number;
    embeddings: number;
  };
  /** What was removed from this host's journal (null: this store keeps no journal). */
  journal: JournalRemoval | null;
}

/**
 * Erase one user (see the top of this file). USER_NOT_FOUND when neither the database nor this
 * host's journal holds anything of the identity: nothing is written then, not even the marker.
 * The database must answer (erasure is never journaled): BACKEND_UNAVAILABLE otherwise, and
 * nothing was erased.
 */
export async function eraseUser(state: StoreState, userId: string, identity: string): Promise<ErasureReport> {
  const transport = liveTransport(state);
  const pending = state.journal ? await state.journal.pendingFor(userId) : [];
  let result;
  try {
    result = await rpc(transport, 'memory_erase_user', {
      p_user_id: userId,
      p_marker: erasureMarker(state, userId),
      p_component: state.component,
      // Writes of the user waiting here were perhaps never in the database: record the erasure
      // anyway, so that other hosts' journals drop theirs too.
      p_only_if_stored: pending.length === 0,
    });
  } catch (error) {
    if (isUnreachable(error) && isMemoryError(error)) {
      throw new MemoryError(
        error.code,
        `erasing ${JSON.stringify(identity)} needs the database, which did not answer (${error.message}): nothing was erased; run it again when the database is back`,
        { cause: error },
      );
    }
    throw error;
  }
  if (!('erased_at' in result)) {
    throw new MemoryError(
      'USER_NOT_FOUND',
      `nothing is stored for ${JSON.stringify(identity)} (user id ${userId}) in the database or in this host's journal: check the identity and the namespace (MEMORY_UUID_NAMESPACE); nothing was erased`,
    );
  }
  const journal = state.journal ? await state.journal.removeUser(userId, identity) : null;
  return {
    userId,
    identity,
    erasedAt: new Date(result.erased_at),
    database: {
      user: result.user,
      memories: result.memories,
      tombstones: result.tombstones,
      settings: result.settings,
      audit: result.audit,
      embeddings: result.embeddings,
    },
    journal,
  };
}

import type { MemoryConsent } from './config.js';
import type { StoredSettings } from './settings/settings.js';

export type { MemoryConsent };

/** Who a handle is bound to: the UUIDv5 user id and the identity it was derived from. */
export interface UserRef {
  id: string;
  identity: string;
}

/** A provisioned user: the row keyed by the UUIDv5 of the LiveKit identity. */
export interface User extends UserRef {
  createdAt: Date;
  lastSeenAt: Date;
  /** Sessions started; 0 for a user provisioned without one. */
  sessionCount: number;
}

export interface Memory {
  category: string;
  key: string;
  value: string;
  createdAt: Date;
  updatedAt: Date;
  /** Set when the memory has its own expiry (store's `expiresAt`): it is not served from then on. */
  expiresAt?: Date;
}

export interface SessionStart {
  user: User;
  /** The user's settings for the session's tenant (secrets still encrypted), or null. */
  settings: StoredSettings | null;
  /** Set when stored settings failed validation (changed outside this library): they were left out. */
  settingsError?: string;
  /** True for exactly one startSession per user: the one that created it. */
  firstSession: boolean;
  /** The user's most recently updated memories, newest first, up to memoryLimit (live ones only). */
  memories: Memory[];
  /**
   * The caller's memory consent now: `granted`; `denied` (they asked not to be remembered: nothing
   * is stored); `ask` (MEMORY_CONSENT_DEFAULT=ask and they have not said yet: ask before storing).
   */
  consent: MemoryConsent;
}

export interface StartSessionOptions {
  /** How many memories to return (default 20, at most 1000). */
  memoryLimit?: number;
  /** Whose settings to load (default: the store's tenant). */
  tenant?: string;
}

export interface ListOptions {
  category?: string;
  /** Default 100, at most 10000. */
  limit?: number;
}

export interface SearchOptions {
  /** At most this many matches (default 10, at most 100). */
  limit?: number;
  /** Only memories of this category. */
  category?: string;
}

/** A memory found by search, with its relevance: higher is better, comparable within one search only. */
export interface MemoryMatch extends Memory {
  score: number;
}

/** What a store call reports back. */
export interface StoreReceipt {
  category: string;
  key: string;
  /** When the write was made. */
  updatedAt: Date;
  /**
   * `database`: committed. `journal`: the database was unreachable, so the write was fsynced to the
   * local journal and will be replayed; it is durable either way.
   */
  savedTo: 'database' | 'journal';
  /**
   * True when this value is what is stored now (or will be, once the journal is replayed). False
   * when a newer write of the same key won in the database at the same moment: the value was not
   * stored, and the caller should say so rather than claim it was saved.
   */
  applied: boolean;
  /** When the memory expires (its own expiry), if it has one. */
  expiresAt?: Date;
  /**
   * Memories the per-user cap (MEMORY_MAX_PER_USER) evicted to make room for this one, least
   * recently used first; absent when none was. The caller should say which.
   */
  evicted?: Array<{ category: string; key: string }>;
}

export interface StoreOptions {
  /**
   * When the memory expires: from that moment it is not served (retrieve, list, search, session
   * start), and the purge removes it. Must be in the future. Default: no expiry of its own
   * (MEMORY_RETENTION_DAYS may still apply).
   */
  expiresAt?: Date;
}

/** What a consent change did (UserMemory.setConsent, MemoryStore.setConsent). */
export interface ConsentChange {
  consent: 'granted' | 'denied';
  /** The recorded state before (null: never recorded, the deployment default applied). */
  previous: 'granted' | 'denied' | null;
  at: Date;
  /** Memories erased (a denial erases everything stored for the caller). */
  erased: number;
}

/** What a purge removed (MemoryStore.purge). */
export interface PurgeReport {
  /** Expired memories removed (their own expiry passed, or older than MEMORY_RETENTION_DAYS). */
  memories: number;
  /** Tombstones removed (older than any journal entry can be). */
  tombstones: number;
  /** Statements (each its own short transaction). */
  batches: number;
}

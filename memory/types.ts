import type { StoredSettings } from './settings/settings.js';

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
}

export interface SessionStart {
  user: User;
  /** The user's settings for the session's tenant (secrets still encrypted), or null. */
  settings: StoredSettings | null;
  /** Set when stored settings failed validation (changed outside this library): they were left out. */
  settingsError?: string;
  /** True for exactly one startSession per user: the one that created it. */
  firstSession: boolean;
  /** The user's most recently updated memories, newest first, up to memoryLimit. */
  memories: Memory[];
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
}

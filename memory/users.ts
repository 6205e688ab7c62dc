import type { User } from './types.js';

/** A user row as the schema's functions return it (the rpc map checked its shape). */
export interface UserRow {
  id: string;
  identity: string;
  created_at: string | Date;
  last_seen_at: string | Date;
  session_count: number;
}

export function toUser(row: UserRow): User {
  return {
    id: row.id,
    identity: row.identity,
    createdAt: new Date(row.created_at),
    lastSeenAt: new Date(row.last_seen_at),
    sessionCount: row.session_count,
  };
}

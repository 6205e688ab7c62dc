import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { MemoryError } from './errors.js';

/**
 * What we ask GoTrue for when provisioning a Supabase Auth user for a LiveKit identity: the
 * UUIDv5 as the user id (so auth.uid() equals the memory user id), and a synthetic address,
 * because GoTrue refuses a user with neither email nor phone. `.invalid` can never receive mail,
 * and email_confirm means none is sent.
 */
export function authUserAttributes(userId: string, identity: string) {
  return {
    id: userId,
    email: `${userId}@users.invalid`,
    email_confirm: true,
    user_metadata: { livekit_identity: identity },
  };
}

/**
 * Create (or find) the Supabase Auth user for a memory user with auth.admin.createUser. Needs the
 * service role key. Returns the Auth user's id.
 */
export async function ensureAuthUser(
  supabase: { url: string; serviceRoleKey: string; fetch?: typeof fetch },
  userId: string,
  identity: string,
): Promise<string> {
  const client = createClient(supabase.url, supabase.serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: supabase.fetch ? { fetch: supabase.fetch } : {},
    realtime: { transport: WebSocket as never },
  });
  const created = await client.auth.admin.createUser(authUserAttributes(userId, identity));
  if (!created.error) return created.data.user.id;
  // Already there (created earlier, or by someone else): use it if it is the same id.
  const existing = await client.auth.admin.getUserById(userId);
  if (!existing.error && existing.data.user) return existing.data.user.id;
  throw new MemoryError(
    'PROVISIONING_FAILED',
    `could not create the Supabase Auth user for ${JSON.stringify(identity)}: ${created.error.message}`,
    {
      cause: created.error,
    },
  );
}

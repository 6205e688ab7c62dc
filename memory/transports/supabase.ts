import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { DEFAULTS } from '../defaults.js';
import { MemoryError, type MemoryErrorCode } from '../errors.js';
import { JsonArg, type CallArgs, type CallShape } from './call.js';
import { HINTS, sqlstateCode } from './pg-errors.js';
import type { RpcTransport } from './transport.js';

export interface SupabaseTransportOptions {
  url: string;
  serviceRoleKey: string;
  /** A fetch implementation (tests pass a PostgREST stand-in; default: the global fetch). */
  fetch?: typeof fetch;
  /** Per-call timeout (default 10 s). */
  timeoutMs?: number;
  /** How long to let PostgREST reload its schema cache before the one retry (default 500 ms). */
  reloadWaitMs?: number;
}

/** PostgREST could not find a function (202), column (204) or table (205) in its schema cache. */
const SCHEMA_CACHE_CODES = new Set(['PGRST202', 'PGRST204', 'PGRST205']);

interface PostgrestErrorLike {
  code?: string;
  message?: string;
  details?: string | null;
  hint?: string | null;
}

function codeFor(error: PostgrestErrorLike, status: number): MemoryErrorCode {
  const code = error.code ?? '';
  if (SCHEMA_CACHE_CODES.has(code)) return 'SCHEMA_CACHE_STALE';
  if (code === 'PGRST301' || code === 'PGRST302' || status === 401) return 'PERMISSION_DENIED';
  if (/^[0-9A-Z]{5}$/.test(code)) return sqlstateCode(code);
  if (/AbortError|aborted|timed? ?out/i.test(`${error.message} ${error.details}`)) return 'TIMEOUT';
  if (
    status === 0 ||
    status >= 502 ||
    /fetch failed|ECONNREFUSED|ENOTFOUND|network/i.test(`${error.message} ${error.details}`)
  ) {
    return 'BACKEND_UNAVAILABLE';
  }
  if (status === 409) return 'CONFLICT';
  if (status === 403) return 'PERMISSION_DENIED';
  return 'DATABASE_ERROR';
}

const SUPABASE_HINTS: Partial<Record<MemoryErrorCode, string>> = {
  SCHEMA_CACHE_STALE:
    "PostgREST's schema cache does not know our functions even after a reload: apply supabase/migrations " +
    "(`supabase db push`, or `lk-memory migrate` with DATABASE_URL set to the project's connection string), then run NOTIFY pgrst, 'reload schema' in the SQL editor",
  PERMISSION_DENIED: 'check that SUPABASE_SERVICE_ROLE_KEY is the service_role key of this project, not the anon key',
  BACKEND_UNAVAILABLE: 'check SUPABASE_URL and that the project is running (paused projects do not answer)',
};

export function postgrestError(error: PostgrestErrorLike, status: number, fn: string): MemoryError {
  const code = codeFor(error, status);
  const hint = SUPABASE_HINTS[code] ?? HINTS[code];
  const detail = [error.code, error.message].filter(Boolean).join(' ');
  return new MemoryError(
    code,
    `supabase rpc ${fn} (HTTP ${status}): ${detail || 'no error body'}${hint ? ` (${hint})` : ''}`,
    {
      cause: error,
    },
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Supabase through supabase-js with the service role. Each store operation is one RPC to a
 * function our migrations created, so no call depends on PostgREST's cache of table columns; a
 * stale cache of functions gets one reload (through an RPC that runs the NOTIFY) and one retry.
 */
export function createSupabaseTransport(options: SupabaseTransportOptions): RpcTransport {
  const client = createClient(options.url, options.serviceRoleKey, {
    // A server: no session to keep or refresh, no URL to read a session from.
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: options.fetch ? { fetch: options.fetch } : {},
    // supabase-js builds its realtime client in the constructor and, on Node 20 (no built-in
    // WebSocket), throws unless given one. We never subscribe; `ws` only satisfies the constructor.
    realtime: { transport: WebSocket as never },
  });
  const timeoutMs = options.timeoutMs ?? DEFAULTS.supabaseTimeoutMs;
  let calls = 0;
  let closed = false;

  async function rpc(
    fn: string,
    body: Record<string, unknown>,
  ): Promise<{ data: unknown; error: PostgrestErrorLike | null; status: number }> {
    calls += 1;
    try {
      return await client.rpc(fn, body).abortSignal(AbortSignal.timeout(timeoutMs));
    } catch (error) {
      // supabase-js reports most failures in `error`, but a rejected fetch can still throw.
      return { data: null, error: { message: String(error), details: (error as Error).name }, status: 0 };
    }
  }

  return {
    kind: 'supabase',
    location: `supabase ${new URL(options.url).host}`,
    get statementCount() {
      return calls;
    },
    async call(fn: string, args: CallArgs, shape: CallShape): Promise<unknown> {
      if (closed) throw new MemoryError('CLOSED', 'the memory store was closed; open a new one with openMemory()');
      const body = Object.fromEntries(Object.entries(args).map(([k, v]) => [k, v instanceof JsonArg ? v.value : v]));
      let result = await rpc(fn, body);
      if (result.error && SCHEMA_CACHE_CODES.has(result.error.code ?? '')) {
        await rpc('memory_reload_schema', {});
        await sleep(options.reloadWaitMs ?? 500);
        result = await rpc(fn, body);
      }
      if (result.error) throw postgrestError(result.error, result.status, fn);
      if (shape === 'rows') return result.data ?? [];
      return result.data ?? null;
    },
    close() {
      closed = true;
      return Promise.resolve();
    },
  };
}

/**
 * TEST STAND-IN FOR POSTGREST (Supabase's HTTP API, `/rest/v1`). NOT POSTGREST, AND NOT SUPABASE.
 *
 * PostgREST is a Haskell server with no npm package that runs here, so the tests hand supabase-js
 * this class's `fetch` (`createClient(standin.url, key, { global: { fetch: standin.fetch } })`).
 * No socket is opened: the fetch answers requests for `standin.url` (`http://supabase.test`) in
 * process and carries each RPC to a real PostgreSQL, the way PostgREST would. Other origins
 * reject like an unreachable host. On Node 20 also pass `realtime: { transport:
 * NoRealtimeTransport }`, or `createClient()` itself throws (see `NoRealtimeTransport`).
 *
 * What it implements (checked against PostgREST's source, src/PostgREST/Error.hs, and its docs):
 *  - `POST /rest/v1/rpc/<fn>` with a JSON object of named arguments (and `GET`/`HEAD` with the
 *    arguments in the query string). One transaction per request, READ COMMITTED, READ ONLY for
 *    STABLE/IMMUTABLE functions and for GET/HEAD (a write there fails with 25006 → 405, as on
 *    Supabase), with `role`, `request.jwt.claims`, `request.jwt.claim.sub`, `request.method`,
 *    `request.path` and `search_path` ('public, extensions') set locally.
 *  - Arguments are passed the way PostgREST does, through `json_to_record` with each parameter's
 *    declared type, by name (`fn(p_a := ...)`); absent parameters that have defaults are left out.
 *  - JWT auth: HS256/384/512 with the shared secret (jose), the role from the `role` claim (anon
 *    when absent), `Authorization: Bearer` first, else the `apikey` header (Supabase's gateway
 *    puts the key there; PostgREST itself only reads Authorization). Bad or expired → 401 PGRST301
 *    (PostgREST ≥ 13 answers PGRST303 for claim errors such as "JWT expired"; we keep PGRST301).
 *    No key at all → 401 `No API key found in request`, as Supabase's gateway answers.
 *  - A schema cache of the functions in schema `public`, loaded at start and reloaded only on
 *    `NOTIFY pgrst, 'reload schema'` (or payload '') or `reloadSchemaCache()`. Unknown function or
 *    argument names → 404 PGRST202 with PostgREST's message and details; several matching
 *    overloads → 300 PGRST203. `freezeSchemaCache(true)` ignores NOTIFYs (a stale cache).
 *  - Response shapes: scalar → the JSON value, `setof`/`table` → array of row objects, a single
 *    composite → object, void → 204 without body, `Accept: application/vnd.pgrst.object+json`
 *    (supabase-js `.single()`) on a set → the one row, else 406 PGRST116.
 *  - PostgreSQL errors → `{ code, details, hint, message }` with PostgREST's SQLSTATE → HTTP table
 *    (`statusForSqlState`), including 42501 → 403, or 401 for the anon role, and
 *    `RAISE SQLSTATE 'PGRST'` / `PTxyz` custom statuses.
 *  - Fault injection (`failNext`, `failNetwork`, `delayNext`) and a log of every request.
 *
 * What it does NOT implement: table and view endpoints (`/rest/v1/<table>`: select, insert,
 * upsert, filters), GoTrue (`/auth/v1`), storage, realtime, edge functions; filters/order/limit
 * on RPC results; `Prefer` headers (count, return, params=single-object, tx); bulk calls with a
 * JSON array body; functions with unnamed or VARIADIC parameters; schemas other than `public`;
 * the fuzzy "Perhaps you meant ..." hints (only a same-name overload is suggested); Supabase's
 * per-role statement timeouts (use the `statementTimeoutMs` option); JWKS/asymmetric keys and the
 * new `sb_publishable_`/`sb_secret_` API keys. Any other path answers 404 saying so.
 */
import { STATUS_CODES } from 'node:http';
import type { WebSocketLikeConstructor } from '@supabase/supabase-js';
import { errors as joseErrors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import pg from 'pg';

/** The Supabase CLI's local JWT secret: a well-known test value, never a real project's. */
export const DEFAULT_JWT_SECRET = 'super-secret-jwt-token-with-at-least-32-characters-long';
export const DEFAULT_STANDIN_URL = 'http://supabase.test';

/** The only exposed schema (Supabase also exposes graphql_public, which we do not model). */
const SCHEMA = 'public';
/** Supabase's `db-anon-role`: requests as this role are "not authenticated" for 42501 → 401. */
const ANON_ROLE = 'anon';
/** Supabase's `db-extra-search-path` is 'public, extensions'; PostgREST prepends the schema. */
const SEARCH_PATH = 'public, extensions';
/** PostgREST accepts 30 s of clock skew on exp/nbf/iat. */
const JWT_CLOCK_SKEW_SECONDS = 30;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

export interface PostgrestStandinOptions {
  /** The target database; the stand-in connects as this (super)user and switches role per request. */
  databaseUrl: string;
  /** HS256 secret for `signJwt` and verification. Default: `DEFAULT_JWT_SECRET`. */
  jwtSecret?: string;
  /** The fake origin supabase-js is pointed at. Default: `http://supabase.test`. */
  url?: string;
  /** `statement_timeout` set in every request's transaction (Supabase sets 3 s for anon, 8 s for authenticated). */
  statementTimeoutMs?: number;
  /** Connections in the request pool (the schema-cache listener has one more). Default 4. */
  poolSize?: number;
}

/** PostgREST's error body. Keys in PostgREST's (alphabetical) order. */
export interface PostgrestErrorBody {
  code: string;
  details: string | null;
  hint: string | null;
  message: string;
}

export interface RecordedRequest {
  method: string;
  /** Path without the query string, e.g. `/rest/v1/rpc/memory_store`. */
  path: string;
  /** The function name for `/rest/v1/rpc/<fn>`, else null. */
  fn: string | null;
  /** The role the request runs as; null when it never got that far (network fault, 401, bad path). */
  role: string | null;
  /** The parsed JSON body (POST) or query parameters (GET/HEAD); undefined if none was read. */
  args: unknown;
  /**
   * The HTTP status the stand-in answered with. 0 while the request is being answered, and for a
   * `failNetwork` fault (no response exists). A request the client aborted still gets the status
   * the server side finished with: like a real server, the stand-in does not stop work when the
   * client gives up, so a timed-out write can still commit.
   */
  status: number;
  /** Set when a fault decided the outcome. */
  injected?: 'response' | 'network';
  /** Set when the caller's AbortSignal fired before the answer was handed back. */
  clientAborted?: boolean;
}

/** A scripted answer for `failNext`. A string body is sent as is, anything else as JSON. */
export interface InjectedResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface RoutineParam {
  name: string;
  /** As `format_type` prints it, usable in SQL: `uuid`, `text[]`, `timestamp with time zone`. */
  type: string;
  hasDefault: boolean;
}

interface Routine {
  name: string;
  params: RoutineParam[];
  returnsSet: boolean;
  returnsVoid: boolean;
  /** A composite type, `record` with OUT/TABLE columns: rows become JSON objects. */
  returnsComposite: boolean;
  returnType: string;
  /** pg_proc.provolatile: i(mmutable), s(table), v(olatile). */
  volatility: 'i' | 's' | 'v';
}

interface Fault<T> {
  fn: string;
  value: T;
  remaining: number;
}

/**
 * supabase-js (2.109) builds its realtime client inside `createClient()`, and on Node < 22, which
 * has no global WebSocket, that THROWS ("Node.js 20 detected without native WebSocket support")
 * unless `realtime: { transport }` is given. RPC-only code needs no realtime: pass this stub,
 * which fails only if something really opens a realtime socket.
 */
export const NoRealtimeTransport = class {
  constructor() {
    throw new Error('realtime is not available: the client was created with NoRealtimeTransport (RPC only)');
  }
} as unknown as WebSocketLikeConstructor;

// ---------------------------------------------------------------------------------------------
// PostgREST's error bodies and status table
// ---------------------------------------------------------------------------------------------

export function errorBody(
  code: string,
  message: string,
  details: string | null = null,
  hint: string | null = null,
): PostgrestErrorBody {
  return { code, details, hint, message };
}

/**
 * Bodies PostgREST sends for errors the stand-in cannot produce itself (it has no table
 * endpoints), for replaying with `failNext`. Texts from PostgREST's Error.hs.
 */
export const postgrestErrors = {
  /** PGRST204, 400: an insert/update named a column the schema cache lacks. */
  columnNotFound: (column: string, table: string): InjectedResponse => ({
    status: 400,
    body: errorBody('PGRST204', `Could not find the '${column}' column of '${table}' in the schema cache`),
  }),
  /** PGRST205, 404: a table the schema cache lacks (`qualifiedTable` like 'public.memories'). */
  tableNotFound: (qualifiedTable: string, hint: string | null = null): InjectedResponse => ({
    status: 404,
    body: errorBody('PGRST205', `Could not find the table '${qualifiedTable}' in the schema cache`, null, hint),
  }),
  /** 23505, 409, as PostgreSQL words it. */
  uniqueViolation: (constraint: string, details: string | null = null): InjectedResponse => ({
    status: 409,
    body: errorBody('23505', `duplicate key value violates unique constraint "${constraint}"`, details),
  }),
  /** 42501: 403 for an authenticated role, 401 for anon. */
  permissionDenied: (what: string, anon = false): InjectedResponse => ({
    status: anon ? 401 : 403,
    body: errorBody('42501', `permission denied for ${what}`),
  }),
} as const;

/**
 * PostgREST's SQLSTATE → HTTP status table, from `mapSQLtoHTTP` in src/PostgREST/Error.hs
 * (PostgREST/postgrest main; the same table is in docs.postgrest.org "Errors" and Supabase's
 * "PostgREST error codes"). `authenticated` is "the request's role is not the anon role".
 */
export function statusForSqlState(code: string, message = '', authenticated = true): number {
  const exact: Record<string, number> = {
    '23503': 409, // foreign_key_violation
    '23505': 409, // unique_violation
    '25006': 405, // read_only_sql_transaction
    '53400': 500, // configuration_limit_exceeded
    '57P01': 503, // admin_shutdown
    P0001: 400, // plain RAISE EXCEPTION
    '42P01': 404, // undefined_table
    '42P17': 500, // infinite recursion (e.g. in RLS policies)
  };
  if (code === '21000') return message.endsWith('requires a WHERE clause') ? 400 : 500;
  if (code === '22023') return message.startsWith('role') && message.endsWith('does not exist') ? 401 : 400;
  if (code === '42883') return message.startsWith('function xmlagg(') ? 406 : 404;
  if (code === '42501') return authenticated ? 403 : 401;
  const hit = exact[code];
  if (hit !== undefined) return hit;
  if (code.startsWith('PT')) {
    const n = Number(code.slice(2));
    return Number.isInteger(n) && n >= 100 && n <= 599 ? n : 500;
  }
  const byClass: Record<string, number> = {
    '08': 503,
    '09': 500,
    '0L': 403,
    '0P': 403,
    '25': 500,
    '28': 403,
    '2D': 500,
    '38': 500,
    '39': 500,
    '3B': 500,
    '40': 500,
    '53': 503,
    '54': 500,
    '55': 500,
    '57': 500,
    '58': 500,
    F0: 500,
    HV: 500,
    P0: 500,
    XX: 500,
  };
  return byClass[code.slice(0, 2)] ?? 400;
}

// ---------------------------------------------------------------------------------------------
// The stand-in
// ---------------------------------------------------------------------------------------------

export class PostgrestStandin {
  /** Hand this to `createClient` as the Supabase URL. */
  readonly url: string;
  /** Every request in arrival order (since the last `clear()`). */
  readonly requests: RecordedRequest[] = [];
  /** Completed schema-cache reloads after the initial load. */
  reloads = 0;
  /** `pgrst` notifications received, and how many of them a frozen cache ignored. */
  notifications = 0;
  ignoredNotifications = 0;

  private readonly databaseUrl: string;
  private readonly secret: Uint8Array;
  private readonly origin: string;
  private readonly statementTimeoutMs: number | undefined;
  private readonly poolSize: number;
  private pool: pg.Pool | undefined;
  private listener: pg.Client | undefined;
  private started = false;
  private frozen = false;
  private cache = new Map<string, Routine[]>();
  /** Reloads run one after another; requests wait for the pending one (PostgREST does too). */
  private cacheReady: Promise<void> = Promise.resolve();
  private readonly inFlight = new Set<Promise<unknown>>();
  private responseFaults: Array<Fault<InjectedResponse>> = [];
  private networkFaults: Array<Fault<null>> = [];
  private delays: Array<Fault<number>> = [];
  private keys: { service: string; anon: string } | undefined;

  constructor(options: PostgrestStandinOptions) {
    this.databaseUrl = options.databaseUrl;
    this.secret = new TextEncoder().encode(options.jwtSecret ?? DEFAULT_JWT_SECRET);
    this.url = (options.url ?? DEFAULT_STANDIN_URL).replace(/\/+$/, '');
    this.origin = new URL(this.url).origin;
    this.statementTimeoutMs = options.statementTimeoutMs;
    this.poolSize = options.poolSize ?? 4;
  }

  // -- lifecycle ------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.started) return;
    // UTC like a Supabase database, so timestamptz renders the same on every machine.
    this.pool = new pg.Pool({
      connectionString: this.databaseUrl,
      max: this.poolSize,
      application_name: 'postgrest-standin',
      options: '-c TimeZone=UTC',
    });
    // An idle connection dying (e.g. the test dropped the database) must not crash the runner.
    this.pool.on('error', () => {});
    this.listener = new pg.Client({
      connectionString: this.databaseUrl,
      application_name: 'postgrest-standin-listener',
    });
    this.listener.on('error', () => {});
    this.listener.on('notification', (msg) => {
      if (msg.channel !== 'pgrst') return;
      // PostgREST: 'reload schema' reloads the schema cache, '' reloads it and the config.
      const payload = msg.payload ?? '';
      if (payload !== 'reload schema' && payload !== '') return;
      this.notifications++;
      if (this.frozen) {
        this.ignoredNotifications++;
        return;
      }
      void this.reloadSchemaCache();
    });
    await this.listener.connect();
    await this.listener.query('listen pgrst');
    this.cache = await this.loadSchemaCache();
    this.keys = {
      service: await this.signJwt({ role: 'service_role', iss: 'supabase' }),
      anon: await this.signJwt({ role: 'anon', iss: 'supabase' }),
    };
    this.started = true;
  }

  /** Waits for requests still being answered (aborted ones included), then closes connections. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await Promise.allSettled([...this.inFlight]);
    await this.cacheReady;
    await Promise.allSettled([this.listener?.end(), this.pool?.end()]);
    this.listener = undefined;
    this.pool = undefined;
  }

  // -- JWTs -----------------------------------------------------------------------------------

  /** Signs `claims` as given (plus `iat`) with HS256 and the stand-in's secret. */
  async signJwt(claims: JWTPayload & Record<string, unknown>): Promise<string> {
    const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' });
    if (claims.iat === undefined) jwt.setIssuedAt();
    return jwt.sign(this.secret);
  }

  /** `{ role: 'service_role', iss: 'supabase' }`: bypasses RLS. Available after `start()`. */
  get serviceRoleKey(): string {
    return this.requireKeys().service;
  }

  /** `{ role: 'anon', iss: 'supabase' }`. Available after `start()`. */
  get anonKey(): string {
    return this.requireKeys().anon;
  }

  /** A user's access token as GoTrue issues it (the parts RLS reads), valid for an hour. */
  userToken(sub: string, extraClaims: Record<string, unknown> = {}): Promise<string> {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    return this.signJwt({ sub, role: 'authenticated', aud: 'authenticated', exp, ...extraClaims });
  }

  // -- schema cache ---------------------------------------------------------------------------

  /** Reloads the function cache now (also while frozen); resolves when the new cache is in use. */
  reloadSchemaCache(): Promise<void> {
    const next = this.cacheReady.then(async () => {
      try {
        this.cache = await this.loadSchemaCache();
        this.reloads++;
      } catch {
        // PostgREST keeps serving with the old cache when a reload fails; so do we.
      }
    });
    this.cacheReady = next;
    return next;
  }

  /** While frozen, `NOTIFY pgrst` is ignored, so functions created meanwhile stay invisible. */
  freezeSchemaCache(frozen: boolean): void {
    this.frozen = frozen;
  }

  /** The function names in the cache, sorted (for assertions and debugging). */
  cachedFunctions(): string[] {
    return [...this.cache.keys()].sort();
  }

  // -- fault injection and the request log ----------------------------------------------------

  /** The next `times` calls of `fn` (`'*'`: any function) get `response` instead of running. */
  failNext(fn: string, response: InjectedResponse, times = 1): void {
    this.responseFaults.push({ fn, value: response, remaining: times });
  }

  /** The next `times` calls of `fn` reject like an unreachable server: `TypeError('fetch failed')`. */
  failNetwork(fn: string, times = 1): void {
    this.networkFaults.push({ fn, value: null, remaining: times });
  }

  /** The next `times` calls of `fn` are answered `ms` later (the call still runs afterwards). */
  delayNext(fn: string, ms: number, times = 1): void {
    this.delays.push({ fn, value: ms, remaining: times });
  }

  /** Forgets recorded requests and pending faults. */
  clear(): void {
    this.requests.length = 0;
    this.responseFaults = [];
    this.networkFaults = [];
    this.delays = [];
  }

  // -- fetch ----------------------------------------------------------------------------------

  /** The `fetch` to hand to supabase-js (`global: { fetch }`). Only `url`'s origin answers. */
  readonly fetch: typeof globalThis.fetch = async (input, init) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    if (url.origin !== this.origin) {
      throw networkError(`getaddrinfo ENOTFOUND ${url.hostname}`, 'ENOTFOUND');
    }
    if (!this.started) throw networkError(`connect ECONNREFUSED ${url.host}`, 'ECONNREFUSED');
    const signal = request.signal;
    signal.throwIfAborted();

    const match = /^\/rest\/v1\/rpc\/([^/]+)$/.exec(url.pathname);
    const fn = match?.[1] !== undefined ? decodeURIComponent(match[1]) : null;
    const entry: RecordedRequest = {
      method: request.method,
      path: url.pathname,
      fn,
      role: null,
      args: undefined,
      status: 0,
    };
    this.requests.push(entry);

    if (fn !== null && takeFault(this.networkFaults, fn) !== undefined) {
      entry.injected = 'network';
      throw networkError(`connect ECONNREFUSED ${url.host}`, 'ECONNREFUSED');
    }

    const work = this.answer(request, url, fn, entry).then((response) => {
      entry.status = response.status;
      return response;
    });
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work)).catch(() => {});
    try {
      return await raceAbort(work, signal);
    } catch (error) {
      if (signal.aborted) entry.clientAborted = true;
      throw error;
    }
  };

  // -- internals ------------------------------------------------------------------------------

  private requireKeys(): { service: string; anon: string } {
    if (!this.keys) throw new Error('PostgrestStandin: call start() before reading the API keys');
    return this.keys;
  }

  private async answer(request: Request, url: URL, fn: string | null, entry: RecordedRequest): Promise<Response> {
    if (fn === null) {
      return json(
        404,
        errorBody(
          'STANDIN404',
          'The PostgREST test stand-in serves only POST /rest/v1/rpc/<function>: it does not fake table endpoints, GoTrue (/auth/v1), storage or realtime.',
          `${request.method} ${url.pathname}`,
        ),
      );
    }
    const method = request.method.toUpperCase();
    if (method !== 'POST' && method !== 'GET' && method !== 'HEAD') {
      return json(405, errorBody('PGRST101', `Cannot use the ${method} method on RPC`));
    }
    // supabase-js sends the schema as Content-Profile (POST) or Accept-Profile (GET/HEAD).
    const profile = request.headers.get(method === 'POST' ? 'content-profile' : 'accept-profile');
    if (profile !== null && profile !== SCHEMA) {
      return json(
        406,
        errorBody('PGRST106', `Invalid schema: ${profile}`, null, `Only the following schemas are exposed: ${SCHEMA}`),
      );
    }

    const auth = await this.authenticate(request);
    if ('error' in auth) return auth.error;
    entry.role = auth.role;

    const unsupported = [...url.searchParams.keys()].filter(
      (k) => method === 'POST' && !(k === 'select' && url.searchParams.get(k) === '*'),
    );
    if (unsupported.length > 0) {
      return json(
        501,
        errorBody(
          'STANDIN501',
          'The PostgREST test stand-in does not implement query parameters (filters, select, order, limit) on RPC',
          unsupported.join(', '),
        ),
      );
    }

    let args: Record<string, unknown>;
    if (method === 'POST') {
      const text = await request.text();
      let parsed: unknown;
      try {
        parsed = text.trim() === '' ? {} : JSON.parse(text);
      } catch {
        return json(400, errorBody('PGRST102', 'Empty or invalid json'));
      }
      entry.args = parsed;
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        return json(
          501,
          errorBody('STANDIN501', 'The PostgREST test stand-in only takes a JSON object of named arguments'),
        );
      }
      args = parsed as Record<string, unknown>;
    } else {
      args = Object.fromEntries([...url.searchParams].filter(([k]) => k !== 'select'));
      entry.args = args;
    }

    const delay = takeFault(this.delays, fn);
    if (delay !== undefined) await sleep(delay);

    const injected = takeFault(this.responseFaults, fn);
    if (injected !== undefined) {
      entry.injected = 'response';
      return injectedResponse(injected);
    }

    await this.cacheReady;
    const found = this.findRoutine(fn, Object.keys(args), method === 'POST');
    if ('error' in found) return found.error;
    const routine = found.routine;
    const readOnly = method !== 'POST' || routine.volatility !== 'v';
    const wantsObject = (request.headers.get('accept') ?? '').includes('application/vnd.pgrst.object+json');
    const response = await this.execute(
      routine,
      args,
      auth.role,
      auth.claims,
      readOnly,
      method,
      url.pathname,
      wantsObject,
    );
    // HEAD: same status and headers, no body.
    return method === 'HEAD'
      ? new Response(null, { status: response.status, statusText: response.statusText, headers: response.headers })
      : response;
  }

  private async authenticate(request: Request): Promise<{ role: string; claims: JWTPayload } | { error: Response }> {
    const authorization = request.headers.get('authorization');
    const apikey = request.headers.get('apikey');
    let token: string;
    if (authorization !== null && /^bearer\s/i.test(authorization + ' ')) {
      token = authorization.replace(/^bearer\s*/i, '').trim();
      if (token === '') return { error: jwtError('Empty JWT is sent in Authorization header') };
    } else if (apikey !== null && apikey !== '') {
      token = apikey;
    } else {
      // Supabase's API gateway rejects a request without a key before PostgREST sees it.
      return {
        error: json(401, {
          message: 'No API key found in request',
          hint: 'No `apikey` request header or url param was found.',
        }),
      };
    }
    try {
      const { payload } = await jwtVerify(token, this.secret, {
        algorithms: ['HS256', 'HS384', 'HS512'],
        clockTolerance: JWT_CLOCK_SKEW_SECONDS,
      });
      const role = typeof payload.role === 'string' && payload.role !== '' ? payload.role : ANON_ROLE;
      return { role, claims: payload };
    } catch (error) {
      return { error: jwtError(jwtErrorMessage(error, token)) };
    }
  }

  /** PostgREST's overload resolution: every given key is a parameter, every required one given. */
  private findRoutine(fn: string, keys: string[], isPost: boolean): { routine: Routine } | { error: Response } {
    const overloads = this.cache.get(fn) ?? [];
    const matches = overloads.filter((r) => {
      const names = new Set(r.params.map((p) => p.name));
      return keys.every((k) => names.has(k)) && r.params.every((p) => p.hasDefault || keys.includes(p.name));
    });
    const [first] = matches;
    if (first !== undefined && matches.length === 1) return { routine: first };
    if (matches.length > 1) {
      const list = matches.map(
        (r) => `${SCHEMA}.${r.name}(${r.params.map((p) => `${p.name} => ${p.type}`).join(', ')})`,
      );
      return {
        error: json(
          300,
          errorBody(
            'PGRST203',
            `Could not choose the best candidate function between: ${list.join(', ')}`,
            null,
            'Try renaming the parameters or the function itself in the database so function overloading can be resolved',
          ),
        ),
      };
    }
    // Texts from NoRpc in PostgREST's Error.hs; argument names sorted, as PostgREST keeps them in a set.
    const sorted = [...keys].sort();
    const func = `${SCHEMA}.${fn}`;
    const message = `Could not find the function ${func}${sorted.length === 0 ? ' without parameters' : `(${sorted.join(', ')})`} in the schema cache`;
    const params =
      sorted.length === 0
        ? ' without parameters'
        : ` with parameter${sorted.length > 1 ? 's' : ''} ${sorted.join(', ')}`;
    const details = `Searched for the function ${func}${params}${isPost ? ' or with a single unnamed json/jsonb parameter' : ''}, but no matches were found in the schema cache.`;
    // PostgREST fuzzy-matches a hint; we only point at a same-name overload, the most common case.
    const closest = [...overloads].sort((a, b) => overlap(b, keys) - overlap(a, keys))[0];
    const hint = closest
      ? `Perhaps you meant to call the function ${func}(${closest.params
          .map((p) => p.name)
          .sort()
          .join(', ')})`
      : null;
    return { error: json(404, errorBody('PGRST202', message, details, hint)) };
  }

  private async execute(
    routine: Routine,
    args: Record<string, unknown>,
    role: string,
    claims: JWTPayload,
    readOnly: boolean,
    method: string,
    path: string,
    wantsObject: boolean,
  ): Promise<Response> {
    const pool = this.pool;
    if (!pool) throw new Error('PostgrestStandin: not started');
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      return json(
        503,
        errorBody('PGRST000', 'Database connection error. Retrying the connection.', (error as Error).message),
      );
    }
    let broken: Error | undefined;
    try {
      await client.query(`begin isolation level read committed, ${readOnly ? 'read only' : 'read write'}`);
      try {
        const settings: Array<[string, string]> = [
          ['search_path', SEARCH_PATH],
          ['role', role],
          ['request.jwt.claims', JSON.stringify(claims)],
          ['request.jwt.claim.sub', typeof claims.sub === 'string' ? claims.sub : ''],
          ['request.method', method],
          ['request.path', path],
        ];
        if (this.statementTimeoutMs !== undefined)
          settings.push(['statement_timeout', String(this.statementTimeoutMs)]);
        await client.query(
          `select ${settings.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`,
          settings.flat(),
        );
        const { sql, values } = callSql(routine, args);
        const result = await client.query<{ body: string; n: number; first: string | null }>(sql, values);
        let response: Response;
        if (routine.returnsVoid) {
          response = new Response(null, { status: 204, statusText: STATUS_CODES[204] });
        } else {
          const row = result.rows[0];
          const n = row?.n ?? 0;
          if (wantsObject && routine.returnsSet && n !== 1) {
            // PostgREST rolls the transaction back when `.single()` does not get exactly one row.
            await client.query('rollback');
            return json(
              406,
              errorBody(
                'PGRST116',
                'Cannot coerce the result to a single JSON object',
                `The result contains ${n} rows`,
              ),
            );
          }
          const body = wantsObject && routine.returnsSet ? (row?.first ?? 'null') : (row?.body ?? 'null');
          const range = routine.returnsSet && !wantsObject ? (n > 0 ? `0-${n - 1}/*` : '*/*') : '0-0/*';
          response = rawJson(200, body, { 'Content-Range': range });
        }
        await client.query('commit');
        return response;
      } catch (error) {
        await client.query('rollback').catch((e: Error) => {
          broken = e;
        });
        throw error;
      }
    } catch (error) {
      const e = error as Partial<pg.DatabaseError> & Error;
      if (typeof e.code !== 'string' || !/^[0-9A-Z]{5}$/.test(e.code)) {
        // No SQLSTATE: the connection itself failed (PostgREST: ClientError → 503 PGRST001).
        broken = e;
        return json(503, errorBody('PGRST001', 'Database client error. Retrying the connection.', e.message));
      }
      return pgErrorResponse(e.code, e.message, e.detail ?? null, e.hint ?? null, role !== ANON_ROLE);
    } finally {
      client.release(broken);
    }
  }

  private async loadSchemaCache(): Promise<Map<string, Routine[]>> {
    const pool = this.pool;
    if (!pool) throw new Error('PostgrestStandin: not started');
    const { rows } = await pool.query<{
      name: string;
      returns_set: boolean;
      returns_void: boolean;
      returns_composite: boolean;
      return_type: string;
      volatility: 'i' | 's' | 'v';
      n_defaults: number;
      args: Array<{ name: string | null; type: string; mode: string | null }>;
    }>(SCHEMA_CACHE_SQL, [SCHEMA]);
    const cache = new Map<string, Routine[]>();
    for (const row of rows) {
      // Input parameters only (IN, INOUT; modes o/t are output columns). The last
      // pronargdefaults inputs have defaults.
      const inputs = row.args.filter((a) => a.mode === null || a.mode === 'i' || a.mode === 'b' || a.mode === 'v');
      // Calls are by name, so functions with unnamed or VARIADIC inputs are left out (see header).
      if (inputs.some((a) => !a.name || a.mode === 'v')) continue;
      const params = inputs.map((a, i) => ({
        name: a.name ?? '',
        type: a.type,
        hasDefault: i >= inputs.length - row.n_defaults,
      }));
      const routine: Routine = {
        name: row.name,
        params,
        returnsSet: row.returns_set,
        returnsVoid: row.returns_void,
        returnsComposite: row.returns_composite,
        returnType: row.return_type,
        volatility: row.volatility,
      };
      cache.set(row.name, [...(cache.get(row.name) ?? []), routine]);
    }
    return cache;
  }
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

const SCHEMA_CACHE_SQL = `
  select p.proname as name,
         p.proretset as returns_set,
         p.prorettype = 'void'::regtype as returns_void,
         (t.typtype = 'c' or p.prorettype = 'record'::regtype) as returns_composite,
         format_type(p.prorettype, null) as return_type,
         p.provolatile::text as volatility,
         p.pronargdefaults::int as n_defaults,
         coalesce((
           select json_agg(json_build_object('name', a.name, 'type', format_type(a.type, null), 'mode', a.mode) order by a.idx)
           from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargnames, p.proargmodes::text[])
                with ordinality as a(type, name, mode, idx)
           where a.type is not null
         ), '[]'::json) as args
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  join pg_type t on t.oid = p.prorettype
  where n.nspname = $1 and p.prokind = 'f'`;

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The call, shaped like PostgREST's: the JSON arguments go through `json_to_record` with the
 * declared types (so a JSON string feeds a uuid, a JSON array a text[], any JSON a jsonb), and
 * the result is rendered by PostgreSQL's `json_agg`, so numbers, timestamps and jsonb come out as
 * PostgREST sends them (the body text is passed through untouched: a bigint stays exact on the wire).
 */
function callSql(routine: Routine, args: Record<string, unknown>): { sql: string; values: unknown[] } {
  const given = routine.params.filter((p) => Object.hasOwn(args, p.name));
  const source =
    given.length > 0
      ? `select * from json_to_record($1::json) as _(${given.map((p) => `${quoteIdent(p.name)} ${p.type}`).join(', ')})`
      : 'select';
  const call = `${quoteIdent(SCHEMA)}.${quoteIdent(routine.name)}(${given.map((p) => `${quoteIdent(p.name)} := pgrst_args.${quoteIdent(p.name)}`).join(', ')})`;
  const values = given.length > 0 ? [JSON.stringify(Object.fromEntries(given.map((p) => [p.name, args[p.name]])))] : [];
  if (routine.returnsVoid) {
    return { sql: `with pgrst_args as (${source}) select ${call} from pgrst_args`, values };
  }
  const item = routine.returnsComposite ? 'pgrst_call' : 'pgrst_call.pgrst_scalar';
  const alias = routine.returnsComposite ? 'pgrst_call' : 'pgrst_call(pgrst_scalar)';
  const body = routine.returnsSet ? `coalesce(json_agg(${item}), '[]')` : `coalesce(json_agg(${item}) -> 0, 'null')`;
  const sql = `with pgrst_args as (${source})
    select ${body}::text as body, count(*)::int as n, (json_agg(${item}) -> 0)::text as first
    from pgrst_args, lateral ${call} as ${alias}`;
  return { sql, values };
}

// ---------------------------------------------------------------------------------------------
// Supabase-like database
// ---------------------------------------------------------------------------------------------

/** Errors a concurrent `create role`/`grant` in another session can cause; worth a retry. */
const RACE_CODES = new Set(['23505', '42710', 'XX000', '40001', '40P01']);

/**
 * Makes a plain PostgreSQL database look like a Supabase one for RLS purposes:
 *  - cluster roles `anon`, `authenticated` (NOLOGIN NOINHERIT) and `service_role` (also
 *    BYPASSRLS), created only if missing. Roles are cluster-wide and test files run in parallel,
 *    so this tolerates another session creating them at the same moment (duplicate_object, or the
 *    unique_violation on pg_authid that concurrent CREATE ROLEs give) and retries;
 *  - membership of the connecting user in them, unless it is a superuser (who may SET ROLE anyway);
 *  - schema `auth` with `auth.users (id uuid primary key, email text)` and Supabase's
 *    `auth.uid()`, `auth.role()`, `auth.jwt()` (read the GUCs the stand-in sets per request);
 *  - usage on `public` and `auth` for the three roles, and Supabase's default privileges in
 *    `public` (all on tables, sequences, functions to anon, authenticated, service_role), for
 *    objects the connecting user creates from now on and for those that already exist.
 *
 * Run it BEFORE the project's migrations: their role-dependent parts (`create policy ... to
 * authenticated`, `revoke ... from anon`, grants) need the roles, and only objects created after
 * the default privileges get Supabase's grants the way a real project does.
 */
export async function prepareSupabaseLikeDatabase(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'postgrest-standin-prepare' });
  await client.connect();
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await client.query(ROLES_SQL);
        break;
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (attempt >= 5 || code === undefined || !RACE_CODES.has(code)) throw error;
        await sleep(50 * attempt);
      }
    }
    await client.query('begin');
    try {
      await client.query(DATABASE_SQL);
      await client.query('commit');
    } catch (error) {
      await client.query('rollback');
      throw error;
    }
  } finally {
    await client.end();
  }
}

const ROLES_SQL = `
do $$
declare
  r record;
begin
  for r in select * from (values
      ('anon', 'nologin noinherit'),
      ('authenticated', 'nologin noinherit'),
      ('service_role', 'nologin noinherit bypassrls')) as v(name, attrs)
  loop
    if not exists (select 1 from pg_roles where rolname = r.name) then
      begin
        execute format('create role %I %s', r.name, r.attrs);
      exception when duplicate_object or unique_violation then
        null; -- another test file created it a moment ago
      end;
    end if;
  end loop;
  if not (select rolbypassrls from pg_roles where rolname = 'service_role') then
    alter role service_role bypassrls;
  end if;
  for r in select unnest(array['anon', 'authenticated', 'service_role']) as name loop
    if not pg_has_role(current_user, r.name, 'member') then
      execute format('grant %I to %I', r.name, current_user);
    end if;
  end loop;
end
$$`;

const DATABASE_SQL = `
-- Advisory locks are per database: this serialises only two preparations of the same database.
select pg_advisory_xact_lock(7468657374);
create schema if not exists auth;
create table if not exists auth.users (id uuid primary key, email text);

-- As Supabase defines them (supabase/auth migrations): the legacy per-claim GUC first, then the
-- JSON claims PostgREST >= 9 sets.
create or replace function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create or replace function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

grant usage on schema public, auth to anon, authenticated, service_role;
grant execute on function auth.uid(), auth.role(), auth.jwt() to anon, authenticated, service_role;

alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
grant all on all tables in schema public to anon, authenticated, service_role;
grant all on all sequences in schema public to anon, authenticated, service_role;
grant all on all functions in schema public to anon, authenticated, service_role;
`;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return rawJson(status, JSON.stringify(body), headers);
}

function rawJson(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    statusText: STATUS_CODES[status] ?? '',
    headers: { 'Content-Type': 'application/json; charset=utf-8', ...headers },
  });
}

function pgErrorResponse(
  code: string,
  message: string,
  details: string | null,
  hint: string | null,
  authenticated: boolean,
): Response {
  if (code === 'PGRST') {
    // RAISE SQLSTATE 'PGRST' USING MESSAGE = '{"code":..,"message":..}', DETAIL = '{"status":..,"headers":{..}}'
    try {
      const m = JSON.parse(message) as Partial<PostgrestErrorBody>;
      const d = JSON.parse(details ?? '') as { status: number; headers?: Record<string, string> };
      if (typeof m.code !== 'string' || typeof m.message !== 'string' || typeof d.status !== 'number')
        throw new Error('shape');
      return json(d.status, errorBody(m.code, m.message, m.details ?? null, m.hint ?? null), d.headers ?? {});
    } catch {
      return json(500, errorBody('PGRST121', 'Could not parse JSON in the "RAISE SQLSTATE \'PGRST\'" error'));
    }
  }
  const status = statusForSqlState(code, message, authenticated);
  const headers: Record<string, string> = { 'Proxy-Status': `PostgREST; error=${code}` };
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer';
  return json(status, errorBody(code, message, details, hint), headers);
}

function jwtError(message: string): Response {
  return json(401, errorBody('PGRST301', message), {
    'WWW-Authenticate': `Bearer error="invalid_token", error_description=${JSON.stringify(message)}`,
  });
}

/** PostgREST's wording for JWT failures (Error.hs, JwtDecodeErr/JwtClaimsErr). */
function jwtErrorMessage(error: unknown, token: string): string {
  if (error instanceof joseErrors.JWTExpired) return 'JWT expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf') return 'JWT not yet valid';
    if (error.claim === 'iat') return 'JWT issued at future';
    return 'Parsing claims failed';
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'JWT cryptographic operation failed';
  if (error instanceof joseErrors.JOSEAlgNotAllowed || error instanceof joseErrors.JOSENotSupported) {
    return 'Wrong or unsupported encoding algorithm';
  }
  const parts = token.split('.').length;
  if (parts !== 3) return `Expected 3 parts in JWT; got ${parts}`;
  return "JWT couldn't be decoded";
}

function injectedResponse(r: InjectedResponse): Response {
  const nullBody = r.status === 204 || r.status === 304 || r.body === undefined;
  const body = nullBody ? null : typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
  return new Response(body, {
    status: r.status,
    statusText: STATUS_CODES[r.status] ?? '',
    headers: { ...(body === null ? {} : { 'Content-Type': 'application/json; charset=utf-8' }), ...r.headers },
  });
}

/** What Node's fetch (undici) throws when the server cannot be reached. */
function networkError(message: string, code: string): TypeError {
  return new TypeError('fetch failed', { cause: Object.assign(new Error(message), { code }) });
}

function takeFault<T>(faults: Array<Fault<T>>, fn: string): T | undefined {
  const i = faults.findIndex((f) => f.fn === fn || f.fn === '*');
  const fault = faults[i];
  if (fault === undefined) return undefined;
  fault.remaining--;
  if (fault.remaining <= 0) faults.splice(i, 1);
  return fault.value;
}

function overlap(routine: Routine, keys: string[]): number {
  return routine.params.filter((p) => keys.includes(p.name)).length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with the signal's reason when it fires first, as Node's fetch does. */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

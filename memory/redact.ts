/**
 * Credentials out of everything a person or a log can read. A connection string carries its
 * password in the userinfo (postgres://u:secret@h/db) or in the query (?password=secret), and
 * other URLs carry keys and tokens in the query; error messages, `lk-memory migrate`/`doctor`, the
 * worker's log and its /health JSON all print URLs, so they all go through here.
 */

export const REDACTED = '***';

/**
 * Query parameters whose value is a secret. libpq's own are password and sslpassword; the rest
 * are what HTTP APIs (Supabase among them) put in a URL. Paths such as sslkey, sslcert or
 * passfile name a file, not its content, and stay visible: they help find a misconfiguration.
 */
const SECRET_PARAMS = new Set([
  'password',
  'passwd',
  'pwd',
  'pass',
  'sslpassword',
  'secret',
  'client_secret',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'auth',
  'authorization',
  'apikey',
  'api_key',
  'api-key',
  'key',
  'service_role',
  'service_role_key',
  'sig',
  'signature',
  'jwt',
]);

/** A parameter name is secret when listed, or when it plainly says so (db_password, x-api-key, my_token). */
export function isSecretParam(name: string): boolean {
  const n = name.toLowerCase();
  return SECRET_PARAMS.has(n) || /(password|passwd|secret|token|api[-_]?key|service[-_]?role|credential)/.test(n);
}

/** Supabase keys (JWTs, and the newer sb_secret_ / sb_publishable_ keys) wherever they appear in text. */
const SUPABASE_KEY =
  /\b(?:eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+|sb_(?:secret|publishable)_[A-Za-z0-9_-]{8,})/g;

/** One URL with its credentials replaced by ***; a URL that does not parse is cut to its scheme. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Unparseable: where the password ends cannot be known, so print nothing after the scheme.
    const scheme = /^([a-z][a-z0-9+.-]*:)/i.exec(url)?.[1];
    return scheme ? `${scheme}//(unparseable URL, not shown)` : '(unparseable URL, not shown)';
  }
  if (parsed.password) parsed.password = REDACTED;
  // Pair by pair on the raw query, so that everything not secret stays exactly as written.
  if (parsed.search.length > 1) {
    const pairs = parsed.search
      .slice(1)
      .split('&')
      .map((pair) => {
        const at = pair.indexOf('=');
        const name = decodeURIComponentSafe((at < 0 ? pair : pair.slice(0, at)).replace(/\+/g, ' '));
        return isSecretParam(name) && at >= 0 ? `${pair.slice(0, at)}=${REDACTED}` : pair;
      });
    parsed.search = pairs.join('&');
  }
  if (parsed.hash) parsed.hash = '';
  return parsed.toString();
}

/** A URL anywhere in text: scheme://, then anything up to whitespace or a quote. */
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;
/** libpq keyword/value form (host=h password=secret), and password=... anywhere in free text. */
const KEYWORD_VALUE = /\b([A-Za-z][A-Za-z0-9_-]*)=('(?:[^'\\]|\\.)*'|[^\s&'"]+)/g;

/**
 * Text with every credential replaced: URLs are redacted whole, name=value pairs whose name is a
 * secret lose their value, Supabase keys disappear, and so does any of `secrets` (exact values the
 * caller knows, such as the environment's keys).
 */
export function redactText(text: string, secrets: Iterable<string | undefined> = []): string {
  let out = text.replace(URL_IN_TEXT, (url) => {
    // Trailing punctuation is usually the sentence's, not the URL's.
    const tail = /[).,;:]+$/.exec(url)?.[0] ?? '';
    return redactUrl(url.slice(0, url.length - tail.length)) + tail;
  });
  out = out.replace(KEYWORD_VALUE, (whole, name: string, value: string) => {
    if (!isSecretParam(name) || value.startsWith(REDACTED)) return whole;
    const tail = /[).,;:]+$/.exec(value)?.[0] ?? '';
    return `${name}=${REDACTED}${tail}`;
  });
  out = out.replace(SUPABASE_KEY, REDACTED);
  // Longest first, so that a secret containing another is replaced whole. Very short values
  // (under 4 characters) would blank ordinary words; they are too weak to be worth hiding anyway.
  const known = [...new Set([...secrets].filter((s): s is string => typeof s === 'string' && s.length >= 4))].sort(
    (a, b) => b.length - a.length,
  );
  for (const secret of known) out = out.split(secret).join(REDACTED);
  return out;
}

/** Variables whose values are secrets, and the passwords inside connection-string variables. */
const SECRET_VARIABLES = [
  'SUPABASE_SERVICE_ROLE_KEY',
  'SUPABASE_ANON_KEY',
  'MEMORY_ENCRYPTION_KEY',
  'MEMORY_ENCRYPTION_PREVIOUS_KEYS',
  'LIVEKIT_API_SECRET',
  'OPENAI_API_KEY',
];
const URL_VARIABLES = ['DATABASE_URL', 'SUPABASE_URL', 'LIVEKIT_URL', 'OPENAI_BASE_URL'];

/** The secret values an environment holds, for redactText: keys, and the credentials inside its URLs. */
export function secretsOf(env: NodeJS.ProcessEnv, extraUrls: Array<string | undefined> = []): string[] {
  const found: string[] = [];
  for (const name of SECRET_VARIABLES) {
    const value = env[name];
    if (!value) continue;
    found.push(value, ...value.split(',').map((v) => v.trim()));
  }
  for (const url of [...URL_VARIABLES.map((n) => env[n]), ...extraUrls]) {
    if (!url) continue;
    try {
      const parsed = new URL(url);
      if (parsed.password) found.push(parsed.password, decodeURIComponentSafe(parsed.password));
      for (const [name, value] of parsed.searchParams) if (isSecretParam(name) && value) found.push(value);
    } catch {
      // Unparseable (a space in the password, a bad port): the password is what lies between the
      // first ':' after the scheme and the last '@'.
      const userinfo = /^[a-z][a-z0-9+.-]*:\/\/(.*)@/is.exec(url)?.[1];
      const colon = userinfo?.indexOf(':') ?? -1;
      if (userinfo && colon >= 0) found.push(userinfo.slice(colon + 1));
    }
  }
  return found;
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

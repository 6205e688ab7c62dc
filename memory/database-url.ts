import { MemoryError } from './errors.js';

/**
 * A connection string is checked here, before anything connects: a malformed one would otherwise
 * surface much later, from the driver, as a migration or connection failure (wrong exit code,
 * wrong advice). Messages never repeat the string: it may hold a password.
 */

const SCHEME = /^postgres(?:ql)?:\/\//i;

/** Why `url` is not a usable PostgreSQL connection string, or undefined when it is. */
export function databaseUrlProblem(url: string): string | undefined {
  if (!SCHEME.test(url)) return 'must be a postgres:// or postgresql:// connection string';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `is not a valid connection string: ${diagnose(url)}`;
  }
  if (parsed.port === '0') return 'is not a valid connection string: the port must be a number from 1 to 65535';
  for (const [part, text] of [
    ['user name', parsed.username],
    ['password', parsed.password],
    ['database name', parsed.pathname.slice(1)],
  ] as const) {
    try {
      decodeURIComponent(text);
    } catch {
      return `is not a valid connection string: the ${part} has a % that does not start a percent-encoded character (write % as %25)`;
    }
  }
  return undefined;
}

/** What is wrong with a string `new URL` refused, named without repeating it. */
function diagnose(url: string): string {
  const rest = url.replace(SCHEME, '');
  const authority = rest.split(/[/?#]/, 1)[0]!;
  // The host is after the last @ of the authority, unless the password holds an unencoded / or ?.
  const hostPort = rest.includes('@') ? rest.slice(rest.lastIndexOf('@') + 1).split(/[/?#]/, 1)[0]! : authority;
  if (/\s/.test(rest)) return 'it contains a space or other whitespace; percent-encode it (a space is %20)';
  if (hostPort.startsWith('[') && !hostPort.includes(']'))
    return 'the IPv6 address is missing its closing ] (write it as [::1])';
  const port = hostPort.startsWith('[')
    ? hostPort.slice(hostPort.indexOf(']') + 1).replace(/^:/, '')
    : hostPort.split(':')[1];
  if (port !== undefined && port !== '' && !/^\d{1,5}$/.test(port)) return 'the port must be a number from 1 to 65535';
  if (port !== undefined && Number(port) > 65535) return 'the port must be a number from 1 to 65535';
  return 'percent-encode special characters in the user name and password (@ as %40, / as %2F, : as %3A, # as %23)';
}

/** `url` when it is a usable connection string; otherwise INVALID_CONFIG naming `name` (DATABASE_URL, --database-url, databaseUrl). */
export function checkDatabaseUrl(url: unknown, name: string): string {
  if (typeof url !== 'string')
    throw new MemoryError('INVALID_CONFIG', `${name} must be a string (a postgres:// connection string)`);
  const problem = databaseUrlProblem(url);
  if (problem) throw new MemoryError('INVALID_CONFIG', `${name} ${problem}`);
  return url;
}

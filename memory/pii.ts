/**
 * Sensitive values kept out of memory: a pure detector (it knows nothing of LiveKit or SQL) for
 * payment card numbers, national identifiers of a configurable shape, and credentials, and the
 * redaction that replaces only the spans it found.
 *
 * What counts, and why (false positives cost a memory the caller wanted; misses cost a leak):
 *
 * - **Card numbers**: a run of 13 to 19 digits, optionally grouped by single spaces or dashes,
 *   that passes the Luhn check AND starts with an issuer prefix of a major network with a length
 *   that network issues (Visa, Mastercard, American Express, Discover, JCB, Diners Club,
 *   UnionPay, Maestro, Mir). One random digit run in ten is Luhn-valid, so Luhn alone would refuse
 *   one long order number in ten; the prefix-and-length rule keeps order numbers, ISBNs (978/979),
 *   IMEIs (15 digits), tracking numbers (20+ digits) and the like out unless they happen to look
 *   exactly like a card. A run that is part of a longer digit run is never a card.
 * - **National identifiers**: by default the US Social Security number written with dashes or
 *   spaces (NNN-NN-NNNN, without the never-issued areas 000, 666 and 900-999, group 00 or serial
 *   0000) and the UK National Insurance number (AB123456C, the letters HMRC uses). Nine bare digits
 *   are not taken for an SSN: phone and order numbers look the same. Replace the shape with
 *   MEMORY_PII_NATIONAL_ID_PATTERN (a regular expression, checked when the configuration loads).
 * - **Credentials**: well-known API key shapes (OpenAI/Anthropic `sk-...`, AWS `AKIA`/`ASIA`,
 *   GitHub `ghp_`/`github_pat_`, Slack `xox?-`, Google `AIza`, Stripe secret `sk_live_`/`rk_live_`,
 *   JWTs, PEM private keys) anywhere in the value; "password / passcode / PIN / CVV is X" phrasing
 *   (only X is the credential); and the whole value when the memory's key names a credential
 *   (`wifi_password`, `bank_pin`, `api_key`, ...).
 */
import { MemoryError } from './errors.js';

export type SensitiveKind = 'card' | 'national-id' | 'credential';

/** One sensitive span of a value. Carries no part of the value: safe to log. */
export interface SensitiveFinding {
  kind: SensitiveKind;
  /** What exactly: `visa`, `us-ssn`, `github-token`, `password`, ... */
  detail: string;
  /** The span in the value, in UTF-16 units [start, end). */
  start: number;
  end: number;
}

/** refuse (default): nothing is stored; redact: stored with the spans replaced; allow: stored as is. */
export const PII_POLICIES = ['refuse', 'redact', 'allow'] as const;
export type PiiPolicy = (typeof PII_POLICIES)[number];
export const DEFAULT_PII_POLICY: PiiPolicy = 'refuse';

export interface PiiOptions {
  /** Default 'refuse'. */
  policy?: PiiPolicy;
  /**
   * The shapes of national identifiers (default: US SSN and UK National Insurance number). A
   * string is compiled as a regular expression with the `u` flag; an empty array turns this check off.
   */
  nationalIdPatterns?: ReadonlyArray<RegExp | string>;
}

/** The checked form of PiiOptions: what checkSensitive and screenValue take. */
export interface PiiSettings {
  policy: PiiPolicy;
  nationalIdPatterns: readonly RegExp[];
}

export const US_SSN_PATTERN = /\b(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}\b/u;
export const UK_NINO_PATTERN =
  /\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b/u;
export const DEFAULT_NATIONAL_ID_PATTERNS: readonly RegExp[] = [US_SSN_PATTERN, UK_NINO_PATTERN];

export const REDACTION_MARKERS: Readonly<Record<SensitiveKind, string>> = {
  card: '[redacted card number]',
  'national-id': '[redacted national id]',
  credential: '[redacted credential]',
};

/** How each kind is named to the model (and to the user): never with the value. */
export const SENSITIVE_KIND_NAMES: Readonly<Record<SensitiveKind, string>> = {
  card: 'a payment card number',
  'national-id': 'a national identification number',
  credential: 'a password or other credential',
};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

function compileNationalId(pattern: RegExp | string, name: string): RegExp {
  let source: RegExp;
  try {
    source = typeof pattern === 'string' ? new RegExp(pattern, 'u') : pattern;
  } catch (error) {
    throw new MemoryError(
      'INVALID_CONFIG',
      `${name} is not a valid regular expression (${(error as Error).message}): set it to a pattern such as \\b\\d{3}-\\d{2}-\\d{4}\\b, or unset it for the defaults`,
    );
  }
  // Global for finding every span; sticky and global flags of the caller's RegExp are replaced.
  const flags = `${source.flags.replace(/[gy]/g, '')}g`;
  const compiled = new RegExp(source.source, flags);
  compiled.lastIndex = 0;
  if (compiled.test('')) {
    throw new MemoryError(
      'INVALID_CONFIG',
      `${name} matches the empty string, so it would match everywhere: give the identifier's shape, e.g. \\b\\d{3}-\\d{2}-\\d{4}\\b`,
    );
  }
  return compiled;
}

/** Check options once (a bad pattern or policy is INVALID_CONFIG naming it). */
export function piiSettings(options: PiiOptions = {}): PiiSettings {
  const policy = options.policy ?? DEFAULT_PII_POLICY;
  if (!PII_POLICIES.includes(policy)) {
    throw new MemoryError(
      'INVALID_CONFIG',
      `pii policy must be one of ${PII_POLICIES.join(', ')}, not ${String(policy)}`,
    );
  }
  const patterns = options.nationalIdPatterns ?? DEFAULT_NATIONAL_ID_PATTERNS;
  return {
    policy,
    nationalIdPatterns: patterns.map((p, i) => compileNationalId(p, `nationalIdPatterns[${i}]`)),
  };
}

/**
 * MEMORY_PII_POLICY (refuse|redact|allow, default refuse) and MEMORY_PII_NATIONAL_ID_PATTERN (a
 * regular expression; default the US SSN and UK NINO shapes). A bad value is INVALID_CONFIG naming
 * the variable and what to set.
 */
export function piiSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): PiiSettings {
  const rawPolicy = env.MEMORY_PII_POLICY;
  let policy: PiiPolicy = DEFAULT_PII_POLICY;
  if (rawPolicy !== undefined && rawPolicy !== '') {
    if (!PII_POLICIES.includes(rawPolicy as PiiPolicy)) {
      throw new MemoryError(
        'INVALID_CONFIG',
        `MEMORY_PII_POLICY must be one of ${PII_POLICIES.join(', ')}, not ${JSON.stringify(rawPolicy)}`,
      );
    }
    policy = rawPolicy as PiiPolicy;
  }
  const rawPattern = env.MEMORY_PII_NATIONAL_ID_PATTERN;
  const nationalIdPatterns =
    rawPattern === undefined || rawPattern === ''
      ? DEFAULT_NATIONAL_ID_PATTERNS.map((p) => compileNationalId(p, 'default national id pattern'))
      : [compileNationalId(rawPattern, 'MEMORY_PII_NATIONAL_ID_PATTERN')];
  return { policy, nationalIdPatterns };
}

// ---------------------------------------------------------------------------------------------
// Cards
// ---------------------------------------------------------------------------------------------

/** Luhn (mod 10) over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i -= 1) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

interface Network {
  name: string;
  /** Prefix ranges, inclusive, compared on the first `length of the bound` digits. */
  ranges: ReadonlyArray<readonly [string, string]>;
  lengths: readonly number[];
}

const NETWORKS: readonly Network[] = [
  { name: 'visa', ranges: [['4', '4']], lengths: [13, 16, 19] },
  {
    name: 'mastercard',
    ranges: [
      ['51', '55'],
      ['2221', '2720'],
    ],
    lengths: [16],
  },
  {
    name: 'amex',
    ranges: [
      ['34', '34'],
      ['37', '37'],
    ],
    lengths: [15],
  },
  {
    name: 'discover',
    ranges: [
      ['6011', '6011'],
      ['644', '649'],
      ['65', '65'],
    ],
    lengths: [16, 17, 18, 19],
  },
  { name: 'jcb', ranges: [['3528', '3589']], lengths: [16, 17, 18, 19] },
  {
    name: 'diners',
    ranges: [
      ['300', '305'],
      ['3095', '3095'],
      ['36', '36'],
      ['38', '39'],
    ],
    lengths: [14, 15, 16, 17, 18, 19],
  },
  { name: 'unionpay', ranges: [['62', '62']], lengths: [16, 17, 18, 19] },
  {
    name: 'maestro',
    ranges: [
      ['5018', '5018'],
      ['5020', '5020'],
      ['5038', '5038'],
      ['5893', '5893'],
      ['6304', '6304'],
      ['6759', '6759'],
      ['6761', '6763'],
    ],
    lengths: [13, 14, 15, 16, 17, 18, 19],
  },
  { name: 'mir', ranges: [['2200', '2204']], lengths: [16, 17, 18, 19] },
];

/** The card network of a digit string by its issuer prefix and length, or undefined. */
export function cardNetwork(digits: string): string | undefined {
  for (const network of NETWORKS) {
    if (!network.lengths.includes(digits.length)) continue;
    for (const [from, to] of network.ranges) {
      const prefix = digits.slice(0, from.length);
      if (prefix >= from && prefix <= to) return network.name;
    }
  }
  return undefined;
}

// 13-19 digits, single spaces or dashes between them; not part of a longer digit run (grouped or not).
const CARD_CANDIDATE = /(?<!\d[ -]?)\d(?:[ -]?\d){12,18}(?![ -]?\d)/g;

function findCards(value: string): SensitiveFinding[] {
  const found: SensitiveFinding[] = [];
  for (const match of value.matchAll(CARD_CANDIDATE)) {
    const digits = match[0].replace(/[ -]/g, '');
    if (!luhnValid(digits)) continue;
    const network = cardNetwork(digits);
    if (!network) continue;
    found.push({ kind: 'card', detail: network, start: match.index, end: match.index + match[0].length });
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// National identifiers
// ---------------------------------------------------------------------------------------------

function findNationalIds(value: string, patterns: readonly RegExp[]): SensitiveFinding[] {
  const found: SensitiveFinding[] = [];
  patterns.forEach((pattern, i) => {
    const detail =
      pattern.source === US_SSN_PATTERN.source
        ? 'us-ssn'
        : pattern.source === UK_NINO_PATTERN.source
          ? 'uk-nino'
          : `pattern-${i}`;
    pattern.lastIndex = 0;
    for (const match of value.matchAll(pattern)) {
      if (match[0].length === 0) continue;
      found.push({ kind: 'national-id', detail, start: match.index, end: match.index + match[0].length });
    }
  });
  return found;
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

const KEY_SHAPES: ReadonlyArray<{ detail: string; pattern: RegExp }> = [
  { detail: 'openai-key', pattern: /(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}/g },
  { detail: 'aws-access-key', pattern: /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g },
  { detail: 'github-token', pattern: /\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})/g },
  { detail: 'slack-token', pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}/g },
  { detail: 'google-api-key', pattern: /\bAIza[0-9A-Za-z_-]{35}/g },
  { detail: 'stripe-secret-key', pattern: /\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}/g },
  { detail: 'jwt', pattern: /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}/g },
  {
    detail: 'private-key',
    pattern: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[\s\S]*$)/g,
  },
];

/**
 * "password is X", "PIN: 1234", "my wifi passcode was X", "cvv 123": X is the credential. Words
 * that describe a password rather than being one ("my password is too short") are not taken.
 */
const SECRET_PHRASE =
  /\b(password|passwd|passcode|passphrase|pass phrase|pin(?: code| number)?|cvv2?|cvc|security code)\b(?:\s+for\s+(?:the\s+|my\s+|our\s+)?[\p{L}\p{N}_-]+)?(?:\s+(?:is|was)(?:\s*:)?\s+|\s*[:=]\s*|\s+(?=\d))["'“‘]?(?<secret>[^\s"'”’]{3,})/giu;

const NOT_A_SECRET = new Set([
  'the',
  'a',
  'an',
  'my',
  'your',
  'our',
  'not',
  'no',
  'on',
  'in',
  'at',
  'of',
  'for',
  'to',
  'too',
  'very',
  'so',
  'set',
  'reset',
  'changed',
  'change',
  'expired',
  'expires',
  'weak',
  'strong',
  'required',
  'wrong',
  'correct',
  'same',
  'different',
  'stored',
  'saved',
  'written',
  'somewhere',
  'secret',
  'private',
  'hidden',
  'long',
  'short',
  'missing',
  'unknown',
  'forgotten',
  'lost',
  'old',
  'new',
  'manager',
  'protected',
  'locked',
  'easy',
  'hard',
  'and',
  'or',
  'but',
  'that',
  'this',
  'it',
  'please',
  'again',
  'also',
  'still',
  'now',
  'here',
  'there',
  'what',
  'with',
  'without',
  'number',
  'code',
  'sensitive',
  'confidential',
  'something',
  'reminder',
  'hint',
]);

/** A memory key that names a credential: its whole value is one. Matched on the key's words. */
const CREDENTIAL_KEY_WORDS = new Set([
  'password',
  'passwd',
  'pwd',
  'passcode',
  'passphrase',
  'pin',
  'cvv',
  'cvv2',
  'cvc',
  'credential',
  'credentials',
  'otp',
]);
const CREDENTIAL_KEY_PAIRS = [
  ['api', 'key'],
  ['apikey'],
  ['access', 'token'],
  ['auth', 'token'],
  ['refresh', 'token'],
  ['bearer', 'token'],
  ['private', 'key'],
  ['secret', 'key'],
  ['client', 'secret'],
  ['security', 'code'],
] as const;

function keyWords(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

/** True when a memory key names a credential (`wifi_password`, `bankPin`, `api_key`). */
export function isCredentialKey(key: string): boolean {
  const words = keyWords(key);
  if (words.some((w) => CREDENTIAL_KEY_WORDS.has(w))) return true;
  return CREDENTIAL_KEY_PAIRS.some((pair) => words.some((_, i) => pair.every((part, j) => words[i + j] === part)));
}

function findCredentials(value: string, key: string | undefined): SensitiveFinding[] {
  const found: SensitiveFinding[] = [];
  for (const { detail, pattern } of KEY_SHAPES) {
    for (const match of value.matchAll(pattern)) {
      found.push({ kind: 'credential', detail, start: match.index, end: match.index + match[0].length });
    }
  }
  for (const match of value.matchAll(SECRET_PHRASE)) {
    const word = match[1]!.toLowerCase();
    let secret = match.groups!.secret!;
    // Trailing sentence punctuation is not part of it ("my PIN is 1234.").
    secret = secret.replace(/[.,;:!?)\]]+$/u, '');
    if (secret.length < 3 || NOT_A_SECRET.has(secret.toLowerCase())) continue;
    const numeric = /^(?:pin|cvv|cvc|security code)/.test(word);
    if (numeric && !/^\d{3,12}$/.test(secret)) continue;
    const end = match.index + match[0].length - (match.groups!.secret!.length - secret.length);
    found.push({
      kind: 'credential',
      detail: numeric ? word.split(' ')[0]! : 'password',
      start: end - secret.length,
      end,
    });
  }
  if (key !== undefined && isCredentialKey(key) && value.trim() !== '') {
    found.push({ kind: 'credential', detail: 'credential-key', start: 0, end: value.length });
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// The detector and redaction
// ---------------------------------------------------------------------------------------------

/**
 * Every sensitive span of a value, in order, overlapping spans merged (the first-found kind of a
 * merged span is kept: credential, then card, then national id). `key`, when given, is the
 * memory's key: a key naming a credential makes the whole value one. The policy is not applied
 * here: `allow` still finds what it allows.
 */
export function checkSensitive(
  value: string,
  options: { settings?: PiiSettings; key?: string } = {},
): SensitiveFinding[] {
  const settings = options.settings ?? piiSettings();
  const all = [
    ...findCredentials(value, options.key),
    ...findCards(value),
    ...findNationalIds(value, settings.nationalIdPatterns),
  ];
  // Stable by start, earlier kinds first at equal starts.
  const order = (f: SensitiveFinding) => all.indexOf(f);
  all.sort((a, b) => a.start - b.start || order(a) - order(b));
  const merged: SensitiveFinding[] = [];
  for (const finding of all) {
    const last = merged.at(-1);
    if (last && finding.start < last.end) {
      last.end = Math.max(last.end, finding.end);
      continue;
    }
    merged.push({ ...finding });
  }
  return merged;
}

/** The value with each finding's span replaced by its marker (`[redacted card number]`, ...). */
export function redactSensitive(value: string, findings: readonly SensitiveFinding[]): string {
  let out = '';
  let at = 0;
  for (const f of [...findings].sort((a, b) => a.start - b.start)) {
    if (f.start < at) continue;
    out += value.slice(at, f.start) + REDACTION_MARKERS[f.kind];
    at = f.end;
  }
  return out + value.slice(at);
}

/** The distinct kinds of findings, in a fixed order (for messages and logs). */
export function sensitiveKinds(findings: readonly SensitiveFinding[]): SensitiveKind[] {
  return (['card', 'national-id', 'credential'] as const).filter((k) => findings.some((f) => f.kind === k));
}

/** A value after the policy: what to store, or that nothing is stored, and what was found. */
export type ScreenedValue =
  | { action: 'store'; value: string; findings: [] }
  | { action: 'redact'; value: string; findings: SensitiveFinding[] }
  | { action: 'refuse'; findings: SensitiveFinding[] };

/**
 * Apply the policy to one value: `store` (nothing sensitive, or policy `allow`: not even looked
 * at), `redact` (stored with the spans replaced) or `refuse` (nothing stored).
 */
export function screenValue(value: string, settings: PiiSettings, key?: string): ScreenedValue {
  if (settings.policy === 'allow') return { action: 'store', value, findings: [] };
  const findings = checkSensitive(value, { settings, key });
  if (findings.length === 0) return { action: 'store', value, findings: [] };
  if (settings.policy === 'redact') return { action: 'redact', value: redactSensitive(value, findings), findings };
  return { action: 'refuse', findings };
}

/** "a payment card number and a password or other credential": what was found, never the value. */
export function describeSensitive(findings: readonly SensitiveFinding[]): string {
  const names = sensitiveKinds(findings).map((k) => SENSITIVE_KIND_NAMES[k]);
  if (names.length <= 1) return names[0] ?? 'nothing sensitive';
  return `${names.slice(0, -1).join(', ')} and ${names.at(-1)!}`;
}

import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { MemoryError } from '../errors.js';
import { identityToUserId } from '../identity.js';
import { checkCategory, checkKey, checkValue } from '../labels.js';
import { MAX_SECRET_BYTES, checkConfig, checkSecretNames, checkTenant } from '../settings/schema.js';
import { MAX_CLOCK_DRIFT_MS, isWriteClock } from './clock.js';
import type { JournalOp } from './types.js';

/**
 * One journal line: `<HMAC-SHA256 of the body, 64 hex digits> <body>\n`, the body a JSON object
 * `{ v, target, at, pid, op, ... }`. The MAC is keyed by the data folder's journal key (key.ts), so
 * a line that anyone else wrote, or altered, fails it. An authenticated line is still checked as
 * strictly as a direct write: a bug (or a stolen key) must not let a line reach another user's
 * rows, bypass a limit, or name an operation that does not exist.
 */
export const JOURNAL_FORMAT = 2;

export interface CodecContext {
  /** The journal key (32 bytes). */
  key: Buffer;
  /** Id of the database the journal is for: lines naming another are set aside. */
  target: string;
  /** UUIDv5 namespace of the store: user ids are recomputed from identities with it. */
  namespace: string;
  /** The store's maxValueBytes. */
  maxValueBytes: number;
}

/**
 * Longest line read: any legal value escaped as JSON (at most 6 bytes per byte, as \u00XX) plus
 * room for settings. Longer lines are refused before they are parsed.
 */
export function maxLineBytes(maxValueBytes: number): number {
  return 6 * maxValueBytes + 1024 * 1024;
}

export type Decoded = { ok: true; op: JournalOp } | { ok: false; kind: 'corrupt' | 'invalid'; reason: string };

const MAC_HEX = 64;

export function mac(key: Buffer, body: string): string {
  return createHmac('sha256', key).update(body, 'utf8').digest('hex');
}

/** A line for `body` under `key`, exactly as the journal writes it. */
export function sealLine(key: Buffer, body: string): string {
  return `${mac(key, body)} ${body}\n`;
}

/** Encode an entry; throws the typed error a direct write with the same input would throw. */
export function encodeLine(op: JournalOp, ctx: CodecContext): string {
  const checked = validate(op, ctx); // never write a line this journal would set aside on reading
  const body = JSON.stringify({
    v: JOURNAL_FORMAT,
    target: ctx.target,
    at: new Date().toISOString(),
    pid: process.pid,
    ...checked,
  });
  const line = sealLine(ctx.key, body);
  if (Buffer.byteLength(line) > maxLineBytes(ctx.maxValueBytes)) {
    throw new MemoryError(
      'INVALID_SETTINGS',
      `this write is ${Buffer.byteLength(line)} bytes as a journal line; the journal takes at most ${maxLineBytes(ctx.maxValueBytes)}: save fewer secrets at once`,
    );
  }
  return line;
}

/** Decode one line (without its newline): the entry, or why it is set aside. Never throws. */
export function decodeLine(line: string, ctx: CodecContext): Decoded {
  const limit = maxLineBytes(ctx.maxValueBytes);
  if (line.length > limit || Buffer.byteLength(line) > limit)
    return { ok: false, kind: 'corrupt', reason: `line is ${Buffer.byteLength(line)} bytes; the limit is ${limit}` };
  const given = line.slice(0, MAC_HEX);
  if (line.charAt(MAC_HEX) !== ' ' || !/^[0-9a-f]{64}$/.test(given)) {
    return {
      ok: false,
      kind: 'corrupt',
      reason: 'not a journal line of this format (no MAC): written by an older version or by something else',
    };
  }
  const body = line.slice(MAC_HEX + 1);
  if (!timingSafeEqual(Buffer.from(given, 'hex'), Buffer.from(mac(ctx.key, body), 'hex'))) {
    return {
      ok: false,
      kind: 'corrupt',
      reason: 'MAC check failed: the line was not written under this journal key, or was altered',
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(body, (name, value: unknown) => {
      // An own "__proto__" key becomes a prototype when copied into an object: never let one through.
      if (name === '__proto__') throw new ForbiddenKey();
      return value;
    });
  } catch (error) {
    return {
      ok: false,
      kind: 'invalid',
      reason: error instanceof ForbiddenKey ? 'holds a "__proto__" key' : 'body is not valid JSON',
    };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    return { ok: false, kind: 'invalid', reason: 'body is not a JSON object' };
  const header = json as { v?: unknown; target?: unknown };
  if (header.v !== JOURNAL_FORMAT)
    return {
      ok: false,
      kind: 'invalid',
      reason: `unknown entry version ${JSON.stringify(header.v)} (this version reads ${JOURNAL_FORMAT})`,
    };
  if (header.target !== ctx.target) {
    return {
      ok: false,
      kind: 'invalid',
      reason: `written for another database (${JSON.stringify(header.target)}, this journal is for ${ctx.target})`,
    };
  }
  const parsed = LINE.safeParse(json);
  if (!parsed.success) return { ok: false, kind: 'invalid', reason: describe(parsed.error) };
  const { v: _v, target: _t, at: _a, pid: _p, ...op } = parsed.data;
  try {
    return { ok: true, op: validate(op as JournalOp, ctx) };
  } catch (error) {
    return {
      ok: false,
      kind: 'invalid',
      reason: error instanceof MemoryError ? `${error.code}: ${error.message}` : String(error),
    };
  }
}

class ForbiddenKey extends Error {}

/**
 * The checks of a direct write, on an entry whose shape is known: the same functions UserMemory
 * calls. Returns a fresh entry built from the checked fields only.
 */
function validate(op: JournalOp, ctx: CodecContext): JournalOp {
  const expected = identityToUserId(op.identity, ctx.namespace);
  if (op.userId !== expected) {
    throw new MemoryError(
      'USER_MISMATCH',
      `user id ${JSON.stringify(op.userId)} is not the id of identity ${JSON.stringify(op.identity)} (${expected} in namespace ${ctx.namespace})`,
    );
  }
  checkClock(op.clock);
  const base = { userId: expected, identity: op.identity, clock: op.clock };
  switch (op.op) {
    case 'store':
      return {
        op: 'store',
        ...base,
        category: checkCategory(op.category),
        key: checkKey(op.key),
        value: checkValue(op.value, ctx.maxValueBytes),
        ...(op.expiresAt === undefined ? {} : { expiresAt: checkExpiry(op.expiresAt) }),
      };
    case 'forget':
      return { op: 'forget', ...base, category: checkCategory(op.category), key: checkKey(op.key) };
    case 'settings': {
      const secrets: Record<string, z.infer<typeof SECRET>> = {};
      checkSecretNames(Object.keys(op.secrets));
      for (const [name, secret] of Object.entries(op.secrets)) {
        const shape = SECRET.safeParse(secret);
        if (!shape.success)
          throw new MemoryError(
            'INVALID_SETTINGS',
            `secret ${name} is not an encrypted secret: ${describe(shape.error)}`,
          );
        if (shape.data.at !== undefined) checkClock(shape.data.at);
        secrets[name] = shape.data;
      }
      return {
        op: 'settings',
        ...base,
        tenant: checkTenant(op.tenant),
        config: op.config === null ? null : checkConfig(op.config),
        secrets,
        removeSecrets: checkSecretNames(op.removeSecrets),
      };
    }
    default:
      return unknownOp(op);
  }
}

function unknownOp(op: never): never {
  throw new MemoryError('INVALID_OPTION', `unknown journal operation ${JSON.stringify((op as { op: unknown }).op)}`);
}

/** A store's own expiry as the journal keeps it: an ISO timestamp (it may have passed by the time it is read). */
function checkExpiry(expiresAt: unknown): string {
  if (typeof expiresAt !== 'string' || Number.isNaN(Date.parse(expiresAt))) {
    throw new MemoryError('INVALID_OPTION', `expiresAt ${JSON.stringify(expiresAt)} is not a timestamp`);
  }
  return expiresAt;
}

function checkClock(clock: unknown): void {
  if (!isWriteClock(clock))
    throw new MemoryError('INVALID_OPTION', `clock ${JSON.stringify(clock)} is not a write clock`);
  // A clock from the future would win over every real write made before that time.
  if (Number(clock.slice(0, 15)) > Date.now() + MAX_CLOCK_DRIFT_MS)
    throw new MemoryError('INVALID_OPTION', `clock ${clock} is in the future`);
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const where = issue.path.length > 0 ? issue.path.join('.') : 'entry';
  const keys =
    'keys' in issue && Array.isArray(issue.keys) ? ` (${issue.keys.map((k) => JSON.stringify(k)).join(', ')})` : '';
  return `${where}: ${issue.message}${keys}`;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** EncryptedSecret (settings/cipher.ts), exactly: AES-256-GCM with a 12-byte iv and a 16-byte tag. */
const SECRET = z.strictObject({
  v: z.literal(1),
  kid: z.string().regex(/^[0-9a-f]{16}$/),
  iv: z.string().length(16).regex(BASE64),
  ct: z
    .string()
    .min(4)
    .max(Math.ceil(MAX_SECRET_BYTES / 3) * 4)
    .regex(BASE64),
  tag: z.string().length(24).regex(BASE64),
  at: z.string().optional(),
});

const HEADER = {
  v: z.literal(JOURNAL_FORMAT),
  target: z.string(),
  at: z.string().max(40),
  pid: z.number().int().positive(),
  userId: z.string(),
  identity: z.string(),
  clock: z.string(),
};

/** The line's shape; the values are then checked by validate(). Unknown fields are refused. */
const LINE = z.discriminatedUnion('op', [
  z.strictObject({
    ...HEADER,
    op: z.literal('store'),
    category: z.string(),
    key: z.string(),
    value: z.string(),
    expiresAt: z.iso.datetime({ offset: true }).optional(),
  }),
  z.strictObject({ ...HEADER, op: z.literal('forget'), category: z.string(), key: z.string() }),
  z.strictObject({
    ...HEADER,
    op: z.literal('settings'),
    tenant: z.string(),
    config: z.record(z.string(), z.unknown()).nullable(),
    secrets: z.record(z.string(), z.unknown()),
    removeSecrets: z.array(z.string()).max(1000),
  }),
]);

export interface ParsedJournal {
  /** Intact, authenticated, valid entries, in file order, with their exact text. */
  entries: Array<{ line: number; op: JournalOp; text: string }>;
  /** Lines set aside, with their text and why. */
  bad: Array<{ line: number; text: string; kind: 'corrupt' | 'invalid'; reason: string }>;
  /** The unterminated last line, if any: a write cut short by a crash (or still in progress). */
  torn: { line: number; text: string } | undefined;
}

/** Decode a journal file's text line by line. */
export function parseJournal(text: string, ctx: CodecContext): ParsedJournal {
  const parts = text.split('\n');
  const last = parts.pop()!;
  const result: ParsedJournal = {
    entries: [],
    bad: [],
    torn: last === '' ? undefined : { line: parts.length + 1, text: last },
  };
  parts.forEach((text, i) => {
    if (text === '') return;
    const decoded = decodeLine(text, ctx);
    if (decoded.ok) result.entries.push({ line: i + 1, op: decoded.op, text });
    else result.bad.push({ line: i + 1, text, kind: decoded.kind, reason: decoded.reason });
  });
  return result;
}

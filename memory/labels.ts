import { MemoryError } from './errors.js';
import { DEFAULTS } from './defaults.js';

/** Categories are upper-case identifiers: FACT, PREFERENCE, TASK_2, ... */
export const CATEGORY_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;
export const MAX_KEY_CHARS = 256;
export const DEFAULT_MAX_VALUE_BYTES = DEFAULTS.maxValueBytes;

// C0 controls, DEL and C1 controls: invisible in logs and prompts, and a way to smuggle
// line breaks into a memory block, so keys may not hold them.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

export function checkCategory(category: unknown): string {
  if (typeof category !== 'string' || !CATEGORY_PATTERN.test(category)) {
    throw new MemoryError(
      'INVALID_CATEGORY',
      `category ${JSON.stringify(category)} is invalid: use an upper-case identifier matching ${CATEGORY_PATTERN.source} (e.g. FACT, PREFERENCE)`,
    );
  }
  return category;
}

export function checkKey(key: unknown): string {
  if (typeof key !== 'string') {
    throw new MemoryError('INVALID_KEY', `key must be a string, got ${typeof key}`);
  }
  if (!key.isWellFormed()) {
    throw new MemoryError('INVALID_KEY', 'key is not valid UTF-16 (it holds a lone surrogate)');
  }
  // Counted in code points, which is what a person means by "characters". A string's UTF-16
  // length is never below its code-point count, so short keys skip the count (hot path).
  const length =
    key.length <= MAX_KEY_CHARS ? key.length - (key.match(/[\ud800-\udbff]/g)?.length ?? 0) : [...key].length;
  if (length < 1 || length > MAX_KEY_CHARS) {
    throw new MemoryError('INVALID_KEY', `key must be 1 to ${MAX_KEY_CHARS} characters, got ${length}`);
  }
  if (CONTROL_CHARS.test(key)) {
    throw new MemoryError('INVALID_KEY', `key ${JSON.stringify(key)} contains a control character`);
  }
  return key;
}

export function checkValue(value: unknown, maxBytes: number): string {
  if (typeof value !== 'string') {
    throw new MemoryError('INVALID_VALUE', `value must be a string, got ${typeof value}`);
  }
  if (!value.isWellFormed()) {
    throw new MemoryError(
      'INVALID_VALUE',
      'value is not valid UTF-16 (it holds a lone surrogate), so it is not UTF-8 text',
    );
  }
  if (value.includes('\u0000')) {
    throw new MemoryError('INVALID_VALUE', 'value contains a NUL character, which PostgreSQL text cannot store');
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes: only long values need measuring (hot path).
  const bytes = value.length * 3 <= maxBytes ? 0 : Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) {
    throw new MemoryError('INVALID_VALUE', `value is ${bytes} UTF-8 bytes; the limit is ${maxBytes} (maxValueBytes)`);
  }
  return value;
}

export function checkLimit(limit: unknown, name: string, max: number): number {
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0 || limit > max) {
    throw new MemoryError('INVALID_OPTION', `${name} must be an integer from 0 to ${max}, got ${String(limit)}`);
  }
  return limit;
}

/** Longest search query, in characters (a turn's text is cut to this by the recall helper). */
export const MAX_QUERY_CHARS = 4096;

// Control characters of a query (line breaks of a turn's text, NUL, escapes) separate words.
const QUERY_CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * A search query: text of 1 to MAX_QUERY_CHARS characters with something besides spaces and
 * control characters, which become spaces. Returns the query as it is searched. The full-text
 * syntax means nothing here: the database takes words out of it, never operators.
 */
export function checkQuery(query: unknown): string {
  if (typeof query !== 'string') {
    throw new MemoryError('INVALID_QUERY', `the search query must be a string, got ${typeof query}`);
  }
  if (!query.isWellFormed()) {
    throw new MemoryError('INVALID_QUERY', 'the search query is not valid UTF-16 (it holds a lone surrogate)');
  }
  if (query.length > MAX_QUERY_CHARS) {
    throw new MemoryError(
      'INVALID_QUERY',
      `the search query is ${query.length} characters; the limit is ${MAX_QUERY_CHARS}: search with the few words that matter`,
    );
  }
  const cleaned = query.replace(QUERY_CONTROL_CHARS, ' ').trim();
  if (cleaned.length === 0) {
    throw new MemoryError('INVALID_QUERY', 'the search query is empty: give the words to look for');
  }
  return cleaned;
}

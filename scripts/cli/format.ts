import type { Memory } from '../../memory/index.js';

/**
 * Characters a terminal acts on instead of showing: C0 controls (ESC starts colour, cursor and
 * title sequences, BEL rings), DEL, C1 controls (U+009B is a one-character CSI), the bidi marks,
 * embeddings, overrides and isolates (text that reads differently from what it is), and the line
 * and paragraph separators. Stored values are anyone's text, so human output shows these escaped.
 */
const TERMINAL_UNSAFE = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;
/** The same, and the tab too (list's field separator). */
const FIELD_UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

function escapeChar(c: string): string {
  if (NAMED[c]) return NAMED[c];
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** One line of human output with every terminal-active character shown as \xNN or \uNNNN (tabs stay). */
export function escapeTerminal(line: string): string {
  return line.replace(TERMINAL_UNSAFE, escapeChar);
}

/** Human output of several lines: each line escaped, the line breaks between them kept. */
export function humanText(text: string): string {
  return text.split('\n').map(escapeTerminal).join('\n');
}

/**
 * One field of list's tab-separated lines: backslashes doubled first, so the escapes are
 * unambiguous (a stored "\x1b" prints as \\x1b, an ESC as \x1b).
 */
export function escapeField(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(FIELD_UNSAFE, escapeChar);
}

export function memoryLine(memory: Memory): string {
  return [memory.category, escapeField(memory.key), escapeField(memory.value), memory.updatedAt.toISOString()].join(
    '\t',
  );
}

export function memoryJson(memory: Memory): Record<string, string> {
  return {
    category: memory.category,
    key: memory.key,
    value: memory.value,
    createdAt: memory.createdAt.toISOString(),
    updatedAt: memory.updatedAt.toISOString(),
  };
}

import { llm } from '@livekit/agents';
import { z } from 'zod';
import { MemoryError, type MemoryConsent, type UserMemory } from '../memory/index.js';
import { piiSettings, type PiiOptions } from '../memory/pii.js';
import { quoteMemoryText } from './memory-block.js';
import { screenRemember, type SensitiveValueEvent } from './sensitive.js';

export const DEFAULT_CATEGORIES = ['FACT', 'PREFERENCE', 'PERSONAL', 'TASK'] as const;

export interface MemoryToolsOptions {
  /** Categories offered to the model as an enumeration (default FACT, PREFERENCE, PERSONAL, TASK). */
  categories?: readonly string[];
  /** How many memories list_memories returns at most (default 50). */
  listLimit?: number;
  /** How many matches search_memories returns at most (default 5). */
  searchLimit?: number;
  /**
   * How long a tool waits for the database, in milliseconds (default 3000). After that the model gets
   * a sentence saying memory is slow; the call itself is not cancelled and may still complete.
   */
  timeoutMs?: number;
  /**
   * Told after every tool call how long the model waited for memory (for logs and latency
   * figures). Never given a value or a key: only the tool's name, the time and the outcome.
   */
  onCall?: (call: MemoryToolCall) => void;
  /**
   * Sensitive values (card numbers, national ids, credentials) in what `remember` is given:
   * refused (default), redacted, or allowed (MEMORY_PII_POLICY; see memory/pii.ts).
   */
  pii?: PiiOptions;
  /** Told when remember refused or redacted something: kinds only, never the value or key. */
  onSensitive?: (event: SensitiveValueEvent) => void;
  /**
   * The caller's consent at session start (startSession's `consent`, default granted). While it is
   * not granted, remember answers without writing; forget_me and remember_me change it.
   */
  consent?: MemoryConsent;
}

/** One tool call as `onCall` reports it. */
export interface MemoryToolCall {
  tool: string;
  /** From the model's call to the answer the model gets. */
  ms: number;
  /** `answered`: the work finished (successfully or with an explained failure); `slow`: the timeout answered. */
  outcome: 'answered' | 'slow';
}

export const DEFAULT_TOOL_TIMEOUT_MS = 3000;

/** The names the model sees. */
export const MEMORY_TOOL_NAMES = [
  'remember',
  'recall',
  'forget',
  'list_memories',
  'search_memories',
  'forget_me',
  'remember_me',
] as const;

/** What remember answers while the caller has withdrawn consent (nothing is stored). */
export const CONSENT_DENIED_ANSWER =
  'Not saved: this caller asked not to be remembered, so memory is off at their request and nothing is stored about them. ' +
  'Do not offer to remember things. If they ask to be remembered again, call remember_me first.';
/** What remember answers while the caller has not agreed yet (MEMORY_CONSENT_DEFAULT=ask). */
export const CONSENT_REQUIRED_ANSWER =
  'Not saved: this caller has not agreed to be remembered yet, so nothing is stored about them. ' +
  'Ask them whether you may remember things about them for next time. If they agree, call remember_me and then save again; ' +
  'if they decline, call forget_me.';

/**
 * A failure becomes a sentence for the model, never an exception: an exception would end the
 * turn with "An internal error occurred" and leave the caller waiting for an answer.
 */
function explain(action: string, kind: 'read' | 'write', error: unknown): string {
  const tell = kind === 'write' ? 'Tell the user it was not done' : 'Tell the user you cannot check right now';
  if (error instanceof MemoryError) {
    if (error.code === 'CONSENT_DENIED') return CONSENT_DENIED_ANSWER;
    if (error.code === 'CONSENT_REQUIRED') return CONSENT_REQUIRED_ANSWER;
    if (error.isInputError) return `Could not ${action}: ${error.message}. Fix the arguments and try again.`;
    if (error.code === 'TIMEOUT')
      return `Could not ${action}: memory is slow right now (TIMEOUT). ${tell} and carry on.`;
    return `Could not ${action}: memory is unavailable right now (${error.code}). ${tell} and carry on.`;
  }
  return `Could not ${action}: memory is unavailable right now. ${tell} and carry on.`;
}

/** What the model is told when the database has not answered within the tool's timeout. */
function slow(action: string, kind: 'read' | 'write', timeoutMs: number): string {
  const waited = `no answer within ${Math.round(timeoutMs / 100) / 10} s`;
  return kind === 'write'
    ? `Could not confirm that the request to ${action} went through: memory is slow right now (${waited}). ` +
        'It was not cancelled and may still complete, so do not repeat it; tell the user you could not confirm it yet and carry on.'
    : `Could not ${action}: memory is slow right now (${waited}). Tell the user you cannot check right now and carry on.`;
}

/**
 * Run a tool's work against the clock. The work's own failures become sentences (explain); when
 * the clock wins, the model gets the "slow" sentence and the work keeps running: a write is never
 * cancelled halfway, and its eventual outcome is simply not reported to this turn.
 */
async function answer(
  action: string,
  kind: 'read' | 'write',
  timeoutMs: number,
  work: () => Promise<string>,
  observe?: (outcome: MemoryToolCall['outcome'], ms: number) => void,
): Promise<string> {
  const started = performance.now();
  let outcome: MemoryToolCall['outcome'] = 'answered';
  const result = work().catch((error: unknown) => explain(action, kind, error));
  let timer: NodeJS.Timeout | undefined;
  const clock = new Promise<string>((resolve) => {
    if (timeoutMs === Infinity) return;
    timer = setTimeout(() => {
      outcome = 'slow';
      resolve(slow(action, kind, timeoutMs));
    }, timeoutMs);
  });
  try {
    return await Promise.race([result, clock]);
  } finally {
    clearTimeout(timer);
    observe?.(outcome, performance.now() - started);
  }
}

function label(category: string, key: string): string {
  return `${category}/${quoteMemoryText(key)}`;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** " It will be forgotten on <date>." for a memory with its own expiry. */
function expiryNote(expiresAt: Date | undefined): string {
  return expiresAt ? ` It expires on ${expiresAt.toISOString().slice(0, 10)} and is forgotten then.` : '';
}

/** " To make room, the oldest unused memories were forgotten: ..." when the cap evicted some. */
function evictionNote(evicted: ReadonlyArray<{ category: string; key: string }> | undefined): string {
  if (!evicted || evicted.length === 0) return '';
  return ` To make room (the memory limit per user was reached), the least recently used ${evicted.length === 1 ? 'memory was' : 'memories were'} forgotten: ${evicted.map((e) => label(e.category, e.key)).join(', ')}. Tell the user.`;
}

/**
 * The memory tools for one user. They close over that user's handle, so nothing the model sends
 * can address anyone else: there is no user parameter, and the handle has none either.
 */
export function createMemoryTools(handle: UserMemory, options: MemoryToolsOptions = {}) {
  const categories = [...(options.categories ?? DEFAULT_CATEGORIES)];
  if (categories.length === 0) throw new Error('createMemoryTools needs at least one category');
  const category = z.enum(categories as [string, ...string[]]).describe('What kind of memory this is.');
  const key = z.string().describe('A short, stable snake_case name for the memory, e.g. favorite_color.');
  const listLimit = options.listLimit ?? 50;
  const searchLimit = options.searchLimit ?? 5;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`timeoutMs must be a number of milliseconds > 0 (or Infinity), not ${String(timeoutMs)}`);
  }
  const pii = piiSettings(options.pii);

  // The caller's consent as this session knows it: the database has the last word on every write.
  let consent: MemoryConsent = options.consent ?? 'granted';
  const observed = (tool: string) =>
    options.onCall
      ? (outcome: MemoryToolCall['outcome'], ms: number) => options.onCall!({ tool, ms, outcome })
      : undefined;

  return {
    remember: llm.tool({
      description:
        'Save something about the user to remember in future conversations (a fact, preference, personal detail or task). ' +
        'Saving under an existing category and key replaces the old value. For something that stops mattering on a date ' +
        '(a flight on Friday, a visit next week), give expires_in_days so it is forgotten then.',
      parameters: z.object({
        category,
        key,
        value: z.string().describe('What to remember, in plain words.'),
        expires_in_days: z
          .number()
          .int()
          .min(1)
          .max(3650)
          .optional()
          .describe(
            'Forget it after this many days (e.g. 3 for "my flight is on Friday" said on Tuesday); omit to keep it.',
          ),
      }),
      execute: ({ category: c, key: givenKey, value: givenValue, expires_in_days: days }) => {
        // Sensitive data is kept out before anything else: a refusal never echoes the value.
        const screened = screenRemember(pii, c, givenKey, givenValue, options.onSensitive);
        if ('refusal' in screened) return Promise.resolve(screened.refusal);
        const { key: k, value, note } = screened;
        return answer(
          `save ${label(c, k)}`,
          'write',
          timeoutMs,
          async () => {
            if (consent === 'denied') return CONSENT_DENIED_ANSWER;
            if (consent === 'ask') return CONSENT_REQUIRED_ANSWER;
            const expiresAt = days === undefined ? undefined : new Date(Date.now() + days * DAY_MS);
            const receipt = await handle.store(c, k, value, { expiresAt });
            // Not applied: another session wrote this key at the same moment and its value won. The
            // model must not tell the caller it was saved.
            if (!receipt.applied) {
              return `Not saved: ${label(c, k)} was changed by another session at the same moment, and its newer value was kept. Tell the user, and ask whether to save ${quoteMemoryText(value)} again.`;
            }
            // 'journal': the database was unreachable and the memory layer kept the write durably on
            // disk; it reaches the database when it is back. Saved either way.
            const notes = `${expiryNote(receipt.expiresAt)}${evictionNote(receipt.evicted)}`;
            return receipt.savedTo === 'journal'
              ? `Saved ${label(c, k)} = ${quoteMemoryText(value)} (kept locally while the memory database is offline; it syncs when it is back).${notes}${note}`
              : `Saved ${label(c, k)} = ${quoteMemoryText(value)}.${notes}${note}`;
          },
          observed('remember'),
        );
      },
    }),
    recall: llm.tool({
      description: 'Look up one thing remembered about the user, by category and key.',
      parameters: z.object({ category, key }),
      execute: ({ category: c, key: k }) =>
        answer(
          `look up ${label(c, k)}`,
          'read',
          timeoutMs,
          async () => {
            const value = await handle.retrieve(c, k);
            return value === null
              ? `Nothing is stored under ${label(c, k)} for this user.`
              : `${label(c, k)} = ${quoteMemoryText(value)}`;
          },
          observed('recall'),
        ),
    }),
    forget: llm.tool({
      description: 'Delete one thing remembered about the user, when they ask you to forget it.',
      parameters: z.object({ category, key }),
      execute: ({ category: c, key: k }) =>
        answer(
          `forget ${label(c, k)}`,
          'write',
          timeoutMs,
          async () =>
            (await handle.forget(c, k)) ? `Forgot ${label(c, k)}.` : `Nothing was stored under ${label(c, k)}.`,
          observed('forget'),
        ),
    }),
    list_memories: llm.tool({
      description: 'List what is remembered about the user, newest first, optionally of one category.',
      parameters: z.object({ category: category.optional().describe('Only this category; omit for all.') }),
      execute: ({ category: c }) =>
        answer(
          'list memories',
          'read',
          timeoutMs,
          async () => {
            const memories = await handle.list({ category: c, limit: listLimit });
            if (memories.length === 0)
              return c ? `Nothing is stored in ${c} for this user.` : 'Nothing is stored for this user yet.';
            return memories.map((m) => `${label(m.category, m.key)} = ${quoteMemoryText(m.value)}`).join('\n');
          },
          observed('list_memories'),
        ),
    }),
    search_memories: llm.tool({
      description:
        'Search what is remembered about the user by words, when you do not know the exact category and key ' +
        '(e.g. "dentist", "birthday", "wife\'s name"). Answers the best matches, best first.',
      parameters: z.object({ query: z.string().describe('A few words to look for, in any language.') }),
      execute: ({ query }) =>
        answer(`search memories for ${quoteMemoryText(query.slice(0, 200))}`, 'read', timeoutMs, async () => {
          const matches = await handle.search(query, { limit: searchLimit });
          if (matches.length === 0) return `Nothing stored for this user matches ${quoteMemoryText(query)}.`;
          return matches
            .map((m, i) => `${i + 1}. ${label(m.category, m.key)} = ${quoteMemoryText(m.value)}`)
            .join('\n');
        }),
    }),
    forget_me: llm.tool({
      description:
        'When the user asks not to be remembered (or to be forgotten, or to have everything about them deleted): erase ' +
        'everything remembered about them and stop remembering them, in this and future conversations, until they ask to ' +
        'be remembered again. Also when they decline to be remembered after you asked.',
      parameters: z.object({}),
      execute: () =>
        answer(
          'turn memory off for this user',
          'write',
          timeoutMs,
          async () => {
            const change = await handle.setConsent('denied');
            consent = 'denied';
            return (
              `Done: memory is off for this user at their request. ${change.erased === 1 ? '1 memory was' : `${change.erased} memories were`} erased, ` +
              'and nothing more will be saved about them unless they ask to be remembered again (then call remember_me). Confirm this to the user.'
            );
          },
          observed('forget_me'),
        ),
    }),
    remember_me: llm.tool({
      description:
        'When the user agrees to be remembered (after you asked), or asks to be remembered again after asking not to be: ' +
        'turn memory on for them, so that remember can save things about them from now on.',
      parameters: z.object({}),
      execute: () =>
        answer(
          'turn memory on for this user',
          'write',
          timeoutMs,
          async () => {
            await handle.setConsent('granted');
            consent = 'granted';
            return 'Done: memory is on for this user with their agreement; you can save things about them with remember from now on.';
          },
          observed('remember_me'),
        ),
    }),
  };
}

export type MemoryTools = ReturnType<typeof createMemoryTools>;

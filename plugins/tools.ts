import { llm } from '@livekit/agents';
import { z } from 'zod';
import { MemoryError, type UserMemory } from '../memory/index.js';
import { quoteMemoryText } from './memory-block.js';

export const DEFAULT_CATEGORIES = ['FACT', 'PREFERENCE', 'PERSONAL', 'TASK'] as const;

export interface MemoryToolsOptions {
  /** Categories offered to the model as an enumeration (default FACT, PREFERENCE, PERSONAL, TASK). */
  categories?: readonly string[];
  /** How many memories list_memories returns at most (default 50). */
  listLimit?: number;
}

/** The names the model sees. */
export const MEMORY_TOOL_NAMES = ['remember', 'recall', 'forget', 'list_memories'] as const;

/**
 * A failure becomes a sentence for the model, never an exception: an exception would end the
 * turn with "An internal error occurred" and leave the caller waiting for an answer.
 */
function explain(action: string, error: unknown): string {
  if (error instanceof MemoryError) {
    if (error.isInputError) return `Could not ${action}: ${error.message}. Fix the arguments and try again.`;
    return `Could not ${action}: memory is unavailable right now (${error.code}). Tell the user it was not saved and carry on.`;
  }
  return `Could not ${action}: memory is unavailable right now. Tell the user and carry on.`;
}

function label(category: string, key: string): string {
  return `${category}/${quoteMemoryText(key)}`;
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

  return {
    remember: llm.tool({
      description:
        'Save something about the user to remember in future conversations (a fact, preference, personal detail or task). ' +
        'Saving under an existing category and key replaces the old value.',
      parameters: z.object({ category, key, value: z.string().describe('What to remember, in plain words.') }),
      execute: async ({ category: c, key: k, value }) => {
        try {
          await handle.store(c, k, value);
          return `Saved ${label(c, k)} = ${quoteMemoryText(value)}.`;
        } catch (error) {
          return explain(`save ${label(c, k)}`, error);
        }
      },
    }),
    recall: llm.tool({
      description: 'Look up one thing remembered about the user, by category and key.',
      parameters: z.object({ category, key }),
      execute: async ({ category: c, key: k }) => {
        try {
          const value = await handle.retrieve(c, k);
          return value === null
            ? `Nothing is stored under ${label(c, k)} for this user.`
            : `${label(c, k)} = ${quoteMemoryText(value)}`;
        } catch (error) {
          return explain(`look up ${label(c, k)}`, error);
        }
      },
    }),
    forget: llm.tool({
      description: 'Delete one thing remembered about the user, when they ask you to forget it.',
      parameters: z.object({ category, key }),
      execute: async ({ category: c, key: k }) => {
        try {
          return (await handle.forget(c, k)) ? `Forgot ${label(c, k)}.` : `Nothing was stored under ${label(c, k)}.`;
        } catch (error) {
          return explain(`forget ${label(c, k)}`, error);
        }
      },
    }),
    list_memories: llm.tool({
      description: 'List what is remembered about the user, newest first, optionally of one category.',
      parameters: z.object({ category: category.optional().describe('Only this category; omit for all.') }),
      execute: async ({ category: c }) => {
        try {
          const memories = await handle.list({ category: c, limit: listLimit });
          if (memories.length === 0) return c ? `Nothing is stored in ${c} for this user.` : 'Nothing is stored for this user yet.';
          return memories.map((m) => `${label(m.category, m.key)} = ${quoteMemoryText(m.value)}`).join('\n');
        } catch (error) {
          return explain('list memories', error);
        }
      },
    }),
  };
}

export type MemoryTools = ReturnType<typeof createMemoryTools>;

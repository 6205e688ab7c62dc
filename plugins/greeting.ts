import type { UserMemorySession } from './session.js';

/** Said (not generated) when memory is unavailable, so the user knows before anything else. */
export const MEMORY_UNAVAILABLE_NOTICE =
  "Hi! Just so you know, my memory is unavailable right now, so I can't remember anything from before and won't remember this conversation.";

/** The greeting while memory is late: generic, since it may still arrive (so no "unavailable"). */
export const GENERIC_GREETING_INSTRUCTIONS =
  'Greet the user warmly in one short sentence and ask how you can help. Do not say whether you have talked before.';

/** What to greet with, for this state of memory. */
export type MemoryGreeting = { say: string } | { generate: string };

/**
 * The greeting for this state of memory: a new user as new, a returning user as known (the model
 * may mention something it remembers), a late one generically, and a plain notice when memory is
 * unavailable.
 */
export function memoryGreeting(memory: UserMemorySession): MemoryGreeting {
  if (memory.available) {
    return {
      generate: memory.firstSession
        ? 'This is your first conversation with this user: greet them as someone new, introduce yourself in one sentence and ask how you can help.'
        : `This user is returning (conversation number ${memory.user.sessionCount}): welcome them back as someone you know. ` +
          'If you remember something relevant about them, you may mention it briefly.',
    };
  }
  return memory.reason === 'budget' ? { generate: GENERIC_GREETING_INSTRUCTIONS } : { say: MEMORY_UNAVAILABLE_NOTICE };
}

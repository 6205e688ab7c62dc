import type { Memory, MemoryStore, StoredSettings, User, UserMemory } from '../memory/index.js';
import { resolveIdentity, type IdentitySource, type ParticipantLike } from './identity.js';
import { renderMemoryBlock, type MemoryBlockOptions } from './memory-block.js';
import { createMemoryTools, type MemoryTools, type MemoryToolsOptions } from './tools.js';

export interface StartUserMemoryOptions {
  memory: MemoryStore;
  participant: ParticipantLike;
  identitySource?: IdentitySource;
  /** Memories loaded at session start (default: the block's maxEntries, else 20). */
  memoryLimit?: number;
  block?: MemoryBlockOptions;
  tools?: MemoryToolsOptions;
  /** Whose settings to load with the session (default: the store's tenant). */
  tenant?: string;
}

export interface UserMemoryReady {
  available: true;
  identity: string;
  user: User;
  firstSession: boolean;
  memories: Memory[];
  /** The user's agent settings for the tenant (secrets still encrypted), loaded in the same round trip. */
  settings: StoredSettings | null;
  /** The delimited block for the agent's instructions ('' when nothing is stored yet). */
  memoryBlock: string;
  /** remember, recall, forget, list_memories: bound to this user only. */
  tools: MemoryTools;
  handle: UserMemory;
}

export interface UserMemoryUnavailable {
  available: false;
  /** Undefined when the identity itself could not be resolved. */
  identity: string | undefined;
  error: Error;
  memoryBlock: '';
  tools: Record<string, never>;
}

export type UserMemorySession = UserMemoryReady | UserMemoryUnavailable;

/**
 * Bind a joined participant to their own memory: resolve the identity, provision the user and
 * load their recent memories in one round trip, and build the block and tools for the agent.
 *
 * It never throws for a memory failure: the session is told memory is unavailable and runs
 * without tools. It never falls back to another user.
 */
export async function startUserMemory(options: StartUserMemoryOptions): Promise<UserMemorySession> {
  let identity: string | undefined;
  try {
    identity = resolveIdentity(options.participant, options.identitySource);
    const memoryLimit = options.memoryLimit ?? options.block?.maxEntries ?? 20;
    const session = await options.memory.startSession(identity, { memoryLimit, tenant: options.tenant });
    const handle = options.memory.forUser(session.user);
    return {
      available: true,
      identity,
      user: session.user,
      firstSession: session.firstSession,
      memories: session.memories,
      settings: session.settings,
      memoryBlock: renderMemoryBlock(session.memories, options.block),
      tools: createMemoryTools(handle, options.tools),
      handle,
    };
  } catch (error) {
    return { available: false, identity, error: error as Error, memoryBlock: '', tools: {} };
  }
}

/** Guidance for the model on the memory tools and the block, to append to an agent's instructions. */
export function memoryInstructions(session: UserMemorySession): string {
  if (!session.available) {
    return (
      'Long-term memory is unavailable in this conversation: you cannot remember or recall anything ' +
      'about the user. If they ask, say so plainly.'
    );
  }
  const parts = [
    'You have a long-term memory of this user. When they tell you something worth keeping (a fact, ' +
      'a preference, a personal detail, a task), save it with `remember`. Use `recall` or ' +
      '`list_memories` to look things up, and `forget` when they ask you to forget something.',
  ];
  parts.push(session.memoryBlock || 'Nothing is remembered about this user yet.');
  return parts.join('\n\n');
}

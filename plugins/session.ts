import {
  MemoryError,
  type Memory,
  type MemoryConsent,
  type MemoryStore,
  type StoredSettings,
  type User,
  type UserMemory,
} from '../memory/index.js';
import { resolveIdentity, type IdentitySource, type ParticipantLike } from './identity.js';
import { consentNotice, renderMemoryBlock, type MemoryBlockOptions } from './memory-block.js';
import { createMemoryTools, type MemoryTools, type MemoryToolsOptions } from './tools.js';

/** How long session start waits for memory by default before the session goes on without it. */
export const DEFAULT_MEMORY_BUDGET_MS = 500;

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
  /**
   * Latency budget for provisioning, in milliseconds (default 500; `Infinity` waits as long as the
   * database takes). When the database has not answered in time, the result is an unavailable
   * session with `reason: 'budget'` whose `late` promise delivers the eventual result.
   */
  budgetMs?: number;
}

export interface UserMemoryReady {
  available: true;
  identity: string;
  user: User;
  firstSession: boolean;
  memories: Memory[];
  /**
   * True when `memories` is every memory the user had at session start (fewer than the limit came
   * back): per-turn recall, which brings only memories not loaded, then has nothing to search for.
   */
  allLoaded: boolean;
  /** The user's agent settings for the tenant (secrets still encrypted), loaded in the same round trip. */
  settings: StoredSettings | null;
  /** The caller's memory consent at session start (denied: memory off at their request; ask: ask first). */
  consent: MemoryConsent;
  /** The delimited block for the agent's instructions ('' when nothing is stored yet). */
  memoryBlock: string;
  /** remember, recall, forget, list_memories: bound to this user only. */
  tools: MemoryTools;
  handle: UserMemory;
  late?: undefined;
}

/** Memory failed: the identity could not be resolved, or the database refused or could not be reached. */
export interface UserMemoryFailed {
  available: false;
  reason: 'error';
  /** Undefined when the identity itself could not be resolved. */
  identity: string | undefined;
  error: Error;
  memoryBlock: '';
  tools: Record<string, never>;
  late?: undefined;
}

/**
 * Memory is slow: the database did not answer within the budget. The session goes on without
 * memory for now; `late` delivers the eventual result (ready, or failed), and never rejects.
 */
export interface UserMemoryLate {
  available: false;
  reason: 'budget';
  identity: string;
  /** The user's id (UUIDv5 of the identity), known without the database. */
  userId: string;
  /** The budget that was exceeded. */
  budgetMs: number;
  /** A MemoryError with code TIMEOUT that says what happened. */
  error: MemoryError;
  memoryBlock: '';
  tools: Record<string, never>;
  late: Promise<UserMemoryReady | UserMemoryFailed>;
}

export type UserMemoryUnavailable = UserMemoryFailed | UserMemoryLate;

export type UserMemorySession = UserMemoryReady | UserMemoryUnavailable;

function failed(identity: string | undefined, error: unknown): UserMemoryFailed {
  return {
    available: false,
    reason: 'error',
    identity,
    error: error instanceof Error ? error : new Error(String(error)),
    memoryBlock: '',
    tools: {},
  };
}

/** Provision and load; never rejects. */
async function provision(
  options: StartUserMemoryOptions,
  identity: string,
): Promise<UserMemoryReady | UserMemoryFailed> {
  try {
    const memoryLimit = options.memoryLimit ?? options.block?.maxEntries ?? 20;
    const session = await options.memory.startSession(identity, { memoryLimit, tenant: options.tenant });
    const handle = options.memory.forUser(session.user);
    return {
      available: true,
      identity,
      user: session.user,
      firstSession: session.firstSession,
      memories: session.memories,
      allLoaded: session.memories.length < memoryLimit,
      settings: session.settings,
      consent: session.consent,
      memoryBlock: renderMemoryBlock(session.memories, options.block),
      tools: createMemoryTools(handle, { ...options.tools, consent: session.consent }),
      handle,
    };
  } catch (error) {
    return failed(identity, error);
  }
}

/**
 * Bind a joined participant to their own memory: resolve the identity, provision the user and
 * load their recent memories in one round trip, and build the block and tools for the agent.
 *
 * It never throws for a memory failure: the session is told memory is unavailable and runs
 * without tools. It never falls back to another user. It never takes much longer than `budgetMs`:
 * a slow database gives an unavailable session with `reason: 'budget'` and a `late` promise.
 */
export async function startUserMemory(options: StartUserMemoryOptions): Promise<UserMemorySession> {
  const budgetMs = options.budgetMs ?? DEFAULT_MEMORY_BUDGET_MS;
  if (typeof budgetMs !== 'number' || Number.isNaN(budgetMs) || budgetMs < 0) {
    throw new RangeError(`budgetMs must be a number of milliseconds >= 0 (or Infinity), not ${String(budgetMs)}`);
  }
  let identity: string | undefined;
  let userId: string;
  try {
    identity = resolveIdentity(options.participant, options.identitySource);
    // Validates the identity without the database, so bad input fails now rather than "late".
    userId = options.memory.userIdFor(identity);
  } catch (error) {
    return failed(identity, error);
  }

  const eventual = provision(options, identity);
  if (budgetMs === Infinity) return eventual;

  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'budget'>((resolve) => {
    timer = setTimeout(() => resolve('budget'), budgetMs);
  });
  const first = await Promise.race([eventual, expired]);
  clearTimeout(timer);
  if (first !== 'budget') return first;
  return {
    available: false,
    reason: 'budget',
    identity,
    userId,
    budgetMs,
    error: new MemoryError(
      'TIMEOUT',
      `memory did not answer within the session-start budget of ${budgetMs} ms; the session goes on without it for now, ` +
        'and the result arrives later through `late`',
    ),
    memoryBlock: '',
    tools: {},
    late: eventual,
  };
}

/** What memoryInstructions says while memory is late (the budget passed and it has not landed yet). */
export const MEMORY_LOADING_INSTRUCTIONS =
  'Your long-term memory of this user is still loading: for now you cannot recall or save anything ' +
  'about them. Do not claim to know them or not to know them; if they ask about earlier conversations ' +
  'or ask you to remember something, say you cannot check right now and carry on.';

/** Guidance for the model on the memory tools and the block, to append to an agent's instructions. */
export function memoryInstructions(session: UserMemorySession): string {
  if (!session.available) {
    if (session.reason === 'budget') return MEMORY_LOADING_INSTRUCTIONS;
    return (
      'Long-term memory is unavailable in this conversation: you cannot remember or recall anything ' +
      'about the user. If they ask, say so plainly.'
    );
  }
  const parts = [
    'You have a long-term memory of this user. When they tell you something worth keeping (a fact, ' +
      'a preference, a personal detail, a task), save it with `remember`. Use `recall` or ' +
      '`list_memories` to look things up, and `forget` when they ask you to forget something. If they ' +
      'ask not to be remembered at all, call `forget_me`; if they ask to be remembered again, `remember_me`.',
  ];
  const notice = consentNotice(session.consent);
  if (notice) parts.push(notice);
  parts.push(session.memoryBlock || 'Nothing is remembered about this user yet.');
  return parts.join('\n\n');
}

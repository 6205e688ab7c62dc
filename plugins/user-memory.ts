import { type llm, voice } from '@livekit/agents';
import type { MemoryStore, StoredSettings, UserMemory } from '../memory/index.js';
import { memoryGreeting } from './greeting.js';
import type { IdentitySource, ParticipantLike } from './identity.js';
import { applyLateMemory, waitsForLateMemory } from './late-memory.js';
import { agentsLogger, type MemoryLogger } from './logger.js';
import type { MemoryBlockOptions } from './memory-block.js';
import { processMemoryStore } from './process-store.js';
import {
  DEFAULT_MEMORY_BUDGET_MS,
  memoryInstructions,
  startUserMemory,
  type UserMemoryFailed,
  type UserMemoryLate,
  type UserMemoryReady,
  type UserMemorySession,
} from './session.js';
import { tenantFromMetadata } from './tenant.js';
import type { MemoryToolsOptions } from './tools.js';

/** What userMemory needs of agents-js's JobContext (which fits as it is). */
export interface JobContextLike {
  waitForParticipant(identity?: string): Promise<ParticipantLike>;
  addShutdownCallback(callback: () => Promise<void>): void;
  /** agents-js's JobProcess: the default store is the one this process opened (prewarmMemory). */
  readonly proc: object;
  /** Its metadata may name the settings tenant: {"tenant": "..."}. */
  readonly job: { readonly id?: string; readonly metadata?: string };
}

/** Tools in agents-js's object form ({ name: llm.tool(...) }), the form `new voice.Agent({ tools })` takes. */
export type ToolMap<UserData = unknown> = Exclude<
  llm.ToolContextLike<UserData>,
  llm.ToolContext<UserData> | readonly unknown[]
>;

/** What to spread into `new voice.Agent({ ... })`. */
export interface MemoryAgentOptions<UserData = unknown> {
  instructions: string;
  tools: ToolMap<UserData>;
}

export interface UserMemoryOptions {
  /**
   * The store to use. Default: this job process's store (see prewarmMemory and serveMemory):
   * DATABASE_URL, Supabase, or the embedded database your worker's main process serves.
   */
  store?: MemoryStore | Promise<MemoryStore>;
  /** Whose memory: default, the participant `ctx.waitForParticipant()` returns. */
  participant?: ParticipantLike;
  /** Which server-asserted fact names the user (default `identity`; `sip-caller` for phone calls). */
  identitySource?: IdentitySource;
  /** Memories loaded at session start (default: the block's maxEntries, else 20). */
  memoryLimit?: number;
  block?: MemoryBlockOptions;
  tools?: MemoryToolsOptions;
  /** The settings tenant (default: the job metadata's {"tenant"}, else the store's). */
  tenant?: string;
  /**
   * How long session start waits for the database, in ms (default MEMORY_BUDGET_MS, else 500).
   * After that the session starts without memory, which joins the running agent when it lands.
   */
  budgetMs?: number;
  /**
   * Add the user's stored settings instructions (`settings.config.instructions`) to the agent's
   * instructions (default true).
   */
  settingsInstructions?: boolean;
  /** Where progress goes (default: agents-js's logger). Ids and counts only, never memory values. */
  logger?: MemoryLogger;
  /** Environment for MEMORY_BUDGET_MS (default process.env). */
  env?: NodeJS.ProcessEnv;
}

function isLate(state: UserMemorySession): state is UserMemoryLate {
  return !state.available && state.reason === 'budget';
}

/** The session's active agent; undefined before it starts or after it stops. */
function currentAgent(session: voice.AgentSession | undefined): voice.Agent | undefined {
  try {
    return session?.currentAgent;
  } catch {
    return undefined;
  }
}

function budgetFrom(options: UserMemoryOptions): number {
  if (options.budgetMs !== undefined) return options.budgetMs;
  const raw = (options.env ?? process.env).MEMORY_BUDGET_MS;
  if (raw === undefined || raw === '') return DEFAULT_MEMORY_BUDGET_MS;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`MEMORY_BUDGET_MS must be a number of milliseconds >= 0, not ${JSON.stringify(raw)}`);
  }
  return value;
}

/**
 * One user's memory for one job: the result of identity resolution and budgeted provisioning,
 * and what an agent needs of it. Make it with userMemory(ctx).
 *
 * Every agent of the session, the first and any it hands off to, takes its instructions and tools
 * from agentOptions(): the loaded handle is reused (no second database round trip) and it is bound
 * to this job's user only.
 */
export class AgentMemory {
  #state: UserMemorySession;
  #settingsInstructions: boolean;
  #logger: MemoryLogger;
  #session: voice.AgentSession | undefined;
  #closed = false;
  #lateApplied = new WeakSet<voice.Agent>();
  /** The memory part of instructions built while memory was late, kept to swap it when memory lands. */
  #loadingPart: string | undefined;
  /** Settles once memory is final: at once when it was on time, when it lands when it was late. */
  readonly settled: Promise<UserMemoryReady | UserMemoryFailed>;

  /** @internal Use userMemory(ctx). */
  constructor(state: UserMemorySession, options: { settingsInstructions?: boolean; logger: MemoryLogger }) {
    this.#state = state;
    this.#settingsInstructions = options.settingsInstructions ?? true;
    this.#logger = options.logger;
    this.#report(state, 'memory ready for participant');
    if (state.available || state.reason === 'error') {
      this.settled = Promise.resolve(state);
      return;
    }
    this.#loadingPart = this.#memoryPart(state);
    const startedAt = performance.now();
    this.settled = state.late.then((result) => {
      this.#state = result;
      const afterMs = Math.round(performance.now() - startedAt);
      if (this.#closed) {
        this.#logger.info(
          { userId: state.userId, afterMs, available: result.available },
          'late memory arrived after the session closed',
        );
      } else {
        this.#report(result, 'late memory arrived: adding it to the running session', { afterMs });
        void this.#applyLate(currentAgent(this.#session));
      }
      return result;
    });
  }

  /** The state of memory now: ready, late (`reason: 'budget'`, until it lands) or failed. */
  get state(): UserMemorySession {
    return this.#state;
  }

  get available(): boolean {
    return this.#state.available;
  }

  /**
   * The user's pseudonymous id (UUIDv5 of the identity), also while memory is late; undefined
   * when the identity could not be resolved or memory failed. Pass it to your LLM as its end-user
   * id (e.g. OpenAI's `user`), never the identity.
   */
  get userId(): string | undefined {
    const state = this.#state;
    return state.available ? state.user.id : state.reason === 'budget' ? state.userId : undefined;
  }

  /** The user's stored agent settings for the tenant (secrets still encrypted), once loaded. */
  get settings(): StoredSettings | null {
    return this.#state.available ? this.#state.settings : null;
  }

  /** The user-bound handle, once loaded: for your own tools or post-call work. */
  get handle(): UserMemory | undefined {
    return this.#state.available ? this.#state.handle : undefined;
  }

  /** Instructions addendum from the user's settings, and the memory guidance and block. */
  #memoryPart(state: UserMemorySession): string {
    const addendum = this.#settingsInstructions && state.available ? state.settings?.config.instructions : undefined;
    const parts = addendum ? [`Additional instructions for this user:\n${addendum}`] : [];
    parts.push(memoryInstructions(state));
    return parts.join('\n\n');
  }

  /** Your instructions with this user's memory added (guidance, the block, their settings' addendum). */
  instructions(base: string): string {
    return `${base}\n\n${this.#memoryPart(this.#state)}`;
  }

  /**
   * Options for `new voice.Agent({ ...memory.agentOptions(instructions) })`: the instructions with
   * the memory block, and the memory tools next to your own. Call it for every agent of the
   * session, including the one a tool hands off to: it reuses the loaded memory.
   */
  agentOptions<UserData = unknown>(
    instructions: string,
    options: { tools?: ToolMap<UserData> } = {},
  ): MemoryAgentOptions<UserData> {
    const own = options.tools ?? {};
    const memoryTools = (this.#state.available ? this.#state.tools : {}) as ToolMap<UserData>;
    for (const name of Object.keys(memoryTools)) {
      if (name in own) {
        throw new RangeError(`tool name "${name}" is taken by the memory tools: give your tool another name`);
      }
    }
    return { instructions: this.instructions(instructions), tools: { ...own, ...memoryTools } };
  }

  /**
   * Follow the session once it has started: memory that lands after the budget joins whichever
   * agent is active (tools, block, a system note), and any agent built while it was late that
   * becomes active later.
   */
  attach(session: voice.AgentSession): void {
    if (this.#session === session) return;
    if (this.#session) throw new Error('this memory is already attached to another AgentSession');
    this.#session = session;
    session.on(voice.AgentSessionEventTypes.AgentStateChanged, () => {
      if (this.#loadingPart && !isLate(this.#state)) void this.#applyLate(currentAgent(session));
    });
    session.on(voice.AgentSessionEventTypes.Close, () => {
      this.#closed = true;
    });
    if (this.#loadingPart && !isLate(this.#state)) void this.#applyLate(currentAgent(session));
  }

  /**
   * Attach to the session and greet the user as memory allows: a new user as new, a returning
   * user as known, generically while memory is late, and with a spoken notice when it is
   * unavailable.
   */
  greet(session: voice.AgentSession): void {
    this.attach(session);
    const greeting = memoryGreeting(this.#state);
    if ('say' in greeting) session.say(greeting.say);
    else session.generateReply({ instructions: greeting.generate });
  }

  /** Stop following the session; late memory that lands afterwards is only logged. The store stays open. */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  // Per-turn steps (such as recalling what matches the user's last words) belong here, next to
  // agentOptions: agents-js runs them from Agent.onUserTurnCompleted, which a memory-aware agent
  // forwards to this object.

  async #applyLate(agent: voice.Agent | undefined): Promise<void> {
    const state = this.#state;
    const loading = this.#loadingPart;
    if (!agent || this.#closed || isLate(state) || !loading) return;
    if (this.#lateApplied.has(agent) || !waitsForLateMemory(agent, loading)) return;
    this.#lateApplied.add(agent);
    try {
      await applyLateMemory(agent, state, loading, this.#memoryPart(state));
    } catch (error) {
      this.#logger.error(
        { userId: this.userId, error: (error as Error).message },
        'could not add late memory to the session',
      );
    }
  }

  #report(state: UserMemorySession, message: string, extra: Record<string, unknown> = {}): void {
    if (state.available) {
      this.#logger.info(
        {
          userId: state.user.id,
          firstSession: state.firstSession,
          memories: state.memories.length,
          settings: state.settings ? { tenant: state.settings.tenant, version: state.settings.version } : null,
          ...extra,
        },
        message,
      );
    } else if (state.reason === 'budget') {
      this.#logger.warn(
        { userId: state.userId, budgetMs: state.budgetMs, code: state.error.code },
        'memory is late (the database did not answer within the session-start budget): starting without it; it is added when it arrives',
      );
    } else {
      this.#logger.error(
        { userId: this.userId, error: state.error.message, ...extra },
        extra.afterMs === undefined
          ? 'memory unavailable: continuing without it'
          : 'late memory failed: continuing without it',
      );
    }
  }
}

/**
 * Wire one user's memory into a LiveKit job, in one call: resolve the participant's identity,
 * provision the user and load their memories and settings within the budget (one database round
 * trip), and give back what every agent of the session needs (agentOptions). Memory that misses
 * the budget joins the running session when it lands (attach, or greet); the job's shutdown
 * closes it.
 *
 * It never throws for a memory failure and never falls back to another user: the session then
 * runs without memory, and the agent is told so.
 */
export async function userMemory(ctx: JobContextLike, options: UserMemoryOptions = {}): Promise<AgentMemory> {
  const budgetMs = budgetFrom(options);
  const logger = options.logger ?? agentsLogger({ job: ctx.job.id });
  const participant = options.participant ?? (await ctx.waitForParticipant());
  let state: UserMemorySession;
  try {
    const store = await (options.store ?? processMemoryStore(ctx.proc));
    state = await startUserMemory({
      memory: store,
      participant,
      identitySource: options.identitySource,
      memoryLimit: options.memoryLimit,
      block: options.block,
      tools: options.tools,
      tenant: options.tenant ?? tenantFromMetadata(ctx.job.metadata),
      budgetMs,
    });
  } catch (error) {
    // The store could not be opened: the session runs without memory, and says so.
    state = {
      available: false,
      reason: 'error',
      identity: undefined,
      error: error instanceof Error ? error : new Error(String(error)),
      memoryBlock: '',
      tools: {},
    };
  }
  const memory = new AgentMemory(state, { settingsInstructions: options.settingsInstructions, logger });
  ctx.addShutdownCallback(() => memory.close());
  return memory;
}

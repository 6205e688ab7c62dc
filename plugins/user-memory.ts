import { llm, voice } from '@livekit/agents';
import type { MemoryStore, StoredSettings, UserMemory } from '../memory/index.js';
import { piiSettings, piiSettingsFromEnv, type PiiOptions, type PiiSettings } from '../memory/pii.js';
import {
  DEFAULT_EXTRACT_MAX_FACTS,
  DEFAULT_EXTRACT_TIMEOUT_MS,
  callerTurns,
  extractAndStore,
  type ExtractOptions,
  type ExtractionReport,
} from './extract.js';
import { memoryGreeting } from './greeting.js';
import type { ParticipantLike } from './identity.js';
import { applyLateMemory, waitsForLateMemory } from './late-memory.js';
import { agentsLogger, type MemoryLogger } from './logger.js';
import { processMemoryStore } from './process-store.js';
import { DEFAULT_RECALL_BUDGET_MS, DEFAULT_RECALL_LIMIT, recallMemoriesForTurn, type RecallOutcome } from './recall.js';
import {
  DEFAULT_MEMORY_BUDGET_MS,
  memoryInstructions,
  startUserMemory,
  type StartUserMemoryOptions,
  type UserMemoryFailed,
  type UserMemoryLate,
  type UserMemoryReady,
  type UserMemorySession,
} from './session.js';
import { tenantFromMetadata } from './tenant.js';
import { DEFAULT_CATEGORIES } from './tools.js';
import type { SensitiveValueEvent } from './sensitive.js';

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

/** startUserMemory's options, with the store and participant found from the job when not given. */
export interface UserMemoryOptions extends Omit<StartUserMemoryOptions, 'memory' | 'participant'> {
  /**
   * The store to use. Default: this job process's store (see prewarmMemory and serveMemory):
   * DATABASE_URL, Supabase, or the embedded database your worker's main process serves.
   */
  store?: MemoryStore | Promise<MemoryStore>;
  /** Whose memory: default, the participant `ctx.waitForParticipant()` returns. */
  participant?: ParticipantLike;
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
  /**
   * Per-turn recall: before each model request that answers the user, search their memories with
   * what they just said and add the best few that are not in the block to that request only.
   * Default on, with MEMORY_RECALL_BUDGET_MS (else 50 ms) and 3 memories; false turns it off.
   */
  recall?: false | { budgetMs?: number; limit?: number };
  /**
   * Sensitive values in what `remember` and extraction store: card numbers, national ids,
   * credentials. Default MEMORY_PII_POLICY (refuse|redact|allow, else refuse) and
   * MEMORY_PII_NATIONAL_ID_PATTERN (else the US SSN and UK NINO shapes). `tools.pii` wins for the tools.
   */
  pii?: PiiOptions;
  /**
   * After-call extraction: when the session closes, the caller's turns go to the model and the
   * facts it finds are stored (see plugins/extract.ts). Default MEMORY_EXTRACT=on|off (off) and
   * MEMORY_EXTRACT_TIMEOUT_MS (15000). The job's shutdown waits for it, within that limit.
   */
  extract?: boolean | ExtractOptions;
  /** Environment for MEMORY_BUDGET_MS, MEMORY_RECALL_BUDGET_MS, MEMORY_PII_* and MEMORY_EXTRACT* (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** After-call extraction as AgentMemory runs it. */
interface ExtractSettings extends Omit<ExtractOptions, 'enabled' | 'timeoutMs' | 'maxFacts'> {
  timeoutMs: number;
  maxFacts: number;
  categories: readonly string[];
  pii: PiiSettings;
}

/** How long close() waits for a write extraction started before its deadline, past the deadline. */
const EXTRACT_SHUTDOWN_GRACE_MS = 5_000;

/** Per-turn recall as AgentMemory runs it. */
interface RecallSettings {
  budgetMs: number;
  limit: number;
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

/** A duration from the environment: `fallback` when unset, a RangeError naming the variable when not a duration. */
function msFromEnv(options: UserMemoryOptions, name: string, fallback: number, min: number): number {
  const raw = (options.env ?? process.env)[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) {
    throw new RangeError(`${name} must be a number of milliseconds >= ${min}, not ${JSON.stringify(raw)}`);
  }
  return value;
}

function budgetFrom(options: UserMemoryOptions): number {
  return options.budgetMs ?? msFromEnv(options, 'MEMORY_BUDGET_MS', DEFAULT_MEMORY_BUDGET_MS, 0);
}

function piiFrom(options: UserMemoryOptions): PiiSettings {
  return options.pii ? piiSettings(options.pii) : piiSettingsFromEnv(options.env ?? process.env);
}

function extractFrom(options: UserMemoryOptions, pii: PiiSettings): ExtractSettings | undefined {
  const given = typeof options.extract === 'object' ? options.extract : {};
  let enabled = typeof options.extract === 'boolean' ? options.extract : options.extract?.enabled;
  if (enabled === undefined) {
    const raw = (options.env ?? process.env).MEMORY_EXTRACT;
    if (raw !== undefined && raw !== '' && raw !== 'on' && raw !== 'off') {
      throw new RangeError(`MEMORY_EXTRACT must be on or off, not ${JSON.stringify(raw)}`);
    }
    enabled = raw === 'on';
  }
  if (!enabled) return undefined;
  const { enabled: _enabled, timeoutMs, maxFacts, ...rest } = given;
  return {
    ...rest,
    timeoutMs: timeoutMs ?? msFromEnv(options, 'MEMORY_EXTRACT_TIMEOUT_MS', DEFAULT_EXTRACT_TIMEOUT_MS, 1),
    maxFacts: maxFacts ?? DEFAULT_EXTRACT_MAX_FACTS,
    categories: options.tools?.categories ?? DEFAULT_CATEGORIES,
    pii: options.tools?.pii ? piiSettings(options.tools.pii) : pii,
  };
}

function recallFrom(options: UserMemoryOptions): RecallSettings | undefined {
  if (options.recall === false) return undefined;
  return {
    budgetMs: options.recall?.budgetMs ?? msFromEnv(options, 'MEMORY_RECALL_BUDGET_MS', DEFAULT_RECALL_BUDGET_MS, 1),
    limit: options.recall?.limit ?? DEFAULT_RECALL_LIMIT,
  };
}

/** The latest user message, when nothing the assistant said follows it (tool calls and outputs may). */
function pendingUserMessage(chatCtx: llm.ChatContext): { message: llm.ChatMessage; index: number } | undefined {
  const items = chatCtx.items;
  for (let i = items.length - 1; i >= 0; i -= 1) {
    const item = items[i]!;
    if (item.type !== 'message') continue;
    if (item.role === 'user') return { message: item, index: i };
    if (item.role === 'assistant') return undefined;
  }
  return undefined;
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
  #recall: RecallSettings | undefined;
  /** Recall per user message id: one search per turn, however many model requests the turn makes. */
  #recalled = new Map<string, Promise<string | undefined>>();
  /** Started on the caller's final transcript, before the turn ends: used when the turn's text matches. */
  #prefetched: { text: string; outcome: Promise<RecallOutcome> } | undefined;
  /** The final transcripts of the turn in progress (agents-js joins them with spaces). */
  #finals: string[] = [];
  #withRecall = new WeakSet<voice.Agent>();
  /** The memory part of instructions built while memory was late, kept to swap it when memory lands. */
  #loadingPart: string | undefined;
  #extract: ExtractSettings | undefined;
  /** The one after-call extraction of this call, once started. */
  #extraction: Promise<ExtractionReport | undefined> | undefined;
  /** Settles once memory is final: at once when it was on time, when it lands when it was late. */
  readonly settled: Promise<UserMemoryReady | UserMemoryFailed>;

  /** @internal Use userMemory(ctx). */
  constructor(
    state: UserMemorySession,
    options: {
      settingsInstructions?: boolean;
      logger: MemoryLogger;
      recall?: RecallSettings;
      extract?: ExtractSettings;
    },
  ) {
    this.#state = state;
    this.#recall = options.recall;
    this.#extract = options.extract;
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
    // Every reply starts with a SpeechCreated event, before its model request: the agent that
    // will answer (the first one, or one handed off to) gets per-turn recall then.
    const recallFor = () => {
      const agent = currentAgent(session);
      if (agent) this.addRecall(agent);
    };
    session.on(voice.AgentSessionEventTypes.SpeechCreated, recallFor);
    session.on(voice.AgentSessionEventTypes.UserInputTranscribed, (event) => {
      if (event.isFinal) this.#prefetch(event.transcript);
    });
    recallFor();
    session.on(voice.AgentSessionEventTypes.AgentStateChanged, () => {
      if (this.#loadingPart && !isLate(this.#state)) void this.#applyLate(currentAgent(session));
    });
    session.on(voice.AgentSessionEventTypes.Close, () => {
      this.#closed = true;
      // The call is over: extraction (when on) starts now, and the job's shutdown waits for it.
      if (this.#extract) void this.extractAfterCall();
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

  /**
   * Stop following the session; late memory that lands afterwards is only logged. The store stays
   * open. With extraction on, it runs now if the session's close has not started it, and close()
   * waits for it (within its time limit): the job's shutdown calls this.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (!this.#extract) return;
    const extraction = this.extractAfterCall();
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.#extract!.timeoutMs + EXTRACT_SHUTDOWN_GRACE_MS);
    });
    try {
      if ((await Promise.race([extraction, limit])) === 'late') {
        this.#logger.warn(
          { userId: this.userId },
          'after-call extraction is still writing past its time limit: the job shuts down without waiting for it',
        );
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * After-call extraction (see plugins/extract.ts): the caller's turns of the attached session go
   * to the model, and the new facts it finds are stored for this user. Runs once per call (later
   * calls get the same promise); undefined when extraction is off, nothing is attached, memory
   * never loaded or there is no LLM to ask. Never rejects; the outcome is logged (counts only).
   * attach() starts it when the session closes; call it yourself only if you do not attach.
   */
  extractAfterCall(): Promise<ExtractionReport | undefined> {
    this.#extraction ??= this.#runExtraction();
    return this.#extraction;
  }

  async #runExtraction(): Promise<ExtractionReport | undefined> {
    const extract = this.#extract;
    const session = this.#session;
    const state = this.#state;
    if (!extract || !session) return undefined;
    if (!state.available) {
      this.#logger.info({ userId: this.userId }, 'after-call extraction skipped: memory was not loaded in this call');
      return undefined;
    }
    const model = extract.llm ?? (session.llm instanceof llm.LLM ? session.llm : undefined);
    if (!model) {
      this.#logger.warn(
        { userId: state.user.id },
        'after-call extraction skipped: the session has no LLM to ask (pass extract.llm)',
      );
      return undefined;
    }
    // Only what the caller said: the block is in the instructions, recall in copies of requests.
    const turns = callerTurns(session.history);
    const report = await extractAndStore({
      handle: state.handle,
      llm: model,
      turns,
      categories: extract.categories,
      pii: extract.pii,
      timeoutMs: extract.timeoutMs,
      maxFacts: extract.maxFacts,
      extraKwargs: extract.extraKwargs,
      onSensitive: (event) => this.#sensitive(event),
    });
    // Counts, codes and times only: never a fact or a word of the call.
    const fields = { userId: state.user.id, ...report };
    if (report.status === 'failed' || report.status === 'timeout') {
      this.#logger.error(fields, 'after-call extraction failed: what was stored during the call is kept');
    } else {
      this.#logger.info(fields, 'memory extracted after the call');
    }
    return report;
  }

  /** A value kept out of memory: kinds only. */
  #sensitive(event: SensitiveValueEvent): void {
    this.#logger.warn({ userId: this.userId, ...event }, 'sensitive value kept out of memory');
  }

  /** @internal For userMemory: the tools' onSensitive. */
  reportSensitive(event: SensitiveValueEvent): void {
    this.#sensitive(event);
  }

  /**
   * This model request's context with the memories most relevant to the user's latest words that
   * are not in the block, as a delimited system message just before those words; the context
   * itself when recall is off, memory is not loaded, the request does not answer a user turn,
   * nothing matches, or the search is later than the recall budget (the turn then goes on without
   * it). The agent's own history is never changed, so nothing recalled is kept or saved again.
   *
   * attach() (and greet()) make every agent of the session do this; call it from your own
   * `llmNode` only if you wire agents by hand.
   */
  async recallInto(chatCtx: llm.ChatContext): Promise<llm.ChatContext> {
    const state = this.#state;
    const recall = this.#recall;
    if (!recall || !state.available) return chatCtx;
    const pending = pendingUserMessage(chatCtx);
    const text = pending?.message.textContent;
    if (!pending || !text) return chatCtx;
    let found = this.#recalled.get(pending.message.id);
    if (!found) {
      const prefetched = this.#prefetched?.text === text.trim() ? this.#prefetched : undefined;
      this.#prefetched = undefined;
      this.#finals = [];
      const outcome = prefetched?.outcome ?? this.#search(text);
      const waitFrom = performance.now();
      found = outcome.then((o) => {
        // Ids, counts and times only: never the words or the memories. `waitedMs` is what the
        // reply waited for it (less than `ms` when it started on the final transcript).
        this.#logger.info(
          {
            userId: state.user.id,
            status: o.status,
            ms: Math.round(o.elapsedMs * 100) / 100,
            waitedMs: Math.round((performance.now() - waitFrom) * 100) / 100,
            prefetched: prefetched !== undefined,
            searched: !state.allLoaded,
            memories: o.status === 'found' ? o.memories.length : 0,
          },
          'memory recalled for the turn',
        );
        return o.status === 'found' ? o.text : undefined;
      });
      this.#recalled.set(pending.message.id, found);
    }
    const recalled = await found;
    if (!recalled) return chatCtx;
    const copy = chatCtx.copy();
    copy.items.splice(pending.index, 0, llm.ChatMessage.create({ role: 'system', content: recalled }));
    return copy;
  }

  /** One recall search for this text, within the recall budget (never rejects). */
  #search(text: string): Promise<RecallOutcome> {
    const state = this.#state;
    // Every memory of the user is in the block already (it had fewer than the limit at session
    // start): recall could only bring one stored since, by this call (the conversation holds it) or
    // by another call of theirs at the same time (the next call's block will).
    if (!this.#recall || !state.available || state.allLoaded)
      return Promise.resolve({ status: 'nothing', elapsedMs: 0 });
    return recallMemoriesForTurn(state.handle, text, { ...this.#recall, exclude: state.memories });
  }

  /**
   * The caller's words so far, as the speech-to-text finalised them: start the turn's recall now,
   * while the turn is still being detected, so the reply does not wait for it.
   */
  #prefetch(transcript: string): void {
    if (!this.#recall || !this.#state.available || !transcript.trim()) return;
    this.#finals.push(transcript.trim());
    const text = this.#finals.join(' ');
    this.#prefetched = { text, outcome: this.#search(text) };
  }

  /**
   * Make this agent add per-turn recall to each model request (recallInto, around its own
   * llmNode, yours included when you override it). attach() does it for every agent that
   * answers; idempotent.
   */
  addRecall(agent: voice.Agent): void {
    if (!this.#recall || this.#withRecall.has(agent)) return;
    this.#withRecall.add(agent);
    const llmNode = agent.llmNode.bind(agent);
    agent.llmNode = async (chatCtx, toolCtx, modelSettings) =>
      llmNode(await this.recallInto(chatCtx), toolCtx, modelSettings);
  }

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
  const pii = piiFrom(options);
  const extract = extractFrom(options, pii);
  const logger = options.logger ?? agentsLogger({ job: ctx.job.id });
  // The tools report what they kept out to the log (kinds only), and to your onSensitive too.
  const built: { memory?: AgentMemory } = {};
  const tools = {
    ...options.tools,
    pii: options.tools?.pii ?? pii,
    onSensitive: (event: SensitiveValueEvent) => {
      built.memory?.reportSensitive(event);
      options.tools?.onSensitive?.(event);
    },
  };
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
      tools,
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
  const agentMemory = new AgentMemory(state, {
    settingsInstructions: options.settingsInstructions,
    logger,
    recall: recallFrom(options),
    extract,
  });
  built.memory = agentMemory;
  ctx.addShutdownCallback(() => agentMemory.close());
  return agentMemory;
}

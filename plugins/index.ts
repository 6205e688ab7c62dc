export {
  userMemory,
  AgentMemory,
  type UserMemoryOptions,
  type JobContextLike,
  type MemoryAgentOptions,
  type ToolMap,
} from './user-memory.js';
export { serveMemory, isJobProcess, type MemoryServer, type ServeMemoryOptions } from './serve.js';
export { prewarmMemory, processMemoryStore, JOB_PROCESS_MEMORY_OPTIONS } from './process-store.js';
export {
  memoryGreeting,
  MEMORY_UNAVAILABLE_NOTICE,
  GENERIC_GREETING_INSTRUCTIONS,
  type MemoryGreeting,
} from './greeting.js';
export { applyLateMemory, lateMemoryNote, waitsForLateMemory } from './late-memory.js';
export { tenantFromMetadata } from './tenant.js';
export { agentsLogger, type MemoryLogger } from './logger.js';
export {
  resolveIdentity,
  IdentityResolutionError,
  SIP_PHONE_NUMBER_ATTRIBUTE,
  type IdentitySource,
  type ParticipantLike,
} from './identity.js';
export {
  renderMemoryBlock,
  memoryBlockLine,
  quoteMemoryText,
  MEMORY_BLOCK_OPEN,
  MEMORY_BLOCK_CLOSE,
  MEMORY_OFF_NOTICE,
  MEMORY_ASK_NOTICE,
  consentNotice,
  type MemoryBlockOptions,
} from './memory-block.js';
export {
  createMemoryTools,
  DEFAULT_CATEGORIES,
  DEFAULT_TOOL_TIMEOUT_MS,
  MEMORY_TOOL_NAMES,
  CONSENT_DENIED_ANSWER,
  CONSENT_REQUIRED_ANSWER,
  type MemoryTools,
  type MemoryToolsOptions,
  type MemoryToolCall,
} from './tools.js';
export {
  startUserMemory,
  memoryInstructions,
  DEFAULT_MEMORY_BUDGET_MS,
  MEMORY_LOADING_INSTRUCTIONS,
  type StartUserMemoryOptions,
  type UserMemorySession,
  type UserMemoryReady,
  type UserMemoryUnavailable,
  type UserMemoryFailed,
  type UserMemoryLate,
} from './session.js';
export {
  recallForTurn,
  recallMemoriesForTurn,
  renderRecalled,
  DEFAULT_RECALL_BUDGET_MS,
  DEFAULT_RECALL_LIMIT,
  DEFAULT_RECALL_MAX_CHARS,
  RECALL_BLOCK_OPEN,
  RECALL_BLOCK_CLOSE,
  type RecallOptions,
  type RecallOutcome,
  type Searchable,
} from './recall.js';
export {
  extractAndStore,
  callerTurns,
  parseExtractedFacts,
  extractionChatContext,
  extractionInstructions,
  EXTRACTION_PROMPT_OPENING,
  DEFAULT_EXTRACT_TIMEOUT_MS,
  DEFAULT_EXTRACT_MAX_FACTS,
  MAX_EXTRACT_TRANSCRIPT_CHARS,
  MAX_EXTRACTED_VALUE_CHARS,
  type ExtractOptions,
  type ExtractAndStoreOptions,
  type ExtractedFact,
  type ExtractionReport,
} from './extract.js';
export {
  screenMemory,
  screenRemember,
  refusalAnswer,
  redactionNote,
  type ScreenedMemory,
  type SensitiveValueEvent,
} from './sensitive.js';

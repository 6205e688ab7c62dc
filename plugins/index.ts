export {
  resolveIdentity,
  IdentityResolutionError,
  SIP_PHONE_NUMBER_ATTRIBUTE,
  type IdentitySource,
  type ParticipantLike,
} from './identity.js';
export {
  renderMemoryBlock,
  quoteMemoryText,
  MEMORY_BLOCK_OPEN,
  MEMORY_BLOCK_CLOSE,
  type MemoryBlockOptions,
} from './memory-block.js';
export {
  createMemoryTools,
  DEFAULT_CATEGORIES,
  DEFAULT_TOOL_TIMEOUT_MS,
  MEMORY_TOOL_NAMES,
  type MemoryTools,
  type MemoryToolsOptions,
  type MemoryToolCall,
} from './tools.js';
export {
  startUserMemory,
  memoryInstructions,
  DEFAULT_MEMORY_BUDGET_MS,
  type StartUserMemoryOptions,
  type UserMemorySession,
  type UserMemoryReady,
  type UserMemoryUnavailable,
  type UserMemoryFailed,
  type UserMemoryLate,
} from './session.js';

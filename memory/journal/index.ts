/** The local journal: writes made while the database is unreachable, kept until a replay commits them. */
export {
  Journal,
  journalDir,
  journalExists,
  journalTargetId,
  type JournalInspection,
  type JournalOptions,
} from './journal.js';
export {
  Unreachable,
  type ApplyOutcome,
  type JournalDrop,
  type JournalOp,
  type JournalOpKind,
  type JournalProblem,
  type JournalProblemKind,
  type JournalRemoval,
  type PendingEntry,
  type ReplayReport,
} from './types.js';
export { WriteClock, clockTime, isWriteClock, processClock, MAX_CLOCK_DRIFT_MS } from './clock.js';
export {
  JOURNAL_FORMAT,
  decodeLine,
  encodeLine,
  maxLineBytes,
  sealLine,
  type CodecContext,
  type Decoded,
} from './codec.js';
export { KEY_FILE, loadJournalKey } from './key.js';

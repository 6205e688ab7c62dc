import { MemoryError } from '../../memory/index.js';

/** Exit codes of lk-memory, documented in the README. */
export const EXIT = {
  OK: 0,
  /** `retrieve` or `settings get` found nothing (stdout stays empty); `export` or `erase` of an unknown identity. */
  NOT_FOUND: 1,
  /** `doctor`: at least one check failed. */
  CHECKS_FAILED: 1,
  /** Bad input or usage: the message names the problem. */
  BAD_INPUT: 2,
  /** The backend cannot be reached (or its folder is held by another process). */
  UNAVAILABLE: 3,
  /** The database refused the work (permissions, conflicts, unmigrated schema, ...). */
  FAILED: 4,
} as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof MemoryError) {
    if (error.isInputError) return EXIT.BAD_INPUT;
    if (error.code === 'USER_NOT_FOUND') return EXIT.NOT_FOUND;
    if (error.code === 'BACKEND_UNAVAILABLE' || error.code === 'DATA_DIR_LOCKED') return EXIT.UNAVAILABLE;
  }
  return EXIT.FAILED;
}

/** One line: the code and the message, never a stack trace. */
export function describeError(error: unknown): string {
  if (error instanceof MemoryError) return `lk-memory: ${error.code}: ${error.message}`.replace(/\s*\n\s*/g, ' ');
  return `lk-memory: ${error instanceof Error ? error.message : String(error)}`.replace(/\s*\n\s*/g, ' ');
}

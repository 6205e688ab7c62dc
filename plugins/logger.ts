import { log } from '@livekit/agents';

/** The few logger methods the plugin uses; pino's logger (agents-js's `log()`) fits. */
export interface MemoryLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

const SILENT: MemoryLogger = { info() {}, warn() {}, error() {} };

/**
 * agents-js's logger when it is initialized (it is in every job process), else nothing: the
 * plugin can then be used in tests and scripts that never call initializeLogger().
 * Ids and counts only go to logs, never memory values.
 */
export function agentsLogger(fields: Record<string, unknown> = {}): MemoryLogger {
  try {
    return log().child(fields);
  } catch {
    return SILENT;
  }
}

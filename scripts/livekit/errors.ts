/**
 * Every failure of the local livekit-server tooling is a LivekitServerError with a stable `code`,
 * so tests and scripts branch on the code, and a message that says what to do next.
 */
export type LivekitServerErrorCode =
  /** LIVEKIT_SERVER_BIN names a file that is missing or not executable. */
  | 'BIN_NOT_EXECUTABLE'
  /** No server anywhere and no Go to build one. */
  | 'GO_NOT_FOUND'
  /** `go install` (or the rename/check after it) failed. */
  | 'INSTALL_FAILED'
  /** The configuration file is missing or the options are unusable. */
  | 'INVALID_CONFIG'
  /** The HTTP port is already taken (often by a livekit-server started earlier). */
  | 'PORT_IN_USE'
  /** The server process exited before it answered its health check. */
  | 'START_FAILED'
  /** The server did not answer its health check in time. */
  | 'START_TIMEOUT';

export class LivekitServerError extends Error {
  override readonly name = 'LivekitServerError';
  readonly code: LivekitServerErrorCode;

  constructor(code: LivekitServerErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

export function isLivekitServerError(error: unknown, code?: LivekitServerErrorCode): error is LivekitServerError {
  return error instanceof LivekitServerError && (code === undefined || error.code === code);
}

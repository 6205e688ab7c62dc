/** PostgreSQL frontend protocol framing: just enough to find message boundaries. */

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
export const PROTOCOL_3 = 196608;

export interface FrontendMessage {
  /** The type byte as a character ('Q', 'P', 'S', ...), or '' for untyped startup-phase packets. */
  type: string;
  /** For untyped packets, the request code (protocol version, SSL or cancel request). */
  code?: number;
  bytes: Uint8Array;
}

/**
 * Split a buffer into complete messages. `startup` is true until the startup packet has been seen:
 * packets before it have no type byte. Returns the messages and the unconsumed rest.
 */
export function splitMessages(
  buffer: Buffer,
  startup: boolean,
): { messages: FrontendMessage[]; rest: Buffer; startup: boolean } {
  const messages: FrontendMessage[] = [];
  let offset = 0;
  let inStartup = startup;
  for (;;) {
    if (inStartup) {
      if (buffer.length - offset < 8) break;
      const length = buffer.readInt32BE(offset);
      if (buffer.length - offset < length) break;
      const code = buffer.readInt32BE(offset + 4);
      messages.push({ type: '', code, bytes: buffer.subarray(offset, offset + length) });
      offset += length;
      if (code === PROTOCOL_3) inStartup = false;
    } else {
      if (buffer.length - offset < 5) break;
      const length = 1 + buffer.readInt32BE(offset + 1);
      if (buffer.length - offset < length) break;
      messages.push({ type: String.fromCharCode(buffer[offset]!), bytes: buffer.subarray(offset, offset + length) });
      offset += length;
    }
  }
  return { messages, rest: Buffer.from(buffer.subarray(offset)), startup: inStartup };
}

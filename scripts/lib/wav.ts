import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * A small RIFF/WAVE reader and writer for 16-bit PCM, mono or stereo: the voice caller's fixtures
 * and the recordings it writes. A WAV file is untrusted input: every header field and chunk size is
 * checked against the bytes actually there before anything is read, and a bad file is a WavError
 * with a code, never a RangeError from deep inside a typed array.
 */

export type WavErrorCode =
  | 'TRUNCATED' // fewer bytes than a header or a chunk says
  | 'NOT_RIFF' // no "RIFF" / "WAVE" magic
  | 'NO_FMT' // no fmt chunk before the data chunk
  | 'NO_DATA' // no data chunk
  | 'UNSUPPORTED_FORMAT' // not 16-bit PCM with 1 or 2 channels at a sane rate
  | 'BAD_HEADER' // fields that contradict each other (block align, byte rate, odd data size)
  | 'TOO_LARGE' // a size beyond the configured limit
  | 'WRONG_FORMAT'; // a valid WAV, but not the format the caller asked for

export class WavError extends Error {
  override name = 'WavError';
  constructor(
    readonly code: WavErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isWavError(error: unknown, code?: WavErrorCode): error is WavError {
  return error instanceof WavError && (code === undefined || error.code === code);
}

export interface WavAudio {
  sampleRate: number;
  channels: 1 | 2;
  /** Interleaved signed 16-bit samples. */
  samples: Int16Array;
}

export interface ParseWavOptions {
  /** Largest data chunk accepted, in bytes (default 64 MiB, about 11 minutes of 48 kHz stereo). */
  maxDataBytes?: number;
}

export const DEFAULT_MAX_DATA_BYTES = 64 * 1024 * 1024;
const MIN_RATE = 8_000;
const MAX_RATE = 192_000;
const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
/** The KSDATAFORMAT_SUBTYPE_PCM GUID's tail (its first two bytes are the format tag, 0x0001). */
const PCM_GUID_TAIL = Buffer.from('000000001000800000aa00389b71', 'hex');

function ascii(bytes: Uint8Array, offset: number): string {
  return String.fromCharCode(bytes[offset]!, bytes[offset + 1]!, bytes[offset + 2]!, bytes[offset + 3]!);
}

export function parseWav(bytes: Uint8Array, options: ParseWavOptions = {}): WavAudio {
  const maxDataBytes = options.maxDataBytes ?? DEFAULT_MAX_DATA_BYTES;
  if (bytes.length < 12) throw new WavError('TRUNCATED', `a WAV file needs a 12-byte RIFF header; got ${bytes.length}`);
  if (ascii(bytes, 0) !== 'RIFF' || ascii(bytes, 8) !== 'WAVE') {
    throw new WavError('NOT_RIFF', 'not a RIFF/WAVE file (no "RIFF....WAVE" header)');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const riffSize = view.getUint32(4, true);
  if (riffSize < 4) throw new WavError('BAD_HEADER', `RIFF size ${riffSize} is smaller than the "WAVE" tag`);
  if (riffSize + 8 > bytes.length) {
    throw new WavError('TRUNCATED', `the RIFF header says ${riffSize + 8} bytes; the file has ${bytes.length}`);
  }
  const end = riffSize + 8;

  let fmt: { channels: number; sampleRate: number; bits: number } | undefined;
  let offset = 12;
  while (offset + 8 <= end) {
    const id = ascii(bytes, offset);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (size > end - body) {
      throw new WavError('TRUNCATED', `chunk "${id}" says ${size} bytes; only ${end - body} are left`);
    }
    if (id === 'fmt ') {
      if (size < 16) throw new WavError('BAD_HEADER', `fmt chunk of ${size} bytes; PCM needs at least 16`);
      let tag = view.getUint16(body, true);
      const channels = view.getUint16(body + 2, true);
      const sampleRate = view.getUint32(body + 4, true);
      const byteRate = view.getUint32(body + 8, true);
      const blockAlign = view.getUint16(body + 12, true);
      const bits = view.getUint16(body + 14, true);
      if (tag === WAVE_FORMAT_EXTENSIBLE) {
        if (size < 40) throw new WavError('BAD_HEADER', `extensible fmt chunk of ${size} bytes; it needs 40`);
        const sub = bytes.subarray(body + 24, body + 40);
        const pcm = sub[0] === 1 && sub[1] === 0 && Buffer.from(sub.subarray(2)).equals(PCM_GUID_TAIL);
        tag = pcm ? WAVE_FORMAT_PCM : -1;
      }
      if (tag !== WAVE_FORMAT_PCM) throw new WavError('UNSUPPORTED_FORMAT', `format tag ${tag} is not PCM`);
      if (bits !== 16) throw new WavError('UNSUPPORTED_FORMAT', `${bits}-bit samples; only 16-bit PCM is read`);
      if (channels !== 1 && channels !== 2) {
        throw new WavError('UNSUPPORTED_FORMAT', `${channels} channels; only mono and stereo are read`);
      }
      if (sampleRate < MIN_RATE || sampleRate > MAX_RATE) {
        throw new WavError('UNSUPPORTED_FORMAT', `sample rate ${sampleRate} Hz is outside ${MIN_RATE}-${MAX_RATE}`);
      }
      if (blockAlign !== channels * 2 || byteRate !== sampleRate * blockAlign) {
        throw new WavError(
          'BAD_HEADER',
          `block align ${blockAlign} / byte rate ${byteRate} contradict ${channels} channel(s) of 16-bit at ${sampleRate} Hz`,
        );
      }
      fmt = { channels, sampleRate, bits };
    } else if (id === 'data') {
      if (!fmt) throw new WavError('NO_FMT', 'the data chunk comes before any fmt chunk');
      if (size > maxDataBytes) {
        throw new WavError('TOO_LARGE', `data chunk of ${size} bytes is over the limit of ${maxDataBytes}`);
      }
      const blockAlign = fmt.channels * 2;
      if (size % blockAlign !== 0) {
        throw new WavError(
          'BAD_HEADER',
          `data chunk of ${size} bytes is not a whole number of ${blockAlign}-byte frames`,
        );
      }
      const samples = new Int16Array(size / 2);
      for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(body + i * 2, true);
      return { sampleRate: fmt.sampleRate, channels: fmt.channels as 1 | 2, samples };
    }
    offset = body + size + (size % 2); // chunks are word-aligned
  }
  throw new WavError(fmt ? 'NO_DATA' : 'NO_FMT', fmt ? 'no data chunk' : 'no fmt chunk');
}

export function encodeWav(audio: WavAudio): Buffer {
  const { sampleRate, channels, samples } = audio;
  if (channels !== 1 && channels !== 2) throw new WavError('UNSUPPORTED_FORMAT', `${String(channels)} channels`);
  if (!Number.isInteger(sampleRate) || sampleRate < MIN_RATE || sampleRate > MAX_RATE) {
    throw new WavError('UNSUPPORTED_FORMAT', `sample rate ${sampleRate} Hz is outside ${MIN_RATE}-${MAX_RATE}`);
  }
  if (samples.length % channels !== 0) {
    throw new WavError('BAD_HEADER', `${samples.length} samples do not split into ${channels} channels`);
  }
  const dataBytes = samples.length * 2;
  if (dataBytes + 36 > 0xffffffff) throw new WavError('TOO_LARGE', `${dataBytes} bytes do not fit a RIFF file`);
  const out = Buffer.alloc(44 + dataBytes);
  out.write('RIFF', 0, 'ascii');
  out.writeUInt32LE(36 + dataBytes, 4);
  out.write('WAVE', 8, 'ascii');
  out.write('fmt ', 12, 'ascii');
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(WAVE_FORMAT_PCM, 20);
  out.writeUInt16LE(channels, 22);
  out.writeUInt32LE(sampleRate, 24);
  out.writeUInt32LE(sampleRate * channels * 2, 28);
  out.writeUInt16LE(channels * 2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36, 'ascii');
  out.writeUInt32LE(dataBytes, 40);
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(samples[i]!, 44 + i * 2);
  return out;
}

export function wavDurationSec(audio: WavAudio): number {
  return audio.samples.length / audio.channels / audio.sampleRate;
}

export async function readWavFile(file: string, options: ParseWavOptions = {}): Promise<WavAudio> {
  const maxDataBytes = options.maxDataBytes ?? DEFAULT_MAX_DATA_BYTES;
  // Refuse a huge file before reading it: headers, odd chunks and the data together stay well under this.
  const { size } = await stat(file);
  if (size > maxDataBytes + 1024 * 1024) {
    throw new WavError('TOO_LARGE', `${file} is ${size} bytes; the limit is about ${maxDataBytes}`);
  }
  try {
    return parseWav(await readFile(file), options);
  } catch (error) {
    if (error instanceof WavError) error.message = `${file}: ${error.message}`;
    throw error;
  }
}

export async function writeWavFile(file: string, audio: WavAudio): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, encodeWav(audio));
}

/** The format the voice caller sends and records: 48 kHz mono 16-bit PCM. */
export function requireFormat(audio: WavAudio, sampleRate: number, channels: 1 | 2, what: string): WavAudio {
  if (audio.sampleRate !== sampleRate || audio.channels !== channels) {
    throw new WavError(
      'WRONG_FORMAT',
      `${what} is ${audio.sampleRate} Hz ${audio.channels === 1 ? 'mono' : 'stereo'}; it must be ${sampleRate} Hz ` +
        `${channels === 1 ? 'mono' : 'stereo'} 16-bit PCM (convert it with: sox in.wav -r ${sampleRate} -c ${channels} -b 16 out.wav)`,
    );
  }
  return audio;
}

/**
 * PCM helpers for the speech stand-in and its tests: 16-bit mono sample math, a synthetic voiced
 * signal, WAV encoding and decoding. Samples are `Int16Array`s (s16le on the wire).
 */

/** Full scale of a 16-bit sample, the unit of every level below (RMS 1.0 = a full-scale square wave). */
export const FULL_SCALE = 32768;

/** Root mean square of the samples, as a fraction of full scale (0 for no samples). */
export function rms(samples: Int16Array): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  return Math.sqrt(sum / samples.length) / FULL_SCALE;
}

/** Samples of little-endian 16-bit PCM bytes (a trailing odd byte is ignored). Copies. */
export function pcmFromBytes(bytes: Uint8Array): Int16Array {
  const count = Math.floor(bytes.byteLength / 2);
  const samples = new Int16Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
  for (let i = 0; i < count; i += 1) samples[i] = view.getInt16(i * 2, true);
  return samples;
}

/** Little-endian bytes of the samples. Copies. */
export function bytesFromPcm(samples: Int16Array): Buffer {
  const bytes = Buffer.alloc(samples.length * 2);
  samples.forEach((sample, i) => bytes.writeInt16LE(sample, i * 2));
  return bytes;
}

export interface VoicedOptions {
  /** Fundamental frequency in Hz (default 140, a low speaking voice). */
  f0?: number;
  /** Peak level as a fraction of full scale (default 0.3). */
  peak?: number;
  /** Syllables a second: the amplitude envelope rises and falls this often (default 4). */
  syllableRate?: number;
}

/**
 * A voice-like synthetic signal: the first eight harmonics of a slowly wavering fundamental
 * (amplitude 1/k), under a syllable envelope that never drops below 35 % (so it has no silent
 * gaps) and 20 ms fades at both ends. Deterministic.
 */
export function voicedSignal(seconds: number, sampleRate: number, options: VoicedOptions = {}): Int16Array {
  const { f0 = 140, peak = 0.3, syllableRate = 4 } = options;
  const count = Math.max(0, Math.round(seconds * sampleRate));
  const samples = new Int16Array(count);
  const fade = Math.round(0.02 * sampleRate);
  const harmonics = 8;
  let norm = 0;
  for (let k = 1; k <= harmonics; k += 1) norm += 1 / k;
  let phase = 0;
  for (let i = 0; i < count; i += 1) {
    const t = i / sampleRate;
    const frequency = f0 * (1 + 0.05 * Math.sin(2 * Math.PI * 3 * t)); // a little intonation
    phase += (2 * Math.PI * frequency) / sampleRate;
    let value = 0;
    for (let k = 1; k <= harmonics; k += 1) value += Math.sin(k * phase) / k;
    const syllable = 0.35 + 0.65 * Math.sin(Math.PI * syllableRate * t) ** 2;
    const edges = Math.min(1, i / fade, (count - 1 - i) / fade);
    samples[i] = Math.round((value / norm) * peak * syllable * Math.max(0, edges) * (FULL_SCALE - 1));
  }
  return samples;
}

/** `seconds` of digital silence. */
export function silence(seconds: number, sampleRate: number): Int16Array {
  return new Int16Array(Math.round(seconds * sampleRate));
}

/** Uniform white noise of the given RMS (fraction of full scale), from `random` (values in [0, 1)). */
export function noise(seconds: number, sampleRate: number, level: number, random: () => number): Int16Array {
  const samples = new Int16Array(Math.round(seconds * sampleRate));
  const amplitude = level * Math.sqrt(3) * (FULL_SCALE - 1); // uniform on [-a, a] has RMS a/sqrt(3)
  for (let i = 0; i < samples.length; i += 1) samples[i] = Math.round((random() * 2 - 1) * amplitude);
  return samples;
}

/** The arrays one after the other. */
export function concatPcm(...parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A canonical 44-byte-header WAV file (PCM, 16-bit) of the samples (interleaved when `channels` > 1). */
export function encodeWav(samples: Int16Array, sampleRate: number, channels = 1): Buffer {
  const data = bytesFromPcm(samples);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(channels, 22);
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE(sampleRate * channels * 2, 28);
  header.writeUInt16LE(channels * 2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

export interface DecodedWav {
  sampleRate: number;
  /** Channels in the file; `samples` is always mono (channels averaged). */
  channels: number;
  samples: Int16Array;
}

/**
 * Decode a RIFF/WAVE file of 16-bit PCM (any chunk order, unknown chunks skipped; a data size of 0
 * or 0xFFFFFFFF, as streaming writers leave it, means "to the end"). Throws on anything else.
 */
export function decodeWav(file: Uint8Array): DecodedWav {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (bytes.length < 12 || bytes.toString('ascii', 0, 4) !== 'RIFF' || bytes.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error('not a RIFF/WAVE file');
  }
  let format: { tag: number; channels: number; sampleRate: number; bits: number } | undefined;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = bytes.toString('ascii', offset, offset + 4);
    let size = bytes.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      if (size < 16) throw new Error('WAV fmt chunk too short');
      format = {
        tag: bytes.readUInt16LE(body),
        channels: bytes.readUInt16LE(body + 2),
        sampleRate: bytes.readUInt32LE(body + 4),
        bits: bytes.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      if (!format) throw new Error('WAV data chunk before its fmt chunk');
      // WAVE_FORMAT_EXTENSIBLE (0xFFFE) with 16 bits is PCM too, for our purposes.
      if ((format.tag !== 1 && format.tag !== 0xfffe) || format.bits !== 16) {
        throw new Error(`unsupported WAV encoding (format ${format.tag}, ${format.bits} bits): only 16-bit PCM`);
      }
      if (format.channels < 1) throw new Error('WAV with no channels');
      if (size === 0 || size === 0xffffffff || body + size > bytes.length) size = bytes.length - body;
      const interleaved = pcmFromBytes(bytes.subarray(body, body + size));
      return {
        sampleRate: format.sampleRate,
        channels: format.channels,
        samples: toMono(interleaved, format.channels),
      };
    }
    offset = body + size + (size % 2); // chunks are word-aligned
  }
  throw new Error('WAV file without a data chunk');
}

function toMono(interleaved: Int16Array, channels: number): Int16Array {
  if (channels === 1) return interleaved;
  const frames = Math.floor(interleaved.length / channels);
  const mono = new Int16Array(frames);
  for (let i = 0; i < frames; i += 1) {
    let sum = 0;
    for (let c = 0; c < channels; c += 1) sum += interleaved[i * channels + c] ?? 0;
    mono[i] = Math.round(sum / channels);
  }
  return mono;
}

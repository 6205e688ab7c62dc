import { encodeWav as writeWav, parseWav } from '../../scripts/lib/wav.js';
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

/** A WAV file (PCM, 16-bit) of the samples, written by the project's one WAV module (scripts/lib/wav.ts). */
export function encodeWav(samples: Int16Array, sampleRate: number, channels: 1 | 2 = 1): Buffer {
  return writeWav({ sampleRate, channels, samples });
}

export interface DecodedWav {
  sampleRate: number;
  /** Channels in the file; `samples` is always mono (channels averaged). */
  channels: number;
  samples: Int16Array;
}

/** Decode an uploaded WAV (untrusted: scripts/lib/wav.ts validates it) to mono samples. */
export function decodeWav(file: Uint8Array): DecodedWav {
  const wav = parseWav(file);
  return { sampleRate: wav.sampleRate, channels: wav.channels, samples: toMono(wav.samples, wav.channels) };
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

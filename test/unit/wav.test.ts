import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureAudible } from '../../scripts/lib/voice-caller.js';
import {
  encodeWav,
  parseWav,
  readWavFile,
  requireFormat,
  wavDurationSec,
  WavError,
  writeWavFile,
  type WavAudio,
} from '../../scripts/lib/wav.js';

function tone(sampleRate: number, channels: 1 | 2, seconds: number, amplitude = 8000): WavAudio {
  const frames = Math.round(sampleRate * seconds);
  const samples = new Int16Array(frames * channels);
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < channels; c++) samples[i * channels + c] = Math.round(amplitude * Math.sin(i / (5 + c)));
  }
  return { sampleRate, channels, samples };
}

/** A header with every field given, for forging bad files. */
function header(fields: Partial<Record<'tag' | 'channels' | 'rate' | 'byteRate' | 'align' | 'bits', number>> = {}) {
  const b = encodeWav(tone(16_000, 1, 0.01));
  const channels = fields.channels ?? 1;
  const rate = fields.rate ?? 16_000;
  b.writeUInt16LE(fields.tag ?? 1, 20);
  b.writeUInt16LE(channels, 22);
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(fields.byteRate ?? rate * channels * 2, 28);
  b.writeUInt16LE(fields.align ?? channels * 2, 32);
  b.writeUInt16LE(fields.bits ?? 16, 34);
  return b;
}

function code(bytes: Uint8Array): string {
  try {
    parseWav(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(WavError);
    return (error as WavError).code;
  }
  throw new Error('parsed');
}

describe('wav', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'wav-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips mono and stereo PCM16 through bytes and files', async () => {
    for (const audio of [tone(48_000, 1, 0.25), tone(22_050, 2, 0.1)]) {
      const back = parseWav(encodeWav(audio));
      expect(back.sampleRate).toBe(audio.sampleRate);
      expect(back.channels).toBe(audio.channels);
      expect(Array.from(back.samples)).toEqual(Array.from(audio.samples));
      const file = path.join(dir, 'nested', `${audio.channels}.wav`);
      await writeWavFile(file, audio);
      const read = await readWavFile(file);
      expect(wavDurationSec(read)).toBeCloseTo(wavDurationSec(audio), 6);
      expect(Array.from(read.samples)).toEqual(Array.from(audio.samples));
    }
    expect(wavDurationSec(parseWav(encodeWav({ sampleRate: 8000, channels: 1, samples: new Int16Array(0) })))).toBe(0);
  });

  it('skips unknown chunks and reads the fixtures as 48 kHz mono speech', async () => {
    const plain = encodeWav(tone(16_000, 1, 0.01));
    const list = Buffer.concat([Buffer.from('LIST'), Buffer.from([3, 0, 0, 0]), Buffer.from('abc\0')]); // odd size + pad byte
    const withList = Buffer.concat([plain.subarray(0, 36), list, plain.subarray(36)]);
    withList.writeUInt32LE(withList.length - 8, 4);
    expect(Array.from(parseWav(withList).samples)).toEqual(Array.from(parseWav(plain).samples));
    for (const name of ['alice-teal', 'bob-question', 'alice-question', 'interrupt']) {
      const audio = requireFormat(await readWavFile(`test/fixtures/audio/${name}.wav`), 48_000, 1, name);
      expect(wavDurationSec(audio)).toBeGreaterThan(1);
      expect(wavDurationSec(audio)).toBeLessThan(4);
      expect(measureAudible(audio).audibleSec).toBeGreaterThan(1);
    }
  });

  it('refuses truncated files with TRUNCATED', () => {
    const good = encodeWav(tone(16_000, 1, 0.05));
    expect(code(good.subarray(0, 0))).toBe('TRUNCATED');
    expect(code(good.subarray(0, 11))).toBe('TRUNCATED');
    expect(code(good.subarray(0, 30))).toBe('TRUNCATED'); // inside the fmt chunk
    expect(code(good.subarray(0, good.length - 2))).toBe('TRUNCATED'); // the RIFF size says more
    const lyingData = Buffer.from(good);
    lyingData.writeUInt32LE(good.length, 40); // the data chunk says more than the file holds
    expect(code(lyingData)).toBe('TRUNCATED');
  });

  it('refuses what is not RIFF/WAVE, and PCM it does not read', () => {
    expect(code(Buffer.from('RIFX\x24\x00\x00\x00WAVEfmt '))).toBe('NOT_RIFF');
    expect(code(Buffer.from('RIFF\x04\x00\x00\x00AVI '))).toBe('NOT_RIFF');
    expect(code(Buffer.from('ID3\x03 not a wav at all, just bytes'))).toBe('NOT_RIFF');
    expect(code(header({ tag: 3 }))).toBe('UNSUPPORTED_FORMAT'); // IEEE float
    expect(code(header({ bits: 8, align: 1, byteRate: 16_000 }))).toBe('UNSUPPORTED_FORMAT');
    expect(code(header({ bits: 24, align: 3, byteRate: 48_000 }))).toBe('UNSUPPORTED_FORMAT');
    expect(code(header({ channels: 6 }))).toBe('UNSUPPORTED_FORMAT');
    expect(code(header({ channels: 0 }))).toBe('UNSUPPORTED_FORMAT');
    expect(code(header({ rate: 0 }))).toBe('UNSUPPORTED_FORMAT');
    expect(code(header({ rate: 4_000_000_000, byteRate: 1 }))).toBe('UNSUPPORTED_FORMAT');
    expect(code(header({ align: 4 }))).toBe('BAD_HEADER');
    expect(code(header({ byteRate: 1 }))).toBe('BAD_HEADER');
    const noFmt = Buffer.concat([Buffer.from('RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00')]);
    expect(code(noFmt)).toBe('NO_FMT');
    const noData = encodeWav(tone(16_000, 1, 0)).subarray(0, 36);
    noData.writeUInt32LE(28, 4);
    expect(code(noData)).toBe('NO_DATA');
    const oddData = Buffer.concat([encodeWav(tone(16_000, 1, 0)), Buffer.from([1, 0])]);
    oddData.writeUInt32LE(oddData.length - 8, 4);
    oddData.writeUInt32LE(1, 40);
    expect(code(oddData)).toBe('BAD_HEADER'); // one byte is half a sample
  });

  it('refuses absurd sizes before allocating anything', async () => {
    const huge = Buffer.from(encodeWav(tone(16_000, 1, 0)));
    huge.writeUInt32LE(0xffffffff, 4); // RIFF size of 4 GiB on a 44-byte file
    expect(code(huge)).toBe('TRUNCATED');
    const big = encodeWav(tone(16_000, 1, 0.1));
    expect(() => parseWav(big, { maxDataBytes: 1000 })).toThrow(expect.objectContaining({ code: 'TOO_LARGE' }));
    const file = path.join(dir, 'big.wav');
    await writeFile(file, big);
    await expect(readWavFile(file, { maxDataBytes: 10 })).rejects.toMatchObject({ code: 'TOO_LARGE' });
    expect(() => encodeWav({ sampleRate: 48_000, channels: 2, samples: new Int16Array(3) })).toThrow(WavError);
  });

  it('names the file and the sox command when the format is wrong', async () => {
    const file = path.join(dir, 'low.wav');
    await writeWavFile(file, tone(16_000, 2, 0.01));
    const audio = await readWavFile(file);
    expect(() => requireFormat(audio, 48_000, 1, file)).toThrow(
      /low\.wav is 16000 Hz stereo.*sox in\.wav -r 48000 -c 1/,
    );
    await writeFile(file, 'garbage, not audio at all');
    await expect(readWavFile(file)).rejects.toThrow(/low\.wav: not a RIFF\/WAVE file/);
  });
});

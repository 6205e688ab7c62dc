import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { identityToUserId } from '../../memory/index.js';
import { readWavFile } from '../../scripts/lib/wav.js';
import { measureAudible } from '../../scripts/lib/voice-caller.js';
import { cleanEnv, runTs } from '../support/processes.js';

/**
 * The README's `npm run demo -- --voice`, run as a user runs it (its own process, the embedded
 * default): the two callers speak, the agent hears and answers aloud, and memory holds alice's
 * colour only.
 */
describe('npm run demo -- --voice', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-demo-voice-'));
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it('speaks: what each caller said, what the agent heard and answered, recordings, and the memory table', async () => {
    const result = await runTs('scripts/demo.ts', ['--voice'], cleanEnv({ MEMORY_DATA_DIR: dataDir }));
    expect(result.code, result.stderr).toBe(0);
    const out = result.stdout;
    expect(out).toContain('agent heard  "remember my favorite color is teal"');
    expect(out.match(/agent heard {2}"what is my favorite color"/g)).toHaveLength(2);
    // The answers were heard as audio by the callers, and alice's second answer used her memory.
    expect(out).toMatch(/agent said {3}.*teal.*\(alice heard [1-9]/);
    const rows = out.split('\n').filter((line) => line.includes('@example.com  '));
    expect(rows).toEqual([
      expect.stringMatching(
        new RegExp(`^alice@example.com +${identityToUserId('alice@example.com')} +PREFERENCE +favorite_color +teal$`),
      ),
      expect.stringMatching(
        new RegExp(`^bob@example.com +${identityToUserId('bob@example.com')} +- +- +\\(nothing stored\\)$`),
      ),
    ]);
    for (const who of ['alice', 'bob']) {
      const recording = path.join(dataDir, 'demo-voice', `${who}_example.com-heard.wav`);
      expect(measureAudible(await readWavFile(recording)).audibleSec).toBeGreaterThan(1);
    }
  });
});

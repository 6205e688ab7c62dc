import '../support/quiet-rtc.js';
import { describe, expect, it } from 'vitest';
import { runLoad } from '../../scripts/load.js';

/**
 * `npm run load`, small: a started 2-node, 2-worker stack (PgBouncer, Redis, the scripted model),
 * text and voice sessions, returning identities and one identity on two calls at once. Pass/fail
 * is correctness only (every session completes, no errors, no cross-user read); the timings are
 * benchmark output and are not asserted.
 */
describe('npm run load', () => {
  it('runs small against a started cluster: every session completes, no errors, no cross-user reads', async () => {
    const lines: string[] = [];
    const result = await runLoad({
      sessions: 6,
      concurrency: 3,
      voiceShare: 0.34,
      returningShare: 0.5,
      nodes: 2,
      workers: 2,
      log: (line) => lines.push(line),
    });
    const summary = JSON.stringify({ errors: result.errorSamples, cross: result.crossUserReadSamples });
    expect(result.sessions.started, summary).toBe(6);
    expect(result.sessions.completed, summary).toBe(result.sessions.started);
    expect(result.errors, summary).toBe(0);
    expect(result.crossUserReads, summary).toBe(0);
    expect(result.sessions.voice).toBe(2);
    expect(result.sessions.returning).toBe(3);
    expect(result.sessions.concurrentSameIdentity).toBeGreaterThanOrEqual(1);
    expect(result.checked.modelRequests).toBeGreaterThan(0);
    expect(result.checked.unattributedRequests).toBe(0);
    expect(result.checked.unrecognizedUtterances).toBe(0);
    expect(lines.some((l) => l.includes('session 6 done'))).toBe(true);

    // The JSON's keys (values are timings: present, not judged).
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- walking the written JSON by key
    const json = JSON.parse(JSON.stringify(result)) as Record<string, any>;
    expect(json.nodes).toBe(2);
    expect(json.workers).toBe(2);
    for (const key of ['p50', 'p95', 'p99']) expect(typeof json.joinToGreetingMs[key]).toBe('number');
    for (const kind of ['text', 'voice', 'all']) expect(typeof json.turnMs[kind].p95).toBe('number');
    expect(json.memoryOps.count).toBeGreaterThanOrEqual(12); // a remember and a recall per session
    expect(typeof json.memoryOps.ms.p95).toBe('number');
    expect(json.workerProcesses.jobProcesses.count).toBeGreaterThan(0);
    expect(typeof json.workerProcesses.jobProcesses.peakRssMb.max).toBe('number');
    expect(typeof json.workerProcesses.jobProcesses.cpuSec.total).toBe('number');
  }, 180_000);
});

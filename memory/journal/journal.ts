import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Gate } from '../embedded/gate.js';
import { tryLockFile, type DataDirLock } from '../embedded/lock.js';
import type { EncryptedSecret } from '../settings/cipher.js';

/** A write that could not reach the database, as the journal keeps it until it does. */
export type JournalOp =
  | { op: 'store'; userId: string; identity: string; category: string; key: string; value: string; clock: string }
  | { op: 'forget'; userId: string; identity: string; category: string; key: string; clock: string }
  | {
      op: 'settings';
      userId: string;
      identity: string;
      tenant: string;
      config: Record<string, unknown> | null;
      /** Already encrypted, as in the database: the journal never holds a plaintext secret. */
      secrets: Record<string, EncryptedSecret>;
      removeSecrets: string[];
      clock: string;
    };

export interface PendingEntry {
  file: string;
  line: number;
  op: JournalOp;
}

export interface JournalProblem {
  file: string;
  line: number;
  kind: 'torn' | 'corrupt' | 'rejected';
  reason: string;
}

export type ApplyOutcome = 'applied' | 'older';

export interface ReplayReport {
  applied: number;
  /** Replayed, but the database already held a newer write (or this very one): nothing changed. */
  older: number;
  /** Still waiting: the database was unreachable again. */
  remaining: number;
  /** Lines set aside (never silently dropped): torn or corrupt lines, and entries the database refused. */
  problems: JournalProblem[];
  /** Journal files of live processes, which those processes replay themselves. */
  skippedFiles: number;
}

/** Thrown by an apply function to say "the database is unreachable: keep this entry and stop". */
export class Unreachable extends Error {}

const SUFFIX = '.jsonl';

function checksum(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function encode(op: JournalOp): string {
  const body = JSON.stringify({ v: 1, at: new Date().toISOString(), pid: process.pid, ...op });
  return `${JSON.stringify({ h: checksum(body), e: JSON.parse(body) })}\n`;
}

/** Decode one line; undefined with a reason when it is not an intact entry. */
function decode(line: string): { op?: JournalOp; reason?: string } {
  try {
    const { h, e } = JSON.parse(line) as { h: string; e: { v: number } & JournalOp };
    if (checksum(JSON.stringify(e)) !== h) return { reason: 'checksum mismatch' };
    if (e.v !== 1) return { reason: `unknown entry version ${e.v}` };
    return { op: e };
  } catch {
    return { reason: 'not valid JSON' };
  }
}

interface ParsedFile {
  entries: PendingEntry[];
  /** Intact lines that failed their checksum or parse, with their text. */
  corrupt: Array<{ line: number; text: string; reason: string }>;
  /** The unterminated last line, if any: a write cut short by a crash (or still in progress). */
  torn: string | undefined;
}

function parse(file: string, text: string): ParsedFile {
  const parts = text.split('\n');
  const torn = parts.pop() || undefined;
  const result: ParsedFile = { entries: [], corrupt: [], torn };
  parts.forEach((line, i) => {
    if (line === '') return;
    const decoded = decode(line);
    if (decoded.op) result.entries.push({ file, line: i + 1, op: decoded.op });
    else result.corrupt.push({ line: i + 1, text: line, reason: decoded.reason! });
  });
  return result;
}

/**
 * The durable local journal: writes that could not reach the database wait here, fsynced before
 * they are acknowledged, until a replay commits them. Each process appends to a file of its own
 * (and holds a lock on it while alive); any process may replay the files of processes that died.
 * Entries leave a file only after the database committed them, by an atomic rewrite of the file.
 */
export class Journal {
  readonly dir: string;
  readonly file: string;
  /** Files of this journal start with it: one database's entries are never replayed into another. */
  readonly prefix: string;
  readonly #gate = new Gate();
  #handle: fsp.FileHandle | undefined;
  #lock: DataDirLock | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /**
   * The folder's journal files, listed at most once a second: reads check for pending writes on
   * every call, and an empty journal (the normal case) must cost them nothing. This process's own
   * appends and replays update it at once, so its own pending writes are always visible; another
   * process's are visible within a second.
   */
  #listing: { at: number; files: string[] } | undefined;
  static readonly LISTING_TTL_MS = 1000;

  /** `target` names the database (its location, without secrets); entries only ever go back to it. */
  constructor(dir: string, target: string) {
    this.dir = path.resolve(dir);
    this.prefix = createHash('sha256').update(target).digest('hex').slice(0, 12);
    this.file = path.join(this.dir, `${this.prefix}-${process.pid}-${Date.now()}-${randomBytes(3).toString('hex')}${SUFFIX}`);
  }

  /** Append and fsync; the write is acknowledged only when this resolves. */
  append(op: JournalOp): Promise<void> {
    return this.#gate.run(async () => {
      if (!this.#handle) {
        await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
        this.#handle = await fsp.open(this.file, 'a', 0o600);
        this.#lock ??= await tryLockFile(this.file);
        // The new file's name must be durable too, not only its contents.
        await syncDir(this.dir);
      }
      await this.#handle.appendFile(encode(op), 'utf8');
      await this.#handle.sync();
      if (this.#listing && !this.#listing.files.includes(this.file)) this.#listing.files = [...this.#listing.files, this.file].sort();
    });
  }

  async #cachedFiles(): Promise<string[]> {
    if (!this.#listing || Date.now() - this.#listing.at > Journal.LISTING_TTL_MS) {
      this.#listing = { at: Date.now(), files: await this.#files() };
    }
    return this.#listing.files;
  }

  async #files(): Promise<string[]> {
    try {
      return (await fsp.readdir(this.dir))
        .filter((f) => f.startsWith(`${this.prefix}-`) && f.endsWith(SUFFIX))
        .map((f) => path.join(this.dir, f))
        .sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  /** Every intact pending entry in every journal file of the folder, oldest file first. */
  async pending(): Promise<PendingEntry[]> {
    const out: PendingEntry[] = [];
    for (const file of await this.#cachedFiles()) {
      const text = await fsp.readFile(file, 'utf8').catch(() => '');
      out.push(...parse(file, text).entries);
    }
    return out;
  }

  /** Pending writes of one user only: a user sees their own pending writes and nobody else's. */
  async pendingFor(userId: string): Promise<JournalOp[]> {
    return (await this.pending()).map((e) => e.op).filter((op) => op.userId === userId);
  }

  /**
   * Send pending entries to the database in order, through `apply`, which throws Unreachable to
   * stop. Replays this process's file and the files of dead processes; a live process's file is
   * left to that process.
   */
  async replay(apply: (op: JournalOp) => Promise<ApplyOutcome>): Promise<ReplayReport> {
    const report: ReplayReport = { applied: 0, older: 0, remaining: 0, problems: [], skippedFiles: 0 };
    const files = await this.#files();
    this.#listing = undefined;
    for (const file of files) {
      if (file === this.file) {
        await this.#gate.run(() => this.#replayFile(file, apply, report, true));
        continue;
      }
      const lock = await tryLockFile(file);
      if (!lock) {
        report.skippedFiles += 1;
        continue;
      }
      try {
        await this.#replayFile(file, apply, report, false);
      } finally {
        await lock.release();
      }
    }
    return report;
  }

  async #replayFile(file: string, apply: (op: JournalOp) => Promise<ApplyOutcome>, report: ReplayReport, own: boolean): Promise<void> {
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch {
      return;
    }
    const parsed = parse(file, text);
    const rejected: string[] = [];
    for (const bad of parsed.corrupt) {
      report.problems.push({ file, line: bad.line, kind: 'corrupt', reason: bad.reason });
      rejected.push(`${JSON.stringify({ reason: bad.reason, line: bad.line, text: bad.text })}\n`);
    }
    if (parsed.torn !== undefined) {
      // Our own file cannot have a torn line (appends are serialised); another file's owner is
      // dead (we hold its lock), so its unterminated line is a write the crash cut short. It was
      // never acknowledged (acknowledgement waits for the fsync of the whole line), but it is
      // kept and reported, not dropped.
      report.problems.push({ file, line: parsed.entries.length + parsed.corrupt.length + 1, kind: 'torn', reason: 'unterminated last line (a write cut short by a crash)' });
      rejected.push(`${JSON.stringify({ reason: 'torn', text: parsed.torn })}\n`);
    }
    let done = 0;
    for (const entry of parsed.entries) {
      try {
        const outcome = await apply(entry.op);
        if (outcome === 'applied') report.applied += 1;
        else report.older += 1;
        done += 1;
      } catch (error) {
        if (error instanceof Unreachable) break;
        report.problems.push({ file, line: entry.line, kind: 'rejected', reason: (error as Error).message });
        rejected.push(`${JSON.stringify({ reason: (error as Error).message, entry: entry.op })}\n`);
        done += 1;
      }
    }
    const left = parsed.entries.slice(done);
    report.remaining += left.length;
    if (rejected.length > 0) await fsp.appendFile(`${file.slice(0, -SUFFIX.length)}.rejected`, rejected.join(''), { mode: 0o600 });
    if (done === 0 && rejected.length === 0) return;
    // Rewrite with what is left, atomically: a crash here leaves either the old or the new file.
    if (own) await this.#handle?.close();
    if (own) this.#handle = undefined;
    if (left.length === 0) {
      await fsp.rm(file, { force: true });
    } else {
      const temp = `${file}.${process.pid}.tmp`;
      const handle = await fsp.open(temp, 'w', 0o600);
      await handle.writeFile(left.map((e) => encode(e.op)).join(''), 'utf8');
      await handle.sync();
      await handle.close();
      await fsp.rename(temp, file);
    }
    await syncDir(this.dir);
    this.#listing = undefined;
  }

  /**
   * Replay in the background with backoff (from minMs doubling to maxMs) while anything is
   * pending. `kick()` makes it try now (e.g. after a write reached the database again).
   */
  startBackgroundReplay(apply: (op: JournalOp) => Promise<ApplyOutcome>, options: { minMs?: number; maxMs?: number } = {}): void {
    const minMs = options.minMs ?? 500;
    const maxMs = options.maxMs ?? 30_000;
    let delay = minMs;
    let running = false;
    const tick = async () => {
      this.#timer = undefined;
      if (this.#closed || running) return;
      running = true;
      try {
        const files = await this.#cachedFiles();
        if (files.length > 0) {
          const report = await this.replay(apply);
          delay = report.remaining > 0 ? Math.min(delay * 2, maxMs) : minMs;
        } else {
          delay = Math.min(delay * 2, maxMs);
        }
      } catch {
        delay = Math.min(delay * 2, maxMs);
      } finally {
        running = false;
        this.#schedule(tick, delay);
      }
    };
    this.#kick = () => {
      delay = minMs;
      if (this.#timer) clearTimeout(this.#timer);
      this.#schedule(tick, 0);
    };
    this.#schedule(tick, minMs);
  }

  #kick: (() => void) | undefined;

  /** Replay soon, if anything is pending (cheap when nothing is: no file system access). */
  kick(): void {
    if (this.#listing && this.#listing.files.length === 0 && Date.now() - this.#listing.at <= Journal.LISTING_TTL_MS) return;
    this.#kick?.();
  }

  #schedule(fn: () => Promise<void>, ms: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => void fn(), ms);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#gate.run(async () => {
      await this.#handle?.close();
      this.#handle = undefined;
    });
    await this.#lock?.release();
  }
}

async function syncDir(dir: string): Promise<void> {
  // Directories can be fsynced on Linux and macOS; elsewhere this is best effort.
  try {
    const handle = await fsp.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    /* not supported here */
  }
}

export function journalDir(dataDir: string): string {
  return path.join(path.resolve(dataDir), 'journal');
}

export const journalExists = (dir: string): boolean => fs.existsSync(dir);

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Gate } from '../embedded/gate.js';
import { DNS_NAMESPACE, parseNamespace } from '../identity.js';
import { DEFAULTS } from '../defaults.js';
import { encodeLine, type CodecContext } from './codec.js';
import {
  REJECTED_SUFFIX,
  SUFFIX,
  ensurePrivateDir,
  listJournalFiles,
  listRejectedFiles,
  listOrphanLocks,
  lockJournalFile,
  locksDirOf,
  syncDir,
  type DataDirLock,
} from './files.js';
import { loadJournalKey } from './key.js';
import { JournalReader } from './reader.js';
import { replayFile, type ApplyFn } from './replay.js';
import { removeUserFromFile, removeUserFromRejected } from './removal.js';
import type { JournalOp, JournalProblem, JournalRemoval, PendingEntry, ReplayReport } from './types.js';

export {
  Unreachable,
  type ApplyOutcome,
  type JournalDrop,
  type JournalOp,
  type JournalProblem,
  type JournalRemoval,
  type PendingEntry,
  type ReplayReport,
} from './types.js';

export interface JournalOptions {
  /** The journal folder (created 0700; refused if another user could write in it). */
  dir: string;
  /** Names the database (its location, without secrets); entries only ever go back to it. */
  target: string;
  /** The store's UUIDv5 namespace: entries whose user id is not uuid5(identity) are set aside. */
  namespace?: string;
  /** The store's maxValueBytes: entries over it are set aside. */
  maxValueBytes?: number;
}

/** What `inspect` shows: the writes waiting, and what was set aside (or would be) and why. */
export interface JournalInspection {
  pending: PendingEntry[];
  problems: JournalProblem[];
}

/**
 * The durable local journal: writes that could not reach the database wait here, fsynced before
 * they are acknowledged, until a replay commits them. Each process appends to a file of its own
 * (and holds a lock on it while alive); any process may replay the files of processes that died.
 * Entries leave a file only after the database committed them, by an atomic rewrite of the file.
 *
 * Nothing read from the folder is trusted: files another user could have written are not read,
 * and each line must carry a valid MAC under the folder's key and pass the checks of a direct
 * write (codec.ts); anything else is set aside and reported, never applied and never served.
 */
export class Journal {
  readonly dir: string;
  readonly file: string;
  /** Id of the target database: files of this journal start with it, and each line names it. */
  readonly prefix: string;
  readonly namespace: string;
  readonly maxValueBytes: number;
  readonly #ctx: CodecContext;
  readonly #reader: JournalReader;
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

  /**
   * Open (or create) the journal folder: checks that it is ours and not writable by others
   * (JOURNAL_UNSAFE otherwise, saying how to fix it) and loads or creates its key.
   */
  static async open(options: JournalOptions): Promise<Journal> {
    const dir = path.resolve(options.dir);
    await ensurePrivateDir(dir);
    await ensurePrivateDir(locksDirOf(dir));
    return new Journal(dir, options, await loadJournalKey(dir));
  }

  private constructor(dir: string, options: JournalOptions, key: Buffer) {
    this.dir = dir;
    this.prefix = journalTargetId(options.target);
    this.namespace = parseNamespace(options.namespace ?? DNS_NAMESPACE);
    this.maxValueBytes = options.maxValueBytes ?? DEFAULTS.maxValueBytes;
    this.file = path.join(
      this.dir,
      `${this.prefix}-${process.pid}-${Date.now()}-${randomBytes(3).toString('hex')}${SUFFIX}`,
    );
    this.#ctx = { key, target: this.prefix, namespace: this.namespace, maxValueBytes: this.maxValueBytes };
    this.#reader = new JournalReader(this.#ctx);
  }

  /** Append and fsync; the write is acknowledged only when this resolves. Invalid entries throw, as a direct write would. */
  append(op: JournalOp): Promise<void> {
    const line = encodeLine(op, this.#ctx);
    return this.#gate.run(async () => {
      if (!this.#handle) {
        this.#lock ??= await lockJournalFile(this.dir, this.file);
        this.#handle = await fsp.open(
          this.file,
          fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW,
          0o600,
        );
        // The new file's name must be durable too, not only its contents.
        await syncDir(this.dir);
      }
      await this.#handle.appendFile(line, 'utf8');
      await this.#handle.sync();
      if (this.#listing && !this.#listing.files.includes(this.file))
        this.#listing.files = [...this.#listing.files, this.file].sort();
    });
  }

  async #cachedFiles(): Promise<string[]> {
    if (!this.#listing || Date.now() - this.#listing.at > Journal.LISTING_TTL_MS) {
      const files = await listJournalFiles(this.dir, this.prefix);
      this.#reader.retain(files);
      this.#listing = { at: Date.now(), files };
    }
    return this.#listing.files;
  }

  /** Pending entries and problems of every journal file of this database in the folder, oldest file first. */
  async inspect(): Promise<JournalInspection> {
    const out: JournalInspection = { pending: [], problems: [] };
    for (const file of await this.#cachedFiles()) {
      const read = await this.#reader.read(file);
      if (read === 'missing') continue;
      if ('unsafe' in read) {
        out.problems.push({ file, line: 0, kind: 'unsafe', reason: read.unsafe });
        continue;
      }
      for (const e of read.parsed.entries) out.pending.push({ file, line: e.line, op: e.op });
      for (const b of read.parsed.bad) out.problems.push({ file, line: b.line, kind: b.kind, reason: b.reason });
    }
    return out;
  }

  /** Every valid pending entry (set-aside lines and unsafe files excluded), oldest file first. */
  async pending(): Promise<PendingEntry[]> {
    return (await this.inspect()).pending;
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
  async replay(apply: ApplyFn): Promise<ReplayReport> {
    const report: ReplayReport = {
      applied: 0,
      older: 0,
      remaining: 0,
      problems: [],
      skippedFiles: 0,
      erased: 0,
      dropped: [],
    };
    // The folder may have been opened up since open(): then nothing in it is read.
    await ensurePrivateDir(this.dir);
    await ensurePrivateDir(locksDirOf(this.dir));
    const files = await listJournalFiles(this.dir, this.prefix);
    this.#listing = undefined;
    for (const file of files) {
      if (file === this.file) {
        await this.#gate.run(() => replayFile(file, this.#reader, apply, report, () => this.#closeHandle()));
        continue;
      }
      const lock = await lockJournalFile(this.dir, file);
      if (!lock) {
        report.skippedFiles += 1;
        continue;
      }
      try {
        await replayFile(file, this.#reader, apply, report);
      } finally {
        await lock.release();
      }
    }
    await this.#removeOrphanLocks();
    this.#listing = undefined;
    return report;
  }

  /**
   * Remove every pending entry of one user from this host's journal (erasure): this process's file
   * and the files of dead processes, each rewritten atomically with everything else kept as it was
   * (set-aside and torn lines included), and the user's lines in the set-aside `.rejected` files.
   * Files of live processes are left to them (counted in skippedFiles): their replay drops the
   * entries, since the database then holds the erasure. Unsafe files are not read, as ever.
   */
  async removeUser(userId: string, identity: string): Promise<JournalRemoval> {
    const out: JournalRemoval = { removed: 0, rejectedRemoved: 0, skippedFiles: 0 };
    await ensurePrivateDir(this.dir);
    await ensurePrivateDir(locksDirOf(this.dir));
    const files = await listJournalFiles(this.dir, this.prefix);
    // A `.rejected` file can outlive its journal file: its records are the user's content too.
    for (const rejected of await listRejectedFiles(this.dir, this.prefix)) {
      const file = `${rejected.slice(0, -REJECTED_SUFFIX.length)}${SUFFIX}`;
      if (!files.includes(file)) files.push(file);
    }
    files.sort();
    this.#listing = undefined;
    for (const file of files) {
      const work = async (beforeRewrite?: () => Promise<void>) => {
        out.removed += await removeUserFromFile(file, this.#reader, userId, identity, beforeRewrite);
        out.rejectedRemoved += await removeUserFromRejected(file, userId, identity);
      };
      if (file === this.file) {
        await this.#gate.run(() => work(() => this.#closeHandle()));
        continue;
      }
      const lock = await lockJournalFile(this.dir, file);
      if (!lock) {
        out.skippedFiles += 1;
        continue;
      }
      try {
        await work();
      } finally {
        await lock.release();
      }
    }
    this.#listing = undefined;
    return out;
  }

  /** A writer killed after its file was emptied leaves only its lock socket: take it over, and so remove it. */
  async #removeOrphanLocks(): Promise<void> {
    for (const file of await listOrphanLocks(this.dir, this.prefix)) {
      if (file === this.file) continue;
      const lock = await lockJournalFile(this.dir, file).catch(() => undefined);
      await lock?.release();
    }
  }

  async #closeHandle(): Promise<void> {
    await this.#handle?.close();
    this.#handle = undefined;
  }

  /**
   * Replay in the background with backoff (from minMs doubling to maxMs) while anything is
   * pending. `kick()` makes it try now (e.g. after a write reached the database again).
   */
  startBackgroundReplay(apply: ApplyFn, options: { minMs?: number; maxMs?: number } = {}): void {
    const minMs = options.minMs ?? DEFAULTS.replayMinMs;
    const maxMs = options.maxMs ?? DEFAULTS.replayMaxMs;
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
    if (this.#listing && this.#listing.files.length === 0 && Date.now() - this.#listing.at <= Journal.LISTING_TTL_MS)
      return;
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
    await this.#gate.run(() => this.#closeHandle());
    await this.#lock?.release();
    this.#lock = undefined;
  }
}

/** The id a journal gives its database: the first 12 hex digits of SHA-256 over its location. */
export function journalTargetId(target: string): string {
  return createHash('sha256').update(target).digest('hex').slice(0, 12);
}

export function journalDir(dataDir: string): string {
  return path.join(path.resolve(dataDir), 'journal');
}

export const journalExists = (dir: string): boolean => fs.existsSync(dir);

import type { CodecContext, ParsedJournal } from './codec.js';
import { parseJournal } from './codec.js';
import { openPrivateFile } from './files.js';

export type ReadResult = { parsed: ParsedJournal } | { unsafe: string } | 'missing';

/**
 * Reads and decodes journal files, remembering each file's decoding while the file is unchanged
 * (same inode, size and mtime): reads overlay pending writes on every call, and authenticating and
 * validating every line each time would make a non-empty journal slow everything down.
 */
export class JournalReader {
  readonly #ctx: CodecContext;
  readonly #cache = new Map<string, { ino: number; size: number; mtimeMs: number; parsed: ParsedJournal }>();

  constructor(ctx: CodecContext) {
    this.#ctx = ctx;
  }

  async read(file: string): Promise<ReadResult> {
    const opened = await openPrivateFile(file);
    if (opened === 'missing') {
      this.#cache.delete(file);
      return 'missing';
    }
    if ('unsafe' in opened) {
      this.#cache.delete(file);
      return opened;
    }
    try {
      const { ino, size, mtimeMs } = opened.stat;
      const cached = this.#cache.get(file);
      if (cached && cached.ino === ino && cached.size === size && cached.mtimeMs === mtimeMs)
        return { parsed: cached.parsed };
      const parsed = parseJournal(await opened.handle.readFile('utf8'), this.#ctx);
      this.#cache.set(file, { ino, size, mtimeMs, parsed });
      return { parsed };
    } finally {
      await opened.handle.close();
    }
  }

  forget(file: string): void {
    this.#cache.delete(file);
  }

  /** Drop what is remembered about files no longer listed. */
  retain(files: readonly string[]): void {
    const keep = new Set(files);
    for (const file of this.#cache.keys()) if (!keep.has(file)) this.#cache.delete(file);
  }
}

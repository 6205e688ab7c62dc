import type { MemoryStore } from '../../memory/index.js';

/** "What each user's memory holds": one row per memory, for the demos. */
export async function memoryTable(memory: MemoryStore, identities: readonly string[]): Promise<string> {
  const rows: string[][] = [['identity', 'user id', 'category', 'key', 'value']];
  for (const identity of identities) {
    const handle = memory.forIdentity(identity);
    const memories = await handle.list();
    if (memories.length === 0) rows.push([identity, handle.user.id, '-', '-', '(nothing stored)']);
    for (const m of memories) rows.push([identity, handle.user.id, m.category, m.key, m.value]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = [`What each user's memory holds (${memory.backend.location}):`];
  rows.forEach((row, i) => {
    lines.push(
      row
        .map((cell, j) => cell.padEnd(widths[j]!))
        .join('  ')
        .trimEnd(),
    );
    if (i === 0) lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  });
  return lines.join('\n');
}

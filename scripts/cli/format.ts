import type { Memory } from '../../memory/index.js';

/** Escape tabs, line breaks and backslashes so that one memory is one line of tab-separated text. */
export function escapeField(text: string): string {
  return text.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!);
}

export function memoryLine(memory: Memory): string {
  return [memory.category, escapeField(memory.key), escapeField(memory.value), memory.updatedAt.toISOString()].join('\t');
}

export function memoryJson(memory: Memory): Record<string, string> {
  return {
    category: memory.category,
    key: memory.key,
    value: memory.value,
    createdAt: memory.createdAt.toISOString(),
    updatedAt: memory.updatedAt.toISOString(),
  };
}

import { llm } from '@livekit/agents';
import { expect } from 'vitest';
import type { MemoryTools } from '../../plugins/index.js';

/**
 * Call one memory tool through LiveKit Agents' own ToolContext, so the schema the model sees and
 * the argument validation are the framework's real ones. Every tool must answer with a sentence.
 */
export async function callTool(tools: MemoryTools, name: string, args: Record<string, unknown>): Promise<string> {
  const ctx = new llm.ToolContext(tools);
  const tool = ctx.getFunctionTool(name)!;
  const parsed = (tool.parameters as { parse: (v: unknown) => unknown }).parse(args);
  const result = await tool.execute(parsed, {
    ctx: {} as never,
    toolCallId: 'call_1',
    abortSignal: new AbortController().signal,
  });
  expect(typeof result).toBe('string');
  expect((result as string).length).toBeGreaterThan(0);
  return result as string;
}

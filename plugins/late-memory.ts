import { llm, type voice } from '@livekit/agents';
import type { UserMemoryFailed, UserMemoryReady } from './session.js';

/** The system note added at the current point of the conversation when late memory lands. */
export function lateMemoryNote(memory: UserMemoryReady | UserMemoryFailed): string {
  if (!memory.available) {
    return (
      'Update: long-term memory could not be loaded for this conversation. You cannot remember or recall anything ' +
      'about the user and will not remember this conversation; if it matters for what they ask, say so briefly.'
    );
  }
  const who = memory.firstSession
    ? 'This is your first conversation with this user.'
    : `This user is returning (conversation number ${memory.user.sessionCount}).`;
  return (
    `Update: your long-term memory of this user has just loaded, later than the start of the conversation. ${who} ` +
    'What you remember is in the <user_memory> block of your instructions, and the memory tools (remember, recall, ' +
    'forget, list_memories) are available from now on. Do not greet the user again.'
  );
}

/**
 * Memory that missed the session-start budget has landed: give a running agent the memory tools
 * (next to the tools it already has), swap the "memory is loading" part of its instructions for
 * the loaded one (updateInstructions rewrites the instructions message of its chat context, so the
 * next model request carries it), and add a system note at the current point of the conversation
 * so the model knows memory arrived mid-conversation. A failure instead switches the instructions
 * to "memory is unavailable", with a note.
 *
 * @param loading the memory part of the agent's instructions while memory was late
 * @param loaded what replaces it
 */
export async function applyLateMemory(
  agent: voice.Agent,
  memory: UserMemoryReady | UserMemoryFailed,
  loading: string,
  loaded: string,
): Promise<void> {
  if (memory.available) {
    const memoryEntries = new llm.ToolContext(memory.tools).tools;
    await agent.updateTools(new llm.ToolContext([...agent.toolCtx.tools, ...memoryEntries]));
  }
  const instructions = agent.instructions;
  if (typeof instructions === 'string') await agent.updateInstructions(instructions.replace(loading, loaded));
  // Copy and replace in one synchronous step, so nothing the running turn adds is lost in between.
  const chatCtx = agent.chatCtx.copy();
  chatCtx.addMessage({ role: 'system', content: lateMemoryNote(memory) });
  await agent.updateChatCtx(chatCtx);
}

/** Whether an agent was built while memory was late and has not been given the result yet. */
export function waitsForLateMemory(agent: voice.Agent, loading: string): boolean {
  const instructions = agent.instructions;
  return typeof instructions === 'string' && instructions.includes(loading);
}

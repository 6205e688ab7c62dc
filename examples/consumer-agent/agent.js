// A LiveKit agent with per-user memory: one call wires it in, and the agent a tool hands off to
// gets the same user's memory. Text chat in the room; add stt/tts/vad to the session for voice.
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { ServerOptions, cli, defineAgent, llm, voice } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import { prewarmMemory, serveMemory, userMemory } from 'livekit-user-memory/plugins';

// Worker main process: migrate, and own and serve the embedded database to the job processes
// (with DATABASE_URL, recommended in production, it only migrates). Does nothing in job processes.
await serveMemory();

export default defineAgent({
  prewarm: (proc) => prewarmMemory(proc),
  entry: async (ctx) => {
    await ctx.connect();
    const memory = await userMemory(ctx); // who the participant is, their memory within the budget

    const transfer = llm.tool({
      description: 'Hand the conversation to the billing agent when the user asks for billing.',
      execute: async () =>
        llm.handoff({
          agent: new voice.Agent(memory.agentOptions('You are the billing agent. Be brief.')),
          returns: 'Transferred to billing.',
        }),
    });
    const agent = new voice.Agent(
      memory.agentOptions('You are a friendly assistant. Keep answers short.', { tools: { transfer } }),
    );

    const session = new voice.AgentSession({
      llm: new openai.LLM({
        model: process.env.LLM_MODEL ?? 'gpt-4.1-mini',
        baseURL: process.env.OPENAI_BASE_URL, // any OpenAI-compatible server
        apiKey: process.env.OPENAI_API_KEY || 'none',
        user: memory.userId, // the pseudonymous UUIDv5, never the identity
      }),
      vad: null,
      turnHandling: { turnDetection: null },
    });
    await session.start({
      agent,
      room: ctx.room,
      inputOptions: { audioEnabled: false, textEnabled: true },
      outputOptions: { audioEnabled: false, transcriptionEnabled: true },
    });
    memory.greet(session); // also lets memory that lands after the budget join the running agent
  },
});

cli.runApp(
  new ServerOptions({
    agent: fileURLToPath(import.meta.url),
    agentName: process.env.LIVEKIT_AGENT_NAME ?? 'memory-example',
    port: Number(process.env.AGENT_HTTP_PORT ?? 8081),
    // Load as the share of job slots in use: agents' default (CPU) reads high on a small machine
    // while a job process starts, and livekit-server then dispatches to no one.
    loadFunc: (worker) => Promise.resolve(worker.activeJobs.length / 10),
  }),
);

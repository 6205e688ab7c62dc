import { initializeLogger, llm } from '@livekit/agents';
import * as lkOpenAI from '@livekit/agents-plugin-openai';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  DEFAULT_REPLY_TEXT,
  ScriptedHttpError,
  ScriptedOpenAI,
  allText,
  defaultResponder,
  isToolResult,
  lastToolResult,
  lastUserText,
  rules,
  splitArguments,
  splitText,
  systemText,
  toolNames,
  toolResultFor,
  userSaid,
} from '../support/openai-standin.js';

// The stand-in is checked with the real clients (the OpenAI SDK and LiveKit's plugin), never with
// a parser of our own: what matters is that they accept what it sends.

const standin = new ScriptedOpenAI();
let client: OpenAI;

beforeAll(async () => {
  await standin.start();
  // maxRetries 0, as the LiveKit plugin does: a scripted 500 must surface, not be retried.
  client = new OpenAI({ baseURL: standin.baseURL, apiKey: 'x', maxRetries: 0 });
});

afterAll(async () => {
  await standin.stop();
});

beforeEach(() => {
  standin.setResponder(defaultResponder);
  standin.clear();
});

async function streamWithSdk(params: Omit<OpenAI.ChatCompletionCreateParamsStreaming, 'stream' | 'model'>) {
  const stream = await client.chat.completions.create({
    model: 'scripted',
    stream: true,
    stream_options: { include_usage: true },
    ...params,
  });
  let text = '';
  let textChunks = 0;
  const finishReasons: string[] = [];
  const calls = new Map<number, { id?: string; name?: string; arguments: string; fragments: number }>();
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.delta.content) {
        text += choice.delta.content;
        textChunks += 1;
      }
      for (const call of choice.delta.tool_calls ?? []) {
        const entry = calls.get(call.index) ?? { arguments: '', fragments: 0 };
        if (call.id) entry.id = call.id;
        if (call.function?.name) entry.name = call.function.name;
        if (call.function?.arguments) {
          entry.arguments += call.function.arguments;
          entry.fragments += 1;
        }
        calls.set(call.index, entry);
      }
      if (choice.finish_reason) finishReasons.push(choice.finish_reason);
    }
  }
  return { text, textChunks, finishReasons, calls: [...calls.values()], usage };
}

describe('ScriptedOpenAI with the openai SDK', () => {
  it('streams a text reply in several chunks, ending with stop and usage', async () => {
    standin.setResponder(() => ({ text: 'Your favourite colour is blue, as you told me.' }));
    const result = await streamWithSdk({ messages: [{ role: 'user', content: 'What is my favourite colour?' }] });
    expect(result.text).toBe('Your favourite colour is blue, as you told me.');
    expect(result.textChunks).toBeGreaterThan(1);
    expect(result.finishReasons).toEqual(['stop']);
    expect(result.calls).toEqual([]);
    expect(result.usage?.total_tokens).toBeGreaterThan(0);
  });

  it('streams tool calls (after text) with arguments in fragments, ending with tool_calls', async () => {
    standin.setResponder(() => ({
      text: 'Noting that.',
      toolCalls: [
        { name: 'remember', arguments: { category: 'PREFERENCE', key: 'drink', value: 'tea' } },
        { name: 'recall', arguments: { category: 'FACT' } },
      ],
    }));
    const result = await streamWithSdk({
      messages: [
        { role: 'system', content: 'You remember things.' },
        { role: 'user', content: 'I like tea' },
      ],
      tools: [
        { type: 'function', function: { name: 'recall', parameters: { type: 'object', properties: {} } } },
        { type: 'function', function: { name: 'remember', parameters: { type: 'object', properties: {} } } },
      ],
      parallel_tool_calls: true,
    });
    expect(result.text).toBe('Noting that.');
    expect(result.finishReasons).toEqual(['tool_calls']);
    expect(result.calls.map((call) => call.name)).toEqual(['remember', 'recall']);
    expect(JSON.parse(result.calls[0]!.arguments)).toEqual({ category: 'PREFERENCE', key: 'drink', value: 'tea' });
    expect(JSON.parse(result.calls[1]!.arguments)).toEqual({ category: 'FACT' });
    for (const call of result.calls) expect(call.fragments).toBeGreaterThanOrEqual(2);
    const ids = result.calls.map((call) => call.id);
    expect(ids.every((id) => /^call_\d+$/.test(id ?? ''))).toBe(true);
    expect(new Set(ids).size).toBe(2);

    // The server kept the body as sent, and the inspection helpers read it.
    const [recorded] = standin.chatRequests();
    expect(recorded?.body).toMatchObject({
      model: 'scripted',
      stream: true,
      stream_options: { include_usage: true },
      parallel_tool_calls: true,
    });
    expect(recorded?.headers['authorization']).toBe('Bearer x');
    expect(systemText(recorded!)).toBe('You remember things.');
    expect(lastUserText(recorded!)).toBe('I like tea');
    expect(toolNames(recorded!)).toEqual(['recall', 'remember']);
    expect(allText(recorded!)).toBe('You remember things.\nI like tea');
  });

  it('gives fresh call ids every time, even for the same scripted reply', async () => {
    const reply = { toolCalls: [{ name: 'recall', arguments: {} }] };
    standin.setResponder(() => reply);
    const first = await streamWithSdk({ messages: [{ role: 'user', content: 'a' }] });
    const second = await streamWithSdk({ messages: [{ role: 'user', content: 'b' }] });
    expect(first.calls[0]?.id).not.toBe(second.calls[0]?.id);
    expect(first.calls[0]?.arguments).toBe('{}');
  });

  it('answers non-streaming requests with a chat.completion', async () => {
    standin.setResponder(() => ({ text: 'Plain.', toolCalls: [{ name: 'recall', arguments: { category: 'FACT' } }] }));
    const completion = await client.chat.completions.create({
      model: 'scripted',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]?.finish_reason).toBe('tool_calls');
    expect(completion.choices[0]?.message.content).toBe('Plain.');
    const call = completion.choices[0]?.message.tool_calls?.[0];
    expect(call?.type === 'function' && call.function.name).toBe('recall');
    expect(call?.type === 'function' && JSON.parse(call.function.arguments)).toEqual({ category: 'FACT' });
    expect(completion.usage?.total_tokens).toBeGreaterThan(0);
  });

  it('lists the scripted model and records the GET in the same list', async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual(['scripted']);
    expect((await client.models.retrieve('scripted')).id).toBe('scripted');
    expect(standin.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
      'GET /v1/models 200',
      'GET /v1/models/scripted 200',
    ]);
    expect(standin.chatRequests()).toEqual([]);
  });

  it('answers unknown paths with 404 and an OpenAI-style error', async () => {
    const response = await fetch(`${standin.baseURL}/fine_tuning/jobs`, { method: 'POST', body: '{}' });
    expect(response.status).toBe(404);
    const body = (await response.json()) as { error: { message: string; type: string } };
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toContain('/v1/fine_tuning/jobs');
    expect(standin.requests[0]).toMatchObject({ path: '/v1/fine_tuning/jobs', status: 404 });
  });
});

describe('ScriptedOpenAI behaviour', () => {
  it('answers 500 with an OpenAI-style error when the responder throws, and records it', async () => {
    standin.setResponder(() => {
      throw new Error('script ran out');
    });
    const error = await client.chat.completions
      .create({ model: 'scripted', messages: [{ role: 'user', content: 'hi' }], stream: true })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(500);
    expect((error as InstanceType<typeof OpenAI.APIError>).message).toContain('script ran out');
    expect(standin.requests).toHaveLength(1);
    expect(standin.requests[0]).toMatchObject({ status: 500 });
    expect(standin.requests[0]?.error).toContain('script ran out');
  });

  it('answers with the status of a ScriptedHttpError', async () => {
    standin.setResponder(() => {
      throw new ScriptedHttpError(429, 'slow down');
    });
    const error = await client.chat.completions
      .create({ model: 'scripted', messages: [{ role: 'user', content: 'hi' }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
  });

  it('rules pick the first matching reply, honour times, and fall back', async () => {
    standin.setResponder(
      rules(
        [
          {
            when: toolResultFor('remember'),
            reply: (req) => ({ text: `Saved: ${String((lastToolResult(req)?.value as { saved: string }).saved)}` }),
          },
          {
            when: userSaid('like'),
            reply: { toolCalls: [{ name: 'remember', arguments: { fact: 'likes tea' } }] },
            times: 1,
          },
          { when: userSaid(/^bye$/i), reply: { text: 'Goodbye.' } },
        ],
        { text: 'Fallback.' },
      ),
    );
    const ask = async (messages: OpenAI.ChatCompletionMessageParam[]) => streamWithSdk({ messages });

    const first = await ask([{ role: 'user', content: 'I like tea' }]);
    expect(first.calls.map((c) => c.name)).toEqual(['remember']);
    const callId = first.calls[0]!.id!;

    const followUp = await ask([
      { role: 'user', content: 'I like tea' },
      {
        role: 'assistant',
        tool_calls: [
          { id: callId, type: 'function', function: { name: 'remember', arguments: first.calls[0]!.arguments } },
        ],
      },
      { role: 'tool', tool_call_id: callId, content: JSON.stringify({ saved: 'likes tea' }) },
    ]);
    expect(followUp.text).toBe('Saved: likes tea');

    expect((await ask([{ role: 'user', content: 'BYE' }])).text).toBe('Goodbye.');
    // The "like" rule fired once already (times: 1).
    expect((await ask([{ role: 'user', content: 'I like coffee' }])).text).toBe('Fallback.');

    // Recorded in order, with the helpers agreeing with what was sent.
    const recorded = standin.chatRequests();
    expect(recorded.map((r) => r.index)).toEqual([0, 1, 2, 3]);
    expect(recorded.map((r) => lastUserText(r))).toEqual(['I like tea', 'I like tea', 'BYE', 'I like coffee']);
    expect(recorded.map((r) => isToolResult(r))).toEqual([false, true, false, false]);
    expect(lastToolResult(recorded[1]!)).toEqual({
      toolCallId: callId,
      name: 'remember',
      content: '{"saved":"likes tea"}',
      value: { saved: 'likes tea' },
    });
    for (let i = 1; i < recorded.length; i++)
      expect(recorded[i]!.at.getTime()).toBeGreaterThanOrEqual(recorded[i - 1]!.at.getTime());
  });

  it('uses the default responder until told otherwise, and filters by header', async () => {
    const a = await client.chat.completions.create(
      { model: 'scripted', messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'X-LiveKit-Room-Id': 'RM_a' } },
    );
    await client.chat.completions.create(
      { model: 'scripted', messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'X-LiveKit-Room-Id': 'RM_b' } },
    );
    expect(a.choices[0]?.message.content).toBe(DEFAULT_REPLY_TEXT);
    expect(standin.forRoom('RM_a')).toHaveLength(1);
    expect(standin.forRoom('RM_b')[0]?.index).toBe(1);
    expect(standin.filter((r) => r.headers['x-livekit-room-id'] !== undefined)).toHaveLength(2);
  });

  it('waitFor resolves on a later request; delayMs delays the answer', async () => {
    standin.setResponder(() => ({ text: 'late', delayMs: 150 }));
    const waiting = standin.waitFor((r) => lastUserText(r) === 'ping');
    const started = Date.now();
    const reply = client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'ping' }] });
    expect(lastUserText(await waiting)).toBe('ping');
    expect((await reply).choices[0]?.message.content).toBe('late');
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('splits text and arguments losslessly', () => {
    for (const text of ['one', 'two words', ' lead and trail ', 'a b c d e f g h i', '   ']) {
      expect(splitText(text).join('')).toBe(text);
    }
    expect(splitText('a b c d e f g h').length).toBe(4);
    for (const json of ['{}', '{"a":1}', JSON.stringify({ long: 'x'.repeat(100) })]) {
      const parts = splitArguments(json);
      expect(parts.length).toBeGreaterThanOrEqual(2);
      expect(parts.join('')).toBe(json);
    }
  });
});

describe('ScriptedOpenAI with LiveKit Agents (openai.LLM)', () => {
  beforeAll(() => {
    // LLMStream logs through the agents logger, which must exist before the first chat().
    initializeLogger({ pretty: false, level: 'warn' });
  });

  it('yields the tool call the agent would execute, and reads the tool result back', async () => {
    const model = new lkOpenAI.LLM({ baseURL: standin.baseURL, apiKey: 'x', model: 'scripted' });
    const executed: Array<{ category: string; key: string; value: string }> = [];
    const toolCtx = {
      remember: llm.tool({
        description: 'Remember something about the user',
        parameters: z.object({ category: z.string(), key: z.string(), value: z.string() }),
        execute: async (args) => {
          executed.push(args);
          return { stored: `${args.key}=${args.value}` };
        },
      }),
    };
    standin.setResponder(
      rules([
        {
          when: userSaid('tea'),
          reply: {
            toolCalls: [{ name: 'remember', arguments: { category: 'PREFERENCE', key: 'drink', value: 'tea' } }],
          },
        },
        {
          when: toolResultFor('remember'),
          reply: (req) => ({ text: `Done (${String((lastToolResult(req)?.value as { stored: string }).stored)}).` }),
        },
      ]),
    );

    const chatCtx = llm.ChatContext.empty();
    chatCtx.addMessage({ role: 'system', content: 'You are a memory test agent.' });
    chatCtx.addMessage({ role: 'user', content: 'I like tea' });

    const first = await model.chat({ chatCtx, toolCtx }).collect();
    expect(first.text).toBe('');
    expect(first.toolCalls).toHaveLength(1);
    const call = first.toolCalls[0]!;
    expect(call.name).toBe('remember');
    expect(JSON.parse(call.args)).toEqual({ category: 'PREFERENCE', key: 'drink', value: 'tea' });
    expect(call.callId).toMatch(/^call_\d+$/);
    expect(first.usage?.totalTokens).toBeGreaterThan(0);

    // What the plugin sent, as the notes describe it.
    const [sent] = standin.chatRequests();
    expect(sent?.body).toMatchObject({
      model: 'scripted',
      stream: true,
      stream_options: { include_usage: true },
      parallel_tool_calls: true,
    });
    expect(toolNames(sent!)).toEqual(['remember']);
    expect(systemText(sent!)).toBe('You are a memory test agent.');
    expect(sent?.headers['user-agent']).toMatch(/^livekit-agents-js\//);

    // Run the tool the way the agent does and send the follow-up turn.
    const output = await llm.executeToolCall(call, llm.toToolContext(toolCtx));
    expect(output.isError).toBe(false);
    expect(executed).toEqual([{ category: 'PREFERENCE', key: 'drink', value: 'tea' }]);
    chatCtx.insert([call, output]);

    const second = await model.chat({ chatCtx, toolCtx }).collect();
    expect(second.toolCalls).toEqual([]);
    expect(second.text).toBe('Done (drink=tea).');

    const followUp = standin.chatRequests()[1]!;
    expect(isToolResult(followUp)).toBe(true);
    expect(lastToolResult(followUp)).toMatchObject({
      toolCallId: call.callId,
      name: 'remember',
      value: { stored: 'drink=tea' },
    });
    await model.aclose();
  });

  it('yields several tool calls from one turn, and text before them', async () => {
    const model = new lkOpenAI.LLM({ baseURL: standin.baseURL, apiKey: 'x', model: 'scripted' });
    const noop = llm.tool({ description: 'noop', parameters: z.object({ n: z.number() }), execute: async () => 'ok' });
    standin.setResponder(() => ({
      text: 'Working on it.',
      toolCalls: [
        { name: 'a', arguments: { n: 1 } },
        { name: 'b', arguments: { n: 2 } },
        { name: 'a', arguments: { n: 3 } },
      ],
    }));
    const chatCtx = llm.ChatContext.empty();
    chatCtx.addMessage({ role: 'user', content: 'go' });
    const result = await model.chat({ chatCtx, toolCtx: { a: noop, b: noop } }).collect();
    expect(result.text).toBe('Working on it.');
    expect(result.toolCalls.map((c) => [c.name, JSON.parse(c.args)])).toEqual([
      ['a', { n: 1 }],
      ['b', { n: 2 }],
      ['a', { n: 3 }],
    ]);
    expect(new Set(result.toolCalls.map((c) => c.callId)).size).toBe(3);
    await model.aclose();
  });
});

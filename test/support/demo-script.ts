/**
 * What the scripted stand-in says in `npm run demo` when no real model is configured. It is a
 * fixed script keyed on the demo's lines (and on what the worker put in the request), not a model:
 * it exists so that the demo shows the real worker, tools and database without a paid API.
 */
import {
  lastToolResult,
  lastUserText,
  rules,
  systemText,
  toolNames,
  type RecordedRequest,
  type Reply,
} from './openai-standin.js';

type Args = Record<string, unknown>;
const call = (name: string, args: Args): Reply => ({ toolCalls: [{ name, arguments: args }] });

/** A user line the script understands, and the tool call it answers with. */
const understood: Array<[RegExp, string, (m: RegExpExecArray) => Args]> = [
  [
    /I like the colou?r (\w+)|my favou?rite colou?r is (\w+)/i,
    'remember',
    (m) => ({ category: 'PREFERENCE', key: 'favorite_color', value: m[1] ?? m[2] }),
  ],
  [/I live in ([\w\s]+?)[.!]?$/i, 'remember', (m) => ({ category: 'FACT', key: 'city', value: m[1] })],
  [/my name is (\w+)/i, 'remember', (m) => ({ category: 'PERSONAL', key: 'name', value: m[1] })],
  [/what is my favou?rite colou?r/i, 'recall', () => ({ category: 'PREFERENCE', key: 'favorite_color' })],
  [/what do you remember about me/i, 'list_memories', () => ({})],
];

function afterTool(request: RecordedRequest): Reply {
  const result = lastToolResult(request)!;
  const text = String(result.value);
  if (result.name === 'remember')
    return { text: /^Saved/.test(text) ? "Got it, I'll remember that." : `Sorry, I couldn't save that. (${text})` };
  if (result.name === 'recall') {
    const found = /= (".*")$/.exec(text);
    return {
      text: found ? `You told me ${JSON.parse(found[1]!)}.` : "I don't know that yet. Tell me and I'll remember it.",
    };
  }
  if (result.name === 'list_memories')
    return {
      text: /^Nothing/.test(text) ? "I don't remember anything about you yet." : `Here is what I remember:\n${text}`,
    };
  return { text: 'Done.' };
}

export const demoScript = rules(
  [
    { when: (req) => lastToolResult(req) !== undefined && req.messages.at(-1)?.role === 'tool', reply: afterTool },
    {
      when: (req) => {
        const said = lastUserText(req);
        return said !== undefined && understood.some(([re, tool]) => re.test(said) && toolNames(req).includes(tool));
      },
      reply: (req) => {
        const said = lastUserText(req)!;
        const [re, tool, args] = understood.find(([r, t]) => r.test(said) && toolNames(req).includes(t))!;
        return call(tool, args(re.exec(said)!));
      },
    },
    {
      when: (req) => lastUserText(req) === undefined && systemText(req).includes('first conversation'),
      reply: {
        text: "Hello! Nice to meet you. I'm your assistant, and I'll remember what you tell me. How can I help?",
      },
    },
    {
      when: (req) => lastUserText(req) === undefined && systemText(req).includes('returning'),
      reply: { text: 'Welcome back! Good to hear from you again.' },
    },
  ],
  { text: 'I see.' },
);

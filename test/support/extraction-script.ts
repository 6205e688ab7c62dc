/**
 * TEST STAND-IN FOR A PAID MODEL'S ANSWER. NOT A MODEL.
 *
 * The after-call extraction request (plugins/extract.ts) as the scripted OpenAI stand-in answers
 * it: deterministic rules over the caller's lines, which is what a real model would plausibly
 * return for the test conversations, including the sensitive facts a careless model would return
 * (so that the PII policy is what keeps them out, not the model).
 *
 * Rules, per caller line (the JSON strings of the request's user message):
 * - "my favo(u)rite X is Y" -> PREFERENCE favorite_X = Y
 * - "my X is Y" -> PERSONAL X = Y (X in snake_case)
 * - "I live in Y" -> PERSONAL home_city = Y
 */
import { EXTRACTION_PROMPT_OPENING } from '../../plugins/index.js';
import { messageText, systemText, type RecordedRequest, type Reply, type Rule } from './openai-standin.js';

export interface StandinFact {
  category: string;
  key: string;
  value: string;
}

/** True for the extraction request (its system prompt opens with the extraction prompt). */
export function isExtractionRequest(request: RecordedRequest): boolean {
  return systemText(request).startsWith(EXTRACTION_PROMPT_OPENING);
}

/** The caller's lines the extraction request carries (its user message, one JSON string per line). */
export function extractionTurns(request: RecordedRequest): string[] {
  const user = request.messages.find((m) => m.role === 'user');
  return messageText(user)
    .split('\n')
    .slice(1)
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as string);
}

const snake = (words: string) =>
  words
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_|_$/g, '');

/** The facts the stand-in finds in one caller line. */
export function standinFacts(line: string): StandinFact[] {
  const text = line.trim().replace(/[.!]+$/, '');
  const favourite = /\bmy favou?rite ([a-z ]{1,30}?) is (.+)$/i.exec(text);
  if (favourite) return [{ category: 'PREFERENCE', key: `favorite_${snake(favourite[1]!)}`, value: favourite[2]! }];
  const mine = /\bmy ([a-z' ]{1,30}?) is (.+)$/i.exec(text);
  if (mine) return [{ category: 'PERSONAL', key: snake(mine[1]!), value: mine[2]! }];
  const home = /\bI live in (.+)$/i.exec(text);
  if (home) return [{ category: 'PERSONAL', key: 'home_city', value: home[1]! }];
  return [];
}

/** The stand-in's answer to an extraction request: {"facts": [...]} over every caller line. */
export function extractionReply(request: RecordedRequest): Reply {
  const facts = extractionTurns(request).flatMap(standinFacts);
  return { text: JSON.stringify({ facts }) };
}

/** A rule for `rules([...])`: extraction requests get extractionReply (or `reply`, to script failures). */
export function extractionRule(reply: Rule['reply'] = extractionReply): Rule {
  return { when: isExtractionRequest, reply };
}

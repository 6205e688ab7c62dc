/**
 * The favourite-colour conversation that several tests, the demos and the benchmarks script: the
 * rules a real model would follow, decided from the request alone.
 */
import { both, lastUserText, offers, userSaid, type Rule } from './openai-standin.js';

/** `remember` PREFERENCE/favorite_color with the pattern's first group, when the tool is offered. */
export function rememberColour(pattern: RegExp): Rule {
  return {
    when: both(offers('remember'), userSaid(pattern)),
    reply: (req) => ({
      toolCalls: [
        {
          name: 'remember',
          arguments: { category: 'PREFERENCE', key: 'favorite_color', value: pattern.exec(lastUserText(req)!)![1]! },
        },
      ],
    }),
  };
}

/** `recall` PREFERENCE/favorite_color when asked for it and the tool is offered. */
export const recallColour: Rule = {
  when: both(offers('recall'), userSaid(/what is my favou?rite colou?r/i)),
  reply: { toolCalls: [{ name: 'recall', arguments: { category: 'PREFERENCE', key: 'favorite_color' } }] },
};

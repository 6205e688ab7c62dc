/**
 * npm run fixtures:search: writes test/fixtures/search/{memories,queries}.json, the data set on
 * which search quality (recall@5) is measured by test/quality/search-quality.test.ts and by the
 * benchmark. Deterministic: the same script always writes the same files (a seeded PRNG, no clock).
 *
 * One user's memories: ~100 targets (people, favourites, tasks, places and notes in Japanese and
 * Russian) among 1,000 distractors that share their common words (other appointments, other
 * people, other favourites), across FACT, PREFERENCE, PERSONAL, TASK and NOTE. Every query names
 * the one memory it should find and is phrased unlike its key and value: another word form, a
 * typo, a partial word, a word of the value only, or another script.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { seededRandom } from '../test/support/random.js';

export interface FixtureMemory {
  category: string;
  key: string;
  value: string;
}

export interface FixtureQuery {
  query: string;
  kind: 'word-form' | 'typo' | 'partial' | 'value-only' | 'other-script';
  expected: { category: string; key: string };
}

/** A typo: two adjacent letters in the middle swapped (Halvorsen -> Halvroesn-like, deterministic). */
function typo(word: string): string {
  const chars = [...word];
  const i = Math.floor(chars.length / 2);
  [chars[i - 1], chars[i]] = [chars[i]!, chars[i - 1]!];
  return chars.join('');
}

/** The first 60% of a word, at least four letters. */
function partial(word: string): string {
  const chars = [...word];
  return chars.slice(0, Math.max(4, Math.ceil(chars.length * 0.6))).join('');
}

const PEOPLE: Array<[string, string, string]> = [
  ['sister', 'Ingrid', 'Halvorsen'],
  ['brother', 'Chidi', 'Okonkwo'],
  ['mother', 'Jadwiga', 'Brzezinski'],
  ['father', 'Esteban', 'Castellanos'],
  ['dentist', 'Hiroshi', 'Yamaguchi'],
  ['doctor', 'Astrid', 'Lindqvist'],
  ['manager', 'Nigel', 'Featherstone'],
  ['landlord', 'Cornelius', 'Abernathy'],
  ['neighbor', 'Priya', 'Ramaswamy'],
  ['cousin', 'Tomasz', 'Kowalczyk'],
  ['plumber', 'Bayo', 'Oyelaran'],
  ['accountant', 'Remy', 'Thibodeaux'],
  ['lawyer', 'Lucia', 'Valderrama'],
  ['trainer', 'Kenji', 'Nakashima'],
  ['veterinarian', 'Greta', 'Gruenwald'],
  ['therapist', 'Eleni', 'Papadopoulos'],
  ['mechanic', 'Joost', 'Achterberg'],
  ['barber', 'Ignatius', 'Montgomery'],
  ['tutor', 'Wojciech', 'Szymanski'],
  ['babysitter', 'Margaux', 'Delacroix'],
];

/** [thing, value, the value's distinctive word] */
const FAVOURITES: Array<[string, string, string]> = [
  ['food', 'bouillabaisse from the harbour in Marseille', 'bouillabaisse'],
  ['book', 'Middlemarch by George Eliot', 'Middlemarch'],
  ['movie', 'Stalker by Tarkovsky', 'Tarkovsky'],
  ['band', 'Khruangbin, especially live', 'Khruangbin'],
  ['drink', 'genmaicha green tea with roasted rice', 'genmaicha'],
  ['sport', 'hurling, watches every Sunday', 'hurling'],
  ['color', 'vermilion, not plain red', 'vermilion'],
  ['flower', 'ranunculus in spring', 'ranunculus'],
  ['city', 'Valparaíso on the Chilean coast', 'Valparaíso'],
  ['game', 'Agricola, the farming board game', 'Agricola'],
  ['dessert', 'kouign-amann from Brittany', 'kouign'],
  ['podcast', 'Hardcore History by Dan Carlin', 'Carlin'],
  ['car', 'an old Citroën DS in champagne', 'Citroën'],
  ['painter', 'Hokusai and his wave prints', 'Hokusai'],
  ['instrument', 'the hurdy-gurdy her grandfather played', 'gurdy'],
];

/** [key, value, a word form of the key's verb or noun, a word of the value only] */
const TASKS: Array<[string, string, string, string]> = [
  ['renew_passport', 'passport expires in June, appointment at the consulate on Friday', 'renewing', 'consulate'],
  ['book_flights', 'flights to Reykjavik for the Christmas holidays', 'booking', 'Reykjavik'],
  ['pay_electricity_bill', 'electricity invoice from Vattenfall due on the 15th', 'paying', 'Vattenfall'],
  ['call_insurance', 'insurance claim number 88-2231 for the broken windscreen', 'calling', 'windscreen'],
  ['return_library_books', 'three novels borrowed from the Deichman library', 'returning', 'Deichman'],
  ['buy_birthday_present', 'a fountain pen for the nephew, a Lamy Safari', 'buying', 'Lamy'],
  ['schedule_vaccination', 'tetanus booster is overdue', 'scheduling', 'tetanus'],
  ['cancel_gym_membership', 'membership at Elixia ends after the notice period', 'cancelling', 'Elixia'],
  ['fix_bicycle', 'rear derailleur slips on the third gear', 'fixing', 'derailleur'],
  ['write_thank_you_notes', 'notes for the wedding guests who sent gifts', 'writing', 'wedding'],
  ['submit_tax_return', 'tax return deadline is the 30th of April', 'submitting', 'deadline'],
  ['clean_gutters', 'gutters full of birch leaves before the storms', 'cleaning', 'birch'],
  ['water_plants', 'water the orchids and the monstera twice a week', 'watering', 'monstera'],
  ['order_contact_lenses', 'daily lenses, prescription minus 2.75', 'ordering', 'prescription'],
  ['plan_anniversary_dinner', 'table at Maaemo for the tenth anniversary', 'planning', 'Maaemo'],
];

/** [category, key, value, query in another script or form, kind] */
const SCRIPTS: Array<[string, string, string, string, string]> = [
  ['PERSONAL', 'clinic_tokyo', '田中歯科クリニック 渋谷駅前 03-1234-5678', '田中歯科', '渋谷'],
  ['FACT', 'favorite_ramen', 'ラーメン屋 一蘭 の とんこつ', '一蘭', 'とんこつ'],
  ['PERSONAL', 'grandmother_city', 'бабушка живёт в Твери на улице Советской', 'Тверь', 'Советская'],
  ['PREFERENCE', 'favorite_writer', 'любимый писатель Булгаков, Мастер и Маргарита', 'Булгакова', 'Маргарита'],
  ['FACT', 'japanese_teacher', '日本語の先生は佐藤さん', '佐藤', '日本語'],
  ['TASK', 'buy_tea', '抹茶と煎茶を買う', '抹茶', '煎茶'],
  ['NOTE', 'dacha_address', 'дача в Переделкино, участок 14', 'Переделкино', 'дачу'],
  ['PERSONAL', 'sister_in_law', 'золовка Наталья Ивановна', 'Наталья', 'золовку'],
  ['PREFERENCE', 'favorite_sweet', '和菓子 どら焼き が好き', 'どら焼き', '和菓子'],
  ['FACT', 'childhood_street', 'детство прошло на Арбате', 'Арбат', 'детства'],
];

const COMMON = [
  'meeting',
  'appointment',
  'call',
  'doctor',
  'sister',
  'manager',
  'flight',
  'book',
  'movie',
  'dinner',
  'birthday',
  'insurance',
  'tea',
  'car',
  'bill',
  'team',
  'project',
  'weekend',
  'garden',
  'school',
  'travel',
  'music',
  'office',
  'invoice',
  'present',
  'library',
  'neighbor',
  'clinic',
  'friend',
  'holiday',
];
const NAMES = ['Anna', 'Ben', 'Carla', 'David', 'Emma', 'Felix', 'Grace', 'Hugo', 'Iris', 'Jonas', 'Klara', 'Liam'];
const CATEGORIES = ['FACT', 'PREFERENCE', 'PERSONAL', 'TASK', 'NOTE'];

export function buildSearchFixtures(): { memories: FixtureMemory[]; queries: FixtureQuery[] } {
  const random = seededRandom(20261206);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const memories: FixtureMemory[] = [];
  const queries: FixtureQuery[] = [];

  for (const [relation, first, surname] of PEOPLE) {
    const key = `${relation}_name`;
    memories.push({ category: 'PERSONAL', key, value: `${first} ${surname}` });
    const expected = { category: 'PERSONAL', key };
    queries.push({ query: `what was my ${relation}'s name again`, kind: 'word-form', expected });
    queries.push({ query: typo(surname), kind: 'typo', expected });
    queries.push({ query: partial(surname), kind: 'partial', expected });
  }
  for (const [thing, value, word] of FAVOURITES) {
    const key = `favorite_${thing}`;
    memories.push({ category: 'PREFERENCE', key, value });
    const expected = { category: 'PREFERENCE', key };
    queries.push({ query: `which ${thing}s do I like most`, kind: 'word-form', expected });
    queries.push({ query: typo(word), kind: 'typo', expected });
    queries.push({ query: partial(word), kind: 'partial', expected });
  }
  for (const [key, value, form, word] of TASKS) {
    memories.push({ category: 'TASK', key, value });
    const expected = { category: 'TASK', key };
    const object = key.split('_').slice(1).join(' ');
    queries.push({ query: `remind me about ${form} the ${object}`, kind: 'word-form', expected });
    queries.push({ query: word, kind: 'value-only', expected });
  }
  for (const [category, key, value, a, b] of SCRIPTS) {
    memories.push({ category, key, value });
    queries.push({ query: a, kind: 'other-script', expected: { category, key } });
    queries.push({ query: b, kind: 'other-script', expected: { category, key } });
  }

  // Distractors: 1,000 memories that share the targets' common words, never their distinctive ones.
  for (let i = 0; memories.length < 1100; i += 1) {
    const category = pick(CATEGORIES);
    const [a, b, c] = [pick(COMMON), pick(COMMON), pick(COMMON)];
    const name = pick(NAMES);
    const templates = [
      `${a} with ${name} about the ${b} next ${pick(['Monday', 'Tuesday', 'Thursday'])}`,
      `${name} mentioned the ${a} and the ${b}; follow up on the ${c}`,
      `remember the ${a} for ${name}, ${b} at ${8 + (i % 10)} o'clock`,
      `${name} prefers ${a} over ${b}`,
      `note ${i}: ${a}, ${b}, ${c}`,
    ];
    memories.push({ category, key: `${a}_${b}_${i}`, value: pick(templates) });
  }
  return { memories, queries };
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain && (process.argv.includes('--help') || process.argv.includes('-h'))) {
  process.stdout.write(
    'Usage: npm run fixtures:search\n\nWrites test/fixtures/search/memories.json and queries.json: the search quality data set\n' +
      '(1,100 memories of one user, 155 queries phrased unlike what they should find). Deterministic:\n' +
      'the same files every time, so a change to them is a change to this script.\n',
  );
} else if (isMain) {
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures', 'search');
  fs.mkdirSync(dir, { recursive: true });
  const { memories, queries } = buildSearchFixtures();
  fs.writeFileSync(path.join(dir, 'memories.json'), `${JSON.stringify(memories, null, 1)}\n`);
  fs.writeFileSync(path.join(dir, 'queries.json'), `${JSON.stringify(queries, null, 1)}\n`);
  process.stdout.write(`wrote ${memories.length} memories and ${queries.length} queries to ${dir}\n`);
}

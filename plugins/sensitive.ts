import {
  checkSensitive,
  describeSensitive,
  REDACTION_MARKERS,
  redactSensitive,
  screenValue,
  sensitiveKinds,
  type PiiSettings,
  type SensitiveFinding,
  type SensitiveKind,
} from '../memory/pii.js';
import { quoteMemoryText } from './memory-block.js';

/**
 * What was kept out of memory, for logs: the kinds and details found and what was done, never the
 * value, the key or any part of them.
 */
export interface SensitiveValueEvent {
  /** `remember` (the tool) or `extract` (after-call extraction). */
  source: 'remember' | 'extract';
  action: 'refused' | 'redacted';
  category: string;
  kinds: SensitiveKind[];
  /** e.g. `visa`, `us-ssn`, `password`, `credential-key`. */
  details: string[];
}

/** A memory after the PII policy: stored (maybe redacted), or refused with the reason. */
export type ScreenedMemory =
  | { action: 'store'; key: string; value: string }
  | { action: 'redact'; key: string; value: string; findings: SensitiveFinding[] }
  | { action: 'refuse'; findings: SensitiveFinding[]; keyIsSensitive: boolean };

/**
 * Apply the PII policy to a memory about to be written: its value (with the key as context: a key
 * naming a credential makes the whole value one) and its key (a key holding a card number is as
 * bad as a value holding one).
 */
export function screenMemory(settings: PiiSettings, key: string, value: string): ScreenedMemory {
  if (settings.policy === 'allow') return { action: 'store', key, value };
  const keyFindings = checkSensitive(key, { settings });
  const screened = screenValue(value, settings, key);
  if (screened.action === 'store' && keyFindings.length === 0) return { action: 'store', key, value };
  const findings = [...keyFindings, ...screened.findings];
  if (settings.policy === 'refuse') return { action: 'refuse', findings, keyIsSensitive: keyFindings.length > 0 };
  return {
    action: 'redact',
    key: keyFindings.length > 0 ? redactSensitive(key, keyFindings) : key,
    value: screened.action === 'redact' ? screened.value : value,
    findings,
  };
}

/** The log event for a screened memory (undefined when nothing was found). */
export function sensitiveEvent(
  source: SensitiveValueEvent['source'],
  category: string,
  screened: ScreenedMemory,
): SensitiveValueEvent | undefined {
  if (screened.action === 'store') return undefined;
  return {
    source,
    action: screened.action === 'refuse' ? 'refused' : 'redacted',
    category,
    kinds: sensitiveKinds(screened.findings),
    details: [...new Set(screened.findings.map((f) => f.detail))],
  };
}

/**
 * What the remember tool answers when the policy refused a value: what kind of data it was and
 * why, without the value (and without the key, when the key itself was the sensitive part).
 */
export function refusalAnswer(category: string, key: string, screened: ScreenedMemory & { action: 'refuse' }): string {
  const what = describeSensitive(screened.findings);
  const where = screened.keyIsSensitive ? category : `${category}/${quoteMemoryText(key)}`;
  return (
    `Not saved: ${where} looks like it contains ${what}. Sensitive data like this is never kept in long-term memory, ` +
    'to protect the user. Tell the user it was not saved and why, without repeating it; if something else in it is ' +
    'worth remembering, save that part alone.'
  );
}

/** Appended to the remember tool's "Saved ..." answer when the policy redacted something. */
export function redactionNote(screened: ScreenedMemory): string {
  if (screened.action !== 'redact') return '';
  const markers = sensitiveKinds(screened.findings).map((k) => REDACTION_MARKERS[k]);
  return ` The part that looked like ${describeSensitive(screened.findings)} was replaced with ${markers.join(', ')} and never stored: tell the user.`;
}

/**
 * The remember tool's screening, in one call: the policy applied to the key and value, the event
 * reported (kinds only), and either the refusal to answer the model or what to store with the
 * note to add to the answer.
 */
export function screenRemember(
  settings: PiiSettings,
  category: string,
  key: string,
  value: string,
  onSensitive?: (event: SensitiveValueEvent) => void,
): { refusal: string } | { key: string; value: string; note: string } {
  const screened = screenMemory(settings, key, value);
  const event = sensitiveEvent('remember', category, screened);
  if (event) onSensitive?.(event);
  if (screened.action === 'refuse') return { refusal: refusalAnswer(category, key, screened) };
  return { key: screened.key, value: screened.value, note: redactionNote(screened) };
}

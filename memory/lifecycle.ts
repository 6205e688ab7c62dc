import type { LifecycleConfig, MemoryConsent } from './config.js';
import { DEFAULTS } from './defaults.js';
import { MemoryError } from './errors.js';
import { MAX_CLOCK_DRIFT_MS, clockTime } from './journal/clock.js';
import type { StoreOptions } from './types.js';

/**
 * The memory lifecycle of one store (one deployment): the consent of callers who have not said,
 * retention, and the per-user cap. The database enforces all three (the lifecycle migration's
 * functions take them as arguments, so nothing depends on a database-wide setting); this module
 * checks the values and the store options before anything is sent.
 */
export type Lifecycle = Omit<LifecycleConfig, 'purgeIntervalMs'>;

export const CONSENT_DEFAULTS: readonly MemoryConsent[] = ['granted', 'ask', 'denied'];

const DAY_MS = 24 * 60 * 60 * 1000;

/** The lifecycle options of openMemory / MemoryStore, checked; unset ones from `base`. */
export function checkLifecycle(options: Partial<Lifecycle>, base: Lifecycle = defaultLifecycle()): Lifecycle {
  const consentDefault = options.consentDefault ?? base.consentDefault;
  if (!CONSENT_DEFAULTS.includes(consentDefault)) {
    throw new MemoryError(
      'INVALID_OPTION',
      `consentDefault must be granted, ask or denied, not ${JSON.stringify(consentDefault)}`,
    );
  }
  const whole = (value: number | null, name: string, max: number, what: string): number | null => {
    if (value === null) return null;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
      throw new MemoryError(
        'INVALID_OPTION',
        `${name} must be a whole number of ${what} from 1 to ${max} (or null for none), not ${String(value)}`,
      );
    }
    return value;
  };
  return {
    consentDefault,
    retentionDays: whole(
      options.retentionDays === undefined ? base.retentionDays : options.retentionDays,
      'retentionDays',
      DEFAULTS.retentionDaysMax,
      'days',
    ),
    maxPerUser: whole(
      options.maxPerUser === undefined ? base.maxPerUser : options.maxPerUser,
      'maxPerUser',
      DEFAULTS.maxPerUserCeiling,
      'memories',
    ),
  };
}

export function defaultLifecycle(): Lifecycle {
  return { consentDefault: DEFAULTS.consentDefault, retentionDays: null, maxPerUser: null };
}

/** A store's `expiresAt`, checked: a valid date in the future. Returns its ISO form, or null. */
export function checkExpiresAt(options: StoreOptions | undefined, now = Date.now()): string | null {
  const expiresAt: unknown = options?.expiresAt;
  if (expiresAt === undefined) return null;
  if (!(expiresAt instanceof Date) || Number.isNaN(expiresAt.getTime())) {
    throw new MemoryError('INVALID_OPTION', 'expiresAt must be a valid Date');
  }
  if (expiresAt.getTime() <= now) {
    throw new MemoryError(
      'INVALID_OPTION',
      `expiresAt must be in the future, not ${expiresAt.toISOString()}: a memory that has expired is never served, so there is nothing to store`,
    );
  }
  if (expiresAt.getTime() > now + DEFAULTS.retentionDaysMax * DAY_MS) {
    throw new MemoryError('INVALID_OPTION', `expiresAt must be within ${DEFAULTS.retentionDaysMax} days`);
  }
  return expiresAt.toISOString();
}

/**
 * Whether a pending journal write is still live by this process's clock (the database's is not
 * there to ask): its own expiry has not passed, and it is not older than the retention.
 */
export function pendingIsLive(
  op: { clock: string; expiresAt?: string },
  retentionDays: number | null,
  now = Date.now(),
): boolean {
  if (op.expiresAt !== undefined && Date.parse(op.expiresAt) <= now) return false;
  if (retentionDays !== null && clockTime(op.clock).getTime() <= now - retentionDays * DAY_MS) return false;
  return true;
}

/** A journaled store older than the journal's maximum age is not replayed (see DEFAULTS.journalMaxAgeDays). */
export function checkJournalAge(clock: string, now = Date.now()): void {
  const age = now - clockTime(clock).getTime();
  if (age > DEFAULTS.journalMaxAgeDays * DAY_MS) {
    throw new MemoryError(
      'JOURNAL_ENTRY_EXPIRED',
      `this journaled store was made ${Math.floor(age / DAY_MS)} days ago, more than the journal's maximum age of ${DEFAULTS.journalMaxAgeDays} days: ` +
        'it is set aside, not applied (deletions older than that are no longer remembered, so it could bring back a forgotten memory). ' +
        'If it must be kept, store it again by hand',
    );
  }
}

/** How old a tombstone may get before the purge removes it: no journal entry can be older (plus clock drift). */
export const TOMBSTONE_MAX_AGE_DAYS = DEFAULTS.journalMaxAgeDays + Math.ceil(MAX_CLOCK_DRIFT_MS / DAY_MS);

/**
 * Sensitive values and harmless look-alikes, shared by the detector's unit tests and the tests
 * through the remember tool and extraction. Test card numbers are the networks' published test
 * numbers; no value here is anyone's.
 */
import type { SensitiveKind } from '../../memory/index.js';

/**
 * Values the detector must find: [value, kind, the sensitive part (what must never survive
 * redaction), key (the memory's key, when the key is what makes it sensitive)].
 */
export const SENSITIVE: ReadonlyArray<{ value: string; kind: SensitiveKind; secret: string; key?: string }> = [
  { value: '4111 1111 1111 1111', kind: 'card', secret: '4111 1111 1111 1111' },
  { value: 'card 5555-5555-5555-4444 exp 04/28', kind: 'card', secret: '5555-5555-5555-4444' },
  { value: 'amex 378282246310005', kind: 'card', secret: '378282246310005' },
  { value: 'my discover is 6011111111111117.', kind: 'card', secret: '6011111111111117' },
  { value: 'JCB 3530 1113 3330 0000', kind: 'card', secret: '3530 1113 3330 0000' },
  { value: 'diners 30569309025904', kind: 'card', secret: '30569309025904' },
  { value: 'unionpay 6200000000000005', kind: 'card', secret: '6200000000000005' },
  { value: 'new mastercard 2223003122003222', kind: 'card', secret: '2223003122003222' },
  { value: 'SSN 123-45-6789', kind: 'national-id', secret: '123-45-6789' },
  { value: 'social security 078 05 1120', kind: 'national-id', secret: '078 05 1120' },
  { value: 'NI number AB123456C', kind: 'national-id', secret: 'AB123456C' },
  { value: 'national insurance: AB 12 34 56 C', kind: 'national-id', secret: 'AB 12 34 56 C' },
  {
    value: 'key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z',
    kind: 'credential',
    secret: 'Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z',
  },
  { value: 'aws AKIAIOSFODNN7EXAMPLE', kind: 'credential', secret: 'AKIAIOSFODNN7EXAMPLE' },
  { value: `token ghp_${'a1B2c3D4e5'.repeat(4)}`, kind: 'credential', secret: 'a1B2c3D4e5'.repeat(4) },
  {
    value: 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz',
    kind: 'credential',
    secret: '11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz',
  },
  { value: 'slack xoxb-123456789012-abcdefghijkl', kind: 'credential', secret: '123456789012-abcdefghijkl' },
  {
    value: `maps key AIzaSy${'B'.repeat(33)}`,
    kind: 'credential',
    secret: `Sy${'B'.repeat(33)}`,
  },
  { value: 'stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc', kind: 'credential', secret: '4eC39HqLyjWDarjtT1zdp7dc' },
  {
    value: 'jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
    kind: 'credential',
    secret: 'dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
  },
  {
    value: '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAzq8Zb\n-----END RSA PRIVATE KEY-----',
    kind: 'credential',
    secret: 'MIIEowIBAAKCAQEAzq8Zb',
  },
  { value: 'my wifi password is hunter2!', kind: 'credential', secret: 'hunter2' },
  { value: 'the door PIN: 4921', kind: 'credential', secret: '4921' },
  { value: 'passcode = Tr0ub4dor&3', kind: 'credential', secret: 'Tr0ub4dor&3' },
  { value: 'the password for the router is "correcthorse"', kind: 'credential', secret: 'correcthorse' },
  { value: 'cvv 123', kind: 'credential', secret: '123' },
  { value: '4921', kind: 'credential', secret: '4921', key: 'bank_pin' },
  { value: 'zebra-lamp-42', kind: 'credential', secret: 'zebra-lamp-42', key: 'wifiPassword' },
  { value: 'abc123xyz789', kind: 'credential', secret: 'abc123xyz789', key: 'openai_api_key' },
];

/** Values that look like the above and must be stored: [value, key?, why]. */
export const HARMLESS: ReadonlyArray<{ value: string; key?: string; why: string }> = [
  { value: 'order 1234567890123452', why: 'Luhn-valid 16 digits, but no card network starts with 1' },
  { value: 'order number 4111111111111112', why: 'Visa-like, Luhn-invalid' },
  { value: '5555 5555 5555 4445', why: 'Mastercard-like, Luhn-invalid' },
  { value: 'ISBN 978-0-306-40615-7', why: 'ISBN-13 (978 prefix)' },
  { value: '9780306406157', why: 'ISBN-13 without dashes' },
  { value: 'tracking 1Z999AA10123456784', why: 'UPS tracking number' },
  { value: 'parcel 9400 1118 9922 3344 5566 77', why: 'USPS tracking: 22 digits, longer than any card' },
  { value: 'IMEI 490154203237518', why: 'Luhn-valid IMEI, 15 digits: not a Visa length' },
  { value: 'call me at +1 (555) 123-4567', why: 'phone number' },
  { value: 'office 555-123-4567', why: 'phone number: 3-3-4 is not the SSN shape' },
  { value: 'dentist appointment on 2024-03-15', why: 'date' },
  { value: 'born 15/03/1990', why: 'date' },
  { value: 'ticket 000-12-3456', why: 'SSN shape with area 000, never issued' },
  { value: 'ref 666-12-3456', why: 'SSN shape with area 666, never issued' },
  { value: 'booking 912-34-5678', why: 'SSN shape with area 9xx, never issued' },
  { value: 'customer 123456789', why: 'nine bare digits' },
  { value: 'my password is too short', why: 'about a password, no password in it' },
  { value: 'I changed my password yesterday', why: 'no "is": not a password given' },
  { value: 'the PIN is on the back of the card', why: 'a PIN is digits' },
  { value: 'sk-short', why: 'too short for an API key' },
  { value: 'flight LH1234 on 2024-05-01, seat 14C', why: 'flight number and seat' },
  { value: 'zip code 94103', why: 'postal code' },
  { value: 'garden_lover', key: 'pinterest_username', why: 'a key with "pin" inside a word' },
  { value: 'meeting 12:30-14:45 room 4111', why: 'times and a room number' },
  { value: 'QQ123456C', why: 'NINO shape with a prefix HMRC never issues (Q)' },
];

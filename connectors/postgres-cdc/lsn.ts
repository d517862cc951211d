/**
 * Log sequence numbers. Postgres writes them as two hex halves (`16/B374D848`); they are 64-bit
 * unsigned positions in the WAL, so they are compared and stored as BigInt, never as strings
 * (`'9/0' > '10/0'` as text) and never as numbers (they pass 2^53 on a busy server).
 */
import { SluiceError } from '../../core/connector.ts';

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `X/Y`; throws `INVALID_ARGUMENT` naming the text otherwise. */
export function parseLsn(text: string): bigint {
  const match = LSN_TEXT.exec(text);
  if (!match) throw new SluiceError('INVALID_ARGUMENT', `invalid LSN ${JSON.stringify(text)}: expected two hex numbers as in 16/B374D848`, { context: { value: text } });
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Formats an LSN as Postgres prints it: upper-case hex halves without padding. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The larger of two LSNs. */
export function maxLsn(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

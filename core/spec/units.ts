/**
 * Durations (`500ms`, `30s`, `7d`, `1h30m`) and sizes (`512`, `64KiB`, `10GiB`, `1.5GB`) as specs
 * and connector configs write them. The patterns go into JSON Schemas, so editors flag a bad value
 * before sluice runs; the parsers turn checked strings into milliseconds and bytes.
 */
import { SluiceError } from '../errors.ts';

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const SIZE_UNITS: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1000,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  TB: 1000 ** 4,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

/**
 * One or more `<number><unit>` groups with the units ms, s, m, h, d and w. A bare number is not a
 * duration: whether `5` means seconds or milliseconds is exactly the mistake units prevent.
 */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d|w))+$';

/** A byte count with an optional unit: B, kB/KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024). */
export const SIZE_PATTERN = '^[0-9]+(\\.[0-9]+)?(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$';

/** A JSON Schema for a duration property; spread it and add a `description` (and a `default`). */
export const durationSchema = { type: 'string', pattern: DURATION_PATTERN } as const;

/** A JSON Schema for a size property: an integer number of bytes, or a string with a unit. */
export const sizeSchema = { type: ['integer', 'string'], minimum: 0, pattern: SIZE_PATTERN } as const;

const DURATION_GROUP = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)/g;

/**
 * Parses a duration into milliseconds, rounded to a whole millisecond. Throws `INVALID_ARGUMENT`
 * naming the value and the accepted forms.
 */
export function parseDuration(text: string): number {
  if (typeof text !== 'string' || !new RegExp(DURATION_PATTERN).test(text)) {
    throw new SluiceError(
      'INVALID_ARGUMENT',
      `invalid duration ${JSON.stringify(text)}: expected a number with a unit (ms, s, m, h, d, w) such as 500ms, 30s, 7d or 1h30m`,
      { context: { value: text } },
    );
  }
  let ms = 0;
  for (const match of text.matchAll(DURATION_GROUP)) {
    ms += Number(match[1]) * DURATION_UNITS[match[2]!]!;
  }
  ms = Math.round(ms);
  if (!Number.isSafeInteger(ms)) {
    throw new SluiceError('INVALID_ARGUMENT', `duration ${JSON.stringify(text)} is too large`, { context: { value: text } });
  }
  return ms;
}

/**
 * Parses a size into bytes: a non-negative integer is taken as bytes, a string may carry a unit.
 * Throws `INVALID_ARGUMENT` for anything else, for a fraction of a byte and for sizes beyond 2^53.
 */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
    throw new SluiceError('INVALID_ARGUMENT', `invalid size ${value}: expected a whole number of bytes >= 0`, { context: { value } });
  }
  const match = typeof value === 'string' ? /^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$/.exec(value) : null;
  const unit = match ? SIZE_UNITS[match[2] || 'B'] : undefined;
  if (!match || unit === undefined) {
    throw new SluiceError(
      'INVALID_ARGUMENT',
      `invalid size ${JSON.stringify(value)}: expected bytes, or a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB) such as 64KiB or 10GiB`,
      { context: { value } },
    );
  }
  // Exact decimal arithmetic: 1.1KB is 1100 bytes, which a float multiplication misses.
  const [whole, fraction = ''] = match[1]!.split('.');
  const scaled = BigInt(whole! + fraction) * BigInt(unit);
  const divisor = 10n ** BigInt(fraction.length);
  if (scaled % divisor !== 0n) {
    throw new SluiceError('INVALID_ARGUMENT', `invalid size ${JSON.stringify(value)}: not a whole number of bytes`, { context: { value } });
  }
  const bytes = Number(scaled / divisor);
  if (!Number.isSafeInteger(bytes)) {
    throw new SluiceError('INVALID_ARGUMENT', `size ${JSON.stringify(value)} is too large`, { context: { value } });
  }
  return bytes;
}

import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../errors.ts';
import { DURATION_PATTERN, SIZE_PATTERN, parseDuration, parseSize } from './units.ts';

describe('parseDuration', () => {
  // Pins the milliseconds every accepted duration form means, including compound and fractional ones.
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['7d', 604_800_000],
    ['2w', 1_209_600_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['0ms', 0],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
    expect(new RegExp(DURATION_PATTERN).test(text)).toBe(true);
  });

  // Pins that a duration without a unit, with spaces or with an unknown unit is refused with the accepted forms named.
  it.each(['5', '7 days', '1y', '', '-1s', 'ms', '1h 30m'])('rejects %j', (text) => {
    expect(() => parseDuration(text)).toThrow(/invalid duration .*expected a number with a unit \(ms, s, m, h, d, w\)/);
    expect(new RegExp(DURATION_PATTERN).test(text)).toBe(false);
  });

  // Pins that a duration past 2^53 ms is an error, not a silently imprecise number.
  it('rejects durations too large to represent', () => {
    expect(() => parseDuration('99999999999999999w')).toThrow('duration "99999999999999999w" is too large');
  });
});

describe('parseSize', () => {
  // Pins the bytes each unit means: decimal units are powers of 1000, binary units powers of 1024.
  it.each([
    ['512', 512],
    [512, 512],
    ['512B', 512],
    ['64KiB', 65_536],
    ['1KB', 1000],
    ['1kB', 1000],
    ['1.1KB', 1100],
    ['1.5GiB', 1_610_612_736],
    ['10GiB', 10_737_418_240],
    ['2MB', 2_000_000],
    ['1TiB', 1_099_511_627_776],
  ])('%j is %d bytes', (value, bytes) => {
    expect(parseSize(value)).toBe(bytes);
    if (typeof value === 'string') expect(new RegExp(SIZE_PATTERN).test(value)).toBe(true);
  });

  // Pins that malformed sizes and fractions of a byte are refused, naming the value.
  it.each([
    ['10 GiB', /invalid size "10 GiB": expected bytes, or a number with a unit/],
    ['10gb', /invalid size "10gb"/],
    ['1.5B', /invalid size "1.5B": not a whole number of bytes/],
    [-1, /invalid size -1: expected a whole number of bytes >= 0/],
    [1.5, /invalid size 1.5/],
    ['99999999TiB', /size "99999999TiB" is too large/],
  ])('rejects %j', (value, message) => {
    let error: unknown;
    try {
      parseSize(value);
    } catch (err) {
      error = err;
    }
    expect(isSluiceError(error, 'INVALID_ARGUMENT')).toBe(true);
    expect((error as Error).message).toMatch(message);
  });
});

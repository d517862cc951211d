/**
 * The `timestamp` transform: takes the record's event time from a field of its value. Parsing is
 * strict and never depends on the machine's time zone: an ISO string without an offset is UTC.
 */
import { RecordError, preview } from './failure.ts';
import { getPath, parsePath } from './paths.ts';
import type { TransformFn } from './types.ts';

export type TimestampFormat = 'auto' | 'iso' | 'epoch_ms' | 'epoch_s';

/** In `auto`, numbers below this are seconds: 1e11 s is the year 5138, 1e11 ms is March 1973. */
const AUTO_SECONDS_BELOW = 1e11;
/** The range of a JavaScript Date, in ms. */
const MAX_MS = 8.64e15;

const NUMERIC = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?([Zz]|[+-]\d{2}(?::?\d{2})?)?)?$/;

/**
 * Milliseconds since the epoch for `value` read as `format`, or a reason it cannot be read.
 * Sub-millisecond precision is rounded away.
 */
export function parseTimestamp(value: unknown, format: TimestampFormat): number | string {
  let ms: number | undefined;
  switch (format) {
    case 'epoch_ms': {
      const n = toNumber(value);
      if (n === undefined) return 'is not a number of milliseconds';
      ms = n;
      break;
    }
    case 'epoch_s': {
      const n = toNumber(value);
      if (n === undefined) return 'is not a number of seconds';
      ms = n * 1000;
      break;
    }
    case 'iso':
      if (typeof value !== 'string') return 'is not an ISO 8601 string';
      ms = parseIso(value);
      if (ms === undefined) return 'is not an ISO 8601 date or date-time';
      break;
    case 'auto': {
      const n = toNumber(value);
      if (n !== undefined) ms = Math.abs(n) < AUTO_SECONDS_BELOW ? n * 1000 : n;
      else if (typeof value === 'string') ms = parseIso(value);
      if (ms === undefined) return 'is neither an epoch number nor an ISO 8601 date-time';
      break;
    }
  }
  ms = Math.round(ms);
  if (!Number.isFinite(ms) || Math.abs(ms) > MAX_MS) return 'is out of the range of dates';
  return ms;
}

function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && NUMERIC.test(value.trim())) return Number(value);
  return undefined;
}

/** ISO 8601 calendar date or date-time, to ms; undefined when malformed or not a real date. */
export function parseIso(text: string): number | undefined {
  const m = ISO.exec(text.trim());
  if (!m) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', zone = 'Z'] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  date.setUTCFullYear(year, month - 1, day);
  if (date.getUTCDate() !== day) return undefined;
  date.setUTCHours(hour, minute, second, Number(fraction.slice(0, 3).padEnd(3, '0')));
  let offsetMinutes = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const digits = zone.slice(1).replace(':', '');
    const hours = Number(digits.slice(0, 2));
    const minutes = digits.length > 2 ? Number(digits.slice(2)) : 0;
    if (hours > 23 || minutes > 59) return undefined;
    offsetMinutes = (zone[0] === '-' ? -1 : 1) * (hours * 60 + minutes);
  }
  return date.getTime() - offsetMinutes * 60_000;
}

export function buildTimestamp(entry: { field: string; format?: TimestampFormat }): TransformFn {
  const field = entry.field;
  const path = parsePath(field);
  const format = entry.format ?? 'auto';
  return (message) => {
    if (message.value === null) return message;
    const raw = getPath(message.value, path);
    if (raw === undefined) throw new RecordError(`timestamp: the value has no field ${field}`, { field });
    const parsed = parseTimestamp(raw, format);
    if (typeof parsed === 'string') throw new RecordError(`timestamp: field ${field} holds ${preview(raw)}, which ${parsed} (format ${format})`, { field, format });
    return parsed === message.timestamp ? message : { ...message, timestamp: parsed };
  };
}

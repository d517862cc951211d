/**
 * JSON values (as change events and record values carry them) to query parameters, by the family
 * of the target column. What reaches a driver is only ever null, a string, a number, a boolean, a
 * bigint, a Buffer, or (Postgres arrays) an array of those: never a plain object, which mysql2
 * would expand into SQL text.
 */
import { SluiceError } from '../../core/connector.ts';
import { RawJson } from './raw-json.ts';
import type { Family } from './type-mapping.ts';

export type Param = null | string | number | boolean | bigint | Buffer | Param[];

/**
 * A value read from the target database, to be written back as it is: not a JSON value of a
 * change event, so it skips the conversion for the column's type.
 */
export class TargetValue {
  constructor(readonly value: unknown) {}
}

/** A value the target column cannot take: a record-level error, marked so the task can find its record. */
export function badValue(message: string, value: unknown): SluiceError {
  return new SluiceError('CONNECTOR_FAILED', message, { context: { value: String(value).slice(0, 100), badValue: true } });
}

/** Whether `err` is a {@link badValue} error. */
export function isBadValue(err: unknown): err is SluiceError {
  return err instanceof SluiceError && err.context['badValue'] === true;
}

/** What a target engine needs converted beyond what both share. */
export interface ValueOptions {
  readonly engine: 'postgres' | 'mysql';
}

/**
 * The parameter for `value` in a column of `family`. Throws a record-level error for a value the
 * column cannot take as given (a datetime string MySQL cannot store).
 */
export function toParam(value: unknown, family: Family, options: ValueOptions): Param {
  if (value === null || value === undefined) return null;
  if (value instanceof TargetValue) return value.value as Param;
  switch (family) {
    case 'json':
      // A JSON column takes JSON text: a string value is the JSON string "...", not raw text.
      return value instanceof RawJson ? value.text : JSON.stringify(value);
    case 'binary':
      if (typeof value === 'string') return Buffer.from(value, 'base64');
      return scalar(value);
    case 'bool':
      if (options.engine === 'mysql' && typeof value === 'boolean') return value ? 1 : 0;
      return scalar(value);
    case 'timestamp':
    case 'timestamptz':
    case 'date':
      if (typeof value === 'string') return options.engine === 'mysql' ? (family === 'date' ? mysqlDate(value) : mysqlDatetime(value)) : pgDatetime(value);
      return scalar(value);
    case 'time':
      if (options.engine === 'mysql' && typeof value === 'string') return value.replace(/([+-]\d{2}(:?\d{2})?|Z)$/, '');
      return scalar(value);
    case 'array':
      if (Array.isArray(value)) return value.map((v) => toArrayElement(v));
      return scalar(value);
    default:
      return scalar(value);
  }
}

/**
 * The rows of one statement with what converting them takes: the columns in statement order and
 * each column's family in the target. A dialect converts the rows itself, so that a bulk path
 * (Postgres COPY) can encode straight from the decoded values, without an array of parameters per
 * row that lives only until it is encoded.
 */
export interface RowSet {
  readonly columns: readonly string[];
  /** The family of each column of {@link columns}, in the same order. */
  readonly families: readonly Family[];
  readonly rows: readonly Readonly<Record<string, unknown>>[];
}

/**
 * The parameters of every row of `set`, one array per row in column order, by {@link toParam}.
 * Throws its record-level error for the first value a column cannot take.
 */
export function paramRows(set: RowSet, options: ValueOptions): Param[][] {
  const { columns, families, rows } = set;
  const out: Param[][] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    const params: Param[] = new Array(columns.length);
    for (let j = 0; j < columns.length; j++) params[j] = toParam(row[columns[j]!], families[j]!, options);
    out[i] = params;
  }
  return out;
}

/** Scalars as they are; objects and arrays as JSON text. */
function scalar(value: unknown): Param {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'bigint':
      return value;
    default:
      if (Buffer.isBuffer(value)) return value;
      if (value instanceof RawJson) return value.text;
      return JSON.stringify(value);
  }
}

/** An element of a Postgres array parameter: nested arrays stay arrays, objects become JSON text. */
function toArrayElement(value: unknown): Param {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return value.map((v) => toArrayElement(v));
  return scalar(value);
}

const CDC_UTC = /^[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const CDC_LOCAL = /^[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/;
const ISO_DATETIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?$/;

/**
 * An ISO-8601 datetime (as postgres-cdc writes timestamptz and timestamp: `2024-05-01T10:20:30.123456Z`,
 * or with an offset) as MySQL's `YYYY-MM-DD HH:MM:SS.ffffff`, in UTC when it carries an offset or Z,
 * keeping all six fractional digits. Other strings pass through, for MySQL to accept or reject.
 */
export function mysqlDatetime(value: string): string {
  // postgres-cdc's own shapes, already UTC or zone-less with six digits, need only the T replaced.
  if (CDC_UTC.test(value)) return `${value.slice(0, 10)} ${value.slice(11, 26)}`;
  if (CDC_LOCAL.test(value)) return `${value.slice(0, 10)} ${value.slice(11)}`;
  const m = ISO_DATETIME.exec(value);
  if (!m) {
    if (/^[-+]?infinity$/i.test(value) || / BC$/.test(value) || EXPANDED_YEAR.test(value)) {
      throw badValue(`the datetime ${JSON.stringify(value)} has no MySQL DATETIME equivalent (range 1000-01-01 to 9999-12-31)`, value);
    }
    return value;
  }
  const [, y, mo, d, h, mi, s, fraction = '', zone] = m;
  if (Number(y) < 1000) {
    throw badValue(`the datetime ${JSON.stringify(value)} is before MySQL DATETIME's range (1000-01-01 to 9999-12-31)`, value);
  }
  const micros = fraction.padEnd(6, '0').slice(0, 6);
  if (zone === undefined) return `${y}-${mo}-${d} ${h}:${mi}:${s}${micros === '000000' && fraction === '' ? '' : `.${micros}`}`;
  let offsetMs = 0;
  if (zone !== 'Z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(/:/g, '');
    offsetMs = sign * ((Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || '0')) * 60 + Number(digits.slice(4, 6) || '0')) * 1000;
  }
  const utc = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) - offsetMs);
  const date = `${pad(utc.getUTCFullYear(), 4)}-${pad(utc.getUTCMonth() + 1)}-${pad(utc.getUTCDate())}`;
  const time = `${pad(utc.getUTCHours())}:${pad(utc.getUTCMinutes())}:${pad(utc.getUTCSeconds())}`;
  return `${date} ${time}${fraction === '' ? '' : `.${micros}`}`;
}

/** ISO 8601's year 0000 and expanded years (`-000043-03-15`, `+010000-01-01`), as postgres-cdc writes years outside 0001-9999. */
const EXPANDED_YEAR = /^(?:([+-])(\d{4,})|(0000))(-\d{2}-\d{2}.*)$/;

/**
 * A date or datetime from a change event as Postgres reads it: expanded years become Postgres'
 * own spelling (`-000043-03-15` is 44 BC, since ISO year 0 is 1 BC); anything else passes through,
 * including `infinity`.
 */
export function pgDatetime(value: string): string {
  // Only a year written +YYYYY, -YYYYY or 0000 needs rewriting: one character says whether to look.
  const first = value.charCodeAt(0);
  if (first !== 0x2b && first !== 0x2d && first !== 0x30) return value;
  const m = EXPANDED_YEAR.exec(value);
  if (!m) return value;
  const year = m[3] !== undefined ? 0 : Number(m[2]) * (m[1] === '-' ? -1 : 1);
  if (year >= 1) return `${String(year).padStart(4, '0')}${m[4]}`;
  return `${String(1 - year).padStart(4, '0')}${m[4]} BC`;
}

/** A date for MySQL: as given, except values outside DATE's range, which are refused as bad values. */
export function mysqlDate(value: string): string {
  if (EXPANDED_YEAR.test(value) || /^[-+]?infinity$/i.test(value) || / BC$/.test(value) || /^0\d{3}-/.test(value)) {
    throw badValue(`the date ${JSON.stringify(value)} has no MySQL DATE equivalent (range 1000-01-01 to 9999-12-31)`, value);
  }
  return value;
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/**
 * The type mapping: a column value's Postgres text output to the JSON that goes into change
 * events. It is the same function for snapshot rows (read as text) and for streamed changes
 * (pgoutput sends the text output), so a row reads the same whichever way it arrived.
 *
 * Values are turned straight into JSON text rather than into JavaScript values first: integers
 * and json/jsonb are copied as they are, so no digit is lost on the way and no object is built
 * only to be serialised again.
 *
 * | Postgres | JSON |
 * | --- | --- |
 * | int2, int4, oid | number |
 * | int8 | number when within ±(2^53 − 1), else a string of its digits |
 * | float4, float8 | number; `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
 * | numeric | string, exactly as Postgres prints it (`"12.50"`, `"NaN"`) |
 * | bool | true / false |
 * | text, varchar, char(n) (padded), name, uuid, enums, citext | string |
 * | json, jsonb | the JSON value itself (jsonb as Postgres normalises it) |
 * | timestamptz | `"2024-05-01T12:00:00.000000Z"`: UTC, always six fractional digits |
 * | timestamp | `"2024-05-01T12:00:00.000000"`: no zone, six fractional digits |
 * | date | `"2024-05-01"` |
 * | time / timetz | `"12:00:00.000000"` / `"12:00:00.000000+02:00"` |
 * | interval | ISO 8601 duration string, e.g. `"P1Y2M3DT4H5M6S"` |
 * | bytea | base64 string |
 * | arrays of any of these | JSON arrays (nested for several dimensions; bounds dropped) |
 * | domains | as their base type |
 * | NULL | null |
 * | anything else (money, inet, geometric, ranges, composites, xml...) | its text output, as a string |
 *
 * Years outside 0001–9999 and BC dates use ISO 8601's expanded form (`"-000043-03-15"`); the
 * special values infinity and -infinity stay the strings `"infinity"` and `"-infinity"`.
 */

/** How a value of one type is written; resolved once per type OID. */
export type TypeKind =
  | 'bool'
  | 'int'
  | 'int8'
  | 'float'
  | 'numeric'
  | 'string'
  | 'json'
  | 'timestamptz'
  | 'timestamp'
  | 'date'
  | 'time'
  | 'timetz'
  | 'bytea'
  | 'array';

export interface PgType {
  readonly oid: number;
  readonly kind: TypeKind;
  /** Arrays: the element type. */
  readonly element?: PgType;
  /** Arrays: the element delimiter (`,` for all but box). */
  readonly delimiter?: string;
}

/**
 * Session settings every sluice connection sets at startup, because text output depends on them:
 * ISO dates in UTC, intervals in ISO 8601, floats with all their digits, bytea in hex.
 */
export const SESSION_OPTIONS = '-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex -c client_encoding=UTF8';

/** Built-in scalar types by OID. Everything else is looked up in pg_type once. */
export const BUILTIN_TYPES: ReadonlyMap<number, PgType> = new Map(
  (
    [
      [16, 'bool'],
      [17, 'bytea'],
      [18, 'string'], // "char"
      [19, 'string'], // name
      [20, 'int8'],
      [21, 'int'],
      [23, 'int'],
      [25, 'string'],
      [26, 'int'], // oid
      [114, 'json'],
      [700, 'float'],
      [701, 'float'],
      [1042, 'string'], // bpchar
      [1043, 'string'], // varchar
      [1082, 'date'],
      [1083, 'time'],
      [1114, 'timestamp'],
      [1184, 'timestamptz'],
      [1186, 'string'], // interval, ISO 8601 through IntervalStyle
      [1266, 'timetz'],
      [1700, 'numeric'],
      [2950, 'string'], // uuid
      [3802, 'json'], // jsonb
    ] as const
  ).map(([oid, kind]) => [oid, { oid, kind }]),
);

/** A type that is written as its text output, a JSON string. */
export function textType(oid: number): PgType {
  return { oid, kind: 'string' };
}

/** The documented marker written for an unchanged TOAST value that Postgres did not send. */
export const UNCHANGED_TOAST_MARKER = '__sluice_unchanged_toast__';
export const UNCHANGED_TOAST_JSON = JSON.stringify(UNCHANGED_TOAST_MARKER);

/** JSON of a value's text output, by its type. `text` is never null here; NULL is handled by the caller. */
export function toJson(type: PgType, text: string): string {
  switch (type.kind) {
    case 'int':
      return text;
    case 'int8':
      return int8Json(text);
    case 'string':
      return JSON.stringify(text);
    case 'numeric':
      return `"${text}"`;
    case 'bool':
      return text === 't' ? 'true' : 'false';
    case 'json':
      return text;
    case 'float':
      return text === 'NaN' || text === 'Infinity' || text === '-Infinity' ? `"${text}"` : text;
    case 'timestamptz':
      return `"${timestampIso(text, true)}"`;
    case 'timestamp':
      return `"${timestampIso(text, false)}"`;
    case 'date':
      return `"${dateIso(text)}"`;
    case 'time':
      return `"${timeIso(text)}"`;
    case 'timetz':
      return `"${timeIso(text)}"`;
    case 'bytea':
      return `"${byteaBase64(text)}"`;
    case 'array':
      return arrayJson(type, text);
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function int8Json(text: string): string {
  const digits = text.charCodeAt(0) === 45 ? text.length - 1 : text.length;
  if (digits <= 15) return text;
  const n = BigInt(text);
  return n > MAX_SAFE || n < -MAX_SAFE ? `"${text}"` : text;
}

/** `\x0a0b` (hex output) to base64. */
export function byteaBase64(text: string): string {
  if (text.startsWith('\\x')) return Buffer.from(text.slice(2), 'hex').toString('base64');
  // The escape format, should a server force it: octal escapes and doubled backslashes.
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 92 && text[i + 1] === '\\') {
      bytes.push(92);
      i++;
    } else if (c === 92) {
      bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      bytes.push(c);
    }
  }
  return Buffer.from(bytes).toString('base64');
}

/** An ISO 8601 year: four digits within 0000–9999, else signed and six digits. BC years are astronomical (1 BC is 0000). */
function isoYear(yearText: string, bc: boolean): string {
  let year = Number(yearText);
  if (bc) year = 1 - year;
  if (year >= 0 && year <= 9999) return String(year).padStart(4, '0');
  return `${year < 0 ? '-' : '+'}${String(Math.abs(year)).padStart(6, '0')}`;
}

function micros(fraction: string | undefined): string {
  if (fraction === undefined) return '000000';
  return fraction.length >= 6 ? fraction.slice(0, 6) : fraction.padEnd(6, '0');
}

function zone(hours: string, minutes: string | undefined, seconds: string | undefined): string {
  if (hours === '+00' && (minutes === undefined || minutes === '00') && (seconds === undefined || seconds === '00')) return 'Z';
  return `${hours}:${minutes ?? '00'}${seconds !== undefined && seconds !== '00' ? `:${seconds}` : ''}`;
}

const TIMESTAMP_TEXT = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([+-]\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$/;

/** `2024-05-01 12:00:00.5+00` (ISO DateStyle) to `2024-05-01T12:00:00.500000Z`. */
export function timestampIso(text: string, withZone: boolean): string {
  // The common case, a four-digit year with all six fractional digits, without the regex.
  if (withZone ? text.length === 29 && text.endsWith('+00') : text.length === 26) {
    if (text.charCodeAt(10) === 32 && text.charCodeAt(19) === 46) return `${text.slice(0, 10)}T${text.slice(11, 26)}${withZone ? 'Z' : ''}`;
  }
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m) return text; // infinity, -infinity
  const [, y, mo, d, h, mi, s, fraction, zh, zm, zs, bc] = m;
  const base = `${isoYear(y!, bc !== undefined)}-${mo}-${d}T${h}:${mi}:${s}.${micros(fraction)}`;
  if (!withZone) return base;
  return base + (zh === undefined ? 'Z' : zone(zh, zm, zs));
}

const DATE_TEXT = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;

/** `2024-05-01` stays; BC dates and years past 9999 get ISO 8601's expanded year. */
export function dateIso(text: string): string {
  const m = DATE_TEXT.exec(text);
  if (!m) return text;
  return `${isoYear(m[1]!, m[4] !== undefined)}-${m[2]}-${m[3]}`;
}

const TIME_TEXT = /^(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([+-]\d\d)(?::(\d\d))?(?::(\d\d))?)?$/;

/** `12:00:00.5` to `12:00:00.500000`; timetz keeps its offset as `+02:00` (`+00` is `Z`). */
export function timeIso(text: string): string {
  const m = TIME_TEXT.exec(text);
  if (!m) return text;
  const [, h, mi, s, fraction, zh, zm, zs] = m;
  const base = `${h}:${mi}:${s}.${micros(fraction)}`;
  return zh === undefined ? base : base + zone(zh, zm, zs);
}

// ---------------------------------------------------------------------------------------------
// Arrays

/**
 * Parses an array's text output (`{1,2,NULL}`, `{{"a b","c\"d"},{e,f}}`, `[0:1]={x,y}`) into
 * nested arrays of element texts, null for NULL. Dimension bounds are dropped.
 */
export function parseArrayText(text: string, delimiter = ','): unknown[] {
  let i = 0;
  if (text[0] === '[') {
    const eq = text.indexOf('=');
    if (eq < 0) throw new Error(`malformed array text ${JSON.stringify(text.slice(0, 60))}`);
    i = eq + 1;
  }
  const parseLevel = (): unknown[] => {
    if (text[i] !== '{') throw new Error(`malformed array text at ${i}: ${JSON.stringify(text.slice(0, 60))}`);
    i++;
    const out: unknown[] = [];
    if (text[i] === '}') {
      i++;
      return out;
    }
    for (;;) {
      if (text[i] === '{') {
        out.push(parseLevel());
      } else if (text[i] === '"') {
        i++;
        let s = '';
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\') i++;
          s += text[i];
          i++;
        }
        i++;
        out.push(s);
      } else {
        let end = i;
        while (end < text.length && text[end] !== delimiter && text[end] !== '}') end++;
        const raw = text.slice(i, end).trim();
        out.push(raw === 'NULL' ? null : raw);
        i = end;
      }
      if (text[i] === delimiter) {
        i++;
        continue;
      }
      if (text[i] === '}') {
        i++;
        return out;
      }
      throw new Error(`malformed array text at ${i}: ${JSON.stringify(text.slice(0, 60))}`);
    }
  };
  return parseLevel();
}

function arrayJson(type: PgType, text: string): string {
  const element = type.element ?? textType(0);
  const write = (items: unknown[]): string => {
    let out = '[';
    for (let k = 0; k < items.length; k++) {
      if (k > 0) out += ',';
      const item = items[k];
      if (item === null) out += 'null';
      else if (Array.isArray(item)) out += write(item);
      else out += toJson(element, item as string);
    }
    return out + ']';
  };
  return write(parseArrayText(text, type.delimiter ?? ','));
}

// ---------------------------------------------------------------------------------------------
// Types from the catalog

/** A row of pg_type, as {@link TYPE_QUERY} returns it. */
export interface PgTypeRow {
  oid: number;
  typtype: string;
  typcategory: string;
  typelem: number;
  typbasetype: number;
  typdelim: string;
}

/** Reads the pg_type rows of some OIDs; the query text is `$1::oid[]`. */
export const TYPE_QUERY =
  'SELECT oid::int8 AS oid, typtype, typcategory, typelem::int8 AS typelem, typbasetype::int8 AS typbasetype, typdelim FROM pg_catalog.pg_type WHERE oid = ANY($1::oid[])';

/**
 * Resolves type OIDs to {@link PgType}s: built-ins from the table above, others from pg_type
 * (domains as their base type, arrays by their element type, enums and everything else as text).
 * Results are cached for the life of the connection's task; a type's OID never changes meaning.
 */
export class TypeRegistry {
  private readonly cache = new Map<number, PgType>(BUILTIN_TYPES);

  constructor(private readonly lookup: (oids: number[]) => Promise<PgTypeRow[]>) {}

  /** The cached type of an OID; call {@link resolve} first. */
  get(oid: number): PgType {
    return this.cache.get(oid) ?? textType(oid);
  }

  has(oid: number): boolean {
    return this.cache.has(oid);
  }

  /** Makes every OID (and the element and base types they refer to) available through {@link get}. */
  async resolve(oids: Iterable<number>): Promise<void> {
    let missing = [...new Set(oids)].filter((oid) => !this.cache.has(oid));
    const rows = new Map<number, PgTypeRow>();
    // Element and base types can themselves be user types: follow them, a few levels at most.
    for (let depth = 0; missing.length > 0 && depth < 5; depth++) {
      const found = await this.lookup(missing);
      const next: number[] = [];
      for (const row of found) {
        const r = { ...row, oid: Number(row.oid), typelem: Number(row.typelem), typbasetype: Number(row.typbasetype) };
        rows.set(r.oid, r);
        for (const ref of [r.typelem, r.typbasetype]) if (ref !== 0 && !this.cache.has(ref) && !rows.has(ref)) next.push(ref);
      }
      missing = next;
    }
    const build = (oid: number, seen: Set<number>): PgType => {
      const cached = this.cache.get(oid);
      if (cached) return cached;
      const row = rows.get(oid);
      let type: PgType;
      if (!row || seen.has(oid)) {
        type = textType(oid);
      } else if (row.typtype === 'd' && row.typbasetype !== 0) {
        type = { ...build(row.typbasetype, new Set([...seen, oid])), oid };
      } else if (row.typcategory === 'A' && row.typelem !== 0) {
        // The element type's delimiter separates elements (`;` for box); every built-in here uses `,`.
        type = { oid, kind: 'array', element: build(row.typelem, new Set([...seen, oid])), delimiter: rows.get(row.typelem)?.typdelim || ',' };
      } else {
        type = textType(oid);
      }
      this.cache.set(oid, type);
      return type;
    };
    for (const oid of rows.keys()) build(oid, new Set());
    for (const oid of oids) if (!this.cache.has(oid)) this.cache.set(oid, textType(oid));
  }
}

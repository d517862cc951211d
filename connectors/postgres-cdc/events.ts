/**
 * Change events: Debezium's envelope, written as JSON text directly (see types.ts for why).
 * Snapshot rows are built as strings from the query's text values; streamed changes, the hot path,
 * are written as bytes straight from the pgoutput message ({@link TableShape.envelopeBytes}), which
 * gives the same bytes.
 *
 * Value: `{op, before, after, source: {db, schema, table, lsn, txid, commit_ts, snapshot}, ts_ms}`
 * - op: `r` snapshot read, `c` insert, `u` update, `d` delete, `t` truncate;
 * - before: null for r and c; for u and d, the old row when Postgres sends it: the whole row under
 *   REPLICA IDENTITY FULL, only the key columns under DEFAULT (and for u only when the key changed:
 *   otherwise null);
 * - after: the new row for r, c and u; null for d and t;
 * - source.lsn: the LSN of the change (the consistent point for snapshot rows); txid and commit_ts
 *   (ISO 8601, microseconds) are null for snapshot rows; ts_ms is when sluice read the change.
 *
 * Key: the primary-key columns as a JSON object (`{"id":42}`), or the replica identity columns of a
 * table without a primary key; null for a table with neither, and for truncates. An update that
 * changes the key becomes a delete of the old key and an insert (`c`) of the new one, so every
 * key's last event says whether the row exists.
 */
import type { Headers, SourceOffset, SourcePartition, SourceRecord } from '../../core/connector.ts';
import type { ByteWriter } from './bytes.ts';
import { RawText, UNCHANGED_TOAST, type TupleValue } from './pgoutput.ts';
import { type PgType, UNCHANGED_TOAST_JSON, toJson } from './types.ts';

/** The header that carries a row event's table schema. */
export const SCHEMA_HEADER = 'sluice.cdc.schema';

/** The topic variables of transaction markers: schema `__sluice`, table `transactions`. */
export const MARKER_SCHEMA = '__sluice';
export const MARKER_TABLE = 'transactions';

/** One column as change events see it. */
export interface ShapeColumn {
  readonly name: string;
  readonly type: PgType;
  /** format_type(), e.g. numeric(10,2). */
  readonly typeName: string;
  readonly nullable: boolean;
  /** Position in the primary key from 1, or 0. */
  readonly pkPosition: number;
  /** Part of the replica identity (the key Postgres sends for updates and deletes). */
  readonly identity: boolean;
}

/** Characters allowed in topic names; others become `_` when a name fills a topic template. */
function topicPart(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_');
}

/**
 * Everything needed to write the events of one table version, computed once per Relation message
 * (or per snapshot table): column JSON prefixes, key positions, topic variables, the schema header.
 */
export class TableShape {
  readonly id: string;
  readonly topicVars: Readonly<Record<string, string>>;
  /** `"name":` per column. */
  private readonly prefixes: string[];
  /** Column indexes of the event key. */
  readonly keyIndexes: number[];
  /** Column indexes of the primary key, in key order; empty without a primary key. */
  readonly pkIndexes: number[];
  readonly headers: Headers;
  /** `"source":{"db":...,"schema":...,"table":...,` */
  private readonly sourcePrefix: string;
  /** The same prefixes as UTF-8, for events written as bytes. */
  private readonly prefixBytes: Buffer[];
  private readonly sourcePrefixBytes: Buffer;
  /** Per column, how its text output becomes JSON on the byte path. */
  private readonly codes: Uint8Array;

  constructor(
    readonly schema: string,
    readonly table: string,
    readonly columns: readonly ShapeColumn[],
    options: { database: string; prefix: string; schemaHeader: boolean },
  ) {
    this.id = `${schema}.${table}`;
    this.topicVars = Object.freeze({ prefix: options.prefix, database: topicPart(options.database), schema: topicPart(schema), table: topicPart(table) });
    this.prefixes = columns.map((c) => `${JSON.stringify(c.name)}:`);
    this.pkIndexes = columns
      .map((c, i) => [c.pkPosition, i] as const)
      .filter(([p]) => p > 0)
      .sort((a, b) => a[0] - b[0])
      .map(([, i]) => i);
    this.keyIndexes = this.pkIndexes.length > 0 ? this.pkIndexes : columns.flatMap((c, i) => (c.identity ? [i] : []));
    this.sourcePrefix = `"source":{"db":${JSON.stringify(options.database)},"schema":${JSON.stringify(schema)},"table":${JSON.stringify(table)},`;
    this.prefixBytes = this.prefixes.map((p) => Buffer.from(p));
    this.sourcePrefixBytes = Buffer.from(`,${this.sourcePrefix}"lsn":"`);
    this.codes = Uint8Array.from(columns, (c) => codeOf(c.type.kind));
    const described = {
      schema,
      table,
      columns: columns.map((c) => ({ name: c.name, type: c.typeName, nullable: c.nullable, pk: c.pkPosition > 0 })),
    };
    this.headers = options.schemaHeader ? { [SCHEMA_HEADER]: Buffer.from(JSON.stringify(described)) } : {};
  }

  /** The row as a JSON object; unchanged TOAST values become the marker. Extra or missing values are an error of the caller. */
  row(values: readonly TupleValue[]): string {
    let out = '{';
    const n = this.columns.length;
    for (let i = 0; i < n; i++) {
      if (i > 0) out += ',';
      out += this.prefixes[i]!;
      out += valueJson(this.columns[i]!.type, values[i]);
    }
    return out + '}';
  }

  /** Only the columns at `indexes`: the key, or the old key columns of an update or delete. */
  partial(values: readonly TupleValue[], indexes: readonly number[]): string {
    let out = '{';
    for (let k = 0; k < indexes.length; k++) {
      const i = indexes[k]!;
      if (k > 0) out += ',';
      out += this.prefixes[i]!;
      out += valueJson(this.columns[i]!.type, values[i]);
    }
    return out + '}';
  }

  /** The event key for a row, or null when the table has no key columns. */
  key(values: readonly TupleValue[]): Buffer | null {
    if (this.keyIndexes.length === 0) return null;
    return Buffer.from(this.partial(values, this.keyIndexes));
  }

  /** Whether two tuples have the same key values (text output equality, which is value equality for key types). */
  sameKey(a: readonly TupleValue[], b: readonly TupleValue[]): boolean {
    for (const i of this.keyIndexes) {
      const x = a[i];
      const y = b[i];
      if (x === y) continue;
      if (x instanceof RawText && y instanceof RawText && x.equals(y)) continue;
      if (Buffer.isBuffer(x) && Buffer.isBuffer(y) && x.equals(y)) continue;
      return false;
    }
    return true;
  }

  /** The envelope's JSON text. `sourceTail` is what follows the table in `source` (lsn, txid, commit_ts, snapshot) and closes it. */
  envelope(op: string, before: string, after: string, sourceTail: string, extra: string): string {
    return `{"op":"${op}","before":${before},"after":${after},${this.sourcePrefix}${sourceTail}${extra},"ts_ms":${Date.now()}}`;
  }

  /** {@link key}'s bytes, written with `w`. */
  keyBytes(w: ByteWriter, values: readonly TupleValue[]): Buffer | null {
    if (this.keyIndexes.length === 0) return null;
    w.begin();
    this.writeColumns(w, values, this.keyIndexes);
    return w.end();
  }

  /**
   * The bytes of a streamed change's {@link envelope}, written with `w`: the same JSON byte for
   * byte, with `source` as {@link streamSource} makes it from `lsn` and the transaction's
   * {@link streamSourceRest}. `before` and `after` are rows, or null; `beforeIndexes` limits
   * `before` to those columns (the old key columns). `extra` must be ASCII.
   */
  envelopeBytes(
    w: ByteWriter,
    op: 'c' | 'u' | 'd' | 't',
    before: readonly TupleValue[] | null,
    beforeIndexes: readonly number[] | null,
    after: readonly TupleValue[] | null,
    lsn: string,
    sourceRest: Buffer,
    extra: string,
  ): Buffer {
    w.begin();
    const head = OP_HEAD[op];
    w.bytes(head, 0, head.length);
    if (before === null) w.ascii('null');
    else this.writeColumns(w, before, beforeIndexes);
    w.bytes(AFTER, 0, AFTER.length);
    if (after === null) w.ascii('null');
    else this.writeColumns(w, after, null);
    w.bytes(this.sourcePrefixBytes, 0, this.sourcePrefixBytes.length);
    w.ascii(lsn);
    w.bytes(sourceRest, 0, sourceRest.length);
    if (extra !== '') w.ascii(extra);
    const ts = timestampMs();
    w.bytes(ts, 0, ts.length);
    return w.end();
  }

  /** A JSON object of the columns at `indexes`, or of every column when null. */
  private writeColumns(w: ByteWriter, values: readonly TupleValue[], indexes: readonly number[] | null): void {
    w.byte(0x7b);
    const n = indexes === null ? this.columns.length : indexes.length;
    for (let k = 0; k < n; k++) {
      const i = indexes === null ? k : indexes[k]!;
      const prefix = this.prefixBytes[i]!;
      const value = values[i];
      const code = this.codes[i]!;
      if (value instanceof RawText && code !== SLOW) {
        // Room for the comma, the prefix, the value and two quotes, then the bytes written in place.
        const src = value.buf;
        const end = value.end;
        const out = w.reserve(prefix.length + (end - value.start) + 8);
        let pos = w.pos;
        if (k > 0) out[pos++] = 0x2c;
        pos = copy(prefix, 0, prefix.length, out, pos);
        if (writeRaw(code, src, value.start, end, out, pos, w)) continue;
        // Needs escapes or a conversion after all: the string path, from the value's start.
        w.pos = pos;
        w.text(toJson(this.columns[i]!.type, value.text()));
        continue;
      }
      if (k > 0) w.byte(0x2c);
      w.bytes(prefix, 0, prefix.length);
      if (value === null || value === undefined) w.ascii('null');
      else w.text(valueJson(this.columns[i]!.type, value));
    }
    w.byte(0x7d);
  }
}

const OP_HEAD = { c: Buffer.from('{"op":"c","before":'), u: Buffer.from('{"op":"u","before":'), d: Buffer.from('{"op":"d","before":'), t: Buffer.from('{"op":"t","before":') };
const AFTER = Buffer.from(',"after":');
let lastMs = 0;
let lastMsBytes = Buffer.from(',"ts_ms":0}');

/** `,"ts_ms":<now>}`, made again only when the clock moved. */
function timestampMs(): Buffer {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastMsBytes = Buffer.from(`,"ts_ms":${now}}`);
  }
  return lastMsBytes;
}

/** How a column's text output becomes JSON on the byte path, by type kind. */
const AS_IS = 0;
const QUOTED = 1;
const BOOL = 2;
const FLOAT = 3;
const INT8 = 4;
const STRING = 5;
const TIMESTAMPTZ = 7;
const TIMESTAMP = 8;
/** Everything else goes through the string path (toJson): dates, times, bytea, arrays, unusual timestamps. */
const SLOW = 6;

function codeOf(kind: PgType['kind']): number {
  switch (kind) {
    case 'int':
    case 'json':
      return AS_IS;
    case 'numeric':
      return QUOTED;
    case 'bool':
      return BOOL;
    case 'float':
      return FLOAT;
    case 'int8':
      return INT8;
    case 'string':
      return STRING;
    case 'timestamptz':
      return TIMESTAMPTZ;
    case 'timestamp':
      return TIMESTAMP;
    default:
      return SLOW;
  }
}

/**
 * Writes the JSON of `src[start, end)` at `out[pos]` (room reserved by the caller) and moves `w.pos`
 * past it. Returns false, having moved nothing, for a value the byte path does not handle: a string
 * that needs escapes, an int8 beyond 2^53.
 */
function writeRaw(code: number, src: Buffer, start: number, end: number, out: Buffer, pos: number, w: ByteWriter): boolean {
  switch (code) {
    case AS_IS:
      w.pos = copy(src, start, end, out, pos);
      return true;
    case QUOTED:
      out[pos++] = 0x22;
      pos = copy(src, start, end, out, pos);
      out[pos++] = 0x22;
      w.pos = pos;
      return true;
    case BOOL:
      if (src[start] === 0x74) {
        out[pos++] = 0x74;
        out[pos++] = 0x72;
        out[pos++] = 0x75;
        out[pos++] = 0x65;
      } else {
        out[pos++] = 0x66;
        out[pos++] = 0x61;
        out[pos++] = 0x6c;
        out[pos++] = 0x73;
        out[pos++] = 0x65;
      }
      w.pos = pos;
      return true;
    case FLOAT: {
      // NaN, Infinity, -Infinity are strings in JSON.
      const c = src[start];
      const special = c === 0x4e || c === 0x49 || (c === 0x2d && src[start + 1] === 0x49);
      if (special) out[pos++] = 0x22;
      pos = copy(src, start, end, out, pos);
      if (special) out[pos++] = 0x22;
      w.pos = pos;
      return true;
    }
    case INT8:
      if (end - start - (src[start] === 0x2d ? 1 : 0) > 15) return false;
      w.pos = copy(src, start, end, out, pos);
      return true;
    case STRING: {
      out[pos++] = 0x22;
      for (let i = start; i < end; i++) {
        const c = src[i]!;
        if (c < 0x20 || c === 0x22 || c === 0x5c) return false;
        out[pos++] = c;
      }
      out[pos++] = 0x22;
      w.pos = pos;
      return true;
    }
    case TIMESTAMPTZ:
    case TIMESTAMP: {
      // timestampIso's common case: a four-digit year and six fractional digits, in UTC for timestamptz.
      const zoned = code === TIMESTAMPTZ;
      const ok = zoned
        ? end - start === 29 && src[start + 26] === 0x2b && src[start + 27] === 0x30 && src[start + 28] === 0x30
        : end - start === 26;
      if (!ok || src[start + 10] !== 0x20 || src[start + 19] !== 0x2e) return false;
      out[pos++] = 0x22;
      pos = copy(src, start, start + 10, out, pos);
      out[pos++] = 0x54;
      pos = copy(src, start + 11, start + 26, out, pos);
      if (zoned) out[pos++] = 0x5a;
      out[pos++] = 0x22;
      w.pos = pos;
      return true;
    }
    default:
      return false;
  }
}

/** Copies `src[from, to)` to `out` at `pos`; returns the position after it. */
function copy(src: Buffer, from: number, to: number, out: Buffer, pos: number): number {
  if (to - from >= 32) return pos + src.copy(out, pos, from, to);
  for (let i = from; i < to; i++) out[pos++] = src[i]!;
  return pos;
}

function valueJson(type: PgType, value: TupleValue | undefined): string {
  if (value === null || value === undefined) return 'null';
  if (value === UNCHANGED_TOAST) return UNCHANGED_TOAST_JSON;
  if (typeof value === 'string') return toJson(type, value);
  if (value instanceof RawText) return toJson(type, value.text());
  // Binary format ('b'): sluice never asks for it; written as base64 should a server send it.
  return JSON.stringify(value.toString('base64'));
}

/** The tail of `source` for a streamed change. */
export function streamSource(lsn: string, txid: number, commitTs: string): string {
  return `"lsn":"${lsn}","txid":${txid},"commit_ts":"${commitTs}","snapshot":false}`;
}

/** What follows the LSN in {@link streamSource}, as bytes: the same for every change of a transaction. */
export function streamSourceRest(txid: number, commitTs: string): Buffer {
  return Buffer.from(`","txid":${txid},"commit_ts":"${commitTs}","snapshot":false}`);
}

/** The tail of `source` for a snapshot row. */
export function snapshotSource(lsn: string | null): string {
  return `"lsn":${lsn === null ? 'null' : `"${lsn}"`},"txid":null,"commit_ts":null,"snapshot":true}`;
}

/** Builds one record. */
export function record(
  partition: SourcePartition,
  offset: SourceOffset,
  shape: TableShape,
  key: Buffer | null,
  value: string | Buffer,
  timestamp: number | undefined,
): SourceRecord {
  const r: SourceRecord = {
    sourcePartition: partition,
    sourceOffset: offset,
    topicVars: shape.topicVars,
    key,
    value: typeof value === 'string' ? Buffer.from(value) : value,
    headers: shape.headers,
  };
  if (timestamp !== undefined) r.timestamp = timestamp;
  return r;
}

/** A transaction marker (include_transaction_markers): `{status, id, lsn, commit_ts, event_count?, data_collections?, ts_ms}`. */
export function markerRecord(
  partition: SourcePartition,
  offset: SourceOffset,
  topicVars: Readonly<Record<string, string>>,
  marker: { status: 'BEGIN' | 'END'; id: number; lsn: string; commit_ts: string; event_count?: number; data_collections?: Array<{ data_collection: string; event_count: number }> },
  timestamp: number,
): SourceRecord {
  return {
    sourcePartition: partition,
    sourceOffset: offset,
    topicVars,
    key: Buffer.from(JSON.stringify({ id: marker.id })),
    value: Buffer.from(JSON.stringify({ ...marker, ts_ms: Date.now() })),
    timestamp,
  };
}

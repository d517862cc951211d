/**
 * Change events: Debezium's envelope, written as JSON text directly (see types.ts for why).
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
import { UNCHANGED_TOAST, type TupleValue } from './pgoutput.ts';
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
      if (Buffer.isBuffer(x) && Buffer.isBuffer(y) && x.equals(y)) continue;
      return false;
    }
    return true;
  }

  /** The envelope's JSON text. `sourceTail` is what follows the table in `source` (lsn, txid, commit_ts, snapshot) and closes it. */
  envelope(op: string, before: string, after: string, sourceTail: string, extra: string): string {
    return `{"op":"${op}","before":${before},"after":${after},${this.sourcePrefix}${sourceTail}${extra},"ts_ms":${Date.now()}}`;
  }
}

function valueJson(type: PgType, value: TupleValue | undefined): string {
  if (value === null || value === undefined) return 'null';
  if (value === UNCHANGED_TOAST) return UNCHANGED_TOAST_JSON;
  if (typeof value === 'string') return toJson(type, value);
  // Binary format ('b'): sluice never asks for it; written as base64 should a server send it.
  return JSON.stringify(value.toString('base64'));
}

/** The tail of `source` for a streamed change. */
export function streamSource(lsn: string, txid: number, commitTs: string): string {
  return `"lsn":"${lsn}","txid":${txid},"commit_ts":"${commitTs}","snapshot":false}`;
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
  value: string,
  timestamp: number | undefined,
): SourceRecord {
  const r: SourceRecord = { sourcePartition: partition, sourceOffset: offset, topicVars: shape.topicVars, key, value: Buffer.from(value), headers: shape.headers };
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

/**
 * The snapshot reader: copies tables in primary-key order, one chunk per query, inside one
 * REPEATABLE READ transaction, which imports the slot's exported snapshot on a first run.
 *
 * Tables without a primary key are read through a cursor in physical order: there is no key to
 * resume after, so an interrupted copy of such a table starts that table over.
 */
import type pg from 'pg';
import { type CatalogColumn, type TableRef, tableColumns } from './catalog.ts';
import { RAW_TEXT_TYPES, ident, literal } from './connection.ts';
import { type ShapeColumn, TableShape } from './events.ts';
import type { TypeRegistry } from './types.ts';

/** One table being copied. */
export interface TableCopy {
  readonly ref: TableRef;
  readonly shape: TableShape;
  readonly columns: readonly CatalogColumn[];
  /** The primary key's text values of the last row read, or null before the first chunk (and always for tables without a key). */
  after: string[] | null;
  /** Rows of this table copied so far, including those of earlier runs. */
  rows: number;
  /** Estimated rows (pg_class.reltuples, or count(*) for a never-analysed table). */
  readonly total: number;
  /** Tables without a primary key: whether the cursor is open. */
  cursorOpen: boolean;
}

/** Starts a REPEATABLE READ READ ONLY transaction on `client`, importing `snapshotName` when given. */
export async function beginSnapshot(client: pg.Client, snapshotName: string | null): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  if (snapshotName !== null) await client.query(`SET TRANSACTION SNAPSHOT ${literal(snapshotName)}`);
}

/** Prepares the copy of one table: its columns, types, shape and row estimate. */
export async function openTable(
  client: pg.Client,
  ref: TableRef,
  types: TypeRegistry,
  options: { database: string; prefix: string; schemaHeader: boolean },
  resume: { after: string[] | null; rows: number } | null,
): Promise<TableCopy> {
  const { columns } = await tableColumns(client, ref.oid);
  await types.resolve(columns.map((c) => c.typeOid));
  const shapeColumns: ShapeColumn[] = columns.map((c) => ({
    name: c.name,
    type: types.get(c.typeOid),
    typeName: c.typeName,
    nullable: !c.notNull,
    pkPosition: c.pkPosition,
    identity: c.identity,
  }));
  const shape = new TableShape(ref.schema, ref.table, shapeColumns, options);
  const estimate = await client.query<{ n: string }>('SELECT reltuples::int8 AS n FROM pg_catalog.pg_class WHERE oid = $1', [ref.oid]);
  let total = Number(estimate.rows[0]?.n ?? -1);
  if (total < 0) {
    // Never analysed (a table loaded moments ago): count it; reltuples would say nothing.
    const counted = await client.query<{ n: string }>(`SELECT count(*)::int8 AS n FROM ${ident(ref.schema)}.${ident(ref.table)}`);
    total = Number(counted.rows[0]?.n ?? 0);
  }
  const keyed = shape.pkIndexes.length > 0;
  return { ref, shape, columns, after: keyed ? (resume?.after ?? null) : null, rows: keyed ? (resume?.rows ?? 0) : 0, total, cursorOpen: false };
}

/** Reads the next chunk of up to `limit` rows (each an array of text values, null for NULL). */
export async function readChunk(client: pg.Client, copy: TableCopy, limit: number): Promise<Array<Array<string | null>>> {
  const table = `${ident(copy.ref.schema)}.${ident(copy.ref.table)}`;
  const list = copy.columns.map((c) => ident(c.name)).join(', ');
  const pk = copy.shape.pkIndexes;
  if (pk.length === 0) {
    const cursor = `sluice_snapshot_${copy.ref.oid}`;
    if (!copy.cursorOpen) {
      await client.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${list} FROM ${table}`);
      copy.cursorOpen = true;
    }
    const result = await client.query<Array<string | null>>({ text: `FETCH ${limit} FROM ${cursor}`, rowMode: 'array', types: RAW_TEXT_TYPES });
    if (result.rows.length < limit) {
      await client.query(`CLOSE ${cursor}`);
      copy.cursorOpen = false;
    }
    return result.rows;
  }
  const keyList = pk.map((i) => ident(copy.columns[i]!.name)).join(', ');
  let text = `SELECT ${list} FROM ${table}`;
  let values: string[] = [];
  if (copy.after !== null) {
    const params = pk.map((i, k) => `$${k + 1}::${copy.columns[i]!.typeName}`).join(', ');
    text += ` WHERE (${keyList}) > (${params})`;
    values = copy.after;
  }
  text += ` ORDER BY ${keyList} LIMIT ${limit}`;
  const result = await client.query<Array<string | null>>({ text, values, rowMode: 'array', types: RAW_TEXT_TYPES });
  return result.rows;
}

/**
 * What the connector reads from and writes to the catalog over a normal connection: table patterns,
 * the publication, column metadata, and the replication slot's state.
 */
import type pg from 'pg';
import { SluiceError } from '../../core/connector.ts';
import { ident } from './connection.ts';
import { parseLsn } from './lsn.ts';

/** Schemas never captured. */
const SYSTEM_SCHEMAS = new Set(['pg_catalog', 'information_schema', 'pg_toast']);

/** A compiled `tables` config: include and exclude `schema.table` globs. */
export class TableFilter {
  private readonly include: RegExp[];
  private readonly exclude: RegExp[];
  /** Whether include is the default `*.*`: a publication created for it is FOR ALL TABLES. */
  readonly all: boolean;

  constructor(tables: { include: readonly string[]; exclude: readonly string[] }) {
    this.include = tables.include.map(globToRegExp);
    this.exclude = tables.exclude.map(globToRegExp);
    this.all = tables.include.includes('*.*') && tables.exclude.length === 0;
  }

  matches(schema: string, table: string): boolean {
    if (SYSTEM_SCHEMAS.has(schema) || schema.startsWith('pg_temp') || schema.startsWith('pg_toast')) return false;
    const name = `${schema}.${table}`;
    return this.include.some((r) => r.test(name)) && !this.exclude.some((r) => r.test(name));
  }
}

/** `public.order_*` → /^public\.order_.*$/; the first dot separates schema and table. */
function globToRegExp(pattern: string): RegExp {
  const dot = pattern.indexOf('.');
  const part = (p: string): string => p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${part(pattern.slice(0, dot))}\\.${part(pattern.slice(dot + 1))}$`, 's');
}

/** A table to snapshot. */
export interface TableRef {
  readonly oid: number;
  readonly schema: string;
  readonly table: string;
  /** `schema.table`, as offsets and logs name it. */
  readonly id: string;
}

/** Every ordinary or partitioned table matching `filter`, ordered by name. */
export async function matchingTables(client: pg.Client, filter: TableFilter): Promise<TableRef[]> {
  const result = await client.query<{ oid: string; schema: string; table: string }>(
    `SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS table FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY n.nspname, c.relname`,
  );
  return result.rows.filter((r) => filter.matches(r.schema, r.table)).map((r) => tableRef(Number(r.oid), r.schema, r.table));
}

/** The tables of a publication that match `filter`, ordered by name: what the slot streams and the snapshot copies. */
export async function publicationTables(client: pg.Client, publication: string, filter: TableFilter): Promise<TableRef[]> {
  const result = await client.query<{ oid: string; schema: string; table: string }>(
    `SELECT c.oid::int8 AS oid, p.schemaname AS schema, p.tablename AS table FROM pg_catalog.pg_publication_tables p
       JOIN pg_catalog.pg_namespace n ON n.nspname = p.schemaname JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
      WHERE p.pubname = $1 ORDER BY p.schemaname, p.tablename`,
    [publication],
  );
  return result.rows.filter((r) => filter.matches(r.schema, r.table)).map((r) => tableRef(Number(r.oid), r.schema, r.table));
}

function tableRef(oid: number, schema: string, table: string): TableRef {
  return { oid, schema, table, id: `${schema}.${table}` };
}

/**
 * Creates the publication when it does not exist: FOR ALL TABLES for the default include pattern,
 * else FOR TABLE with the tables matching now. Returns whether it created it. Throws
 * `CONFIG_INVALID` when nothing matches or the role may not create it.
 */
export async function ensurePublication(client: pg.Client, publication: string, filter: TableFilter): Promise<{ created: boolean; tables: string[] }> {
  const exists = await client.query('SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1', [publication]);
  if (exists.rowCount !== 0) return { created: false, tables: [] };
  let sql: string;
  let tables: string[] = [];
  if (filter.all) {
    sql = `CREATE PUBLICATION ${ident(publication)} FOR ALL TABLES`;
  } else {
    const matching = await matchingTables(client, filter);
    if (matching.length === 0) {
      throw new SluiceError('CONFIG_INVALID', `tables.include matches no table, so publication ${publication} cannot be created; check the patterns (schema.table)`, {
        context: { field: 'tables', publication },
      });
    }
    tables = matching.map((t) => t.id);
    sql = `CREATE PUBLICATION ${ident(publication)} FOR TABLE ${matching.map((t) => `${ident(t.schema)}.${ident(t.table)}`).join(', ')}`;
  }
  try {
    await client.query(sql);
  } catch (err) {
    // Two connectors starting at once: the other one created it.
    if ((err as { code?: string }).code === '42710') return { created: false, tables: [] };
    throw new SluiceError('CONFIG_INVALID', `could not create publication ${publication}: ${(err as Error).message} (create it as a superuser, or grant the role CREATE on the database and ownership of the tables)`, {
      cause: err,
      context: { field: 'publication', publication },
    });
  }
  return { created: true, tables };
}

/** One column of a table as the catalog describes it. */
export interface CatalogColumn {
  readonly name: string;
  readonly typeOid: number;
  readonly typeMod: number;
  /** format_type(): `numeric(10,2)`, `character varying(40)`, `text[]`. */
  readonly typeName: string;
  readonly notNull: boolean;
  /** Position in the primary key from 1, or 0. */
  readonly pkPosition: number;
  /** Part of the replica identity: the primary key under DEFAULT, the index's columns under USING INDEX, every column under FULL. */
  readonly identity: boolean;
}

/** A table's columns in attribute order, without dropped and generated columns (pgoutput sends neither), and its replica identity. */
export async function tableColumns(client: pg.Client, oid: number): Promise<{ columns: CatalogColumn[]; replicaIdentity: string }> {
  const result = await client.query<{
    name: string;
    type_oid: string;
    type_mod: number;
    type_name: string;
    not_null: boolean;
    pk_position: number;
    identity: boolean;
    replident: string;
  }>(
    `SELECT a.attname AS name, a.atttypid::int8 AS type_oid, a.atttypmod AS type_mod, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type_name,
            a.attnotnull AS not_null, coalesce((SELECT k.n FROM unnest(i.indkey) WITH ORDINALITY AS k(att, n) WHERE k.att = a.attnum), 0)::int4 AS pk_position, c.relreplident::text AS replident,
            CASE c.relreplident WHEN 'f' THEN true
                                WHEN 'd' THEN coalesce(a.attnum = ANY(i.indkey), false)
                                WHEN 'i' THEN coalesce(a.attnum = ANY(ri.indkey), false)
                                ELSE false END AS identity
       FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
       LEFT JOIN pg_catalog.pg_index ri ON ri.indrelid = a.attrelid AND ri.indisreplident
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      ORDER BY a.attnum`,
    [oid],
  );
  return {
    columns: result.rows.map((r) => ({ name: r.name, typeOid: Number(r.type_oid), typeMod: r.type_mod, typeName: r.type_name, notNull: r.not_null, pkPosition: r.pk_position, identity: r.identity })),
    replicaIdentity: result.rows[0]?.replident ?? 'd',
  };
}

/** Column metadata for a Relation message: type names for its exact (oid, typmod) pairs, nullability and primary key from the catalog now. */
export async function relationMetadata(
  client: pg.Client,
  relationId: number,
  columns: ReadonlyArray<{ name: string; typeOid: number; typeMod: number }>,
): Promise<Array<{ typeName: string; notNull: boolean; pkPosition: number }>> {
  const result = await client.query<{ ord: string; type_name: string; not_null: boolean | null; pk_position: number | null }>(
    `SELECT u.ord::int8 AS ord, pg_catalog.format_type(u.t, u.m) AS type_name, a.attnotnull AS not_null,
            coalesce((SELECT k.n FROM unnest(i.indkey) WITH ORDINALITY AS k(att, n) WHERE k.att = a.attnum), 0)::int4 AS pk_position
       FROM unnest($2::text[], $3::oid[], $4::int4[]) WITH ORDINALITY AS u(name, t, m, ord)
       LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = $1 AND a.attname = u.name AND NOT a.attisdropped
       LEFT JOIN pg_catalog.pg_index i ON i.indrelid = $1 AND i.indisprimary
      ORDER BY u.ord`,
    [relationId, columns.map((c) => c.name), columns.map((c) => c.typeOid), columns.map((c) => c.typeMod)],
  );
  return result.rows.map((r) => ({ typeName: r.type_name, notNull: r.not_null ?? false, pkPosition: r.pk_position ?? 0 }));
}

/** A replication slot as pg_replication_slots shows it. */
export interface SlotState {
  readonly plugin: string | null;
  readonly database: string | null;
  readonly slotType: string;
  readonly active: boolean;
  readonly activePid: number | null;
  readonly confirmedFlush: bigint | null;
  /** reserved, extended, unreserved or lost. */
  readonly walStatus: string | null;
  /** WAL the slot holds back: current WAL position − restart_lsn. */
  readonly retainedBytes: number | null;
  /** current WAL position − confirmed_flush_lsn. */
  readonly lagBytes: number | null;
}

/** The slot's state, or null when it does not exist. */
export async function slotState(client: pg.Client, slot: string): Promise<SlotState | null> {
  const result = await client.query<{
    plugin: string | null;
    database: string | null;
    slot_type: string;
    active: boolean;
    active_pid: number | null;
    confirmed_flush_lsn: string | null;
    wal_status: string | null;
    retained: string | null;
    lag: string | null;
  }>(
    `SELECT plugin, database, slot_type, active, active_pid, confirmed_flush_lsn::text, wal_status,
            pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::int8 AS retained,
            pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn)::int8 AS lag
       FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const r = result.rows[0];
  if (!r) return null;
  return {
    plugin: r.plugin,
    database: r.database,
    slotType: r.slot_type,
    active: r.active,
    activePid: r.active_pid,
    confirmedFlush: r.confirmed_flush_lsn ? parseLsn(r.confirmed_flush_lsn) : null,
    walStatus: r.wal_status,
    retainedBytes: r.retained === null ? null : Number(r.retained),
    lagBytes: r.lag === null ? null : Number(r.lag),
  };
}

/** Drops a slot through SQL, waiting up to `timeoutMs` for a walsender that still holds it to let go. Returns whether it existed. */
export async function dropSlot(client: pg.Client, slot: string, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const result = await client.query('SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1', [slot]);
      return (result.rowCount ?? 0) > 0;
    } catch (err) {
      // 55006: active for another PID, e.g. the walsender of a process that was just killed.
      if ((err as { code?: string }).code !== '55006' || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * Tables of `tables` that Postgres cannot replicate updates and deletes of: no primary key and
 * REPLICA IDENTITY DEFAULT, or REPLICA IDENTITY NOTHING. Once such a table is in a publication that
 * publishes updates, Postgres rejects UPDATE and DELETE on it.
 */
export async function tablesWithoutIdentity(client: pg.Client, tables: readonly TableRef[]): Promise<string[]> {
  if (tables.length === 0) return [];
  const result = await client.query<{ oid: string }>(
    `SELECT c.oid::int8 AS oid FROM pg_catalog.pg_class c
      WHERE c.oid = ANY($1::oid[]) AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))`,
    [tables.map((t) => t.oid)],
  );
  const oids = new Set(result.rows.map((r) => Number(r.oid)));
  return tables.filter((t) => oids.has(t.oid)).map((t) => t.id);
}

/**
 * The Postgres dialect of the SQL sink: `pg` connections, double-quoted identifiers, upserts as
 * `INSERT ... ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c`, and COPY into a temporary table
 * followed by one `INSERT ... SELECT` for large batches.
 */
import pg from 'pg';
import { chunks, offsetRowKey, trimMessage, type ClassifiedError, type StoredOffset, type ColumnDefinition, type ConnectOptions, type OffsetKey, type Session, type SqlDialect, type Statements, type TargetColumn, type TargetTable } from '../sql-sink/dialect.ts';
import { NETWORK_ERROR_CODES, errorCode, errorText } from '../sql-sink/errors.ts';
import type { IdentifierRules } from '../sql-sink/names.ts';
import { compatible, parsePgType, pgFamily, pgTargetType, type Family, type PgType } from '../sql-sink/type-mapping.ts';
import { paramRows, type Param, type RowSet } from '../sql-sink/values.ts';
import { copyFrom, encodeCopyRowSet } from './copy.ts';
import type { PostgresSinkConfig } from './schema.ts';

/** Postgres truncates longer names silently (NAMEDATALEN - 1 bytes), so the sink refuses them. */
const IDENTIFIERS: IdentifierRules = { engine: 'Postgres', maxLength: 63, measure: 'bytes', mysql: false };

/** At most this many parameters in one statement: the protocol's limit is 65535. */
const MAX_PARAMS = 65535;
/** The SQLSTATE of a unique violation. */
const UNIQUE_VIOLATION = '23505';
/** The most large upserts of a table that skip the COPY-only attempt after it failed. */
const MAX_COPY_PENALTY = 64;
/** About this many bytes (characters, for ASCII) of COPY data per COPY statement. */
const COPY_CHUNK_BYTES = 16 << 20;
const PG_VALUES = { engine: 'postgres' } as const;

/** A double-quoted identifier, with `"` doubled: safe for any name without NUL (checked earlier). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** One `pg` connection with what the sink keeps per connection. */
export class PgSession implements Session {
  readonly id: string;
  healthy = true;
  /** Temporary staging tables this connection created, by target table and column list. */
  readonly stages = new Map<string, string>();
  /** Stages used in the current transaction; their rows vanish at commit (ON COMMIT DELETE ROWS). */
  readonly stagesInUse = new Set<string>();
  /** Keys of {@link stages} created in the current transaction: a rollback drops those tables again. */
  readonly stagesCreated = new Set<string>();

  constructor(readonly client: pg.Client) {
    this.id = `pid ${(client as unknown as { processID?: number }).processID ?? '?'}`;
  }
}

/** Connection settings of a config, for `pg.Client`. */
export function clientConfig(config: PostgresSinkConfig, connectTimeoutMs: number, applicationName = 'sluice'): pg.ClientConfig {
  const base: pg.ClientConfig = {
    connectionTimeoutMillis: connectTimeoutMs,
    // Postgres keeps 63 bytes of it.
    application_name: applicationName.slice(0, 63),
    // UTC so that a timestamp without offset is never read in the server's local zone.
    options: '-c TimeZone=UTC -c lock_timeout=60s',
    keepAlive: true,
  };
  if (config.url !== undefined) return { ...base, connectionString: config.url };
  return {
    ...base,
    host: config.host,
    port: config.port ?? 5432,
    user: config.user ?? 'postgres',
    ...(config.password !== undefined ? { password: config.password } : {}),
    database: config.database,
    ...(config.ssl === 'require' ? { ssl: { rejectUnauthorized: false } } : config.ssl === 'verify-full' ? { ssl: { rejectUnauthorized: true } } : {}),
  };
}

/** SQLSTATE classes and codes that a retry can get past. */
const RETRIABLE_CLASSES = new Set(['08', '53', '57', '40', '58']);
const RETRIABLE_CODES = new Set(['55P03', '55006', '25P03']);
const CONFIG_CODES = new Set(['3D000', '3F000', '42501', '42P10', '25006', '0A000']);
const SCHEMA_CODES = new Set(['42P01', '42703']);

/** The Postgres dialect for one config. */
export class PostgresDialect implements SqlDialect<PgSession> {
  readonly engine = 'postgres' as const;
  readonly label = 'Postgres';
  readonly identifiers = IDENTIFIERS;
  readonly #config: PostgresSinkConfig;
  readonly #schema: string;
  /** Per table: how many large upserts still skip the COPY-only attempt, and the next pause after a failed one. */
  readonly #optimism = new Map<string, { skip: number; penalty: number }>();

  constructor(config: PostgresSinkConfig) {
    this.#config = config;
    this.#schema = config.target_schema;
  }

  #table(name: string): string {
    return `${quoteIdent(this.#schema)}.${quoteIdent(name)}`;
  }

  async connect(options: ConnectOptions): Promise<PgSession> {
    const client = new pg.Client(clientConfig(this.#config, options.connectTimeoutMs, options.applicationName));
    let session: PgSession | undefined;
    // An idle connection the server drops emits 'error'; without a listener that would crash the process.
    client.on('error', (err) => {
      if (session) session.healthy = false;
      options.logger.debug({ err: { message: errorText(err), code: errorCode(err) } }, 'connection lost');
    });
    try {
      await client.connect();
    } catch (err) {
      client.end().catch(() => {});
      throw err;
    }
    session = new PgSession(client);
    return session;
  }

  async close(session: PgSession): Promise<void> {
    session.healthy = false;
    await session.client.end();
  }

  destroy(session: PgSession): void {
    session.healthy = false;
    // end() waits for the server; a dead or busy connection is cut at the socket.
    const connection = (session.client as unknown as { connection?: { stream?: { destroy(): void } } }).connection;
    connection?.stream?.destroy();
    session.client.end().catch(() => {});
  }

  classify(err: unknown): ClassifiedError {
    const code = errorCode(err);
    const e = err as { message?: string; detail?: string; table?: string; column?: string };
    const detail = typeof e.detail === 'string' && e.detail !== '' ? ` (${e.detail})` : '';
    const message = trimMessage(`${e.message ?? String(err)}${detail}`);
    if (code !== undefined && NETWORK_ERROR_CODES.has(code)) return { kind: 'retriable', message, code };
    if (code === undefined || !/^[0-9A-Z]{5}$/.test(code)) {
      // pg's own errors for a dead connection carry no SQLSTATE.
      if (/terminated|not queryable|Connection ended|timeout|ECONN|socket|closed/i.test(message)) return { kind: 'retriable', message, code };
      return { kind: 'record', message, code };
    }
    if (RETRIABLE_CLASSES.has(code.slice(0, 2)) || RETRIABLE_CODES.has(code)) return { kind: 'retriable', message, code };
    if (code.startsWith('28') || CONFIG_CODES.has(code)) return { kind: 'config', message, code };
    if (SCHEMA_CODES.has(code)) return { kind: 'schema', message, code };
    return { kind: 'record', message, code };
  }

  async describe(session: PgSession, table: string): Promise<TargetTable | undefined> {
    const columns = await session.client.query<{ name: string; type: string }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`,
      [this.#schema, table],
    );
    if (columns.rows.length === 0) return undefined;
    const keys = await session.client.query<{ cols: string[] }>(
      `SELECT array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[] AS cols
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
        ORDER BY i.indisprimary DESC`,
      [this.#schema, table],
    );
    const map = new Map<string, TargetColumn>();
    for (const row of columns.rows) map.set(row.name, { name: row.name, family: pgFamily(parsePgType(row.type)), typeText: row.type });
    return { name: table, columns: map, uniqueKeys: keys.rows.map((r) => r.cols) };
  }

  targetType(type: PgType): string {
    return pgTargetType(type);
  }

  targetFamily(type: PgType): Family {
    return pgFamily(type);
  }

  accepts(target: TargetColumn, source: Family): boolean {
    return compatible(target.family, source);
  }

  async createTable(session: PgSession, table: string, columns: readonly ColumnDefinition[], key: readonly string[]): Promise<void> {
    const defs = columns.map((c) => `${quoteIdent(c.name)} ${c.type}${c.nullable ? '' : ' NOT NULL'}`);
    if (key.length > 0) defs.push(`PRIMARY KEY (${key.map(quoteIdent).join(', ')})`);
    await this.#ddl(session, `CREATE TABLE IF NOT EXISTS ${this.#table(table)} (${defs.join(', ')})`);
  }

  async addColumn(session: PgSession, table: string, column: ColumnDefinition): Promise<void> {
    await this.#ddl(session, `ALTER TABLE ${this.#table(table)} ADD COLUMN IF NOT EXISTS ${quoteIdent(column.name)} ${column.type}`);
  }

  /** Runs DDL; two sessions creating the same object at once is not an error. */
  async #ddl(session: PgSession, sql: string): Promise<void> {
    try {
      await session.client.query(sql);
    } catch (err) {
      // CREATE ... IF NOT EXISTS racing another session fails on the catalog's unique index.
      const code = errorCode(err);
      if (code === '23505' || code === '42P07' || code === '42701') return;
      throw err;
    }
  }

  async ensureOffsetsTable(session: PgSession, table: string): Promise<void> {
    await this.#ddl(
      session,
      `CREATE TABLE IF NOT EXISTS ${this.#table(table)} (
         pipeline text NOT NULL, connector text NOT NULL, topic text NOT NULL, "partition" integer NOT NULL,
         next_offset bigint NOT NULL, kept_row text, updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (pipeline, connector, topic, "partition"))`,
    );
  }

  async readOffsets(session: PgSession, table: string, keys: readonly OffsetKey[]): Promise<Map<string, bigint>> {
    const out = new Map<string, bigint>();
    if (keys.length === 0) return out;
    const res = await session.client.query<{ topic: string; partition: number; next_offset: string }>(
      `SELECT topic, "partition", next_offset FROM ${this.#table(table)} WHERE pipeline = $1 AND connector = $2 AND topic = ANY($3::text[])`,
      [keys[0]!.pipeline, keys[0]!.connector, [...new Set(keys.map((k) => k.topic))]],
    );
    const wanted = new Set(keys.map((k) => offsetRowKey(k.topic, k.partition)));
    for (const row of res.rows) {
      const k = offsetRowKey(row.topic, row.partition);
      if (wanted.has(k)) out.set(k, BigInt(row.next_offset));
    }
    return out;
  }

  async begin(session: PgSession): Promise<void> {
    session.stagesInUse.clear();
    session.stagesCreated.clear();
    await session.client.query('BEGIN');
  }

  async commit(session: PgSession): Promise<void> {
    await session.client.query('COMMIT');
    session.stagesCreated.clear();
  }

  async rollback(session: PgSession): Promise<void> {
    // Before the statement: whatever it answers, the transaction is over for the server.
    for (const key of session.stagesCreated) session.stages.delete(key);
    session.stagesCreated.clear();
    await session.client.query('ROLLBACK');
  }

  async lockOffset(session: PgSession, table: string, key: OffsetKey): Promise<StoredOffset> {
    const res = await session.client.query<{ next_offset: string; kept_row: string | null }>(
      `INSERT INTO ${this.#table(table)} AS o (pipeline, connector, topic, "partition", next_offset) VALUES ($1, $2, $3, $4, 0)
       ON CONFLICT (pipeline, connector, topic, "partition") DO UPDATE SET next_offset = o.next_offset
       RETURNING next_offset, kept_row`,
      [key.pipeline, key.connector, key.topic, key.partition],
    );
    return { next: BigInt(res.rows[0]!.next_offset), kept: res.rows[0]!.kept_row };
  }

  async advanceOffset(session: PgSession, table: string, key: OffsetKey, expected: bigint, next: bigint, kept: string | null): Promise<boolean> {
    const res = await session.client.query(
      `UPDATE ${this.#table(table)} SET next_offset = $5, kept_row = $7, updated_at = now()
        WHERE pipeline = $1 AND connector = $2 AND topic = $3 AND "partition" = $4 AND next_offset = $6`,
      [key.pipeline, key.connector, key.topic, key.partition, next.toString(), expected.toString(), kept],
    );
    return res.rowCount === 1;
  }

  async readRow(session: PgSession, table: string, keyColumns: readonly string[], key: readonly Param[], columns: readonly string[]): Promise<Record<string, Param> | undefined> {
    // As text: Postgres reads its own text output back as the same value, whatever the type.
    const list = columns.map((c) => `${quoteIdent(c)}::text AS ${quoteIdent(c)}`).join(', ');
    const where = keyColumns.map((c, i) => `${quoteIdent(c)} = $${i + 1}`).join(' AND ');
    const res = await session.client.query<Record<string, string | null>>(`SELECT ${list} FROM ${this.#table(table)} WHERE ${where}`, [...key]);
    return res.rows[0];
  }

  async truncate(session: PgSession, table: string): Promise<void> {
    await session.client.query(`TRUNCATE ${this.#table(table)}`);
  }

  async deleteRows(session: PgSession, table: string, keyColumns: readonly string[], keys: readonly Param[][], batchRows: number): Promise<void> {
    const target = this.#table(table);
    if (keyColumns.length === 1) {
      // One array parameter whatever the count; its element type is inferred from the column.
      for (const chunk of chunks(keys, batchRows * 10, 64 << 20)) {
        await session.client.query(`DELETE FROM ${target} WHERE ${quoteIdent(keyColumns[0]!)} = ANY($1)`, [chunk.map((k) => k[0]!)]);
      }
      return;
    }
    const width = keyColumns.length;
    const cols = `(${keyColumns.map(quoteIdent).join(', ')})`;
    for (const chunk of chunks(keys, Math.min(batchRows, Math.floor(MAX_PARAMS / width)), 64 << 20)) {
      await session.client.query(`DELETE FROM ${target} WHERE ${cols} IN (${placeholders(chunk.length, width)})`, chunk.flat());
    }
  }

  upsertRows(table: string, keyColumns: readonly string[], rows: RowSet, batchRows: number): Statements<PgSession> {
    const { columns } = rows;
    const keys = new Set(keyColumns);
    const updates = columns.filter((c) => !keys.has(c));
    const conflict = `ON CONFLICT (${keyColumns.map(quoteIdent).join(', ')}) ${
      updates.length === 0 ? 'DO NOTHING' : `DO UPDATE SET ${updates.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ')}`
    }`;
    if (this.#useCopy(rows.rows.length)) {
      const data = encodeCopyRowSet(rows, COPY_CHUNK_BYTES);
      return async (session) => {
        if (await this.#copyNewRows(session, table, columns, data)) return;
        const stage = await this.#stage(session, table, columns, data);
        const list = columns.map(quoteIdent).join(', ');
        await session.client.query(`INSERT INTO ${this.#table(table)} (${list}) SELECT ${list} FROM ${quoteIdent(stage)} ${conflict}`);
      };
    }
    const params = paramRows(rows, PG_VALUES);
    return (session) => this.#insertValues(session, table, columns, params, batchRows, ` ${conflict}`);
  }

  insertRows(table: string, rows: RowSet, batchRows: number): Statements<PgSession> {
    const { columns } = rows;
    if (this.#useCopy(rows.rows.length)) {
      const data = encodeCopyRowSet(rows, COPY_CHUNK_BYTES);
      return (session) => this.#copy(session, `COPY ${this.#table(table)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`, data);
    }
    const params = paramRows(rows, PG_VALUES);
    return (session) => this.#insertValues(session, table, columns, params, batchRows, '');
  }

  /**
   * Tries the cheapest upsert there is: a COPY straight into the table, which only works when none
   * of the keys exist yet (a snapshot, an append-mostly table). COPY writes rows in bulk, at about
   * half the database's CPU of an INSERT ... ON CONFLICT. A key that exists makes it fail with a
   * unique violation; the savepoint undoes it and the caller upserts as usual, so the outcome is
   * the same either way. After such a failure the table is not tried again for a while, doubling
   * each time, so a workload of updates pays little for it. Resolves true when the rows are in.
   */
  async #copyNewRows(session: PgSession, table: string, columns: readonly string[], data: readonly Buffer[]): Promise<boolean> {
    const odds = this.#optimism.get(table) ?? { skip: 0, penalty: 0 };
    if (odds.skip > 0) {
      odds.skip--;
      this.#optimism.set(table, odds);
      return false;
    }
    const sql = `COPY ${this.#table(table)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`;
    await session.client.query('SAVEPOINT sluice_copy');
    try {
      for (const chunk of data) await copyFrom(session.client, sql, chunk);
    } catch (err) {
      if (errorCode(err) !== UNIQUE_VIOLATION) throw err;
      await session.client.query('ROLLBACK TO SAVEPOINT sluice_copy; RELEASE SAVEPOINT sluice_copy');
      const penalty = Math.min(MAX_COPY_PENALTY, Math.max(1, odds.penalty * 2));
      this.#optimism.set(table, { skip: penalty, penalty });
      return false;
    }
    await session.client.query('RELEASE SAVEPOINT sluice_copy');
    this.#optimism.set(table, { skip: 0, penalty: 0 });
    return true;
  }

  #useCopy(rows: number): boolean {
    return this.#config.copy_threshold > 0 && rows >= this.#config.copy_threshold;
  }

  async #insertValues(session: PgSession, table: string, columns: readonly string[], rows: readonly Param[][], batchRows: number, suffix: string): Promise<void> {
    const head = `INSERT INTO ${this.#table(table)} (${columns.map(quoteIdent).join(', ')}) VALUES `;
    const width = columns.length;
    for (const chunk of chunks(rows, Math.min(batchRows, Math.floor(MAX_PARAMS / width)), 64 << 20)) {
      await session.client.query(`${head}${placeholders(chunk.length, width)}${suffix}`, chunk.flat());
    }
  }

  /**
   * A temporary table with the target's column types (not its constraints: the merge checks
   * those), created once per connection and column list, filled by COPY; it empties at commit.
   */
  async #stage(session: PgSession, table: string, columns: readonly string[], data: readonly Buffer[]): Promise<string> {
    const key = `${table}\u0000${columns.join('\u0000')}`;
    let stage = session.stages.get(key);
    if (!stage) {
      stage = `sluice_stage_${session.stages.size + 1}`;
      await session.client.query(
        `CREATE TEMP TABLE IF NOT EXISTS ${quoteIdent(stage)} ON COMMIT DELETE ROWS AS SELECT ${columns.map(quoteIdent).join(', ')} FROM ${this.#table(table)} WITH NO DATA`,
      );
      session.stages.set(key, stage);
      session.stagesCreated.add(key);
    } else if (session.stagesInUse.has(stage)) {
      await session.client.query(`DELETE FROM ${quoteIdent(stage)}`);
    }
    session.stagesInUse.add(stage);
    await this.#copy(session, `COPY ${quoteIdent(stage)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`, data);
    return stage;
  }

  async #copy(session: PgSession, sql: string, data: readonly Buffer[]): Promise<void> {
    for (const chunk of data) await copyFrom(session.client, sql, chunk);
  }
}

/** `($1, $2), ($3, $4)` for `rows` rows of `width` parameters. */
function placeholders(rows: number, width: number): string {
  const out: string[] = new Array(rows);
  let n = 1;
  for (let r = 0; r < rows; r++) {
    let group = '(';
    for (let c = 0; c < width; c++) group += c === 0 ? `$${n++}` : `, $${n++}`;
    out[r] = `${group})`;
  }
  return out.join(', ');
}

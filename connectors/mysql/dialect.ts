/**
 * The MySQL/MariaDB dialect of the SQL sink: mysql2 connections with server-side prepared
 * statements, backtick-quoted identifiers, upserts as `INSERT ... ON DUPLICATE KEY UPDATE
 * c = VALUES(c)` (MariaDB rejects MySQL 8's `AS new` alias), and truncation as `DELETE FROM`,
 * because TRUNCATE would commit the open transaction.
 */
import mysql from 'mysql2/promise';
import { chunks, offsetRowKey, trimMessage, type ClassifiedError, type StoredOffset, type ColumnDefinition, type ConnectOptions, type OffsetKey, type Session, type SqlDialect, type Statements, type TargetColumn, type TargetTable } from '../sql-sink/dialect.ts';
import { NETWORK_ERROR_CODES, errorCode } from '../sql-sink/errors.ts';
import type { IdentifierRules } from '../sql-sink/names.ts';
import { compatible, mysqlColumnFamily, mysqlFamilyOf, mysqlTargetType, type Family, type PgType } from '../sql-sink/type-mapping.ts';
import { toParam, type Param, type RowSet } from '../sql-sink/values.ts';
import type { MysqlSinkConfig } from './schema.ts';

/** MySQL and MariaDB allow 64 characters per identifier. */
const IDENTIFIERS: IdentifierRules = { engine: 'MySQL', maxLength: 64, measure: 'chars', mysql: true };

/** Placeholders in one prepared statement: the protocol counts them in 16 bits. */
const MAX_PARAMS = 65535;
/** Parameter bytes per statement, well under the default 16 MiB max_allowed_packet. */
const MAX_STATEMENT_BYTES = 4 << 20;
const MYSQL_VALUES = { engine: 'mysql' } as const;

/**
 * Strict modes, so a bad value is an error and never a silently truncated or zeroed one; and
 * without NO_BACKSLASH_ESCAPES or ANSI_QUOTES, whatever the server's default.
 */
const SQL_MODE = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION';

/** A backtick-quoted identifier, with backticks doubled. */
export function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

/** One mysql2 connection. */
export class MysqlSession implements Session {
  readonly id: string;
  healthy = true;

  constructor(readonly connection: mysql.Connection) {
    this.id = `connection ${connection.threadId ?? '?'}`;
  }
}

/** What a config says about connecting, for mysql2. */
export function connectionOptions(config: MysqlSinkConfig, connectTimeoutMs: number): mysql.ConnectionOptions {
  const base: mysql.ConnectionOptions = {
    connectTimeout: connectTimeoutMs,
    charset: 'utf8mb4',
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
    timezone: 'Z',
    multipleStatements: false,
    // Prepared statements are cached per connection; the server caps them for all connections together.
    maxPreparedStatements: 128,
    enableKeepAlive: true,
  };
  const ssl = config.ssl === 'require' ? { ssl: { rejectUnauthorized: false } } : config.ssl === 'verify-full' ? { ssl: { rejectUnauthorized: true } } : {};
  if (config.url !== undefined) return { ...base, ...ssl, uri: config.url };
  return {
    ...base,
    ...ssl,
    host: config.host,
    port: config.port ?? 3306,
    user: config.user ?? 'root',
    ...(config.password !== undefined ? { password: config.password } : {}),
    database: config.database,
  };
}

const RETRIABLE_ERRNOS = new Set([1040, 1053, 1152, 1158, 1159, 1160, 1161, 1180, 1181, 1184, 1203, 1205, 1213, 1226, 1290, 1317, 1836, 1927, 2002, 2003, 2006, 2013, 2055, 3024, 4031]);
const CONFIG_ERRNOS = new Set([1044, 1045, 1046, 1049, 1142, 1143, 1227, 1251, 1524, 1698, 2059]);
const SCHEMA_ERRNOS = new Set([1054, 1146]);
const RETRIABLE_DRIVER_CODES = new Set(['PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_CONNECTION_KILLED', 'PROTOCOL_PACKETS_OUT_OF_ORDER']);

/** The MySQL dialect for one config. */
export class MysqlDialect implements SqlDialect<MysqlSession> {
  readonly engine = 'mysql' as const;
  readonly identifiers = IDENTIFIERS;
  readonly #config: MysqlSinkConfig;
  /** MariaDB or MySQL, known after the first connection. */
  #mariadb: boolean | undefined;
  /** Statement texts by shape, so the long ones are not rebuilt for every chunk. */
  readonly #statements = new Map<string, string>();

  constructor(config: MysqlSinkConfig) {
    this.#config = config;
  }

  get label(): string {
    return this.#mariadb === undefined ? 'MySQL' : this.#mariadb ? 'MariaDB' : 'MySQL';
  }

  /** A binary collation without pad semantics: 'a' and 'a ' and 'A' stay three keys, as in Postgres. */
  get #collation(): string {
    return this.#mariadb === false ? 'utf8mb4_0900_bin' : 'utf8mb4_nopad_bin';
  }

  async connect(options: ConnectOptions): Promise<MysqlSession> {
    const connection = await mysql.createConnection(connectionOptions(this.#config, options.connectTimeoutMs));
    const session = new MysqlSession(connection);
    // A connection the server drops while idle emits 'error'; without a listener it would crash the process.
    connection.on('error', (err: unknown) => {
      session.healthy = false;
      options.logger.debug({ err: { message: trimMessage(String((err as Error)?.message ?? err)), code: errorCode(err) } }, 'connection lost');
    });
    try {
      if (this.#mariadb === undefined) {
        const [rows] = await connection.query<mysql.RowDataPacket[]>('SELECT VERSION() AS version');
        this.#mariadb = /mariadb/i.test(String(rows[0]?.['version'] ?? ''));
      }
      // autocommit off: a transaction starts with its first statement, which saves a round trip per batch.
      await connection.query(`SET SESSION sql_mode = '${SQL_MODE}', time_zone = '+00:00', autocommit = 0`);
      // Fewer gap locks than REPEATABLE READ, so partitions written in parallel rarely deadlock.
      await connection.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
    } catch (err) {
      connection.destroy();
      throw err;
    }
    return session;
  }

  async close(session: MysqlSession): Promise<void> {
    session.healthy = false;
    await session.connection.end();
  }

  destroy(session: MysqlSession): void {
    session.healthy = false;
    session.connection.destroy();
  }

  classify(err: unknown): ClassifiedError {
    const e = err as { errno?: unknown; code?: unknown; sqlMessage?: unknown; message?: unknown };
    const errno = typeof e.errno === 'number' ? e.errno : undefined;
    const code = typeof e.code === 'string' ? e.code : undefined;
    const raw = typeof e.sqlMessage === 'string' ? e.sqlMessage : typeof e.message === 'string' ? e.message : String(err);
    // mysql2 puts the whole statement on the error as `sql`; only the message, trimmed, goes on.
    const message = trimMessage(raw);
    const label = errno !== undefined ? String(errno) : code;
    if ((code !== undefined && (NETWORK_ERROR_CODES.has(code) || RETRIABLE_DRIVER_CODES.has(code))) || (errno !== undefined && RETRIABLE_ERRNOS.has(errno))) {
      return { kind: 'retriable', message, code: label };
    }
    if (errno !== undefined && CONFIG_ERRNOS.has(errno)) return { kind: 'config', message, code: label };
    if (errno !== undefined && SCHEMA_ERRNOS.has(errno)) return { kind: 'schema', message, code: label };
    if (errno === undefined && /closed state|connection lost|not connected|socket|timeout|ECONN/i.test(message)) return { kind: 'retriable', message, code: label };
    return { kind: 'record', message, code: label };
  }

  async describe(session: MysqlSession, table: string): Promise<TargetTable | undefined> {
    const c = session.connection;
    // information_schema compares names case-insensitively; tables differing in case are told apart here.
    const [columns] = await c.execute<mysql.RowDataPacket[]>(
      'SELECT TABLE_NAME AS t, COLUMN_NAME AS name, COLUMN_TYPE AS type FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
      [table],
    );
    const own = columns.filter((r) => r['t'] === table);
    if (own.length === 0) return undefined;
    let json = new Set<string>();
    if (this.#mariadb) {
      // MariaDB's JSON is LONGTEXT with a json_valid() check; the check is how a JSON column is recognised.
      const [checks] = await c.execute<mysql.RowDataPacket[]>(
        'SELECT TABLE_NAME AS t, CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = ?',
        [table],
      );
      json = new Set(
        checks
          .filter((r) => r['t'] === table)
          .flatMap((r) => {
            const m = /^json_valid\(`((?:[^`]|``)+)`\)$/i.exec(String(r['clause']).trim());
            return m ? [m[1]!.replace(/``/g, '`')] : [];
          }),
      );
    }
    const [stats] = await c.execute<mysql.RowDataPacket[]>(
      'SELECT TABLE_NAME AS t, INDEX_NAME AS idx, COLUMN_NAME AS col FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX',
      [table],
    );
    const keys = new Map<string, string[]>();
    for (const r of stats) {
      if (r['t'] !== table) continue;
      const idx = String(r['idx']);
      let list = keys.get(idx);
      if (!list) keys.set(idx, (list = []));
      list.push(String(r['col']));
    }
    const map = new Map<string, TargetColumn>();
    for (const r of own) {
      const name = String(r['name']);
      const type = String(r['type']);
      map.set(name, { name, family: mysqlColumnFamily(type, json.has(name)), typeText: json.has(name) ? 'json' : type });
    }
    return { name: table, columns: map, uniqueKeys: [...keys.values()] };
  }

  targetType(type: PgType, isKey: boolean): string {
    return mysqlTargetType(type, isKey);
  }

  targetFamily(type: PgType, isKey: boolean): Family {
    return mysqlFamilyOf(type, isKey);
  }

  accepts(target: TargetColumn, source: Family): boolean {
    return compatible(target.family, source, { mysqlDatetime: true });
  }

  async createTable(session: MysqlSession, table: string, columns: readonly ColumnDefinition[], key: readonly string[]): Promise<void> {
    const defs = columns.map((c) => `${quoteIdent(c.name)} ${c.type} ${c.nullable ? 'NULL' : 'NOT NULL'}`);
    if (key.length > 0) defs.push(`PRIMARY KEY (${key.map(quoteIdent).join(', ')})`);
    await session.connection.query(`CREATE TABLE IF NOT EXISTS ${quoteIdent(table)} (${defs.join(', ')}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=${this.#collation}`);
  }

  async addColumn(session: MysqlSession, table: string, column: ColumnDefinition): Promise<void> {
    const ifNotExists = this.#mariadb ? 'IF NOT EXISTS ' : '';
    try {
      await session.connection.query(`ALTER TABLE ${quoteIdent(table)} ADD COLUMN ${ifNotExists}${quoteIdent(column.name)} ${column.type} NULL`);
    } catch (err) {
      // MySQL 8 has no IF NOT EXISTS here: a column another task added meanwhile is fine.
      if ((err as { errno?: unknown }).errno === 1060) return;
      throw err;
    }
  }

  async ensureOffsetsTable(session: MysqlSession, table: string): Promise<void> {
    await session.connection.query(
      `CREATE TABLE IF NOT EXISTS ${quoteIdent(table)} (
         pipeline VARCHAR(128) NOT NULL, connector VARCHAR(128) NOT NULL, topic VARCHAR(255) NOT NULL, \`partition\` INT NOT NULL,
         next_offset BIGINT NOT NULL, kept_row LONGTEXT NULL, updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
         PRIMARY KEY (pipeline, connector, topic, \`partition\`)
       ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
    );
  }

  async readOffsets(session: MysqlSession, table: string, keys: readonly OffsetKey[]): Promise<Map<string, bigint>> {
    const out = new Map<string, bigint>();
    if (keys.length === 0) return out;
    const [rows] = await session.connection.execute<mysql.RowDataPacket[]>(
      `SELECT topic, \`partition\` AS p, next_offset AS n FROM ${quoteIdent(table)} WHERE pipeline = ? AND connector = ?`,
      [keys[0]!.pipeline, keys[0]!.connector],
    );
    await session.connection.query('COMMIT');
    const wanted = new Set(keys.map((k) => offsetRowKey(k.topic, k.partition)));
    for (const r of rows) {
      const k = offsetRowKey(String(r['topic']), Number(r['p']));
      if (wanted.has(k)) out.set(k, BigInt(String(r['n'])));
    }
    return out;
  }

  async commit(session: MysqlSession): Promise<void> {
    await session.connection.query('COMMIT');
  }

  async rollback(session: MysqlSession): Promise<void> {
    await session.connection.query('ROLLBACK');
  }

  async lockOffset(session: MysqlSession, table: string, key: OffsetKey): Promise<StoredOffset> {
    const t = quoteIdent(table);
    const params = [key.pipeline, key.connector, key.topic, key.partition];
    await session.connection.execute(`INSERT INTO ${t} (pipeline, connector, topic, \`partition\`, next_offset) VALUES (?, ?, ?, ?, 0) ON DUPLICATE KEY UPDATE next_offset = next_offset`, params);
    const [rows] = await session.connection.execute<mysql.RowDataPacket[]>(
      `SELECT next_offset AS n, kept_row AS k FROM ${t} WHERE pipeline = ? AND connector = ? AND topic = ? AND \`partition\` = ? FOR UPDATE`,
      params,
    );
    const kept = rows[0]!['k'];
    return { next: BigInt(String(rows[0]!['n'])), kept: kept === null || kept === undefined ? null : String(kept) };
  }

  async advanceOffset(session: MysqlSession, table: string, key: OffsetKey, expected: bigint, next: bigint, kept: string | null): Promise<boolean> {
    const [result] = await session.connection.execute<mysql.ResultSetHeader>(
      `UPDATE ${quoteIdent(table)} SET next_offset = ?, kept_row = ?, updated_at = CURRENT_TIMESTAMP(6) WHERE pipeline = ? AND connector = ? AND topic = ? AND \`partition\` = ? AND next_offset = ?`,
      [next.toString(), kept, key.pipeline, key.connector, key.topic, key.partition, expected.toString()],
    );
    return result.affectedRows === 1;
  }

  async readRow(session: MysqlSession, table: string, keyColumns: readonly string[], key: readonly Param[], columns: readonly string[]): Promise<Record<string, Param> | undefined> {
    const where = keyColumns.map((c) => `${quoteIdent(c)} = ?`).join(' AND ');
    const [rows] = await session.connection.execute<mysql.RowDataPacket[]>(`SELECT ${columns.map(quoteIdent).join(', ')} FROM ${quoteIdent(table)} WHERE ${where}`, driverParams([key]));
    const row = rows[0];
    if (!row) return undefined;
    const out: Record<string, Param> = {};
    for (const c of columns) {
      const v: unknown = row[c];
      // mysql2 parses columns the server labels JSON; written back they must be JSON text again.
      out[c] = v === null || v === undefined ? null : Buffer.isBuffer(v) || typeof v !== 'object' ? (v as Param) : JSON.stringify(v);
    }
    return out;
  }

  async truncate(session: MysqlSession, table: string): Promise<void> {
    await session.connection.query(`DELETE FROM ${quoteIdent(table)}`);
  }

  async deleteRows(session: MysqlSession, table: string, keyColumns: readonly string[], keys: readonly Param[][], batchRows: number): Promise<void> {
    const width = keyColumns.length;
    const target = quoteIdent(table);
    const cols = width === 1 ? quoteIdent(keyColumns[0]!) : `(${keyColumns.map(quoteIdent).join(', ')})`;
    const one = width === 1 ? '?' : `(${new Array(width).fill('?').join(', ')})`;
    const max = Math.min(batchRows, Math.floor(MAX_PARAMS / width));
    for (const chunk of chunks(keys, max, MAX_STATEMENT_BYTES)) {
      // A key listed twice deletes the same row: padding to a standard size reuses a prepared statement.
      const rows = padded(chunk, max);
      await session.connection.execute(this.#sql(`DELETE FROM ${target} WHERE ${cols} IN (`, one, ', ', rows.length, ')'), driverParams(rows));
    }
  }

  upsertRows(table: string, keyColumns: readonly string[], rows: RowSet, batchRows: number): Statements<MysqlSession> {
    const { columns } = rows;
    const keys = new Set(keyColumns);
    const updates = columns.filter((c) => !keys.has(c));
    // With only key columns there is nothing to update; assigning a key column to itself keeps the row as it is.
    const set = (updates.length > 0 ? updates : [keyColumns[0]!]).map((c) => `${quoteIdent(c)} = VALUES(${quoteIdent(c)})`).join(', ');
    return this.#insert(table, rows, batchRows, ` ON DUPLICATE KEY UPDATE ${set}`, true);
  }

  insertRows(table: string, rows: RowSet, batchRows: number): Statements<MysqlSession> {
    return this.#insert(table, rows, batchRows, '', false);
  }

  /**
   * Multi-row INSERTs of `batchRows` rows, then the rest in standard sizes, so that every statement
   * is one of a few that stay prepared on the connection (each new size would cost a PREPARE round
   * trip). An upsert pads its last chunk by repeating a row, which changes nothing; an insert
   * splits its rest into standard sizes instead.
   */
  #insert(table: string, rows: RowSet, batchRows: number, suffix: string, idempotent: boolean): Statements<MysqlSession> {
    const { columns } = rows;
    const head = `INSERT INTO ${quoteIdent(table)} (${columns.map(quoteIdent).join(', ')}) VALUES `;
    const one = `(${new Array(columns.length).fill('?').join(', ')})`;
    const max = Math.min(batchRows, Math.floor(MAX_PARAMS / columns.length));
    const statements = insertStatements(rows, max, idempotent);
    return async (session) => {
      for (const { count, params } of statements) {
        await session.connection.execute(this.#sql(head, one, ', ', count, suffix), params);
      }
    };
  }

  /** `head` + `count` times `one` joined by `separator` + `tail`, built once per shape. */
  #sql(head: string, one: string, separator: string, count: number, tail: string): string {
    const key = `${head}\u0000${one}\u0000${count}\u0000${tail}`;
    let sql = this.#statements.get(key);
    if (sql === undefined) {
      sql = `${head}${new Array(count).fill(one).join(separator)}${tail}`;
      if (this.#statements.size > 256) this.#statements.clear();
      this.#statements.set(key, sql);
    }
    return sql;
  }
}

/** Statement sizes kept prepared: chunks are padded or split to these. */
function standardSizes(max: number): number[] {
  const sizes = [1, 2, 5, 10, 20, 50];
  for (let n = 100; n < max; n += 100) sizes.push(n);
  return [...sizes.filter((n) => n < max), max];
}

/** `chunk` padded to the next standard size by repeating its last row. */
function padded<T>(chunk: readonly T[], max: number): readonly T[] {
  const size = standardSizes(max).find((n) => n >= chunk.length) ?? chunk.length;
  if (size === chunk.length) return chunk;
  const out = chunk.slice();
  while (out.length < size) out.push(chunk[chunk.length - 1]!);
  return out;
}

/** A value as mysql2 takes it. */
export type DriverParam = string | number | boolean | Buffer | null;

/** One multi-row statement's rows: how many, and their parameters in row order. */
export interface InsertStatement {
  readonly count: number;
  readonly params: DriverParam[];
}

/**
 * The statements of {@link MysqlDialect}'s multi-row INSERTs of `set`: the rows grouped as
 * {@link chunks} groups their parameters (at most `max` rows, about {@link MAX_STATEMENT_BYTES}),
 * each group padded (`idempotent`) or split to standard sizes, and flattened as
 * {@link driverParams} flattens them. Each value is converted once, straight into its statement's
 * array: no array of parameters per row. Hand-written because it runs for every value the sink
 * writes, and mysql2 (like any driver) only takes the finished flat array. Throws what
 * {@link toParam} throws for a value the column cannot take, before any statement runs.
 */
export function insertStatements(set: RowSet, max: number, idempotent: boolean): InsertStatement[] {
  const { columns, families, rows } = set;
  const width = columns.length;
  const out: InsertStatement[] = [];
  let params: DriverParam[] = [];
  let count = 0;
  let bytes = 0;
  const flush = (): void => {
    if (idempotent) {
      const size = standardSizes(max).find((n) => n >= count) ?? count;
      // A repeated row changes nothing in an upsert: padding to a standard size reuses a prepared statement.
      const last = params.length - width;
      for (let n = count; n < size; n++) for (let j = 0; j < width; j++) params.push(params[last + j]!);
      out.push({ count: size, params });
      return;
    }
    const sizes = standardSizes(max).reverse();
    let at = 0;
    while (at < count) {
      const size = sizes.find((n) => n <= count - at)!;
      out.push({ count: size, params: at === 0 && size === count ? params : params.slice(at * width, (at + size) * width) });
      at += size;
    }
  };
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    const start = params.length;
    let size = 8;
    for (let j = 0; j < width; j++) {
      const value = toParam(row[columns[j]!], families[j]!, MYSQL_VALUES);
      size += paramBytes(value);
      params.push(typeof value === 'bigint' ? value.toString() : Array.isArray(value) ? JSON.stringify(value) : value);
    }
    if (count > 0 && (count >= max || bytes + size > MAX_STATEMENT_BYTES)) {
      const next = params.splice(start);
      flush();
      params = next;
      count = 0;
      bytes = 0;
    }
    count++;
    bytes += size;
  }
  if (count > 0) flush();
  return out;
}

/** What {@link chunks} counts for one parameter. */
function paramBytes(v: Param): number {
  if (typeof v === 'string') return v.length + 4;
  if (Buffer.isBuffer(v)) return v.length * 2 + 4;
  if (Array.isArray(v)) return JSON.stringify(v).length;
  return 8;
}

/** Rows flattened into mysql2 parameters; bigints as decimal strings, which mysql2's binary protocol takes for any numeric column. */
function driverParams(rows: readonly (readonly Param[])[]): Array<string | number | boolean | Buffer | null> {
  const out: Array<string | number | boolean | Buffer | null> = [];
  for (const row of rows) {
    for (const v of row) {
      if (typeof v === 'bigint') out.push(v.toString());
      else if (Array.isArray(v)) out.push(JSON.stringify(v));
      else out.push(v);
    }
  }
  return out;
}

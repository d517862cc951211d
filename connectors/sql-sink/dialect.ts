/**
 * What the shared SQL sink task needs from one database: connecting, quoting, describing and
 * altering tables, the offsets table, and the write statements. `connectors/postgres/dialect.ts`
 * and `connectors/mysql/dialect.ts` implement it; the task never writes SQL itself.
 *
 * Every method that takes a table or column name quotes it; values always travel as parameters
 * (or, for Postgres COPY, in the COPY data stream, never in SQL text).
 */
import type { Logger } from '../../core/connector.ts';
import type { IdentifierRules } from './names.ts';
import type { Family, PgType } from './type-mapping.ts';
import type { Param, RowSet } from './values.ts';

/** A column of a target table, as the database describes it. */
export interface TargetColumn {
  readonly name: string;
  readonly family: Family;
  /** The type as the database writes it, for messages. */
  readonly typeText: string;
}

/** A target table, as the database describes it. */
export interface TargetTable {
  readonly name: string;
  readonly columns: ReadonlyMap<string, TargetColumn>;
  /** The primary key and every unique index, each as its column list. */
  readonly uniqueKeys: ReadonlyArray<readonly string[]>;
}

/** A column to create or add. */
export interface ColumnDefinition {
  readonly name: string;
  /** The DDL type, from {@link SqlDialect.targetType}. */
  readonly type: string;
  readonly nullable: boolean;
}

/** Identifies one offset row. */
export interface OffsetKey {
  readonly pipeline: string;
  readonly connector: string;
  readonly topic: string;
  readonly partition: number;
}

/** One open connection. Not shared: one statement at a time. */
export interface Session {
  /** A label for logs, e.g. the backend pid or connection id. */
  readonly id: string;
  /** False once the connection failed; the task then destroys it instead of reusing it. */
  readonly healthy: boolean;
}

/** How a database error is to be handled. */
export type ErrorKind =
  /** Connection lost, server restarting, deadlock, lock timeout: retry the same batch. */
  | 'retriable'
  /** Bad credentials, missing database or privilege: no record can succeed. */
  | 'config'
  /** A table or column the sink believed in is gone: describe it again, then retry. */
  | 'schema'
  /** A constraint or a value the target refuses: some record is bad. */
  | 'record';

/** A database error, classified, with a message fit for logs: never the statement, and short. */
export interface ClassifiedError {
  readonly kind: ErrorKind;
  readonly message: string;
  /** SQLSTATE, errno or the driver's code. */
  readonly code: string | undefined;
}

export interface ConnectOptions {
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
  /** Who connects, e.g. `sluice orders/pg-out/0`, shown by the server where it can (Postgres' application_name). */
  readonly applicationName: string;
}

/** One database, as the shared task sees it. */
export interface SqlDialect<S extends Session = Session> {
  readonly engine: 'postgres' | 'mysql';
  /** Shown in messages, e.g. `Postgres` or `MariaDB`. */
  readonly label: string;
  readonly identifiers: IdentifierRules;

  /** Opens a connection, set up for the sink (time zone, strict modes). Throws the driver's error. */
  connect(options: ConnectOptions): Promise<S>;
  /** Closes a healthy connection politely. */
  close(session: S): Promise<void>;
  /** Drops a connection at once, e.g. after an error left it in an unknown state. */
  destroy(session: S): void;
  /** Classifies any error a method of this dialect threw. */
  classify(err: unknown): ClassifiedError;

  /** The table as it is now, or undefined when it does not exist. */
  describe(session: S, table: string): Promise<TargetTable | undefined>;
  /** The DDL type for a source column of a change event (or a type inferred from a value). */
  targetType(type: PgType, isKey: boolean): string;
  /** The family a column created with {@link targetType} has. */
  targetFamily(type: PgType, isKey: boolean): Family;
  /** Whether a column of `target` family can hold values whose source maps to `source`. */
  accepts(target: TargetColumn, source: Family): boolean;
  /** CREATE TABLE IF NOT EXISTS with these columns and primary key (none when `key` is empty). */
  createTable(session: S, table: string, columns: readonly ColumnDefinition[], key: readonly string[]): Promise<void>;
  /** ALTER TABLE ADD COLUMN, succeeding when the column exists already. */
  addColumn(session: S, table: string, column: ColumnDefinition): Promise<void>;

  /** Creates the offsets table if missing. */
  ensureOffsetsTable(session: S, table: string): Promise<void>;
  /** The stored next offsets of these partitions, outside any transaction. */
  readOffsets(session: S, table: string, keys: readonly OffsetKey[]): Promise<Map<string, bigint>>;

  /** Opens a transaction. Absent when the session opens one implicitly with its first statement (MySQL with autocommit off). */
  begin?(session: S): Promise<void>;
  commit(session: S): Promise<void>;
  rollback(session: S): Promise<void>;
  /**
   * In a transaction: locks the partition's offset row, creating it (at 0) when missing, and
   * returns its next offset and kept row. Concurrent writers of the partition wait here until this
   * commits.
   */
  lockOffset(session: S, table: string, key: OffsetKey): Promise<StoredOffset>;
  /**
   * In a transaction: sets the partition's next offset to `next` and its kept row to `kept`, only
   * if the offset still is `expected`. Resolves false when it was not (another writer moved it):
   * the caller rolls back.
   */
  advanceOffset(session: S, table: string, key: OffsetKey, expected: bigint, next: bigint, kept: string | null): Promise<boolean>;
  /**
   * In a transaction: `columns` of the row with key `key` (one parameter per key column), as
   * parameters that write the same values back (Postgres: text; MySQL: what mysql2 returns, JSON
   * as text); undefined when there is no such row.
   */
  readRow(session: S, table: string, keyColumns: readonly string[], key: readonly Param[], columns: readonly string[]): Promise<Record<string, Param> | undefined>;

  /** Removes every row of `table`, inside the transaction. */
  truncate(session: S, table: string): Promise<void>;
  /** Deletes the rows with these keys; `keys` hold one parameter per key column. */
  deleteRows(session: S, table: string, keyColumns: readonly string[], keys: readonly Param[][], batchRows: number): Promise<void>;
  /**
   * Inserts or updates by key; `rows` name every column they set, key columns among them. Converts
   * the values at once ({@link paramRows}, or an encoding with the same result), so a value the
   * column cannot take throws its record-level error from here, and returns the statements, which
   * the task runs later in its transaction (the rows are no longer needed by then).
   */
  upsertRows(table: string, keyColumns: readonly string[], rows: RowSet, batchRows: number): Statements<S>;
  /** Inserts `rows`, converted as {@link upsertRows} converts them. */
  insertRows(table: string, rows: RowSet, batchRows: number): Statements<S>;
}

/** Statements with their values converted, ready to run in a transaction on `session`. */
export type Statements<S extends Session> = (session: S) => Promise<void>;

/** A partition's row of the offsets table. */
export interface StoredOffset {
  /** The next offset to write. */
  readonly next: bigint;
  /**
   * The row the partition's last batch deleted last, kept for a primary-key change whose insert
   * comes in the next batch (see plan.ts); JSON, or null.
   */
  readonly kept: string | null;
}

/** The map key of an offset row, as {@link SqlDialect.readOffsets} returns them. */
export function offsetRowKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

/**
 * Groups `rows` into chunks of at most `maxRows` rows and about `maxBytes` bytes of parameters, so
 * one statement stays under the database's packet and parameter limits.
 */
export function* chunks<T extends readonly Param[]>(rows: readonly T[], maxRows: number, maxBytes: number): Generator<readonly T[]> {
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < rows.length; i++) {
    const size = rowBytes(rows[i]!);
    if (i > start && (i - start >= maxRows || bytes + size > maxBytes)) {
      yield rows.slice(start, i);
      start = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (start < rows.length) yield start === 0 ? rows : rows.slice(start);
}

function rowBytes(row: readonly Param[]): number {
  let n = 8;
  for (const v of row) {
    if (typeof v === 'string') n += v.length + 4;
    else if (Buffer.isBuffer(v)) n += v.length * 2 + 4;
    else if (Array.isArray(v)) n += JSON.stringify(v).length;
    else n += 8;
  }
  return n;
}

/**
 * A driver error message cut to a size fit for logs and DLQ headers. MariaDB quotes the statement
 * after `near`, which with multi-row statements is megabytes of data: that quote is cut to its
 * start.
 */
export function trimMessage(message: string, max = 300): string {
  let text = message.replace(/\s+/g, ' ').trim();
  text = text.replace(/near '([^]*)' at line (\d+)/, (_m, quoted: string, line: string) => `near '${quoted.length > 60 ? `${quoted.slice(0, 60)}…` : quoted}' at line ${line}`);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

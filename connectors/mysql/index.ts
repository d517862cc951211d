/**
 * The `mysql` sink: writes records into MySQL 8 or MariaDB tables, appending, upserting, or
 * applying postgres-cdc change events, exactly once through an offsets table updated in the same
 * transaction as the rows. See `../sql-sink/task.ts` for the write path and `dialect.ts` for the
 * SQL.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { defineSink, parseDuration, SluiceError } from '../../core/connector.ts';
import { sinkError } from '../sql-sink/errors.ts';
import { SQL_SINK_METRICS, SqlSinkTask } from '../sql-sink/task.ts';
import { mysqlMappingTable } from '../sql-sink/type-mapping.ts';
import { MysqlDialect } from './dialect.ts';
import { schema, type MysqlSinkConfig } from './schema.ts';

export { schema, type MysqlSinkConfig } from './schema.ts';
export { MysqlDialect, quoteIdent } from './dialect.ts';

/** The `mysql` sink connector definition, listed in `connectors/index.ts`. */
export const mysql = defineSink({
  kind: 'sink',
  name: 'mysql',
  description:
    'Writes records into MySQL 8 or MariaDB 10.11+ tables: insert appends rows, upsert inserts or updates by key (INSERT ... ON ' +
    'DUPLICATE KEY UPDATE c = VALUES(c)), and cdc applies change events from the postgres-cdc source (inserts and updates ' +
    'upsert, deletes delete, truncates delete every row, a primary-key change deletes the old key, unchanged-TOAST columns keep ' +
    'their value), so a table stays an exact copy of a Postgres table. Delivery is exactly-once: each partition\'s batch is one ' +
    'transaction that also advances that partition\'s row in an offsets table in the target, the sink resumes from that table, ' +
    'and records already applied are skipped when delivered again. Changes to one key within a batch collapse to the last. ' +
    'Sessions run with strict sql_mode, time_zone +00:00 and READ COMMITTED; tables the sink creates use utf8mb4 with a binary ' +
    'no-pad collation, so keys compare as in Postgres. A lost connection or a restart of the database is retried; a row the ' +
    'database refuses (a constraint, a bad value) is a bad record, which goes to the DLQ under errors.tolerance: all. Error ' +
    'messages are cut short, since MariaDB quotes whole statements in them.\n\n' +
    'auto_create and schema_evolution map the Postgres types of change events (as postgres-cdc writes them) to these ' +
    'MySQL types; the values are converted to match (timestamps with a time zone to UTC, bytea from base64, arrays and json to ' +
    'JSON text). A value outside the MySQL type\'s range (a year before 1000, infinity, NaN) is a bad record.\n\n' +
    mysqlMappingTable(),
  configSchema: schema,
  examples: [
    {
      title: 'Replicate every table of a Postgres schema into MariaDB, creating tables as they appear',
      config: {
        url: 'mysql://sluice:${env:MYSQL_PASSWORD}@127.0.0.1:3306/replica',
        mode: 'cdc',
        table: '{table}',
        ssl: 'disable',
        columns: {},
        auto_create: true,
        schema_evolution: 'add_columns',
        offsets_table: 'sluice_offsets',
        batch_rows: 1000,
        connections: 4,
        connect_timeout: '10s',
      },
    },
    {
      title: 'Append JSON events to an audit table, one row per record, with no duplicates after a crash',
      config: {
        host: 'mysql.internal',
        port: 3306,
        user: 'sluice',
        password: '${env:MYSQL_PASSWORD}',
        database: 'audit',
        ssl: 'require',
        mode: 'insert',
        table: 'events',
        columns: { exclude: ['debug'] },
        auto_create: true,
        schema_evolution: 'add_columns',
        offsets_table: 'sluice_offsets',
        batch_rows: 1000,
        connections: 4,
        connect_timeout: '10s',
      },
    },
  ],
  metrics: SQL_SINK_METRICS,
  /** Each task is a member of the sink's consumer group; the group spreads the partitions over them. */
  taskConfigs: (config, maxTasks) => Array.from({ length: maxTasks }, () => config),
  /**
   * Connects, checks a database is selected and the session settings apply, and disconnects. An
   * unreachable server is retriable; bad credentials, an unknown database or none at all are not.
   */
  async healthCheck(config, { logger, signal }) {
    const dialect = new MysqlDialect(config);
    signal.throwIfAborted();
    let session;
    try {
      session = await dialect.connect({ connectTimeoutMs: parseDuration(config.connect_timeout), logger, applicationName: 'sluice health check' });
    } catch (err) {
      throw sinkError(`${dialect.label} sink: connecting`, dialect.classify(err));
    }
    try {
      const [rows] = await session.connection.query<RowDataPacket[]>('SELECT DATABASE() AS db');
      if (rows[0]?.['db'] === null || rows[0]?.['db'] === undefined) {
        throw new SluiceError('CONFIG_INVALID', `${dialect.label} sink: no database selected; name one in url (mysql://host/db) or database`, { context: { field: 'database' } });
      }
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      throw sinkError(`${dialect.label} sink: checking the target`, dialect.classify(err));
    } finally {
      await dialect.close(session).catch(() => dialect.destroy(session));
    }
  },
  createTask: (config: MysqlSinkConfig) => new SqlSinkTask(new MysqlDialect(config), config),
});

/**
 * The `postgres` sink: writes records into Postgres tables, appending, upserting, or applying
 * postgres-cdc change events, exactly once through an offsets table updated in the same
 * transaction as the rows. See `../sql-sink/task.ts` for the write path and `dialect.ts` for the
 * SQL.
 */
import { defineSink, parseDuration, SluiceError } from '../../core/connector.ts';
import { sinkError } from '../sql-sink/errors.ts';
import { SQL_SINK_METRICS, SqlSinkTask } from '../sql-sink/task.ts';
import { PostgresDialect } from './dialect.ts';
import { schema, type PostgresSinkConfig } from './schema.ts';

export { schema, type PostgresSinkConfig } from './schema.ts';
export { PostgresDialect, quoteIdent } from './dialect.ts';

/** The `postgres` sink connector definition, listed in `connectors/index.ts`. */
export const postgres = defineSink({
  kind: 'sink',
  name: 'postgres',
  description:
    'Writes records into Postgres tables: insert appends rows, upsert inserts or updates by key (INSERT ... ON CONFLICT DO UPDATE), ' +
    'and cdc applies change events from the postgres-cdc source (inserts and updates upsert, deletes delete, truncates truncate, ' +
    'a primary-key change deletes the old key, unchanged-TOAST columns keep their value), so a table stays an exact copy of ' +
    'another database\'s. Delivery is exactly-once: each partition\'s batch is one transaction that also advances that ' +
    'partition\'s row in an offsets table in the target, the sink resumes from that table, and records already applied are ' +
    'skipped when delivered again. Changes to one key within a batch collapse to the last; large batches go through COPY. ' +
    'auto_create makes missing tables from the change events\' column schema with the source\'s own types (types the target ' +
    'may lack, such as enums and domains, become text); schema_evolution adds new columns. A lost connection or a restart of ' +
    'the database is retried; a row the database refuses (a constraint, a bad value) is a bad record, which goes to the DLQ under ' +
    'errors.tolerance: all.',
  configSchema: schema,
  examples: [
    {
      title: 'Replicate every table of a Postgres schema into another Postgres, creating tables as they appear',
      config: {
        url: 'postgres://sluice:${env:PGPASSWORD}@127.0.0.1:5432/replica',
        mode: 'cdc',
        table: '{table}',
        ssl: 'disable',
        target_schema: 'public',
        copy_threshold: 2000,
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
      title: 'Upsert JSON records keyed by id into one table, renaming a field and dropping another',
      config: {
        host: 'db.internal',
        port: 5432,
        user: 'sluice',
        password: '${env:PGPASSWORD}',
        database: 'analytics',
        ssl: 'verify-full',
        mode: 'upsert',
        table: 'customers',
        key_columns: ['id'],
        target_schema: 'public',
        copy_threshold: 2000,
        columns: { rename: { fullName: 'full_name' }, exclude: ['password_hash'] },
        auto_create: false,
        schema_evolution: 'fail',
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
   * Connects, checks the target schema exists and that the user may create tables in it when the
   * offsets table is missing or auto_create is on, and disconnects. An unreachable server is retriable; bad credentials, a missing
   * database or schema and a missing privilege are not.
   */
  async healthCheck(config, { logger, signal }) {
    const dialect = new PostgresDialect(config);
    signal.throwIfAborted();
    let session;
    try {
      session = await dialect.connect({ connectTimeoutMs: parseDuration(config.connect_timeout), logger, applicationName: 'sluice health check' });
    } catch (err) {
      throw sinkError('Postgres sink: connecting', dialect.classify(err));
    }
    try {
      const res = await session.client.query<{ exists: boolean; create: boolean | null; offsets: boolean }>(
        `SELECT n.oid IS NOT NULL AS exists, has_schema_privilege(n.oid, 'CREATE') AS create,
                EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = $2) AS offsets
           FROM (SELECT $1::text AS name) s LEFT JOIN pg_namespace n ON n.nspname = s.name`,
        [config.target_schema, config.offsets_table],
      );
      const row = res.rows[0]!;
      if (!row.exists) throw new SluiceError('CONFIG_INVALID', `Postgres sink: target_schema ${JSON.stringify(config.target_schema)} does not exist in the target database`, { context: { field: 'target_schema', value: config.target_schema } });
      // The offsets table is created at start when missing, which takes CREATE on the schema (as auto_create does).
      if (!row.create && (!row.offsets || config.auto_create)) {
        throw new SluiceError('CONFIG_INVALID', `Postgres sink: the user may not create tables in schema ${JSON.stringify(config.target_schema)}, which ${row.offsets ? 'auto_create needs' : `creating the offsets table ${JSON.stringify(config.offsets_table)} needs`}`, {
          context: { field: 'target_schema', value: config.target_schema },
        });
      }
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      throw sinkError('Postgres sink: checking the target', dialect.classify(err));
    } finally {
      await dialect.close(session).catch(() => dialect.destroy(session));
    }
  },
  createTask: (config: PostgresSinkConfig) => new SqlSinkTask(new PostgresDialect(config), config),
});

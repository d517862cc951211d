/**
 * The postgres-cdc source: every change of a Postgres database's tables, through logical
 * replication (pgoutput), as Debezium-style change events, after a snapshot consistent with the
 * slot. See task.ts for offsets and acknowledgements, events.ts for the events, types.ts for the
 * type mapping.
 */
import type pg from 'pg';
import { defineSource } from '../../core/connector.ts';
import { dropSlot } from './catalog.ts';
import { closeClient, clientConfig, connectClient, describeTarget, wrapError } from './connection.ts';
import { postgresCdcSchema, type PostgresCdcConfig } from './schema.ts';
import { PostgresCdcTask, compareStreamOffsets } from './task.ts';

export { postgresCdcSchema, type PostgresCdcConfig } from './schema.ts';
export { HEARTBEAT_PREFIX, PostgresCdcTask, compareStreamOffsets, partitionOf, resetCommand } from './task.ts';
export { SCHEMA_HEADER } from './events.ts';
export { UNCHANGED_TOAST_MARKER } from './types.ts';
export { clientConfig } from './connection.ts';

const examples: ReadonlyArray<{ title: string; config: Partial<PostgresCdcConfig> }> = [
  {
    title: 'Every table of a database, with the password from the environment',
    config: { url: 'postgres://sluice:${env:PGPASSWORD}@db.internal:5432/shop', slot: 'sluice_shop' },
  },
  {
    title: 'Some tables, no snapshot, transaction markers',
    config: {
      host: 'db.internal',
      user: 'sluice',
      password: '${env:PGPASSWORD}',
      database: 'shop',
      ssl: 'require',
      slot: 'sluice_orders',
      publication: 'sluice_orders',
      tables: { include: ['public.orders', 'public.order_*'], exclude: ['public.order_archive'] },
      snapshot: 'never',
      include_transaction_markers: true,
    },
  },
];

/**
 * Drops the replication slot of a postgres-cdc config, waiting up to 10 s for a walsender that
 * still holds it (a sluice process killed moments ago). Returns whether the slot existed. For
 * `sluice cdc reset`; `config` is a validated config.
 */
export async function dropReplicationSlot(config: Record<string, unknown>): Promise<boolean> {
  const cdcConfig = config as PostgresCdcConfig;
  let client: pg.Client | undefined;
  try {
    client = await connectClient(clientConfig(cdcConfig), () => {});
    return await dropSlot(client, cdcConfig.slot);
  } catch (err) {
    throw wrapError(err, `dropping replication slot ${cdcConfig.slot} on ${describeTarget(cdcConfig)}`);
  } finally {
    await closeClient(client);
  }
}

/** The postgres-cdc source connector definition. */
export const postgresCdc = defineSource({
  kind: 'source',
  name: 'postgres-cdc',
  description:
    'Captures every insert, update, delete and truncate of a Postgres database through logical replication (pgoutput), as Debezium-style change events ' +
    '{op, before, after, source, ts_ms} keyed by primary key. On first start it copies the tables in a snapshot consistent with the replication slot, in ' +
    'primary-key chunks that resume after a crash, then streams from the slot with no gap. The slot is acknowledged only up to what is durable in the log, ' +
    'heartbeats keep it moving when the tables are idle, and an invalidated slot fails the connector with the recovery command: npx sluice cdc reset PIPELINE SOURCE. ' +
    'Use the topic template {prefix}.{schema}.{table}. Values map exactly: int8 beyond 2^53 and numeric as strings, json as JSON, timestamps as ISO 8601 ' +
    'with microseconds, bytea as base64, arrays as arrays; an unchanged TOAST value (REPLICA IDENTITY DEFAULT) is the string __sluice_unchanged_toast__, never null. ' +
    'Events, the full type mapping and the guarantees: connectors/postgres-cdc/EVENTS.md.',
  configSchema: postgresCdcSchema,
  examples: examples as ReadonlyArray<{ title: string; config: PostgresCdcConfig }>,
  topicVariables: ['prefix', 'database', 'schema', 'table'],
  metrics: {
    retained_wal_bytes: { type: 'gauge', help: 'WAL the replication slot holds back on the server (current WAL position minus restart_lsn), read every slot_check_interval.' },
    confirmed_lag_bytes: { type: 'gauge', help: 'WAL written since the slot\'s confirmed position: changes not yet durable in the log, or not yet acknowledged.' },
    snapshot_rows: { type: 'counter', help: 'Rows copied by the snapshot.', labels: ['table'] },
    heartbeats_sent: { type: 'counter', help: 'Heartbeat messages written (pg_logical_emit_message).' },
    heartbeats_received: { type: 'counter', help: 'Heartbeat messages that came back through the slot.' },
    reconnects: { type: 'counter', help: 'Times the replication stream was lost and reopened.' },
  },
  /** One slot has one reader: always a single task. */
  taskConfigs: (config: PostgresCdcConfig) => [config],
  /**
   * Connects and checks what needs no slot: the login, wal_level=logical (unless initial_only),
   * and that the role may replicate. Refused connections are retriable; the rest is a misconfiguration.
   */
  async healthCheck(config: PostgresCdcConfig, { signal }) {
    const target = describeTarget(config);
    let client: pg.Client | undefined;
    try {
      client = await connectClient(clientConfig(config), () => {});
      if (signal.aborted) return;
      const result = await client.query<{ wal_level: string; can_replicate: boolean }>(
        "SELECT current_setting('wal_level') AS wal_level, (SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS can_replicate",
      );
      const row = result.rows[0]!;
      if (config.snapshot !== 'initial_only') {
        if (row.wal_level !== 'logical') {
          throw wrapError(Object.assign(new Error(`wal_level is ${row.wal_level}; logical replication needs wal_level=logical (ALTER SYSTEM SET wal_level = logical, then restart Postgres)`), { code: '55000' }), target);
        }
        if (!row.can_replicate) {
          throw wrapError(Object.assign(new Error('the role has neither REPLICATION nor superuser (ALTER ROLE ... WITH REPLICATION)'), { code: '42501' }), target);
        }
      }
    } catch (err) {
      throw wrapError(err, `postgres-cdc health check of ${target}`);
    } finally {
      await closeClient(client);
    }
  },
  /**
   * Streamed changes are ordered by (commit LSN, ordinal in the transaction); snapshot rows and
   * anything else are not ordered (null), so a restart appends them again rather than risk dropping
   * one. See compareStreamOffsets in task.ts for why the runtime's requirements hold.
   */
  compareOffsets: compareStreamOffsets,
  createTask: (config: PostgresCdcConfig) => new PostgresCdcTask(config),
});

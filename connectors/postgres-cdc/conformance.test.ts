/**
 * The postgres-cdc source against the connector conformance suite: its examples and docs, a
 * restart mid-snapshot, and a timely stop, in a real runtime on a real log, reading a private
 * Postgres cluster (one database and slot per check).
 */
import { describeSourceConformance } from '../../test/conformance/suite.ts';
import { postgresClusterForFile } from '../../test/support/postgres-cluster.ts';
import { postgresCdc } from './index.ts';

const ROWS = 4000;
const CHUNK = 50;

const local = postgresClusterForFile();
let seq = 0;

describeSourceConformance(postgresCdc, {
  setup: async (): Promise<{ url: string; slot: string; database: string }> => {
    const database = `conformance_${++seq}`;
    await local.cluster.query(`CREATE DATABASE ${database}`);
    await local.cluster.query(`CREATE TABLE rows_t (id int PRIMARY KEY, v text NOT NULL); INSERT INTO rows_t SELECT g, 'row ' || g FROM generate_series(1, ${ROWS}) g`, undefined, database);
    return { url: local.cluster.url(database), slot: `conformance_${seq}`, database };
  },
  teardown: async ({ fixture }) => {
    await local.cluster.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [fixture.slot]).catch(() => undefined);
  },
  // A snapshot of 4000 rows, 50 per chunk and poll: long enough to be stopped mid-way.
  configFor: ({ fixture }) => ({ url: fixture.url, slot: fixture.slot, snapshot_chunk_size: CHUNK, batch_size: CHUNK, heartbeat_interval: '1s' }),
  expected: () => Array.from({ length: ROWS }, (_, i) => String(i + 1)),
  recordId: (record) => String((JSON.parse(record.value!.toString('utf8')) as { after: { id: number } }).after.id),
  maxDuplicates: CHUNK,
});

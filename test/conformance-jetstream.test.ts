/**
 * The connector conformance suite on the JetStream log backend: the datagen source restarted
 * mid-stream and stopped while data flows, with its log, source offsets and group offsets in a
 * private 1-node nats-server instead of a data directory.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { datagen } from '../connectors/datagen/index.ts';
import { openJetStreamLog } from '../core/log/jetstream/jetstream-log.ts';
import { describeSourceConformance } from './conformance/suite.ts';
import { startNatsCluster, type NatsCluster } from './support/nats-cluster.ts';

const COUNT = 3000;
let cluster: NatsCluster | undefined;

beforeAll(async () => {
  cluster = await startNatsCluster({ size: 1 });
}, 60_000);

afterAll(async () => {
  await cluster?.destroy();
});

describeSourceConformance(datagen, {
  // As connectors/datagen/conformance.test.ts: about 1.5 s of events, long enough to stop mid-way.
  configFor: () => ({ preset: 'clickstream', count: COUNT, rate: 2000, seed: 42, batch_size: 100 }),
  expected: () => Array.from({ length: COUNT }, (_, i) => String(i)),
  recordId: (record) => String((JSON.parse(record.value!.toString('utf8')) as { seq: number }).seq),
  maxDuplicates: 100,
  // One prefix per check, derived from its directory so the restart reopens the same topics.
  openLog: ({ dir }) =>
    openJetStreamLog({ servers: cluster!.servers, prefix: `c${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`, maintenanceIntervalMs: 0 }),
});

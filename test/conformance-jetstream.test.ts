/**
 * The connector conformance suite on the JetStream log backend: the datagen source and the file
 * sink restarted mid-stream and stopped while data flows, with their log, source offsets and group
 * offsets in a private 1-node nats-server instead of a data directory. The sink's run reads through
 * a consumer group whose membership and committed offsets live in NATS KV.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { datagen } from '../connectors/datagen/index.ts';
import { file } from '../connectors/file/index.ts';
import { openJetStreamLog } from '../core/log/jetstream/jetstream-log.ts';
import { describeSinkConformance, describeSourceConformance } from './conformance/suite.ts';
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
  openLog: ({ dir }) => jetStreamLog(dir),
});

describeSinkConformance(file, {
  configFor: ({ dir }) => ({ path: path.join(dir, 'out', 'part-{partition}.jsonl') }),
  readBack: async ({ dir }) => {
    const out = path.join(dir, 'out');
    const names = await fs.readdir(out).catch(() => [] as string[]);
    const lines: string[] = [];
    for (const name of names.sort()) lines.push(...(await fs.readFile(path.join(out, name), 'utf8')).split('\n').filter((line) => line !== ''));
    return lines;
  },
  openLog: ({ dir }) => jetStreamLog(dir),
});

/** One prefix per check, derived from its directory, so the restart reopens the same topics. */
function jetStreamLog(dir: string) {
  return openJetStreamLog({ servers: cluster!.servers, prefix: `c${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`, maintenanceIntervalMs: 0 });
}

/**
 * The JetStream log with 3 replicas on a private 3-node cluster: losing one node neither loses an
 * acknowledged record nor stops appends for longer than a bounded retry.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isSluiceError } from '../../errors.ts';
import { startNatsCluster, type NatsCluster } from '../../../test/support/nats-cluster.ts';
import type { Log, LogRecord } from '../types.ts';
import { openJetStreamLog } from './jetstream-log.ts';

let cluster: NatsCluster;
const logs: Log[] = [];

beforeAll(async () => {
  cluster = await startNatsCluster({ size: 3 });
}, 60_000);

afterAll(async () => {
  for (const log of logs.splice(0)) await log.close().catch(() => undefined);
  await cluster?.destroy();
});

/** Repeats an append while it fails with a RetriableError, as the runtime does, for at most 30 s. */
async function appendRetrying(log: Log, topic: string, partition: number, values: string[]): Promise<{ base: bigint; retries: number }> {
  const deadline = Date.now() + 30_000;
  for (let retries = 0; ; retries++) {
    try {
      const res = await log.append(topic, values.map((v) => ({ value: Buffer.from(v), partition })));
      return { base: res.offsetOf(0), retries };
    } catch (err) {
      if (!isSluiceError(err) || !err.retriable || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function readAll(log: Log, topic: string, partition: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  let offset = 0n;
  for (;;) {
    const r = await log.read(topic, partition, offset);
    out.push(...r.records);
    if (r.nextOffset >= r.highWatermark) return out;
    offset = r.nextOffset;
  }
}

it('appends with 3 replicas keep working after a node is killed, and every acknowledged record survives', async () => {
  const log = await openJetStreamLog({ servers: cluster.servers, replicas: 3, maintenanceIntervalMs: 0 });
  logs.push(log);
  await log.createTopic('durable', { partitions: 2 });
  const acked = new Map<string, { partition: number; offset: bigint }>();
  let retries = 0;
  const writer = async (partition: number, batches: number, killAt: number | null): Promise<void> => {
    for (let i = 0; i < batches; i++) {
      if (i === killAt) await cluster.kill(0);
      const values = [`p${partition}-b${i}-0`, `p${partition}-b${i}-1`];
      const res = await appendRetrying(log, 'durable', partition, values);
      retries += res.retries;
      values.forEach((v, k) => acked.set(v, { partition, offset: res.base + BigInt(k) }));
    }
  };
  await Promise.all([writer(0, 40, 15), writer(1, 40, null)]);
  expect(cluster.nodes[0]!.running).toBe(false);
  expect(acked.size).toBe(160);

  // A second process reads through the surviving nodes only.
  const reader = await openJetStreamLog({ servers: cluster.servers.slice(1), replicas: 3, maintenanceIntervalMs: 0 });
  logs.push(reader);
  for (const partition of [0, 1]) {
    const records = await readAll(reader, 'durable', partition);
    expect(records.map((r) => r.offset)).toEqual(records.map((_, i) => BigInt(i)));
    const byOffset = new Map(records.map((r) => [r.offset, r.value!.toString()]));
    for (const [value, where] of acked) {
      if (where.partition === partition) expect(byOffset.get(where.offset)).toBe(value);
    }
  }
  // Retries are allowed (an append racing the failover may be repeated) but must stay bounded.
  expect(retries).toBeLessThan(100);
}, 60_000);

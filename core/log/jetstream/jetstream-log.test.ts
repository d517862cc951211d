/**
 * Integration tests of the JetStream log backend against a private 1-node nats-server (never the
 * machine's shared one): topics, appends, reads, offsets, compaction, corruption and groups.
 * Each test opens with one sentence naming the guarantee it pins.
 */
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, type NatsCluster } from '../../../test/support/nats-cluster.ts';
import { rejects } from '../../../test/support/rejects.ts';
import type { Consumer, Log, LogRecord, ProducerRecord } from '../types.ts';
import { encodeBatch, WriteBuffer } from '../record-batch.ts';
import { hex } from './names.ts';
import { type JetStreamLog, openJetStreamLog } from './jetstream-log.ts';
import { openConfiguredLog } from './open-log.ts';

let cluster: NatsCluster;
const logs: Log[] = [];
let prefixCounter = 0;

beforeAll(async () => {
  cluster = await startNatsCluster({ size: 1 });
}, 60_000);

afterAll(async () => {
  for (const log of logs.splice(0)) await log.close().catch(() => undefined);
  await cluster?.destroy();
});

/** A log under a fresh prefix, so tests never see each other's topics or groups. */
async function open(prefix = `t${++prefixCounter}`): Promise<Log> {
  const log = await openJetStreamLog({ servers: cluster.servers, prefix, maintenanceIntervalMs: 0 });
  logs.push(log);
  return log;
}

function rec(value: string, key?: string): ProducerRecord {
  return { key: key === undefined ? null : Buffer.from(key), value: Buffer.from(value) };
}

async function readAll(log: Log, topic: string, partition: number, from = 0n): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  let offset = from;
  for (;;) {
    const r = await log.read(topic, partition, offset);
    out.push(...r.records);
    if (r.nextOffset >= r.highWatermark) return out;
    offset = r.nextOffset;
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('topics', () => {
  it('creates, describes, lists and deletes topics, refusing duplicates and unknown names', async () => {
    const log = await open();
    const d = await log.createTopic('orders.v1', { partitions: 3 });
    expect(d.name).toBe('orders.v1');
    expect(d.config.partitions).toBe(3);
    expect(d.partitions.map((p) => [p.partition, p.startOffset, p.endOffset])).toEqual([
      [0, 0n, 0n],
      [1, 0n, 0n],
      [2, 0n, 0n],
    ]);
    await rejects(log.createTopic('orders.v1'), 'TOPIC_EXISTS');
    const again = await log.createTopic('orders.v1', { partitions: 7 }, { ifNotExists: true });
    expect(again.config.partitions).toBe(3);
    await log.createTopic('a-b_c');
    expect(await log.listTopics()).toEqual(['a-b_c', 'orders.v1']);
    await log.deleteTopic('orders.v1');
    expect(await log.listTopics()).toEqual(['a-b_c']);
    await rejects(log.describeTopic('orders.v1'), 'TOPIC_NOT_FOUND');
    await rejects(log.append('orders.v1', [rec('x')]), 'TOPIC_NOT_FOUND');
    await rejects(log.createTopic('bad/name'), 'INVALID_TOPIC_NAME');
  });

  it('a topic created by one process is visible to another sharing the prefix', async () => {
    const a = await open('shared1');
    const b = await open('shared1');
    await a.createTopic('seen', { partitions: 2 });
    expect(await b.listTopics()).toEqual(['seen']);
    await b.append('seen', [{ value: Buffer.from('from b'), partition: 1 }]);
    expect((await a.read('seen', 1, 0n)).records.map((r) => r.value?.toString())).toEqual(['from b']);
  });
});

describe('append and read', () => {
  it('gives dense offsets per partition across batches and reads them back in order', async () => {
    const log = await open();
    await log.createTopic('events', { partitions: 2 });
    const first = await log.append('events', [rec('a', 'k1'), rec('b', 'k1'), rec('c', 'k1')]);
    const p = first.partitionOf(0);
    expect([first.offsetOf(0), first.offsetOf(1), first.offsetOf(2)]).toEqual([0n, 1n, 2n]);
    const second = await log.append('events', [rec('d', 'k1'), rec('e', 'k1')]);
    expect([second.offsetOf(0), second.offsetOf(1)]).toEqual([3n, 4n]);
    const all = await readAll(log, 'events', p);
    expect(all.map((r) => [r.offset, r.value?.toString(), r.key?.toString()])).toEqual([
      [0n, 'a', 'k1'],
      [1n, 'b', 'k1'],
      [2n, 'c', 'k1'],
      [3n, 'd', 'k1'],
      [4n, 'e', 'k1'],
    ]);
    // A read from the middle of a batch drops the records below the offset.
    const mid = await log.read('events', p, 1n);
    expect(mid.records[0]!.offset).toBe(1n);
    expect(mid.highWatermark).toBe(5n);
    const d = await log.describeTopic('events');
    expect(d.partitions[p]!.endOffset).toBe(5n);
    expect(d.partitions[1 - p]!.endOffset).toBe(0n);
  });

  it('keeps headers, timestamps and null values', async () => {
    const log = await open();
    await log.createTopic('h');
    await log.append('h', [{ key: Buffer.from('k'), value: null, headers: { x: Buffer.from('1') }, timestamp: 1234 }]);
    const [r] = (await log.read('h', 0, 0n)).records;
    expect(r!.value).toBeNull();
    expect(r!.timestamp).toBe(1234);
    expect(r!.headers['x']?.toString()).toBe('1');
  });

  it('an append spanning partitions reports each record where it landed', async () => {
    const log = await open();
    await log.createTopic('spread', { partitions: 4 });
    const records = Array.from({ length: 40 }, (_, i) => rec(`v${i}`, `key-${i}`));
    const res = await log.append('spread', records);
    for (let p = 0; p < 4; p++) {
      const got = await readAll(log, 'spread', p);
      const expected = records.map((r, i) => ({ r, i })).filter(({ i }) => res.partitionOf(i) === p);
      expect(got.map((g) => g.value?.toString())).toEqual(expected.map(({ r }) => r.value?.toString()));
      expect(got.map((g) => g.offset)).toEqual(expected.map(({ i }) => res.offsetOf(i)));
    }
  });

  it('splits appends larger than one NATS message into several batches with contiguous offsets', async () => {
    const log = await open();
    await log.createTopic('big');
    const value = Buffer.alloc(100 * 1024, 7);
    const records = Array.from({ length: 25 }, () => ({ value, partition: 0 }));
    const res = await log.append('big', records);
    expect(res.ranges.length).toBeGreaterThan(1);
    expect(Array.from({ length: 25 }, (_, i) => res.offsetOf(i))).toEqual(Array.from({ length: 25 }, (_, i) => BigInt(i)));
    const all = await readAll(log, 'big', 0);
    expect(all.map((r) => r.offset)).toEqual(Array.from({ length: 25 }, (_, i) => BigInt(i)));
    expect(all.every((r) => r.value!.equals(value))).toBe(true);
  });

  it('concurrent writers in two processes never interleave offsets', async () => {
    const a = await open('race');
    const b = await open('race');
    await a.createTopic('r');
    await b.describeTopic('r');
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      jobs.push(a.append('r', [{ value: Buffer.from(`a${i}`), partition: 0 }, { value: Buffer.from(`a${i}'`), partition: 0 }]));
      jobs.push(b.append('r', [{ value: Buffer.from(`b${i}`), partition: 0 }]));
    }
    await Promise.all(jobs);
    const all = await readAll(a, 'r', 0);
    expect(all.map((r) => r.offset)).toEqual(Array.from({ length: 60 }, (_, i) => BigInt(i)));
    expect(new Set(all.map((r) => r.value?.toString())).size).toBe(60);
    // Each two-record batch lands whole and adjacent.
    for (let i = 0; i < 20; i++) {
      const at = all.findIndex((r) => r.value?.toString() === `a${i}`);
      expect(all[at + 1]!.value?.toString()).toBe(`a${i}'`);
    }
  });

  it('reads at most about maxBytes, but always at least one batch', async () => {
    const log = await open();
    await log.createTopic('mb');
    for (let i = 0; i < 5; i++) await log.append('mb', [{ value: Buffer.alloc(1000, i), partition: 0 }]);
    const r = await log.read('mb', 0, 0n, { maxBytes: 1500 });
    expect(r.records.length).toBe(1);
    expect(r.nextOffset).toBe(1n);
    const tiny = await log.read('mb', 0, 2n, { maxBytes: 1 });
    expect(tiny.records.map((x) => x.offset)).toEqual([2n]);
  });

  it('resolves offsets by spec and refuses offsets outside the partition', async () => {
    const log = await open();
    await log.createTopic('o');
    await log.append('o', [{ value: Buffer.from('x'), partition: 0, timestamp: 1000 }]);
    await log.append('o', [{ value: Buffer.from('y'), partition: 0, timestamp: 2000 }, { value: Buffer.from('z'), partition: 0, timestamp: 3000 }]);
    expect(await log.offsetFor('o', 0, { kind: 'earliest' })).toBe(0n);
    expect(await log.offsetFor('o', 0, { kind: 'latest' })).toBe(3n);
    expect(await log.offsetFor('o', 0, { kind: 'timestamp', timestamp: 1500 })).toBe(1n);
    expect(await log.offsetFor('o', 0, { kind: 'timestamp', timestamp: 2500 })).toBe(2n);
    expect(await log.offsetFor('o', 0, { kind: 'timestamp', timestamp: 9999 })).toBe(3n);
    expect(await log.offsetFor('o', 0, { kind: 'offset', offset: 2n })).toBe(2n);
    await rejects(log.offsetFor('o', 0, { kind: 'offset', offset: 4n }), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.read('o', 0, 5n), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.read('o', 3, 0n), 'INVALID_ARGUMENT');
    expect((await log.read('o', 0, 3n)).records).toEqual([]);
  });

  it('a long-poll read wakes on an append from another process without waiting out maxWaitMs', async () => {
    const a = await open('poll');
    const b = await open('poll');
    await a.createTopic('lp');
    const started = Date.now();
    const pending = a.read('lp', 0, 0n, { maxWaitMs: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    await b.append('lp', [{ value: Buffer.from('wake'), partition: 0 }]);
    const r = await pending;
    expect(r.records.map((x) => x.value?.toString())).toEqual(['wake']);
    expect(Date.now() - started).toBeLessThan(5000);
    const empty = Date.now();
    expect((await a.read('lp', 0, 1n, { maxWaitMs: 300 })).records).toEqual([]);
    expect(Date.now() - empty).toBeGreaterThanOrEqual(250);
  });
});

describe('retention and configuration', () => {
  it('retentionMs removes old batches but never the last one, and moves the start offset', async () => {
    const log = await open();
    await log.createTopic('ret', { retentionMs: 60_000 });
    const now = Date.now();
    await log.append('ret', [{ value: Buffer.from('old1'), partition: 0, timestamp: now - 600_000 }, { value: Buffer.from('old2'), partition: 0, timestamp: now - 600_000 }]);
    await log.append('ret', [{ value: Buffer.from('old3'), partition: 0, timestamp: now - 500_000 }]);
    await log.append('ret', [{ value: Buffer.from('new'), partition: 0, timestamp: now }]);
    await (log as JetStreamLog).runMaintenance(now);
    expect(await log.offsetFor('ret', 0, { kind: 'earliest' })).toBe(3n);
    expect((await readAll(log, 'ret', 0, 3n)).map((r) => r.value?.toString())).toEqual(['new']);
    await rejects(log.read('ret', 0, 0n), 'OFFSET_OUT_OF_RANGE');
    await (log as JetStreamLog).runMaintenance(now + 3_600_000);
    const d = await log.describeTopic('ret');
    expect([d.partitions[0]!.startOffset, d.partitions[0]!.endOffset]).toEqual([3n, 4n]);
    expect((await log.append('ret', [{ value: Buffer.from('more'), partition: 0 }])).offsetOf(0)).toBe(4n);
  });

  it('refuses more replicas than the cluster can place with CONFIG_INVALID', async () => {
    const err = await rejects(openJetStreamLog({ servers: cluster.servers, prefix: 'r3', replicas: 3, maintenanceIntervalMs: 0 }), 'CONFIG_INVALID');
    expect(err.message).toMatch(/replicas/);
    await rejects(openJetStreamLog({ servers: cluster.servers, replicas: 0 }), 'CONFIG_INVALID');
    await rejects(openJetStreamLog({ servers: cluster.servers, prefix: 'bad.prefix' }), 'CONFIG_INVALID');
  });
});

describe('compacted topics', () => {
  it('keeps the newest record per key, with offsets that only grow, and needs keys', async () => {
    const log = await open();
    await log.createTopic('state', { cleanup: 'compact', partitions: 1 });
    await log.append('state', [rec('1', 'a'), rec('1', 'b')]);
    await log.append('state', [rec('2', 'a')]);
    await log.append('state', [{ key: Buffer.from('b'), value: null }]);
    expect(await log.offsetFor('state', 0, { kind: 'earliest' })).toBe(0n);
    const all = await readAll(log, 'state', 0);
    const latest = new Map(all.map((r) => [r.key!.toString(), r.value?.toString() ?? null]));
    expect(latest).toEqual(new Map([['a', '2'], ['b', null]]));
    expect(all.length).toBe(2);
    const offsets = all.map((r) => r.offset);
    expect([...offsets].sort((x, y) => (x < y ? -1 : 1))).toEqual(offsets);
    expect(await log.offsetFor('state', 0, { kind: 'latest' })).toBe(4n);
    await rejects(log.append('state', [{ value: Buffer.from('no key') }]), 'INVALID_ARGUMENT');
    // Several writes of one key in one append are stored in order, so the last one survives.
    const burst = await log.append('state', [rec('x1', 'c'), rec('y', 'd'), rec('x2', 'c'), rec('x3', 'c')]);
    expect(burst.offsetOf(0) < burst.offsetOf(2) && burst.offsetOf(2) < burst.offsetOf(3)).toBe(true);
    const after = await readAll(log, 'state', 0);
    expect(after.filter((r) => r.key!.toString() === 'c').map((r) => [r.offset, r.value?.toString()])).toEqual([[burst.offsetOf(3), 'x3']]);
  });
});

describe('corruption', () => {
  it('a corrupt message in the middle of a partition is never served: reads reaching it fail with CORRUPT_RECORD', async () => {
    const prefix = 'corrupt1';
    const log = await open(prefix);
    await log.createTopic('c');
    await log.append('c', [{ value: Buffer.from('good'), partition: 0 }]);
    const subject = `${prefix}.${hex('c')}.0`;
    const nc: NatsConnection = await connect({ servers: cluster.servers });
    try {
      const js = nc.jetstream();
      await js.publish(subject, Buffer.from('this is not a record batch at all, just garbage bytes'));
      // A valid batch after the garbage, as a later writer would have stored it.
      const out = new WriteBuffer(256);
      const batch = encodeBatch(out, [{ value: Buffer.from('after') }], null, 1n, Date.now());
      await js.publish(subject, out.buf.subarray(0, batch.size));
    } finally {
      await nc.close();
    }
    const other = await open(prefix);
    expect((await other.read('c', 0, 0n, { maxBytes: 1 })).records.map((r) => r.value?.toString())).toEqual(['good']);
    await rejects(other.read('c', 0, 0n), 'CORRUPT_RECORD');
    // The garbage carries no offsets, so the valid batch after it stays reachable directly.
    expect((await other.read('c', 0, 1n)).records.map((r) => [r.offset, r.value?.toString()])).toEqual([[1n, 'after']]);
  });

  it('a corrupt last message fails reads and appends of the partition with CORRUPT_RECORD instead of guessing offsets', async () => {
    const prefix = 'corrupt2';
    const log = await open(prefix);
    await log.createTopic('c');
    await log.append('c', [{ value: Buffer.from('good'), partition: 0 }]);
    const nc: NatsConnection = await connect({ servers: cluster.servers });
    try {
      await nc.jetstream().publish(`${prefix}.${hex('c')}.0`, Buffer.alloc(64, 0xff));
    } finally {
      await nc.close();
    }
    await rejects(log.append('c', [{ value: Buffer.from('next'), partition: 0 }]), 'CORRUPT_RECORD');
    const other = await open(prefix);
    await rejects(other.read('c', 0, 0n), 'CORRUPT_RECORD');
    await rejects(other.describeTopic('c'), 'CORRUPT_RECORD');
  });
});

describe('consumer groups across processes', () => {
  it('two members in two log instances split partitions, commit, and rebalance when one closes', async () => {
    const a = await open('grp');
    const b = await open('grp');
    await a.createTopic('g', { partitions: 4 });
    for (let p = 0; p < 4; p++) await a.append('g', [{ value: Buffer.from(`p${p}`), partition: p }]);
    const ca = await a.subscribe('workers', ['g']);
    const cb = await b.subscribe('workers', ['g']);
    await until('both members see each other', async () => {
      await Promise.all([(ca as unknown as { refresh(): Promise<void> }).refresh(), (cb as unknown as { refresh(): Promise<void> }).refresh()]);
      return ca.assignment().length === 2 && cb.assignment().length === 2;
    });
    const owned = [...ca.assignment(), ...cb.assignment()].map((tp) => tp.partition).sort();
    expect(owned).toEqual([0, 1, 2, 3]);
    const got = [...(await ca.poll({ maxWaitMs: 1000 })), ...(await cb.poll({ maxWaitMs: 1000 }))];
    expect(got.map((r) => r.value?.toString()).sort()).toEqual(['p0', 'p1', 'p2', 'p3']);
    await ca.commit();
    await cb.commit();
    expect((await a.committedOffsets('workers')).map((o) => [o.partition, o.offset])).toEqual([
      [0, 1n],
      [1, 1n],
      [2, 1n],
      [3, 1n],
    ]);
    expect(await b.listGroups()).toEqual(['workers']);
    await cb.close();
    await until('the remaining member takes every partition', async () => {
      await (ca as unknown as { refresh(): Promise<void> }).refresh();
      return ca.assignment().length === 4;
    });
    expect(ca.positions().map((p) => p.offset)).toEqual([1n, 1n, 1n, 1n]);
    await a.append('g', [{ value: Buffer.from('late'), partition: 3 }]);
    expect((await ca.poll({ maxWaitMs: 2000 })).map((r) => r.value?.toString())).toEqual(['late']);
    const lag = await a.describeGroup('workers');
    expect(lag.find((s) => s.partition === 3)).toMatchObject({ committed: 1n, endOffset: 2n, lag: 1n });
    await ca.close();
  }, 30_000);

  it('a member that stops heartbeating (a crashed process) loses its partitions once its membership expires', async () => {
    const a = await open('crash');
    const b = await open('crash');
    await a.createTopic('k', { partitions: 2 });
    const crashed = await a.subscribe('g', ['k']);
    clearInterval((crashed as unknown as { timer: NodeJS.Timeout }).timer);
    const survivor = await b.subscribe('g', ['k']);
    expect(survivor.assignment()).toHaveLength(1);
    const started = Date.now();
    await until('the survivor owns both partitions', async () => {
      await (survivor as unknown as { refresh(): Promise<void> }).refresh();
      return survivor.assignment().length === 2;
    }, 15_000);
    // The members bucket's max age is 6 s; the heartbeat that notices may come up to 2 s later.
    expect(Date.now() - started).toBeLessThan(10_000);
    await survivor.close();
    await crashed.close();
  }, 30_000);

  it('a zombie member that lost its partition gets NOT_ASSIGNED and cannot overwrite the new owner', async () => {
    const a = await open('zombie');
    const b = await open('zombie');
    await a.createTopic('z', { partitions: 1 });
    await a.append('z', [{ value: Buffer.from('1'), partition: 0 }, { value: Buffer.from('2'), partition: 0 }]);
    const zombie: Consumer = await a.subscribe('g', ['z']);
    expect(zombie.assignment()).toEqual([{ topic: 'z', partition: 0 }]);
    await zombie.poll();
    await zombie.commit([{ topic: 'z', partition: 0, offset: 1n }]);
    // The zombie stops heartbeating (as a paused process would) but keeps its in-memory assignment.
    const membersKey = `${hex('g')}.${zombie.memberId}`;
    clearInterval((zombie as unknown as { timer: NodeJS.Timeout }).timer);
    const nc = await connect({ servers: cluster.servers });
    try {
      await (await nc.jetstream().views.kv('zombie_members')).delete(membersKey);
    } finally {
      await nc.close();
    }
    const owner = await b.subscribe('g', ['z']);
    expect(owner.assignment()).toEqual([{ topic: 'z', partition: 0 }]);
    expect(owner.positions()[0]!.offset).toBe(1n);
    await owner.poll();
    await owner.commit();
    await rejects(zombie.commit([{ topic: 'z', partition: 0, offset: 0n }]), 'NOT_ASSIGNED');
    expect(await a.committedOffsets('g')).toEqual([{ topic: 'z', partition: 0, offset: 2n }]);
    await owner.close();
    await zombie.close();
  }, 30_000);
});

describe('openConfiguredLog', () => {
  it('picks the backend a spec names: jetstream connects to its servers, embedded calls the factory', async () => {
    let embeddedCalls = 0;
    const log = await openConfiguredLog({ backend: 'jetstream', servers: cluster.servers }, async () => {
      embeddedCalls++;
      throw new Error('not this one');
    });
    logs.push(log);
    await log.createTopic('configured', {}, { ifNotExists: true });
    expect(await log.listTopics()).toContain('configured');
    expect(embeddedCalls).toBe(0);
    const other = await open();
    expect(await openConfiguredLog({ backend: 'embedded' }, async () => other)).toBe(other);
    await rejects(openConfiguredLog({ backend: 'kafka' as 'embedded' }, async () => other), 'CONFIG_INVALID');
  });
});

/**
 * Unit tests of the embedded log through its public interface: real data directories in fresh temp
 * dirs, no mocks. Each test opens with one sentence naming the guarantee it pins.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { rejects } from '../../test/support/rejects.ts';
import { type ErrorCode, isSluiceError, type SluiceError } from '../errors.ts';
import { type EmbeddedLog, type OpenLogOptions, openLog } from './embedded-log.ts';
import { partitionForKey } from './partitioner.ts';
import type { Consumer, LogRecord, ProducerRecord, TopicConfig } from './types.ts';

const dirs: string[] = [];
const openLogs: EmbeddedLog[] = [];
const openConsumers: Consumer[] = [];

afterEach(async () => {
  for (const c of openConsumers.splice(0)) await c.close().catch(() => undefined);
  for (const log of openLogs.splice(0)) await log.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-log-test-'));
  dirs.push(dir);
  return dir;
}

/** Opens a log that the test cleans up; the maintenance timer is off so tests drive it explicitly. */
async function open(dir: string, options: OpenLogOptions = {}): Promise<EmbeddedLog> {
  const log = await openLog(dir, { maintenanceIntervalMs: 0, ...options });
  openLogs.push(log);
  return log;
}

async function reopen(log: EmbeddedLog, options: OpenLogOptions = {}): Promise<EmbeddedLog> {
  await log.close();
  return open(log.dataDir, options);
}

async function consumer(log: EmbeddedLog, group: string, topics: string[], options?: { autoOffsetReset?: 'earliest' | 'latest' }): Promise<Consumer> {
  const c = await log.subscribe(group, topics, options);
  openConsumers.push(c);
  return c;
}

function throwsSync(fn: () => unknown, code: ErrorCode): SluiceError {
  try {
    fn();
  } catch (err) {
    if (!isSluiceError(err, code)) throw new Error(`expected a SluiceError ${code}, got ${String(err)}`, { cause: err });
    return err;
  }
  throw new Error(`expected a SluiceError ${code}, but the call succeeded`);
}

/** Reads a partition from `from` to its end offset. */
async function readAll(log: EmbeddedLog, topic: string, partition: number, from?: bigint, maxBytes?: number): Promise<LogRecord[]> {
  let offset = from ?? (await log.offsetFor(topic, partition, { kind: 'earliest' }));
  const end = await log.offsetFor(topic, partition, { kind: 'latest' });
  const out: LogRecord[] = [];
  while (offset < end) {
    const r = await log.read(topic, partition, offset, maxBytes === undefined ? {} : { maxBytes });
    if (r.nextOffset <= offset) throw new Error(`read at ${offset} made no progress`);
    out.push(...r.records);
    offset = r.nextOffset;
  }
  return out;
}

const text = (b: Buffer | null): string | null => (b === null ? null : b.toString('utf8'));
const values = (records: LogRecord[]): Array<string | null> => records.map((r) => text(r.value));
const offsets = (records: LogRecord[]): bigint[] => records.map((r) => r.offset);
const range = (from: number, to: number): bigint[] => Array.from({ length: to - from }, (_, i) => BigInt(from + i));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function segmentFiles(dir: string, topic: string, partition: number, ext = '.log'): string[] {
  const pdir = path.join(dir, 'topics', topic, String(partition));
  return fs
    .readdirSync(pdir)
    .filter((n) => n.endsWith(ext) && /^\d{20}\./.test(n))
    .sort()
    .map((n) => path.join(pdir, n));
}

/** Sizes of the batches of a partition, from walking the segment files with FORMAT.md's batch framing. */
function batchesOnDisk(dir: string, topic: string, partition: number): Array<{ base: bigint; size: number }> {
  const out: Array<{ base: bigint; size: number }> = [];
  for (const file of segmentFiles(dir, topic, partition)) {
    const buf = fs.readFileSync(file);
    for (let pos = 0; pos + 12 <= buf.length; ) {
      const size = 12 + buf.readInt32BE(pos + 8);
      out.push({ base: buf.readBigInt64BE(pos), size });
      pos += size;
    }
  }
  return out;
}

describe('topics', () => {
  it('creates, describes, lists and deletes topics, and keeps their config across reopen', async () => {
    // Guarantee: a created topic is listed and described with its config and empty partitions until deleted, and its config persists.
    const log = await open(tempDir());
    const created = await log.createTopic('orders', { partitions: 3, segmentBytes: 4096, fsync: 'never' });
    expect(created.name).toBe('orders');
    expect(created.config).toMatchObject({ partitions: 3, segmentBytes: 4096, fsync: 'never', cleanup: 'delete' });
    expect(created.partitions.map((p) => [p.partition, p.startOffset, p.endOffset])).toEqual([
      [0, 0n, 0n],
      [1, 0n, 0n],
      [2, 0n, 0n],
    ]);
    await log.createTopic('audit.log-v1_x');
    expect(await log.listTopics()).toEqual(expect.arrayContaining(['audit.log-v1_x', 'orders']));

    await log.append('orders', [{ value: Buffer.from('a'), partition: 1 }]);
    const reopened = await reopen(log);
    const described = await reopened.describeTopic('orders');
    expect(described.config).toEqual(created.config);
    expect(described.partitions[1]).toMatchObject({ startOffset: 0n, endOffset: 1n });

    await reopened.deleteTopic('orders');
    expect(await reopened.listTopics()).not.toContain('orders');
    await rejects(reopened.describeTopic('orders'), 'TOPIC_NOT_FOUND');
    const again = await reopened.createTopic('orders', { partitions: 2 });
    expect(again.partitions.map((p) => p.endOffset)).toEqual([0n, 0n]);
    const afterReopen = await reopen(reopened);
    expect(await afterReopen.listTopics()).toEqual(expect.arrayContaining(['audit.log-v1_x', 'orders']));
    expect((await afterReopen.describeTopic('orders')).config.partitions).toBe(2);
  });

  it('rejects a duplicate topic with TOPIC_EXISTS unless ifNotExists, which describes the existing one', async () => {
    // Guarantee: createTopic never silently replaces or reconfigures an existing topic.
    const log = await open(tempDir());
    await log.createTopic('t', { partitions: 2 });
    await log.append('t', [{ value: Buffer.from('x'), partition: 0 }]);
    const err = await rejects(log.createTopic('t', { partitions: 5 }), 'TOPIC_EXISTS');
    expect(err.message).toContain('t');
    const existing = await log.createTopic('t', { partitions: 5 }, { ifNotExists: true });
    expect(existing.config.partitions).toBe(2);
    expect(existing.partitions[0]!.endOffset).toBe(1n);
  });

  it('rejects invalid topic names with INVALID_TOPIC_NAME', async () => {
    // Guarantee: only Kafka-legal names (1-249 of [A-Za-z0-9._-], not . or ..) become directories.
    const log = await open(tempDir());
    for (const name of ['', '.', '..', 'a/b', '../x', 'with space', 'ümlaut', 'x'.repeat(250), 'a\u0000b']) {
      await rejects(log.createTopic(name), 'INVALID_TOPIC_NAME');
    }
    await log.createTopic('x'.repeat(249));
    expect(fs.readdirSync(path.join(log.dataDir, 'topics')).filter((n) => !n.startsWith('__')).sort()).toEqual(['x'.repeat(249)]);
  });

  it('throws TOPIC_NOT_FOUND for every call naming an unknown topic', async () => {
    // Guarantee: an unknown topic is reported as TOPIC_NOT_FOUND, never created implicitly.
    const log = await open(tempDir());
    await rejects(log.describeTopic('nope'), 'TOPIC_NOT_FOUND');
    await rejects(log.deleteTopic('nope'), 'TOPIC_NOT_FOUND');
    await rejects(log.append('nope', [{ value: null }]), 'TOPIC_NOT_FOUND');
    await rejects(log.read('nope', 0, 0n), 'TOPIC_NOT_FOUND');
    await rejects(log.offsetFor('nope', 0, { kind: 'latest' }), 'TOPIC_NOT_FOUND');
    await rejects(log.commitOffsets('g', [{ topic: 'nope', partition: 0, offset: 0n }]), 'TOPIC_NOT_FOUND');
    await rejects(log.resetGroup('g', 'nope', { kind: 'earliest' }), 'TOPIC_NOT_FOUND');
    await rejects(log.subscribe('g', ['nope']), 'TOPIC_NOT_FOUND');
    expect(await log.listTopics()).not.toContain('nope');
  });

  it('rejects bad config values with INVALID_ARGUMENT naming the field, and creates nothing', async () => {
    // Guarantee: every config field is validated and the error names the offending field.
    const log = await open(tempDir());
    const bad: Array<[keyof TopicConfig, unknown]> = [
      ['partitions', 0],
      ['partitions', 1.5],
      ['partitions', 10_001],
      ['segmentBytes', 0],
      ['segmentBytes', -1],
      ['segmentMs', 0],
      ['fsyncIntervalMs', 0],
      ['retentionMs', 0],
      ['retentionMs', -1],
      ['retentionBytes', 0],
      ['retentionBytes', 2.5],
      ['tombstoneRetentionMs', -1],
      ['cleanup', 'archive'],
      ['fsync', 'sometimes'],
      ['partitions', '3'],
    ];
    for (const [field, value] of bad) {
      const err = await rejects(log.createTopic('t', { [field]: value } as Partial<TopicConfig>), 'INVALID_ARGUMENT');
      expect(err.message, `${field}=${String(value)}`).toContain(field);
      expect(err.context['field']).toBe(field);
    }
    expect(await log.listTopics()).not.toContain('t');
    expect(fs.readdirSync(path.join(log.dataDir, 'topics')).filter((n) => !n.startsWith('__'))).toEqual([]);
    // Defaults given to openLog are validated the same way.
    const err = await rejects(openLog(tempDir(), { defaults: { segmentBytes: 0 } }), 'INVALID_ARGUMENT');
    expect(err.message).toContain('segmentBytes');
    // Null retention is allowed.
    const ok = await log.createTopic('t', { retentionMs: null, retentionBytes: null, tombstoneRetentionMs: 0 });
    expect(ok.config).toMatchObject({ retentionMs: null, retentionBytes: null, tombstoneRetentionMs: 0 });
  });
});

describe('append and read', () => {
  it('round-trips keys, values, headers and timestamps, including nulls and empty buffers, across reopen', async () => {
    // Guarantee: a record reads back byte for byte as appended: null key, tombstone, empty buffers, headers and timestamps.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never' });
    const records: ProducerRecord[] = [
      { key: Buffer.from('k1'), value: Buffer.from('v1'), headers: { a: Buffer.from('1'), 'ü-header': Buffer.from([0, 255]) }, timestamp: 1_000 },
      { key: null, value: Buffer.from('no key'), timestamp: 2_000 },
      { value: null, key: Buffer.from('tomb'), timestamp: 1_500 },
      { key: Buffer.alloc(0), value: Buffer.alloc(0), headers: { empty: Buffer.alloc(0) }, timestamp: 0 },
      { key: Buffer.from('k2'), value: Buffer.from([0, 1, 2, 3, 254, 255]) },
      { value: null },
    ];
    const before = Date.now();
    const ack = await log.append('t', records.map((r) => ({ ...r, partition: 0 })));
    const after = Date.now();
    expect(ack.count).toBe(records.length);
    expect(ack.ranges).toEqual([{ partition: 0, baseOffset: 0n, count: records.length }]);
    expect(records.map((_, i) => ack.offsetOf(i))).toEqual(range(0, records.length));
    expect(() => ack.offsetOf(records.length)).toThrow();

    const check = (got: LogRecord[]): void => {
      expect(got).toHaveLength(records.length);
      got.forEach((r, i) => {
        const want = records[i]!;
        expect(r.topic).toBe('t');
        expect(r.partition).toBe(0);
        expect(r.offset).toBe(BigInt(i));
        expect(r.key === null ? null : Buffer.from(r.key)).toEqual(want.key ?? null);
        expect(r.value === null ? null : Buffer.from(r.value)).toEqual(want.value);
        expect(Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, Buffer.from(v)]))).toEqual(want.headers ?? {});
        if (want.timestamp !== undefined) expect(r.timestamp).toBe(want.timestamp);
        else {
          expect(r.timestamp).toBeGreaterThanOrEqual(before);
          expect(r.timestamp).toBeLessThanOrEqual(after);
        }
      });
      expect(got[0]!.key).not.toBeNull();
      expect(got[1]!.key).toBeNull();
      expect(got[2]!.value).toBeNull();
      expect(got[3]!.key).toEqual(Buffer.alloc(0));
      expect(got[3]!.value).toEqual(Buffer.alloc(0));
    };
    check(await readAll(log, 't', 0));
    const reopened = await reopen(log);
    check(await readAll(reopened, 't', 0));
  });

  it('returns a batch larger than maxBytes whole, and stores values over 1 MiB', async () => {
    // Guarantee: records bigger than the 1 MiB batch cap and than maxBytes are stored and read back whole, so reads always progress.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never' });
    const big = randomBytes(2 * 1024 * 1024 + 17);
    const trio = [randomBytes(600_000), randomBytes(600_000), randomBytes(600_000)];
    await log.append('t', [{ value: big, key: null }]);
    await log.append('t', [{ value: Buffer.from('small') }]);
    // Keyless, but over 1 MiB in total: cut into several batches, all on one partition.
    const ack = await log.append('t', trio.map((value) => ({ value })));
    expect(new Set(trio.map((_, i) => ack.partitionOf(i)))).toEqual(new Set([0]));
    expect(trio.map((_, i) => ack.offsetOf(i))).toEqual([2n, 3n, 4n]);

    const first = await log.read('t', 0, 0n);
    expect(first.records).toHaveLength(1);
    expect(first.records[0]!.value!.equals(big)).toBe(true);
    expect(first.nextOffset).toBe(1n);
    const tiny = await log.read('t', 0, 0n, { maxBytes: 1 });
    expect(offsets(tiny.records)).toEqual([0n]);
    expect(tiny.records[0]!.value!.equals(big)).toBe(true);
    const all = await readAll(log, 't', 0);
    expect(all.map((r) => r.value!.length)).toEqual([big.length, 5, 600_000, 600_000, 600_000]);
    expect(all.slice(2).every((r, i) => r.value!.equals(trio[i]!))).toBe(true);
  });

  it('puts a keyed record on partitionForKey(key, n), and one key always on one partition in append order', async () => {
    // Guarantee: keyed records are partitioned exactly like Kafka's producer, preserving per-key order.
    const log = await open(tempDir());
    await log.createTopic('t', { partitions: 4, fsync: 'never' });
    const keys = Array.from({ length: 20 }, (_, i) => `user-${i}`);
    const sent: Array<{ key: string; seq: number }> = [];
    for (let call = 0; call < 10; call++) {
      const batch = Array.from({ length: 15 }, (_, j) => ({ key: keys[(call * 7 + j * 3) % keys.length]!, seq: call * 100 + j }));
      const ack = await log.append('t', batch.map((b) => ({ key: Buffer.from(b.key), value: Buffer.from(String(b.seq)) })));
      batch.forEach((b, i) => expect(ack.partitionOf(i)).toBe(partitionForKey(Buffer.from(b.key), 4)));
      sent.push(...batch);
    }
    const byKey = new Map<string, string[]>();
    for (let p = 0; p < 4; p++) {
      for (const r of await readAll(log, 't', p)) {
        const key = text(r.key)!;
        expect(p).toBe(partitionForKey(Buffer.from(key), 4));
        byKey.set(key, [...(byKey.get(key) ?? []), text(r.value)!]);
      }
    }
    for (const key of keys) {
      expect(byKey.get(key) ?? []).toEqual(sent.filter((s) => s.key === key).map((s) => String(s.seq)));
    }
  });

  it('puts all keyless records of one call on one partition and rotates between calls', async () => {
    // Guarantee: keyless appends are sticky per call and rotate round-robin across calls.
    const log = await open(tempDir());
    await log.createTopic('t', { partitions: 3, fsync: 'never' });
    const chosen: number[] = [];
    for (let call = 0; call < 7; call++) {
      const ack = await log.append('t', Array.from({ length: 5 }, (_, i) => ({ value: Buffer.from(`${call}-${i}`) })));
      expect(ack.ranges).toHaveLength(1);
      expect(new Set(Array.from({ length: 5 }, (_, i) => ack.partitionOf(i))).size).toBe(1);
      chosen.push(ack.partitionOf(0));
    }
    for (let i = 1; i < chosen.length; i++) expect(chosen[i]).toBe((chosen[i - 1]! + 1) % 3);
    // In a mixed call the keyless records still share one partition.
    const mixed = await log.append('t', [
      { value: Buffer.from('a') },
      { key: Buffer.from('k'), value: Buffer.from('b') },
      { value: Buffer.from('c') },
      { value: Buffer.from('d'), partition: 2 },
      { value: Buffer.from('e') },
    ]);
    expect(new Set([0, 2, 4].map((i) => mixed.partitionOf(i))).size).toBe(1);
    expect(mixed.partitionOf(1)).toBe(partitionForKey(Buffer.from('k'), 3));
    expect(mixed.partitionOf(3)).toBe(2);
  });

  it('honours an explicit partition over the key, and rejects a bad one', async () => {
    // Guarantee: `partition` forces the partition; an out-of-range or non-integer partition is INVALID_ARGUMENT and appends nothing.
    const log = await open(tempDir());
    await log.createTopic('t', { partitions: 3, fsync: 'never' });
    const key = Buffer.from('some-key');
    const other = (partitionForKey(key, 3) + 1) % 3;
    const ack = await log.append('t', [{ key, value: Buffer.from('v'), partition: other }, { value: Buffer.from('w'), partition: other }]);
    expect([ack.partitionOf(0), ack.partitionOf(1)]).toEqual([other, other]);
    expect(ack.ranges).toEqual([{ partition: other, baseOffset: 0n, count: 2 }]);
    expect(values(await readAll(log, 't', other))).toEqual(['v', 'w']);
    for (const partition of [-1, 3, 1.5]) {
      await rejects(log.append('t', [{ value: Buffer.from('x'), partition: 0 }, { value: Buffer.from('y'), partition }]), 'INVALID_ARGUMENT');
    }
    await rejects(log.read('t', 3, 0n), 'INVALID_ARGUMENT');
    const d = await log.describeTopic('t');
    expect(d.partitions.map((p) => p.endOffset).reduce((a, b) => a + b)).toBe(2n);
  });

  it('returns at least the whole batch holding the offset, however small maxBytes is', async () => {
    // Guarantee: a read below the end always progresses: the batch holding the offset comes back even when it exceeds maxBytes.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never' });
    // 60 single-record batches of ~150 bytes: sparse index entries every 4 KiB cover many batches.
    for (let i = 0; i < 60; i++) await log.append('t', [{ value: Buffer.alloc(100, i) }]);
    const failures: string[] = [];
    for (let o = 0; o < 60; o++) {
      for (const maxBytes of [1, 100, 300, 1000]) {
        const r = await log.read('t', 0, BigInt(o), { maxBytes });
        if (r.records[0]?.offset !== BigInt(o)) failures.push(`offset ${o} maxBytes ${maxBytes}: got ${offsets(r.records).join(',') || 'nothing'}, next ${r.nextOffset}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('keeps the batches of a read within maxBytes unless a single batch is returned', async () => {
    // Guarantee: maxBytes bounds the bytes of batches returned; only a lone first batch may exceed it.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never' });
    const sizes = [600, 700, 50, 50, 900, 10, 10, 10, 2000, 300, 300, 300];
    for (let i = 0; i < 3; i++) for (const s of sizes) await log.append('t', [{ value: Buffer.alloc(s, 1) }]);
    const batches = batchesOnDisk(log.dataDir, 't', 0);
    expect(batches).toHaveLength(sizes.length * 3);
    const sizeAt = new Map(batches.map((b) => [b.base, b.size]));
    const failures: string[] = [];
    for (let o = 0; o < batches.length; o++) {
      for (const maxBytes of [1, 500, 1000, 1500, 3000, 6000]) {
        const r = await log.read('t', 0, BigInt(o), { maxBytes });
        const got = offsets(r.records);
        expect(got).toEqual(range(o, o + got.length));
        expect(r.nextOffset).toBe(BigInt(o + got.length));
        const bytes = got.reduce((n, off) => n + sizeAt.get(off)!, 0);
        if (got.length > 1 && bytes > maxBytes) failures.push(`offset ${o} maxBytes ${maxBytes}: ${got.length} batches of ${bytes} bytes`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('resolves offsetFor earliest, latest, timestamp and explicit offsets', async () => {
    // Guarantee: offsetFor maps each spec into [start, end]; timestamp gives the first offset whose timestamp is >= t, else the end.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never', segmentBytes: 512 });
    const ts = [1_000, 2_000, 3_000, 1_500, 4_000, 4_000, 2_500, 6_000, 5_000, 7_000];
    for (let round = 0; round < 5; round++) {
      await log.append('t', ts.map((t) => ({ value: Buffer.alloc(40), timestamp: t + round * 10_000 })));
    }
    expect((await log.describeTopic('t')).partitions[0]!.segments).toBeGreaterThan(2);
    const all = await readAll(log, 't', 0);
    const expected = (t: number): bigint => all.find((r) => r.timestamp >= t)?.offset ?? 50n;
    expect(await log.offsetFor('t', 0, { kind: 'earliest' })).toBe(0n);
    expect(await log.offsetFor('t', 0, { kind: 'latest' })).toBe(50n);
    for (let t = 0; t <= 48_000; t += 250) {
      expect(await log.offsetFor('t', 0, { kind: 'timestamp', timestamp: t }), `t=${t}`).toBe(expected(t));
    }
    expect(await log.offsetFor('t', 0, { kind: 'timestamp', timestamp: 1_000_000 })).toBe(50n);
    expect(await log.offsetFor('t', 0, { kind: 'offset', offset: 17n })).toBe(17n);
    expect(await log.offsetFor('t', 0, { kind: 'offset', offset: 50n })).toBe(50n);
    await rejects(log.offsetFor('t', 0, { kind: 'offset', offset: 51n }), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.offsetFor('t', 0, { kind: 'offset', offset: -1n }), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.read('t', 0, 51n), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.read('t', 0, -1n), 'OFFSET_OUT_OF_RANGE');
    const atEnd = await log.read('t', 0, 50n);
    expect(atEnd).toMatchObject({ records: [], nextOffset: 50n, highWatermark: 50n, logStartOffset: 0n });
  });
});

describe('long poll', () => {
  it('wakes a waiting read promptly when another task appends', async () => {
    // Guarantee: a read with maxWaitMs at the end resolves as soon as a record is appended, not at the timeout.
    const log = await open(tempDir());
    await log.createTopic('t');
    const started = Date.now();
    const pending = log.read('t', 0, 0n, { maxWaitMs: 10_000 });
    setTimeout(() => void log.append('t', [{ value: Buffer.from('hello') }]), 50);
    const r = await pending;
    const elapsed = Date.now() - started;
    expect(values(r.records)).toEqual(['hello']);
    expect(r.nextOffset).toBe(1n);
    expect(elapsed).toBeGreaterThanOrEqual(40);
    expect(elapsed).toBeLessThan(2_000);
  });

  it('resolves empty at the timeout', async () => {
    // Guarantee: a long poll with nothing to read resolves empty after maxWaitMs.
    const log = await open(tempDir());
    await log.createTopic('t');
    await log.append('t', [{ value: Buffer.from('x') }]);
    const started = Date.now();
    const r = await log.read('t', 0, 1n, { maxWaitMs: 200 });
    const elapsed = Date.now() - started;
    expect(r).toMatchObject({ records: [], nextOffset: 1n, highWatermark: 1n });
    expect(elapsed).toBeGreaterThanOrEqual(180);
    expect(elapsed).toBeLessThan(3_000);
  });

  it('resolves empty when its AbortSignal fires, and at once when already aborted', async () => {
    // Guarantee: an aborted long poll stops waiting immediately and resolves empty.
    const log = await open(tempDir());
    await log.createTopic('t');
    const controller = new AbortController();
    const started = Date.now();
    const pending = log.read('t', 0, 0n, { maxWaitMs: 10_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    const r = await pending;
    expect(r.records).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2_000);
    const t2 = Date.now();
    expect((await log.read('t', 0, 0n, { maxWaitMs: 10_000, signal: AbortSignal.abort() })).records).toEqual([]);
    expect(Date.now() - t2).toBeLessThan(1_000);
  });

  it('resolves pending long polls empty when the log closes', async () => {
    // Guarantee: close() releases waiting readers instead of leaving them hanging.
    const log = await open(tempDir());
    await log.createTopic('t');
    const started = Date.now();
    const pending = log.read('t', 0, 0n, { maxWaitMs: 10_000 });
    await sleep(20);
    await log.close();
    expect((await pending).records).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('segments', () => {
  it('rolls segments by size and reads across them', async () => {
    // Guarantee: no segment grows past segmentBytes (beyond a single oversized batch) and reads span segment boundaries.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never', segmentBytes: 1024 });
    for (let i = 0; i < 60; i++) await log.append('t', [{ value: Buffer.from(`record-${i}-`.padEnd(100, '.')) }]);
    await log.append('t', [{ value: Buffer.alloc(3000, 7) }]);
    await log.append('t', [{ value: Buffer.from('after-big') }]);
    const d = (await log.describeTopic('t')).partitions[0]!;
    const files = segmentFiles(log.dataDir, 't', 0);
    expect(d.segments).toBe(files.length);
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) {
      const size = fs.statSync(f).size;
      if (size > 1024) expect(batchesOnDisk(log.dataDir, 't', 0).some((b) => b.size === size)).toBe(true);
    }
    expect(d.sizeBytes).toBe(files.reduce((n, f) => n + fs.statSync(f).size, 0));
    const expected = [...Array.from({ length: 60 }, (_, i) => `record-${i}-`.padEnd(100, '.')), Buffer.alloc(3000, 7).toString(), 'after-big'];
    expect(values(await readAll(log, 't', 0))).toEqual(expected);
    // A byte budget of about two segments: reads continue into the next segment with what is left.
    expect(values(await readAll(log, 't', 0, 0n, 2000))).toEqual(expected);
    expect(values(await readAll(log, 't', 0, 33n))).toEqual(expected.slice(33));
    const reopened = await reopen(log);
    expect(values(await readAll(reopened, 't', 0))).toEqual(expected);
  });

  it('rolls a segment once its first batch is older than segmentMs', async () => {
    // Guarantee: time-based rolling starts a new segment for an append made segmentMs after the segment's first.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never', segmentMs: 250 });
    await log.append('t', [{ value: Buffer.from('a') }]);
    await log.append('t', [{ value: Buffer.from('b') }]);
    expect((await log.describeTopic('t')).partitions[0]!.segments).toBe(1);
    await sleep(300);
    await log.append('t', [{ value: Buffer.from('c') }]);
    expect((await log.describeTopic('t')).partitions[0]!.segments).toBe(2);
    expect(segmentFiles(log.dataDir, 't', 0).map((f) => path.basename(f))).toEqual(['00000000000000000000.log', '00000000000000000002.log']);
    expect(values(await readAll(log, 't', 0))).toEqual(['a', 'b', 'c']);
  });
});

describe('retention', () => {
  it('deletes whole old segments by size and moves the start offset', async () => {
    // Guarantee: size retention removes oldest whole segments while the rest still reaches retentionBytes; below the start reads throw OFFSET_OUT_OF_RANGE.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never', segmentBytes: 1024, retentionBytes: 3000 });
    const all = Array.from({ length: 120 }, (_, i) => `v${i}`.padEnd(100, '-'));
    for (const v of all) await log.append('t', [{ value: Buffer.from(v) }]);
    const before = (await log.describeTopic('t')).partitions[0]!;
    const basesBefore = segmentFiles(log.dataDir, 't', 0).map((f) => BigInt(path.basename(f).slice(0, 20)));
    log.runMaintenance(Date.now());
    const after = (await log.describeTopic('t')).partitions[0]!;
    const files = segmentFiles(log.dataDir, 't', 0);
    expect(after.segments).toBe(files.length);
    expect(after.segments).toBeLessThan(before.segments);
    expect(after.endOffset).toBe(120n);
    expect(after.startOffset).toBeGreaterThan(0n);
    expect(basesBefore).toContain(after.startOffset);
    expect(BigInt(path.basename(files[0]!).slice(0, 20))).toBe(after.startOffset);
    // Whole segments only, and not more than needed: dropping one more would go below retentionBytes.
    expect(after.sizeBytes).toBeGreaterThanOrEqual(3000);
    expect(after.sizeBytes - fs.statSync(files[0]!).size).toBeLessThan(3000);
    expect(await log.offsetFor('t', 0, { kind: 'earliest' })).toBe(after.startOffset);
    const rest = await readAll(log, 't', 0);
    expect(offsets(rest)[0]).toBe(after.startOffset);
    expect(values(rest)).toEqual(all.slice(Number(after.startOffset)));
    await rejects(log.read('t', 0, after.startOffset - 1n), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.read('t', 0, 0n), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.offsetFor('t', 0, { kind: 'offset', offset: 0n }), 'OFFSET_OUT_OF_RANGE');
    const reopened = await reopen(log);
    expect((await reopened.describeTopic('t')).partitions[0]).toMatchObject({ startOffset: after.startOffset, endOffset: 120n });
  });

  it('deletes segments whose newest record is older than retentionMs, then the expired active segment', async () => {
    // Guarantee: time retention removes only expired whole segments, and eventually the expired active one, keeping offsets monotonic.
    const log = await open(tempDir());
    const HOUR = 3_600_000;
    await log.createTopic('t', { fsync: 'never', segmentBytes: 1024, retentionMs: HOUR });
    const now = Date.now();
    // 40 old records (a day ago), then 40 recent ones; each 100-byte record is its own batch.
    for (let i = 0; i < 40; i++) await log.append('t', [{ value: Buffer.alloc(100, 1), timestamp: now - 24 * HOUR + i }]);
    for (let i = 0; i < 40; i++) await log.append('t', [{ value: Buffer.alloc(100, 2) }]);
    log.runMaintenance(now);
    let d = (await log.describeTopic('t')).partitions[0]!;
    // Every segment made only of old records is gone; the one holding offset 39 may mix old and new.
    expect(d.startOffset).toBeGreaterThan(0n);
    expect(d.startOffset).toBeLessThanOrEqual(39n);
    const firstLeft = await log.read('t', 0, d.startOffset, { maxBytes: 1 });
    expect(firstLeft.records[0]!.offset).toBe(d.startOffset);
    expect((await readAll(log, 't', 0)).filter((r) => r.value![0] === 2)).toHaveLength(40);

    const later = now + 2 * HOUR;
    log.runMaintenance(later);
    log.runMaintenance(later);
    d = (await log.describeTopic('t')).partitions[0]!;
    expect(d).toMatchObject({ startOffset: 80n, endOffset: 80n });
    await rejects(log.read('t', 0, 79n), 'OFFSET_OUT_OF_RANGE');
    const ack = await log.append('t', [{ value: Buffer.from('fresh') }]);
    expect(ack.offsetOf(0)).toBe(80n);
    expect(values(await readAll(log, 't', 0))).toEqual(['fresh']);
    const reopened = await reopen(log);
    expect((await reopened.describeTopic('t')).partitions[0]).toMatchObject({ startOffset: 80n, endOffset: 81n });
  });
});

describe('compaction', () => {
  async function compactedTopic(): Promise<{ log: EmbeddedLog; appended: Array<{ offset: bigint; key: string; value: string | null }> }> {
    const log = await open(tempDir());
    await log.createTopic('c', { cleanup: 'compact', segmentBytes: 512, fsync: 'never', tombstoneRetentionMs: 60_000 });
    const appended: Array<{ offset: bigint; key: string; value: string | null }> = [];
    const put = async (key: string, value: string | null): Promise<void> => {
      const ack = await log.append('c', [{ key: Buffer.from(key), value: value === null ? null : Buffer.from(value) }]);
      appended.push({ offset: ack.offsetOf(0), key, value });
    };
    for (let i = 0; i < 60; i++) await put(`k${(i * 7) % 10}`, `value-${i}`.padEnd(40, '.'));
    await put('k3', null); // the newest k3 is a tombstone
    await put('k5', null);
    await put('k5', 'k5-after-tombstone'); // k5's tombstone is superseded
    for (let i = 0; i < 10; i++) await put(`k${i === 3 ? 4 : i}`, `final-${i}`); // recent values for all but k3
    // A batch bigger than segmentBytes rolls into its own segment, so everything before it is sealed.
    await put('filler', 'F'.repeat(600));
    return { log, appended };
  }

  it('keeps the newest record per key with its original offset, and the tombstone within tombstoneRetentionMs', async () => {
    // Guarantee: compaction leaves exactly the newest record of each key at its original offset, tombstones included while young.
    const { log, appended } = await compactedTopic();
    expect((await log.describeTopic('c')).partitions[0]!.segments).toBeGreaterThan(3);
    const before = await readAll(log, 'c', 0);
    expect(before).toHaveLength(appended.length);
    const sizeBefore = (await log.describeTopic('c')).partitions[0]!.sizeBytes;
    log.runMaintenance(Date.now(), { forceCompaction: true });
    const newest = new Map<string, (typeof appended)[number]>();
    for (const a of appended) newest.set(a.key, a);
    const expected = [...newest.values()].sort((a, b) => (a.offset < b.offset ? -1 : 1));
    const check = async (l: EmbeddedLog): Promise<void> => {
      const after = await readAll(l, 'c', 0);
      expect(after.map((r) => [r.offset, text(r.key), text(r.value)])).toEqual(expected.map((e) => [e.offset, e.key, e.value]));
      expect(after.find((r) => text(r.key) === 'k3')!.value).toBeNull();
      const d = (await l.describeTopic('c')).partitions[0]!;
      expect(d).toMatchObject({ startOffset: 0n, endOffset: BigInt(appended.length) });
      expect(d.sizeBytes).toBeLessThan(sizeBefore);
    };
    await check(log);
    // A read at an offset compaction removed starts at the next surviving record.
    const gap = appended.find((a) => newest.get(a.key) !== a)!.offset;
    const r = await log.read('c', 0, gap, { maxBytes: 1 });
    expect(r.records.length).toBeGreaterThan(0);
    expect(r.records[0]!.offset).toBe(expected.find((e) => e.offset > gap)!.offset);
    await check(await reopen(log));
  });

  it('drops a tombstone once it is older than tombstoneRetentionMs', async () => {
    // Guarantee: compaction removes tombstones only after tombstoneRetentionMs, and nothing else that is newest.
    const { log, appended } = await compactedTopic();
    log.runMaintenance(Date.now(), { forceCompaction: true });
    const young = await readAll(log, 'c', 0);
    expect(young.some((r) => text(r.key) === 'k3' && r.value === null)).toBe(true);
    log.runMaintenance(Date.now() + 61_000, { forceCompaction: true });
    const old = await readAll(log, 'c', 0);
    expect(old.some((r) => text(r.key) === 'k3')).toBe(false);
    expect(old.map((r) => r.offset)).toEqual(young.filter((r) => text(r.key) !== 'k3').map((r) => r.offset));
    expect(old.every((r) => r.value !== null)).toBe(true);
    expect((await log.describeTopic('c')).partitions[0]!.endOffset).toBe(BigInt(appended.length));
  });

  it('rejects records without a key in a compacted topic', async () => {
    // Guarantee: a compacted topic never stores a null-key record, whether the call is keyless or mixed.
    const log = await open(tempDir());
    await log.createTopic('c', { cleanup: 'compact', partitions: 2 });
    await rejects(log.append('c', [{ value: Buffer.from('x') }]), 'INVALID_ARGUMENT');
    await rejects(log.append('c', [{ key: null, value: Buffer.from('x') }]), 'INVALID_ARGUMENT');
    await rejects(log.append('c', [{ key: Buffer.from('k'), value: Buffer.from('x') }, { value: Buffer.from('y') }]), 'INVALID_ARGUMENT');
    await rejects(log.append('c', [{ value: Buffer.from('y'), partition: 0 }]), 'INVALID_ARGUMENT');
    const d = await log.describeTopic('c');
    expect(d.partitions.map((p) => p.endOffset)).toEqual([0n, 0n]);
    await log.append('c', [{ key: Buffer.alloc(0), value: null }]);
  });
});

describe('durability', () => {
  it.each(['always', 'interval', 'never'] as const)('keeps every acknowledged record across close and reopen with fsync %s', async (fsync) => {
    // Guarantee: whatever the fsync policy, a clean close persists every acknowledged append.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync, partitions: 2, segmentBytes: 2048, fsyncIntervalMs: 10 });
    const sent: string[][] = [[], []];
    for (let i = 0; i < 100; i++) {
      const ack = await log.append('t', [{ key: Buffer.from(`k${i % 7}`), value: Buffer.from(`v${i}`) }]);
      sent[ack.partitionOf(0)]!.push(`v${i}`);
    }
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.append('t', [{ value: Buffer.from(`c${i}`), partition: i % 2 }]).then(() => sent[i % 2]!.push(`c${i}`))));
    const reopened = await reopen(log);
    for (const p of [0, 1]) expect(values(await readAll(reopened, 't', p))).toEqual(sent[p]);
  });

  it('gives 2000 concurrent fsync=always appends distinct dense offsets in call order, sharing few fsyncs', async () => {
    // Guarantee: concurrent appends are ordered by call order with dense offsets, and group commit makes them share fsyncs.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'always' });
    // Under fsync=always the high watermark only moves when a group's fsync completes, so the
    // distinct watermarks seen by the appends as they resolve count the fsync groups exactly.
    const watermarks = new Set<bigint>();
    const acks = await Promise.all(
      Array.from({ length: 2000 }, (_, i) =>
        log.append('t', [{ value: Buffer.from(String(i)) }]).then(async (ack) => {
          watermarks.add(await log.offsetFor('t', 0, { kind: 'latest' }));
          return ack;
        }),
      ),
    );
    expect(acks.map((a) => a.offsetOf(0))).toEqual(range(0, 2000));
    expect(watermarks.size).toBeLessThanOrEqual(20);
    const all = await readAll(log, 't', 0);
    expect(values(all)).toEqual(Array.from({ length: 2000 }, (_, i) => String(i)));

    // 20 producers each awaiting 100 appends in turn: without group commit that is 2000 fsyncs.
    watermarks.clear();
    const seen: bigint[][] = Array.from({ length: 20 }, () => []);
    await Promise.all(
      seen.map(async (mine, producer) => {
        for (let i = 0; i < 100; i++) {
          const ack = await log.append('t', [{ value: Buffer.from(`${producer}:${i}`) }]);
          watermarks.add(await log.offsetFor('t', 0, { kind: 'latest' }));
          mine.push(ack.offsetOf(0));
        }
      }),
    );
    const allOffsets = seen.flat().sort((a, b) => (a < b ? -1 : 1));
    expect(allOffsets).toEqual(range(2000, 4000));
    for (const mine of seen) for (let i = 1; i < mine.length; i++) expect(mine[i]! > mine[i - 1]!).toBe(true);
    expect(watermarks.size).toBeLessThanOrEqual(400);
    const reopened = await reopen(log);
    expect((await reopened.describeTopic('t')).partitions[0]!.endOffset).toBe(4000n);
  });
});

describe('consumer groups', () => {
  async function topicWithData(partitions: number, perPartition: number): Promise<EmbeddedLog> {
    const log = await open(tempDir());
    await log.createTopic('t', { partitions, fsync: 'never' });
    for (let p = 0; p < partitions; p++) {
      await log.append('t', Array.from({ length: perPartition }, (_, i) => ({ value: Buffer.from(`p${p}-${i}`), partition: p, timestamp: 1_000 * (i + 1) })));
    }
    return log;
  }

  it('keeps committed offsets across reopen and lists the group', async () => {
    // Guarantee: commitOffsets is durable and committedOffsets/listGroups reflect the newest commit per partition.
    const log = await topicWithData(3, 10);
    await log.commitOffsets('g1', [{ topic: 't', partition: 0, offset: 4n }, { topic: 't', partition: 2, offset: 10n }]);
    await log.commitOffsets('g1', [{ topic: 't', partition: 0, offset: 6n }]);
    await log.commitOffsets('g2', [{ topic: 't', partition: 1, offset: 0n }]);
    await rejects(log.commitOffsets('g1', [{ topic: 't', partition: 1, offset: 11n }]), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.commitOffsets('g1', [{ topic: 't', partition: 1, offset: -1n }]), 'OFFSET_OUT_OF_RANGE');
    await rejects(log.commitOffsets('', [{ topic: 't', partition: 1, offset: 1n }]), 'INVALID_ARGUMENT');
    const expected = [
      { topic: 't', partition: 0, offset: 6n },
      { topic: 't', partition: 2, offset: 10n },
    ];
    expect(await log.committedOffsets('g1')).toEqual(expected);
    expect(await log.committedOffsets('unknown')).toEqual([]);
    const reopened = await reopen(log);
    expect(await reopened.committedOffsets('g1')).toEqual(expected);
    expect(await reopened.committedOffsets('g2')).toEqual([{ topic: 't', partition: 1, offset: 0n }]);
    expect(await reopened.listGroups()).toEqual(['g1', 'g2']);
  });

  it('describes a group with committed offsets, end offsets and lag', async () => {
    // Guarantee: lag is end - committed, or end - start for partitions the group never committed.
    const log = await topicWithData(3, 10);
    await log.append('t', [{ value: Buffer.from('more'), partition: 1 }]);
    await log.commitOffsets('g', [{ topic: 't', partition: 0, offset: 4n }, { topic: 't', partition: 1, offset: 11n }]);
    expect(await log.describeGroup('g')).toEqual([
      { topic: 't', partition: 0, committed: 4n, endOffset: 10n, lag: 6n },
      { topic: 't', partition: 1, committed: 11n, endOffset: 11n, lag: 0n },
      { topic: 't', partition: 2, committed: null, endOffset: 10n, lag: 10n },
    ]);
    expect(await log.describeGroup('nobody')).toEqual([]);
  });

  it('resets a group to earliest, latest and a timestamp', async () => {
    // Guarantee: resetGroup commits and returns offsetFor(spec) for every partition of the topic.
    const log = await topicWithData(2, 10);
    const latest = await log.resetGroup('g', 't', { kind: 'latest' });
    expect(latest.map((o) => o.offset)).toEqual([10n, 10n]);
    expect(await log.committedOffsets('g')).toEqual(latest);
    const byTime = await log.resetGroup('g', 't', { kind: 'timestamp', timestamp: 3_500 });
    expect(byTime.map((o) => o.offset)).toEqual([3n, 3n]);
    expect(await log.committedOffsets('g')).toEqual(byTime);
    const earliest = await log.resetGroup('g', 't', { kind: 'earliest' });
    expect(earliest).toEqual([
      { topic: 't', partition: 0, offset: 0n },
      { topic: 't', partition: 1, offset: 0n },
    ]);
    expect(await (await reopen(log)).committedOffsets('g')).toEqual(earliest);
  });

  it('shares one poll among partitions that all have a backlog, and still reads every record once in order', async () => {
    // Guarantee: a backlog in the first partition does not fill a whole poll (each partition with data gets its share), and polls drain every partition exactly once, in offset order.
    const log = await open(tempDir());
    await log.createTopic('t', { partitions: 4, fsync: 'never' });
    const value = Buffer.alloc(1024, 0x61);
    for (let p = 0; p < 4; p++) {
      for (let b = 0; b < 10; b++) await log.append('t', Array.from({ length: 100 }, () => ({ value, partition: p })));
    }
    const c = await consumer(log, 'g', ['t']);
    const first = await c.poll({ maxBytes: 1 << 20 });
    const perPartition = [0, 1, 2, 3].map((p) => first.filter((r) => r.partition === p).length);
    expect(perPartition.every((n) => n > 0), `records per partition in one poll: ${perPartition.join(', ')}`).toBe(true);
    expect(first.reduce((n, r) => n + r.value!.length, 0)).toBeLessThanOrEqual((1 << 20) + 100 * 1024);
    const seen: bigint[][] = [[], [], [], []];
    for (const r of first) seen[r.partition]!.push(r.offset);
    for (let polls = 0; seen.some((s) => s.length < 1000) && polls < 50; polls++) {
      for (const r of await c.poll({ maxBytes: 1 << 20 })) seen[r.partition]!.push(r.offset);
    }
    for (const offsets of seen) expect(offsets).toEqual(range(0, 1000));
  });

  it('splits partitions between two members, disjoint and covering, and each polls only its own', async () => {
    // Guarantee: members of one group own disjoint sets of partitions that together cover the topic.
    const log = await topicWithData(5, 4);
    const a = await consumer(log, 'g', ['t']);
    const b = await consumer(log, 'g', ['t']);
    const pa = a.assignment().map((tp) => tp.partition);
    const pb = b.assignment().map((tp) => tp.partition);
    expect(pa.length).toBeGreaterThan(0);
    expect(pb.length).toBeGreaterThan(0);
    expect(pa.filter((p) => pb.includes(p))).toEqual([]);
    expect([...pa, ...pb].sort()).toEqual([0, 1, 2, 3, 4]);
    const drain = async (c: Consumer): Promise<LogRecord[]> => {
      const out: LogRecord[] = [];
      for (let i = 0; i < 20; i++) out.push(...(await c.poll()));
      return out;
    };
    const ra = await drain(a);
    const rb = await drain(b);
    expect(new Set(ra.map((r) => r.partition))).toEqual(new Set(pa));
    expect(new Set(rb.map((r) => r.partition))).toEqual(new Set(pb));
    expect(ra.length + rb.length).toBe(20);
    expect(new Set([...ra, ...rb].map((r) => `${r.partition}/${r.offset}`)).size).toBe(20);
  });

  it('refuses a commit for a partition the member lost, and a seek to it', async () => {
    // Guarantee: a member that lost a partition cannot overwrite the new owner's offset (NOT_ASSIGNED).
    const log = await topicWithData(2, 5);
    const a = await consumer(log, 'g', ['t']);
    expect(a.assignment()).toHaveLength(2);
    expect(await a.poll()).toHaveLength(10);
    await a.commit([{ topic: 't', partition: 1, offset: 2n }]);
    const b = await consumer(log, 'g', ['t']);
    const lost = b.assignment()[0]!.partition;
    expect(a.assignment().map((tp) => tp.partition)).not.toContain(lost);
    await rejects(a.commit([{ topic: 't', partition: lost, offset: 5n }]), 'NOT_ASSIGNED');
    throwsSync(() => a.seek('t', lost, 0n), 'NOT_ASSIGNED');
    expect((await log.committedOffsets('g')).find((o) => o.partition === lost)?.offset ?? null).toBe(lost === 1 ? 2n : null);
    // Its remaining partition still commits.
    const kept = a.assignment()[0]!.partition;
    await a.commit([{ topic: 't', partition: kept, offset: 5n }]);
    await a.commit();
    expect((await log.committedOffsets('g')).find((o) => o.partition === kept)!.offset).toBe(5n);
  });

  it("hands a closing member's partitions to the remaining member, which resumes from the committed offsets", async () => {
    // Guarantee: when a member leaves, the others take over its partitions starting at the group's committed offsets.
    const log = await topicWithData(4, 6);
    const a = await consumer(log, 'g', ['t']);
    const b = await consumer(log, 'g', ['t']);
    const aParts = a.assignment().map((tp) => tp.partition);
    const got = await a.poll();
    expect(new Set(got.map((r) => r.partition))).toEqual(new Set(aParts));
    // Commit only part of what was read: offset 3 of each of a's partitions.
    await a.commit(aParts.map((partition) => ({ topic: 't', partition, offset: 3n })));
    await a.close();
    expect(b.assignment().map((tp) => tp.partition).sort()).toEqual([0, 1, 2, 3]);
    const records: LogRecord[] = [];
    for (let i = 0; i < 10; i++) records.push(...(await b.poll()));
    for (const p of aParts) {
      expect(records.filter((r) => r.partition === p).map((r) => r.offset)).toEqual([3n, 4n, 5n]);
    }
    for (const p of [0, 1, 2, 3].filter((p) => !aParts.includes(p))) {
      expect(records.filter((r) => r.partition === p).map((r) => r.offset)).toEqual(range(0, 6));
    }
  });

  it('resumes from committed offsets after a reopen, without redelivering committed records', async () => {
    // Guarantee: a new member of a group starts at the group's committed offsets; commit() without arguments commits what poll returned.
    const log = await topicWithData(2, 8);
    const a = await consumer(log, 'g', ['t']);
    const first = await a.poll({ maxBytes: 1 });
    expect(first.length).toBeGreaterThan(0);
    await a.commit();
    const committed = await log.committedOffsets('g');
    expect(committed.map((o) => o.offset)).toEqual(a.positions().map((o) => o.offset));
    await a.close();
    const reopened = await reopen(log);
    const b = await consumer(reopened, 'g', ['t']);
    expect(b.positions()).toEqual(committed);
    const rest: LogRecord[] = [];
    for (let i = 0; i < 10; i++) rest.push(...(await b.poll()));
    const seen = new Set([...first, ...rest].map((r) => `${r.partition}/${r.offset}`));
    expect(seen.size).toBe(16);
    expect(first.length + rest.length).toBe(16);
  });

  it('continues from the earliest (or latest) stored record when retention removed the committed position', async () => {
    // Guarantee: like Kafka's auto.offset.reset, a committed offset below the log start does not wedge the consumer.
    const log = await open(tempDir());
    await log.createTopic('t', { fsync: 'never', segmentBytes: 1024, retentionBytes: 2048 });
    for (let i = 0; i < 60; i++) await log.append('t', [{ value: Buffer.from(`v${i}`.padEnd(100, '.')) }]);
    await log.commitOffsets('early', [{ topic: 't', partition: 0, offset: 2n }]);
    await log.commitOffsets('late', [{ topic: 't', partition: 0, offset: 2n }]);
    log.runMaintenance(Date.now());
    const start = await log.offsetFor('t', 0, { kind: 'earliest' });
    expect(start).toBeGreaterThan(2n);

    const early = await consumer(log, 'early', ['t'], { autoOffsetReset: 'earliest' });
    const started = Date.now();
    const got = await early.poll({ maxWaitMs: 5_000 });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(got[0]!.offset).toBe(start);
    expect(offsets(got)).toEqual(range(Number(start), Number(start) + got.length));

    const late = await consumer(log, 'late', ['t'], { autoOffsetReset: 'latest' });
    expect(await late.poll({ maxWaitMs: 100 })).toEqual([]);
    await log.append('t', [{ value: Buffer.from('new') }]);
    expect(values(await late.poll({ maxWaitMs: 1_000 }))).toEqual(['new']);
  });

  it('starts a group with no committed offset at the earliest or the latest record as asked', async () => {
    // Guarantee: autoOffsetReset decides where a partition without a committed offset starts.
    const log = await topicWithData(1, 5);
    const e = await consumer(log, 'ge', ['t']);
    expect(e.positions()).toEqual([{ topic: 't', partition: 0, offset: 0n }]);
    const l = await consumer(log, 'gl', ['t'], { autoOffsetReset: 'latest' });
    expect(l.positions()).toEqual([{ topic: 't', partition: 0, offset: 5n }]);
    const waiting = l.poll({ maxWaitMs: 5_000 });
    setTimeout(() => void log.append('t', [{ value: Buffer.from('late') }]), 30);
    expect(values(await waiting)).toEqual(['late']);
  });
});

describe('open modes', () => {
  it('serves reads to a read-only open that follows a live writer, and refuses its writes', async () => {
    // Guarantee: readOnly opens need no lock, see the writer's appends (also by long poll) and throw LOG_READ_ONLY on mutation.
    const dir = tempDir();
    const writer = await open(dir);
    await writer.createTopic('t', { segmentBytes: 1024 });
    await writer.append('t', [{ value: Buffer.from('one') }]);
    await writer.commitOffsets('g', [{ topic: 't', partition: 0, offset: 1n }]);
    const reader = await open(dir, { readOnly: true });
    expect(await reader.listTopics()).toContain('t');
    expect(values(await readAll(reader, 't', 0))).toEqual(['one']);
    expect(await reader.committedOffsets('g')).toEqual([{ topic: 't', partition: 0, offset: 1n }]);

    // Appends after the reader opened, across several segments.
    for (let i = 0; i < 30; i++) await writer.append('t', [{ value: Buffer.from(`r${i}`.padEnd(100, '.')) }]);
    expect((await writer.describeTopic('t')).partitions[0]!.segments).toBeGreaterThan(2);
    expect(await reader.offsetFor('t', 0, { kind: 'latest' })).toBe(31n);
    expect((await readAll(reader, 't', 0)).length).toBe(31);

    // A long poll in the reader wakes on the writer's append (by polling the files).
    const started = Date.now();
    const pending = reader.read('t', 0, 31n, { maxWaitMs: 10_000 });
    setTimeout(() => void writer.append('t', [{ value: Buffer.from('live') }]), 50);
    const r = await pending;
    expect(values(r.records)).toEqual(['live']);
    expect(Date.now() - started).toBeLessThan(2_000);

    // Topics created after the reader opened.
    await writer.createTopic('later');
    await writer.append('later', [{ value: Buffer.from('x') }]);
    expect(await reader.listTopics()).toContain('later');
    expect(values(await readAll(reader, 'later', 0))).toEqual(['x']);

    await rejects(reader.createTopic('nope'), 'LOG_READ_ONLY');
    await rejects(reader.deleteTopic('t'), 'LOG_READ_ONLY');
    await rejects(reader.append('t', [{ value: Buffer.from('no') }]), 'LOG_READ_ONLY');
    await rejects(reader.commitOffsets('g', [{ topic: 't', partition: 0, offset: 0n }]), 'LOG_READ_ONLY');
    await rejects(reader.resetGroup('g', 't', { kind: 'earliest' }), 'LOG_READ_ONLY');
    expect((await writer.describeTopic('t')).partitions[0]!.endOffset).toBe(32n);
    await reader.close();
    // The writer is unaffected by the reader closing.
    await writer.append('t', [{ value: Buffer.from('after') }]);
    expect((await writer.describeTopic('t')).partitions[0]!.endOffset).toBe(33n);
  });

  it('refuses a second writable open of the same directory with DATA_DIR_LOCKED, until the first closes', async () => {
    // Guarantee: one writer per data directory, also within one process.
    const dir = tempDir();
    const first = await open(dir);
    await first.createTopic('t');
    const err = await rejects(openLog(dir, { maintenanceIntervalMs: 0 }), 'DATA_DIR_LOCKED');
    expect(err.message).toContain(String(process.pid));
    await first.append('t', [{ value: Buffer.from('still works') }]);
    await first.close();
    const second = await open(dir);
    expect(values(await readAll(second, 't', 0))).toEqual(['still works']);
  });

  it('throws LOG_CLOSED from every call after close, and close is idempotent', async () => {
    // Guarantee: a closed log fails fast with LOG_CLOSED instead of touching released files.
    const log = await open(tempDir());
    await log.createTopic('t');
    const c = await consumer(log, 'g', ['t']);
    await log.close();
    await log.close();
    await rejects(log.createTopic('u'), 'LOG_CLOSED');
    await rejects(log.deleteTopic('t'), 'LOG_CLOSED');
    await rejects(log.listTopics(), 'LOG_CLOSED');
    await rejects(log.describeTopic('t'), 'LOG_CLOSED');
    await rejects(log.append('t', [{ value: Buffer.from('x') }]), 'LOG_CLOSED');
    await rejects(log.read('t', 0, 0n), 'LOG_CLOSED');
    await rejects(log.offsetFor('t', 0, { kind: 'latest' }), 'LOG_CLOSED');
    await rejects(log.commitOffsets('g', []), 'LOG_CLOSED');
    await rejects(log.committedOffsets('g'), 'LOG_CLOSED');
    await rejects(log.listGroups(), 'LOG_CLOSED');
    await rejects(log.describeGroup('g'), 'LOG_CLOSED');
    await rejects(log.resetGroup('g', 't', { kind: 'earliest' }), 'LOG_CLOSED');
    await rejects(log.subscribe('g', ['t']), 'LOG_CLOSED');
    await rejects(c.poll(), 'LOG_CLOSED');
    await c.close();
    await rejects(c.poll(), 'LOG_CLOSED');
    await rejects(c.commit(), 'LOG_CLOSED');
  });
});

describe('indexes', () => {
  /** A topic whose first segments are sealed with many sparse index entries, and the expected records. */
  async function indexedTopic(): Promise<{ dir: string; timestamps: number[] }> {
    const dir = tempDir();
    const log = await open(dir);
    await log.createTopic('t', { fsync: 'never', segmentBytes: 48 * 1024 });
    const timestamps: number[] = [];
    // ~600-byte batches of 1-3 records; timestamps mostly rise but sometimes go back.
    for (let i = 0; i < 300; i++) {
      const n = 1 + (i % 3);
      const batch = Array.from({ length: n }, (_, j) => {
        const ts = 1_000_000 + i * 100 + j * 10 - (i % 7 === 3 ? 450 : 0);
        timestamps.push(ts);
        return { value: Buffer.alloc(200, i % 251), key: Buffer.from(`k${i}-${j}`), timestamp: ts };
      });
      await log.append('t', batch);
    }
    expect((await log.describeTopic('t')).partitions[0]!.segments).toBeGreaterThanOrEqual(3);
    await log.close();
    return { dir, timestamps };
  }

  async function checkLog(dir: string, timestamps: number[]): Promise<void> {
    const log = await open(dir);
    const n = timestamps.length;
    const d = (await log.describeTopic('t')).partitions[0]!;
    expect(d).toMatchObject({ startOffset: 0n, endOffset: BigInt(n) });
    const all = await readAll(log, 't', 0);
    expect(all.map((r) => r.timestamp)).toEqual(timestamps);
    for (let o = 0; o < n; o += 7) {
      const r = await log.read('t', 0, BigInt(o));
      expect(r.records[0]?.offset, `read at ${o}`).toBe(BigInt(o));
    }
    for (let t = 999_000; t <= 1_000_000 + 300 * 100 + 100; t += 137) {
      const expected = timestamps.findIndex((ts) => ts >= t);
      expect(await log.offsetFor('t', 0, { kind: 'timestamp', timestamp: t }), `timestamp ${t}`).toBe(BigInt(expected < 0 ? n : expected));
    }
    await log.close();
  }

  function sealedIndexFiles(dir: string): { index: string; timeindex: string }[] {
    const logs = segmentFiles(dir, 't', 0);
    return logs.slice(0, -1).map((f) => ({ index: f.replace(/\.log$/, '.index'), timeindex: f.replace(/\.log$/, '.timeindex') }));
  }

  it('rebuilds deleted index files of sealed segments', async () => {
    // Guarantee: the index files are only a cache: without them reads and timestamp lookups stay right.
    const { dir, timestamps } = await indexedTopic();
    const sealed = sealedIndexFiles(dir);
    expect(fs.statSync(sealed[0]!.index).size).toBeGreaterThan(8 * 4);
    fs.rmSync(sealed[0]!.index);
    fs.rmSync(sealed[1]!.timeindex);
    await checkLog(dir, timestamps);
    expect(fs.existsSync(sealed[0]!.index)).toBe(true);
    await checkLog(dir, timestamps);
  });

  it('rebuilds garbled index files of sealed segments', async () => {
    // Guarantee: index files with garbage, a torn size or emptied are detected and rebuilt, never trusted.
    const { dir, timestamps } = await indexedTopic();
    const sealed = sealedIndexFiles(dir);
    const pristine = sealed.map((s) => ({ index: fs.readFileSync(s.index), timeindex: fs.readFileSync(s.timeindex) }));
    // A deterministic PRNG so a failure reproduces.
    let seed = 12345;
    const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) & 0xff;
    const garbage = (n: number): Buffer => Buffer.from(Array.from({ length: n }, rand));
    const damages: Array<[string, (s: { index: string; timeindex: string }) => void]> = [
      ['random bytes in both', (s) => {
        fs.writeFileSync(s.index, garbage(fs.statSync(s.index).size));
        fs.writeFileSync(s.timeindex, garbage(fs.statSync(s.timeindex).size));
      }],
      ['torn sizes', (s) => {
        fs.truncateSync(s.index, fs.statSync(s.index).size - 3);
        fs.truncateSync(s.timeindex, fs.statSync(s.timeindex).size - 5);
      }],
      ['emptied', (s) => {
        fs.writeFileSync(s.index, Buffer.alloc(0));
        fs.writeFileSync(s.timeindex, Buffer.alloc(0));
      }],
      ['zeroed', (s) => {
        fs.writeFileSync(s.index, Buffer.alloc(fs.statSync(s.index).size));
        fs.writeFileSync(s.timeindex, Buffer.alloc(fs.statSync(s.timeindex).size));
      }],
      ['swapped between segments', (s) => {
        const other = sealed.find((o) => o !== s)!;
        fs.writeFileSync(s.index, fs.readFileSync(other.index));
        fs.writeFileSync(s.timeindex, fs.readFileSync(other.timeindex));
      }],
      ['time index pointing at the wrong batches', (s) => {
        const buf = fs.readFileSync(s.timeindex);
        for (let p = 0; p < buf.length; p += 12) buf.writeUInt32BE(buf.readUInt32BE(p + 8) + 100_000, p + 8);
        fs.writeFileSync(s.timeindex, buf);
      }],
    ];
    for (const [what, damage] of damages) {
      sealed.forEach((s, i) => {
        fs.writeFileSync(s.index, pristine[i]!.index);
        fs.writeFileSync(s.timeindex, pristine[i]!.timeindex);
      });
      damage(sealed[0]!);
      try {
        await checkLog(dir, timestamps);
      } catch (err) {
        throw new Error(`after ${what}: ${(err as Error).message}`, { cause: err });
      }
    }
  });
});

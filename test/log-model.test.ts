/**
 * Model-based property test of the log: random sequences of appends (sequential and concurrent),
 * reads, timestamp lookups, group commits, clean reopens and torn tails (the last segment of a
 * partition truncated by a random number of bytes while the log is closed) run against both the
 * real log and an obviously correct in-memory model: per partition an array of records and the
 * list of batches they were appended in.
 *
 * Two backends run it: the embedded log in a fresh temp dir per run, and the JetStream log under a
 * fresh prefix per run on a private 1-node nats-server. Torn tails are embedded-only (JetStream
 * owns its files); for JetStream a reopen is close + openJetStreamLog on the same prefix.
 *
 * Batch sizes are not computed by the model; after each append the new batches are found in the
 * backend's storage — the segment files by FORMAT.md's framing (baseOffset int64, batchLength
 * int32), or the partition stream's messages — which also checks that every append became exactly
 * one whole batch per partition with the model's base offset.
 *
 * fast-check prints the seed and the shrunk command sequence on failure.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { connect, type JetStreamManager, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../core/errors.ts';
import { type LogEvent, openLog } from '../core/log/embedded-log.ts';
import { openJetStreamLog } from '../core/log/jetstream/jetstream-log.ts';
import { hex } from '../core/log/jetstream/names.ts';
import { partitionForKey } from '../core/log/partitioner.ts';
import { peekBaseOffset } from '../core/log/record-batch.ts';
import type { AppendResult, FsyncPolicy, Headers, Log, LogRecord, ProducerRecord } from '../core/log/types.ts';
import { startNatsCluster, type NatsCluster } from './support/nats-cluster.ts';

const TOPIC = 't';
const GROUPS = ['g1', 'g2'] as const;
/** Explicit timestamps lie in [TS_BASE, TS_BASE + TS_SPAN]; records without one get Date.now(), which is later. */
const TS_BASE = 1_600_000_000_000;
const TS_SPAN = 10_000;

// ---------------------------------------------------------------------------------------------
// The model

interface ModelRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: Headers;
  /** The explicit timestamp, or null when the log stamped it with the time of the append... */
  timestamp: number | null;
  /** ...which then lies in [stampedAfter, stampedBefore]. */
  stampedAfter: number;
  stampedBefore: number;
}

interface ModelBatch {
  base: number;
  count: number;
  /** Bytes on disk, learned from the segment file right after the append. */
  size: number;
}

interface ModelPartition {
  /** records[i] has offset i: no retention or compaction here, so the start offset stays 0. */
  records: ModelRecord[];
  batches: ModelBatch[];
}

interface Model {
  partitions: ModelPartition[];
  /** group → partition → committed offset. */
  commits: Map<string, Map<number, bigint>>;
}

/** How a run reaches its backend's storage, beyond the Log interface. */
interface Backend {
  /** Fresh, empty storage for one run. */
  create(): Promise<Real>;
  /** Closes the log cleanly and opens it again on the same storage. */
  reopen(real: Real): Promise<void>;
  /** Fills in the sizes of the batches just appended to partition `p`, checking each is one whole batch at the model's base offset. */
  learnBatches(real: Real, p: number, batches: ModelBatch[]): Promise<void>;
  /** Whether `PartitionInfo.sizeBytes` is exactly the sum of the batch sizes (JetStream adds per-message overhead). */
  exactSizeBytes: boolean;
  destroy(real: Real): Promise<void>;
}

interface Real {
  log: Log;
  backend: Backend;
  /** The embedded log's data directory; '' for JetStream. */
  dir: string;
  events: LogEvent[];
  /** The JetStream log's prefix; '' for the embedded log. */
  prefix: string;
  /**
   * JetStream only: a second log on the same prefix, as another process would open it. Some
   * sequential appends go through it, so the two writers' views of each partition's tail diverge
   * and the offsets they agree on are checked against the model.
   */
  other: Log | null;
}

interface RunConfig {
  partitions: number;
  segmentBytes: number;
  fsync: FsyncPolicy;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function partitionDir(real: Real, p: number): string {
  return path.join(real.dir, 'topics', TOPIC, String(p));
}

function segmentFiles(real: Real, p: number): Array<{ base: bigint; file: string }> {
  const dir = partitionDir(real, p);
  return fs
    .readdirSync(dir)
    .filter((n) => /^\d{20}\.log$/.test(n))
    .sort()
    .map((n) => ({ base: BigInt(n.slice(0, 20)), file: path.join(dir, n) }));
}

/** The batches framed in a segment file: base offset, last offset delta and size. */
function framedBatches(file: string): Array<{ base: bigint; lastOffsetDelta: number; size: number }> {
  const buf = fs.readFileSync(file);
  const out: Array<{ base: bigint; lastOffsetDelta: number; size: number }> = [];
  let pos = 0;
  while (pos + 43 <= buf.length) {
    const size = 12 + buf.readInt32BE(pos + 8);
    out.push({ base: buf.readBigInt64BE(pos), lastOffsetDelta: buf.readInt32BE(pos + 19), size });
    pos += size;
  }
  if (pos !== buf.length) throw new Error(`${file}: ${buf.length - pos} trailing bytes after the last whole batch`);
  return out;
}

async function openReal(dir: string, events: LogEvent[]): Promise<Log> {
  return openLog(dir, { maintenanceIntervalMs: 0, onEvent: (e) => events.push(e) });
}

const embedded: Backend = {
  async create() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-model-'));
    const events: LogEvent[] = [];
    return { log: await openReal(dir, events), backend: embedded, dir, events, prefix: '', other: null };
  },
  async reopen(real) {
    await real.log.close();
    real.events.length = 0;
    real.log = await openReal(real.dir, real.events);
    expect(real.events.filter((e) => e.type === 'recovered'), 'a clean close leaves nothing to recover').toEqual([]);
  },
  async learnBatches(real, p, mine) {
    const files = segmentFiles(real, p);
    const firstBase = BigInt(mine[0]!.base);
    let from = 0;
    for (let i = 0; i < files.length; i++) if (files[i]!.base <= firstBase) from = i;
    const onDisk = new Map<bigint, { lastOffsetDelta: number; size: number }>();
    for (const f of files.slice(from)) for (const b of framedBatches(f.file)) onDisk.set(b.base, b);
    for (const batch of mine) {
      const found = onDisk.get(BigInt(batch.base));
      if (!found) throw new Error(`partition ${p}: no batch with base offset ${batch.base} on disk`);
      expect(found.lastOffsetDelta, `batch ${batch.base} of ${p}`).toBe(batch.count - 1);
      batch.size = found.size;
    }
  },
  exactSizeBytes: true,
  async destroy(real) {
    await real.log.close().catch(() => undefined);
    fs.rmSync(real.dir, { recursive: true, force: true });
  },
};

/** The JetStream backend's private server and a raw connection to look at its streams. */
const nats: { cluster: NatsCluster | null; nc: NatsConnection | null; jsm: JetStreamManager | null; runs: number } = { cluster: null, nc: null, jsm: null, runs: 0 };

const jetstream: Backend = {
  async create() {
    const prefix = `model${++nats.runs}`;
    const open = (): Promise<Log> => openJetStreamLog({ servers: nats.cluster!.servers, prefix, maintenanceIntervalMs: 0 });
    return { log: await open(), backend: jetstream, dir: '', events: [], prefix, other: await open() };
  },
  async reopen(real) {
    await real.log.close();
    await real.other?.close();
    real.log = await openJetStreamLog({ servers: nats.cluster!.servers, prefix: real.prefix, maintenanceIntervalMs: 0 });
    real.other = await openJetStreamLog({ servers: nats.cluster!.servers, prefix: real.prefix, maintenanceIntervalMs: 0 });
  },
  async learnBatches(real, p, mine) {
    // Every append in this test is far below the 900 KiB split, so the n-th batch of a partition
    // is the stream's message n.
    const model = (await real.log.describeTopic(TOPIC)).partitions[p]!;
    const stream = `${real.prefix}_${hex(TOPIC)}_${p}`;
    const info = await nats.jsm!.streams.info(stream);
    expect(info.state.messages, `messages in ${stream}`).toBeGreaterThanOrEqual(mine.length);
    const firstSeq = info.state.last_seq - mine.length + 1;
    for (const [k, batch] of mine.entries()) {
      const msg = await nats.jsm!.streams.getMessage(stream, { seq: firstSeq + k });
      const data = Buffer.from(msg.data);
      expect(peekBaseOffset(data, 0), `base offset of message ${firstSeq + k} of ${stream}`).toBe(BigInt(batch.base));
      expect(data.readInt32BE(19), `last offset delta of batch ${batch.base} of ${p}`).toBe(batch.count - 1);
      batch.size = data.length;
    }
    expect(model.endOffset).toBe(BigInt(mine[mine.length - 1]!.base + mine[mine.length - 1]!.count));
  },
  exactSizeBytes: false,
  async destroy(real) {
    await real.log.deleteTopic(TOPIC).catch(() => undefined);
    await real.log.close().catch(() => undefined);
    await real.other?.close().catch(() => undefined);
  },
};

async function expectOutOfRange(promise: Promise<unknown>, what: string): Promise<void> {
  try {
    await promise;
  } catch (err) {
    if (isSluiceError(err, 'OFFSET_OUT_OF_RANGE')) return;
    throw new Error(`${what}: expected OFFSET_OUT_OF_RANGE, got ${String(err)}`, { cause: err });
  }
  throw new Error(`${what}: expected OFFSET_OUT_OF_RANGE, but it succeeded`);
}

function describeRecord(r: { key: Buffer | null; value: Buffer | null; headers: Headers; timestamp: number | null }): string {
  const hex = (b: Buffer | null): string => (b === null ? 'null' : `<${b.length}:${b.subarray(0, 8).toString('hex')}>`);
  const headers = Object.entries(r.headers)
    .map(([k, v]) => `${k}=${hex(v)}`)
    .join(',');
  return `key ${hex(r.key)} value ${hex(r.value)} headers {${headers}} ts ${r.timestamp ?? 'now'}`;
}

/** Null when `got` is the model's record `want` at offset `offset` of partition `p`, else what differs. */
function recordMismatch(got: LogRecord, want: ModelRecord, p: number, offset: number): string | null {
  const problems: string[] = [];
  if (got.topic !== TOPIC || got.partition !== p) problems.push(`at ${got.topic}/${got.partition}`);
  if (got.offset !== BigInt(offset)) problems.push(`offset ${got.offset}`);
  const sameBuf = (a: Buffer | null, b: Buffer | null): boolean => (a === null || b === null ? a === b : a.equals(b));
  if (!sameBuf(got.key, want.key)) problems.push('key');
  if (!sameBuf(got.value, want.value)) problems.push('value');
  const gh = Object.keys(got.headers).sort();
  const wh = Object.keys(want.headers).sort();
  if (gh.join('\u0000') !== wh.join('\u0000') || wh.some((k) => !got.headers[k]!.equals(want.headers[k]!))) problems.push('headers');
  if (want.timestamp !== null ? got.timestamp !== want.timestamp : got.timestamp < want.stampedAfter || got.timestamp > want.stampedBefore) problems.push('timestamp');
  if (problems.length === 0) return null;
  return `${TOPIC}/${p} offset ${offset}: ${problems.join(', ')} differ: got ${describeRecord({ ...got })} at ${got.partition}/${got.offset}, want ${describeRecord(want)}`;
}

function expectRecords(got: LogRecord[], p: number, from: number, model: ModelPartition, what: string): void {
  for (let i = 0; i < got.length; i++) {
    const want = model.records[from + i];
    if (want === undefined) throw new Error(`${what}: record ${got[i]!.offset} is past the model's end ${model.records.length}`);
    const mismatch = recordMismatch(got[i]!, want, p, from + i);
    if (mismatch !== null) throw new Error(`${what}: ${mismatch}`);
  }
}

/** Everything the log says must match the model: offsets, sizes, every record, committed offsets. */
async function checkEverything(model: Model, real: Real, when: string): Promise<void> {
  const d = await real.log.describeTopic(TOPIC);
  for (const [p, mp] of model.partitions.entries()) {
    const info = d.partitions[p]!;
    expect(info.startOffset, `${when}: start of ${p}`).toBe(0n);
    expect(info.endOffset, `${when}: end of ${p}`).toBe(BigInt(mp.records.length));
    if (real.backend.exactSizeBytes) expect(info.sizeBytes, `${when}: bytes of ${p}`).toBe(mp.batches.reduce((n, b) => n + b.size, 0));
    let offset = 0;
    while (offset < mp.records.length) {
      const r = await real.log.read(TOPIC, p, BigInt(offset));
      if (r.records.length === 0) throw new Error(`${when}: read of ${p} at ${offset} returned nothing below the end ${mp.records.length}`);
      expectRecords(r.records, p, offset, mp, `${when}: full read of ${p}`);
      offset += r.records.length;
      expect(r.nextOffset, `${when}: nextOffset of ${p}`).toBe(BigInt(offset));
    }
  }
  for (const group of GROUPS) {
    const want = [...(model.commits.get(group) ?? new Map<number, bigint>()).entries()]
      .sort(([a], [b]) => a - b)
      .map(([partition, offset]) => ({ topic: TOPIC, partition, offset }));
    expect(await real.log.committedOffsets(group), `${when}: committed offsets of ${group}`).toEqual(want);
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

interface RecordSpec {
  key: string | null;
  value: Uint8Array | null;
  headers: Record<string, Uint8Array>;
  timestamp: number | null;
  /** Taken modulo the partition count; undefined lets the key or stickiness decide. */
  partition: number | undefined;
}

type Cmd = fc.AsyncCommand<Model, Real>;

class AppendCommand implements Cmd {
  /** One element: a plain append; several: appends issued concurrently, which must apply in call order. */
  constructor(readonly calls: RecordSpec[][]) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    const n = model.partitions.length;
    const producerRecords = this.calls.map((call) =>
      call.map((s): ProducerRecord => {
        const r: ProducerRecord = { key: s.key === null ? null : Buffer.from(s.key), value: s.value === null ? null : Buffer.from(s.value) };
        if (Object.keys(s.headers).length > 0) r.headers = Object.fromEntries(Object.entries(s.headers).map(([k, v]) => [k, Buffer.from(v)]));
        if (s.timestamp !== null) r.timestamp = s.timestamp;
        if (s.partition !== undefined) r.partition = s.partition % n;
        return r;
      }),
    );
    const before = Date.now();
    // Concurrent calls must apply in call order, which only holds within one process; a single
    // call of odd length goes through the other process's log when there is one.
    const writer = real.other !== null && this.calls.length === 1 && this.calls[0]!.length % 2 === 1 ? real.other : real.log;
    const acks: AppendResult[] = await Promise.all(producerRecords.map((records) => writer.append(TOPIC, records)));
    const after = Date.now();

    const newBatches: Array<{ p: number; batch: ModelBatch }> = [];
    for (const [c, records] of producerRecords.entries()) {
      const ack = acks[c]!;
      expect(ack.count).toBe(records.length);
      const stickyPartitions = new Set<number>();
      const perPartition = new Map<number, number[]>();
      records.forEach((r, i) => {
        const got = ack.partitionOf(i);
        if (r.partition !== undefined) expect(got, `record ${i} has an explicit partition`).toBe(r.partition);
        else if (r.key != null) expect(got, `record ${i} is keyed`).toBe(partitionForKey(r.key, n));
        else stickyPartitions.add(got);
        expect(got >= 0 && got < n).toBe(true);
        perPartition.set(got, [...(perPartition.get(got) ?? []), i]);
      });
      expect(stickyPartitions.size, 'keyless records of one call share a partition').toBeLessThanOrEqual(1);
      const ranges: Array<{ partition: number; baseOffset: bigint; count: number }> = [];
      for (const p of [...perPartition.keys()].sort((a, b) => a - b)) {
        const mp = model.partitions[p]!;
        const indexes = perPartition.get(p)!;
        const base = mp.records.length;
        indexes.forEach((i, k) => {
          expect(ack.offsetOf(i), `offset of record ${i} of call ${c}`).toBe(BigInt(base + k));
          const r = records[i]!;
          mp.records.push({
            key: r.key ?? null,
            value: r.value,
            headers: r.headers ?? {},
            timestamp: r.timestamp ?? null,
            stampedAfter: before,
            stampedBefore: after,
          });
        });
        const batch = { base, count: indexes.length, size: -1 };
        mp.batches.push(batch);
        newBatches.push({ p, batch });
        ranges.push({ partition: p, baseOffset: BigInt(base), count: indexes.length });
      }
      expect([...ack.ranges].sort((a, b) => a.partition - b.partition)).toEqual(ranges);
    }

    // Learn the new batches' sizes from storage, checking each is one whole batch at the right offset.
    for (const p of new Set(newBatches.map((b) => b.p))) {
      await real.backend.learnBatches(
        real,
        p,
        newBatches.filter((b) => b.p === p).map((b) => b.batch),
      );
    }
  }

  toString(): string {
    const call = (c: RecordSpec[]): string =>
      `[${c
        .map((s) => `${s.key ?? '∅'}:${s.value === null ? 'null' : s.value.length}${s.partition !== undefined ? `@${s.partition}` : ''}${s.timestamp !== null ? `@t${s.timestamp - TS_BASE}` : ''}${Object.keys(s.headers).length ? '+h' : ''}`)
        .join(' ')}]`;
    return this.calls.length === 1 ? `append ${call(this.calls[0]!)}` : `concurrently ${this.calls.map(call).join(' | ')}`;
  }
}

class ReadCommand implements Cmd {
  constructor(
    /** Taken modulo the partition count, as `at` is modulo (end + 1): any value is a valid command in any state. */
    readonly partition: number,
    readonly at: number,
    readonly maxBytes: number,
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    const p = this.partition % model.partitions.length;
    const mp = model.partitions[p]!;
    const end = mp.records.length;
    const offset = this.at % (end + 1);
    const what = `read ${p} at ${offset} (end ${end}) maxBytes ${this.maxBytes}`;
    const r = await real.log.read(TOPIC, p, BigInt(offset), { maxBytes: this.maxBytes });
    expect(r.highWatermark, what).toBe(BigInt(end));
    expect(r.logStartOffset, what).toBe(0n);
    expectRecords(r.records, p, offset, mp, what);
    const k = r.records.length;
    expect(r.nextOffset, `${what}: nextOffset`).toBe(BigInt(offset + k));
    if (offset < end) {
      // Reads always progress: the batch holding the offset comes back whole, whatever maxBytes.
      if (k === 0) throw new Error(`${what}: returned nothing`);
      const covered = mp.batches.filter((b) => b.base + b.count > offset && b.base < offset + k);
      const last = covered[covered.length - 1]!;
      expect(offset + k, `${what}: ends inside batch ${last.base}+${last.count}`).toBe(last.base + last.count);
      // maxBytes bounds the bytes of the batches returned; only a lone first batch may exceed it.
      if (covered.length > 1) {
        const bytes = covered.reduce((n, b) => n + b.size, 0);
        if (bytes > this.maxBytes) throw new Error(`${what}: returned ${covered.length} batches of ${bytes} bytes, over maxBytes`);
      }
    }
    await expectOutOfRange(real.log.read(TOPIC, p, BigInt(end + 1 + (this.maxBytes % 3))), `read ${p} past the end`);
    await expectOutOfRange(real.log.read(TOPIC, p, -1n), `read ${p} at -1`);
  }

  toString(): string {
    return `read p${this.partition} at #${this.at} maxBytes ${this.maxBytes}`;
  }
}

class OffsetForCommand implements Cmd {
  constructor(
    readonly partition: number,
    readonly timestamp: number,
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    const p = this.partition % model.partitions.length;
    const mp = model.partitions[p]!;
    const end = mp.records.length;
    // Records stamped by the log are later than every explicit timestamp the test uses.
    const first = mp.records.findIndex((r) => r.timestamp === null || r.timestamp >= this.timestamp);
    const expected = BigInt(first < 0 ? end : first);
    expect(await real.log.offsetFor(TOPIC, p, { kind: 'timestamp', timestamp: this.timestamp }), `offsetFor ${p} t${this.timestamp - TS_BASE}`).toBe(expected);
    expect(await real.log.offsetFor(TOPIC, p, { kind: 'earliest' })).toBe(0n);
    expect(await real.log.offsetFor(TOPIC, p, { kind: 'latest' })).toBe(BigInt(end));
  }

  toString(): string {
    return `offsetFor p${this.partition} t${this.timestamp - TS_BASE}`;
  }
}

class CommitCommand implements Cmd {
  constructor(
    readonly group: string,
    readonly entries: Array<{ partition: number; at: number }>,
    readonly pastEnd: boolean,
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    const n = model.partitions.length;
    const offsets = this.entries.map((e) => {
      const p = e.partition % n;
      const end = model.partitions[p]!.records.length;
      return { topic: TOPIC, partition: p, offset: BigInt(e.at % (end + 1)) };
    });
    if (this.pastEnd && offsets.length > 0) {
      const bad = offsets.map((o) => ({ ...o }));
      bad[bad.length - 1]!.offset = BigInt(model.partitions[bad[bad.length - 1]!.partition]!.records.length + 1);
      await expectOutOfRange(real.log.commitOffsets(this.group, bad), 'commit past the end');
    } else {
      await real.log.commitOffsets(this.group, offsets);
      const mine = model.commits.get(this.group) ?? new Map<number, bigint>();
      for (const o of offsets) mine.set(o.partition, o.offset);
      if (mine.size > 0) model.commits.set(this.group, mine);
    }
    const want = [...(model.commits.get(this.group) ?? new Map<number, bigint>()).entries()]
      .sort(([a], [b]) => a - b)
      .map(([partition, offset]) => ({ topic: TOPIC, partition, offset }));
    expect(await real.log.committedOffsets(this.group)).toEqual(want);
  }

  toString(): string {
    return `commit ${this.group} ${this.entries.map((e) => `p${e.partition}@#${e.at}`).join(' ')}${this.pastEnd ? ' (past the end)' : ''}`;
  }
}

class ReopenCommand implements Cmd {
  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    await real.backend.reopen(real);
    await checkEverything(model, real, 'after reopen');
  }

  toString(): string {
    return 'close and reopen';
  }
}

class TruncateTailCommand implements Cmd {
  constructor(
    readonly partition: number,
    /** Bytes to cut off the end of the file, or a number of whole batches (a cut on a batch boundary). */
    readonly cut: { bytes: number } | { batches: number },
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    const p = this.partition % model.partitions.length;
    const mp = model.partitions[p]!;
    await real.log.close();
    const files = segmentFiles(real, p);
    const last = files[files.length - 1]!;
    const size = fs.statSync(last.file).size;
    const inLast = mp.batches.filter((b) => BigInt(b.base) >= last.base);
    expect(inLast.reduce((n, b) => n + b.size, 0), `the last segment of ${p} holds exactly the model's batches from ${last.base}`).toBe(size);
    const cut = 'bytes' in this.cut ? this.cut.bytes : inLast.slice(-this.cut.batches).reduce((n, b) => n + b.size, 0);
    const newSize = Math.max(0, size - cut);
    fs.truncateSync(last.file, newSize);

    // The batches that still end at or before the cut survive; everything from the first torn one is gone.
    let position = 0;
    let kept = 0;
    while (kept < inLast.length && position + inLast[kept]!.size <= newSize) position += inLast[kept++]!.size;
    const tornInside = position !== newSize;
    const firstLost = inLast[kept];
    if (firstLost !== undefined) {
      mp.records.length = firstLost.base;
      mp.batches = mp.batches.filter((b) => b.base < firstLost.base);
    }

    real.events.length = 0;
    real.log = await openReal(real.dir, real.events);
    const recovered = real.events.filter((e): e is Extract<LogEvent, { type: 'recovered' }> => e.type === 'recovered');
    expect(recovered.every((e) => e.topic === TOPIC && e.partition === p), 'only the truncated partition needs recovery').toBe(true);
    expect(recovered.length > 0, `a recovered event iff the cut (${size} → ${newSize}) tore a batch`).toBe(tornInside);
    await checkEverything(model, real, `after cutting ${cut} bytes off ${p}'s last segment (${size} → ${newSize})`);
  }

  toString(): string {
    return `truncate p${this.partition} by ${'bytes' in this.cut ? `${this.cut.bytes} bytes` : `${this.cut.batches} batches`}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

const recordSpecArb: fc.Arbitrary<RecordSpec> = fc.record({
  key: fc.option(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'ü'), { nil: null, freq: 3 }),
  value: fc.oneof(
    { arbitrary: fc.constant(null), weight: 1 },
    { arbitrary: fc.constant(new Uint8Array(0)), weight: 1 },
    { arbitrary: fc.uint8Array({ maxLength: 48 }), weight: 6 },
    { arbitrary: fc.integer({ min: 100, max: 900 }).map((n) => new Uint8Array(n).fill(n % 256)), weight: 1 },
  ),
  headers: fc.oneof(
    { arbitrary: fc.constant({}), weight: 3 },
    { arbitrary: fc.dictionary(fc.constantFrom('h1', 'h2', 'trace-ü'), fc.uint8Array({ maxLength: 8 }), { maxKeys: 3 }), weight: 1 },
  ),
  timestamp: fc.option(fc.integer({ min: TS_BASE, max: TS_BASE + TS_SPAN }), { nil: null, freq: 4 }),
  partition: fc.option(fc.nat(5), { nil: undefined, freq: 6 }),
});

const callArb = fc.oneof({ arbitrary: fc.array(recordSpecArb, { minLength: 1, maxLength: 20 }), weight: 20 }, { arbitrary: fc.constant([] as RecordSpec[]), weight: 1 });

/** The commands every backend runs. */
const commonCommandArbs: Array<fc.WeightedArbitrary<Cmd>> = [
  { arbitrary: callArb.map((call) => new AppendCommand([call])), weight: 5 },
  { arbitrary: fc.array(callArb, { minLength: 2, maxLength: 4 }).map((calls) => new AppendCommand(calls)), weight: 1 },
  {
    arbitrary: fc
      .tuple(fc.nat(5), fc.nat(), fc.constantFrom(1, 40, 100, 300, 700, 1500, 5000, 1 << 20))
      .map(([p, at, maxBytes]) => new ReadCommand(p, at, maxBytes)),
    weight: 4,
  },
  { arbitrary: fc.tuple(fc.nat(5), fc.integer({ min: TS_BASE - 5, max: TS_BASE + TS_SPAN + 5 })).map(([p, t]) => new OffsetForCommand(p, t)), weight: 2 },
  {
    arbitrary: fc
      .tuple(fc.constantFrom(...GROUPS), fc.array(fc.record({ partition: fc.nat(5), at: fc.nat() }), { maxLength: 4 }), fc.boolean())
      .map(([g, entries, pastEnd]) => new CommitCommand(g, entries, pastEnd && entries.length > 0 && entries.length % 3 === 0)),
    weight: 1,
  },
  { arbitrary: fc.constant(null).map(() => new ReopenCommand()), weight: 1 },
];

const commandArb: fc.Arbitrary<Cmd> = fc.oneof(
  ...commonCommandArbs,
  {
    arbitrary: fc
      .tuple(
        fc.nat(5),
        fc.oneof(
          fc.record({ bytes: fc.integer({ min: 1, max: 60 }) }),
          fc.record({ bytes: fc.integer({ min: 1, max: 1200 }) }),
          fc.record({ batches: fc.integer({ min: 1, max: 3 }) }),
        ),
      )
      .map(([p, cut]) => new TruncateTailCommand(p, cut)),
    weight: 1,
  },
);

async function runModel(config: RunConfig, commands: Iterable<Cmd>, backend: Backend): Promise<void> {
  const real = await backend.create();
  try {
    await real.log.createTopic(TOPIC, {
      partitions: config.partitions,
      segmentBytes: config.segmentBytes,
      fsync: config.fsync,
      fsyncIntervalMs: 5,
      retentionMs: null,
    });
    const model: Model = {
      partitions: Array.from({ length: config.partitions }, () => ({ records: [], batches: [] })),
      commits: new Map(),
    };
    await fc.asyncModelRun(() => ({ model, real }), commands);
    await checkEverything(model, real, 'at the end');
    await backend.reopen(real);
    await checkEverything(model, real, 'after the final reopen');
  } finally {
    await backend.destroy(real);
  }
}

/** Sequences of up to 40 commands, about 20 on average ('max' size: the default would stop at 10). */
const commandsArb = fc.commands([commandArb], { maxCommands: 40, size: 'max' });

const configArb = (fsync: fc.Arbitrary<FsyncPolicy>): fc.Arbitrary<RunConfig> =>
  fc.record({
    partitions: fc.integer({ min: 1, max: 3 }),
    segmentBytes: fc.constantFrom(512, 1024, 4096),
    fsync,
  });

describe('the embedded log against an in-memory model', () => {
  // Bounds the whole property, shrinking included, so that a failure is reported with its shrunk
  // counterexample before the test times out even on a loaded machine; an interrupted run that
  // found no failure yet fails too, rather than passing with fewer runs.
  const timeLimit = { plugins: [fc.interruptAfterTimeLimit(150_000, { failOnInterrupt: true })] };

  it('agrees with the model over random appends, reads, lookups, commits, reopens and torn tails (fsync never/interval)', async () => {
    await fc.assert(fc.asyncProperty(configArb(fc.constantFrom<FsyncPolicy>('never', 'never', 'interval')), commandsArb, (config, commands) => runModel(config, commands, embedded)), { numRuns: 1000, ...timeLimit });
  }, 200_000);

  it('agrees with the model with fsync=always and group commit', async () => {
    await fc.assert(fc.asyncProperty(configArb(fc.constant<FsyncPolicy>('always')), commandsArb, (config, commands) => runModel(config, commands, embedded)), { numRuns: 250, ...timeLimit });
  }, 200_000);
});

describe('the JetStream log against an in-memory model', () => {
  beforeAll(async () => {
    nats.cluster = await startNatsCluster({ size: 1 });
    nats.nc = await connect({ servers: nats.cluster.servers });
    nats.jsm = await nats.nc.jetstreamManager();
  }, 60_000);

  afterAll(async () => {
    await nats.nc?.close();
    await nats.cluster?.destroy();
  });

  // Each command costs NATS round trips, so fewer, shorter runs than the embedded log gets; the
  // time limit fails (rather than passes) a run cut short, as above.
  const timeLimit = { plugins: [fc.interruptAfterTimeLimit(45_000, { failOnInterrupt: true })] };
  const jsCommandsArb = fc.commands([fc.oneof(...commonCommandArbs)], { maxCommands: 25, size: 'max' });

  it('agrees with the model over random appends, reads, lookups, commits and reopens', async () => {
    await fc.assert(
      fc.asyncProperty(configArb(fc.constant<FsyncPolicy>('never')), jsCommandsArb, (config, commands) => runModel(config, commands, jetstream)),
      { numRuns: 100, ...timeLimit },
    );
  }, 60_000);
});

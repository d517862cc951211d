/**
 * End-to-end corruption tests of the embedded log: real data directories are damaged byte by byte
 * on disk (torn tails, bit flips, lost pages, garbage, deleted indexes) and reopened. A pristine
 * directory is built once; every case damages its own copy in a fresh temp dir.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../core/errors.ts';
import { type EmbeddedLog, type LogEvent, openLog } from '../core/log/embedded-log.ts';
import { checkBatch, HEADER_SIZE } from '../core/log/record-batch.ts';
import type { Headers, LogRecord, ProducerRecord } from '../core/log/types.ts';

const TOPIC = 'c';
const PARTITIONS = 2;
const SEGMENT_BYTES = 16 * 1024;
const PAGE = 4096;

interface Expected {
  key: Buffer | null;
  value: Buffer | null;
  headers: Headers;
  timestamp: number;
}

interface BatchInfo {
  pos: number;
  size: number;
  baseOffset: bigint;
  /** One past the batch's last offset. */
  endOffset: bigint;
}

interface SegmentInfo {
  base: bigint;
  file: string;
  batches: BatchInfo[];
}

/** Every directory of this file lives under `root`, removed after all tests. */
let root = '';
let pristine = '';
/** What was appended, per partition, indexed by offset. */
const expected: Expected[][] = [];

function tempDir(): string {
  return fs.mkdtempSync(path.join(root, 'case-'));
}

/** A fixed-seed xorshift32, so the pristine log is the same on every run. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

function bytes(random: (n: number) => number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = random(256);
  return b;
}

function partitionDir(dataDir: string, partition: number): string {
  return path.join(dataDir, 'topics', TOPIC, String(partition));
}

/** Lists a partition's segments and, by scanning each file with the batch layout, their batches. */
function segmentsOf(dataDir: string, partition: number): SegmentInfo[] {
  const dir = partitionDir(dataDir, partition);
  const names = fs.readdirSync(dir).filter((n) => /^\d{20}\.log$/.test(n)).sort();
  return names.map((name) => {
    const file = path.join(dir, name);
    const buf = fs.readFileSync(file);
    const batches: BatchInfo[] = [];
    let pos = 0;
    while (pos < buf.length) {
      const check = checkBatch(buf, pos, buf.length);
      if (!check.ok) throw new Error(`pristine segment ${file} does not scan at ${pos}: ${JSON.stringify(check)}`);
      const h = check.header;
      batches.push({ pos, size: h.size, baseOffset: h.baseOffset, endOffset: h.baseOffset + BigInt(h.lastOffsetDelta) + 1n });
      pos += h.size;
    }
    return { base: BigInt(name.slice(0, 20)), file, batches };
  });
}

async function open(dataDir: string, events?: LogEvent[]): Promise<EmbeddedLog> {
  return openLog(dataDir, { maintenanceIntervalMs: 0, onEvent: (e) => events?.push(e) });
}

function sameRecord(actual: LogRecord, want: Expected): boolean {
  const same = (a: Buffer | null, b: Buffer | null): boolean => (a === null || b === null ? a === b : a.equals(b));
  if (!same(actual.key, want.key) || !same(actual.value, want.value) || actual.timestamp !== want.timestamp) return false;
  const keys = Object.keys(actual.headers);
  if (keys.length !== Object.keys(want.headers).length) return false;
  return keys.every((k) => want.headers[k] !== undefined && actual.headers[k]!.equals(want.headers[k]!));
}

/**
 * Reads a partition from its start to its end and checks that offsets are dense and that every
 * record is exactly the one appended at that offset. Returns the end offset.
 */
async function checkPartition(log: EmbeddedLog, partition: number, where: string): Promise<bigint> {
  const start = await log.offsetFor(TOPIC, partition, { kind: 'earliest' });
  const end = await log.offsetFor(TOPIC, partition, { kind: 'latest' });
  expect(start, where).toBe(0n);
  let offset = start;
  while (offset < end) {
    const result = await log.read(TOPIC, partition, offset);
    if (result.records.length === 0) throw new Error(`${where}: empty read at ${offset}, below the end ${end}`);
    for (const r of result.records) {
      if (r.offset !== offset) throw new Error(`${where}: read returned offset ${r.offset} where ${offset} was next (offsets must be dense)`);
      const want = expected[partition]![Number(r.offset)];
      if (!want) throw new Error(`${where}: offset ${r.offset} was never appended (the original end is ${expected[partition]!.length})`);
      if (!sameRecord(r, want)) throw new Error(`${where}: record at ${r.offset} differs from the one appended`);
      offset++;
    }
    expect(result.nextOffset, where).toBe(offset);
  }
  return end;
}

/** Appends records with explicit partitions and records them in `expected`. */
async function appendKnown(log: EmbeddedLog, partition: number, records: ProducerRecord[]): Promise<void> {
  const result = await log.append(TOPIC, records.map((r) => ({ ...r, partition })));
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const offset = Number(result.offsetOf(i));
    expect(offset).toBe(expected[partition]!.length);
    expected[partition]!.push({ key: r.key ?? null, value: r.value, headers: r.headers ?? {}, timestamp: r.timestamp! });
  }
}

async function expectCorrupt(promise: Promise<unknown>, where: string): Promise<void> {
  let outcome: unknown;
  try {
    outcome = await promise;
  } catch (err) {
    if (!isSluiceError(err, 'CORRUPT_RECORD')) throw new Error(`${where}: expected CORRUPT_RECORD, got ${String(err)}`, { cause: err });
    return;
  }
  const records = (outcome as { records?: LogRecord[] }).records ?? [];
  throw new Error(`${where}: expected CORRUPT_RECORD, but the read returned ${records.length} records from offset ${records[0]?.offset}`);
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-corruption-test-'));
  pristine = path.join(root, 'pristine');
  const random = rng(0x5eed);
  const t0 = Date.now() - 3_600_000;
  const log = await open(pristine);
  await log.createTopic(TOPIC, { partitions: PARTITIONS, fsync: 'never', segmentBytes: SEGMENT_BYTES, retentionMs: null });
  for (let p = 0; p < PARTITIONS; p++) expected.push([]);
  let n = 0;
  for (let batch = 0; batch < 150; batch++) {
    const p = batch % PARTITIONS;
    const records: ProducerRecord[] = [];
    const count = 1 + random(8);
    for (let i = 0; i < count; i++, n++) {
      const headers: Headers = {};
      if (random(3) === 0) headers.h = bytes(random, random(20));
      if (random(5) === 0) headers['ü'] = bytes(random, random(5));
      records.push({
        key: random(10) < 3 ? null : bytes(random, 1 + random(16)),
        value: random(20) === 0 ? null : bytes(random, random(600)),
        headers,
        // Mostly increasing, sometimes going back: the time index must cope with both.
        timestamp: t0 + n * 10 + (random(4) === 0 ? -random(200) : 0),
      });
    }
    await appendKnown(log, p, records);
  }
  // Small batches until each last segment holds several (fsync 'never': appended bytes are already in the file).
  for (let p = 0; p < PARTITIONS; p++) {
    while (segmentsOf(pristine, p).at(-1)!.batches.length < 8) {
      const count = 1 + random(3);
      const records: ProducerRecord[] = [];
      for (let i = 0; i < count; i++, n++) records.push({ key: bytes(random, 4), value: bytes(random, random(200)), timestamp: t0 + n * 10 });
      await appendKnown(log, p, records);
    }
  }
  await log.close();
  for (let p = 0; p < PARTITIONS; p++) {
    const segments = segmentsOf(pristine, p);
    // The cases below need several segments, and a last one with several batches to damage.
    expect(segments.length).toBeGreaterThanOrEqual(4);
    expect(segments.at(-1)!.batches.length).toBeGreaterThanOrEqual(4);
    expect(segments.at(-1)!.batches.at(-1)!.endOffset).toBe(BigInt(expected[p]!.length));
  }
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** A damage to apply to the last segment of one partition; positions are reduced modulo the file size. */
interface Damage {
  partition: number;
  truncateAt: number | null;
  flips: Array<{ at: { header: true; batch: number; offset: number } | { header: false; pos: number }; bit: number }>;
  zeros: Array<{ pos: number; length: number; pageAligned: boolean }>;
  append:
    | null
    | { kind: 'garbage'; bytes: Uint8Array }
    | { kind: 'copy'; batch: number }
    | { kind: 'torn-copy'; batch: number; keep: number };
}

const damageArb: fc.Arbitrary<Damage> = fc.record({
  partition: fc.integer({ min: 0, max: PARTITIONS - 1 }),
  truncateAt: fc.option(fc.nat(), { nil: null }),
  flips: fc.array(
    fc.record({
      // Half the flips aim at batch headers, which hold the fields recovery trusts least (offsets, length).
      at: fc.oneof(
        fc.record({ header: fc.constant(true as const), batch: fc.nat(), offset: fc.integer({ min: 0, max: HEADER_SIZE - 1 }) }),
        fc.record({ header: fc.constant(false as const), pos: fc.nat() }),
      ),
      bit: fc.integer({ min: 0, max: 7 }),
    }),
    { maxLength: 5 },
  ),
  zeros: fc.array(fc.record({ pos: fc.nat(), length: fc.integer({ min: 1, max: PAGE }), pageAligned: fc.boolean() }), { maxLength: 2 }),
  append: fc.option(
    fc.oneof(
      fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }) }),
      // A whole valid batch again (a duplicated or misplaced write): its CRC is fine, its offsets are not.
      fc.record({ kind: fc.constant('copy' as const), batch: fc.nat() }),
      fc.record({ kind: fc.constant('torn-copy' as const), batch: fc.nat(), keep: fc.nat() }),
    ),
    { nil: null },
  ),
});

function applyDamage(original: Buffer, batches: BatchInfo[], damage: Damage): Buffer {
  let buf = Buffer.from(original);
  if (damage.truncateAt !== null) buf = buf.subarray(0, damage.truncateAt % (original.length + 1));
  for (const flip of damage.flips) {
    let pos: number;
    if (flip.at.header) {
      const b = batches[flip.at.batch % batches.length]!;
      pos = b.pos + flip.at.offset;
    } else {
      pos = buf.length === 0 ? 0 : flip.at.pos % buf.length;
    }
    if (pos < buf.length) buf[pos]! ^= 1 << flip.bit;
  }
  for (const zero of damage.zeros) {
    if (buf.length === 0) break;
    let pos = zero.pos % buf.length;
    if (zero.pageAligned) pos -= pos % PAGE;
    buf.fill(0, pos, Math.min(buf.length, pos + zero.length));
  }
  if (damage.append !== null) {
    let extra: Buffer;
    if (damage.append.kind === 'garbage') {
      extra = Buffer.from(damage.append.bytes);
    } else {
      const b = batches[damage.append.batch % batches.length]!;
      const whole = original.subarray(b.pos, b.pos + b.size);
      extra = damage.append.kind === 'copy' ? whole : whole.subarray(0, 1 + (damage.append.keep % (b.size - 1)));
    }
    buf = Buffer.concat([buf, extra]);
  }
  return buf;
}

function commonPrefix(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

describe('corruption on disk', () => {
  it('cuts off a corrupt or torn tail of the last segment, detected by checksum, and never serves it', async () => {
    // Guarantee: whatever damage hits the tail of a partition's last segment (truncation, bit flips,
    // lost pages, appended garbage), recovery keeps exactly the batches before the first damaged
    // byte, reports the cut, never serves a byte that differs from what was appended, and the log
    // keeps appending from the new end.
    let runs = 0;
    let withEvent = 0;
    await fc.assert(
      fc.asyncProperty(damageArb, async (damage) => {
        runs++;
        const p = damage.partition;
        const dataDir = tempDir();
        try {
          fs.cpSync(pristine, dataDir, { recursive: true });
          const segment = segmentsOf(dataDir, p).at(-1)!;
          const original = fs.readFileSync(segment.file);
          const damaged = applyDamage(original, segment.batches, damage);
          fs.writeFileSync(segment.file, damaged);

          // The batches wholly inside the undamaged prefix are the ones recovery must keep.
          const prefix = commonPrefix(damaged, original);
          const intact = segment.batches.filter((b) => b.pos + b.size <= prefix);
          const intactBytes = intact.length === 0 ? 0 : intact.at(-1)!.pos + intact.at(-1)!.size;
          const intactEnd = intact.length === 0 ? segment.base : intact.at(-1)!.endOffset;
          const originalEnd = BigInt(expected[p]!.length);
          const where = `partition ${p}, ${original.length} → ${damaged.length} bytes, first changed byte ${prefix}, intact up to ${intactBytes} (offset ${intactEnd})`;

          const events: LogEvent[] = [];
          const log = await open(dataDir, events);
          let end: bigint;
          try {
            end = await checkPartition(log, p, where);
            expect(end, where).toBeLessThanOrEqual(originalEnd);
            expect(end, where).toBeGreaterThanOrEqual(intactEnd);
            // A checksum catches every damaged batch, so nothing past the first damaged byte survives.
            expect(end, where).toBe(intactEnd);
            for (let other = 0; other < PARTITIONS; other++) {
              if (other !== p) expect(await checkPartition(log, other, `${where}, undamaged partition ${other}`)).toBe(BigInt(expected[other]!.length));
            }

            const recovered = events.filter((e) => e.type === 'recovered');
            expect(
              recovered.every((e) => e.type === 'recovered' && e.topic === TOPIC && e.partition === p),
              `${where}: recovered events for the wrong partition: ${JSON.stringify(recovered)}`,
            ).toBe(true);
            if (damaged.length > intactBytes) {
              // Bytes past the last intact batch (damaged or garbage) were cut: that must be reported.
              expect(recovered.length, `${where}: the tail was cut without a recovered event`).toBeGreaterThan(0);
              withEvent++;
            } else {
              // The file is a clean run of batches: nothing to report.
              expect(recovered, where).toEqual([]);
            }

            // The log appends again from the new end, and what it appends is durable and clean.
            const fresh: ProducerRecord[] = [0, 1, 2].map((i) => ({ key: Buffer.from(`after-${i}`), value: Buffer.from(`value-${i}`), headers: {}, timestamp: Date.now(), partition: p }));
            const result = await log.append(TOPIC, fresh);
            expect(result.offsetOf(0), where).toBe(end);
            const back = await log.read(TOPIC, p, end);
            expect(back.records.map((r) => r.value!.toString()), where).toEqual(['value-0', 'value-1', 'value-2']);
            expect(back.records.map((r) => r.offset), where).toEqual([end, end + 1n, end + 2n]);
          } finally {
            await log.close();
          }
          const again: LogEvent[] = [];
          const reopened = await open(dataDir, again);
          try {
            expect(again.filter((e) => e.type === 'recovered'), `${where}: recovery left a damaged file behind`).toEqual([]);
            expect(await reopened.offsetFor(TOPIC, p, { kind: 'latest' }), where).toBe(end + 3n);
            const tail = await reopened.read(TOPIC, p, end);
            expect(tail.records.map((r) => r.value!.toString()), where).toEqual(['value-0', 'value-1', 'value-2']);
            if (end > 0n) {
              const before = await reopened.read(TOPIC, p, end - 1n, { maxBytes: 1 });
              expect(sameRecord(before.records[0]!, expected[p]![Number(end - 1n)]!), where).toBe(true);
            }
          } finally {
            await reopened.close();
          }
        } finally {
          fs.rmSync(dataDir, { recursive: true, force: true });
        }
      }),
      { numRuns: 200 },
    );
    expect(runs).toBeGreaterThanOrEqual(200);
    // The runs must mostly have damaged something.
    expect(withEvent).toBeGreaterThan(runs / 2);
  }, 120_000);

  describe('a flipped bit in a sealed segment', () => {
    for (const which of ['first', 'middle', 'last'] as const) {
      it(`fails reads of the damaged batch with CORRUPT_RECORD (${which} batch of the segment)`, async () => {
        // Guarantee: a corrupt batch in a sealed segment is never served, not even as garbage: open
        // succeeds, a read over the batch fails with CORRUPT_RECORD, and everything before it is served.
        const dataDir = tempDir();
        try {
          fs.cpSync(pristine, dataDir, { recursive: true });
          const p = 0;
          const segments = segmentsOf(dataDir, p);
          const sealed = segments[1]!;
          expect(sealed.batches.length).toBeGreaterThanOrEqual(3);
          const target = which === 'first' ? sealed.batches[0]! : which === 'last' ? sealed.batches.at(-1)! : sealed.batches[sealed.batches.length >> 1]!;
          const file = fs.readFileSync(sealed.file);
          // A bit inside the records, which only the CRC protects.
          const pos = target.pos + HEADER_SIZE + Math.floor((target.size - HEADER_SIZE) / 2);
          file[pos]! ^= 0x10;
          fs.writeFileSync(sealed.file, file);
          const where = `${which} batch (offsets ${target.baseOffset}..${target.endOffset - 1n}) of segment ${sealed.base}`;

          const log = await open(dataDir);
          try {
            // The damaged batch, read directly, through the index, or from earlier in its segment.
            await expectCorrupt(log.read(TOPIC, p, target.baseOffset), where);
            await expectCorrupt(log.read(TOPIC, p, target.endOffset - 1n), where);
            await expectCorrupt(log.read(TOPIC, p, sealed.base), where);
            // The end is untouched: the damage is not "repaired" by dropping acknowledged records.
            expect(await log.offsetFor(TOPIC, p, { kind: 'latest' })).toBe(BigInt(expected[p]!.length));
            // Batches before it in the same segment are still served, exactly.
            if (target.pos > 0) {
              const before = await log.read(TOPIC, p, sealed.base, { maxBytes: target.pos });
              expect(before.records.length, where).toBe(Number(target.baseOffset - sealed.base));
              for (const r of before.records) expect(sameRecord(r, expected[p]![Number(r.offset)]!), where).toBe(true);
              expect(before.nextOffset).toBe(target.baseOffset);
            }
            // Other segments are unaffected: the one before this segment and those after it.
            const first = segments[0]!;
            const head = await log.read(TOPIC, p, first.base, { maxBytes: fs.statSync(first.file).size });
            expect(head.records.length).toBe(Number(sealed.base - first.base));
            for (const r of head.records) expect(sameRecord(r, expected[p]![Number(r.offset)]!)).toBe(true);
            const next = segments[2]!.base;
            const rest = await log.read(TOPIC, p, next, { maxBytes: 1 << 30 });
            expect(rest.records[0]!.offset).toBe(next);
            expect(rest.records.at(-1)!.offset).toBe(BigInt(expected[p]!.length - 1));
            for (const r of rest.records) expect(sameRecord(r, expected[p]![Number(r.offset)]!)).toBe(true);
            // The other partition does not care.
            await checkPartition(log, 1, 'partition 1');
          } finally {
            await log.close();
          }
        } finally {
          fs.rmSync(dataDir, { recursive: true, force: true });
        }
      });
    }

    it('fails reads of a batch whose base offset (outside the CRC) was flipped, rather than serve it at the wrong offset', async () => {
      // Guarantee: a flipped bit in a sealed batch's base offset, which the CRC does not cover, never
      // makes the log serve records at offsets they were not appended at, nor skip records silently.
      const dataDir = tempDir();
      try {
        fs.cpSync(pristine, dataDir, { recursive: true });
        const p = 0;
        const segments = segmentsOf(dataDir, p);
        const sealed = segments[1]!;
        const target = sealed.batches[sealed.batches.length >> 1]!;
        const file = fs.readFileSync(sealed.file);
        file[target.pos + 7]! ^= 0x02; // the low byte of the base offset: off by 2, still below the end
        fs.writeFileSync(sealed.file, file);
        const where = `base offset of batch ${target.baseOffset}..${target.endOffset - 1n} in segment ${sealed.base} flipped`;

        const log = await open(dataDir);
        try {
          // Segment by segment (maxBytes = the segment's size reads exactly one segment from its
          // start): the others are served whole and exact; the damaged one fails or serves originals only.
          for (const s of segments) {
            const read = log.read(TOPIC, p, s.base, { maxBytes: fs.statSync(s.file).size });
            let records: LogRecord[];
            if (s === sealed) {
              try {
                records = (await read).records;
              } catch (err) {
                if (!isSluiceError(err, 'CORRUPT_RECORD')) throw err;
                continue;
              }
            } else {
              records = (await read).records;
              expect(records.length, `${where}: segment ${s.base}`).toBe(Number(s.batches.at(-1)!.endOffset - s.base));
            }
            let offset = s.base;
            for (const r of records) {
              if (r.offset !== offset) throw new Error(`${where}: read of segment ${s.base} returned offset ${r.offset} where ${offset} was next`);
              if (!sameRecord(r, expected[p]![Number(r.offset)]!)) throw new Error(`${where}: record at ${r.offset} differs from the one appended`);
              offset++;
            }
          }
          await expectCorrupt(log.read(TOPIC, p, target.baseOffset), where);
        } finally {
          await log.close();
        }
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });

  it('rebuilds deleted .index and .timeindex files: everything readable, timestamp lookups exact', async () => {
    // Guarantee: the index files are only a cache: with all of them deleted the log reopens, serves
    // every record, and resolves timestamps to the same offsets as a scan of the records would.
    const dataDir = tempDir();
    try {
      fs.cpSync(pristine, dataDir, { recursive: true });
      let deleted = 0;
      for (let p = 0; p < PARTITIONS; p++) {
        for (const name of fs.readdirSync(partitionDir(dataDir, p))) {
          if (name.endsWith('.index') || name.endsWith('.timeindex')) {
            fs.rmSync(path.join(partitionDir(dataDir, p), name));
            deleted++;
          }
        }
      }
      expect(deleted).toBeGreaterThanOrEqual(2 * 4 * PARTITIONS);

      /** The first offset whose timestamp is >= t, by brute force over what was appended. */
      const bruteForce = (p: number, t: number): bigint => {
        const i = expected[p]!.findIndex((r) => r.timestamp >= t);
        return i < 0 ? BigInt(expected[p]!.length) : BigInt(i);
      };
      const probes = (p: number): number[] => {
        const ts = expected[p]!.map((r) => r.timestamp);
        const min = Math.min(...ts);
        const max = Math.max(...ts);
        const out = [min - 1, min, max, max + 1, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER];
        for (let i = 0; i < ts.length; i += 3) out.push(ts[i]!, ts[i]! + 1, ts[i]! - 1);
        return out;
      };

      for (let round = 0; round < 2; round++) {
        // Round 0 rebuilds the indexes from the logs; round 1 loads the rebuilt files.
        const events: LogEvent[] = [];
        const log = await open(dataDir, events);
        try {
          for (let p = 0; p < PARTITIONS; p++) {
            expect(await checkPartition(log, p, `round ${round}, partition ${p}`)).toBe(BigInt(expected[p]!.length));
            for (const t of probes(p)) {
              expect(await log.offsetFor(TOPIC, p, { kind: 'timestamp', timestamp: t }), `round ${round}, partition ${p}, timestamp ${t}`).toBe(bruteForce(p, t));
            }
            // Reads that start mid-segment go through the (rebuilt) offset index.
            for (let o = 0; o < expected[p]!.length; o += 7) {
              const result = await log.read(TOPIC, p, BigInt(o), { maxBytes: 1 });
              expect(result.records[0]?.offset, `round ${round}, partition ${p}, offset ${o}`).toBe(BigInt(o));
              expect(sameRecord(result.records[0]!, expected[p]![o]!)).toBe(true);
            }
          }
        } finally {
          await log.close();
        }
        for (let p = 0; p < PARTITIONS; p++) {
          for (const s of segmentsOf(dataDir, p)) {
            expect(fs.existsSync(s.file.replace(/\.log$/, '.index')), `round ${round}: ${s.file} has no index after reopening`).toBe(true);
          }
        }
        expect(events.filter((e) => e.type === 'recovered')).toEqual([]);
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

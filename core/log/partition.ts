/**
 * One partition: an ordered list of segments, the append pipeline with group commit, reads with
 * long polling, retention, compaction and recovery on open.
 *
 * The append pipeline, in order:
 * 1. `append` encodes the batch into the partition's write buffer and assigns offsets at once, so
 *    offsets follow call order.
 * 2. A flush, scheduled with `process.nextTick`, writes every batch encoded since the last flush in one
 *    `write` per segment. Appends made while a flush (and its fsync) is running wait for the next
 *    one, which is how concurrent appends share one write and one fsync.
 * 3. When the bytes are durable under the topic's policy, the high watermark moves, waiting readers
 *    wake and the appends resolve.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.ts';
import { checkBatch, decodeRecords, encodeBatch, forEachRecordKey, WriteBuffer } from './record-batch.ts';
import { Segment, segmentFileName } from './segment.ts';
import type { LogRecord, ProducerRecord, ReadOptions, ReadResult, TopicConfig } from './types.ts';

const DEFAULT_MAX_BYTES = 1 << 20;
/** How often a read-only open re-checks the files another process is appending to. */
const FOLLOW_POLL_MS = 100;

interface Span {
  segment: Segment;
  start: number;
  end: number;
  /** The partition's next offset once this span is durable. */
  nextOffset: bigint;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface PartitionOptions {
  topic: string;
  partition: number;
  dir: string;
  /** Shared with the topic, so config changes apply without reopening. */
  config: TopicConfig;
  writable: boolean;
  /** Told about damage found and repaired on open, for the log's warnings. */
  onDamage?: (message: string) => void;
}

export class Partition {
  readonly topic: string;
  readonly partition: number;
  readonly dir: string;
  private readonly config: TopicConfig;
  private readonly writable: boolean;
  private segments: Segment[] = [];
  /** The offset the next append gets. */
  private nextOffset = 0n;
  /** Records below this are readable: written, and fsync'ed when the topic says `always`. */
  private hw = 0n;
  private readonly writeBuf = new WriteBuffer(64 * 1024);
  private spans: Span[] = [];
  private flushScheduled = false;
  private flushing = false;
  private syncTimer: NodeJS.Timeout | null = null;
  private failure: Error | null = null;
  private closed = false;
  private dataWaiters = new Set<() => void>();
  private compactedUpTo = -1n;
  private readonly onDamage: (message: string) => void;

  private constructor(options: PartitionOptions) {
    this.topic = options.topic;
    this.partition = options.partition;
    this.dir = options.dir;
    this.config = options.config;
    this.writable = options.writable;
    this.onDamage = options.onDamage ?? (() => {});
  }

  /** Opens (and when writable, recovers) the partition in `dir`, creating it if absent and writable. */
  static open(options: PartitionOptions): Partition {
    const p = new Partition(options);
    if (options.writable) fs.mkdirSync(options.dir, { recursive: true });
    p.load();
    return p;
  }

  private listBaseOffsets(): bigint[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !this.writable) return [];
      throw err;
    }
    const bases: bigint[] = [];
    for (const name of names) {
      if (/^\d{20}\.log$/.test(name)) bases.push(BigInt(name.slice(0, 20)));
      else if (this.writable && name.endsWith('.cleaned')) fs.rmSync(path.join(this.dir, name), { force: true });
    }
    return bases.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  private load(): void {
    const bases = this.listBaseOffsets();
    if (bases.length === 0) {
      if (this.writable) this.segments.push(Segment.create(this.dir, 0n));
    } else {
      for (let i = 0; i < bases.length; i++) {
        const last = i === bases.length - 1;
        const { segment, damage } = Segment.open(this.dir, bases[i]!, { writable: this.writable, verify: last, dense: this.dense });
        const action = !last ? 'left in place: reads of it fail with CORRUPT_RECORD' : this.writable ? 'truncated to the last valid batch' : 'reading up to the last valid batch';
        if (damage) this.onDamage(`${this.topic}/${this.partition} ${segmentFileName(bases[i]!, '.log')}: ${damage}; ${action}`);
        this.segments.push(segment);
      }
      // A crash right after a roll leaves an empty last segment whose base may lie past the previous
      // segment's real end (its unacknowledged tail was torn). Appending resumes in the previous one.
      while (this.writable && this.segments.length > 1 && this.segments.at(-1)!.isEmpty) {
        this.segments.pop()!.deleteFiles();
        const prev = this.segments.pop()!;
        prev.retire();
        const { segment, damage } = Segment.open(this.dir, prev.baseOffset, { writable: true, verify: true, dense: this.dense });
        if (damage) this.onDamage(`${this.topic}/${this.partition} ${segmentFileName(prev.baseOffset, '.log')}: ${damage}; truncated to the last valid batch`);
        this.segments.push(segment);
      }
    }
    const active = this.segments.at(-1);
    this.nextOffset = active ? active.nextOffset : 0n;
    this.hw = this.nextOffset;
    if (this.writable) active!.prepareForAppend();
  }

  /** Offsets are dense within every segment unless compaction removed records. */
  private get dense(): boolean {
    return this.config.cleanup === 'delete';
  }

  get highWatermark(): bigint {
    return this.hw;
  }

  get logStartOffset(): bigint {
    return this.segments.length > 0 ? this.segments[0]!.baseOffset : 0n;
  }

  get sizeBytes(): number {
    let total = 0;
    for (const s of this.segments) total += s.size;
    return total;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  /**
   * Appends `records[indexes[i]]` (all records when `indexes` is null) as one batch. Resolves with
   * the batch's base offset once it is durable under the topic's fsync policy.
   */
  append(records: readonly ProducerRecord[], indexes: readonly number[] | null, now: number): { baseOffset: bigint; done: Promise<void> } {
    if (!this.writable) throw new SluiceError('LOG_READ_ONLY', 'the log is open read-only');
    if (this.closed) throw new SluiceError('LOG_CLOSED', 'the log is closed');
    if (this.failure) {
      throw new SluiceError('IO_ERROR', `${this.topic}/${this.partition} stopped accepting writes after an I/O error; reopen the log to recover: ${this.failure.message}`, { cause: this.failure });
    }
    const baseOffset = this.nextOffset;
    const start = this.writeBuf.length;
    const batch = encodeBatch(this.writeBuf, records, indexes, baseOffset, now);
    let segment = this.active;
    if (
      !segment.isEmpty &&
      (segment.appendSize + batch.size > this.config.segmentBytes || now - segment.firstBatchAt >= this.config.segmentMs)
    ) {
      segment = this.roll(baseOffset);
    }
    const lastOffset = baseOffset + BigInt(batch.count - 1);
    segment.noteBatch(segment.appendSize, baseOffset, lastOffset, batch.maxTimestamp, batch.size, now);
    this.nextOffset = lastOffset + 1n;
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.spans.push({ segment, start, end: start + batch.size, nextOffset: this.nextOffset, resolve, reject });
    if (!this.flushScheduled && !this.flushing) {
      this.flushScheduled = true;
      // nextTick runs after the current synchronous code and the promise callbacks it triggers, so
      // appends issued together still share a flush, without waiting for another event-loop turn.
      process.nextTick(() => this.flush());
    }
    return { baseOffset, done };
  }

  private roll(baseOffset: bigint): Segment {
    const next = Segment.create(this.dir, baseOffset);
    this.segments.push(next);
    return next;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.flushing || this.spans.length === 0) return;
    this.flushing = true;
    const spans = this.spans;
    this.spans = [];
    const buf = this.writeBuf.buf;
    const touched: Segment[] = [];
    try {
      // Consecutive spans of one segment are contiguous in the buffer, so each segment gets one write.
      let i = 0;
      while (i < spans.length) {
        const segment = spans[i]!.segment;
        const start = spans[i]!.start;
        let end = spans[i]!.end;
        while (i + 1 < spans.length && spans[i + 1]!.segment === segment) end = spans[++i]!.end;
        segment.write(buf, start, end - start);
        touched.push(segment);
        i++;
      }
      this.writeBuf.reset();
      for (const segment of touched) {
        segment.writeIndexes();
        // A segment left behind by a roll is sealed (fsync'ed) whatever the policy, so that recovery
        // only ever has to verify the last segment.
        if (segment !== this.active) segment.seal();
      }
    } catch (err) {
      this.writeBuf.reset();
      this.fail(err as Error, spans);
      return;
    }
    if (this.config.fsync === 'always') {
      const active = this.active;
      active.datasync((err) => {
        if (err) {
          this.fail(err, spans);
          return;
        }
        this.publish(spans);
        this.flushing = false;
        // Appends that arrived during the fsync form the next group, flushed at once.
        if (this.spans.length > 0) this.flush();
      });
      return;
    }
    this.publish(spans);
    this.flushing = false;
    if (this.config.fsync === 'interval' && this.syncTimer === null) {
      this.syncTimer = setTimeout(() => {
        this.syncTimer = null;
        if (this.closed || this.failure) return;
        this.active.datasync((err) => {
          if (err) this.fail(err, []);
        });
      }, this.config.fsyncIntervalMs);
      this.syncTimer.unref();
    }
    if (this.spans.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  private publish(spans: Span[]): void {
    for (const span of spans) span.segment.visibleSize = Math.max(span.segment.visibleSize, span.segment.size);
    this.hw = spans[spans.length - 1]!.nextOffset;
    for (const span of spans) span.resolve();
    this.wakeReaders();
  }

  /**
   * After a failed write or fsync the state of the page cache is unknown (an fsync error may have
   * dropped dirty pages), so the partition refuses further writes; reopening runs recovery, which
   * trusts only what verifies on disk.
   */
  private fail(err: Error, spans: Span[]): void {
    this.failure = err;
    this.flushing = false;
    const error = new SluiceError('IO_ERROR', `append to ${this.topic}/${this.partition} failed: ${err.message}`, { cause: err, context: { topic: this.topic, partition: this.partition } });
    for (const span of spans) span.reject(error);
    for (const span of this.spans) span.reject(error);
    this.spans = [];
  }

  private wakeReaders(): void {
    if (this.dataWaiters.size === 0) return;
    const waiters = [...this.dataWaiters];
    this.dataWaiters.clear();
    for (const wake of waiters) wake();
  }

  /**
   * Resolves when records at or past `offset` are readable, after `maxWaitMs`, on abort, or on close.
   * In-process appends wake it directly; a read-only open following another process re-checks the
   * files every {@link FOLLOW_POLL_MS}.
   */
  waitForData(offset: bigint, maxWaitMs: number, signal?: AbortSignal): Promise<void> {
    if (this.hw > offset || maxWaitMs <= 0 || this.closed || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let poll: NodeJS.Timeout | null = null;
      const finish = (): void => {
        clearTimeout(timer);
        if (poll) clearTimeout(poll);
        this.dataWaiters.delete(finish);
        signal?.removeEventListener('abort', finish);
        resolve();
      };
      const timer = setTimeout(finish, maxWaitMs);
      signal?.addEventListener('abort', finish, { once: true });
      this.dataWaiters.add(finish);
      if (!this.writable) {
        const check = (): void => {
          this.refresh();
          if (this.hw > offset) finish();
          else poll = setTimeout(check, FOLLOW_POLL_MS);
        };
        poll = setTimeout(check, FOLLOW_POLL_MS);
      }
    });
  }

  /** For read-only opens: picks up batches and segments another process appended since we looked. */
  refresh(): void {
    if (this.writable) return;
    const known = new Set(this.segments.map((s) => s.baseOffset));
    const bases = this.listBaseOffsets();
    if (this.segments.length > 0 && !bases.includes(this.segments[0]!.baseOffset)) {
      // Retention or compaction in the writer removed files under us: start over from the disk.
      for (const s of this.segments) s.retire();
      this.segments = [];
      this.load();
      return;
    }
    this.segments.at(-1)?.refresh();
    for (const base of bases) {
      if (known.has(base)) continue;
      this.segments.at(-1)?.refresh();
      const { segment } = Segment.open(this.dir, base, { writable: false, verify: true, dense: this.dense });
      this.segments.push(segment);
    }
    const active = this.segments.at(-1);
    this.nextOffset = active ? active.nextOffset : 0n;
    this.hw = this.nextOffset;
  }

  private segmentIndexFor(offset: bigint): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.segments[mid]!.baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** See {@link Log.read}. */
  async read(offset: bigint, options: ReadOptions = {}): Promise<ReadResult> {
    if (!this.writable && offset >= this.hw) this.refresh();
    const maxBytes = Math.max(1, options.maxBytes ?? DEFAULT_MAX_BYTES);
    this.checkRange(offset);
    if (offset === this.hw && (options.maxWaitMs ?? 0) > 0) {
      await this.waitForData(offset, options.maxWaitMs!, options.signal);
    }
    const records: LogRecord[] = [];
    let cursor = offset;
    // A segment can be replaced by compaction or deleted by retention between the lookup and the
    // read; the lookup is then simply repeated.
    for (let attempt = 0; attempt < 5; attempt++) {
      const result = this.readFrom(cursor, maxBytes, records);
      if (result !== null) return { records, nextOffset: result, highWatermark: this.hw, logStartOffset: this.logStartOffset };
      this.checkRange(cursor);
    }
    throw new SluiceError('IO_ERROR', `${this.topic}/${this.partition}: segments kept changing during a read at offset ${offset}`);
  }

  private checkRange(offset: bigint): void {
    if (offset < this.logStartOffset || offset > this.hw) {
      throw new SluiceError(
        'OFFSET_OUT_OF_RANGE',
        `offset ${offset} is out of range for ${this.topic}/${this.partition} (start ${this.logStartOffset}, end ${this.hw})`,
        { context: { topic: this.topic, partition: this.partition, offset, start: this.logStartOffset, end: this.hw } },
      );
    }
  }

  /** Reads from `offset` into `out`; returns the next offset, or null when a segment vanished mid-read. */
  private readFrom(offset: bigint, maxBytes: number, out: LogRecord[]): bigint | null {
    const hw = this.hw;
    let cursor = offset;
    let segIndex = this.segmentIndexFor(cursor);
    let bytesLeft = maxBytes;
    const outStart = out.length;
    // Within a segment the scan continues from where the last chunk ended; the sparse index is
    // only consulted when entering a segment. A read returns at least one batch (even one larger
    // than maxBytes), so consumers always progress.
    let position = -1;
    // The base offset lies outside the CRC, so offsets are also checked for continuity: a flipped
    // bit there must not serve records at the wrong offsets. Reset on entering a segment.
    let expected: bigint | null = null;
    const dense = this.dense;
    while (cursor < hw && segIndex < this.segments.length && (bytesLeft > 0 || out.length === outStart)) {
      const segment = this.segments[segIndex]!;
      const visible = segment.visibleSize;
      if (position < 0) {
        position = segment.positionFor(cursor);
        expected = null;
      }
      if (position >= visible) {
        segIndex++;
        position = -1;
        continue;
      }
      // Batches below the cursor (the sparse index points at or before it) do not count against maxBytes.
      let buf = segment.read(position, Math.min(Math.max(bytesLeft, 4096), visible - position));
      if (buf === null) return null;
      let at = 0;
      let full = false;
      while (at < buf.length) {
        const check = checkBatch(buf, at, buf.length);
        if (check.ok) {
          const header = check.header;
          const lastOffset = header.baseOffset + BigInt(header.lastOffsetDelta);
          if (expected !== null && (dense ? header.baseOffset !== expected : header.baseOffset < expected)) {
            throw new SluiceError('CORRUPT_RECORD', `${this.topic}/${this.partition}: batch at position ${position + at} in ${segment.logPath} has offset ${header.baseOffset}, expected ${dense ? '' : 'at least '}${expected}; the batch is not served`, {
              context: { topic: this.topic, partition: this.partition, position: position + at, file: segment.logPath },
            });
          }
          expected = lastOffset + 1n;
          if (lastOffset >= cursor) {
            if (out.length > outStart && header.size > bytesLeft) {
              full = true;
              break;
            }
            decodeRecords(buf, at, header, this.topic, this.partition, cursor, hw, out);
            cursor = lastOffset + 1n;
            bytesLeft -= header.size;
          }
          at += header.size;
          continue;
        }
        if (check.reason === 'corrupt') {
          throw new SluiceError('CORRUPT_RECORD', `${this.topic}/${this.partition}: ${check.detail} in ${segment.logPath} at position ${position + at}; the batch is not served`, {
            context: { topic: this.topic, partition: this.partition, position: position + at, file: segment.logPath },
          });
        }
        if (at > 0) break;
        if (position + check.needed > visible) {
          throw new SluiceError('CORRUPT_RECORD', `${this.topic}/${this.partition}: batch at position ${position} claims ${check.needed} bytes past the end of ${segment.logPath}`);
        }
        buf = segment.read(position, check.needed);
        if (buf === null) return null;
      }
      if (full) break;
      position += at;
      if (position >= visible) {
        segIndex++;
        position = -1;
      }
    }
    return cursor < hw ? cursor : hw;
  }

  /** See {@link Log.offsetFor} with a timestamp: the first offset whose record timestamp is >= `timestamp`. */
  async offsetForTimestamp(timestamp: number): Promise<bigint> {
    for (const segment of this.segments) {
      if (segment.maxTimestamp < timestamp) continue;
      let found: bigint | null = null;
      const records: LogRecord[] = [];
      segment.scan(segment.positionForTimestamp(timestamp), segment.visibleSize, (header, _pos, buf, at) => {
        if (header.maxTimestamp < timestamp) return null;
        records.length = 0;
        decodeRecords(buf, at, header, this.topic, this.partition, 0n, this.hw, records);
        for (const r of records) {
          if (r.timestamp >= timestamp) {
            found = r.offset;
            return 'found';
          }
        }
        return null;
      });
      if (found !== null) return found;
    }
    return this.hw;
  }

  /**
   * Deletes whole sealed segments past the topic's time or size retention, and rolls an expired
   * active segment so it can be deleted next time. Called periodically by the log.
   */
  enforceRetention(now: number): number {
    if (!this.writable || this.config.cleanup !== 'delete') return 0;
    const { retentionMs, retentionBytes } = this.config;
    let removed = 0;
    let total = this.sizeBytes;
    while (this.segments.length > 1) {
      const first = this.segments[0]!;
      const expired = retentionMs !== null && now - first.maxTimestamp > retentionMs;
      const oversize = retentionBytes !== null && total - first.size >= retentionBytes;
      if (!expired && !oversize) break;
      this.segments.shift();
      first.deleteFiles();
      total -= first.size;
      removed++;
    }
    const active = this.active;
    if (
      retentionMs !== null &&
      !active.isEmpty &&
      now - active.maxTimestamp > retentionMs &&
      this.spans.length === 0 &&
      !this.flushing
    ) {
      active.seal();
      this.roll(this.nextOffset).prepareForAppend();
    }
    return removed;
  }

  /**
   * Keeps only the newest record per key in sealed segments, and drops tombstones older than the
   * topic's `tombstoneRetentionMs`. Offsets are preserved (compacted partitions have gaps). Each
   * segment is rewritten to a `.cleaned` file, fsync'ed and renamed over the original, so a crash
   * leaves either the old or the new segment. Called periodically by the log.
   */
  compact(now: number, force = false): number {
    if (!this.writable || this.config.cleanup !== 'compact' || this.segments.length < 2) return 0;
    const sealed = this.segments.slice(0, -1);
    const sealedEnd = this.active.baseOffset;
    // Without a new sealed segment there is nothing new to clean, except tombstones coming of age.
    if (sealedEnd <= this.compactedUpTo && !force) return 0;
    const latest = new Map<string, number>();
    for (const segment of this.segments) {
      segment.scan(0, segment.visibleSize, (header, _pos, buf, at) => {
        const base = Number(header.baseOffset);
        forEachRecordKey(buf, at, header, (delta, _ts, keyStart, keyLength) => {
          if (keyLength >= 0) latest.set(buf.toString('latin1', keyStart, keyStart + keyLength), base + delta);
        });
      });
    }
    let rewritten = 0;
    for (const segment of sealed) {
      const cleanedPath = segment.logPath + '.cleaned';
      const fd = fs.openSync(cleanedPath, 'w');
      const out = new WriteBuffer(1 << 20);
      const records: LogRecord[] = [];
      let kept = 0;
      let dropped = 0;
      segment.scan(0, segment.size, (header, _pos, buf, at) => {
        records.length = 0;
        decodeRecords(buf, at, header, this.topic, this.partition, 0n, sealedEnd, records);
        const keep = records.filter((r) => {
          const newest = r.key !== null && latest.get(r.key.toString('latin1')) === Number(r.offset);
          const expiredTombstone = r.value === null && now - r.timestamp > this.config.tombstoneRetentionMs;
          return newest && !expiredTombstone;
        });
        dropped += records.length - keep.length;
        if (keep.length === 0) return;
        kept += keep.length;
        encodeBatch(out, keep, null, header.baseOffset, now, {
          deltas: keep.map((r) => Number(r.offset - header.baseOffset)),
          lastOffsetDelta: header.lastOffsetDelta,
        });
        if (out.length >= 1 << 20) {
          fs.writeSync(fd, out.buf, 0, out.length);
          out.reset();
        }
      });
      if (dropped === 0) {
        fs.closeSync(fd);
        fs.rmSync(cleanedPath, { force: true });
        continue;
      }
      if (out.length > 0) fs.writeSync(fd, out.buf, 0, out.length);
      fs.fdatasyncSync(fd);
      fs.closeSync(fd);
      const index = this.segments.indexOf(segment);
      if (kept === 0 && index > 0) {
        // An emptied segment is dropped, except the first, whose name keeps the log start offset.
        fs.rmSync(cleanedPath, { force: true });
        this.segments.splice(index, 1);
        segment.deleteFiles();
      } else {
        fs.renameSync(cleanedPath, segment.logPath);
        const { segment: replacement } = Segment.open(this.dir, segment.baseOffset, { writable: true, verify: true });
        this.segments[index] = replacement;
        segment.retire();
      }
      rewritten++;
    }
    syncDir(this.dir);
    this.compactedUpTo = sealedEnd;
    return rewritten;
  }

  /** Settles pending appends, writes indexes and fsyncs. Pending long polls resolve empty. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing || this.spans.length > 0) {
      if (this.failure) break;
      if (!this.flushing) this.flush();
      else await new Promise((r) => setImmediate(r));
    }
    this.closed = true;
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.wakeReaders();
    for (const segment of this.segments) {
      if (this.writable && segment === this.active && !this.failure) {
        segment.writeIndexes();
        segment.datasyncNow();
      }
      segment.close();
    }
  }

  /** Closes and removes every file of the partition (topic deletion). */
  async destroy(): Promise<void> {
    await this.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

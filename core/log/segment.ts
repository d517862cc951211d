/**
 * One segment of a partition: a `.log` file of record batches plus its sparse `.index` (offset →
 * position) and `.timeindex` (timestamp → offset). Indexes are kept in memory and mirrored to disk
 * so that opening a large sealed segment does not require scanning it; the files are only a cache
 * and are rebuilt from the log whenever they fail validation.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.ts';
import { checkBatch, peekBaseOffset, type BatchHeader, HEADER_SIZE } from './record-batch.ts';

/** An index entry is added once at least this many bytes were appended since the previous one. */
export const INDEX_INTERVAL_BYTES = 4096;
const OFFSET_ENTRY = 8;
const TIME_ENTRY = 12;
const SCAN_CHUNK = 1 << 20;

export function segmentFileName(baseOffset: bigint, extension: string): string {
  return baseOffset.toString().padStart(20, '0') + extension;
}

class GrowableU32 {
  data = new Uint32Array(64);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Uint32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
}

class GrowableF64 {
  data = new Float64Array(64);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
}

export interface ScanResult {
  /** Position just past the last valid batch. */
  validEnd: number;
  /** Why the scan stopped before the end of the file, if it did. */
  damage: string | null;
}

export class Segment {
  readonly baseOffset: bigint;
  readonly logPath: string;
  readonly indexPath: string;
  readonly timeIndexPath: string;
  private fd: number;
  private readonly writable: boolean;
  /** Bytes written to the file. */
  size = 0;
  /** Bytes readers may see; trails `size` until an fsync'ed topic's fsync completes. */
  visibleSize = 0;
  /** `size` plus batches encoded but not yet written; new batches get their positions from it. */
  appendSize = 0;
  /** One past the last offset stored or pending in this segment. */
  nextOffset: bigint;
  /** Largest record timestamp in the segment, -1 when empty. */
  maxTimestamp = -1;
  /** When the segment got its first batch (ms), for rolling by age. */
  firstBatchAt = -1;

  private readonly idxRel = new GrowableU32();
  private readonly idxPos = new GrowableU32();
  private readonly tsValue = new GrowableF64();
  private readonly tsRel = new GrowableU32();
  private idxWritten = 0;
  private tsWritten = 0;
  private lastIndexedAt = -INDEX_INTERVAL_BYTES;
  private indexFd = -1;
  private timeIndexFd = -1;

  private retired = false;

  private constructor(dir: string, baseOffset: bigint, fd: number, writable: boolean) {
    this.baseOffset = baseOffset;
    this.nextOffset = baseOffset;
    this.logPath = path.join(dir, segmentFileName(baseOffset, '.log'));
    this.indexPath = path.join(dir, segmentFileName(baseOffset, '.index'));
    this.timeIndexPath = path.join(dir, segmentFileName(baseOffset, '.timeindex'));
    this.fd = fd;
    this.writable = writable;
  }

  /** Creates a new, empty segment file. Called by the partition when it rolls. */
  static create(dir: string, baseOffset: bigint): Segment {
    const file = path.join(dir, segmentFileName(baseOffset, '.log'));
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644);
    const seg = new Segment(dir, baseOffset, fd, true);
    seg.openIndexFiles(true);
    return seg;
  }

  /**
   * Opens an existing segment.
   *
   * - `verify: true` (the last segment of a partition on open): every batch is read and its CRC
   *   checked; a torn or corrupt tail is cut off (when writable) and the indexes are rebuilt.
   * - `verify: false` (sealed segments, fsync'ed when they rolled): the index files are loaded and
   *   checked for consistency, and rebuilt from the log when they fail. Damage found then is left in
   *   place, never cut: it is not a torn append but corruption of acknowledged records, which reads
   *   report with `CORRUPT_RECORD`.
   * - `dense: true` (topics that are never compacted): batches must follow each other without gaps
   *   from the segment's base offset. The base offset is outside the CRC, so this is what catches a
   *   flipped bit in it.
   *
   * Never throws for damaged content, only for I/O errors; damage is reported in `damage`.
   */
  static open(
    dir: string,
    baseOffset: bigint,
    options: { writable: boolean; verify: boolean; dense?: boolean },
  ): { segment: Segment; damage: string | null } {
    const file = path.join(dir, segmentFileName(baseOffset, '.log'));
    const fd = fs.openSync(file, options.writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY);
    const seg = new Segment(dir, baseOffset, fd, options.writable);
    const fileSize = fs.fstatSync(fd).size;
    let damage: string | null = null;
    if (options.verify || !seg.loadIndexes(fileSize)) {
      const result = seg.rebuild(0, fileSize, options.dense ?? false);
      damage = result.damage;
      const keep = options.verify ? result.validEnd : fileSize;
      if (keep < fileSize && options.writable) {
        fs.ftruncateSync(fd, keep);
        fs.fsyncSync(fd);
      }
      seg.size = keep;
      if (options.writable) seg.rewriteIndexFiles();
    } else {
      seg.size = fileSize;
    }
    seg.visibleSize = seg.size;
    seg.appendSize = seg.size;
    return { segment: seg, damage };
  }

  /** Opens the index files for appending; only the partition's active segment needs them. */
  prepareForAppend(): void {
    if (this.indexFd < 0) this.openIndexFiles(false);
  }

  private openIndexFiles(truncate: boolean): void {
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | (truncate ? fs.constants.O_TRUNC : 0);
    this.indexFd = fs.openSync(this.indexPath, flags, 0o644);
    this.timeIndexFd = fs.openSync(this.timeIndexPath, flags, 0o644);
  }

  /** Records a batch encoded at `position`; adds sparse index entries. Called at encode time. */
  noteBatch(position: number, baseOffset: bigint, lastOffset: bigint, maxTimestamp: number, size: number, now: number): void {
    if (this.firstBatchAt < 0) this.firstBatchAt = now;
    if (position - this.lastIndexedAt >= INDEX_INTERVAL_BYTES) {
      const rel = Number(baseOffset - this.baseOffset);
      this.idxRel.push(rel);
      this.idxPos.push(position);
      this.lastIndexedAt = position;
      // The time index holds the running maximum, so it stays sorted even when record timestamps
      // go backwards; a lookup then scans forward from the entry it finds.
      const runningMax = Math.max(this.maxTimestamp, maxTimestamp);
      if (this.tsValue.length === 0 || runningMax > this.tsValue.data[this.tsValue.length - 1]!) {
        this.tsValue.push(runningMax);
        this.tsRel.push(rel);
      }
    }
    if (maxTimestamp > this.maxTimestamp) this.maxTimestamp = maxTimestamp;
    this.nextOffset = lastOffset + 1n;
    this.appendSize = position + size;
  }

  /** Writes encoded bytes at the end of the file (page cache only). Called by the partition's flush. */
  write(buf: Buffer, start: number, length: number): void {
    let done = 0;
    while (done < length) {
      done += fs.writeSync(this.fd, buf, start + done, length - done, this.size + done);
    }
    this.size += length;
  }

  /** Persists index entries added since the last call; the index files need no fsync (they are rebuilt when wrong). */
  writeIndexes(): void {
    if (this.indexFd < 0) return;
    if (this.idxWritten < this.idxRel.length) {
      const n = this.idxRel.length - this.idxWritten;
      const out = Buffer.allocUnsafe(n * OFFSET_ENTRY);
      for (let i = 0; i < n; i++) {
        out.writeUInt32BE(this.idxRel.data[this.idxWritten + i]!, i * OFFSET_ENTRY);
        out.writeUInt32BE(this.idxPos.data[this.idxWritten + i]!, i * OFFSET_ENTRY + 4);
      }
      fs.writeSync(this.indexFd, out, 0, out.length, this.idxWritten * OFFSET_ENTRY);
      this.idxWritten = this.idxRel.length;
    }
    if (this.tsWritten < this.tsValue.length) {
      const n = this.tsValue.length - this.tsWritten;
      const out = Buffer.allocUnsafe(n * TIME_ENTRY);
      for (let i = 0; i < n; i++) {
        out.writeBigInt64BE(BigInt(this.tsValue.data[this.tsWritten + i]!), i * TIME_ENTRY);
        out.writeUInt32BE(this.tsRel.data[this.tsWritten + i]!, i * TIME_ENTRY + 8);
      }
      fs.writeSync(this.timeIndexFd, out, 0, out.length, this.tsWritten * TIME_ENTRY);
      this.tsWritten = this.tsValue.length;
    }
  }

  /** fdatasync of the log file; called off the event loop by the partition's group commit. */
  datasync(callback: (err: NodeJS.ErrnoException | null) => void): void {
    fs.fdatasync(this.fd, callback);
  }

  datasyncNow(): void {
    fs.fdatasyncSync(this.fd);
  }

  /** Seals the segment when the partition rolls past it: indexes to disk, everything fsync'ed. */
  seal(): void {
    this.writeIndexes();
    fs.fdatasyncSync(this.fd);
    if (this.indexFd >= 0) {
      fs.fsyncSync(this.indexFd);
      fs.fsyncSync(this.timeIndexFd);
      fs.closeSync(this.indexFd);
      fs.closeSync(this.timeIndexFd);
      this.indexFd = -1;
      this.timeIndexFd = -1;
    }
  }

  /** Throws away unwritten state after a failed write so the next append starts from what is on disk. */
  rollbackTo(size: number, nextOffset: bigint): void {
    if (this.size > size) {
      try {
        fs.ftruncateSync(this.fd, size);
      } catch {
        // The file stays longer than `size`; recovery on the next open cuts the unacknowledged tail.
      }
    }
    this.size = size;
    this.appendSize = size;
    this.visibleSize = Math.min(this.visibleSize, size);
    this.nextOffset = nextOffset;
  }

  /** Position of the batch holding `offset`, or of an earlier batch: where a read starts scanning. */
  positionFor(offset: bigint): number {
    if (offset <= this.baseOffset || this.idxRel.length === 0) return 0;
    const target = offset - this.baseOffset > 0xffffffffn ? 0xffffffff : Number(offset - this.baseOffset);
    const rel = this.idxRel.data;
    let lo = 0;
    let hi = this.idxRel.length - 1;
    if (rel[0]! > target) return 0;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (rel[mid]! <= target) lo = mid;
      else hi = mid - 1;
    }
    return this.idxPos.data[lo]!;
  }

  /** Position to start scanning for the first record with timestamp >= `timestamp`. */
  positionForTimestamp(timestamp: number): number {
    let lo = -1;
    for (let i = 0; i < this.tsValue.length; i++) {
      if (this.tsValue.data[i]! < timestamp) lo = i;
      else break;
    }
    if (lo < 0) return 0;
    return this.positionFor(this.baseOffset + BigInt(this.tsRel.data[lo]!));
  }

  /**
   * Reads up to `length` bytes at `position` into a fresh buffer, or returns null when the segment
   * was retired (deleted by retention or replaced by compaction) since the caller looked it up.
   *
   * The read is synchronous on purpose: consumers read what was just appended, which the page cache
   * holds, and a 1 MiB copy from it takes less time than the thread-pool round trip of an async
   * read (measured: the async hop was ~45% of sequential read time).
   */
  read(position: number, length: number): Buffer | null {
    if (this.retired) return null;
    const buf = Buffer.allocUnsafe(length);
    let got: number;
    try {
      got = readFully(this.fd, buf, length, position);
    } catch (err) {
      throw new SluiceError('IO_ERROR', `read of ${this.logPath} failed: ${(err as Error).message}`, { cause: err });
    }
    return got === length ? buf : buf.subarray(0, got);
  }

  /**
   * Scans batches in [from, to), checking each CRC and that offsets only grow (without gaps when
   * `dense`); rebuilds the in-memory indexes, `nextOffset` and `maxTimestamp` from what it finds.
   * Stops at the first damage.
   */
  rebuild(from: number, to: number, dense = false): ScanResult {
    if (from === 0) {
      this.idxRel.length = 0;
      this.idxPos.length = 0;
      this.tsValue.length = 0;
      this.tsRel.length = 0;
      this.lastIndexedAt = -INDEX_INTERVAL_BYTES;
      this.maxTimestamp = -1;
      this.nextOffset = this.baseOffset;
    }
    const result = this.scan(from, to, (header, position) => {
      if (header.baseOffset < this.nextOffset) return `batch at ${position} has offset ${header.baseOffset}, expected >= ${this.nextOffset}`;
      if (dense && header.baseOffset !== this.nextOffset) return `batch at ${position} has offset ${header.baseOffset}, expected ${this.nextOffset}`;
      // A segment holds less than 2^31 bytes, so it never spans 2^31 offsets (index entries store
      // offsets relative to the base in 32 bits): a larger jump is a damaged base offset.
      if (header.baseOffset + BigInt(header.lastOffsetDelta) - this.baseOffset >= 0x80000000n) return `batch at ${position} has offset ${header.baseOffset}, too far past the segment base ${this.baseOffset}`;
      this.noteBatch(position, header.baseOffset, header.baseOffset + BigInt(header.lastOffsetDelta), header.maxTimestamp, header.size, header.baseTimestamp);
      return null;
    });
    this.appendSize = result.validEnd;
    return result;
  }

  /**
   * Visits every valid batch in [from, to) in order. `visit` may return a reason to stop.
   * Used by recovery, by compaction and by time lookups.
   */
  scan(from: number, to: number, visit: (header: BatchHeader, position: number, buf: Buffer, at: number) => string | null | void): ScanResult {
    let buf = Buffer.allocUnsafe(Math.min(SCAN_CHUNK, Math.max(HEADER_SIZE, to - from)));
    let position = from;
    while (position < to) {
      const want = Math.min(buf.length, to - position);
      const got = readFully(this.fd, buf, want, position);
      let at = 0;
      while (at < got) {
        const check = checkBatch(buf, at, got);
        if (check.ok) {
          const stop = visit(check.header, position + at, buf, at);
          if (stop) return { validEnd: position + at, damage: stop };
          at += check.header.size;
          continue;
        }
        if (check.reason === 'corrupt') return { validEnd: position + at, damage: `${check.detail} at position ${position + at}` };
        // Incomplete within this chunk: either the file really ends here (a torn tail) or the
        // batch straddles the chunk boundary and needs a bigger read.
        if (position + at + check.needed > to) {
          return { validEnd: position + at, damage: `torn batch at position ${position + at} (${to - position - at} of ${check.needed} bytes)` };
        }
        if (at === 0) buf = Buffer.allocUnsafe(Math.max(check.needed, buf.length * 2));
        break;
      }
      position += at;
    }
    return { validEnd: position, damage: null };
  }

  /** Loads and checks the index files of a sealed segment; false when they must be rebuilt. */
  private loadIndexes(fileSize: number): boolean {
    let idx: Buffer;
    let tsi: Buffer;
    try {
      idx = fs.readFileSync(this.indexPath);
      tsi = fs.readFileSync(this.timeIndexPath);
    } catch {
      return false;
    }
    if (idx.length % OFFSET_ENTRY !== 0 || tsi.length % TIME_ENTRY !== 0) return false;
    if (fileSize > 0 && idx.length === 0) return false;
    let prevRel = -1;
    let prevPos = -1;
    for (let p = 0; p < idx.length; p += OFFSET_ENTRY) {
      const rel = idx.readUInt32BE(p);
      const pos = idx.readUInt32BE(p + 4);
      if (rel <= prevRel && p > 0) return false;
      if (pos <= prevPos || pos + HEADER_SIZE > fileSize) return false;
      this.idxRel.push(rel);
      this.idxPos.push(pos);
      prevRel = rel;
      prevPos = pos;
    }
    let prevTs = -Infinity;
    for (let p = 0; p < tsi.length; p += TIME_ENTRY) {
      const ts = Number(tsi.readBigInt64BE(p));
      const rel = tsi.readUInt32BE(p + 8);
      if (ts <= prevTs) return false;
      this.tsValue.push(ts);
      this.tsRel.push(rel);
      prevTs = ts;
    }
    // A time-index entry is only ever added together with an offset-index entry for the same batch,
    // so its relative offsets must be a strictly increasing subset of the offset index's; otherwise a
    // lookup would start scanning at the wrong batch and miss records.
    for (let i = 0, j = 0; i < this.tsRel.length; i++, j++) {
      const rel = this.tsRel.data[i]!;
      while (j < this.idxRel.length && this.idxRel.data[j]! < rel) j++;
      if (j === this.idxRel.length || this.idxRel.data[j] !== rel) return false;
    }
    this.idxWritten = this.idxRel.length;
    this.tsWritten = this.tsValue.length;
    if (this.idxRel.length === 0) return fileSize === 0;
    // The last entry must point at a batch with the offset it claims; then a scan from there to the
    // end recovers nextOffset and maxTimestamp without reading the whole segment.
    const lastPos = this.idxPos.data[this.idxRel.length - 1]!;
    const head = Buffer.allocUnsafe(HEADER_SIZE);
    if (readFully(this.fd, head, HEADER_SIZE, lastPos) < HEADER_SIZE) return false;
    if (peekBaseOffset(head, 0) !== this.baseOffset + BigInt(this.idxRel.data[this.idxRel.length - 1]!)) return false;
    this.lastIndexedAt = lastPos;
    this.maxTimestamp = this.tsValue.length > 0 ? this.tsValue.data[this.tsValue.length - 1]! : -1;
    const tail = this.scan(lastPos, fileSize, (header, position) => {
      this.nextOffset = header.baseOffset + BigInt(header.lastOffsetDelta) + 1n;
      if (header.maxTimestamp > this.maxTimestamp) this.maxTimestamp = header.maxTimestamp;
      if (this.firstBatchAt < 0) this.firstBatchAt = header.baseTimestamp;
      this.appendSize = position + header.size;
    });
    if (tail.validEnd !== fileSize) return false;
    const first = Buffer.allocUnsafe(HEADER_SIZE);
    readFully(this.fd, first, HEADER_SIZE, 0);
    this.firstBatchAt = checkBatchTimestamp(first);
    return true;
  }

  private rewriteIndexFiles(): void {
    fs.writeFileSync(this.indexPath, Buffer.alloc(0));
    fs.writeFileSync(this.timeIndexPath, Buffer.alloc(0));
    this.idxWritten = 0;
    this.tsWritten = 0;
    const wasIndexFd = this.indexFd;
    if (wasIndexFd < 0) {
      this.openIndexFiles(true);
      this.writeIndexes();
      fs.closeSync(this.indexFd);
      fs.closeSync(this.timeIndexFd);
      this.indexFd = -1;
      this.timeIndexFd = -1;
    } else {
      this.writeIndexes();
    }
  }

  /** Re-reads the file size, for read-only opens that follow another process's appends. */
  refresh(): void {
    const fileSize = fs.fstatSync(this.fd).size;
    if (fileSize <= this.size) return;
    const result = this.scan(this.size, fileSize, (header, position) => {
      this.noteBatch(position, header.baseOffset, header.baseOffset + BigInt(header.lastOffsetDelta), header.maxTimestamp, header.size, header.baseTimestamp);
    });
    // A writer's in-flight batch shows up as an incomplete tail; it is simply not visible yet.
    this.size = result.validEnd;
    this.visibleSize = result.validEnd;
    this.appendSize = result.validEnd;
  }

  /** Closes the files; reads never span an await, so no read can be using them. */
  retire(): void {
    if (this.retired) return;
    this.retired = true;
    this.closeFiles();
  }

  /** Retires and removes the segment's files (retention and compaction). */
  deleteFiles(): void {
    this.retire();
    for (const file of [this.logPath, this.indexPath, this.timeIndexPath]) fs.rmSync(file, { force: true });
  }

  private closeFiles(): void {
    for (const fd of [this.fd, this.indexFd, this.timeIndexFd]) {
      if (fd >= 0) fs.closeSync(fd);
    }
    this.fd = -1;
    this.indexFd = -1;
    this.timeIndexFd = -1;
  }

  /** Closes cleanly: indexes written and, when writable, the log fsync'ed. */
  close(): void {
    if (this.retired) return;
    if (this.writable && this.indexFd >= 0) this.writeIndexes();
    this.retire();
  }

  get isRetired(): boolean {
    return this.retired;
  }

  get isEmpty(): boolean {
    return this.size === 0 && this.appendSize === 0;
  }
}

function readFully(fd: number, buf: Buffer, length: number, position: number): number {
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function checkBatchTimestamp(head: Buffer): number {
  // The base timestamp sits at a fixed header offset; see FORMAT.md.
  return head.readInt32BE(23) * 4294967296 + head.readUInt32BE(27);
}

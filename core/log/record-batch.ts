/**
 * The binary record-batch codec. FORMAT.md beside this file is its specification.
 *
 * Hand-written rather than taken from a Kafka client library because it is the log's hot path: the
 * encoder writes straight into the partition's preallocated write buffer with no per-record
 * allocation, and the decoder hands out zero-copy views of the read buffer. No maintained package
 * offers a Kafka-v2-style batch codec with that property and without a network client around it.
 */
import { crc32c } from '@node-rs/crc32';
import type { Headers, LogRecord, ProducerRecord } from './types.ts';

export const MAGIC = 1;
/** baseOffset(8) + batchLength(4): the part of the header not counted by batchLength. */
export const LOG_OVERHEAD = 12;
export const HEADER_SIZE = 43;
/** The CRC covers everything after the crc field: from attributes to the end of the batch. */
export const CRC_START = 17;

const OFF_BASE_OFFSET = 0;
const OFF_LENGTH = 8;
const OFF_MAGIC = 12;
const OFF_CRC = 13;
const OFF_ATTRIBUTES = 17;
const OFF_LAST_OFFSET_DELTA = 19;
const OFF_BASE_TIMESTAMP = 23;
const OFF_MAX_TIMESTAMP = 31;
const OFF_RECORD_COUNT = 39;

const TWO_32 = 4294967296;
const EMPTY_HEADERS: Headers = Object.freeze({}) as Headers;

export interface BatchHeader {
  baseOffset: bigint;
  /** Bytes of the whole batch, header included. */
  size: number;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  recordCount: number;
}

/** Reads an int64 that holds a millisecond timestamp; such values are always safe integers. */
function readInt64AsNumber(buf: Buffer, pos: number): number {
  return buf.readInt32BE(pos) * TWO_32 + buf.readUInt32BE(pos + 4);
}

function writeInt64FromNumber(buf: Buffer, pos: number, value: number): void {
  const hi = Math.floor(value / TWO_32);
  buf.writeInt32BE(hi, pos);
  buf.writeUInt32BE(value - hi * TWO_32, pos + 4);
}

/** Size of the zigzag varint of an integer in the safe range. */
export function varintSize(value: number): number {
  if (value >= -64 && value < 64) return 1;
  let z = value >= 0 ? value * 2 : -value * 2 - 1;
  let size = 1;
  while (z >= 128) {
    z = Math.floor(z / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, pos: number, value: number): number {
  if (value >= 0 && value < 64) {
    buf[pos] = value * 2;
    return pos + 1;
  }
  let z = value >= 0 ? value * 2 : -value * 2 - 1;
  // Bit operations are only valid below 2^31; larger values (timestamp deltas) take the slow path.
  while (z >= 0x80000000) {
    buf[pos++] = (z % 128) | 0x80;
    z = Math.floor(z / 128);
  }
  while (z >= 0x80) {
    buf[pos++] = (z & 0x7f) | 0x80;
    z >>>= 7;
  }
  buf[pos++] = z;
  return pos;
}

/**
 * The decoder's cursor. A module-level scratch object keeps varint decoding allocation-free; it is
 * safe because decoding never yields to the event loop.
 */
let cursor = 0;

function readVarint(buf: Buffer, end: number): number {
  let z = 0;
  let multiplier = 1;
  for (let i = 0; i < 8; i++) {
    if (cursor >= end) throw new RangeError('varint runs past the record');
    const b = buf[cursor++]!;
    z += (b & 0x7f) * multiplier;
    if (b < 0x80) return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    multiplier *= 128;
  }
  throw new RangeError('varint too long');
}

/**
 * A growable byte buffer that batches are encoded into. The partition owns one (two, swapped while
 * a write is in flight), so steady-state encoding allocates nothing.
 */
export class WriteBuffer {
  buf: Buffer;
  length = 0;

  constructor(initialSize = 1 << 20) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  ensure(extra: number): void {
    const needed = this.length + extra;
    if (needed <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < needed) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  reset(): void {
    this.length = 0;
  }
}

export interface EncodedBatch {
  /** Position of the batch in the write buffer. */
  start: number;
  size: number;
  count: number;
  baseTimestamp: number;
  maxTimestamp: number;
}

/**
 * UTF-8 bytes of header names. Sources put the same few names on every record, so encoding them
 * once instead of per record is a measurable share of the hot path; the cache is bounded in case a
 * source invents names per record.
 */
const headerKeys = new Map<string, Buffer>();

function headerKeyBytes(key: string): Buffer {
  let bytes = headerKeys.get(key);
  if (bytes === undefined) {
    bytes = Buffer.from(key, 'utf8');
    if (headerKeys.size < 4096) headerKeys.set(key, bytes);
  }
  return bytes;
}

function headersSize(headers: Headers): number {
  let size = 0;
  let count = 0;
  for (const key in headers) {
    const value = headers[key];
    const keyLength = headerKeyBytes(key).length;
    size += varintSize(keyLength) + keyLength;
    size += value == null ? varintSize(-1) : varintSize(value.length) + value.length;
    count++;
  }
  return varintSize(count) + size;
}

function hasHeaders(headers: Headers | undefined): headers is Headers {
  if (headers === undefined) return false;
  for (const _ in headers) return true;
  return false;
}

/**
 * Encodes `records[indexes[i]]` (or all records when `indexes` is null) as one batch at the end of
 * `out`. Timestamps default to `now`.
 */
export function encodeBatch(
  out: WriteBuffer,
  records: readonly ProducerRecord[],
  indexes: readonly number[] | null,
  baseOffset: bigint,
  now: number,
  /** Compaction keeps the original offsets: record i gets `deltas[i]`, and the batch keeps its span. */
  layout?: { deltas: readonly number[]; lastOffsetDelta: number },
): EncodedBatch {
  const count = indexes === null ? records.length : indexes.length;
  const first = records[indexes === null ? 0 : indexes[0]!]!;
  const baseTimestamp = first.timestamp ?? now;
  let maxTimestamp = baseTimestamp;

  // Sources often give every record of a request or a transaction one shared headers object; its
  // encoded size, and below its encoded bytes, are worked out once per run of records sharing it.
  let sizedHeaders: Headers | null = null;
  let sizedHeadersSize = 1;
  // A first pass sizes the batch so the buffer grows at most once per batch.
  let estimate = HEADER_SIZE;
  for (let i = 0; i < count; i++) {
    const r = records[indexes === null ? i : indexes[i]!]!;
    // 5 bytes per varint bounds the length, attributes, offset delta, key and value lengths; a
    // timestamp delta takes at most 10.
    estimate += 30 + (r.key ? r.key.length : 0) + (r.value ? r.value.length : 0);
    const headers = r.headers;
    if (headers === undefined) continue;
    if (headers !== sizedHeaders) {
      sizedHeaders = headers;
      sizedHeadersSize = hasHeaders(headers) ? headersSize(headers) : 1;
    }
    estimate += sizedHeadersSize;
  }
  out.ensure(estimate);
  const buf = out.buf;
  const start = out.length;
  let pos = start + HEADER_SIZE;
  // The last headers object encoded, and where its bytes are in `buf`, to be copied for the next
  // record that shares it.
  let lastHeaders: Headers | null = null;
  let lastHeadersAt = 0;
  let lastHeadersSize = 0;

  for (let i = 0; i < count; i++) {
    const r = records[indexes === null ? i : indexes[i]!]!;
    const timestamp = r.timestamp ?? now;
    if (timestamp > maxTimestamp) maxTimestamp = timestamp;
    const timestampDelta = timestamp - baseTimestamp;
    const key = r.key ?? null;
    const value = r.value;
    const rh = r.headers;
    const headers: Headers | null = rh === undefined ? null : rh === lastHeaders || hasHeaders(rh) ? rh : null;
    const keyLength = key === null ? -1 : key.length;
    const valueLength = value === null ? -1 : value.length;
    const offsetDelta = layout === undefined ? i : layout.deltas[i]!;
    const shared = headers !== null && headers === lastHeaders;
    const bodySize =
      1 +
      varintSize(timestampDelta) +
      varintSize(offsetDelta) +
      varintSize(keyLength) +
      (key === null ? 0 : keyLength) +
      varintSize(valueLength) +
      (value === null ? 0 : valueLength) +
      (headers === null ? 1 : shared ? lastHeadersSize : headersSize(headers));
    pos = writeVarint(buf, pos, bodySize);
    buf[pos++] = 0;
    pos = writeVarint(buf, pos, timestampDelta);
    pos = writeVarint(buf, pos, offsetDelta);
    pos = writeVarint(buf, pos, keyLength);
    // TypedArray#set is a plain memcpy; Buffer#copy goes through argument checks in JS first.
    if (key !== null) {
      buf.set(key, pos);
      pos += keyLength;
    }
    pos = writeVarint(buf, pos, valueLength);
    if (value !== null) {
      buf.set(value, pos);
      pos += valueLength;
    }
    if (headers === null) {
      buf[pos++] = 0;
    } else if (shared) {
      buf.copyWithin(pos, lastHeadersAt, lastHeadersAt + lastHeadersSize);
      pos += lastHeadersSize;
    } else {
      lastHeaders = headers;
      lastHeadersAt = pos;
      let headerCount = 0;
      for (const _ in headers) headerCount++;
      pos = writeVarint(buf, pos, headerCount);
      for (const hk in headers) {
        const hv = headers[hk];
        const hkBytes = headerKeyBytes(hk);
        pos = writeVarint(buf, pos, hkBytes.length);
        buf.set(hkBytes, pos);
        pos += hkBytes.length;
        if (hv == null) {
          pos = writeVarint(buf, pos, -1);
        } else {
          pos = writeVarint(buf, pos, hv.length);
          buf.set(hv, pos);
          pos += hv.length;
        }
      }
      lastHeadersSize = pos - lastHeadersAt;
    }
  }

  const size = pos - start;
  buf.writeBigInt64BE(baseOffset, start + OFF_BASE_OFFSET);
  buf.writeInt32BE(size - LOG_OVERHEAD, start + OFF_LENGTH);
  buf[start + OFF_MAGIC] = MAGIC;
  buf.writeInt16BE(0, start + OFF_ATTRIBUTES);
  buf.writeInt32BE(layout === undefined ? count - 1 : layout.lastOffsetDelta, start + OFF_LAST_OFFSET_DELTA);
  writeInt64FromNumber(buf, start + OFF_BASE_TIMESTAMP, baseTimestamp);
  writeInt64FromNumber(buf, start + OFF_MAX_TIMESTAMP, maxTimestamp);
  buf.writeInt32BE(count, start + OFF_RECORD_COUNT);
  buf.writeUInt32BE(crc32c(buf.subarray(start + CRC_START, pos)), start + OFF_CRC);
  out.length = pos;
  return { start, size, count, baseTimestamp, maxTimestamp };
}

export type BatchCheck =
  | { ok: true; header: BatchHeader }
  /** Fewer bytes than the batch claims: a torn write at the tail, or a read that must fetch more. */
  | { ok: false; reason: 'incomplete'; needed: number }
  | { ok: false; reason: 'corrupt'; detail: string };

/**
 * Validates the batch at `pos`: the header is sane and the CRC matches. Callers never decode a batch
 * this did not accept, which is how corrupt bytes are kept from ever being served.
 */
export function checkBatch(buf: Buffer, pos: number, end: number): BatchCheck {
  if (end - pos < HEADER_SIZE) return { ok: false, reason: 'incomplete', needed: HEADER_SIZE };
  const length = buf.readInt32BE(pos + OFF_LENGTH);
  const size = length + LOG_OVERHEAD;
  if (length < HEADER_SIZE - LOG_OVERHEAD || size > 0x7fffffff) {
    return { ok: false, reason: 'corrupt', detail: `batch length ${length} out of range` };
  }
  if (buf[pos + OFF_MAGIC] !== MAGIC) {
    return { ok: false, reason: 'corrupt', detail: `unknown magic byte ${buf[pos + OFF_MAGIC]}` };
  }
  if (end - pos < size) return { ok: false, reason: 'incomplete', needed: size };
  const expected = buf.readUInt32BE(pos + OFF_CRC);
  const actual = crc32c(buf.subarray(pos + CRC_START, pos + size));
  if (expected !== actual) return { ok: false, reason: 'corrupt', detail: 'CRC32C mismatch' };
  const recordCount = buf.readInt32BE(pos + OFF_RECORD_COUNT);
  const lastOffsetDelta = buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA);
  if (recordCount < 0 || lastOffsetDelta < recordCount - 1) {
    return { ok: false, reason: 'corrupt', detail: `record count ${recordCount} inconsistent` };
  }
  return {
    ok: true,
    header: {
      baseOffset: buf.readBigInt64BE(pos + OFF_BASE_OFFSET),
      size,
      lastOffsetDelta,
      baseTimestamp: readInt64AsNumber(buf, pos + OFF_BASE_TIMESTAMP),
      maxTimestamp: readInt64AsNumber(buf, pos + OFF_MAX_TIMESTAMP),
      recordCount,
    },
  };
}

/** Reads only the base offset of the batch at `pos`, for index validation. */
export function peekBaseOffset(buf: Buffer, pos: number): bigint {
  return buf.readBigInt64BE(pos + OFF_BASE_OFFSET);
}

/**
 * Decodes the records of a batch that {@link checkBatch} accepted, appending those with offsets in
 * [minOffset, maxOffset) to `out`. Keys, values and header values are views into `buf`, so the
 * caller must not reuse `buf`.
 */
export function decodeRecords(
  buf: Buffer,
  pos: number,
  header: BatchHeader,
  topic: string,
  partition: number,
  minOffset: bigint,
  maxOffset: bigint,
  out: LogRecord[],
): void {
  const end = pos + header.size;
  const base = header.baseOffset;
  // Offsets stay exact as bigint, but the per-record arithmetic is done on numbers when the base is
  // small enough, which avoids a second bigint allocation per record.
  const baseIsSafe = base < 9007199254740991n - 2147483648n;
  const baseNumber = baseIsSafe ? Number(base) : 0;
  const minDelta = minOffset > base ? Number(minOffset - base) : 0;
  const maxDelta = maxOffset - base < 2147483648n ? Number(maxOffset - base) : 2147483647;
  cursor = pos + HEADER_SIZE;
  for (let i = 0; i < header.recordCount; i++) {
    const length = readVarint(buf, end);
    const recordEnd = cursor + length;
    if (recordEnd > end) throw new RangeError('record runs past its batch');
    cursor++; // attributes
    const timestamp = header.baseTimestamp + readVarint(buf, recordEnd);
    const offsetDelta = readVarint(buf, recordEnd);
    if (offsetDelta < minDelta || offsetDelta >= maxDelta) {
      cursor = recordEnd;
      continue;
    }
    const keyLength = readVarint(buf, recordEnd);
    let key: Buffer | null = null;
    if (keyLength >= 0) {
      key = buf.subarray(cursor, cursor + keyLength);
      cursor += keyLength;
    }
    const valueLength = readVarint(buf, recordEnd);
    let value: Buffer | null = null;
    if (valueLength >= 0) {
      value = buf.subarray(cursor, cursor + valueLength);
      cursor += valueLength;
    }
    const headerCount = readVarint(buf, recordEnd);
    let headers = EMPTY_HEADERS;
    if (headerCount > 0) {
      headers = {};
      for (let h = 0; h < headerCount; h++) {
        const hkLength = readVarint(buf, recordEnd);
        const hk = buf.toString('utf8', cursor, cursor + hkLength);
        cursor += hkLength;
        const hvLength = readVarint(buf, recordEnd);
        if (hvLength >= 0) {
          headers[hk] = buf.subarray(cursor, cursor + hvLength);
          cursor += hvLength;
        }
      }
    }
    if (cursor !== recordEnd) throw new RangeError('record length does not match its fields');
    out.push({
      topic,
      partition,
      offset: baseIsSafe ? BigInt(baseNumber + offsetDelta) : base + BigInt(offsetDelta),
      timestamp,
      key,
      value,
      headers,
    });
  }
}

/**
 * Iterates the records of an accepted batch as (offsetDelta, timestamp, key, value) without building
 * objects; compaction uses it to find the newest offset per key.
 */
export function forEachRecordKey(
  buf: Buffer,
  pos: number,
  header: BatchHeader,
  visit: (offsetDelta: number, timestamp: number, keyStart: number, keyLength: number, isTombstone: boolean) => void,
): void {
  const end = pos + header.size;
  cursor = pos + HEADER_SIZE;
  for (let i = 0; i < header.recordCount; i++) {
    const length = readVarint(buf, end);
    const recordEnd = cursor + length;
    cursor++;
    const timestamp = header.baseTimestamp + readVarint(buf, recordEnd);
    const offsetDelta = readVarint(buf, recordEnd);
    const keyLength = readVarint(buf, recordEnd);
    const keyStart = cursor;
    cursor += Math.max(0, keyLength);
    const valueLength = readVarint(buf, recordEnd);
    const nextCursor = recordEnd;
    visit(offsetDelta, timestamp, keyStart, keyLength, valueLength < 0);
    cursor = nextCursor;
  }
}

/**
 * Splits the records at `indexes` (one partition's share of an append) into runs that each fit one
 * batch: at most `maxRecords` records and, past the first record, at most `maxBytes` by `sizeOf`.
 * Order is kept. Used by every log backend, each with its own size estimate and limits.
 */
export function* chunkIndexes<R>(records: readonly R[], indexes: readonly number[], sizeOf: (record: R) => number, maxBytes: number, maxRecords: number): Generator<number[]> {
  let chunk: number[] = [];
  let bytes = 0;
  for (const i of indexes) {
    const size = sizeOf(records[i]!);
    if (chunk.length > 0 && (bytes + size > maxBytes || chunk.length >= maxRecords)) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(i);
    bytes += size;
  }
  if (chunk.length > 0) yield chunk;
}

/**
 * A decoder of the `pgoutput` logical replication protocol, version 1, and of the streaming
 * replication messages that carry it (XLogData, primary keepalive) and that answer it (standby
 * status update). Formats: PostgreSQL's "Logical Replication Message Formats" and "Streaming
 * Replication Protocol" chapters.
 *
 * Hand-written on purpose. The libraries that decode pgoutput for Node either own the connection
 * and acknowledge on a timer what they *received* (pg-logical-replication acknowledges the last
 * received LSN every 10 s even with auto-acknowledge off), or decode into generic objects with the
 * values already converted by their own rules. Sluice must acknowledge only what is durable in
 * its log, and must map every value exactly as it documents; decoding a few fixed binary layouts
 * is less code than working around either.
 */

/** Microseconds from the Unix epoch to the Postgres epoch, 2000-01-01T00:00:00Z. */
export const PG_EPOCH_MICROS = 946_684_800_000_000n;

/** The value of a column an UPDATE left unchanged and whose value lives in TOAST: Postgres does not send it. */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged TOAST value');

/**
 * A text-format column value left in the bytes of its message, for the streaming hot path: most
 * values go into an event as they are (numbers, plain strings), so decoding them into a JS string
 * and encoding that string again would be wasted work. `buf` must not be reused by its owner.
 */
export class RawText {
  constructor(
    readonly buf: Buffer,
    readonly start: number,
    readonly end: number,
  ) {}

  text(): string {
    return this.buf.toString('utf8', this.start, this.end);
  }

  equals(other: RawText): boolean {
    return this.buf.compare(other.buf, other.start, other.end, this.start, this.end) === 0;
  }
}

/**
 * One column of a TupleData: null ('n'), unchanged TOAST ('u'), the value's text output ('t': a
 * string, or a {@link RawText} when decoded with `rawText`), or its binary send output ('b', only
 * with the `binary` option, which sluice does not request).
 */
export type TupleValue = string | null | typeof UNCHANGED_TOAST | Buffer | RawText;

export interface RelationColumn {
  /** Bit 1: the column is part of the replica identity (the key). */
  readonly flags: number;
  readonly name: string;
  readonly typeOid: number;
  readonly typeMod: number;
}

export interface BeginMessage {
  readonly tag: 'begin';
  /** The LSN of the commit record: unique per transaction, increasing in stream order. */
  readonly finalLsn: bigint;
  /** Microseconds since the Postgres epoch. */
  readonly commitTime: bigint;
  readonly xid: number;
}

export interface CommitMessage {
  readonly tag: 'commit';
  readonly flags: number;
  readonly commitLsn: bigint;
  /** The end of the commit record: acknowledging it tells Postgres never to send this transaction again. */
  readonly endLsn: bigint;
  readonly commitTime: bigint;
}

export interface OriginMessage {
  readonly tag: 'origin';
  readonly originLsn: bigint;
  readonly name: string;
}

export interface RelationMessage {
  readonly tag: 'relation';
  readonly relationId: number;
  readonly schema: string;
  readonly name: string;
  /** relreplident: d default, n nothing, f full, i index. */
  readonly replicaIdentity: string;
  readonly columns: readonly RelationColumn[];
}

export interface TypeMessage {
  readonly tag: 'type';
  readonly typeOid: number;
  readonly schema: string;
  readonly name: string;
}

export interface InsertMessage {
  readonly tag: 'insert';
  readonly relationId: number;
  readonly newTuple: TupleValue[];
}

export interface UpdateMessage {
  readonly tag: 'update';
  readonly relationId: number;
  /** The old replica identity columns, when they changed (others are null). */
  readonly keyTuple: TupleValue[] | null;
  /** The whole old row, under REPLICA IDENTITY FULL. */
  readonly oldTuple: TupleValue[] | null;
  readonly newTuple: TupleValue[];
}

export interface DeleteMessage {
  readonly tag: 'delete';
  readonly relationId: number;
  readonly keyTuple: TupleValue[] | null;
  readonly oldTuple: TupleValue[] | null;
}

export interface TruncateMessage {
  readonly tag: 'truncate';
  /** Bit 1: CASCADE; bit 2: RESTART IDENTITY. */
  readonly options: number;
  readonly relationIds: readonly number[];
}

export interface LogicalMessage {
  readonly tag: 'message';
  /** Bit 1: transactional. */
  readonly flags: number;
  readonly lsn: bigint;
  readonly prefix: string;
  readonly content: Buffer;
}

export type PgOutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;

/** Thrown for bytes that are not the protocol: a bug on one side, never retried. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** A cursor over one message's bytes. */
class Reader {
  offset: number;
  constructor(
    readonly buf: Buffer,
    offset: number,
    private readonly rawText: boolean,
  ) {
    this.offset = offset;
  }

  private need(n: number): void {
    if (this.offset + n > this.buf.length) throw new ProtocolError(`pgoutput message truncated: needed ${n} bytes at ${this.offset} of ${this.buf.length}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.offset++]!;
  }

  i16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }

  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.offset);
    this.offset += 8;
    return v;
  }

  /** A NUL-terminated UTF-8 string. */
  cstring(): string {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolError('pgoutput string without its terminating NUL');
    const s = this.buf.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return s;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }

  tuple(): TupleValue[] {
    const count = this.i16();
    const values: TupleValue[] = new Array(count);
    const buf = this.buf;
    for (let i = 0; i < count; i++) {
      const kind = this.u8();
      switch (kind) {
        case 0x6e: // 'n'
          values[i] = null;
          break;
        case 0x75: // 'u'
          values[i] = UNCHANGED_TOAST;
          break;
        case 0x74: {
          // 't'
          const len = this.i32();
          this.need(len);
          values[i] = this.rawText ? new RawText(buf, this.offset, this.offset + len) : buf.toString('utf8', this.offset, this.offset + len);
          this.offset += len;
          break;
        }
        case 0x62: {
          // 'b'
          const len = this.i32();
          values[i] = Buffer.from(this.bytes(len));
          break;
        }
        default:
          throw new ProtocolError(`unknown TupleData kind 0x${kind.toString(16)}`);
      }
    }
    return values;
  }
}

/**
 * Decodes one pgoutput message: `buf` from `offset` to its end. With `rawText`, text column values
 * are {@link RawText} views of `buf` instead of strings, so `buf` must stay unchanged while the
 * message is in use. Throws {@link ProtocolError} for an unknown tag or truncated bytes.
 */
export function decodePgOutput(buf: Buffer, offset = 0, rawText = false): PgOutputMessage {
  const r = new Reader(buf, offset, rawText);
  const tag = r.u8();
  switch (tag) {
    case 0x42: // 'B'
      return { tag: 'begin', finalLsn: r.u64(), commitTime: r.i64(), xid: r.u32() };
    case 0x43: // 'C'
      return { tag: 'commit', flags: r.u8(), commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.i64() };
    case 0x4f: // 'O'
      return { tag: 'origin', originLsn: r.u64(), name: r.cstring() };
    case 0x52: {
      // 'R'
      const relationId = r.u32();
      const schema = r.cstring();
      const name = r.cstring();
      const replicaIdentity = String.fromCharCode(r.u8());
      const count = r.i16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) columns.push({ flags: r.u8(), name: r.cstring(), typeOid: r.u32(), typeMod: r.i32() });
      // An empty namespace means pg_catalog.
      return { tag: 'relation', relationId, schema: schema === '' ? 'pg_catalog' : schema, name, replicaIdentity, columns };
    }
    case 0x59: // 'Y'
      return { tag: 'type', typeOid: r.u32(), schema: r.cstring(), name: r.cstring() };
    case 0x49: {
      // 'I'
      const relationId = r.u32();
      const n = r.u8();
      if (n !== 0x4e) throw new ProtocolError(`insert: expected 'N', got 0x${n.toString(16)}`);
      return { tag: 'insert', relationId, newTuple: r.tuple() };
    }
    case 0x55: {
      // 'U'
      const relationId = r.u32();
      let keyTuple: TupleValue[] | null = null;
      let oldTuple: TupleValue[] | null = null;
      let kind = r.u8();
      if (kind === 0x4b) keyTuple = r.tuple();
      else if (kind === 0x4f) oldTuple = r.tuple();
      if (kind === 0x4b || kind === 0x4f) kind = r.u8();
      if (kind !== 0x4e) throw new ProtocolError(`update: expected 'N', got 0x${kind.toString(16)}`);
      return { tag: 'update', relationId, keyTuple, oldTuple, newTuple: r.tuple() };
    }
    case 0x44: {
      // 'D'
      const relationId = r.u32();
      const kind = r.u8();
      if (kind === 0x4b) return { tag: 'delete', relationId, keyTuple: r.tuple(), oldTuple: null };
      if (kind === 0x4f) return { tag: 'delete', relationId, keyTuple: null, oldTuple: r.tuple() };
      throw new ProtocolError(`delete: expected 'K' or 'O', got 0x${kind.toString(16)}`);
    }
    case 0x54: {
      // 'T'
      const count = r.u32();
      const options = r.u8();
      const relationIds: number[] = [];
      for (let i = 0; i < count; i++) relationIds.push(r.u32());
      return { tag: 'truncate', options, relationIds };
    }
    case 0x4d: {
      // 'M' (protocol 1: no xid)
      const flags = r.u8();
      const lsn = r.u64();
      const prefix = r.cstring();
      const length = r.u32();
      return { tag: 'message', flags, lsn, prefix, content: r.bytes(length) };
    }
    default:
      throw new ProtocolError(`unknown pgoutput message tag 0x${tag.toString(16)} (${JSON.stringify(String.fromCharCode(tag))})`);
  }
}

// ---------------------------------------------------------------------------------------------
// The streaming replication envelope (inside CopyData)

/** XLogData ('w'): a WAL position and, from byte 25, one pgoutput message. */
export const XLOG_DATA = 0x77;
/** Primary keepalive ('k'). */
export const KEEPALIVE = 0x6b;
/** Where the pgoutput message starts inside an XLogData message. */
export const XLOG_DATA_HEADER = 25;

/** The start LSN of an XLogData message: where the WAL record the message decodes starts. */
export function xlogDataStart(chunk: Buffer): bigint {
  return chunk.readBigUInt64BE(1);
}

export interface Keepalive {
  /** The server's current end of WAL, as far as this walsender has read it. */
  readonly walEnd: bigint;
  readonly replyRequested: boolean;
}

export function decodeKeepalive(chunk: Buffer): Keepalive {
  if (chunk.length < 18) throw new ProtocolError(`keepalive of ${chunk.length} bytes, expected 18`);
  return { walEnd: chunk.readBigUInt64BE(1), replyRequested: chunk[17] === 1 };
}

/**
 * A standby status update ('r') reporting `lsn` as written, flushed and applied. Postgres moves the
 * slot's confirmed_flush_lsn to the flushed position, so it must only ever be an LSN whose changes
 * are durable in the log.
 */
export function encodeStandbyStatus(lsn: bigint, nowMs: number, replyRequested = false): Buffer {
  const out = Buffer.allocUnsafe(34);
  out[0] = 0x72;
  out.writeBigUInt64BE(lsn, 1);
  out.writeBigUInt64BE(lsn, 9);
  out.writeBigUInt64BE(lsn, 17);
  out.writeBigInt64BE(BigInt(Math.round(nowMs)) * 1000n - PG_EPOCH_MICROS, 25);
  out[33] = replyRequested ? 1 : 0;
  return out;
}

/** A Postgres timestamp (µs since 2000-01-01 UTC) as ISO 8601 UTC with microseconds. */
export function pgTimeToIso(micros: bigint): string {
  const unixMicros = micros + PG_EPOCH_MICROS;
  const ms = unixMicros / 1000n;
  const fraction = ((unixMicros % 1_000_000n) + 1_000_000n) % 1_000_000n;
  const iso = new Date(Number(ms - (ms % 1000n + 1000n) % 1000n)).toISOString();
  return `${iso.slice(0, 19)}.${fraction.toString().padStart(6, '0')}Z`;
}

/** A Postgres timestamp as milliseconds since the Unix epoch. */
export function pgTimeToMs(micros: bigint): number {
  return Number((micros + PG_EPOCH_MICROS) / 1000n);
}

/**
 * One topic-partition as one JetStream stream: the writer's view of the tail, the seq ↔ offset
 * index readers use, and reads. JETSTREAM.md describes the mapping; in short:
 *
 * - a plain partition stores one message per appended batch, encoded by record-batch.ts (CRC32C
 *   inside), whose header carries the batch's base offset, so record offsets stay dense;
 * - a compacted partition stores one message per record under `<subject>.<key hash>` with one
 *   message kept per subject; a record's offset is its stream sequence − 1.
 */
import type { JetStreamClient, JetStreamManager, JetStreamPublishOptions, NatsConnection, PubAck, StoredMsg, Subscription } from 'nats';
import { SluiceError } from '../../errors.ts';
import { checkBatch, decodeRecords, encodeBatch, WriteBuffer, type BatchHeader } from '../record-batch.ts';
import type { LogRecord, ProducerRecord, ReadOptions, ReadResult } from '../types.ts';
import { isConflict, isNotFound, isStreamNotFound, isTransient, sleep, toSluiceError } from './nats-errors.ts';

const DEFAULT_MAX_BYTES = 1 << 20;
/**
 * How long a read below the known end may reuse the partition's bounds instead of asking for the
 * stream's state again: a sequential reader then pays one round trip per window, not two. Only the
 * reported high watermark can be this much older; a record past it is never skipped, since reads
 * at or past the cached end always look again.
 */
const READ_BOUNDS_TTL_MS = 250;
/** Direct gets in flight per read: enough to hide the round trip, few enough not to over-read. */
const READ_WINDOW = 8;
/** Index entries kept per partition; readers mostly move forward, so old entries matter little. */
const INDEX_LIMIT = 4096;
/**
 * One publish attempt's wait for its acknowledgement. Short, because a request in flight on a
 * connection to a node that died is never answered, and a repeat (same message id) is deduplicated
 * by JetStream; see {@link PUBLISH_RETRY_MS}.
 */
const PUBLISH_TIMEOUT_MS = 3_000;
const MAX_CONFLICT_RETRIES = 50;
/**
 * How long a publish that timed out (or met a leaderless stream) is repeated with the same message
 * id before the append fails with a RetriableError. JetStream's duplicate window (2 min by default)
 * recognises a repeat of a message it did store, so a lost acknowledgement during a leader change
 * costs a retry, not a duplicate batch.
 */
const PUBLISH_RETRY_MS = 20_000;

interface Tail {
  /** Stream sequence of the last message, as far as this writer knows. */
  lastSeq: number;
  /** Nats-Msg-Id of that message when this writer published it, else null. */
  lastMsgId: string | null;
  nextOffset: bigint;
  epoch: number;
}

interface IndexEntry {
  seq: number;
  base: bigint;
  /** base + lastOffsetDelta + 1: the offset after this batch. */
  end: bigint;
}

interface Bounds {
  firstSeq: number;
  lastSeq: number;
  messages: number;
  bytes: number;
  start: bigint;
  end: bigint;
}

export interface PartitionContext {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  writerId: string;
  nextMsgId(): string;
}

export class JsPartition {
  private tailPromise: Promise<Tail> | null = null;
  private epoch = 0;
  /** Sorted by seq (and so by base offset). */
  private readonly index: IndexEntry[] = [];
  private subscription: Subscription | null = null;
  private subscribed: Promise<void> | null = null;
  private readonly waiters = new Set<() => void>();
  /** The size of the last batch seen here, to fetch about `maxBytes` worth of batches per window rather than a fixed count. */
  private batchBytes = 0;
  /** Compacted partitions: the last write in flight per key subject. */
  private readonly keyChains = new Map<string, Promise<bigint>>();
  private readBounds: { at: number; bounds: Bounds } | null = null;

  constructor(
    private readonly ctx: PartitionContext,
    readonly topic: string,
    readonly partition: number,
    readonly stream: string,
    /** The subject a plain partition publishes to, and the prefix of a compacted one's subjects. */
    readonly subject: string,
    readonly compacted: boolean,
  ) {}

  private context(): Record<string, unknown> {
    return { topic: this.topic, partition: this.partition, stream: this.stream };
  }

  private fail(err: unknown, what: string): SluiceError {
    if (isStreamNotFound(err)) {
      return new SluiceError('TOPIC_NOT_FOUND', `unknown topic ${JSON.stringify(this.topic)} (stream ${this.stream} does not exist)`, { context: this.context(), cause: err });
    }
    return toSluiceError(err, `${what} ${this.topic}/${this.partition}`, this.context());
  }

  // ------------------------------------------------------------------------------------------
  // Stream state

  private async info(): Promise<{ firstSeq: number; lastSeq: number; messages: number; bytes: number }> {
    try {
      const info = await this.ctx.jsm.streams.info(this.stream);
      return { firstSeq: info.state.first_seq, lastSeq: info.state.last_seq, messages: info.state.messages, bytes: info.state.bytes };
    } catch (err) {
      throw this.fail(err, 'stream info of');
    }
  }

  /**
   * Fetches message `seq`, or null when the stream does not hold it. Direct gets may be answered by
   * a replica that has not applied the newest messages yet, so a miss is confirmed with the leader.
   */
  private async getMessage(seq: number): Promise<StoredMsg | null> {
    try {
      return await (this.ctx.jsm as JetStreamManager & { direct: { getMessage(stream: string, query: { seq?: number; next_by_subj?: string }): Promise<StoredMsg> } }).direct.getMessage(this.stream, { seq });
    } catch (err) {
      if (!isNotFound(err)) throw this.fail(err, 'reading');
    }
    try {
      return await this.ctx.jsm.streams.getMessage(this.stream, { seq });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.fail(err, 'reading');
    }
  }

  /** The first message of a compacted partition at or after `seq`. */
  private async getNextCompacted(seq: number): Promise<StoredMsg | null> {
    try {
      return await (this.ctx.jsm as JetStreamManager & { direct: { getMessage(stream: string, query: { seq?: number; next_by_subj?: string }): Promise<StoredMsg> } }).direct.getMessage(this.stream, { seq, next_by_subj: `${this.subject}.*` });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.fail(err, 'reading');
    }
  }

  /** Validates a stored batch; corrupt bytes are reported, never decoded. */
  private check(msg: StoredMsg): { buf: Buffer; header: BatchHeader } {
    const buf = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength);
    const result = checkBatch(buf, 0, buf.length);
    if (!result.ok || result.header.size !== buf.length) {
      const detail = result.ok ? `batch of ${result.header.size} bytes in a message of ${buf.length}` : result.reason === 'corrupt' ? result.detail : `truncated batch (${buf.length} bytes)`;
      throw new SluiceError('CORRUPT_RECORD', `${this.topic}/${this.partition}: ${detail} in stream ${this.stream} message ${msg.seq}; the batch is not served`, {
        context: { ...this.context(), seq: msg.seq },
      });
    }
    return { buf, header: result.header };
  }

  private remember(seq: number, header: BatchHeader): IndexEntry {
    this.batchBytes = header.size;
    const entry: IndexEntry = { seq, base: header.baseOffset, end: header.baseOffset + BigInt(header.lastOffsetDelta) + 1n };
    const i = this.upperSeq(seq);
    if (i > 0 && this.index[i - 1]!.seq === seq) return this.index[i - 1]!;
    this.index.splice(i, 0, entry);
    if (this.index.length > INDEX_LIMIT) this.index.splice(0, this.index.length - INDEX_LIMIT);
    return entry;
  }

  /** Index of the first entry with a seq above `seq`. */
  private upperSeq(seq: number): number {
    let lo = 0;
    let hi = this.index.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.index[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private async entryAt(seq: number): Promise<{ entry: IndexEntry; msg: StoredMsg | null } | null> {
    const i = this.upperSeq(seq);
    if (i > 0 && this.index[i - 1]!.seq === seq) return { entry: this.index[i - 1]!, msg: null };
    const msg = await this.getMessage(seq);
    if (msg === null) return null;
    return { entry: this.remember(seq, this.check(msg).header), msg };
  }

  /** Start and end offsets, from the stream state and (plain partitions) its first and last batches. */
  async bounds(attempt = 0): Promise<Bounds> {
    const b = await this.loadBounds(attempt);
    this.readBounds = { at: Date.now(), bounds: b };
    return b;
  }

  private async loadBounds(attempt: number): Promise<Bounds> {
    const s = await this.info();
    if (this.compacted) {
      // Compaction removes records without moving the start, as in Kafka: every offset below the
      // end stays readable and a read skips to the next record still stored.
      return { ...s, start: 0n, end: BigInt(s.lastSeq) };
    }
    if (s.messages === 0) {
      // Retention never removes the last batch (see runRetention), so an empty stream was never
      // written unless it was purged by hand; the index may still know where it ended.
      const known = this.index.at(-1);
      const end = known !== undefined && known.seq === s.lastSeq ? known.end : 0n;
      return { ...s, start: end, end };
    }
    const [first, last] = await Promise.all([this.entryAt(s.firstSeq), this.entryAt(s.lastSeq)]);
    if (first === null || last === null) {
      // Retention purged the first batch between the info and the get: look again. A last message
      // missing for good was deleted by hand, which this backend never does.
      if (attempt < 5) return this.loadBounds(attempt + 1);
      throw new SluiceError('IO_ERROR', `${this.topic}/${this.partition}: stream ${this.stream} lost its first or last message (sequences ${s.firstSeq}..${s.lastSeq}); was a message deleted by hand?`, { context: this.context() });
    }
    return { ...s, start: first.entry.base, end: last.entry.end };
  }

  // ------------------------------------------------------------------------------------------
  // Appends

  private tail(): Promise<Tail> {
    if (this.tailPromise === null) {
      const epoch = ++this.epoch;
      const loading = this.bounds().then((b): Tail => ({ lastSeq: b.lastSeq, lastMsgId: null, nextOffset: b.end, epoch }));
      loading.catch(() => {
        if (this.tailPromise === loading) this.tailPromise = null;
      });
      this.tailPromise = loading;
    }
    return this.tailPromise;
  }

  private invalidate(epoch: number): void {
    if (this.epoch === epoch) {
      this.tailPromise = null;
      this.epoch++;
    }
  }

  /**
   * Appends `records[indexes]` as one message, so the batch lands whole or not at all. Resolves
   * with its base offset once JetStream acknowledged it (stored on the configured replicas).
   *
   * The message expects the stream's last sequence (and, when pipelined behind this writer's own
   * message, that message's id), so a writer with a stale view of the tail cannot store a batch
   * whose base offset overlaps another writer's: it gets a conflict, reloads the tail and retries.
   */
  async appendBatch(records: readonly ProducerRecord[], indexes: readonly number[] | null, now: number): Promise<bigint> {
    for (let attempt = 0; ; attempt++) {
      const tail = await this.tail();
      const expectSeq = tail.lastSeq;
      const expectId = tail.lastMsgId;
      const base = tail.nextOffset;
      const out = new WriteBuffer(64 * 1024);
      const batch = encodeBatch(out, records, indexes, base, now);
      const data = out.buf.subarray(0, batch.size);
      const msgId = this.ctx.nextMsgId();
      tail.lastSeq++;
      tail.lastMsgId = msgId;
      tail.nextOffset += BigInt(batch.count);
      try {
        const ack = await this.publish(this.subject, data, {
          msgID: msgId,
          expect: expectId === null ? { lastSequence: expectSeq } : { lastSequence: expectSeq, lastMsgID: expectId },
          timeout: PUBLISH_TIMEOUT_MS,
        });
        if (ack.seq !== expectSeq + 1) {
          this.invalidate(tail.epoch);
          throw new SluiceError('IO_ERROR', `${this.topic}/${this.partition}: JetStream stored the batch at sequence ${ack.seq}, expected ${expectSeq + 1}`, { context: this.context() });
        }
        this.remember(ack.seq, { baseOffset: base, size: batch.size, lastOffsetDelta: batch.count - 1, baseTimestamp: batch.baseTimestamp, maxTimestamp: batch.maxTimestamp, recordCount: batch.count });
        this.readBounds = null;
        return base;
      } catch (err) {
        this.invalidate(tail.epoch);
        if (isConflict(err) && attempt < MAX_CONFLICT_RETRIES) {
          // Several writers racing for one partition: back off a little so one of them wins.
          if (attempt > 2) await sleep(Math.random() * 5 * attempt);
          continue;
        }
        throw this.fail(err, 'appending to');
      }
    }
  }

  /**
   * Publishes, repeating the identical message (same id, same expectations) while JetStream is
   * unreachable or electing a leader. Duplicate detection runs before the expectations are checked,
   * so a repeat of a message that was stored answers with the original sequence.
   */
  private async publish(subject: string, data: Uint8Array, options: Partial<JetStreamPublishOptions>): Promise<PubAck> {
    const deadline = Date.now() + PUBLISH_RETRY_MS;
    let delay = 100;
    for (;;) {
      try {
        return await this.ctx.js.publish(subject, data, options);
      } catch (err) {
        if (!isTransient(err) || this.ctx.nc.isClosed() || Date.now() + delay > deadline) throw err;
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /** Appends one record of a compacted partition; resolves with its offset (sequence − 1). */
  appendKeyed(record: ProducerRecord, keySubject: string, now: number): Promise<bigint> {
    const out = new WriteBuffer(256 + (record.key?.length ?? 0) + (record.value?.length ?? 0));
    const batch = encodeBatch(out, [record], null, 0n, now);
    const data = out.buf.subarray(0, batch.size);
    // Writes of one key wait for the previous one's acknowledgement: pipelined, a publish that had
    // to be repeated would land after a newer value of its key, and compaction would keep the older.
    // Different keys still pipeline.
    const previous = this.keyChains.get(keySubject);
    const publish = async (): Promise<bigint> => {
      if (previous !== undefined) await previous.catch(() => undefined);
      try {
        const ack = await this.publish(`${this.subject}.${keySubject}`, data, { msgID: this.ctx.nextMsgId(), timeout: PUBLISH_TIMEOUT_MS });
        this.readBounds = null;
        return BigInt(ack.seq - 1);
      } catch (err) {
        throw this.fail(err, 'appending to');
      }
    };
    const done = publish();
    this.keyChains.set(keySubject, done);
    const forget = (): void => {
      if (this.keyChains.get(keySubject) === done) this.keyChains.delete(keySubject);
    };
    done.then(forget, forget);
    return done;
  }

  // ------------------------------------------------------------------------------------------
  // Reads

  private outOfRange(offset: bigint, b: Bounds): SluiceError {
    return new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${offset} is out of range for ${this.topic}/${this.partition} (start ${b.start}, end ${b.end})`, {
      context: { ...this.context(), offset, start: b.start, end: b.end },
    });
  }

  /** See {@link Log.read}. */
  async read(offset: bigint, options: ReadOptions = {}): Promise<ReadResult> {
    const maxWaitMs = options.maxWaitMs ?? 0;
    const cached = this.readBounds;
    let b = cached !== null && Date.now() - cached.at < READ_BOUNDS_TTL_MS && offset >= cached.bounds.start && offset < cached.bounds.end ? cached.bounds : await this.bounds();
    if (offset < b.start || offset > b.end) throw this.outOfRange(offset, b);
    if (offset === b.end && maxWaitMs > 0 && !options.signal?.aborted) {
      const wait = await this.arm(maxWaitMs, options.signal);
      try {
        b = await this.bounds();
        if (offset === b.end) {
          await wait.done;
          b = await this.bounds();
        }
      } finally {
        wait.cancel();
      }
      if (offset < b.start || offset > b.end) throw this.outOfRange(offset, b);
    }
    const records: LogRecord[] = [];
    if (offset >= b.end) return { records, nextOffset: offset, highWatermark: b.end, logStartOffset: b.start };
    const maxBytes = Math.max(1, options.maxBytes ?? DEFAULT_MAX_BYTES);
    const next = this.compacted ? await this.readCompacted(offset, b, maxBytes, records) : await this.readBatches(offset, b, maxBytes, records);
    return { records, nextOffset: next, highWatermark: b.end, logStartOffset: b.start };
  }

  /** The seq of the batch holding `offset` (start ≤ offset < end), by the index, then binary search. */
  private async seqFor(offset: bigint, b: Bounds): Promise<number> {
    let lo = b.firstSeq;
    let hi = b.lastSeq;
    for (const e of this.index) {
      if (e.seq < b.firstSeq || e.seq > b.lastSeq) continue;
      if (e.base <= offset && offset < e.end) return e.seq;
      if (e.end === offset && e.seq + 1 <= b.lastSeq) lo = Math.max(lo, e.seq + 1);
      else if (e.end <= offset) lo = Math.max(lo, e.seq + 1);
      else if (e.base > offset) hi = Math.min(hi, e.seq - 1);
    }
    while (lo < hi) {
      const mid = Math.floor((lo + hi + 1) / 2);
      const at = await this.entryAt(mid);
      if (at === null) {
        // Retention removed it meanwhile; everything below is gone too.
        lo = mid + 1;
        continue;
      }
      if (at.entry.base <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private async readBatches(offset: bigint, b: Bounds, maxBytes: number, out: LogRecord[]): Promise<bigint> {
    let seq = await this.seqFor(offset, b);
    let expected: bigint | null = null;
    let cursor = offset;
    let bytes = 0;
    while (seq <= b.lastSeq) {
      // Batches past maxBytes would be fetched for nothing: a read of 1 MiB batches wants one.
      const wanted = this.batchBytes > 0 ? Math.ceil((maxBytes - bytes) / this.batchBytes) : READ_WINDOW;
      const count = Math.max(1, Math.min(READ_WINDOW, b.lastSeq - seq + 1, wanted));
      const msgs = await Promise.all(Array.from({ length: count }, (_, k) => this.getMessage(seq + k)));
      for (const msg of msgs) {
        if (msg === null) {
          if (out.length > 0) return cursor;
          throw this.outOfRange(offset, await this.bounds());
        }
        const { buf, header } = this.check(msg);
        const entry = this.remember(msg.seq, header);
        // Retention removed the batch holding `offset` since the bounds were read.
        if (expected === null && entry.base > offset) throw this.outOfRange(offset, await this.bounds());
        if (expected !== null && entry.base !== expected) {
          throw new SluiceError('CORRUPT_RECORD', `${this.topic}/${this.partition}: batch at stream sequence ${msg.seq} has offset ${entry.base}, expected ${expected}; the batch is not served`, {
            context: { ...this.context(), seq: msg.seq },
          });
        }
        expected = entry.end;
        if (entry.end <= cursor) continue;
        if (out.length > 0 && bytes + header.size > maxBytes) return cursor;
        try {
          decodeRecords(buf, 0, header, this.topic, this.partition, cursor, entry.end, out);
        } catch (err) {
          throw new SluiceError('CORRUPT_RECORD', `${this.topic}/${this.partition}: undecodable batch at stream sequence ${msg.seq}: ${(err as Error).message}`, { context: { ...this.context(), seq: msg.seq }, cause: err });
        }
        bytes += header.size;
        cursor = entry.end;
        if (bytes >= maxBytes) return cursor;
      }
      seq += count;
    }
    return cursor;
  }

  private async readCompacted(offset: bigint, b: Bounds, maxBytes: number, out: LogRecord[]): Promise<bigint> {
    let seq = Number(offset) + 1;
    let bytes = 0;
    while (seq <= b.lastSeq) {
      const msg = await this.getNextCompacted(seq);
      if (msg === null || msg.seq > b.lastSeq) return BigInt(b.lastSeq);
      const { buf, header } = this.check(msg);
      if (out.length > 0 && bytes + header.size > maxBytes) return BigInt(msg.seq - 1);
      const before = out.length;
      try {
        decodeRecords(buf, 0, header, this.topic, this.partition, 0n, BigInt(header.lastOffsetDelta) + 1n, out);
      } catch (err) {
        throw new SluiceError('CORRUPT_RECORD', `${this.topic}/${this.partition}: undecodable record at stream sequence ${msg.seq}: ${(err as Error).message}`, { context: { ...this.context(), seq: msg.seq }, cause: err });
      }
      for (let i = before; i < out.length; i++) out[i]!.offset = BigInt(msg.seq - 1);
      bytes += header.size;
      seq = msg.seq + 1;
      if (bytes >= maxBytes) break;
    }
    return BigInt(seq - 1);
  }

  /** See {@link Log.offsetFor} with a timestamp: the first record at or after it, else the end. */
  async offsetForTimestamp(timestamp: number): Promise<bigint> {
    const b = await this.bounds();
    if (b.messages === 0) return b.end;
    if (this.compacted) {
      let seq = b.firstSeq;
      while (seq <= b.lastSeq) {
        const msg = await this.getNextCompacted(seq);
        if (msg === null) break;
        const { header } = this.check(msg);
        if (header.maxTimestamp >= timestamp) return BigInt(msg.seq - 1);
        seq = msg.seq + 1;
      }
      return b.end;
    }
    for (let seq = b.firstSeq; seq <= b.lastSeq; seq += READ_WINDOW) {
      const count = Math.min(READ_WINDOW, b.lastSeq - seq + 1);
      const msgs = await Promise.all(Array.from({ length: count }, (_, k) => this.getMessage(seq + k)));
      for (const msg of msgs) {
        if (msg === null) continue;
        const { buf, header } = this.check(msg);
        if (header.maxTimestamp < timestamp) continue;
        const records: LogRecord[] = [];
        decodeRecords(buf, 0, header, this.topic, this.partition, 0n, 1n << 62n, records);
        for (const r of records) if (r.timestamp >= timestamp) return r.offset;
      }
    }
    return b.end;
  }

  // ------------------------------------------------------------------------------------------
  // Retention

  /**
   * Removes the oldest batches whose newest record is older than `cutoff`, always keeping the last
   * batch: an empty stream would forget where the partition's offsets ended. Returns how many
   * messages were removed.
   */
  async runRetention(cutoff: number): Promise<number> {
    const b = await this.bounds();
    if (b.messages <= 1) return 0;
    let purgeBelow = b.firstSeq;
    while (purgeBelow < b.lastSeq) {
      const msg = await this.getMessage(purgeBelow);
      if (msg !== null && this.check(msg).header.maxTimestamp >= cutoff) break;
      purgeBelow++;
    }
    if (purgeBelow === b.firstSeq) return 0;
    try {
      const res = await this.ctx.jsm.streams.purge(this.stream, { seq: purgeBelow });
      this.readBounds = null;
      return res.purged;
    } catch (err) {
      throw this.fail(err, 'retention of');
    }
  }

  // ------------------------------------------------------------------------------------------
  // Waiting for appends

  /**
   * Returns a promise that resolves at the next message stored in this partition after the call,
   * or after `maxWaitMs`, or on abort. A core subscription on the partition's subjects wakes it:
   * JetStream forwards every stored message to subscribers of its subject, so nothing is polled.
   */
  async arm(maxWaitMs: number, signal?: AbortSignal): Promise<{ done: Promise<void>; cancel(): void }> {
    await this.ensureSubscription();
    let finish = (): void => {};
    const done = new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        signal?.removeEventListener('abort', wake);
        resolve();
      };
      const timer = setTimeout(wake, maxWaitMs);
      this.waiters.add(wake);
      signal?.addEventListener('abort', wake, { once: true });
      finish = wake;
    });
    return { done, cancel: finish };
  }

  private ensureSubscription(): Promise<void> {
    if (this.subscribed === null) {
      const subject = this.compacted ? `${this.subject}.*` : this.subject;
      this.subscription = this.ctx.nc.subscribe(subject, {
        callback: () => {
          for (const wake of [...this.waiters]) wake();
        },
      });
      // The flush makes sure the server knows the subscription before the caller re-checks the end.
      this.subscribed = this.ctx.nc.flush().catch((err: unknown) => {
        this.subscribed = null;
        throw this.fail(err, 'subscribing to');
      });
    }
    return this.subscribed;
  }

  /** Wakes pending waits and drops the subscription. */
  close(): void {
    for (const wake of [...this.waiters]) wake();
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.subscribed = null;
  }
}

/**
 * The NATS JetStream backend of {@link Log}: topics live in a JetStream cluster, so several sluice
 * processes on several machines share them. core/log/JETSTREAM.md documents the mapping and every
 * difference from the embedded log:
 *
 *   KV `<prefix>_topics`    key hex(topic) → TopicConfig JSON (the topic exists iff this key does)
 *   stream `<prefix>_<hex(topic)>_<p>`, subject `<prefix>.<hex(topic)>.<p>` (`.<key hash>` if compacted)
 *   KV `<prefix>_offsets`   key hex(group).hex(topic).p → committed offset (decimal; '' = claimed, none yet)
 *   KV `<prefix>_members`   key hex(group).memberId → the member's topics, expiring unless renewed
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { connect, DiscardPolicy, nanos, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager, type KV, type NatsConnection, type StreamConfig } from 'nats';
import type { Logger } from '../../connector.ts';
import { SluiceError } from '../../errors.ts';
import { DEFAULT_TOPIC_CONFIG, validateTopicConfig } from '../embedded-log.ts';
import { resetGroupOffsets, validateGroupName } from '../groups.ts';
import { partitionForKey } from '../partitioner.ts';
import { chunkIndexes } from '../record-batch.ts';
import type {
  AppendResult,
  Consumer,
  GroupPartitionStatus,
  Log,
  OffsetSpec,
  ProducerRecord,
  ReadOptions,
  ReadResult,
  SubscribeOptions,
  TopicConfig,
  TopicDescription,
  TopicPartitionOffset,
} from '../types.ts';
import { JetStreamConsumer, MEMBER_TTL_MS } from './jetstream-consumer.ts';
import { isConflict, isStreamNotFound, JS_ERR, apiErrorCode, toSluiceError, withRetry } from './nats-errors.ts';
import { hex, keyToken, unhex } from './names.ts';
import { JsPartition, type PartitionContext } from './partition.ts';

export interface JetStreamLogOptions {
  /** NATS URLs, e.g. `['nats://127.0.0.1:4222']`; the client fails over between them. */
  servers: string[];
  /** JetStream replicas of every stream and bucket this log creates (default 1, at most 5). */
  replicas?: number;
  /** Names of streams, subjects and buckets start with it, so deployments can share an account. Default `sluice`. */
  prefix?: string;
  /** The client connection name the NATS server shows. */
  name?: string;
  logger?: Logger;
  /** How often retention runs in this process; 0 disables it (tests call `runMaintenance`). Default 30 s. */
  maintenanceIntervalMs?: number;
}

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const PREFIX = /^[A-Za-z0-9-]{1,32}$/;
/** NATS refuses messages over 1 MiB by default; batches stay below it with room for headers. */
const MAX_BATCH_BYTES = 900 * 1024;
const MAX_BATCH_RECORDS = 10_000;
const MAINTENANCE_INTERVAL_MS = 30_000;
const API_TIMEOUT_MS = 3_000;

interface TopicState {
  name: string;
  config: TopicConfig;
  partitions: JsPartition[];
  sticky: number;
}

class JsAppendResult implements AppendResult {
  constructor(
    readonly count: number,
    readonly ranges: Array<{ partition: number; baseOffset: bigint; count: number }>,
    /** Per record, when the append touched more than one range or a compacted topic. */
    private readonly perRecord: { partitions: Uint32Array; offsets: BigInt64Array } | null,
  ) {}

  partitionOf(index: number): number {
    this.check(index);
    return this.perRecord === null ? this.ranges[0]!.partition : this.perRecord.partitions[index]!;
  }

  offsetOf(index: number): bigint {
    this.check(index);
    return this.perRecord === null ? this.ranges[0]!.baseOffset + BigInt(index) : this.perRecord.offsets[index]!;
  }

  private check(index: number): void {
    if (!(index >= 0 && index < this.count)) throw new SluiceError('INVALID_ARGUMENT', `record index ${index} out of range 0..${this.count - 1}`);
  }
}

function recordBytes(r: ProducerRecord): number {
  let size = 24 + (r.key ? r.key.length : 0) + (r.value ? r.value.length : 0);
  if (r.headers) for (const k in r.headers) size += 8 + k.length + (r.headers[k]?.length ?? 0);
  return size;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

export class JetStreamLog implements Log {
  private readonly topics = new Map<string, Promise<TopicState>>();
  private readonly consumers = new Set<JetStreamConsumer>();
  private maintenanceTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private msgCounter = 0;
  private readonly ctx: PartitionContext;

  private constructor(
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly prefix: string,
    readonly replicas: number,
    private readonly topicsKv: KV,
    /** @internal */ readonly offsetsKv: KV,
    /** @internal */ readonly membersKv: KV,
    private readonly logger: Logger | undefined,
  ) {
    const writerId = randomBytes(6).toString('hex');
    this.ctx = { nc, js, jsm, writerId, nextMsgId: () => `${writerId}.${++this.msgCounter}` };
  }

  /** See {@link openJetStreamLog}. */
  static async open(options: JetStreamLogOptions): Promise<JetStreamLog> {
    const prefix = options.prefix ?? 'sluice';
    if (!PREFIX.test(prefix)) throw new SluiceError('CONFIG_INVALID', `log prefix must be 1-32 characters of A-Z a-z 0-9 -, got ${JSON.stringify(prefix)}`, { context: { field: 'prefix', value: prefix } });
    const replicas = options.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
      throw new SluiceError('CONFIG_INVALID', `log.replicas must be an integer in 1..5 (JetStream's limit), got ${JSON.stringify(replicas)}`, { context: { field: 'replicas', value: replicas } });
    }
    if (!Array.isArray(options.servers) || options.servers.length === 0) {
      throw new SluiceError('CONFIG_INVALID', 'log.servers must list at least one NATS URL, e.g. nats://127.0.0.1:4222', { context: { field: 'servers' } });
    }
    let nc: NatsConnection;
    try {
      nc = await connect({ servers: options.servers, name: options.name ?? `sluice-${os.hostname()}-${process.pid}`, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 10_000 });
    } catch (err) {
      throw toSluiceError(err, `cannot connect to NATS at ${options.servers.join(', ')}`, { servers: options.servers });
    }
    try {
      // A request sent to a node that dies is never answered: a short per-request timeout, with
      // withRetry (management) and the publish loop (appends) repeating it, bounds the stall.
      const jsm = await withRetry('JetStream', () => nc.jetstreamManager({ timeout: API_TIMEOUT_MS }));
      const js = nc.jetstream({ timeout: API_TIMEOUT_MS });
      const context = { replicas };
      const bucket = (name: string, extra: { ttl?: number } = {}): Promise<KV> =>
        withRetry(`creating KV bucket ${name}`, () => js.views.kv(name, { replicas, history: 1, ...extra }), { context });
      const [topicsKv, offsetsKv, membersKv] = await Promise.all([bucket(`${prefix}_topics`), bucket(`${prefix}_offsets`), bucket(`${prefix}_members`, { ttl: MEMBER_TTL_MS })]);
      const log = new JetStreamLog(nc, js, jsm, prefix, replicas, topicsKv, offsetsKv, membersKv, options.logger);
      const interval = options.maintenanceIntervalMs ?? MAINTENANCE_INTERVAL_MS;
      if (interval > 0) {
        log.maintenanceTimer = setInterval(() => void log.runMaintenance(), interval);
        log.maintenanceTimer.unref();
      }
      return log;
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw toSluiceError(err, 'opening the JetStream log');
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new SluiceError('LOG_CLOSED', 'the log is closed');
  }

  private streamName(topic: string, partition: number): string {
    return `${this.prefix}_${hex(topic)}_${partition}`;
  }

  private subject(topic: string, partition: number): string {
    return `${this.prefix}.${hex(topic)}.${partition}`;
  }

  private streamConfig(topic: string, partition: number, config: TopicConfig): Partial<StreamConfig> {
    const compacted = config.cleanup === 'compact';
    return {
      name: this.streamName(topic, partition),
      subjects: [compacted ? `${this.subject(topic, partition)}.*` : this.subject(topic, partition)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: this.replicas,
      max_bytes: config.retentionBytes ?? -1,
      // Plain partitions apply retentionMs themselves (runMaintenance) so the last batch survives;
      // compacted ones key offsets on the stream sequence, which survives an emptied stream.
      // JetStream refuses a max_age under 100 ms; a shorter retention would empty the topic anyway.
      max_age: compacted && config.retentionMs !== null ? nanos(Math.max(100, config.retentionMs)) : 0,
      max_msgs_per_subject: compacted ? 1 : -1,
      allow_direct: true,
    };
  }

  private async loadTopic(name: string): Promise<TopicState> {
    let entry;
    try {
      entry = await withRetry(`reading topic ${name}`, () => this.topicsKv.get(hex(name)), { context: { topic: name } });
    } catch (err) {
      throw toSluiceError(err, `reading topic ${name}`, { topic: name });
    }
    if (entry === null || entry.operation !== 'PUT' || entry.length === 0) {
      throw new SluiceError('TOPIC_NOT_FOUND', `unknown topic ${JSON.stringify(name)}`, { context: { topic: name } });
    }
    const config: TopicConfig = { ...DEFAULT_TOPIC_CONFIG, ...(entry.json<Partial<TopicConfig>>()) };
    const partitions: JsPartition[] = [];
    for (let p = 0; p < config.partitions; p++) {
      partitions.push(new JsPartition(this.ctx, name, p, this.streamName(name, p), this.subject(name, p), config.cleanup === 'compact'));
    }
    return { name, config, partitions, sticky: Math.floor(Math.random() * config.partitions) };
  }

  /** @internal The topic's config and partitions, cached after the first use in this process. */
  topic(name: string): Promise<TopicState> {
    this.assertOpen();
    let state = this.topics.get(name);
    if (!state) {
      state = this.loadTopic(name);
      this.topics.set(name, state);
      state.catch(() => {
        if (this.topics.get(name) === state) this.topics.delete(name);
      });
    }
    return state;
  }

  /** @internal */
  async partitionOf(topicName: string, partition: number): Promise<JsPartition> {
    const topic = await this.topic(topicName);
    const p = topic.partitions[partition];
    if (!p) {
      throw new SluiceError('INVALID_ARGUMENT', `topic ${topicName} has no partition ${partition} (it has ${topic.partitions.length})`, { context: { topic: topicName, partition } });
    }
    return p;
  }

  /** Runs `call`; a stream that vanished means another process deleted the topic, so the cache goes. */
  private async guard<T>(topic: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if ((err instanceof SluiceError && err.code === 'TOPIC_NOT_FOUND') || isStreamNotFound(err)) this.forget(topic);
      throw err;
    }
  }

  private forget(topic: string): void {
    const state = this.topics.get(topic);
    this.topics.delete(topic);
    void state?.then((s) => s.partitions.forEach((p) => p.close()), () => undefined);
  }

  async createTopic(name: string, config: Partial<TopicConfig> = {}, options: { ifNotExists?: boolean } = {}): Promise<TopicDescription> {
    this.assertOpen();
    if (!TOPIC_NAME.test(name) || name === '.' || name === '..') {
      throw new SluiceError('INVALID_TOPIC_NAME', `invalid topic name ${JSON.stringify(name)}: use 1-249 characters of A-Z a-z 0-9 . _ -`, { context: { topic: name } });
    }
    const full: TopicConfig = { ...DEFAULT_TOPIC_CONFIG, ...stripUndefined(config) };
    validateTopicConfig(full);
    let existing: TopicConfig | null = null;
    try {
      await withRetry(`creating topic ${name}`, () => this.topicsKv.create(hex(name), JSON.stringify(full)), { context: { topic: name } });
    } catch (err) {
      if (!isConflict(err) && !isConflict((err as { cause?: unknown }).cause)) throw toSluiceError(err, `creating topic ${name}`, { topic: name });
      if (!options.ifNotExists) throw new SluiceError('TOPIC_EXISTS', `topic ${name} already exists`, { context: { topic: name } });
      this.topics.delete(name);
      existing = (await this.topic(name)).config;
    }
    // Streams are (re)created also for an existing topic: a creator that died between the KV entry
    // and its streams leaves them missing, and adding an identical stream is a no-op.
    const effective = existing ?? full;
    await Promise.all(
      Array.from({ length: effective.partitions }, (_, p) =>
        withRetry(
          `creating stream for ${name}/${p}`,
          async () => {
            try {
              await this.jsm.streams.add(this.streamConfig(name, p, effective));
            } catch (err) {
              if (apiErrorCode(err) !== JS_ERR.streamNameInUse) throw err;
            }
          },
          { context: { topic: name, partition: p, replicas: this.replicas } },
        ),
      ),
    );
    this.topics.delete(name);
    // A stream another process is creating at this moment (workers starting together create the
    // spec's topics together) can answer "not found" until its replicas are placed.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.describeTopic(name);
      } catch (err) {
        if (!(err instanceof SluiceError && err.code === 'TOPIC_NOT_FOUND') || attempt >= 40) throw err;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }

  async deleteTopic(name: string): Promise<void> {
    this.assertOpen();
    const topic = await this.topic(name);
    this.forget(name);
    await withRetry(`deleting topic ${name}`, () => this.topicsKv.delete(hex(name)), { context: { topic: name } });
    await Promise.all(
      topic.partitions.map((p) =>
        withRetry(`deleting stream ${p.stream}`, async () => {
          try {
            await this.jsm.streams.delete(p.stream);
          } catch (err) {
            if (!isStreamNotFound(err)) throw err;
          }
        }),
      ),
    );
    const suffix = `.${hex(name)}.`;
    const keys: string[] = [];
    for await (const key of await this.offsetsKv.keys()) if (key.includes(suffix)) keys.push(key);
    await Promise.all(keys.map((k) => this.offsetsKv.purge(k)));
  }

  async listTopics(): Promise<string[]> {
    this.assertOpen();
    const names: string[] = [];
    try {
      for await (const key of await this.topicsKv.keys()) names.push(unhex(key));
    } catch (err) {
      throw toSluiceError(err, 'listing topics');
    }
    return names.sort();
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    const topic = await this.topic(name);
    return this.guard(name, async () => ({
      name,
      config: { ...topic.config },
      partitions: await Promise.all(
        topic.partitions.map(async (p) => {
          const b = await p.bounds();
          return { partition: p.partition, startOffset: b.start, endOffset: b.end, sizeBytes: b.bytes, segments: b.messages };
        }),
      ),
    }));
  }

  async append(topicName: string, records: ProducerRecord[]): Promise<AppendResult> {
    this.assertOpen();
    const topic = await this.topic(topicName);
    return this.guard(topicName, () => this.appendTo(topic, records));
  }

  private async appendTo(topic: TopicState, records: ProducerRecord[]): Promise<AppendResult> {
    const count = records.length;
    if (count === 0) return new JsAppendResult(0, [], null);
    const n = topic.partitions.length;
    const now = Date.now();
    const compacted = topic.config.cleanup === 'compact';
    const sticky = topic.sticky;
    topic.sticky = (topic.sticky + 1) % n;

    const byPartition: number[][] = Array.from({ length: n }, () => []);
    for (let i = 0; i < count; i++) {
      const r = records[i]!;
      let p: number;
      if (compacted && r.key == null) {
        throw new SluiceError('INVALID_ARGUMENT', `topic ${topic.name} is compacted, so every record needs a key (record ${i} has none)`, { context: { topic: topic.name, index: i } });
      } else if (r.partition !== undefined) {
        if (!Number.isInteger(r.partition) || r.partition < 0 || r.partition >= n) {
          throw new SluiceError('INVALID_ARGUMENT', `record ${i} names partition ${r.partition}, but ${topic.name} has partitions 0..${n - 1}`, { context: { topic: topic.name, partition: r.partition } });
        }
        p = r.partition;
      } else if (r.key != null) {
        p = partitionForKey(r.key, n);
      } else {
        p = sticky;
      }
      byPartition[p]!.push(i);
    }

    if (compacted) {
      const partitions = new Uint32Array(count);
      const offsets = new BigInt64Array(count);
      const pending: Promise<void>[] = [];
      for (let p = 0; p < n; p++) {
        for (const i of byPartition[p]!) {
          partitions[i] = p;
          const r = records[i]!;
          pending.push(topic.partitions[p]!.appendKeyed(r, keyToken(r.key!), now).then((o) => void (offsets[i] = o)));
        }
      }
      await Promise.all(pending);
      const ranges: Array<{ partition: number; baseOffset: bigint; count: number }> = [];
      for (let p = 0; p < n; p++) {
        const idx = byPartition[p]!;
        if (idx.length > 0) ranges.push({ partition: p, baseOffset: offsets[idx[0]!]!, count: idx.length });
      }
      return new JsAppendResult(count, ranges, { partitions, offsets });
    }

    const ranges: Array<{ partition: number; baseOffset: bigint; count: number }> = [];
    const jobs: Array<{ p: number; chunk: number[]; base: Promise<bigint> }> = [];
    for (let p = 0; p < n; p++) {
      const indexes = byPartition[p]!;
      if (indexes.length === 0) continue;
      const whole = indexes.length === count;
      for (const chunk of chunkIndexes(records, indexes, recordBytes, MAX_BATCH_BYTES, MAX_BATCH_RECORDS)) {
        jobs.push({ p, chunk, base: topic.partitions[p]!.appendBatch(records, whole && chunk.length === count ? null : chunk, now) });
      }
    }
    const bases = await Promise.all(jobs.map((j) => j.base));
    if (jobs.length === 1) return new JsAppendResult(count, [{ partition: jobs[0]!.p, baseOffset: bases[0]!, count }], null);
    const partitions = new Uint32Array(count);
    const offsets = new BigInt64Array(count);
    jobs.forEach((job, k) => {
      ranges.push({ partition: job.p, baseOffset: bases[k]!, count: job.chunk.length });
      job.chunk.forEach((i, rank) => {
        partitions[i] = job.p;
        offsets[i] = bases[k]! + BigInt(rank);
      });
    });
    return new JsAppendResult(count, ranges, { partitions, offsets });
  }

  async read(topic: string, partition: number, offset: bigint, options?: ReadOptions): Promise<ReadResult> {
    const p = await this.partitionOf(topic, partition);
    return this.guard(topic, () => p.read(offset, options));
  }

  async offsetFor(topic: string, partition: number, spec: OffsetSpec): Promise<bigint> {
    const p = await this.partitionOf(topic, partition);
    return this.guard(topic, async () => {
      if (spec.kind === 'timestamp') return p.offsetForTimestamp(spec.timestamp);
      const b = await p.bounds();
      if (spec.kind === 'earliest') return b.start;
      if (spec.kind === 'latest') return b.end;
      if (spec.offset < b.start || spec.offset > b.end) {
        throw new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${spec.offset} is out of range for ${topic}/${partition} (start ${b.start}, end ${b.end})`, {
          context: { topic, partition, offset: spec.offset },
        });
      }
      return spec.offset;
    });
  }

  /** @internal The KV key of a group's committed offset. */
  offsetKey(group: string, topic: string, partition: number): string {
    return `${hex(group)}.${hex(topic)}.${partition}`;
  }

  /** @internal Throws OFFSET_OUT_OF_RANGE for an offset past the partition's end or below 0. */
  async checkCommittable(group: string, offsets: readonly TopicPartitionOffset[]): Promise<void> {
    await Promise.all(
      offsets.map(async (o) => {
        const p = await this.partitionOf(o.topic, o.partition);
        if (o.offset < 0n) throw this.badCommit(group, o, 0n);
        // Most commits are at or below a position already read, so the end is fetched only when needed.
        const b = await p.bounds();
        if (o.offset > b.end) throw this.badCommit(group, o, b.end);
      }),
    );
  }

  private badCommit(group: string, o: TopicPartitionOffset, end: bigint): SluiceError {
    return new SluiceError('OFFSET_OUT_OF_RANGE', `cannot commit offset ${o.offset} for ${o.topic}/${o.partition}: the end offset is ${end}`, {
      context: { group, topic: o.topic, partition: o.partition, offset: o.offset },
    });
  }

  /**
   * Writes the offsets unconditionally (one KV put per partition, not atomic across partitions).
   * A member that owns one of them is fenced by the changed revision: its next commit there fails
   * with NOT_ASSIGNED, as a reset of an active group should not be silently undone.
   */
  async commitOffsets(group: string, offsets: TopicPartitionOffset[]): Promise<void> {
    this.assertOpen();
    validateGroupName(group);
    await this.checkCommittable(group, offsets);
    await Promise.all(offsets.map((o) => withRetry(`committing offsets of group ${group}`, () => this.offsetsKv.put(this.offsetKey(group, o.topic, o.partition), String(o.offset)), { context: { group } })));
  }

  async committedOffsets(group: string): Promise<TopicPartitionOffset[]> {
    this.assertOpen();
    const prefix = `${hex(group)}.`;
    const keys: string[] = [];
    for await (const key of await this.offsetsKv.keys(`${prefix}>`)) keys.push(key);
    const out: TopicPartitionOffset[] = [];
    await Promise.all(
      keys.map(async (key) => {
        const entry = await this.offsetsKv.get(key);
        if (entry === null || entry.operation !== 'PUT' || entry.length === 0) return;
        const [, topicHex, partition] = key.split('.');
        out.push({ topic: unhex(topicHex!), partition: Number(partition), offset: BigInt(entry.string()) });
      }),
    );
    return out.sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
  }

  async listGroups(): Promise<string[]> {
    this.assertOpen();
    const groups = new Set<string>();
    for await (const key of await this.offsetsKv.keys()) groups.add(unhex(key.split('.')[0]!));
    return [...groups].sort();
  }

  /** @internal Live members of a group and their topics, from the members bucket. */
  async liveMembers(group: string): Promise<Map<string, string[]>> {
    const prefix = `${hex(group)}.`;
    const keys: string[] = [];
    for await (const key of await this.membersKv.keys(`${prefix}*`)) keys.push(key);
    const members = new Map<string, string[]>();
    await Promise.all(
      keys.map(async (key) => {
        const entry = await this.membersKv.get(key);
        if (entry === null || entry.operation !== 'PUT' || entry.length === 0) return;
        members.set(key.slice(prefix.length), (entry.json<{ topics: string[] }>()).topics);
      }),
    );
    return members;
  }

  async describeGroup(group: string): Promise<GroupPartitionStatus[]> {
    this.assertOpen();
    const committed = await this.committedOffsets(group);
    const members = await this.liveMembers(group);
    const topics = new Set(committed.map((o) => o.topic));
    for (const ts of members.values()) for (const t of ts) topics.add(t);
    const out: GroupPartitionStatus[] = [];
    for (const name of [...topics].sort()) {
      let topic: TopicState;
      try {
        topic = await this.topic(name);
      } catch {
        continue;
      }
      for (const p of topic.partitions) {
        const b = await p.bounds();
        const c = committed.find((o) => o.topic === name && o.partition === p.partition)?.offset ?? null;
        out.push({ topic: name, partition: p.partition, committed: c, endOffset: b.end, lag: b.end - (c ?? b.start) });
      }
    }
    return out;
  }

  /**
   * Through {@link resetGroupOffsets}, committing with {@link JetStreamLog.commitOffsets}: one KV put per
   * partition, not atomic across partitions, and it fences the partitions' current owners.
   */
  async resetGroup(group: string, topic: string, to: OffsetSpec): Promise<TopicPartitionOffset[]> {
    return resetGroupOffsets(this, group, topic, (await this.topic(topic)).partitions, to);
  }

  async subscribe(group: string, topics: string[], options: SubscribeOptions = {}): Promise<Consumer> {
    this.assertOpen();
    validateGroupName(group);
    for (const t of topics) await this.topic(t);
    const consumer = new JetStreamConsumer(this, group, topics, options.autoOffsetReset ?? 'earliest', () => this.consumers.delete(consumer));
    this.consumers.add(consumer);
    try {
      await consumer.join();
    } catch (err) {
      await consumer.close().catch(() => undefined);
      throw toSluiceError(err, `joining group ${group}`, { group });
    }
    return consumer;
  }

  /**
   * Applies `retentionMs` to the plain partitions of the topics this process has used. Every
   * process may run it; purging below a sequence is idempotent. Compacted topics need nothing:
   * JetStream keeps one message per key on its own.
   */
  async runMaintenance(now = Date.now()): Promise<void> {
    if (this.closed) return;
    for (const state of [...this.topics.values()]) {
      let topic: TopicState;
      try {
        topic = await state;
      } catch {
        continue;
      }
      if (topic.config.cleanup === 'compact' || topic.config.retentionMs === null) continue;
      for (const p of topic.partitions) {
        try {
          const purged = await p.runRetention(now - topic.config.retentionMs);
          if (purged > 0) this.logger?.info({ topic: topic.name, partition: p.partition, purged }, 'retention removed old batches');
        } catch (err) {
          this.logger?.warn({ err, topic: topic.name, partition: p.partition }, 'retention failed');
        }
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const c of [...this.consumers]) await c.close().catch(() => undefined);
    this.closed = true;
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    for (const state of this.topics.values()) void state.then((t) => t.partitions.forEach((p) => p.close()), () => undefined);
    this.topics.clear();
    await this.nc.drain().catch(() => this.nc.close());
  }
}

/**
 * Connects to NATS and opens the log there, creating its KV buckets if needed (retrying for up to
 * ~20 s while a fresh cluster elects its leaders). Throws CONFIG_INVALID for bad options or a
 * replica count the cluster cannot place, and a RetriableError when NATS is unreachable.
 */
export function openJetStreamLog(options: JetStreamLogOptions): Promise<Log> {
  return JetStreamLog.open(options);
}

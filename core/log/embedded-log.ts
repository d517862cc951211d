/**
 * The embedded backend of {@link Log}: topics in a data directory on the local disk.
 *
 * Layout (FORMAT.md has the byte-level detail):
 *   <data-dir>/LOCK                                  who holds the directory (informational)
 *   <data-dir>/topics/<topic>/topic.json             the topic's config
 *   <data-dir>/topics/<topic>/<partition>/<base>.log|.index|.timeindex
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.ts';
import { GroupMembership, OFFSETS_TOPIC, OffsetStore, resetGroupOffsets, validateGroupName } from './groups.ts';
import { lockDataDir, type DataDirLock } from './lock.ts';
import { Partition, syncDir } from './partition.ts';
import { partitionForKey } from './partitioner.ts';
import { chunkIndexes } from './record-batch.ts';
import type {
  AppendResult,
  Consumer,
  GroupPartitionStatus,
  Log,
  LogRecord,
  OffsetSpec,
  ProducerRecord,
  ReadOptions,
  ReadResult,
  SubscribeOptions,
  TopicConfig,
  TopicDescription,
  TopicPartition,
  TopicPartitionOffset,
} from './types.ts';

const DAY = 24 * 60 * 60 * 1000;

export const DEFAULT_TOPIC_CONFIG: Readonly<TopicConfig> = Object.freeze({
  partitions: 1,
  retentionMs: 7 * DAY,
  retentionBytes: null,
  cleanup: 'delete',
  // Nothing acknowledged may be lost, so appends wait for fsync by default; group commit keeps
  // that affordable.
  fsync: 'always',
  fsyncIntervalMs: 1000,
  segmentBytes: 128 * 1024 * 1024,
  segmentMs: 7 * DAY,
  tombstoneRetentionMs: DAY,
});

/** Kafka's topic-name rule, which also keeps names safe as directory names. */
const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
/** Batches are cut at this size so reads stay bounded and segments can roll between them. */
const MAX_BATCH_BYTES = 1 << 20;
const MAX_BATCH_RECORDS = 10_000;
/** The least a poll's first pass reads from a partition, so a group of many partitions still reads whole batches. */
const MIN_PARTITION_SHARE = 64 << 10;
const MAINTENANCE_INTERVAL_MS = 30_000;

/** Events the log reports; the runtime forwards them to its logger. */
export type LogEvent =
  | { type: 'recovered'; topic: string; partition: number; detail: string }
  | { type: 'retention'; topic: string; partition: number; segmentsDeleted: number }
  | { type: 'compacted'; topic: string; partition: number; segmentsRewritten: number }
  | { type: 'maintenance-failed'; error: Error };

export interface OpenLogOptions {
  /**
   * Opens without the lock, for inspecting a directory another process is writing: no recovery,
   * no writes, and mutating calls throw `LOG_READ_ONLY`. Reads follow the writer's appends.
   */
  readOnly?: boolean;
  /** Defaults for topics created without explicit settings. */
  defaults?: Partial<TopicConfig>;
  /** Receives recovery, retention and compaction events. */
  onEvent?: (event: LogEvent) => void;
  /** How often retention and compaction run; 0 disables the timer (tests call `runMaintenance`). */
  maintenanceIntervalMs?: number;
}

interface Topic {
  name: string;
  dir: string;
  config: TopicConfig;
  partitions: Partition[];
  /** The partition the next keyless append goes to (sticky per call, rotating). */
  sticky: number;
}

/** Validates a full config; throws INVALID_ARGUMENT naming the field and the value. */
export function validateTopicConfig(config: TopicConfig): void {
  const bad = (field: string, rule: string, value: unknown): never => {
    throw new SluiceError('INVALID_ARGUMENT', `${field} must be ${rule}, got ${JSON.stringify(value)}`, { context: { field, value } });
  };
  const positiveInt = (field: keyof TopicConfig, max: number): void => {
    const v = config[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) bad(field, `an integer in 1..${max}`, v);
  };
  positiveInt('partitions', 10_000);
  positiveInt('segmentBytes', 0x7fffffff);
  positiveInt('segmentMs', Number.MAX_SAFE_INTEGER);
  positiveInt('fsyncIntervalMs', 86_400_000);
  if (config.retentionMs !== null && !(Number.isInteger(config.retentionMs) && config.retentionMs > 0)) bad('retentionMs', 'a positive integer or null', config.retentionMs);
  if (config.retentionBytes !== null && !(Number.isInteger(config.retentionBytes) && config.retentionBytes > 0)) bad('retentionBytes', 'a positive integer or null', config.retentionBytes);
  if (!(Number.isInteger(config.tombstoneRetentionMs) && config.tombstoneRetentionMs >= 0)) bad('tombstoneRetentionMs', 'a non-negative integer', config.tombstoneRetentionMs);
  if (config.cleanup !== 'delete' && config.cleanup !== 'compact') bad('cleanup', 'delete or compact', config.cleanup);
  if (!['always', 'interval', 'never'].includes(config.fsync)) bad('fsync', 'always, interval or never', config.fsync);
}

function validateTopicName(name: string): void {
  if (!TOPIC_NAME.test(name) || name === '.' || name === '..') {
    throw new SluiceError('INVALID_TOPIC_NAME', `invalid topic name ${JSON.stringify(name)}: use 1-249 characters of A-Z a-z 0-9 . _ -`, { context: { topic: name } });
  }
}

function writeFileAtomic(file: string, content: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  syncDir(path.dirname(file));
}

class Ack implements AppendResult {
  constructor(
    readonly count: number,
    readonly ranges: Array<{ partition: number; baseOffset: bigint; count: number }>,
    /** Per record: index into `ranges`, or null when everything went to one range. */
    private readonly rangeOf: Uint32Array | null,
    /** Per record: its position within its range. */
    private readonly rank: Uint32Array | null,
  ) {}

  partitionOf(index: number): number {
    this.check(index);
    return this.ranges[this.rangeOf === null ? 0 : this.rangeOf[index]!]!.partition;
  }

  offsetOf(index: number): bigint {
    this.check(index);
    if (this.rangeOf === null) return this.ranges[0]!.baseOffset + BigInt(index);
    return this.ranges[this.rangeOf[index]!]!.baseOffset + BigInt(this.rank![index]!);
  }

  private check(index: number): void {
    if (!(index >= 0 && index < this.count)) throw new SluiceError('INVALID_ARGUMENT', `record index ${index} out of range 0..${this.count - 1}`);
  }
}

export class EmbeddedLog implements Log {
  private readonly topics = new Map<string, Topic>();
  private readonly membership: GroupMembership;
  private offsetStore!: OffsetStore;
  private maintenanceTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly topicsDir: string;

  private constructor(
    readonly dataDir: string,
    private readonly readOnly: boolean,
    private readonly defaults: TopicConfig,
    private readonly onEvent: (event: LogEvent) => void,
    private readonly lock: DataDirLock | null,
  ) {
    this.topicsDir = path.join(dataDir, 'topics');
    this.membership = new GroupMembership((topic) => this.topic(topic).partitions.length);
  }

  /** See {@link openLog}. */
  static async open(dataDir: string, options: OpenLogOptions = {}): Promise<EmbeddedLog> {
    const readOnly = options.readOnly ?? false;
    const defaults = { ...DEFAULT_TOPIC_CONFIG, ...options.defaults };
    validateTopicConfig(defaults);
    let lock: DataDirLock | null = null;
    if (!readOnly) {
      fs.mkdirSync(path.join(dataDir, 'topics'), { recursive: true });
      lock = await lockDataDir(dataDir);
    } else if (!fs.existsSync(dataDir)) {
      throw new SluiceError('INVALID_ARGUMENT', `data directory ${dataDir} does not exist: nothing has been written there yet (check --data-dir)`, { context: { dir: dataDir } });
    }
    const log = new EmbeddedLog(dataDir, readOnly, defaults, options.onEvent ?? (() => {}), lock);
    try {
      log.loadTopics();
      if (!readOnly && !log.topics.has(OFFSETS_TOPIC)) {
        log.createTopicSync(OFFSETS_TOPIC, { partitions: 1, cleanup: 'compact', fsync: 'always', retentionMs: null, segmentBytes: 16 * 1024 * 1024 });
      }
      const offsets = log.topics.get(OFFSETS_TOPIC);
      log.offsetStore = new OffsetStore(offsets ? offsets.partitions[0]! : EmbeddedLog.emptyOffsetsPartition(dataDir));
      await log.offsetStore.load();
    } catch (err) {
      await log.close();
      throw err;
    }
    const interval = options.maintenanceIntervalMs ?? MAINTENANCE_INTERVAL_MS;
    if (!readOnly && interval > 0) {
      log.maintenanceTimer = setInterval(() => log.runMaintenance(), interval);
      log.maintenanceTimer.unref();
    }
    return log;
  }

  private static emptyOffsetsPartition(dataDir: string): Partition {
    return Partition.open({ topic: OFFSETS_TOPIC, partition: 0, dir: path.join(dataDir, 'topics', OFFSETS_TOPIC, '0'), config: { ...DEFAULT_TOPIC_CONFIG }, writable: false });
  }

  private loadTopics(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.topicsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      if (name.startsWith('.')) {
        // Leftovers of a create or delete that a crash interrupted.
        if (!this.readOnly) fs.rmSync(path.join(this.topicsDir, name), { recursive: true, force: true });
        continue;
      }
      if (!this.topics.has(name)) this.loadTopic(name);
    }
  }

  private loadTopic(name: string): Topic | undefined {
    const dir = path.join(this.topicsDir, name);
    let stored: Partial<TopicConfig>;
    try {
      stored = JSON.parse(fs.readFileSync(path.join(dir, 'topic.json'), 'utf8')) as Partial<TopicConfig>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new SluiceError('IO_ERROR', `cannot read ${path.join(dir, 'topic.json')}: ${(err as Error).message}`, { cause: err });
    }
    const config: TopicConfig = { ...DEFAULT_TOPIC_CONFIG, ...stored };
    // Kafka's sticky partitioner starts at a random partition too: short-lived producers that each
    // append once would otherwise all land on partition 0.
    const topic: Topic = { name, dir, config, partitions: [], sticky: Math.floor(Math.random() * config.partitions) };
    for (let p = 0; p < config.partitions; p++) {
      topic.partitions.push(
        Partition.open({
          topic: name,
          partition: p,
          dir: path.join(dir, String(p)),
          config,
          writable: !this.readOnly,
          onDamage: (detail) => this.onEvent({ type: 'recovered', topic: name, partition: p, detail }),
        }),
      );
    }
    this.topics.set(name, topic);
    return topic;
  }

  private topic(name: string): Topic {
    this.assertOpen();
    let topic = this.topics.get(name);
    // A read-only open learns about topics the writer created after it opened.
    if (!topic && this.readOnly && TOPIC_NAME.test(name)) topic = this.loadTopic(name);
    if (!topic) throw new SluiceError('TOPIC_NOT_FOUND', `unknown topic ${JSON.stringify(name)}`, { context: { topic: name } });
    return topic;
  }

  private partitionOf(topicName: string, partition: number): Partition {
    const topic = this.topic(topicName);
    const p = topic.partitions[partition];
    if (!p) {
      throw new SluiceError('INVALID_ARGUMENT', `topic ${topicName} has no partition ${partition} (it has ${topic.partitions.length})`, {
        context: { topic: topicName, partition },
      });
    }
    return p;
  }

  private assertOpen(): void {
    if (this.closed) throw new SluiceError('LOG_CLOSED', 'the log is closed');
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readOnly) throw new SluiceError('LOG_READ_ONLY', `the data directory ${this.dataDir} is open read-only`);
  }

  async createTopic(name: string, config: Partial<TopicConfig> = {}, options: { ifNotExists?: boolean } = {}): Promise<TopicDescription> {
    this.assertWritable();
    validateTopicName(name);
    if (this.topics.has(name)) {
      if (options.ifNotExists) return this.describeTopic(name);
      throw new SluiceError('TOPIC_EXISTS', `topic ${name} already exists`, { context: { topic: name } });
    }
    this.createTopicSync(name, config);
    return this.describeTopic(name);
  }

  private createTopicSync(name: string, overrides: Partial<TopicConfig>): void {
    const config: TopicConfig = { ...this.defaults, ...stripUndefined(overrides) };
    validateTopicConfig(config);
    // Built under a hidden name and renamed into place, so a crash never leaves half a topic. The
    // name is cut so that the hidden name of a 249-character topic still fits in NAME_MAX (255).
    const tmp = path.join(this.topicsDir, `.creating-${name.slice(0, 200)}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    writeFileAtomic(path.join(tmp, 'topic.json'), JSON.stringify(config, null, 2) + '\n');
    fs.renameSync(tmp, path.join(this.topicsDir, name));
    syncDir(this.topicsDir);
    this.loadTopic(name);
  }

  async deleteTopic(name: string): Promise<void> {
    this.assertWritable();
    if (name === OFFSETS_TOPIC) throw new SluiceError('INVALID_ARGUMENT', `${OFFSETS_TOPIC} is internal and cannot be deleted`);
    const topic = this.topic(name);
    this.topics.delete(name);
    for (const p of topic.partitions) await p.close();
    const trash = path.join(this.topicsDir, `.deleted-${name.slice(0, 200)}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
    fs.renameSync(topic.dir, trash);
    syncDir(this.topicsDir);
    fs.rmSync(trash, { recursive: true, force: true });
    await this.offsetStore.forgetTopic(name);
  }

  async listTopics(): Promise<string[]> {
    this.assertOpen();
    if (this.readOnly) this.loadTopics();
    return [...this.topics.keys()].sort();
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    const topic = this.topic(name);
    return {
      name,
      config: { ...topic.config },
      partitions: topic.partitions.map((p) => {
        p.refresh();
        return { partition: p.partition, startOffset: p.logStartOffset, endOffset: p.highWatermark, sizeBytes: p.sizeBytes, segments: p.segmentCount };
      }),
    };
  }

  async append(topicName: string, records: ProducerRecord[]): Promise<AppendResult> {
    this.assertWritable();
    const topic = this.topic(topicName);
    const count = records.length;
    if (count === 0) return new Ack(0, [], null, null);
    const n = topic.partitions.length;
    const now = Date.now();
    const compacted = topic.config.cleanup === 'compact';

    // The common case, a batch of keyless records, becomes one batch on one partition with no
    // per-record bookkeeping.
    // One pass tells both whether the batch is keyless and whether it fits one batch.
    let keyless = true;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const r = records[i]!;
      if (r.key != null || r.partition !== undefined) {
        keyless = false;
        break;
      }
      bytes += recordBytes(r);
    }
    if (keyless && compacted) {
      throw new SluiceError('INVALID_ARGUMENT', `topic ${topicName} is compacted, so every record needs a key`, { context: { topic: topicName } });
    }
    if (keyless && bytes <= MAX_BATCH_BYTES && count <= MAX_BATCH_RECORDS) {
      const partition = topic.sticky;
      topic.sticky = (topic.sticky + 1) % n;
      const { baseOffset, done } = topic.partitions[partition]!.append(records, null, now);
      await done;
      return new Ack(count, [{ partition, baseOffset, count }], null, null);
    }

    const byPartition: number[][] = Array.from({ length: n }, () => []);
    const sticky = topic.sticky;
    topic.sticky = (topic.sticky + 1) % n;
    for (let i = 0; i < count; i++) {
      const r = records[i]!;
      let p: number;
      if (compacted && r.key == null) {
        // Also with an explicit partition: compaction would silently drop a record without a key.
        throw new SluiceError('INVALID_ARGUMENT', `topic ${topicName} is compacted, so every record needs a key (record ${i} has none)`, { context: { topic: topicName, index: i } });
      } else if (r.partition !== undefined) {
        if (!Number.isInteger(r.partition) || r.partition < 0 || r.partition >= n) {
          throw new SluiceError('INVALID_ARGUMENT', `record ${i} names partition ${r.partition}, but ${topicName} has partitions 0..${n - 1}`, { context: { topic: topicName, partition: r.partition } });
        }
        p = r.partition;
      } else if (r.key != null) {
        p = partitionForKey(r.key, n);
      } else {
        p = sticky;
      }
      byPartition[p]!.push(i);
    }
    const ranges: Array<{ partition: number; baseOffset: bigint; count: number }> = [];
    const rangeOf = new Uint32Array(count);
    const rank = new Uint32Array(count);
    const pending: Promise<void>[] = [];
    for (let p = 0; p < n; p++) {
      const indexes = byPartition[p]!;
      if (indexes.length === 0) continue;
      for (const chunk of chunkIndexes(records, indexes, recordBytes, MAX_BATCH_BYTES, MAX_BATCH_RECORDS)) {
        const { baseOffset, done } = topic.partitions[p]!.append(records, chunk, now);
        pending.push(done);
        const rangeIndex = ranges.length;
        ranges.push({ partition: p, baseOffset, count: chunk.length });
        for (let k = 0; k < chunk.length; k++) {
          rangeOf[chunk[k]!] = rangeIndex;
          rank[chunk[k]!] = k;
        }
      }
    }
    await Promise.all(pending);
    return new Ack(count, ranges, rangeOf, rank);
  }

  async read(topic: string, partition: number, offset: bigint, options?: ReadOptions): Promise<ReadResult> {
    return this.partitionOf(topic, partition).read(offset, options);
  }

  async offsetFor(topic: string, partition: number, spec: OffsetSpec): Promise<bigint> {
    const p = this.partitionOf(topic, partition);
    p.refresh();
    switch (spec.kind) {
      case 'earliest':
        return p.logStartOffset;
      case 'latest':
        return p.highWatermark;
      case 'timestamp':
        return p.offsetForTimestamp(spec.timestamp);
      case 'offset': {
        const o = spec.offset;
        if (o < p.logStartOffset || o > p.highWatermark) {
          throw new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${o} is out of range for ${topic}/${partition} (start ${p.logStartOffset}, end ${p.highWatermark})`, {
            context: { topic, partition, offset: o },
          });
        }
        return o;
      }
    }
  }

  async commitOffsets(group: string, offsets: TopicPartitionOffset[]): Promise<void> {
    this.assertWritable();
    validateGroupName(group);
    for (const o of offsets) {
      const p = this.partitionOf(o.topic, o.partition);
      if (o.offset < 0n || o.offset > p.highWatermark) {
        throw new SluiceError('OFFSET_OUT_OF_RANGE', `cannot commit offset ${o.offset} for ${o.topic}/${o.partition}: the end offset is ${p.highWatermark}`, {
          context: { group, topic: o.topic, partition: o.partition, offset: o.offset },
        });
      }
    }
    await this.offsetStore.commit(group, offsets);
  }

  async committedOffsets(group: string): Promise<TopicPartitionOffset[]> {
    this.assertOpen();
    return this.offsetStore.offsets(group);
  }

  async listGroups(): Promise<string[]> {
    this.assertOpen();
    return this.offsetStore.groupNames();
  }

  async describeGroup(group: string): Promise<GroupPartitionStatus[]> {
    this.assertOpen();
    const committed = this.offsetStore.offsets(group);
    const topics = [...new Set([...committed.map((o) => o.topic), ...this.membership.subscribedTopics(group)])].sort();
    const out: GroupPartitionStatus[] = [];
    for (const name of topics) {
      let topic: Topic;
      try {
        topic = this.topic(name);
      } catch {
        continue;
      }
      for (const p of topic.partitions) {
        p.refresh();
        const c = this.offsetStore.committed(group, name, p.partition);
        const end = p.highWatermark;
        out.push({ topic: name, partition: p.partition, committed: c, endOffset: end, lag: end - (c ?? p.logStartOffset) });
      }
    }
    return out;
  }

  /**
   * Through {@link resetGroupOffsets}; throws `LOG_READ_ONLY` before reading anything. The commit is
   * one atomic batch, so a crash leaves the old offsets of every partition or the new ones.
   */
  async resetGroup(group: string, topic: string, to: OffsetSpec): Promise<TopicPartitionOffset[]> {
    this.assertWritable();
    return resetGroupOffsets(this, group, topic, this.topic(topic).partitions, to);
  }

  async subscribe(group: string, topics: string[], options: SubscribeOptions = {}): Promise<Consumer> {
    this.assertOpen();
    validateGroupName(group);
    for (const t of topics) this.topic(t);
    return new EmbeddedConsumer(this, group, topics, options.autoOffsetReset ?? 'earliest');
  }

  /** Runs retention and compaction now. The log calls it on a timer; tests call it directly. */
  runMaintenance(now = Date.now(), options: { forceCompaction?: boolean } = {}): void {
    if (this.closed || this.readOnly) return;
    for (const topic of this.topics.values()) {
      for (const p of topic.partitions) {
        try {
          const deleted = p.enforceRetention(now);
          if (deleted > 0) this.onEvent({ type: 'retention', topic: topic.name, partition: p.partition, segmentsDeleted: deleted });
          const rewritten = p.compact(now, options.forceCompaction ?? false);
          if (rewritten > 0) this.onEvent({ type: 'compacted', topic: topic.name, partition: p.partition, segmentsRewritten: rewritten });
        } catch (err) {
          this.onEvent({ type: 'maintenance-failed', error: err as Error });
        }
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    for (const topic of this.topics.values()) {
      for (const p of topic.partitions) await p.close();
    }
    this.topics.clear();
    await this.lock?.release();
  }

  /** @internal Used by consumers of this log. */
  internals() {
    return {
      membership: this.membership,
      offsetStore: this.offsetStore,
      partition: (topic: string, partition: number) => this.partitionOf(topic, partition),
      readOnly: this.readOnly,
    };
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** What a record adds to a batch, roughly: its key and value plus framing. */
function recordBytes(r: ProducerRecord): number {
  return 16 + (r.key ? r.key.length : 0) + (r.value ? r.value.length : 0);
}

function tpKey(tp: TopicPartition): string {
  return `${tp.topic}\u0000${tp.partition}`;
}

class EmbeddedConsumer implements Consumer {
  readonly memberId: string;
  private generation = -1;
  private owned: TopicPartition[] = [];
  private readonly positionMap = new Map<string, TopicPartitionOffset>();
  private nextPartition = 0;
  private closed = false;

  constructor(
    private readonly log: EmbeddedLog,
    readonly group: string,
    private readonly topics: string[],
    private readonly autoOffsetReset: 'earliest' | 'latest',
  ) {
    this.memberId = log.internals().membership.join(group, topics);
  }

  /** Adopts the group's current assignment; cheap when the generation has not moved. */
  private sync(): void {
    const { membership, offsetStore, partition } = this.log.internals();
    const generation = membership.generation(this.group);
    if (generation === this.generation) return;
    this.generation = generation;
    this.owned = membership.assignment(this.group, this.memberId);
    const keep = new Set(this.owned.map(tpKey));
    for (const key of [...this.positionMap.keys()]) if (!keep.has(key)) this.positionMap.delete(key);
    for (const tp of this.owned) {
      if (this.positionMap.has(tpKey(tp))) continue;
      const committed = offsetStore.committed(this.group, tp.topic, tp.partition);
      const p = partition(tp.topic, tp.partition);
      const offset = committed ?? (this.autoOffsetReset === 'earliest' ? p.logStartOffset : p.highWatermark);
      this.positionMap.set(tpKey(tp), { ...tp, offset });
    }
  }

  assignment(): TopicPartition[] {
    this.sync();
    return this.owned.map((tp) => ({ ...tp }));
  }

  positions(): TopicPartitionOffset[] {
    this.sync();
    return [...this.positionMap.values()].map((p) => ({ ...p }));
  }

  seek(topic: string, partition: number, offset: bigint): void {
    this.sync();
    const key = tpKey({ topic, partition });
    if (!this.positionMap.has(key)) {
      throw new SluiceError('NOT_ASSIGNED', `${topic}/${partition} is not assigned to ${this.memberId}`, { context: { topic, partition } });
    }
    this.positionMap.set(key, { topic, partition, offset });
  }

  async poll(options: ReadOptions = {}): Promise<LogRecord[]> {
    if (this.closed) throw new SluiceError('LOG_CLOSED', 'the consumer is closed');
    this.sync();
    const { partition } = this.log.internals();
    const maxBytes = options.maxBytes ?? 1 << 20;
    const out: LogRecord[] = [];
    const positions = [...this.positionMap.values()];
    if (positions.length === 0) {
      if ((options.maxWaitMs ?? 0) > 0) await sleep(Math.min(options.maxWaitMs!, 100), options.signal);
      return out;
    }
    for (let round = 0; round < 2; round++) {
      let budget = maxBytes;
      // A first pass gives each partition an equal share of the budget, as Kafka's
      // max.partition.fetch.bytes does, so a backlog in one partition does not fill the whole poll
      // and a sink can write the partitions of a batch in parallel; a second pass hands what the
      // others left to the partitions with more. Rotating the starting partition keeps one busy
      // partition from starving the others across polls.
      const share = Math.max(MIN_PARTITION_SHARE, Math.ceil(maxBytes / positions.length));
      for (let pass = 0, more = true; pass < 2 && more && budget > 0; pass++) {
        more = false;
        const cap = pass === 0 ? share : Infinity;
        for (let k = 0; k < positions.length && budget > 0; k++) {
          const pos = positions[(this.nextPartition + k) % positions.length]!;
          const p = partition(pos.topic, pos.partition);
          if (pos.offset >= p.highWatermark && !(this.log.internals().readOnly)) continue;
          let result: ReadResult;
          try {
            result = await p.read(pos.offset, { maxBytes: Math.min(budget, cap) });
          } catch (err) {
            if (err instanceof SluiceError && err.code === 'OFFSET_OUT_OF_RANGE') {
              // Retention removed what this group had not read yet; continue from the oldest (or newest)
              // record still stored, as Kafka's auto.offset.reset does.
              pos.offset = this.autoOffsetReset === 'earliest' ? p.logStartOffset : p.highWatermark;
              continue;
            }
            throw err;
          }
          if (result.records.length === 0) continue;
          for (const r of result.records) out.push(r);
          budget -= result.records.reduce((n, r) => n + (r.value?.length ?? 0) + (r.key?.length ?? 0), 0);
          pos.offset = result.nextOffset;
          more = true;
        }
      }
      this.nextPartition = (this.nextPartition + 1) % positions.length;
      if (out.length > 0 || round === 1 || (options.maxWaitMs ?? 0) <= 0 || options.signal?.aborted) break;
      await this.waitAny(positions, options.maxWaitMs!, options.signal);
    }
    return out;
  }

  private async waitAny(positions: TopicPartitionOffset[], maxWaitMs: number, signal?: AbortSignal): Promise<void> {
    const { partition } = this.log.internals();
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.race(positions.map((pos) => partition(pos.topic, pos.partition).waitForData(pos.offset, maxWaitMs, stop.signal)));
    } finally {
      stop.abort();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async commit(offsets?: TopicPartitionOffset[]): Promise<void> {
    if (this.closed) throw new SluiceError('LOG_CLOSED', 'the consumer is closed');
    const { membership } = this.log.internals();
    const toCommit = offsets ?? this.positions();
    membership.assertOwned(this.group, this.memberId, toCommit);
    await this.log.commitOffsets(this.group, toCommit);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.log.internals().membership.leave(this.group, this.memberId);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Opens the embedded log in `dataDir`, creating the directory when writable.
 *
 * A writable open takes the directory's lock (a second process gets `DATA_DIR_LOCKED`) and recovers
 * every partition: the last segment is verified batch by batch, a torn or corrupt tail is cut back
 * to the last valid batch, and missing or inconsistent indexes are rebuilt. Damage found is
 * reported through `onEvent`, never thrown.
 */
export function openLog(dataDir: string, options: OpenLogOptions = {}): Promise<EmbeddedLog> {
  return EmbeddedLog.open(dataDir, options);
}

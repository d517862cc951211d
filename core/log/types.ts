/**
 * The log as the runtime, the CLI and connectors see it. The embedded backend (`embedded-log.ts`)
 * implements it today; a replicated backend on an existing distributed engine will implement the
 * same interface, so nothing above this file may depend on how records are stored.
 *
 * Conventions, as in Kafka:
 * - offsets are dense per partition, start at 0 and are `bigint`;
 * - an "end offset" is the offset the next appended record will get, so an empty partition has
 *   start = end = 0, and `end - committed` is the lag;
 * - a committed group offset is the offset of the next record the group will read.
 */

export type Headers = Record<string, Buffer>;

/** A record handed to {@link Log.append}. */
export interface ProducerRecord {
  /** Routes the record with Kafka's murmur2 partitioner; null or absent means sticky partitioning. */
  key?: Buffer | null;
  /** Null is a tombstone: in a compacted topic it deletes the key. */
  value: Buffer | null;
  headers?: Headers;
  /** Milliseconds since the epoch; defaults to the time of the append. */
  timestamp?: number;
  /** Forces the partition, bypassing the partitioner. */
  partition?: number;
}

/** A record as stored, with its coordinates. */
export interface LogRecord {
  topic: string;
  partition: number;
  offset: bigint;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Headers;
}

export type Cleanup = 'delete' | 'compact';
export type FsyncPolicy = 'always' | 'interval' | 'never';

/**
 * Per-topic settings, persisted in the data directory with the topic.
 *
 * `fsync` decides when an append resolves:
 * - `always`: after the bytes are written and fdatasync'ed. Concurrent appends share one write and
 *   one fsync (group commit). Readers only see fsync'ed records.
 * - `interval`: after the write reaches the OS; a timer fsyncs every `fsyncIntervalMs`. A process
 *   crash loses nothing acknowledged; a machine crash may lose the last interval.
 * - `never`: after the write reaches the OS; the OS decides when to flush.
 */
export interface TopicConfig {
  partitions: number;
  /** Delete whole segments whose newest record is older than this. Null keeps data forever. */
  retentionMs: number | null;
  /** Delete the oldest segments while a partition is larger than this. Null means no limit. */
  retentionBytes: number | null;
  cleanup: Cleanup;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  /** A segment rolls when the next batch would take it past this size. */
  segmentBytes: number;
  /** A segment rolls when its first record is older than this. */
  segmentMs: number;
  /** Compacted topics only: how long a tombstone survives compaction, so consumers can see it. */
  tombstoneRetentionMs: number;
}

export interface PartitionInfo {
  partition: number;
  /** The first offset still stored (retention moves it forward). */
  startOffset: bigint;
  /** The offset the next record will get; only records below it are readable. */
  endOffset: bigint;
  sizeBytes: number;
  segments: number;
}

export interface TopicDescription {
  name: string;
  config: TopicConfig;
  partitions: PartitionInfo[];
}

/** What {@link Log.append} resolves with: where every record landed, in input order. */
export interface AppendResult {
  readonly count: number;
  partitionOf(index: number): number;
  offsetOf(index: number): bigint;
  /** One entry per partition the append touched. */
  readonly ranges: ReadonlyArray<{ partition: number; baseOffset: bigint; count: number }>;
}

export interface ReadOptions {
  /** Upper bound on the bytes of batches returned; a first batch larger than this is still returned whole. Default 1 MiB. */
  maxBytes?: number;
  /** When nothing is readable at the offset yet, wait up to this long for an append. Default 0. */
  maxWaitMs?: number;
  signal?: AbortSignal;
}

export interface ReadResult {
  /** Records at or after the requested offset, in offset order. May be empty. */
  records: LogRecord[];
  /** Where the next read should start. */
  nextOffset: bigint;
  highWatermark: bigint;
  logStartOffset: bigint;
}

export type OffsetSpec =
  | { kind: 'earliest' }
  | { kind: 'latest' }
  /** The first offset whose record timestamp is at or after `timestamp` (ms), else the end. */
  | { kind: 'timestamp'; timestamp: number }
  | { kind: 'offset'; offset: bigint };

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface TopicPartitionOffset extends TopicPartition {
  offset: bigint;
}

export interface GroupPartitionStatus extends TopicPartition {
  /** Null when the group never committed for this partition. */
  committed: bigint | null;
  endOffset: bigint;
  /** end - committed, or end - start when nothing was committed. */
  lag: bigint;
}

export interface SubscribeOptions {
  /** Where a partition with no committed offset starts. Default `earliest`. */
  autoOffsetReset?: 'earliest' | 'latest';
}

/**
 * One member of a consumer group. Members of the same group in the same log split the partitions
 * of the subscribed topics between them; each partition has exactly one owner at a time.
 *
 * Lifecycle: `subscribe` → (`poll` → process → `commit`)* → `close`. A member that closes hands its
 * partitions to the remaining members.
 */
export interface Consumer {
  readonly group: string;
  readonly memberId: string;
  /** The partitions this member owns right now; it changes when members join or leave. */
  assignment(): TopicPartition[];
  /**
   * Returns records from the owned partitions, starting at each partition's position (its committed
   * offset at first), and advances the positions past them. Waits up to `maxWaitMs` when nothing is
   * readable. Never returns a record twice unless `seek` moves back or ownership moved.
   */
  poll(options?: ReadOptions): Promise<LogRecord[]>;
  /** The next offset `poll` reads for each owned partition. */
  positions(): TopicPartitionOffset[];
  seek(topic: string, partition: number, offset: bigint): void;
  /**
   * Durably commits offsets for the group. Without an argument it commits every owned partition's
   * position, i.e. everything returned by `poll` so far. Throws `NOT_ASSIGNED` for a partition this
   * member no longer owns, so a member that lost a partition cannot overwrite its new owner's progress.
   */
  commit(offsets?: TopicPartitionOffset[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * The log. All methods may be called concurrently; appends to one partition are ordered by call
 * order. Every method throws {@link SluiceError} with a code, e.g. `TOPIC_NOT_FOUND`.
 */
export interface Log {
  /** Creates a topic. Throws `TOPIC_EXISTS` unless `ifNotExists`, in which case the existing topic is described. */
  createTopic(name: string, config?: Partial<TopicConfig>, options?: { ifNotExists?: boolean }): Promise<TopicDescription>;
  deleteTopic(name: string): Promise<void>;
  listTopics(): Promise<string[]>;
  describeTopic(name: string): Promise<TopicDescription>;
  /**
   * Appends records and resolves once they are durable under the topic's `fsync` policy.
   * Records with a key go to murmur2(key) % partitions, as a Kafka producer would put them; records
   * without a key all go to one partition chosen per call (sticky), rotating between calls.
   * Throws `INVALID_ARGUMENT` for a null key in a compacted topic or a bad explicit partition.
   */
  append(topic: string, records: ProducerRecord[]): Promise<AppendResult>;
  /** Reads whole batches starting at the batch holding `offset`; records below `offset` are dropped. */
  read(topic: string, partition: number, offset: bigint, options?: ReadOptions): Promise<ReadResult>;
  /**
   * Resolves an {@link OffsetSpec} to a concrete offset in [start, end]. An explicit offset outside
   * that range throws `OFFSET_OUT_OF_RANGE` rather than being clamped, so a typo is not silently
   * turned into "from the beginning".
   */
  offsetFor(topic: string, partition: number, spec: OffsetSpec): Promise<bigint>;

  /** Durably and atomically records offsets for a group, outside any membership (admin use). */
  commitOffsets(group: string, offsets: TopicPartitionOffset[]): Promise<void>;
  committedOffsets(group: string): Promise<TopicPartitionOffset[]>;
  listGroups(): Promise<string[]>;
  /** Committed offset, end offset and lag for every partition of every topic the group committed on or its active members read. */
  describeGroup(group: string): Promise<GroupPartitionStatus[]>;
  /** Moves the group's offsets for every partition of `topic` and returns the new ones. */
  resetGroup(group: string, topic: string, to: OffsetSpec): Promise<TopicPartitionOffset[]>;
  /** Joins `group` as a new member reading `topics`. */
  subscribe(group: string, topics: string[], options?: SubscribeOptions): Promise<Consumer>;

  /** Flushes and fsyncs everything, releases the data directory. Pending reads resolve empty. */
  close(): Promise<void>;
}

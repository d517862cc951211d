/**
 * Source-offset marks: how a restart appends nothing twice for sources that can order their
 * offsets ({@link SourceConnector.compareOffsets}).
 *
 * Storing a batch's source offsets is a second write after the batch's records, to another
 * partition. A crash between the two leaves records in the log whose offsets are not stored; the
 * source resumes from the stored offsets and polls those records again. Kafka closes that gap with
 * transactions spanning partitions. sluice closes it with what one partition already guarantees:
 * one append to one partition lands whole or not at all. The runtime therefore puts a mark on the
 * last record of every partition a batch writes to. The mark is a header holding, for each source
 * partition with records in that log partition, the offset of the last one. On start the runtime
 * reads the marks near the end of every partition. It then drops a re-polled record whose offset is
 * at or below the mark of the log partition that the record's key routes it to.
 *
 * A record is only ever dropped when a mark proves it is in the log, so the worst case is
 * at-least-once:
 * - a keyless record on a topic of several partitions has no fixed partition and is never dropped;
 * - a mark that scrolled out of the scanned tail is not found;
 * - a comparison that returns null drops nothing.
 */
import type { SourceOffset, SourcePartition } from '../connector.ts';
import { partitionForKey } from '../log/partitioner.ts';
import type { Log, ProducerRecord } from '../log/types.ts';
import { canonicalJson } from './source-offsets.ts';

/** The header that carries a mark. Sinks never see it: the sink runner removes it. */
export const MARK_HEADER = '__sluice.source_marks';

/**
 * How many records back from each partition's end the start-up scan looks for marks. Marks that
 * matter are those written after the last stored source offsets, i.e. in the last batch or two a
 * source appended before the crash.
 */
export const MARK_SCAN_RECORDS = 4096;

type Compare = (a: SourceOffset, b: SourceOffset) => number | null;

interface MarkValue {
  /** `[pipeline, connector]` */
  c: [string, string];
  /** `[source partition, offset]` per source partition. */
  o: Array<[SourcePartition, SourceOffset]>;
}

interface PartitionMarks {
  /** The highest mark over all log partitions: once a record passes it, the filter is done. */
  max: SourceOffset;
  byLogPartition: Map<string, SourceOffset>;
}

/** One source task's marks: the filter after a restart, and the stamping of every batch. */
export class SourceMarks {
  /** Canonical source partition → marks still able to drop records. */
  private readonly active = new Map<string, PartitionMarks>();
  private readonly partitionCounts = new Map<string, number>();
  private readonly id: [string, string];
  /** Records dropped because a mark proved them durable; for the log line after a restart. */
  skipped = 0;

  constructor(
    private readonly log: Log,
    pipeline: string,
    connector: string,
    private readonly compare: Compare,
  ) {
    this.id = [pipeline, connector];
  }

  /**
   * Reads the marks this connector left near the end of every partition of every topic, except
   * internal ones. Called once, before the task's first poll.
   */
  async load(): Promise<void> {
    const [pipeline, connector] = this.id;
    for (const topic of await this.log.listTopics()) {
      if (topic.startsWith('__')) continue;
      const description = await this.log.describeTopic(topic);
      this.partitionCounts.set(topic, description.partitions.length);
      for (const p of description.partitions) {
        let offset = p.endOffset - BigInt(MARK_SCAN_RECORDS);
        if (offset < p.startOffset) offset = p.startOffset;
        while (offset < p.endOffset) {
          const result = await this.log.read(topic, p.partition, offset, { maxBytes: 4 << 20 });
          for (const record of result.records) {
            const raw = record.headers[MARK_HEADER];
            if (raw === undefined) continue;
            let mark: MarkValue;
            try {
              mark = JSON.parse(raw.toString('utf8')) as MarkValue;
            } catch {
              continue;
            }
            if (mark.c?.[0] !== pipeline || mark.c[1] !== connector || !Array.isArray(mark.o)) continue;
            for (const [sourcePartition, sourceOffset] of mark.o) this.note(canonicalJson(sourcePartition), `${topic}\u0000${p.partition}`, sourceOffset);
          }
          if (result.records.length === 0 || result.nextOffset <= offset) break;
          offset = result.nextOffset;
        }
      }
    }
  }

  private note(sourceKey: string, logPartition: string, offset: SourceOffset): void {
    // An offset the source cannot order even against itself (a snapshot row's) can never prove a
    // record durable; keeping it would only keep the filter running.
    if (this.compare(offset, offset) === null) return;
    let marks = this.active.get(sourceKey);
    if (!marks) {
      this.active.set(sourceKey, { max: offset, byLogPartition: new Map([[logPartition, offset]]) });
      return;
    }
    // Later marks in a partition are at least as high; a later record overrides.
    marks.byLogPartition.set(logPartition, offset);
    // Of two offsets that cannot be ordered against each other, the one read later wins: a lower
    // highest mark only ends the filter sooner, which appends again rather than drops.
    const order = this.compare(offset, marks.max);
    if (order === null || order > 0) marks.max = offset;
  }

  /** Whether any mark can still drop a record: the runner skips all filtering once none can. */
  get filtering(): boolean {
    return this.active.size > 0;
  }

  /**
   * The partition a record goes to, when it is fixed before the append: by key, or the only
   * partition. `partitions` must be known (see {@link partitionsOf}).
   */
  routeOf(topic: string, record: ProducerRecord): number | undefined {
    if (record.partition !== undefined) return record.partition;
    const n = this.partitionCounts.get(topic);
    if (n === undefined) return undefined;
    if (n === 1) return 0;
    return record.key != null ? partitionForKey(record.key, n) : undefined;
  }

  /** Learns a topic's partition count; called after the topic is ensured, before routing into it. */
  async partitionsOf(topic: string): Promise<void> {
    if (this.partitionCounts.has(topic)) return;
    const description = await this.log.describeTopic(topic);
    this.partitionCounts.set(topic, description.partitions.length);
  }

  knowsTopic(topic: string): boolean {
    return this.partitionCounts.has(topic);
  }

  /**
   * True when a mark proves that this record is already in the log partition it routes to, so it
   * must be dropped. Called in poll order while {@link filtering}.
   */
  isDuplicate(sourceKey: string, offset: SourceOffset, topic: string, partition: number | undefined): boolean {
    const marks = this.active.get(sourceKey);
    if (!marks) return false;
    const beyond = this.compare(offset, marks.max);
    if (beyond !== null && beyond > 0) {
      // Offsets only grow within a source partition, so no later record can be at or below a mark.
      this.active.delete(sourceKey);
      return false;
    }
    if (partition === undefined) return false;
    const mark = marks.byLogPartition.get(`${topic}\u0000${partition}`);
    if (mark === undefined) return false;
    const order = this.compare(offset, mark);
    if (order === null || order > 0) return false;
    this.skipped++;
    return true;
  }

  /**
   * Puts a mark on the last record of each log partition a batch writes to, in place. `sources[i]`
   * is where `records[i]` came from. Records sharing a headers object (sources often reuse one) get
   * their own copy before the mark is added.
   */
  stamp(topic: string, records: ProducerRecord[], sources: readonly RecordSource[]): void {
    const last = new Map<number, { index: number; offsets: Map<string, [SourcePartition, SourceOffset]> }>();
    for (let i = 0; i < records.length; i++) {
      const partition = this.routeOf(topic, records[i]!);
      if (partition === undefined) continue;
      let entry = last.get(partition);
      if (!entry) last.set(partition, (entry = { index: i, offsets: new Map() }));
      entry.index = i;
      const source = sources[i]!;
      entry.offsets.set(source.key, [source.partition, source.offset]);
    }
    for (const { index, offsets } of last.values()) {
      const value: MarkValue = { c: this.id, o: [...offsets.values()] };
      const record = records[index]!;
      record.headers = { ...record.headers, [MARK_HEADER]: Buffer.from(JSON.stringify(value)) };
    }
  }
}

/** Where a record came from: its source partition (and that partition's canonical JSON) and offset. */
export interface RecordSource {
  readonly key: string;
  readonly partition: SourcePartition;
  readonly offset: SourceOffset;
}

/**
 * Source offsets, kept in the internal compacted topic `__source_offsets` as Kafka Connect keeps
 * them in `connect-offsets`: key `["<pipeline>","<connector>",<source partition>]`, value the
 * source offset, both JSON. It goes through the {@link Log} interface only, so every log backend
 * stores them the same way.
 */
import type { SourceOffset, SourceOffsetEntry, SourcePartition } from '../connector.ts';
import type { Log } from '../log/types.ts';

export const SOURCE_OFFSETS_TOPIC = '__source_offsets';

/** JSON with sorted keys, so deep-equal partitions map to one key whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

export class SourceOffsetStore {
  /** pipeline → connector → canonical partition → entry */
  private readonly entries = new Map<string, Map<string, SourceOffsetEntry>>();

  /** Where the next {@link refresh} reads from. */
  private next = 0n;

  private constructor(private readonly log: Log) {}

  /** Creates the topic if needed and reads every stored offset. Called once at runtime start. */
  static async open(log: Log): Promise<SourceOffsetStore> {
    await log.createTopic(SOURCE_OFFSETS_TOPIC, { partitions: 1, cleanup: 'compact', fsync: 'always', retentionMs: null }, { ifNotExists: true });
    const store = new SourceOffsetStore(log);
    store.next = await log.offsetFor(SOURCE_OFFSETS_TOPIC, 0, { kind: 'earliest' });
    await store.refresh();
    return store;
  }

  /**
   * Reads what was stored since the last read. A source task calls it before it starts, because in
   * a worker group the task may have run on another worker, which stored its offsets there.
   */
  async refresh(): Promise<void> {
    const end = await this.log.offsetFor(SOURCE_OFFSETS_TOPIC, 0, { kind: 'latest' });
    if (this.next < (await this.log.offsetFor(SOURCE_OFFSETS_TOPIC, 0, { kind: 'earliest' }))) {
      // Compaction or retention moved the start past what was read: read everything again.
      this.entries.clear();
      this.next = await this.log.offsetFor(SOURCE_OFFSETS_TOPIC, 0, { kind: 'earliest' });
    }
    while (this.next < end) {
      const result = await this.log.read(SOURCE_OFFSETS_TOPIC, 0, this.next, { maxBytes: 4 << 20 });
      for (const record of result.records) {
        if (record.key === null) continue;
        const [pipeline, connector, partition] = JSON.parse(record.key.toString('utf8')) as [string, string, SourcePartition];
        this.apply(pipeline, connector, partition, record.value === null ? null : (JSON.parse(record.value.toString('utf8')) as SourceOffset));
      }
      if (result.nextOffset <= this.next) break;
      this.next = result.nextOffset;
    }
  }

  private apply(pipeline: string, connector: string, partition: SourcePartition, offset: SourceOffset | null): void {
    const id = `${pipeline}\u0000${connector}`;
    let map = this.entries.get(id);
    if (offset === null) {
      map?.delete(canonicalJson(partition));
      return;
    }
    if (!map) {
      map = new Map();
      this.entries.set(id, map);
    }
    map.set(canonicalJson(partition), { sourcePartition: partition, sourceOffset: offset });
  }

  /** Every stored offset of one connector. */
  offsets(pipeline: string, connector: string): SourceOffsetEntry[] {
    return [...(this.entries.get(`${pipeline}\u0000${connector}`)?.values() ?? [])];
  }

  /** Durably stores offsets (one atomic batch). Called after the records they cover are durable. */
  async commit(pipeline: string, connector: string, entries: readonly SourceOffsetEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.log.append(
      SOURCE_OFFSETS_TOPIC,
      entries.map((e) => ({
        key: Buffer.from(JSON.stringify([pipeline, connector, JSON.parse(canonicalJson(e.sourcePartition))])),
        value: Buffer.from(JSON.stringify(e.sourceOffset)),
      })),
    );
    for (const e of entries) this.apply(pipeline, connector, e.sourcePartition, e.sourceOffset);
  }

  /** Forgets every offset of a connector (e.g. a CDC reset that re-snapshots). */
  async reset(pipeline: string, connector: string): Promise<void> {
    const entries = this.offsets(pipeline, connector);
    if (entries.length === 0) return;
    await this.log.append(
      SOURCE_OFFSETS_TOPIC,
      entries.map((e) => ({ key: Buffer.from(JSON.stringify([pipeline, connector, JSON.parse(canonicalJson(e.sourcePartition))])), value: null })),
    );
    this.entries.delete(`${pipeline}\u0000${connector}`);
  }
}

/**
 * Consumer groups: committed offsets and in-process membership.
 *
 * Committed offsets live in the internal compacted topic `__consumer_offsets`, as in Kafka: one
 * record per (group, topic, partition), key `["group","topic",partition]`, value
 * `{"offset":"N","committed_at":ms}`. A commit of several partitions is one batch, and a batch is
 * all-or-nothing on disk (its CRC covers it), so a crash mid-commit leaves the old offsets or the
 * new ones, never a mix or garbage. The topic is fsync'ed on every commit.
 *
 * {@link resetGroupOffsets} is backend-neutral: both {@link Log} backends implement `resetGroup` with it.
 */
import { SluiceError } from '../errors.ts';
import type { Partition } from './partition.ts';
import type { Log, OffsetSpec, TopicPartition, TopicPartitionOffset } from './types.ts';

export const OFFSETS_TOPIC = '__consumer_offsets';

/**
 * {@link Log.resetGroup} over any backend: resolves `to` with `log.offsetFor` for each of the
 * topic's `partitions` in turn, then commits them all with one `log.commitOffsets` call and returns
 * them. Each backend passes the partitions it already holds for `topic`, so none pays for a
 * `describeTopic` here, and makes its own checks (open, writable, topic exists) first. Whether the
 * commit is atomic across partitions is that backend's `commitOffsets` contract.
 */
export async function resetGroupOffsets(
  log: Pick<Log, 'offsetFor' | 'commitOffsets'>,
  group: string,
  topic: string,
  partitions: readonly { readonly partition: number }[],
  to: OffsetSpec,
): Promise<TopicPartitionOffset[]> {
  const offsets: TopicPartitionOffset[] = [];
  for (const p of partitions) offsets.push({ topic, partition: p.partition, offset: await log.offsetFor(topic, p.partition, to) });
  await log.commitOffsets(group, offsets);
  return offsets;
}

function tpKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export class OffsetStore {
  private readonly groups = new Map<string, Map<string, TopicPartitionOffset>>();

  constructor(private readonly partition: Partition) {}

  /** Replays the offsets topic into memory. Called once when the log opens. */
  async load(): Promise<void> {
    let offset = this.partition.logStartOffset;
    while (offset < this.partition.highWatermark) {
      const result = await this.partition.read(offset, { maxBytes: 4 << 20 });
      for (const record of result.records) this.apply(record.key, record.value);
      offset = result.nextOffset;
    }
  }

  private apply(key: Buffer | null, value: Buffer | null): void {
    if (key === null) return;
    const [group, topic, partition] = JSON.parse(key.toString('utf8')) as [string, string, number];
    let offsets = this.groups.get(group);
    if (value === null) {
      offsets?.delete(tpKey(topic, partition));
      if (offsets && offsets.size === 0) this.groups.delete(group);
      return;
    }
    const parsed = JSON.parse(value.toString('utf8')) as { offset: string };
    if (!offsets) {
      offsets = new Map();
      this.groups.set(group, offsets);
    }
    offsets.set(tpKey(topic, partition), { topic, partition, offset: BigInt(parsed.offset) });
  }

  /** Durably records `offsets` for `group` (one atomic batch), then updates the in-memory view. */
  async commit(group: string, offsets: readonly TopicPartitionOffset[]): Promise<void> {
    if (offsets.length === 0) return;
    const now = Date.now();
    const records = offsets.map((o) => ({
      key: Buffer.from(JSON.stringify([group, o.topic, o.partition])),
      value: Buffer.from(JSON.stringify({ offset: o.offset.toString(), committed_at: now })),
    }));
    await this.partition.append(records, null, now).done;
    for (let i = 0; i < records.length; i++) this.apply(records[i]!.key, records[i]!.value);
  }

  /** Forgets every group's offsets for `topic` (the topic was deleted). */
  async forgetTopic(topic: string): Promise<void> {
    const records: { key: Buffer; value: null }[] = [];
    for (const [group, offsets] of this.groups) {
      for (const o of offsets.values()) {
        if (o.topic === topic) records.push({ key: Buffer.from(JSON.stringify([group, o.topic, o.partition])), value: null });
      }
    }
    if (records.length === 0) return;
    await this.partition.append(records, null, Date.now()).done;
    for (const r of records) this.apply(r.key, null);
  }

  committed(group: string, topic: string, partition: number): bigint | null {
    return this.groups.get(group)?.get(tpKey(topic, partition))?.offset ?? null;
  }

  offsets(group: string): TopicPartitionOffset[] {
    return [...(this.groups.get(group)?.values() ?? [])].sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
  }

  groupNames(): string[] {
    return [...this.groups.keys()].sort();
  }
}

interface Member {
  topics: string[];
}

/**
 * Which member owns which partition. Assignment is Kafka's range assignor per topic over the
 * members sorted by id; it is recomputed whenever a member joins or leaves (the generation moves),
 * and each consumer adopts the new assignment at its next call.
 */
export class GroupMembership {
  private readonly groups = new Map<string, { generation: number; members: Map<string, Member> }>();
  private nextMember = 1;

  constructor(private readonly partitionCount: (topic: string) => number) {}

  join(group: string, topics: string[]): string {
    let state = this.groups.get(group);
    if (!state) {
      state = { generation: 0, members: new Map() };
      this.groups.set(group, state);
    }
    const memberId = `member-${process.pid}-${this.nextMember++}`;
    state.members.set(memberId, { topics: [...topics] });
    state.generation++;
    return memberId;
  }

  leave(group: string, memberId: string): void {
    const state = this.groups.get(group);
    if (!state || !state.members.delete(memberId)) return;
    state.generation++;
    if (state.members.size === 0) this.groups.delete(group);
  }

  /** Topics the group's current members read, so lag shows before a first commit. */
  subscribedTopics(group: string): string[] {
    const topics = new Set<string>();
    for (const member of this.groups.get(group)?.members.values() ?? []) for (const t of member.topics) topics.add(t);
    return [...topics];
  }

  generation(group: string): number {
    return this.groups.get(group)?.generation ?? 0;
  }

  activeMembers(group: string): number {
    return this.groups.get(group)?.members.size ?? 0;
  }

  assignment(group: string, memberId: string): TopicPartition[] {
    const state = this.groups.get(group);
    const me = state?.members.get(memberId);
    if (!state || !me) return [];
    const owned: TopicPartition[] = [];
    for (const topic of me.topics) {
      const members = [...state.members.entries()].filter(([, m]) => m.topics.includes(topic)).map(([id]) => id).sort();
      const count = this.partitionCount(topic);
      const index = members.indexOf(memberId);
      const per = Math.floor(count / members.length);
      const extra = count % members.length;
      const start = index * per + Math.min(index, extra);
      const length = per + (index < extra ? 1 : 0);
      for (let p = start; p < start + length; p++) owned.push({ topic, partition: p });
    }
    return owned;
  }

  assertOwned(group: string, memberId: string, offsets: readonly TopicPartition[]): void {
    const owned = new Set(this.assignment(group, memberId).map((tp) => tpKey(tp.topic, tp.partition)));
    for (const o of offsets) {
      if (!owned.has(tpKey(o.topic, o.partition))) {
        throw new SluiceError('NOT_ASSIGNED', `${o.topic}/${o.partition} is not assigned to ${memberId} in group ${group} any more`, {
          context: { group, memberId, topic: o.topic, partition: o.partition },
        });
      }
    }
  }
}

/** Refuses a group name the offset topics cannot key: empty, not a string, or over 255 characters. Both log backends call it. */
export function validateGroupName(group: string): void {
  if (typeof group !== 'string' || group.length === 0 || group.length > 255) {
    throw new SluiceError('INVALID_ARGUMENT', `invalid group name ${JSON.stringify(group)}: use 1-255 characters`, { context: { group } });
  }
}

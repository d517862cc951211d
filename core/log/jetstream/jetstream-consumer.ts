/**
 * A consumer-group member of the JetStream log. Members may live in different processes on
 * different machines; all they share is two KV buckets:
 *
 * - membership: each member puts `hex(group).<memberId>` (its topics) every {@link HEARTBEAT_MS};
 *   the bucket's max age drops a member that stopped renewing after {@link MEMBER_TTL_MS}. Every
 *   heartbeat lists the live members and computes the same range assignment as the embedded log
 *   (groups.ts) over the sorted member ids, so all members converge on one assignment without a
 *   coordinator;
 * - offsets: a member that takes a partition claims its offset key (a compare-and-set write of the
 *   value it read), and commits with compare-and-set on the revision it holds. A member that lost
 *   the partition still holds an older revision, so its commit fails with NOT_ASSIGNED instead of
 *   overwriting the new owner's progress.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { SluiceError } from '../../errors.ts';
import type { Consumer, LogRecord, ReadOptions, ReadResult, TopicPartition, TopicPartitionOffset } from '../types.ts';
import type { JetStreamLog } from './jetstream-log.ts';
import { hex } from './names.ts';
import { isConflict, sleep, toSluiceError } from './nats-errors.ts';

export const HEARTBEAT_MS = 2000;
export const MEMBER_TTL_MS = 6000;

interface Owned {
  topic: string;
  partition: number;
  position: bigint;
  /** The offset key's revision this member wrote or read last; commits compare-and-set on it. */
  revision: number;
}

function tpKey(tp: TopicPartition): string {
  return `${tp.topic}\u0000${tp.partition}`;
}

function rangeAssign(members: Map<string, string[]>, me: string, topic: string, partitions: number): number[] {
  const ids = [...members.entries()].filter(([, ts]) => ts.includes(topic)).map(([id]) => id).sort();
  const index = ids.indexOf(me);
  if (index < 0) return [];
  const per = Math.floor(partitions / ids.length);
  const extra = partitions % ids.length;
  const start = index * per + Math.min(index, extra);
  const length = per + (index < extra ? 1 : 0);
  return Array.from({ length }, (_, k) => start + k);
}

export class JetStreamConsumer implements Consumer {
  readonly memberId: string;
  private owned = new Map<string, Owned>();
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private nextPartition = 0;
  private closed = false;

  constructor(
    private readonly log: JetStreamLog,
    readonly group: string,
    private readonly topics: string[],
    private readonly autoOffsetReset: 'earliest' | 'latest',
    private readonly onClose: () => void,
  ) {
    const host = os.hostname().replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40);
    this.memberId = `member-${host}-${process.pid}-${randomBytes(4).toString('hex')}`;
  }

  private get memberKey(): string {
    return `${hex(this.group)}.${this.memberId}`;
  }

  /** Registers the member and takes its first assignment; then renews on a timer. */
  async join(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => {
      this.refresh().catch(() => undefined);
    }, HEARTBEAT_MS);
    this.timer.unref();
  }

  /** One heartbeat: renew the member key, recompute the assignment, claim what is new. */
  refresh(): Promise<void> {
    if (this.refreshing === null) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    if (this.closed) return;
    await this.log.membersKv.put(this.memberKey, JSON.stringify({ topics: this.topics, host: os.hostname(), pid: process.pid }));
    const members = await this.log.liveMembers(this.group);
    members.set(this.memberId, this.topics);
    const wanted: TopicPartition[] = [];
    for (const topic of this.topics) {
      const state = await this.log.topic(topic);
      for (const p of rangeAssign(members, this.memberId, topic, state.partitions.length)) wanted.push({ topic, partition: p });
    }
    const next = new Map<string, Owned>();
    const claims: Array<Promise<void>> = [];
    for (const tp of wanted) {
      const current = this.owned.get(tpKey(tp));
      if (current) {
        next.set(tpKey(tp), current);
        continue;
      }
      claims.push(
        this.claim(tp).then((owned) => {
          if (owned !== null) next.set(tpKey(tp), owned);
        }),
      );
    }
    await Promise.all(claims);
    if (this.closed) return;
    this.owned = next;
  }

  /**
   * Takes a partition: reads the committed offset and rewrites it with compare-and-set, so the
   * revision moves and a previous owner's commit fails. A concurrent commit by the previous owner
   * makes the claim fail; the offset is then read again, so its progress is not lost.
   */
  private async claim(tp: TopicPartition): Promise<Owned | null> {
    const kv = this.log.offsetsKv;
    const key = this.log.offsetKey(this.group, tp.topic, tp.partition);
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = await kv.get(key);
      const value = entry !== null && entry.operation === 'PUT' ? entry.string() : '';
      let revision: number;
      try {
        revision = entry === null || entry.operation !== 'PUT' ? await kv.create(key, value) : await kv.update(key, value, entry.revision);
      } catch (err) {
        if (isConflict(err)) {
          await sleep(20 * (attempt + 1));
          continue;
        }
        throw err;
      }
      let position: bigint;
      if (value !== '') {
        position = BigInt(value);
      } else {
        position = await this.log.offsetFor(tp.topic, tp.partition, { kind: this.autoOffsetReset });
      }
      return { topic: tp.topic, partition: tp.partition, position, revision };
    }
    return null;
  }

  assignment(): TopicPartition[] {
    return [...this.owned.values()].map((o) => ({ topic: o.topic, partition: o.partition }));
  }

  positions(): TopicPartitionOffset[] {
    return [...this.owned.values()].map((o) => ({ topic: o.topic, partition: o.partition, offset: o.position }));
  }

  seek(topic: string, partition: number, offset: bigint): void {
    const owned = this.owned.get(tpKey({ topic, partition }));
    if (!owned) throw new SluiceError('NOT_ASSIGNED', `${topic}/${partition} is not assigned to ${this.memberId}`, { context: { topic, partition } });
    owned.position = offset;
  }

  async poll(options: ReadOptions = {}): Promise<LogRecord[]> {
    if (this.closed) throw new SluiceError('LOG_CLOSED', 'the consumer is closed');
    const maxBytes = options.maxBytes ?? 1 << 20;
    const maxWaitMs = options.maxWaitMs ?? 0;
    const out: LogRecord[] = [];
    const owned = [...this.owned.values()];
    if (owned.length === 0) {
      if (maxWaitMs > 0) await sleep(Math.min(maxWaitMs, 100), options.signal);
      return out;
    }
    const partitions = await Promise.all(owned.map((o) => this.log.partitionOf(o.topic, o.partition)));
    for (let round = 0; round < 2; round++) {
      // Waits are armed before reading, so an append between the read and the wait still wakes it.
      const waits = round === 0 && maxWaitMs > 0 && !options.signal?.aborted ? await Promise.all(partitions.map((p) => p.arm(maxWaitMs, options.signal))) : [];
      try {
        let budget = maxBytes;
        for (let k = 0; k < owned.length && budget > 0; k++) {
          const i = (this.nextPartition + k) % owned.length;
          const pos = owned[i]!;
          if (this.owned.get(tpKey(pos)) !== pos) continue;
          let result: ReadResult;
          try {
            result = await partitions[i]!.read(pos.position, { maxBytes: budget });
          } catch (err) {
            if (err instanceof SluiceError && err.code === 'OFFSET_OUT_OF_RANGE') {
              // Retention removed what this group had not read yet: continue from the oldest (or
              // newest) record still stored, as Kafka's auto.offset.reset does.
              pos.position = await this.log.offsetFor(pos.topic, pos.partition, { kind: this.autoOffsetReset });
              continue;
            }
            throw err;
          }
          for (const r of result.records) {
            out.push(r);
            budget -= (r.value?.length ?? 0) + (r.key?.length ?? 0);
          }
          pos.position = result.nextOffset;
        }
        this.nextPartition = (this.nextPartition + 1) % owned.length;
        if (out.length > 0 || waits.length === 0) break;
        await Promise.race(waits.map((w) => w.done));
      } finally {
        for (const w of waits) w.cancel();
      }
    }
    return out;
  }

  async commit(offsets?: TopicPartitionOffset[]): Promise<void> {
    if (this.closed) throw new SluiceError('LOG_CLOSED', 'the consumer is closed');
    const toCommit = offsets ?? this.positions();
    const targets = toCommit.map((o) => {
      const owned = this.owned.get(tpKey(o));
      if (!owned) throw this.notAssigned(o);
      return { o, owned };
    });
    if (offsets !== undefined) await this.log.checkCommittable(this.group, offsets);
    await Promise.all(
      targets.map(async ({ o, owned }) => {
        try {
          owned.revision = await this.log.offsetsKv.update(this.log.offsetKey(this.group, o.topic, o.partition), String(o.offset), owned.revision);
        } catch (err) {
          if (isConflict(err)) {
            // Another member claimed the partition since this one took it: it is no longer ours.
            if (this.owned.get(tpKey(o)) === owned) this.owned.delete(tpKey(o));
            throw this.notAssigned(o);
          }
          throw toSluiceError(err, `committing offsets of group ${this.group}`, { group: this.group, topic: o.topic, partition: o.partition });
        }
      }),
    );
  }

  private notAssigned(tp: TopicPartition): SluiceError {
    return new SluiceError('NOT_ASSIGNED', `${tp.topic}/${tp.partition} is not assigned to ${this.memberId} in group ${this.group} any more`, {
      context: { group: this.group, memberId: this.memberId, topic: tp.topic, partition: tp.partition },
    });
  }

  /** Leaves the group: the member key is deleted, so the others rebalance at their next heartbeat. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.owned = new Map();
    this.onClose();
    await this.refreshing?.catch(() => undefined);
    await this.log.membersKv.delete(this.memberKey).catch(() => undefined);
  }
}

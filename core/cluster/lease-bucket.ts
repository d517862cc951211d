/**
 * Leases in a NATS KV bucket: the worker group's only shared state besides the log.
 *
 * nats-server 2.9 has no per-key TTL, so the bucket's TTL (the stream's `max_age`) is the lease
 * TTL: every write of a key is a new message, and the server removes a key whose last write is
 * older than the TTL. A lease is then
 * - taken with `create` (succeeds only when the key is absent, deleted or expired),
 * - renewed with `update(key, value, revision)` (compare-and-set on the revision the holder last
 *   wrote), which fails once the key expired or someone else took it,
 * - released with a delete conditional on that same revision.
 *
 * The holder never learns when the server expires its key, so it keeps its own deadline: the
 * moment it *sent* its last successful write, on its own monotonic clock, plus the TTL. The server
 * stamped that write later, so the key cannot expire for anyone else before that deadline; a
 * holder that stops its work a margin before it never overlaps with the next holder.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { JetStreamManager, KV, KvStatus, NatsConnection } from 'nats';
import { SluiceError } from '../errors.ts';

/** The lease timings of a worker group. */
export interface LeaseTimings {
  /** How long a lease (and a worker's membership) lives without a renewal. */
  ttlMs: number;
  /** How often held leases and the membership are renewed. */
  renewEveryMs: number;
  /**
   * A holder starts stopping a task when this little is left of its lease, measured from its last
   * successful renewal; the task must have stopped before the lease can expire for others.
   */
  stopMarginMs: number;
  /** How often a worker looks at the group: frees, takes and releases tasks. */
  reconcileEveryMs: number;
}

/**
 * TTL 4.5 s, renewed every 750 ms. A holder that cannot renew stops its tasks 3 s after its last
 * successful renewal, 1.5 s before the lease can expire: three renewals in a row may fail (a
 * network blip, a GC pause) before anything stops. A dead worker's leases expire at most 4.5 s
 * after its last renewal, the server removes them within about half a second, and survivors look
 * twice a second, so its tasks are taken within about 5.5 s, and run once they started (a source
 * reads its stored offsets and marks first): under 10 s. A JetStream leader election after a NATS
 * node died takes 4 to 6 s on nats-server 2.9, longer than any lease that still fails over within
 * 10 s can bridge, so losing the node that leads the group's bucket restarts every task.
 */
export const DEFAULT_LEASE_TIMINGS: LeaseTimings = { ttlMs: 4_500, renewEveryMs: 750, stopMarginMs: 1_500, reconcileEveryMs: 500 };

/** A lease this process holds. */
export interface Lease {
  readonly key: string;
  /** Random per acquisition, stored with the value: tells this holder's own writes from others'. */
  readonly token: string;
  /** The revision of the holder's last write of the key; the next renewal compares against it. */
  revision: number;
  /** performance.now() when the last successful write was sent: the lease is safe until this + TTL. */
  sentAt: number;
}

/** A key as read from the bucket. */
export interface LeaseEntry<T> {
  key: string;
  value: T;
  revision: number;
}

/** JetStream's "wrong last sequence": a compare-and-set found another revision. */
const WRONG_LAST_SEQUENCE = 10071;

function isConflict(err: unknown): boolean {
  return (err as { api_error?: { err_code?: number } } | null)?.api_error?.err_code === WRONG_LAST_SEQUENCE;
}

/** No JetStream responder yet (503) or no answer in time: worth another try a moment later. */
export function isTransient(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === '503' || code === 'TIMEOUT';
}

/** A bucket name for a group: KV bucket names allow letters, digits, `_` and `-`. */
export function bucketName(cluster: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cluster)) {
    throw new SluiceError('INVALID_ARGUMENT', `a cluster name is 1 to 64 letters, digits, _ or -, got ${JSON.stringify(cluster)}`, { context: { field: 'cluster', value: cluster } });
  }
  return `sluice_group_${cluster}`;
}

export class LeaseBucket {
  private constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly name: string,
    readonly ttlMs: number,
  ) {}

  /**
   * Opens (creating if needed) the group's bucket with `ttlMs` as its TTL. Called once per worker
   * at join. Every worker of a group must use the same TTL; a bucket created with another TTL is
   * refused with INVALID_ARGUMENT, since holders would compute wrong deadlines.
   */
  static async open(nc: NatsConnection, cluster: string, options: { ttlMs: number; replicas?: number; timeoutMs?: number }): Promise<LeaseBucket> {
    const name = bucketName(cluster);
    // A renewal that has not been answered within its interval is as good as failed: the next
    // round tries again, and the deadline is counted from the last success anyway.
    const js = nc.jetstream({ timeout: options.timeoutMs ?? 5_000 });
    const kvOptions = { ttl: options.ttlMs, history: 1, replicas: options.replicas ?? 1, timeout: options.timeoutMs ?? 5_000 };
    let kv: KV | undefined;
    let status: KvStatus | undefined;
    // Workers started together create the bucket together; JetStream answers some of them "no
    // responders" (503) or not at all while the stream's replicas are being placed. That settles
    // in moments, for the creation and for the first look at the bucket alike.
    for (let attempt = 0; status === undefined; attempt++) {
      try {
        kv ??= await js.views.kv(name, kvOptions);
        status = await kv.status();
      } catch (err) {
        if (attempt >= 20 || !isTransient(err)) throw err;
        await new Promise((r) => setTimeout(r, 250 + Math.random() * 250));
      }
    }
    if (status.ttl !== options.ttlMs) {
      throw new SluiceError('INVALID_ARGUMENT', `the group bucket ${name} has a lease TTL of ${status.ttl} ms, this worker uses ${options.ttlMs} ms; every worker of a group must use the same timings`, {
        context: { cluster, ttl_ms: status.ttl },
      });
    }
    return new LeaseBucket(kv!, await nc.jetstreamManager({ timeout: options.timeoutMs ?? 5_000 }), name, options.ttlMs);
  }

  /** Takes `key` if nobody holds it. Resolves null when someone does; rejects when NATS is unreachable. */
  async acquire(key: string, value: unknown): Promise<Lease | null> {
    const sentAt = performance.now();
    const token = randomBytes(8).toString('hex');
    try {
      const revision = await this.kv.create(key, encode({ token, value }));
      return { key, token, revision, sentAt };
    } catch (err) {
      if (isConflict(err)) return null;
      throw err;
    }
  }

  /**
   * Renews a held lease, updating its value. Resolves false when the lease is lost (expired, or
   * taken by another worker after it expired); rejects when NATS did not answer, in which case the
   * lease is still held until its deadline.
   */
  async renew(lease: Lease, value: unknown): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const sentAt = performance.now();
      try {
        lease.revision = await this.kv.update(lease.key, encode({ token: lease.token, value }), lease.revision);
        lease.sentAt = sentAt;
        return true;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
      // A renewal that timed out may still have been written, leaving this holder one revision
      // behind its own lease. The key then still carries our token: catch up and renew again. The
      // deadline stays where the last confirmed renewal put it.
      const current = attempt === 0 ? await this.kv.get(lease.key) : null;
      if (!current || current.operation !== 'PUT' || decode(current.value)?.token !== lease.token) return false;
      lease.revision = current.revision;
    }
  }

  /** Releases a held lease, so another worker can take it at once. A lease already lost is left alone. */
  async release(lease: Lease): Promise<void> {
    try {
      await this.kv.delete(lease.key, { previousSeq: lease.revision });
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }

  /** Writes `key` unconditionally; for a worker's own membership key, which nobody else writes. */
  async put(key: string, value: unknown): Promise<void> {
    await this.kv.put(key, encode({ token: '', value }));
  }

  /** Deletes `key` unconditionally. */
  async delete(key: string): Promise<void> {
    await this.kv.delete(key);
  }

  /** The live entries under `prefix` (e.g. `tasks.`): expired, deleted and unparsable keys are left out. */
  async list<T>(prefix: string): Promise<Array<LeaseEntry<T>>> {
    // The stream's subjects rather than `kv.keys()`: listing keys creates a consumer, which needs
    // the JetStream meta leader, and a group must keep working through the meta leader's election
    // after a node dies. Stream info is answered by the bucket's own stream leader.
    const subjectPrefix = `$KV.${this.name}.`;
    const info = await this.jsm.streams.info(`KV_${this.name}`, { subjects_filter: `${subjectPrefix}${prefix}>` });
    const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(subjectPrefix.length));
    const entries = await Promise.all(keys.map((key) => this.get<T>(key)));
    return entries.filter((e): e is LeaseEntry<T> => e !== null);
  }

  /** One live entry, or null. */
  async get<T>(key: string): Promise<LeaseEntry<T> | null> {
    const entry = await this.kv.get(key);
    if (!entry || entry.operation !== 'PUT') return null;
    const stored = decode(entry.value);
    return stored ? { key, value: stored.value as T, revision: entry.revision } : null;
  }

  /** Deletes the bucket with everything in it; for tests and `sluice` tooling, never by a running worker. */
  async destroy(): Promise<void> {
    await this.kv.destroy();
  }
}

/** What a key stores: the holder's token and the caller's value. */
interface Stored {
  token: string;
  value: unknown;
}

function encode(stored: Stored): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(stored));
}

function decode(bytes: Uint8Array): Stored | null {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as Partial<Stored> | null;
    return parsed && typeof parsed === 'object' && typeof parsed.token === 'string' ? { token: parsed.token, value: parsed.value } : null;
  } catch {
    return null;
  }
}

/**
 * Leases on a real 3-node NATS JetStream cluster (loopback ports, private to this file): exclusive
 * ownership under races, renewal, expiry timing, compare-and-set after a takeover, and release.
 */
import { performance } from 'node:perf_hooks';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, type NatsCluster } from '../../test/support/nats-cluster.ts';
import { isSluiceError } from '../errors.ts';
import { LeaseBucket } from './lease-bucket.ts';

let cluster: NatsCluster;
const connections: NatsConnection[] = [];
let bucketSeq = 0;

beforeAll(async () => {
  cluster = await startNatsCluster();
}, 60_000);

afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close().catch(() => {})));
  await cluster?.destroy();
});

async function client(server?: string): Promise<NatsConnection> {
  const nc = await connect({ servers: server ?? cluster.servers });
  connections.push(nc);
  return nc;
}

/** `n` workers' views of one fresh bucket, each on its own connection (spread over the nodes). */
async function buckets(n: number, ttlMs: number): Promise<LeaseBucket[]> {
  const name = `lease${++bucketSeq}`;
  const out: LeaseBucket[] = [];
  for (let i = 0; i < n; i++) out.push(await LeaseBucket.open(await client(cluster.servers[i % cluster.servers.length]), name, { ttlMs, replicas: 3 }));
  return out;
}

describe('LeaseBucket', () => {
  // Of many workers racing for the same free task, exactly one gets its lease.
  it('gives a free lease to exactly one of many concurrent acquirers', { timeout: 30_000 }, async () => {
    const views = await buckets(12, 5_000);
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all(views.map((b, i) => b.acquire(`tasks.race.${round}`, { worker: `w${i}` })));
      const winners = results.map((r, i) => (r ? i : -1)).filter((i) => i >= 0);
      expect(winners).toHaveLength(1);
      const stored = await views[0]!.get<{ worker: string }>(`tasks.race.${round}`);
      expect(stored?.value.worker).toBe(`w${winners[0]}`);
    }
  });

  // A lease renewed before each TTL stays with its holder well past one TTL; nobody else can take it.
  it('keeps a renewed lease with its holder', { timeout: 30_000 }, async () => {
    const [holder, other] = await buckets(2, 1_500);
    const lease = (await holder!.acquire('tasks.kept', { worker: 'a' }))!;
    expect(lease).not.toBeNull();
    const until = performance.now() + 4_000;
    while (performance.now() < until) {
      await new Promise((r) => setTimeout(r, 400));
      expect(await holder!.renew(lease, { worker: 'a' })).toBe(true);
      expect(await other!.acquire('tasks.kept', { worker: 'b' })).toBeNull();
    }
    expect((await other!.get<{ worker: string }>('tasks.kept'))?.value.worker).toBe('a');
  });

  // An unrenewed lease becomes free for others no earlier than one TTL after its holder sent the last write, and soon after it.
  it('expires an unrenewed lease one TTL after the last write, not before', { timeout: 30_000 }, async () => {
    const ttl = 2_000;
    const [holder, other] = await buckets(2, ttl);
    const lease = (await holder!.acquire('tasks.expiring', { worker: 'a' }))!;
    await new Promise((r) => setTimeout(r, 500));
    expect(await holder!.renew(lease, { worker: 'a' })).toBe(true);
    let takenAt = 0;
    while (takenAt === 0) {
      if (await other!.acquire('tasks.expiring', { worker: 'b' })) takenAt = performance.now();
      else await new Promise((r) => setTimeout(r, 20));
      expect(performance.now() - lease.sentAt).toBeLessThan(ttl + 5_000);
    }
    const waited = takenAt - lease.sentAt;
    expect(waited).toBeGreaterThanOrEqual(ttl);
    // How late the server expires keys bounds the failover time; measured here, and kept well under
    // the failover budget (TTL 4.5 s + 0.5 s reconcile + the task's start, against 10 s).
    expect(waited).toBeLessThan(ttl + 1_500);
  });

  // Once another worker took an expired lease, the old holder's renewal fails and its release leaves the new holder's lease alone.
  it('fences the old holder after a takeover', { timeout: 30_000 }, async () => {
    const [a, b] = await buckets(2, 1_000);
    const old = (await a!.acquire('tasks.fenced', { worker: 'a' }))!;
    let taken = null;
    while (!taken) {
      await new Promise((r) => setTimeout(r, 50));
      taken = await b!.acquire('tasks.fenced', { worker: 'b' });
    }
    expect(await a!.renew(old, { worker: 'a' })).toBe(false);
    await a!.release(old);
    expect((await a!.get<{ worker: string }>('tasks.fenced'))?.value.worker).toBe('b');
    expect(await b!.renew(taken, { worker: 'b' })).toBe(true);
  });

  // A renewal written but not acknowledged (a timeout) does not cost the holder its lease: the next renewal catches up.
  it('keeps the lease when a renewal landed without its acknowledgement', { timeout: 30_000 }, async () => {
    const [holder, other] = await buckets(2, 5_000);
    const lease = (await holder!.acquire('tasks.unacked', { worker: 'a' }))!;
    const before = lease.revision;
    expect(await holder!.renew(lease, { worker: 'a', n: 1 })).toBe(true);
    // As if the answer to that renewal never arrived: the holder still knows the older revision.
    lease.revision = before;
    expect(await holder!.renew(lease, { worker: 'a', n: 2 })).toBe(true);
    expect((await other!.get<{ n: number }>('tasks.unacked'))?.value.n).toBe(2);
    // Someone else's write is not mistaken for our own.
    const theirs = (await other!.acquire('tasks.unacked-2', { worker: 'b' }))!;
    expect(await holder!.renew({ ...theirs, token: 'another', revision: theirs.revision - 1 }, { worker: 'a' })).toBe(false);
    expect((await other!.get<{ worker: string }>('tasks.unacked-2'))?.value.worker).toBe('b');
  });

  // A released lease can be taken at once, without waiting for its TTL.
  it('frees a released lease immediately', { timeout: 30_000 }, async () => {
    const [a, b] = await buckets(2, 60_000);
    const lease = (await a!.acquire('tasks.handover', { worker: 'a' }))!;
    expect(await b!.acquire('tasks.handover', { worker: 'b' })).toBeNull();
    await a!.release(lease);
    expect(await a!.get('tasks.handover')).toBeNull();
    expect(await b!.acquire('tasks.handover', { worker: 'b' })).not.toBeNull();
    expect((await b!.list<{ worker: string }>('tasks.')).map((e) => e.value.worker)).toEqual(['b']);
  });

  // Workers with different lease timings cannot share a group, since their deadlines would not match the bucket's TTL.
  it('refuses a bucket created with another TTL', { timeout: 30_000 }, async () => {
    const nc = await client();
    await LeaseBucket.open(nc, 'ttl-mismatch', { ttlMs: 6_000 });
    const err = await LeaseBucket.open(nc, 'ttl-mismatch', { ttlMs: 3_000 }).catch((e: unknown) => e);
    expect(isSluiceError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toMatch(/6000 ms.*3000 ms/);
  });
});

// Other engines taking the same records, so a number for sluice can be read against something a
// reader already knows. Peers are optional: an unreachable one is reported as skipped, never fatal.
import { Redis } from 'ioredis';
import { StorageType, connect } from 'nats';
import { deadlineAfter, errorMessage, nowNs, secondsSince } from './common.ts';

export interface PeerRun {
  payloads: Buffer[];
  /** Upper bound on records; the run also stops at `maxSeconds`. */
  records: number;
  maxSeconds: number;
  warmupS: number;
}

export type PeerResult =
  | { ok: true; records: number; payloadBytes: number; seconds: number; detail: Record<string, unknown> }
  | { ok: false; skipped: string };

/**
 * Share of one core this process burnt during the timed run. Near 100 means the number is the
 * Node client's ceiling rather than the server's, which is worth knowing before comparing.
 */
function clientCpuPct(since: NodeJS.CpuUsage, seconds: number): number {
  const used = process.cpuUsage(since);
  return Math.round(((used.user + used.system) / 1e6 / seconds) * 100);
}

// Overridable for a machine whose servers sit elsewhere on loopback; the defaults are the stock ports.
export const NATS_URL = process.env.BENCH_NATS ?? '127.0.0.1:4222';
const [redisHost, redisPort] = (process.env.BENCH_REDIS ?? '127.0.0.1:6379').split(':');
export const REDIS_HOST = redisHost || '127.0.0.1';
export const REDIS_PORT = Number(redisPort ?? 6379);

/**
 * Acks are awaited, but with a window in flight: publishing one message and waiting for its ack
 * would measure the loopback round trip, not JetStream, and sluice's cases do not pay that either.
 */
export async function benchJetStream(run: PeerRun, window = 256): Promise<PeerResult> {
  let nc;
  try {
    nc = await connect({ servers: NATS_URL, timeout: 1000, reconnect: false });
  } catch (err) {
    return { ok: false, skipped: `NATS not reachable on ${NATS_URL}: ${errorMessage(err)}` };
  }
  const name = `SLUICE_BENCH_${process.pid}_${Date.now()}`;
  const subject = `sluice.bench.${process.pid}.${Date.now()}`;
  let jsm;
  try {
    jsm = await nc.jetstreamManager({ timeout: 2000 });
    await jsm.streams.add({ name, subjects: [subject], storage: StorageType.File });
  } catch (err) {
    await nc.close();
    return { ok: false, skipped: `JetStream unavailable on ${NATS_URL}: ${errorMessage(err)}` };
  }
  try {
    const js = nc.jetstream({ timeout: 10_000 });
    const { payloads } = run;
    const pool = payloads.length;
    const publishFor = (seconds: number, limit: number): Promise<{ records: number; bytes: number }> =>
      new Promise((resolve, reject) => {
        const deadline = deadlineAfter(seconds);
        let sent = 0;
        let acked = 0;
        let bytes = 0;
        let inflight = 0;
        let stopped = false;
        let failed = false;
        const pump = (): void => {
          while (!stopped && inflight < window) {
            if (sent >= limit || ((sent & 63) === 0 && nowNs() > deadline)) {
              stopped = true;
              break;
            }
            const value = payloads[sent % pool]!;
            sent++;
            inflight++;
            js.publish(subject, value).then(
              () => {
                inflight--;
                acked++;
                bytes += value.length;
                if (stopped && inflight === 0) resolve({ records: acked, bytes });
                else pump();
              },
              (err: unknown) => {
                if (!failed) reject(err);
                failed = true;
                stopped = true;
              },
            );
          }
          if (stopped && inflight === 0) resolve({ records: acked, bytes });
        };
        pump();
      });
    await publishFor(run.warmupS, run.records);
    const cpu = process.cpuUsage();
    const start = nowNs();
    const got = await publishFor(run.maxSeconds, run.records);
    const seconds = secondsSince(start);
    const clientCpu = clientCpuPct(cpu, seconds);
    return {
      ok: true,
      records: got.records,
      payloadBytes: got.bytes,
      seconds,
      detail: { storage: 'file', window, acks: true, server_sync: 'server default (not per message)', client_cpu_pct: clientCpu },
    };
  } catch (err) {
    return { ok: false, skipped: `JetStream publish failed: ${errorMessage(err)}` };
  } finally {
    await jsm.streams.delete(name).catch(() => undefined);
    await nc.close();
  }
}

/** Sequential pipelines, like sluice's sequential batches of 1000: one round trip per batch. */
export async function benchRedis(run: PeerRun, pipeline = 1000): Promise<PeerResult> {
  const redis = new Redis({
    host: REDIS_HOST,
    port: REDIS_PORT,
    lazyConnect: true,
    connectTimeout: 1000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // Without a listener ioredis reports connection errors as unhandled 'error' events.
  redis.on('error', () => undefined);
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    return { ok: false, skipped: `Redis not reachable on ${REDIS_HOST}:${REDIS_PORT}: ${errorMessage(err)}` };
  }
  const key = `sluice:bench:${process.pid}:${Date.now()}`;
  try {
    const info = await redis.config('GET', 'appendonly');
    const appendonly = Array.isArray(info) ? String(info[1]) : 'unknown';
    const { payloads } = run;
    const pool = payloads.length;
    const xaddFor = async (seconds: number, limit: number): Promise<{ records: number; bytes: number }> => {
      const deadline = deadlineAfter(seconds);
      let n = 0;
      let bytes = 0;
      while (n < limit && nowNs() < deadline) {
        const p = redis.pipeline();
        const end = Math.min(limit, n + pipeline);
        let b = 0;
        for (let i = n; i < end; i++) {
          const value = payloads[i % pool]!;
          p.xadd(key, '*', 'v', value);
          b += value.length;
        }
        const results = await p.exec();
        for (const [err] of results ?? []) if (err) throw err;
        bytes += b;
        n = end;
      }
      return { records: n, bytes };
    };
    await xaddFor(run.warmupS, run.records);
    const cpu = process.cpuUsage();
    const start = nowNs();
    const got = await xaddFor(run.maxSeconds, run.records);
    const seconds = secondsSince(start);
    const clientCpu = clientCpuPct(cpu, seconds);
    return {
      ok: true,
      records: got.records,
      payloadBytes: got.bytes,
      seconds,
      detail: { pipeline, appendonly, note: 'in-memory; durability per the server config', client_cpu_pct: clientCpu },
    };
  } catch (err) {
    return { ok: false, skipped: `Redis XADD failed: ${errorMessage(err)}` };
  } finally {
    await redis.del(key).catch(() => undefined);
    redis.disconnect();
  }
}

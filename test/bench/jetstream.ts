// The JetStream log backend's throughput: appends and sequential reads through the Log interface on a
// private nats-server cluster with 1 and 3 replicas, each divided by the engine's own limit measured
// in the same run on the same cluster (raw JetStream publishes of the same batch bytes with the same
// number in flight; raw direct gets of the same messages), and by the embedded log doing the same
// work in a scratch directory.
import { connect, StorageType, type JetStreamManager, type NatsConnection, type StoredMsg } from 'nats';
import { openLog } from '../../core/log/embedded-log.ts';
import { openJetStreamLog } from '../../core/log/jetstream/jetstream-log.ts';
import { encodeBatch, WriteBuffer } from '../../core/log/record-batch.ts';
import type { Log, ProducerRecord } from '../../core/log/types.ts';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster.ts';
import { appendFor, type BenchContext, deadlineAfter, errorMessage, makePayloads, mibPerS, nowNs, rate, round, secondsSince } from './common.ts';

const TOPIC = 'bench';
const BATCH = 1000;
/** Appends in flight at once, for the backend and for the raw publishes alike. */
const CONCURRENCY = 8;
/** The backend's direct gets in flight per read (partition.ts READ_WINDOW); the raw read uses the same. */
const READ_WINDOW = 8;
const SIZES = { '100B': 100, '1KiB': 1024 } as const;
const REPLICAS = [1, 3] as const;

type SizeName = keyof typeof SIZES;

interface Measured {
  records: number;
  bytes: number;
  seconds: number;
}

export function caseNames(): string[] {
  const names: string[] = [];
  for (const r of REPLICAS) for (const s of Object.keys(SIZES)) names.push(`append-${s}-b${BATCH}-r${r}`, `read-${s}-r${r}`);
  return names;
}

function makeBatches(size: number): ProducerRecord[][] {
  const nBatches = CONCURRENCY * 4;
  const payloads = makePayloads(size, nBatches * BATCH);
  // Explicit partition 0, so both logs put every batch in the one partition the raw stream mirrors.
  return Array.from({ length: nBatches }, (_, b) => Array.from({ length: BATCH }, (_, r) => ({ key: null, value: payloads[b * BATCH + r]!, partition: 0 })));
}

/** The bytes the backend publishes for each batch: record-batch.ts's encoding, as partition.ts makes it. */
function encodeAll(batches: ProducerRecord[][]): Buffer[] {
  return batches.map((batch) => {
    const out = new WriteBuffer(64 * 1024);
    const encoded = encodeBatch(out, batch, null, 0n, Date.now());
    return Buffer.from(out.buf.subarray(0, encoded.size));
  });
}

async function readAllFor(log: Log, size: number, seconds: number): Promise<Measured> {
  const deadline = deadlineAfter(seconds);
  const start = nowNs();
  let offset = 0n;
  let records = 0;
  for (;;) {
    const r = await log.read(TOPIC, 0, offset);
    records += r.records.length;
    offset = r.nextOffset;
    if (offset >= r.highWatermark || nowNs() > deadline) break;
  }
  return { records, bytes: records * size, seconds: secondsSince(start) };
}

/** JetStream's own limit for the backend's appends: the same batch bytes, CONCURRENCY publishes in flight, to an identical stream. */
async function rawPublishFor(nc: NatsConnection, jsm: JetStreamManager, replicas: number, encoded: Buffer[], size: number, seconds: number, limit: number): Promise<Measured & { stream: string }> {
  const stream = `RAW_${replicas}_${size}_${Date.now()}`;
  const subject = `raw.${stream}`;
  await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File, num_replicas: replicas, allow_direct: true });
  const js = nc.jetstream({ timeout: 10_000 });
  const deadline = deadlineAfter(seconds);
  let issued = 0;
  let published = 0;
  let next = 0;
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const data = encoded[next++ % encoded.length]!;
      if (issued + BATCH > limit) {
        stop = true;
        break;
      }
      issued += BATCH;
      await js.publish(subject, data);
      published += BATCH;
      if (nowNs() > deadline) stop = true;
    }
  };
  const start = nowNs();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { records: published, bytes: published * size, seconds: secondsSince(start), stream };
}

/** JetStream's own limit for the backend's reads: direct gets of every message in order, READ_WINDOW in flight, no decoding. */
async function rawReadFor(jsm: JetStreamManager, stream: string, size: number, seconds: number): Promise<Measured> {
  // `direct` exists at runtime but the nats 2.29 typings do not declare it on JetStreamManager.
  const direct = (jsm as JetStreamManager & { direct: { getMessage(stream: string, query: { seq: number }): Promise<StoredMsg> } }).direct;
  const info = await jsm.streams.info(stream);
  const deadline = deadlineAfter(seconds);
  const start = nowNs();
  let records = 0;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && nowNs() <= deadline; seq += READ_WINDOW) {
    const count = Math.min(READ_WINDOW, info.state.last_seq - seq + 1);
    const msgs = await Promise.all(Array.from({ length: count }, (_, k) => direct.getMessage(stream, { seq: seq + k })));
    records += msgs.length * BATCH;
  }
  return { records, bytes: records * size, seconds: secondsSince(start) };
}

function perSecond(m: Measured): { records_per_s: number; mb_per_s: number } {
  return { records_per_s: round(rate(m.records, m.seconds)), mb_per_s: round(mibPerS(m.bytes, m.seconds), 1) };
}

function ratio(a: Measured, b: Measured | null): number | null {
  if (b === null) return null;
  const rb = rate(b.records, b.seconds);
  return rb > 0 ? round(rate(a.records, a.seconds) / rb, 3) : null;
}

/** The embedded log on the same work, with fsync never: JetStream acknowledges before its own fsync too. */
async function embeddedFor(ctx: BenchContext, size: number, batches: ProducerRecord[][], limit: number): Promise<{ append: Measured; read: Measured }> {
  const dir = ctx.scratchDir(`embedded-${size}`);
  const log = await openLog(dir, { maintenanceIntervalMs: 0 });
  try {
    await log.createTopic(TOPIC, { partitions: 1, fsync: 'never' });
    await appendFor(log, TOPIC, batches, { size, concurrency: CONCURRENCY, seconds: ctx.options.warmupS, limit });
    const append = await appendFor(log, TOPIC, batches, { size, concurrency: CONCURRENCY, seconds: ctx.options.durationS, limit });
    const read = await readAllFor(log, size, ctx.options.durationS);
    return { append, read };
  } finally {
    await log.close();
    ctx.removeScratch(dir);
  }
}

export async function run(ctx: BenchContext): Promise<void> {
  const { options } = ctx;
  if (options.listOnly) {
    for (const name of caseNames()) process.stdout.write(`${name}\n`);
    return;
  }
  const embedded = new Map<SizeName, { append: Measured; read: Measured }>();
  for (const replicas of REPLICAS) {
    const wanted = (Object.keys(SIZES) as SizeName[]).filter((s) => ctx.selected(`append-${s}-b${BATCH}-r${replicas}`) || ctx.selected(`read-${s}-r${replicas}`));
    if (wanted.length === 0) continue;
    ctx.progress(`starting a ${replicas === 1 ? '1-node' : '3-node'} nats-server cluster`);
    let cluster: NatsCluster;
    try {
      cluster = await startNatsCluster({ size: replicas === 1 ? 1 : 3, name: `sluice-bench-${process.pid}` });
    } catch (err) {
      for (const s of wanted) ctx.emit({ case: `append-${s}-b${BATCH}-r${replicas}`, skipped: `nats-server cluster did not start: ${errorMessage(err)}` });
      continue;
    }
    const nc = await connect({ servers: cluster.servers });
    try {
      const jsm = await nc.jetstreamManager({ timeout: 10_000 });
      for (const sizeName of wanted) {
        const size = SIZES[sizeName];
        const limit = Math.floor(options.maxBytes / size);
        const batches = makeBatches(size);
        const encoded = encodeAll(batches);
        if (!embedded.has(sizeName)) {
          ctx.progress(`embedded-${sizeName}: append and read`);
          embedded.set(sizeName, await embeddedFor(ctx, size, batches, limit));
        }
        const emb = embedded.get(sizeName)!;
        const appendName = `append-${sizeName}-b${BATCH}-r${replicas}`;
        const readName = `read-${sizeName}-r${replicas}`;
        const log = await openJetStreamLog({ servers: cluster.servers, replicas, prefix: `bench${size}`, maintenanceIntervalMs: 0 });
        try {
          await log.createTopic(TOPIC, { partitions: 1 });
          ctx.progress(`${appendName}: warmup ${options.warmupS}s, timed ≤${options.durationS}s`);
          await appendFor(log, TOPIC, batches, { size, concurrency: CONCURRENCY, seconds: options.warmupS, limit });
          const ours = await appendFor(log, TOPIC, batches, { size, concurrency: CONCURRENCY, seconds: options.durationS, limit });
          ctx.progress(`${appendName}: raw publishes`);
          const raw = await rawPublishFor(nc, jsm, replicas, encoded, size, options.durationS, limit);
          if (ctx.selected(appendName)) {
            ctx.emit({
              case: appendName,
              record_bytes: size,
              batch: BATCH,
              replicas,
              concurrency: CONCURRENCY,
              records: ours.records,
              seconds: round(ours.seconds, 3),
              ...perSecond(ours),
              baseline: `raw-js-publish-r${replicas}`,
              baseline_records_per_s: perSecond(raw).records_per_s,
              baseline_mb_per_s: perSecond(raw).mb_per_s,
              ratio: ratio(ours, raw),
              embedded_records_per_s: perSecond(emb.append).records_per_s,
              ratio_vs_embedded: ratio(ours, emb.append),
              ratio_means: 'ratio = backend/raw publishes of the same bytes; ratio_vs_embedded = backend/embedded log (fsync never)',
            });
          }
          if (ctx.selected(readName)) {
            ctx.progress(`${readName}: timed ≤${options.durationS}s`);
            const reader = await openJetStreamLog({ servers: cluster.servers, replicas, prefix: `bench${size}`, maintenanceIntervalMs: 0 });
            let read: Measured;
            try {
              // A fresh process: its index is empty, as a consumer starting from the beginning would find it.
              read = await readAllFor(reader, size, options.durationS);
            } finally {
              await reader.close();
            }
            const rawRead = await rawReadFor(jsm, raw.stream, size, options.durationS);
            ctx.emit({
              case: readName,
              record_bytes: size,
              replicas,
              records: read.records,
              seconds: round(read.seconds, 3),
              ...perSecond(read),
              baseline: `raw-js-direct-get-w${READ_WINDOW}-r${replicas}`,
              baseline_records_per_s: perSecond(rawRead).records_per_s,
              baseline_mb_per_s: perSecond(rawRead).mb_per_s,
              ratio: ratio(read, rawRead),
              embedded_records_per_s: perSecond(emb.read).records_per_s,
              ratio_vs_embedded: ratio(read, emb.read),
              ratio_means: 'ratio = backend/raw direct gets of the same batches; ratio_vs_embedded = backend/embedded log',
            });
          }
        } finally {
          await log.close();
        }
      }
    } finally {
      await nc.close();
      await cluster.destroy();
    }
  }
}

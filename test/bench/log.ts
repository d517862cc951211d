// The log's own throughput: appends and sequential reads, each divided by a raw-file baseline run
// in the same process on the same disk right after it, plus JetStream and Redis as peers.
import { existsSync, rmSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import type { Log, ProducerRecord, TopicConfig } from '../../core/log/types.ts';
import { type RawResult, rawRead, rawWrite } from './baselines.ts';
import {
  type AppendRun,
  appendFor,
  type BenchContext,
  MiB,
  PROJECT_ROOT,
  deadlineAfter,
  errorMessage,
  listFiles,
  makePayloads,
  mibPerS,
  nowNs,
  rate,
  round,
  secondsSince,
} from './common.ts';
import { type PeerResult, benchJetStream, benchRedis } from './peers.ts';

type OpenLog = (dataDir: string, options?: { readOnly?: boolean; defaults?: Partial<TopicConfig> }) => Promise<Log>;

const ENGINE_PATH = join(PROJECT_ROOT, 'core', 'log', 'embedded-log.ts');
const TOPIC = 'bench';

interface Target {
  metric: 'records_per_s' | 'ratio';
  min: number;
}

interface AppendCase {
  kind: 'append';
  name: string;
  size: number;
  batch: number;
  fsync: 'never' | 'always';
  partitions: number;
  /** Appends in flight at once; >1 lets group commit coalesce single-record appends. */
  concurrency: number;
  keyed: boolean;
  /** Caps the timed run below the global duration, for cases bound by fsync latency. */
  maxSeconds?: number;
  target?: Target;
}

interface ReadCase {
  kind: 'read';
  name: string;
  size: number;
  partitions: number;
  target?: Target;
}

type Case = AppendCase | ReadCase;

const SIZES = { '100B': 100, '1KiB': 1024 } as const;
type SizeName = keyof typeof SIZES;

function appendCase(
  size: SizeName,
  batch: number,
  fsync: 'never' | 'always',
  partitions: number,
  extra: Partial<Pick<AppendCase, 'concurrency' | 'keyed' | 'maxSeconds' | 'target'>> = {},
): AppendCase {
  const concurrency = extra.concurrency ?? 1;
  const keyed = extra.keyed ?? false;
  const name =
    `append-${size}-b${batch}-${fsync === 'never' ? 'nosync' : 'fsync'}-p${partitions}` +
    (concurrency > 1 ? `-c${concurrency}` : '') +
    (keyed ? '-keyed' : '');
  return { kind: 'append', name, size: SIZES[size], batch, fsync, partitions, concurrency, keyed, ...extra };
}

const THROUGHPUT_TARGET: Target = { metric: 'records_per_s', min: 3_000_000 };
const RATIO_TARGET: Target = { metric: 'ratio', min: 0.7 };
const READ_TARGET: Target = { metric: 'records_per_s', min: 5_000_000 };

/**
 * Not the full cross product: batch-1 cases exist to expose per-call overhead and group commit,
 * which the 100 B/1 KiB split adds little to once fsync is in the picture, and each fsync case
 * costs seconds of wall time.
 */
export const CASES: Case[] = [
  appendCase('100B', 1000, 'never', 1, { target: THROUGHPUT_TARGET }),
  appendCase('100B', 1000, 'never', 8, { target: THROUGHPUT_TARGET }),
  appendCase('1KiB', 1000, 'never', 1, { target: RATIO_TARGET }),
  appendCase('1KiB', 1000, 'never', 8, { target: RATIO_TARGET }),
  appendCase('100B', 1000, 'never', 8, { keyed: true }),
  appendCase('100B', 1, 'never', 1),
  appendCase('1KiB', 1, 'never', 1),
  appendCase('100B', 1000, 'always', 1),
  appendCase('1KiB', 1000, 'always', 1),
  appendCase('100B', 1000, 'always', 8),
  appendCase('100B', 1, 'always', 1, { concurrency: 256, maxSeconds: 2 }),
  appendCase('100B', 1, 'always', 8, { concurrency: 256, maxSeconds: 2 }),
  { kind: 'read', name: 'read-100B-p1', size: 100, partitions: 1, target: READ_TARGET },
  { kind: 'read', name: 'read-100B-p8', size: 100, partitions: 8, target: READ_TARGET },
  { kind: 'read', name: 'read-1KiB-p1', size: 1024, partitions: 1, target: READ_TARGET },
];

const PEER_CASES = ['peer-jetstream-100B', 'peer-jetstream-1KiB', 'peer-redis-100B', 'peer-redis-1KiB'];

/** Keeps the warmup's data from adding much to the page cache a timed run sees. */
const WARMUP_MAX_BYTES = 128 * MiB;

/** Read cases stop populating here: enough for a second of reading at the 5M/s target. */
const READ_MAX_RECORDS = 5_000_000;

export function caseNames(): string[] {
  return [...CASES.map((c) => c.name), ...PEER_CASES];
}

async function loadEngine(ctx: BenchContext): Promise<OpenLog | string> {
  if (!existsSync(ENGINE_PATH)) return `${relative(PROJECT_ROOT, ENGINE_PATH)} not found`;
  try {
    // A computed specifier keeps the harness type-checking and the baselines runnable before the
    // engine file exists or while it does not compile.
    const mod = (await import(ENGINE_PATH)) as { openLog?: unknown };
    if (typeof mod.openLog !== 'function') return 'embedded-log.ts does not export openLog';
    return mod.openLog as OpenLog;
  } catch (err) {
    ctx.progress(`engine failed to load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return `engine failed to load: ${errorMessage(err)}`;
  }
}

export async function run(ctx: BenchContext): Promise<void> {
  const { options } = ctx;
  if (options.listOnly) {
    for (const name of caseNames()) process.stdout.write(`${name}\n`);
    return;
  }
  let openLog: OpenLog | null = null;
  if (!options.baselinesOnly) {
    const loaded = await loadEngine(ctx);
    if (typeof loaded === 'string') {
      ctx.emit({ case: 'log-engine', skipped: loaded, note: 'running baselines and peers only' });
    } else {
      openLog = loaded;
    }
  }

  if (CASES.some((c) => ctx.selected(c.name))) primePageCache(ctx);

  const results = new Map<string, Record<string, unknown>>();
  for (const c of CASES) {
    if (!ctx.selected(c.name)) continue;
    ctx.progress(`${c.name}: start`);
    let row: Record<string, unknown>;
    try {
      row = c.kind === 'append' ? await runAppend(ctx, c, openLog) : await runRead(ctx, c, openLog);
    } catch (err) {
      ctx.progress(`${c.name}: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      row = { case: c.name, error: errorMessage(err) };
    }
    results.set(c.name, row);
    ctx.emit(row);
  }

  if (!options.peers) return;
  for (const size of ['100B', '1KiB'] as const) {
    for (const peer of ['jetstream', 'redis'] as const) {
      const name = `peer-${peer}-${size}`;
      if (!ctx.selected(name)) continue;
      ctx.progress(`${name}: start`);
      const payloads = makePayloads(SIZES[size], 65_536);
      // Redis keeps the whole stream in memory; half the disk cap is plenty for a 3 s run.
      const capBytes = peer === 'redis' ? options.maxBytes / 2 : options.maxBytes;
      const peerRun = {
        payloads,
        records: Math.floor(capBytes / SIZES[size]),
        maxSeconds: options.durationS,
        warmupS: options.warmupS,
      };
      let result: PeerResult;
      try {
        result = peer === 'jetstream' ? await benchJetStream(peerRun) : await benchRedis(peerRun);
      } catch (err) {
        result = { ok: false, skipped: errorMessage(err) };
      }
      if (!result.ok) {
        ctx.emit({ case: name, skipped: result.skipped });
        continue;
      }
      // Both peers take pipelined, unsynced writes, so the comparable sluice case is the batched
      // no-fsync one on one partition.
      const comparable = `append-${size}-b1000-nosync-p1`;
      const ours = results.get(comparable)?.records_per_s;
      const peerRate = rate(result.records, result.seconds);
      ctx.emit({
        case: name,
        records: result.records,
        seconds: round(result.seconds, 3),
        records_per_s: round(peerRate),
        mb_per_s: round(mibPerS(result.payloadBytes, result.seconds), 1),
        ...result.detail,
        sluice_case: comparable,
        sluice_records_per_s: typeof ours === 'number' ? ours : null,
        ratio: typeof ours === 'number' && peerRate > 0 ? round(ours / peerRate, 3) : null,
        ratio_means: 'sluice records/s divided by peer records/s',
      });
    }
  }
}

/**
 * The first time this VM's page cache grows to a size, writes run at a third to a half of the speed
 * they reach later (the host backs the guest's memory lazily), which would penalise whichever case
 * runs first; growing it once to what a case plus its warmup can use takes that out.
 */
function primePageCache(ctx: BenchContext): void {
  const dir = ctx.scratchDir('prime');
  try {
    ctx.progress('priming the page cache');
    const payloads = makePayloads(1024, 1024);
    rawWrite(dir, { payloads, records: Math.floor((ctx.options.maxBytes + WARMUP_MAX_BYTES) / 1024), syncEvery: null, maxSeconds: 3 });
  } finally {
    ctx.removeScratch(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// Appends

/**
 * Preallocated so the timed loop measures the log, not the generator. Arrays are reused across
 * appends, which is safe because the interface hands the records to the log only for the duration
 * of the call.
 */
function makeBatches(c: AppendCase): ProducerRecord[][] {
  const target = Math.max(65_536, c.batch * c.concurrency * 4);
  const nBatches = Math.max(c.concurrency * 4, Math.ceil(target / c.batch));
  const payloads = makePayloads(c.size, nBatches * c.batch);
  const keys = c.keyed ? Array.from({ length: 4096 }, (_, i) => Buffer.from(`user-${i.toString(16).padStart(8, '0')}`)) : null;
  const batches: ProducerRecord[][] = [];
  let i = 0;
  for (let b = 0; b < nBatches; b++) {
    const batch: ProducerRecord[] = new Array(c.batch);
    for (let r = 0; r < c.batch; r++, i++) batch[r] = { key: keys ? keys[i % keys.length]! : null, value: payloads[i]! };
    batches.push(batch);
  }
  return batches;
}

async function runAppend(ctx: BenchContext, c: AppendCase, openLog: OpenLog | null): Promise<Record<string, unknown>> {
  const { options } = ctx;
  const duration = Math.min(options.durationS, c.maxSeconds ?? Infinity);
  const limit = Math.floor(options.maxBytes / c.size);
  const row: Record<string, unknown> = {
    case: c.name,
    record_bytes: c.size,
    batch: c.batch,
    partitions: c.partitions,
    fsync: c.fsync,
    concurrency: c.concurrency,
    keyed: c.keyed,
  };

  let ours: AppendRun | null = null;
  if (openLog) {
    const batches = makeBatches(c);
    const dir = ctx.scratchDir(c.name);
    let log: Log | null = null;
    try {
      log = await openLog(dir);
      await log.createTopic(TOPIC, { partitions: c.partitions, fsync: c.fsync });
      ctx.progress(`${c.name}: warmup ${options.warmupS}s`);
      const warm = await appendFor(log, TOPIC, batches, { size: c.size, concurrency: c.concurrency, seconds: options.warmupS, limit: Math.min(limit, WARMUP_MAX_BYTES / c.size) });
      ctx.progress(`${c.name}: timed ≤${duration}s or ${limit} records`);
      ours = await appendFor(log, TOPIC, batches, { size: c.size, concurrency: c.concurrency, seconds: duration, limit });
      const described = await log.describeTopic(TOPIC);
      const stored = described.partitions.reduce((sum, p) => sum + Number(p.endOffset - p.startOffset), 0);
      row.verified = stored === warm.records + ours.records;
      if (!row.verified) row.verify_detail = { stored, appended: warm.records + ours.records };
      const used = described.partitions.filter((p) => p.endOffset > 0n).length;
      if (c.partitions > 1) row.partitions_used = used;
    } finally {
      await log?.close().catch((err: unknown) => ctx.progress(`${c.name}: close failed: ${errorMessage(err)}`));
      ctx.removeScratch(dir);
    }
    row.records = ours.records;
    row.seconds = round(ours.seconds, 3);
    row.records_per_s = round(rate(ours.records, ours.seconds));
    row.mb_per_s = round(mibPerS(ours.bytes, ours.seconds), 1);
  } else {
    row.records_per_s = null;
  }

  // The baseline writes as many records as we did, so both runs push the same bytes through the
  // page cache; without an engine it gets the same time budget instead.
  const payloads = makePayloads(c.size, 65_536);
  const count = ours ? Math.max(ours.records, 1) : limit;
  const physical = runRawWrite(ctx, c.name, payloads, count, null, duration);
  let primary = physical;
  let primaryName = 'raw-write-1MiB';
  if (c.fsync === 'always') {
    // One fdatasync per batch, or per batch*concurrency records: what a perfect group commit of
    // the same appends would reach.
    const group = c.batch * c.concurrency;
    primary = runRawWrite(ctx, c.name, payloads, count, group, duration);
    primaryName = `raw-fdatasync-per-${group}rec`;
    row.physical_baseline = 'raw-write-1MiB';
    row.physical_records_per_s = round(rate(physical.records, physical.seconds));
    row.physical_mb_per_s = round(mibPerS(physical.payloadBytes, physical.seconds), 1);
  }
  const baselineRate = rate(primary.records, primary.seconds);
  row.baseline = primaryName;
  row.baseline_records_per_s = round(baselineRate);
  row.baseline_mb_per_s = round(mibPerS(primary.payloadBytes, primary.seconds), 1);
  if (ours) {
    row.ratio = round(rate(ours.records, ours.seconds) / baselineRate, 3);
    if (c.fsync === 'always') {
      row.physical_ratio = round(rate(ours.records, ours.seconds) / rate(physical.records, physical.seconds), 3);
    }
  }
  applyTarget(row, c.target);
  return row;
}

function runRawWrite(
  ctx: BenchContext,
  name: string,
  payloads: Buffer[],
  records: number,
  syncEvery: number | null,
  seconds: number,
): RawResult {
  const dir = ctx.scratchDir(`${name}-raw`);
  try {
    // A short untimed pass first, for the same reason our cases get a warmup.
    rmSync(rawWrite(dir, { payloads, records: Math.min(records, 50_000), syncEvery, maxSeconds: 0.2 }).path);
    ctx.progress(`${name}: baseline ${syncEvery === null ? 'raw write' : `fdatasync per ${syncEvery}`}`);
    const first = rawWrite(dir, { payloads, records, syncEvery, maxSeconds: seconds });
    rmSync(first.path);
    if (syncEvery !== null) return first;
    // Unsynced runs still swing now and then (page cache growth on this VM); the better of two is
    // closer to the limit the baseline stands for, and costs well under a second.
    const second = rawWrite(dir, { payloads, records, syncEvery, maxSeconds: seconds });
    return rate(second.records, second.seconds) > rate(first.records, first.seconds) ? second : first;
  } finally {
    ctx.removeScratch(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// Reads

interface ReadRun {
  records: number;
  bytes: number;
  seconds: number;
}

/** One pass over every partition from its start, decoding every record it returns. */
async function readAll(log: Log, partitions: number): Promise<{ records: number; bytes: number }> {
  let records = 0;
  let bytes = 0;
  for (let p = 0; p < partitions; p++) {
    let offset = 0n;
    for (;;) {
      const res = await log.read(TOPIC, p, offset, { maxBytes: MiB });
      const recs = res.records;
      for (let i = 0; i < recs.length; i++) {
        // Touching the value keeps a lazy decoder honest: the record must really be there.
        bytes += recs[i]!.value?.length ?? 0;
      }
      records += recs.length;
      if (res.nextOffset >= res.highWatermark) break;
      if (recs.length === 0 && res.nextOffset === offset) {
        throw new Error(`read made no progress at ${TOPIC}-${p}@${offset} (hw ${res.highWatermark})`);
      }
      offset = res.nextOffset;
    }
  }
  return { records, bytes };
}

/** The topic's files, wherever the engine keeps them: any path with a component named for it. */
function topicFiles(dataDir: string): string[] {
  const all = listFiles(dataDir);
  const mine = all.filter((f) =>
    relative(dataDir, f.path)
      .split(sep)
      .slice(0, -1)
      .some((part) => part === TOPIC || part.startsWith(`${TOPIC}-`) || part.startsWith(`${TOPIC}.`)),
  );
  return (mine.length > 0 ? mine : all).map((f) => f.path);
}

async function runRead(ctx: BenchContext, c: ReadCase, openLog: OpenLog | null): Promise<Record<string, unknown>> {
  const { options } = ctx;
  const limit = Math.min(READ_MAX_RECORDS, Math.floor(options.maxBytes / c.size));
  const row: Record<string, unknown> = { case: c.name, record_bytes: c.size, partitions: c.partitions, max_bytes: MiB };
  const dir = ctx.scratchDir(c.name);
  let log: Log | null = null;
  try {
    let files: string[];
    let records: number;
    let payloadBytes: number;
    if (openLog) {
      log = await openLog(dir);
      await log.createTopic(TOPIC, { partitions: c.partitions, fsync: 'never' });
      const batches = makeBatches({ ...appendCase(c.size === 100 ? '100B' : '1KiB', 1000, 'never', c.partitions) });
      ctx.progress(`${c.name}: populating ≤${options.durationS}s or ${limit} records`);
      const filled = await appendFor(log, TOPIC, batches, { size: c.size, concurrency: 1, seconds: options.durationS, limit });
      records = filled.records;
      payloadBytes = filled.bytes;

      ctx.progress(`${c.name}: warmup`);
      const warmDeadline = deadlineAfter(options.warmupS);
      while (nowNs() < warmDeadline) {
        const res = await log.read(TOPIC, 0, 0n, { maxBytes: MiB });
        if (res.records.length === 0) break;
      }

      // Repeated passes until a second has gone by, so small data sets still give a stable rate.
      ctx.progress(`${c.name}: timed read of ${records} records`);
      const ours: ReadRun = { records: 0, bytes: 0, seconds: 0 };
      const start = nowNs();
      let passes = 0;
      do {
        const pass = await readAll(log, c.partitions);
        if (pass.records !== records) {
          row.verified = false;
          row.verify_detail = { expected: records, read: pass.records };
        }
        ours.records += pass.records;
        ours.bytes += pass.bytes;
        passes++;
      } while (secondsSince(start) < 1 && passes < 50);
      ours.seconds = secondsSince(start);
      if (row.verified === undefined) row.verified = true;
      row.records = records;
      row.passes = passes;
      row.seconds = round(ours.seconds, 3);
      row.records_per_s = round(rate(ours.records, ours.seconds));
      row.mb_per_s = round(mibPerS(ours.bytes, ours.seconds), 1);
      files = topicFiles(dir);
    } else {
      row.records_per_s = null;
      const payloads = makePayloads(c.size, 65_536);
      const written = rawWrite(dir, { payloads, records: limit, syncEvery: null, maxSeconds: options.durationS });
      records = written.records;
      payloadBytes = written.payloadBytes;
      files = listFiles(dir).map((f) => f.path);
    }

    const diskBytes = listFiles(dir)
      .filter((f) => files.includes(f.path))
      .reduce((sum, f) => sum + f.size, 0);
    row.disk_bytes_per_record = records > 0 ? round(diskBytes / records, 1) : null;
    row.baseline_files = files.length;
    row.baseline_files_example = files.slice(0, 2).map((f) => basename(f));

    ctx.progress(`${c.name}: baseline raw read of ${files.length} files`);
    rawRead(files);
    let rawSeconds = 0;
    let rawPasses = 0;
    const rawStart = nowNs();
    do {
      rawRead(files);
      rawPasses++;
    } while ((rawSeconds = secondsSince(rawStart)) < 0.5 && rawPasses < 50);
    const baselineRate = rate(records * rawPasses, rawSeconds);
    row.baseline = 'raw-read-1MiB';
    row.baseline_records_per_s = round(baselineRate);
    row.baseline_mb_per_s = round(mibPerS(payloadBytes * rawPasses, rawSeconds), 1);
    row.baseline_file_mb_per_s = round(mibPerS(diskBytes * rawPasses, rawSeconds), 1);
    if (typeof row.records_per_s === 'number') row.ratio = round(row.records_per_s / baselineRate, 3);
  } finally {
    await log?.close().catch((err: unknown) => ctx.progress(`${c.name}: close failed: ${errorMessage(err)}`));
    ctx.removeScratch(dir);
  }
  applyTarget(row, c.target);
  return row;
}

function applyTarget(row: Record<string, unknown>, target: Target | undefined): void {
  if (!target) return;
  row.target = target;
  const value = row[target.metric];
  row.meets_target = typeof value === 'number' ? value >= target.min : null;
}

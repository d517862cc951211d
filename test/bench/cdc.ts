// The postgres-cdc source against the physical limit of logical decoding, on a private Postgres
// cluster (test/support/postgres-cluster.ts):
//
// - cdc-drain: a backlog of BENCH_CDC_CHANGES (default 1,000,000) changes, an insert/update/delete
//   mix (6:3:1) on a table of ~200-byte rows in transactions of 1000 changes, drained by sluice
//   (a real Runtime on a real embedded log, fsync always) into the topic, against pg_recvlogical
//   draining the same backlog (its own slot, same publication, pgoutput protocol 1) to /dev/null.
//   Both slots exist before the backlog is written, so both decode exactly the same WAL. The line
//   also gives the CPU time the sluice process used while draining (all threads: the log's fsyncs
//   too), which moves less than the rate when other work competes for the two cores.
// - cdc-latency-5k: with sluice streaming, 50-row inserts every 10 ms (5,000 changes/s) for
//   --duration seconds (at least 10); latency is from sending each committing statement to the
//   record being readable in the log, per record.
//
// Knobs (environment): BENCH_CDC_CHANGES (a multiple of 1000), BENCH_CDC_SCHEMA_HEADER=0 (events
// without the sluice.cdc.schema header), BENCH_CDC_FSYNC=interval|never (the topic's fsync policy;
// default always), BENCH_CDC_MARK=1 (print the drain window in process.hrtime microseconds, to cut
// a --cpu-prof profile down to it).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { registry } from '../../connectors/index.ts';
import type { Logger } from '../../core/connector.ts';
import { openLog } from '../../core/log/embedded-log.ts';
import { Runtime } from '../../core/runtime/runtime.ts';
import { formatProblem, validateSpecTexts } from '../../core/spec/index.ts';
import { postgresBinDir, startPostgresCluster, type PostgresCluster } from '../support/postgres-cluster.ts';
import { type BenchContext, errorMessage, nowNs, rate, round, secondsSince } from './common.ts';

const execFileAsync = promisify(execFile);
const TOPIC = 'cdc.public.bench_t';
const DRAIN_TARGET = { events_per_s: 100_000, ratio: 0.6 };
const LATENCY_TARGET = { p99_ms: 50 };

function caseNames(changes: number): string[] {
  return [`cdc-drain-${label(changes)}`, 'cdc-latency-5k'];
}

function label(n: number): string {
  return n >= 1_000_000 && n % 1_000_000 === 0 ? `${n / 1_000_000}M` : n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

export async function run(ctx: BenchContext): Promise<void> {
  const changes = Number(process.env['BENCH_CDC_CHANGES'] ?? 1_000_000);
  if (!Number.isSafeInteger(changes) || changes < 1000 || changes % 1000 !== 0) throw new Error(`BENCH_CDC_CHANGES must be a multiple of 1000, got ${process.env['BENCH_CDC_CHANGES']}`);
  const [drainCase, latencyCase] = caseNames(changes) as [string, string];
  if (ctx.options.listOnly) {
    for (const name of [drainCase, latencyCase]) process.stdout.write(`${name}\n`);
    return;
  }
  if (!ctx.selected(drainCase) && !ctx.selected(latencyCase)) return;
  ctx.progress('starting a private Postgres cluster (wal_level=logical)');
  let cluster: PostgresCluster;
  try {
    cluster = await startPostgresCluster({ max_wal_size: '8GB', checkpoint_timeout: '30min' });
  } catch (err) {
    ctx.emit({ case: drainCase, skipped: errorMessage(err) });
    return;
  }
  const dataDir = ctx.scratchDir('cdc-log');
  let runtime: Runtime | null = null;
  const log = await openLog(dataDir);
  try {
    await cluster.query('CREATE DATABASE bench');
    const url = cluster.url('bench');
    await cluster.query(
      `CREATE TABLE bench_t (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2) NOT NULL, status text NOT NULL, note text NOT NULL, created timestamptz NOT NULL);
       CREATE PUBLICATION bench_pub FOR TABLE bench_t;`,
      undefined,
      'bench',
    );
    // Each in its own transaction: a slot cannot be created in one that wrote.
    for (const slot of ['bench_sluice', 'bench_recv']) await cluster.query(`SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput')`, undefined, 'bench');
    ctx.progress(`writing a backlog of ${changes} changes (inserts, updates, deletes 6:3:1, 1000 per transaction)`);
    const genStart = nowNs();
    await writeBacklog(url, changes);
    const endLsn = (await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn', undefined, 'bench')).rows[0]!.lsn;
    ctx.progress(`backlog written in ${secondsSince(genStart).toFixed(1)}s, WAL end ${endLsn}`);

    // The physical limit: pg_recvlogical decoding the same WAL to /dev/null.
    ctx.progress('draining with pg_recvlogical');
    const recvStart = nowNs();
    await execFileAsync(
      join(postgresBinDir(), 'pg_recvlogical'),
      ['-h', cluster.host, '-p', String(cluster.port), '-U', 'postgres', '-d', 'bench', '--slot', 'bench_recv', '--start', '--no-loop', '--endpos', endLsn, '-o', 'proto_version=1', '-o', 'publication_names=bench_pub', '-f', '/dev/null'],
      { timeout: 600_000 },
    );
    const recvSeconds = secondsSince(recvStart);

    ctx.progress('draining with sluice');
    const spec = [
      'name: bench-cdc',
      ...(process.env['BENCH_CDC_FSYNC'] ? ['topics:', `  - { name: ${TOPIC}, fsync: ${process.env['BENCH_CDC_FSYNC']} }`] : []),
      'sources:',
      '  - name: pg',
      '    connector: postgres-cdc',
      "    topic: '{prefix}.{schema}.{table}'",
      '    config:',
      `      url: ${url}`,
      '      slot: bench_sluice',
      '      publication: bench_pub',
      '      snapshot: never',
      '      batch_size: 10000',
      `      schema_header: ${process.env['BENCH_CDC_SCHEMA_HEADER'] !== '0'}`,
    ].join('\n');
    const { problems, specs } = validateSpecTexts([{ file: 'bench-cdc.yaml', text: spec }], { registry });
    if (problems.length > 0) throw new Error(problems.map(formatProblem).join('\n'));
    const drainStart = nowNs();
    const cpuStart = process.cpuUsage();
    if (process.env['BENCH_CDC_MARK']) ctx.progress(`drain-start-us ${drainStart / 1000n}`);
    runtime = await Runtime.start(specs, { log, registry, logger: quietLogger(ctx), statusIntervalMs: 0 });
    const total = await waitForRecords(log, changes, 30_000);
    const sluiceSeconds = secondsSince(drainStart);
    const cpu = process.cpuUsage(cpuStart);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    if (process.env['BENCH_CDC_MARK']) ctx.progress(`drain-end-us ${nowNs() / 1000n}`);
    const sluiceRate = rate(total, sluiceSeconds);
    const recvRate = rate(changes, recvSeconds);
    if (ctx.selected(drainCase)) {
      ctx.emit({
        case: drainCase,
        changes,
        schema_header: process.env['BENCH_CDC_SCHEMA_HEADER'] !== '0',
        fsync: process.env['BENCH_CDC_FSYNC'] ?? 'always',
        events_per_s: round(sluiceRate),
        seconds: round(sluiceSeconds, 2),
        cpu_seconds: round(cpuSeconds, 2),
        cpu_us_per_event: round((cpuSeconds * 1e6) / total, 2),
        baseline: 'pg_recvlogical --plugin=pgoutput proto_version=1 to /dev/null',
        baseline_events_per_s: round(recvRate),
        baseline_seconds: round(recvSeconds, 2),
        ratio: round(sluiceRate / recvRate, 3),
        ratio_means: 'sluice events durable in the log per second divided by pg_recvlogical changes decoded per second',
        target: DRAIN_TARGET,
        meets_target: sluiceRate >= DRAIN_TARGET.events_per_s && sluiceRate / recvRate >= DRAIN_TARGET.ratio,
      });
    }

    if (ctx.selected(latencyCase)) {
      ctx.progress('latency at 5,000 changes/s');
      const seconds = Math.max(10, ctx.options.durationS);
      const result = await measureLatency(url, log, changes, seconds);
      ctx.emit({
        case: latencyCase,
        target_changes_per_s: 5000,
        fsync: process.env['BENCH_CDC_FSYNC'] ?? 'always',
        changes_per_s: round(result.rate),
        seconds,
        records: result.latencies.length,
        p50_ms: round(percentile(result.latencies, 0.5), 2),
        p99_ms: round(percentile(result.latencies, 0.99), 2),
        max_ms: round(percentile(result.latencies, 1), 2),
        measured: 'from sending the committing INSERT to the record being readable in the log',
        target: LATENCY_TARGET,
        meets_target: percentile(result.latencies, 0.99) < LATENCY_TARGET.p99_ms,
      });
    }
  } catch (err) {
    ctx.progress(`cdc: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    ctx.emit({ case: drainCase, error: errorMessage(err) });
  } finally {
    await runtime?.stop();
    await log.close();
    ctx.removeScratch(dataDir);
    await cluster.destroy();
  }
}

/**
 * Inserts, updates and deletes in a 6:3:1 mix, 1000 changes per transaction: 600 new rows, and 300
 * updates and 100 deletes of the rows the previous transaction inserted (the first inserts 1000).
 */
async function writeBacklog(url: string, changes: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const insert = async (from: number, count: number): Promise<void> => {
    await client.query(
      `INSERT INTO bench_t SELECT g, 'customer-' || (g % 10000), (g % 100000) / 100.0, 'new', repeat(md5(g::text), 3) || ' some note', now()
         FROM generate_series($1::bigint, $2::bigint) g`,
      [from, from + count - 1],
    );
  };
  try {
    await insert(1, 1000);
    let prev = 1;
    let next = 1001;
    for (let t = 1; t < changes / 1000; t++) {
      await client.query('BEGIN');
      await insert(next, 600);
      await client.query("UPDATE bench_t SET status = 'paid', amount = amount + 1 WHERE id >= $1 AND id < $2", [prev, prev + 300]);
      await client.query('DELETE FROM bench_t WHERE id >= $1 AND id < $2', [prev + 300, prev + 400]);
      await client.query('COMMIT');
      prev = next;
      next += 600;
    }
  } finally {
    await client.end();
  }
}

async function waitForRecords(log: Awaited<ReturnType<typeof openLog>>, want: number, stallMs: number): Promise<number> {
  let last = -1;
  let movedAt = Date.now();
  for (;;) {
    let total = 0;
    if ((await log.listTopics()).includes(TOPIC)) {
      for (const p of (await log.describeTopic(TOPIC)).partitions) total += Number(p.endOffset - p.startOffset);
    }
    if (total >= want) return total;
    if (total !== last) {
      last = total;
      movedAt = Date.now();
    } else if (Date.now() - movedAt > stallMs) {
      throw new Error(`only ${total} of ${want} events reached the log; none for ${stallMs / 1000}s`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** 50-row inserts every 10 ms; a reader tails the topic and notes when each row became readable. */
async function measureLatency(url: string, log: Awaited<ReturnType<typeof openLog>>, firstId: number, seconds: number): Promise<{ latencies: number[]; rate: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  let offset = (await log.describeTopic(TOPIC)).partitions[0]!.endOffset;
  let writing = true;
  const reader = (async () => {
    while (writing || latencies.length < sentAt.size * 50) {
      const result = await log.read(TOPIC, 0, offset, { maxWaitMs: 50 });
      const now = performance.now();
      for (const r of result.records) {
        const id = (JSON.parse(r.key!.toString('utf8')) as { id: number }).id;
        const tx = Math.floor((id - 1) / 50) * 50 + 1;
        const sent = sentAt.get(tx);
        if (sent !== undefined) latencies.push(now - sent);
      }
      offset = result.nextOffset;
      if (!writing && result.records.length === 0) break;
    }
  })();
  const base = Math.ceil((firstId * 10 + 1) / 50) * 50 + 1;
  const start = performance.now();
  let n = 0;
  try {
    while (performance.now() - start < seconds * 1000) {
      const due = start + n * 10;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const first = base + n * 50;
      sentAt.set(first, performance.now());
      await client.query(
        `INSERT INTO bench_t SELECT g, 'customer-' || (g % 10000), 1.00, 'new', repeat(md5(g::text), 3) || ' some note', now() FROM generate_series($1::bigint, $2::bigint) g`,
        [first, first + 49],
      );
      n++;
    }
  } finally {
    await client.end();
  }
  const elapsed = (performance.now() - start) / 1000;
  // The last rows need a moment to arrive.
  await new Promise((r) => setTimeout(r, 1000));
  writing = false;
  await reader;
  return { latencies: latencies.sort((a, b) => a - b), rate: (n * 50) / elapsed };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** The runtime's logger for a bench: warnings and errors to the progress stream, the rest dropped. */
function quietLogger(ctx: BenchContext): Logger {
  const drop = (): void => {};
  const say =
    (level: string) =>
    (fields: object | string, message?: string): void =>
      ctx.progress(`${level}: ${typeof fields === 'string' ? fields : `${message ?? ''} ${JSON.stringify(fields, (_k, v: unknown) => (v instanceof Error ? v.message : v))}`}`);
  const logger: Logger = { trace: drop, debug: drop, info: drop, warn: say('warn'), error: say('error'), child: () => logger };
  return logger;
}

// The postgres and mysql sinks' throughput: rows/s upserted from a topic of 1M upsert records into
// a table, through a real Runtime reading an embedded log (the sink's consumer group, its polls,
// puts and commits, exactly as `sluice run` does), divided by the fastest raw driver path on the
// same rows in the same run: mysql2 multi-row upserts in batches of 1000 (one connection, and four
// in parallel), and Postgres COPY into the same table with its primary key (plus, for reference,
// Postgres' own fastest upsert path on the same rows). Baseline data is encoded before the clock
// starts, so the baselines time the driver and the server only. The baseline a ratio divides by
// is measured again right before each case; the `*_records_per_s` fields are from the start of
// the run, for reference.
//
// The topic is written before the clock starts; the clock stops when the sink's offsets table
// (updated in the same transaction as the rows) covers every partition's end. BENCH_SINK_ROWS
// scales the run down (default 1000000).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import mysql2 from 'mysql2/promise';
import pg from 'pg';
import { registry } from '../../connectors/index.ts';
import { copyFrom, encodeCopyRows } from '../../connectors/postgres/copy.ts';
import type { Logger } from '../../core/connector.ts';
import { openLog } from '../../core/log/embedded-log.ts';
import type { ProducerRecord } from '../../core/log/types.ts';
import { Runtime } from '../../core/runtime/runtime.ts';
import { validateSpecTexts } from '../../core/spec/index.ts';
import { type BenchContext, errorMessage, nowNs, rate, round, secondsSince } from './common.ts';

export type Engine = 'postgres' | 'mysql';

const PG_URL = process.env['BENCH_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const MYSQL_URL = process.env['BENCH_MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/test';
const TOPIC = 'bench.upserts';
const TABLE = 'bench_sink_upserts';
const OFFSETS = 'bench_sink_offsets';

interface Case {
  name: string;
  partitions: number;
  /** Sink tasks (consumer group members); each writes its partitions. */
  tasks: number;
  /** Connections per task: one task writes the partitions of a batch in parallel on these. */
  connections: number;
  /** Postgres: rows per table and batch from which COPY + merge is used. */
  copyThreshold?: number;
}

const CASES: Record<Engine, Case[]> = {
  mysql: [
    { name: 'sink-mysql-upsert-p4-t1-c4', partitions: 4, tasks: 1, connections: 4 },
    { name: 'sink-mysql-upsert-p4-t2-c2', partitions: 4, tasks: 2, connections: 2 },
    { name: 'sink-mysql-upsert-p4-t4-c1', partitions: 4, tasks: 4, connections: 1 },
  ],
  postgres: [
    { name: 'sink-postgres-upsert-p4-t1-c4', partitions: 4, tasks: 1, connections: 4, copyThreshold: 1000 },
    { name: 'sink-postgres-upsert-p4-t2-c2', partitions: 4, tasks: 2, connections: 2, copyThreshold: 1000 },
    { name: 'sink-postgres-upsert-p4-t4-c1', partitions: 4, tasks: 4, connections: 1, copyThreshold: 1000 },
  ],
};

/** The targets of the issue: a ratio to the raw driver, and for MySQL an absolute rate. */
const TARGETS: Record<Engine, { ratio: number; records_per_s?: number }> = {
  mysql: { ratio: 0.6, records_per_s: 100_000 },
  postgres: { ratio: 0.5 },
};

interface BenchRow {
  id: number;
  name: string;
  amount: string;
  qty: number;
  note: string;
  ts: string;
}

function makeRow(i: number): BenchRow {
  return {
    id: i,
    name: `customer-${i}`,
    amount: `${(i % 100000) / 100}`,
    qty: i % 1000,
    note: `note ${i} ${'x'.repeat(40)}`,
    ts: `2024-05-01T10:${String(Math.floor(i / 60) % 60).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}.123456Z`,
  };
}

function silentLogger(): Logger {
  const noop = (): void => {};
  const logger: Logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, child: () => logger };
  return logger;
}

/** A connection to the target for setup and baselines. */
interface Target {
  exec(sql: string): Promise<void>;
  storedTotal(): Promise<number>;
  close(): Promise<void>;
}

async function target(engine: Engine): Promise<Target> {
  if (engine === 'postgres') {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    return {
      exec: async (sql) => void (await client.query(sql)),
      storedTotal: async () => Number((await client.query<{ n: string | null }>(`SELECT sum(next_offset) AS n FROM ${OFFSETS}`)).rows[0]?.n ?? 0),
      close: () => client.end(),
    };
  }
  const connection = await mysql2.createConnection({ uri: MYSQL_URL });
  return {
    exec: async (sql) => void (await connection.query(sql)),
    storedTotal: async () => {
      const [rows] = await connection.query<mysql2.RowDataPacket[]>(`SELECT sum(next_offset) AS n FROM ${OFFSETS}`);
      return Number(rows[0]?.['n'] ?? 0);
    },
    close: () => connection.end(),
  };
}

async function resetTable(t: Target, engine: Engine): Promise<void> {
  await t.exec(`DROP TABLE IF EXISTS ${TABLE}`);
  await t.exec(`DROP TABLE IF EXISTS ${OFFSETS}`);
  await t.exec(
    engine === 'postgres'
      ? `CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, name varchar(64), amount numeric(12,2), qty integer, note text, ts timestamptz)`
      : `CREATE TABLE ${TABLE} (id BIGINT PRIMARY KEY, name VARCHAR(64), amount DECIMAL(12,2), qty INT, note LONGTEXT, ts DATETIME(6)) ENGINE=InnoDB`,
  );
}

/** Fills the topic with `count` upsert records keyed {id}; not timed. */
async function fillTopic(dataDir: string, partitions: number, count: number): Promise<void> {
  const log = await openLog(dataDir, { maintenanceIntervalMs: 0 });
  try {
    await log.createTopic(TOPIC, { partitions, fsync: 'never' }, { ifNotExists: true });
    const batch = 10_000;
    for (let start = 0; start < count; start += batch) {
      const records: ProducerRecord[] = [];
      for (let i = start; i < Math.min(count, start + batch); i++) {
        records.push({ key: Buffer.from(`{"id":${i}}`), value: Buffer.from(JSON.stringify(makeRow(i))) });
      }
      await log.append(TOPIC, records);
    }
  } finally {
    await log.close();
  }
}

/** The sink in a Runtime, from start until the offsets table covers the topic. */
async function runSink(ctx: BenchContext, engine: Engine, c: Case, dataDir: string, count: number): Promise<number> {
  const t = await target(engine);
  try {
    await resetTable(t, engine);
    const url = engine === 'postgres' ? PG_URL : MYSQL_URL;
    const yaml = `
name: bench
topics: [{ name: ${TOPIC}, partitions: ${c.partitions} }]
sinks:
  - name: sink
    connector: ${engine}
    topics: [${TOPIC}]
    tasks: ${c.tasks}
    config:
      url: "${url}"
      mode: upsert
      table: ${TABLE}
      offsets_table: ${OFFSETS}
      connections: ${c.connections}
${c.copyThreshold !== undefined ? `      copy_threshold: ${c.copyThreshold}\n` : ''}`;
    const { problems, specs } = validateSpecTexts([{ file: join(dataDir, 'bench.yaml'), text: yaml }], { registry, env: {} });
    if (problems.length > 0) throw new Error(`bench spec: ${JSON.stringify(problems)}`);
    const log = await openLog(dataDir, { maintenanceIntervalMs: 0 });
    const started = nowNs();
    const runtime = await Runtime.start(specs, { log, registry, logger: silentLogger(), statusIntervalMs: 0 });
    try {
      for (;;) {
        const status = runtime.status('sink');
        if (status.state === 'FAILED' || status.tasks.some((task) => task.state === 'FAILED')) {
          throw new Error(`sink failed: ${status.error?.message ?? status.tasks.find((task) => task.error)?.error?.message}`);
        }
        if ((await t.storedTotal().catch(() => 0)) >= count) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const seconds = secondsSince(started);
      ctx.progress(`${c.name}: ${count} rows in ${seconds.toFixed(2)}s`);
      return seconds;
    } finally {
      await runtime.stop();
      await log.close();
    }
  } finally {
    await t.close();
  }
}

/** The bench rows as parameter arrays, built before any clock starts. */
function paramRows(count: number, timestamp: (iso: string) => string): unknown[][] {
  const rows: unknown[][] = new Array(count);
  for (let i = 0; i < count; i++) {
    const r = makeRow(i);
    rows[i] = [r.id, r.name, r.amount, r.qty, r.note, timestamp(r.ts)];
  }
  return rows;
}

/**
 * mysql2 multi-row upserts of 1000 rows, prepared (the faster of mysql2's two paths), on
 * `connections` connections, each statement its own transaction (autocommit). The parameters are
 * built before the clock starts; the clock covers mysql2 and the server only.
 */
async function mysqlBaseline(count: number, connections: number): Promise<number> {
  const t = await target('mysql');
  await resetTable(t, 'mysql');
  await t.close();
  const chunks: unknown[][] = [];
  const rows = paramRows(count, (iso) => iso.replace('T', ' ').replace('Z', ''));
  for (let start = 0; start < count; start += 1000) chunks.push(rows.slice(start, start + 1000).flat());
  const conns = await Promise.all(Array.from({ length: connections }, () => mysql2.createConnection({ uri: MYSQL_URL })));
  const statement = (n: number): string =>
    `INSERT INTO ${TABLE} (id, name, amount, qty, note, ts) VALUES ${new Array(n).fill('(?, ?, ?, ?, ?, ?)').join(', ')} ON DUPLICATE KEY UPDATE name = VALUES(name), amount = VALUES(amount), qty = VALUES(qty), note = VALUES(note), ts = VALUES(ts)`;
  const started = nowNs();
  let next = 0;
  await Promise.all(
    conns.map(async (c) => {
      for (let i = next++; i < chunks.length; i = next++) {
        const params = chunks[i]!;
        await c.execute(statement(params.length / 6), params as never[]);
      }
    }),
  );
  const seconds = secondsSince(started);
  await Promise.all(conns.map((c) => c.end()));
  return seconds;
}

/** The rows as COPY text in buffers of `rowsPerBuffer` rows, encoded before any clock starts. */
function copyBuffers(count: number, rowsPerBuffer: number): Buffer[] {
  const rows = paramRows(count, (iso) => iso);
  const out: Buffer[] = [];
  for (let start = 0; start < count; start += rowsPerBuffer) out.push(encodeCopyRows(rows.slice(start, start + rowsPerBuffer) as never));
  return out;
}

/** COPY of the same rows into the same table (primary key, logged), in one stream of pre-encoded data. */
async function postgresCopyBaseline(count: number): Promise<number> {
  const t = await target('postgres');
  await resetTable(t, 'postgres');
  await t.close();
  const buffers = copyBuffers(count, 50_000);
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  const started = nowNs();
  for (const data of buffers) await copyFrom(client, `COPY ${TABLE} (id, name, amount, qty, note, ts) FROM STDIN`, data);
  const seconds = secondsSince(started);
  await client.end();
  return seconds;
}

/**
 * Postgres' own fastest upsert of the same rows, for reference: per transaction of 5000 rows, COPY
 * into a temporary table and INSERT ... SELECT ... ON CONFLICT DO UPDATE, on four connections.
 * This is what the sink does for large batches, without decoding records.
 */
async function postgresUpsertBaseline(count: number): Promise<number> {
  const t = await target('postgres');
  await resetTable(t, 'postgres');
  await t.close();
  const buffers = copyBuffers(count, 5000);
  const clients = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`CREATE TEMP TABLE bench_stage ON COMMIT DELETE ROWS AS SELECT * FROM ${TABLE} WITH NO DATA`);
      return c;
    }),
  );
  const started = nowNs();
  let next = 0;
  await Promise.all(
    clients.map(async (c) => {
      for (let i = next++; i < buffers.length; i = next++) {
        await c.query('BEGIN');
        await copyFrom(c, 'COPY bench_stage (id, name, amount, qty, note, ts) FROM STDIN', buffers[i]!);
        await c.query(
          `INSERT INTO ${TABLE} SELECT * FROM bench_stage ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, amount = EXCLUDED.amount, qty = EXCLUDED.qty, note = EXCLUDED.note, ts = EXCLUDED.ts`,
        );
        await c.query('COMMIT');
      }
    }),
  );
  const seconds = secondsSince(started);
  await Promise.all(clients.map((c) => c.end()));
  return seconds;
}

export async function runSinkBench(ctx: BenchContext, engine: Engine): Promise<void> {
  const count = Number(process.env['BENCH_SINK_ROWS'] ?? 1_000_000);
  const cases = CASES[engine].filter((c) => ctx.selected(c.name));
  if (ctx.options.listOnly) {
    for (const c of cases) ctx.emit({ case: c.name });
    return;
  }
  // The baselines first: they say what this machine's database can do today.
  const baselines: Array<{ name: string; seconds: number }> = [];
  try {
    if (engine === 'mysql') {
      for (const connections of [1, 4]) {
        const seconds = await mysqlBaseline(count, connections);
        baselines.push({ name: `mysql2-upsert-b1000-c${connections}`, seconds });
        ctx.progress(`mysql2 baseline on ${connections} connection(s): ${round(rate(count, seconds))} rows/s`);
      }
    } else {
      const copy = await postgresCopyBaseline(count);
      baselines.push({ name: 'pg-copy-c1', seconds: copy });
      ctx.progress(`COPY baseline: ${round(rate(count, copy))} rows/s`);
      const upsert = await postgresUpsertBaseline(count);
      baselines.push({ name: 'pg-copy-merge-upsert-b5000-c4', seconds: upsert });
      ctx.progress(`raw upsert (COPY + INSERT ON CONFLICT) reference: ${round(rate(count, upsert))} rows/s`);
    }
  } catch (err) {
    ctx.emit({ case: `sink-${engine}`, skipped: `the ${engine} target is not reachable: ${errorMessage(err)}` });
    return;
  }
  if (ctx.options.baselinesOnly) {
    for (const b of baselines) ctx.emit({ case: b.name, records: count, seconds: round(b.seconds, 3), records_per_s: round(rate(count, b.seconds)) });
    return;
  }

  for (const c of cases) {
    const dataDir = ctx.scratchDir(c.name);
    try {
      await fillTopic(dataDir, c.partitions, count);
      // The baseline with as many connections as the case writes on, so parallelism is not counted
      // as speed, measured again right before the case: other work on a shared machine moves both
      // numbers by up to 2x within a minute, which a baseline from the start of the run would miss.
      const parallel = c.tasks * c.connections > 1;
      const name = engine === 'mysql' ? `mysql2-upsert-b1000-c${parallel ? 4 : 1}` : 'pg-copy-c1';
      const baseline = { name, seconds: engine === 'mysql' ? await mysqlBaseline(count, parallel ? 4 : 1) : await postgresCopyBaseline(count) };
      ctx.progress(`${c.name}: baseline ${name} right before it: ${round(rate(count, baseline.seconds))} rows/s`);
      const cpuBefore = process.cpuUsage();
      const seconds = await runSink(ctx, engine, c, dataDir, count);
      const cpu = process.cpuUsage(cpuBefore);
      const ours = rate(count, seconds);
      const theirs = rate(count, baseline.seconds);
      const row: Record<string, unknown> = {
        case: c.name,
        target_engine: engine === 'mysql' ? 'MariaDB 10.11' : 'Postgres 15',
        path: 'Runtime + embedded log (consumer group polls, put, offsets table, group commit)',
        records: count,
        seconds: round(seconds, 3),
        records_per_s: round(ours),
        baseline: baseline.name,
        baseline_records_per_s: round(theirs),
        ratio: round(ours / theirs, 3),
        // CPU of this process (runtime, log, sink, driver) per row: the part that competes with the database for the cores.
        node_cpu_us_per_row: round((cpu.user + cpu.system) / count, 2),
      };
      for (const b of baselines) {
        row[`${b.name}_records_per_s`] = round(rate(count, b.seconds));
        row[`ratio_to_${b.name}`] = round(ours / rate(count, b.seconds), 3);
      }
      const target = TARGETS[engine];
      row.target = target;
      row.meets_target = ours / theirs >= target.ratio && (target.records_per_s === undefined || ours >= target.records_per_s);
      ctx.emit(row);
    } catch (err) {
      ctx.progress(`${c.name}: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      ctx.emit({ case: c.name, error: errorMessage(err) });
    } finally {
      if (existsSync(dataDir)) ctx.removeScratch(dataDir);
    }
  }
  const t = await target(engine);
  await t.exec(`DROP TABLE IF EXISTS ${TABLE}`);
  await t.exec(`DROP TABLE IF EXISTS ${OFFSETS}`);
  await t.close();
}

/**
 * The postgres-cdc source end to end: `sluice run` as a child process against a private Postgres
 * cluster (wal_level=logical), killed with SIGKILL mid-snapshot and mid-stream, restarted, and
 * checked against the table itself: for every key, the last event in the topic is the row as the
 * table holds it (or its deletion). Also the shipped pipelines/postgres-cdc.yaml, and the recovery
 * of an invalidated slot with `sluice cdc reset`.
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { openLog } from '../core/log/embedded-log.ts';
import { ROOT, cleanUp, completeLines, sluice, start, tempDir, waitFor, type Running } from './e2e-helpers.ts';
import { postgresClusterForFile } from './support/postgres-cluster.ts';

const local = postgresClusterForFile();
let dbSeq = 0;

/** Writers still running when a test failed: stopped before the next test. */
const writers = new Set<{ stop(): void; done: Promise<unknown> }>();

afterEach(async () => {
  for (const w of writers) w.stop();
  await Promise.all([...writers].map((w) => w.done.catch(() => undefined)));
  writers.clear();
  await cleanUp();
});

interface Db {
  name: string;
  url: string;
  sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<R[]>;
}

async function freshDatabase(label: string): Promise<Db> {
  const name = `e2e_${label}_${++dbSeq}`;
  await local.cluster.query(`CREATE DATABASE ${name}`);
  return { name, url: local.cluster.url(name), sql: async <R extends pg.QueryResultRow>(text: string, params?: unknown[]) => (await local.cluster.query<R>(text, params, name)).rows };
}

/** A spec with one postgres-cdc source writing `cdc.public.<table>`. */
function cdcSpec(dir: string, name: string, config: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.yaml`);
  const spec = {
    name,
    sources: [{ name: 'pg-in', connector: 'postgres-cdc', topic: '{prefix}.{schema}.{table}', config }],
  };
  writeFileSync(file, toYaml(spec));
  return file;
}

interface TopicRecord {
  partition: number;
  offset: bigint;
  key: Record<string, unknown> | null;
  value: { op: string; before: Record<string, unknown> | null; after: Record<string, unknown> | null; source: { snapshot: boolean } } | null;
}

/** Every record of a topic, partition by partition in offset order, read from the data directory (read-only: works while sluice runs). */
async function readTopic(dataDir: string, topic: string): Promise<TopicRecord[]> {
  if (!existsSync(path.join(dataDir, 'topics', topic))) return [];
  const log = await openLog(dataDir, { readOnly: true });
  try {
    if (!(await log.listTopics()).includes(topic)) return [];
    const out: TopicRecord[] = [];
    for (const p of (await log.describeTopic(topic)).partitions) {
      let offset = p.startOffset;
      while (offset < p.endOffset) {
        const result = await log.read(topic, p.partition, offset, { maxBytes: 4 << 20 });
        for (const r of result.records) {
          out.push({
            partition: r.partition,
            offset: r.offset,
            key: r.key ? (JSON.parse(r.key.toString('utf8')) as Record<string, unknown>) : null,
            value: r.value ? (JSON.parse(r.value.toString('utf8')) as TopicRecord['value']) : null,
          });
        }
        if (result.nextOffset <= offset) break;
        offset = result.nextOffset;
      }
    }
    return out;
  } finally {
    await log.close();
  }
}

/** Each key's last event, applied in order: the table as the topic says it is. */
function finalState(records: readonly TopicRecord[]): Map<string, Record<string, unknown>> {
  const state = new Map<string, Record<string, unknown>>();
  for (const r of records) {
    if (!r.value) continue;
    if (r.value.op === 't') {
      state.clear();
      continue;
    }
    const id = JSON.stringify(r.key);
    if (r.value.op === 'd') state.delete(id);
    else state.set(id, r.value.after!);
  }
  return state;
}

async function tableState(db: Db, table: string): Promise<Map<string, Record<string, unknown>>> {
  const rows = await db.sql<Record<string, unknown>>(`SELECT * FROM ${table} ORDER BY id`);
  return new Map(rows.map((row) => [JSON.stringify({ id: row['id'] }), row]));
}

/** Concurrent writers: inserts of new ids, updates and deletes of random ids, in small transactions, until `until` resolves. */
async function writeConcurrently(db: Db, table: string, options: { sessions: number; maxId: number; firstNewId: number }, until: Promise<unknown>): Promise<number> {
  let stop = false;
  void until.then(() => (stop = true));
  const handle = { stop: () => (stop = true), done: until as Promise<unknown> };
  writers.add(handle);
  let nextId = options.firstNewId;
  let ops = 0;
  const session = async (seed: number): Promise<void> => {
    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => {});
    await client.connect();
    let x = seed;
    const rand = (n: number): number => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x % n;
    };
    try {
      while (!stop) {
        await client.query('BEGIN');
        for (let i = 0; i < 5; i++) {
          const op = rand(3);
          if (op === 0) await client.query(`INSERT INTO ${table} (id, v, pad) VALUES ($1, $2, $3)`, [nextId++, rand(1000), `new-${seed}`]);
          else if (op === 1) await client.query(`UPDATE ${table} SET v = v + 1, pad = $2 WHERE id = $1`, [1 + rand(options.maxId), `upd-${seed}`]);
          else await client.query(`DELETE FROM ${table} WHERE id = $1`, [1 + rand(options.maxId)]);
          ops++;
        }
        await client.query('COMMIT');
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  const all = Promise.all(Array.from({ length: options.sessions }, (_, i) => session(i * 7919 + 17)));
  handle.done = all;
  await all;
  writers.delete(handle);
  return ops;
}

/** Waits until the marker row written after everything else is in the topic: then every earlier change is too. */
async function waitForMarker(run: Running, dataDir: string, db: Db, timeoutMs = 90_000): Promise<void> {
  await db.sql('INSERT INTO done_marker VALUES (1)');
  await waitFor(
    async () => {
      if (!run.running) throw new Error(`sluice exited before the marker arrived\n${run.stdout.slice(-3000)}\n${run.stderr}`);
      return (await readTopic(dataDir, 'cdc.public.done_marker')).length > 0;
    },
    { timeoutMs, intervalMs: 300, what: 'the marker row in cdc.public.done_marker' },
  );
}

function expectSameState(topic: Map<string, Record<string, unknown>>, table: Map<string, Record<string, unknown>>): void {
  const missing = [...table.keys()].filter((k) => !topic.has(k));
  const extra = [...topic.keys()].filter((k) => !table.has(k));
  const different = [...table.entries()].filter(([k, row]) => topic.has(k) && JSON.stringify(topic.get(k)) !== JSON.stringify(row));
  expect({ missing: missing.slice(0, 5), extra: extra.slice(0, 5), different: different.slice(0, 5).map(([k, row]) => [k, row, topic.get(k)]) }).toEqual({
    missing: [],
    extra: [],
    different: [],
  });
  expect(topic.size).toBe(table.size);
}

const LOAD_DDL = (table: string): string => `CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL); CREATE TABLE done_marker (id int PRIMARY KEY)`;

describe('postgres-cdc end to end', () => {
  it('snapshots 100k rows while other sessions write, and the topic ends equal to the table', async () => {
    // Guarantee: a snapshot taken under concurrent inserts, updates and deletes, followed by streaming, leaves every key's last event equal to its row in the table.
    const db = await freshDatabase('load');
    await db.sql(LOAD_DDL('load_t'));
    await db.sql("INSERT INTO load_t SELECT g, g % 1000, repeat('p', 80) FROM generate_series(1, 100000) g");
    const dir = await tempDir('cdc-load');
    const dataDir = path.join(dir, 'data');
    const spec = cdcSpec(dir, 'load', { url: db.url, slot: 'load_slot', snapshot_chunk_size: 5000 });
    const run = start(['run', spec, '--data-dir', dataDir, '--no-api', '--status-interval', '0'], { cwd: dir });
    let snapshotDone!: () => void;
    const writersStop = new Promise<void>((resolve) => (snapshotDone = resolve));
    const writing = writeConcurrently(db, 'load_t', { sessions: 3, maxId: 100000, firstNewId: 1_000_000 }, writersStop);
    await run.waitForLog((l) => l.msg === 'snapshot complete', 'the end of the snapshot', 90_000);
    // Keep writing into the streaming phase a little, then stop.
    await new Promise((r) => setTimeout(r, 1000));
    snapshotDone();
    const ops = await writing;
    await waitForMarker(run, dataDir, db);
    expect((await run.stop()).code).toBe(0);
    const records = await readTopic(dataDir, 'cdc.public.load_t');
    expect(records.filter((r) => r.value?.op === 'r').length).toBeGreaterThanOrEqual(99_000);
    expect(ops).toBeGreaterThan(100);
    expectSameState(finalState(records), await tableState(db, 'load_t'));
  }, 180_000);

  it('loses nothing when sluice is killed with SIGKILL during the snapshot, and resumes from the last chunk', async () => {
    // Guarantee: a crash during the snapshot (then a restart) loses no row and no concurrent change, and the restart continues after the last stored chunk instead of copying the table again.
    const db = await freshDatabase('killsnap');
    await db.sql(LOAD_DDL('snap_t'));
    await db.sql("INSERT INTO snap_t SELECT g, g % 1000, repeat('s', 80) FROM generate_series(1, 60000) g");
    const dir = await tempDir('cdc-killsnap');
    const dataDir = path.join(dir, 'data');
    const spec = cdcSpec(dir, 'killsnap', { url: db.url, slot: 'killsnap_slot', snapshot_chunk_size: 500 });
    const args = ['run', spec, '--data-dir', dataDir, '--no-api', '--status-interval', '0'];
    const first = start(args, { cwd: dir });
    let stopWriters!: () => void;
    const writing = writeConcurrently(db, 'snap_t', { sessions: 2, maxId: 60000, firstNewId: 1_000_000 }, new Promise<void>((r) => (stopWriters = r)));
    await waitFor(async () => (await readTopic(dataDir, 'cdc.public.snap_t')).length >= 10_000, { timeoutMs: 60_000, intervalMs: 100, what: '10k snapshot rows in the topic' });
    await first.kill('SIGKILL');
    const atKill = (await readTopic(dataDir, 'cdc.public.snap_t')).length;
    expect(atKill).toBeLessThan(60_000);
    const second = start(args, { cwd: dir });
    await second.waitForLog((l) => l.msg === 'snapshot complete', 'the end of the resumed snapshot', 90_000);
    expect(second.logLines().some((l) => typeof l.msg === 'string' && l.msg.startsWith('resuming the snapshot after a restart'))).toBe(true);
    stopWriters();
    await writing;
    await waitForMarker(second, dataDir, db);
    expect((await second.stop()).code).toBe(0);
    const records = await readTopic(dataDir, 'cdc.public.snap_t');
    // Rows of the original table were copied about once: a restart from scratch would copy ~atKill rows twice.
    const originalReads = records.filter((r) => r.value?.op === 'r' && (r.key!['id'] as number) <= 60000).length;
    expect(originalReads).toBeLessThanOrEqual(60000 + 2 * 500);
    expectSameState(finalState(records), await tableState(db, 'snap_t'));
  }, 180_000);

  it('loses nothing when sluice is killed with SIGKILL while streaming', async () => {
    // Guarantee: a crash mid-stream, with transactions only partly appended, loses no change after a restart, and each key ends as the table has it.
    const db = await freshDatabase('killstream');
    await db.sql(LOAD_DDL('stream_t'));
    const dir = await tempDir('cdc-killstream');
    const dataDir = path.join(dir, 'data');
    const spec = cdcSpec(dir, 'killstream', { url: db.url, slot: 'killstream_slot', batch_size: 200 });
    const args = ['run', spec, '--data-dir', dataDir, '--no-api', '--status-interval', '0'];
    const first = start(args, { cwd: dir });
    await first.waitForLog((l) => l.msg === 'streaming', 'streaming to start', 60_000);
    let stopWriters!: () => void;
    const writing = writeConcurrently(db, 'stream_t', { sessions: 3, maxId: 5000, firstNewId: 1 }, new Promise<void>((r) => (stopWriters = r)));
    // Large transactions too, so the kill can land inside one.
    const bulk = (async () => {
      for (let i = 0; i < 10; i++) await db.sql(`INSERT INTO stream_t SELECT g, 0, 'bulk' FROM generate_series(${100000 + i * 2000}, ${100000 + i * 2000 + 1999}) g`);
    })();
    await waitFor(async () => (await readTopic(dataDir, 'cdc.public.stream_t')).length >= 3000, { timeoutMs: 60_000, intervalMs: 100, what: '3000 streamed events' });
    await first.kill('SIGKILL');
    await bulk;
    const second = start(args, { cwd: dir });
    await second.waitForLog((l) => l.msg === 'streaming', 'streaming to resume', 60_000);
    await new Promise((r) => setTimeout(r, 1500));
    stopWriters();
    await writing;
    await waitForMarker(second, dataDir, db);
    expect((await second.stop()).code).toBe(0);
    expect(second.logLines().some((l) => l.msg === 'resuming streaming')).toBe(true);
    const records = await readTopic(dataDir, 'cdc.public.stream_t');
    expectSameState(finalState(records), await tableState(db, 'stream_t'));
    // Every bulk row arrived (inserted once, never updated by the writers: their ids are far away).
    const bulkIds = new Set(records.filter((r) => r.value?.after?.['pad'] === 'bulk').map((r) => r.key!['id']));
    expect(bulkIds.size).toBe(20000);
  }, 180_000);

  it('appends no streamed change twice across repeated SIGKILLs', async () => {
    // Guarantee: with the runtime's source-offset marks and postgres-cdc's ordered stream offsets, changes that reached the log before a kill -9 are not appended again after the restart: every streamed change is in the topic exactly once.
    const db = await freshDatabase('exactly');
    await db.sql(LOAD_DDL('once_t'));
    const dir = await tempDir('cdc-exactly');
    const dataDir = path.join(dir, 'data');
    const spec = cdcSpec(dir, 'exactly', { url: db.url, slot: 'exactly_slot', batch_size: 100, include_transaction_markers: true });
    const args = ['run', spec, '--data-dir', dataDir, '--no-api', '--status-interval', '0'];
    let run = start(args, { cwd: dir });
    await run.waitForLog((l) => l.msg === 'streaming', 'streaming to start', 60_000);
    let stopWriters!: () => void;
    const writing = writeConcurrently(db, 'once_t', { sessions: 3, maxId: 3000, firstNewId: 1 }, new Promise<void>((r) => (stopWriters = r)));
    const bulk = (async () => {
      for (let i = 0; i < 20; i++) await db.sql(`INSERT INTO once_t SELECT g, 0, 'bulk' FROM generate_series(${100000 + i * 1000}, ${100000 + i * 1000 + 999}) g`);
    })();
    for (let round = 1; round <= 4; round++) {
      const before = (await readTopic(dataDir, 'cdc.public.once_t')).length;
      await waitFor(async () => (await readTopic(dataDir, 'cdc.public.once_t')).length >= before + 1500, { timeoutMs: 60_000, intervalMs: 50, what: `1500 more events (round ${round})` });
      await run.kill('SIGKILL');
      run = start(args, { cwd: dir });
      await run.waitForLog((l) => l.msg === 'streaming', `streaming to resume (round ${round})`, 60_000);
    }
    await bulk;
    stopWriters();
    await writing;
    await waitForMarker(run, dataDir, db);
    expect((await run.stop()).code).toBe(0);
    const records = await readTopic(dataDir, 'cdc.public.once_t');
    expectSameState(finalState(records), await tableState(db, 'once_t'));
    // A change is its transaction, its WAL position, its operation and its key.
    const seen = new Map<string, number>();
    for (const r of records) {
      const v = r.value as unknown as { op: string; source: { txid: number; lsn: string } };
      const id = JSON.stringify([v.source.txid, v.source.lsn, v.op, r.key]);
      seen.set(id, (seen.get(id) ?? 0) + 1);
    }
    const twice = [...seen].filter(([, n]) => n > 1);
    expect({ duplicates: twice.length, examples: twice.slice(0, 3) }).toEqual({ duplicates: 0, examples: [] });
    // The transaction markers, one topic of their own, are never repeated either.
    const markers = await readTopic(dataDir, 'cdc.__sluice.transactions');
    const markerIds = markers.map((r) => JSON.stringify([(r.value as unknown as { status: string }).status, r.key]));
    expect(markerIds.length).toBeGreaterThan(0);
    expect(new Set(markerIds).size).toBe(markerIds.length);
  }, 240_000);

  it('runs pipelines/postgres-cdc.yaml, and recovers an invalidated slot with sluice cdc reset', async () => {
    // Guarantee: the shipped pipeline runs as documented, an invalidated slot fails the source with the reset command in its message, and that command brings it back with a new snapshot.
    const db = await freshDatabase('pipeline');
    await db.sql('CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total numeric(10,2))');
    await db.sql("INSERT INTO orders VALUES (1, 'ada', 12.50), (2, 'bob', 3.20)");
    const dir = await tempDir('cdc-pipeline');
    const spec = path.join(dir, 'postgres-cdc.yaml');
    copyFileSync(path.join(ROOT, 'pipelines/postgres-cdc.yaml'), spec);
    const env = { PGURL: db.url };
    const args = ['run', 'postgres-cdc.yaml', '--data-dir', 'data', '--no-api', '--status-interval', '0'];
    const out = path.join(dir, 'data/out/orders-cdc.jsonl');
    const lines = (): Array<{ op: string; after: Record<string, unknown> | null }> => completeLines(out).map((l) => JSON.parse(l) as { op: string; after: Record<string, unknown> | null });

    const first = start(args, { cwd: dir, env });
    await waitFor(() => lines().length >= 2, { timeoutMs: 60_000, what: 'the two snapshot rows in the file' });
    await db.sql("INSERT INTO orders VALUES (3, 'cy', 7.00)");
    await waitFor(() => lines().some((l) => l.op === 'c' && l.after?.['id'] === 3), { timeoutMs: 30_000, what: 'the streamed insert in the file' });
    expect(lines().filter((l) => l.op === 'r').map((l) => l.after)).toEqual(
      expect.arrayContaining([
        { id: 1, customer: 'ada', total: '12.50' },
        { id: 2, customer: 'bob', total: '3.20' },
      ]),
    );
    expect((await first.stop()).code).toBe(0);

    // Invalidate the slot while sluice is down: a tiny max_slot_wal_keep_size, WAL beyond it, a checkpoint.
    await local.cluster.query("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    await local.cluster.query('SELECT pg_reload_conf()');
    try {
      await db.sql("INSERT INTO orders VALUES (4, 'dee', 1.00)");
      for (let i = 0; i < 4; i++) {
        await db.sql(`CREATE TABLE filler_${i} AS SELECT g, repeat('f', 100) AS pad FROM generate_series(1, 30000) g`);
        await local.cluster.query('SELECT pg_switch_wal()');
      }
      await local.cluster.query('CHECKPOINT');
      expect((await local.cluster.query<{ wal_status: string }>("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'sluice_orders'")).rows[0]!.wal_status).toBe('lost');
    } finally {
      await local.cluster.query('ALTER SYSTEM RESET max_slot_wal_keep_size');
      await local.cluster.query('SELECT pg_reload_conf()');
    }

    const failing = start(args, { cwd: dir, env });
    const failure = await failing.waitForLog((l) => l.level === 50 && typeof l.msg === 'string' && l.msg.includes('wal_status = lost'), 'the lost-slot failure', 60_000);
    expect(failure.msg).toContain('npx sluice cdc reset postgres-cdc orders-cdc');
    expect((await failing.stop()).code).toBe(0);

    const reset = await sluice(['cdc', 'reset', 'postgres-cdc', 'orders-cdc', '--data-dir', 'data'], { cwd: dir });
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toContain('reset postgres-cdc/orders-cdc');

    const again = start(args, { cwd: dir, env });
    await waitFor(() => lines().some((l) => l.op === 'r' && l.after?.['id'] === 4), { timeoutMs: 60_000, what: 'the new snapshot, with the row written while the slot was lost' });
    expect((await again.stop()).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toContain('"customer":"dee"');

    // With the spec file, reset also drops the slot at once.
    const resetWithFile = await sluice(['cdc', 'reset', 'postgres-cdc.yaml', 'orders-cdc', '--data-dir', 'data'], { cwd: dir, env });
    expect(resetWithFile.code, resetWithFile.stderr).toBe(0);
    expect(resetWithFile.stdout).toContain('slot sluice_orders dropped');
    expect((await local.cluster.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'sluice_orders'")).rowCount).toBe(0);
  }, 180_000);
});

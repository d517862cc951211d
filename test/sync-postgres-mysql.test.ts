/**
 * Database sync end to end, Postgres → MariaDB: `sluice run` (postgres-cdc → one topic → mysql
 * sink in cdc mode with auto_create) as a child process, against a private Postgres cluster with
 * wal_level=logical and a private MariaDB, while a random workload runs on Postgres: inserts,
 * updates (some leaving a TOASTed column unchanged), deletes, primary-key changes, a truncate, and
 * values of every mapped type. sluice is killed with SIGKILL three times and restarted, and MariaDB
 * is restarted once. At the end the MariaDB table equals the Postgres table, row by row and by
 * checksum, and an append-mode target (insert mode) holds every inserted row exactly once, with no
 * duplicate in the topic either.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type mysql2 from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { openLog } from '../core/log/embedded-log.ts';
import { cleanUp, sleep, start, tempDir, waitFor, type Running } from './e2e-helpers.ts';
import { startMariadbServer, type MariadbServer } from './support/mariadb-server.ts';
import { startPostgresCluster, type PostgresCluster } from './support/postgres-cluster.ts';

let cluster: PostgresCluster;
let mariadb: MariadbServer;

beforeAll(async () => {
  [cluster, mariadb] = await Promise.all([startPostgresCluster(), startMariadbServer()]);
}, 120_000);

afterAll(async () => {
  await cleanUp();
  await Promise.all([cluster?.destroy(), mariadb?.destroy()]);
});

const ITEMS_DDL = `
  CREATE TABLE items (
    id bigint PRIMARY KEY, name text NOT NULL, qty integer, price numeric(12,2), big text, meta jsonb,
    at timestamptz, day date, flag boolean, blob bytea, uid uuid, tags integer[], ratio double precision, code varchar(12)
  );
  CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, payload jsonb);
  CREATE TABLE done_marker (id int PRIMARY KEY);
`;

/** A deterministic random source, so a failure can be replayed with the printed seed. */
function random(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/** Incompressible text long enough that Postgres stores it out of line (TOAST). */
function toastText(rand: (n: number) => number): string {
  return randomBytes(3000 + rand(6000)).toString('base64');
}

/** One row's values, as parameters for INSERT INTO items. */
function itemValues(id: number, rand: (n: number) => number): unknown[] {
  const maybe = <T>(v: T): T | null => (rand(8) === 0 ? null : v);
  return [
    id,
    `item ${id} ${['plain', 'café ☕', "quote ' \" \\ back", 'tab\there', ''][rand(5)]}`,
    maybe(rand(100000) - 50000),
    maybe(`${rand(10_000_000) - 5_000_000}.${String(rand(100)).padStart(2, '0')}`),
    maybe(toastText(rand)),
    maybe(JSON.stringify({ n: rand(1000), s: `v${rand(100)}`, nested: { ok: rand(2) === 0, list: [1, 2.5, 'x'] }, big: 12345678901234567 })),
    maybe(new Date(Date.UTC(2000 + rand(30), rand(12), 1 + rand(28), rand(24), rand(60), rand(60))).toISOString().replace('Z', `${String(rand(1000)).padStart(3, '0')}+0${rand(9)}:30`)),
    maybe(`${1990 + rand(40)}-0${1 + rand(9)}-1${rand(9)}`),
    maybe(rand(2) === 0),
    maybe(randomBytes(rand(40))),
    maybe(`${randomBytes(4).toString('hex')}-${randomBytes(2).toString('hex')}-4${randomBytes(2).toString('hex').slice(1)}-a${randomBytes(2).toString('hex').slice(1)}-${randomBytes(6).toString('hex')}`),
    maybe(Array.from({ length: rand(4) }, () => rand(1000) - 500)),
    maybe(rand(1_000_000) / 7),
    maybe(`c-${rand(100000)}`),
  ];
}

const INSERT_ITEM = 'INSERT INTO items (id, name, qty, price, big, meta, at, day, flag, blob, uid, tags, ratio, code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)';

/**
 * Items as canonical text rows, by id: each column as Postgres' value read back through the
 * documented mapping, so the two sides compare exactly. timestamptz is compared as its UTC instant
 * to the microsecond, bytea as hex, json by its parsed value, arrays as JSON.
 */
async function pgItems(client: pg.Client): Promise<Map<string, string>> {
  const res = await client.query<Record<string, string | null>>(`
    SELECT id::text, name, qty::text, price::text, big, meta::text AS meta, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at,
           day::text, CASE WHEN flag THEN '1' WHEN NOT flag THEN '0' END AS flag, encode(blob, 'hex') AS blob, uid::text, array_to_json(tags)::text AS tags,
           ratio::text, code
      FROM items ORDER BY id`);
  return new Map(res.rows.map((r) => [r['id']!, canonical(r)]));
}

async function mysqlItems(connection: mysql2.Connection): Promise<Map<string, string>> {
  const [rows] = await connection.query<mysql2.RowDataPacket[]>(`
    SELECT CAST(id AS CHAR) AS id, name, CAST(qty AS CHAR) AS qty, CAST(price AS CHAR) AS price, big, CONCAT('', meta) AS meta, CAST(at AS CHAR) AS at,
           CAST(day AS CHAR) AS day, CAST(flag AS CHAR) AS flag, LOWER(HEX(\`blob\`)) AS \`blob\`, uid, CONCAT('', tags) AS tags, CAST(ratio AS CHAR) AS ratio, code
      FROM items ORDER BY id`);
  return new Map(rows.map((r) => [String(r['id']), canonical(r as Record<string, string | null>)]));
}

/** One row as text: json columns by value (key order and spacing differ between the engines), doubles by value. */
function canonical(row: Record<string, string | null>): string {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (v === null || v === undefined) out[k] = null;
    else if (k === 'meta' || k === 'tags') out[k] = sortKeys(JSON.parse(v));
    // Engines print doubles with different digit counts; the stored binary value is what must match.
    else if (k === 'ratio') out[k] = Number(v).toPrecision(12);
    else out[k] = String(v);
  }
  return JSON.stringify(out);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
  return value;
}

/** The ids of every insert (op r or c) into the table events in the topic, in log order. */
async function eventInserts(dataDir: string): Promise<number[]> {
  const log = await openLog(dataDir, { readOnly: true });
  try {
    const ids: number[] = [];
    const p = (await log.describeTopic('sync.public')).partitions[0]!;
    for (let offset = p.startOffset; offset < p.endOffset; ) {
      const result = await log.read('sync.public', 0, offset, { maxBytes: 4 << 20 });
      for (const r of result.records) {
        const v = r.value ? (JSON.parse(r.value.toString()) as { op: string; after: { id?: number } | null; source: { table: string } }) : null;
        if (v?.source?.table === 'events' && (v.op === 'c' || v.op === 'r') && v.after) ids.push(Number(v.after.id));
      }
      if (result.nextOffset <= offset) break;
      offset = result.nextOffset;
    }
    return ids;
  } finally {
    await log.close();
  }
}

function checksum(rows: Map<string, string>): string {
  const hash = createHash('sha256');
  for (const id of [...rows.keys()].sort()) hash.update(`${id}\u0000${rows.get(id)}\n`);
  return hash.digest('hex');
}

describe('Postgres → MariaDB sync', () => {
  it('ends with MariaDB equal to Postgres after kill -9 of sluice three times and a MariaDB restart, and no duplicates in append mode', { timeout: 300_000 }, async () => {
    // Guarantee: the sync is exact across crashes of sluice and a restart of the target: every row of the Postgres table is in MariaDB with the same values, no row is missing or extra, and an append-only target holds each appended row exactly once.
    const seed = Number(process.env['SYNC_SEED'] ?? Date.now() % 1_000_000);
    const rand = random(seed);
    const source = 'sync_src';
    await cluster.query(`CREATE DATABASE ${source}`);
    const pgUrl = cluster.url(source);
    const admin = await cluster.client(source);
    await admin.query(ITEMS_DDL);
    const target = await mariadb.connect();
    await target.query('CREATE DATABASE sync_dst');
    await target.changeUser({ database: 'sync_dst' });

    // Rows that exist before the first start go through the snapshot.
    let nextId = 1;
    for (let i = 0; i < 500; i++) await admin.query(INSERT_ITEM, itemValues(nextId++, rand));
    let nextEvent = 1;
    for (let i = 0; i < 100; i++) await admin.query('INSERT INTO events VALUES ($1, $2, $3)', [nextEvent++, 'boot', JSON.stringify({ i })]);

    const dir = await tempDir('sync');
    const spec = path.join(dir, 'sync.yaml');
    writeFileSync(
      spec,
      toYaml({
        name: 'sync',
        topics: [{ name: 'sync.public', partitions: 1 }],
        sources: [{ name: 'pg', connector: 'postgres-cdc', topic: 'sync.public', config: { url: pgUrl, slot: 'sync_slot', snapshot_chunk_size: 200, heartbeat_interval: '1s' } }],
        sinks: [
          {
            name: 'replica',
            connector: 'mysql',
            topics: ['sync.public'],
            errors: { tolerance: 'none', retry_timeout: '2m', retry_backoff_max: '1s' },
            config: { url: mariadb.url('sync_dst'), mode: 'cdc', table: '{table}', auto_create: true, batch_rows: 500, connect_timeout: '2s' },
          },
          {
            name: 'audit',
            connector: 'mysql',
            topics: ['sync.public'],
            errors: { tolerance: 'none', retry_timeout: '2m', retry_backoff_max: '1s' },
            transforms: [{ type: 'filter', expr: 'source.table = "events" and op in ["r", "c"]' }, { type: 'unwrap_cdc' }],
            config: { url: mariadb.url('sync_dst'), mode: 'insert', table: 'events_log', auto_create: true, offsets_table: 'audit_offsets', connect_timeout: '2s' },
          },
        ],
      }),
    );
    const dataDir = path.join(dir, 'data');
    let run: Running = start(['run', spec, '--data-dir', dataDir, '--no-api', '--status-interval', '0'], { cwd: dir });
    const failures = (): string[] =>
      run
        .logLines()
        .filter((l) => l.msg === 'task failed' || String(l.msg ?? '').startsWith('task failed') || String(l.msg ?? '').startsWith('connector failed'))
        .map((l) => String(l.msg));

    // The workload: small transactions of random changes, until stopped.
    let stop = false;
    let ops = 0;
    let truncated = false;
    const live = new Set<number>(Array.from({ length: 500 }, (_, i) => i + 1));
    const pick = (): number | undefined => {
      if (live.size === 0) return undefined;
      const k = rand(live.size);
      let i = 0;
      for (const id of live) if (i++ === k) return id;
      return undefined;
    };
    const workload = (async () => {
      const client = await cluster.client(source);
      try {
        while (!stop) {
          await client.query('BEGIN');
          const pending: Array<() => void> = [];
          for (let n = 1 + rand(5); n > 0; n--) {
            const op = rand(100);
            const id = pick();
            if (op < 30 || id === undefined) {
              const fresh = nextId++;
              await client.query(INSERT_ITEM, itemValues(fresh, rand));
              pending.push(() => live.add(fresh));
            } else if (op < 50) {
              // Leaves big (TOASTed) untouched: the change event carries the unchanged-TOAST marker.
              await client.query('UPDATE items SET qty = coalesce(qty, 0) + 1, price = $2 WHERE id = $1', [id, `${rand(1000)}.5`]);
            } else if (op < 62) {
              const v = itemValues(id, rand);
              await client.query('UPDATE items SET name = $2, big = $3, meta = $4, at = $5, tags = $6, blob = $7 WHERE id = $1', [id, v[1], v[4], v[5], v[6], v[11], v[9]]);
            } else if (op < 75) {
              await client.query('DELETE FROM items WHERE id = $1', [id]);
              live.delete(id);
            } else if (op < 85) {
              const moved = nextId++;
              await client.query('UPDATE items SET id = $2 WHERE id = $1', [id, moved]);
              live.delete(id);
              pending.push(() => live.add(moved));
            } else {
              await client.query('INSERT INTO events VALUES ($1, $2, $3)', [nextEvent++, ['click', 'view', 'buy'][rand(3)], JSON.stringify({ at: Date.now() })]);
            }
            ops++;
          }
          await client.query('COMMIT');
          for (const f of pending) f();
          if (!truncated && ops > 1500) {
            // Once: everything goes, then the table fills again.
            await client.query('TRUNCATE items');
            live.clear();
            truncated = true;
          }
          await sleep(rand(5));
        }
      } finally {
        await client.end();
      }
    })();

    const restart = async (what: string): Promise<void> => {
      await run.kill('SIGKILL');
      expect(failures(), `failures before the ${what}`).toEqual([]);
      run = start(['run', spec, '--data-dir', dataDir, '--no-api', '--status-interval', '0'], { cwd: dir });
    };
    await sleep(4000);
    await restart('first kill -9');
    await sleep(3000 + rand(2000));
    await restart('second kill -9');
    await sleep(2000 + rand(2000));
    await mariadb.restart();
    target.destroy();
    await sleep(3000 + rand(2000));
    await restart('third kill -9');
    await sleep(4000);
    stop = true;
    await workload;
    expect(truncated, 'the workload reached its truncate').toBe(true);

    // A marker written after everything else: once it is in MariaDB, so is every earlier change.
    await admin.query('INSERT INTO done_marker VALUES (1)');
    const check = await mariadb.connect('sync_dst');
    try {
      await waitFor(
        async () => {
          if (!run.running) throw new Error(`sluice exited\n${run.stdout.slice(-4000)}\n${run.stderr}`);
          const f = failures();
          if (f.length > 0) throw new Error(`a task failed: ${f.join('; ')}\n${run.stdout.slice(-4000)}`);
          try {
            const [rows] = await check.query<mysql2.RowDataPacket[]>('SELECT count(*) AS n FROM done_marker');
            return Number(rows[0]!['n']) === 1;
          } catch {
            return false;
          }
        },
        { timeoutMs: 120_000, intervalMs: 250, what: 'the done marker in MariaDB' },
      );
      // The audit sink runs on its own: wait until it has applied every insert into events the topic holds.
      const published = (await eventInserts(dataDir)).sort((a, b) => a - b);
      await waitFor(
        async () => {
          const [rows] = await check.query<mysql2.RowDataPacket[]>('SELECT count(*) AS n FROM events_log').catch(() => [[{ n: -1 }]] as never);
          return Number(rows[0]!['n']) >= published.length;
        },
        { timeoutMs: 60_000, intervalMs: 250, what: 'every event in events_log' },
      );
      await sleep(500);

      const expected = await pgItems(admin);
      const actual = await mysqlItems(check);
      const missing = [...expected.keys()].filter((id) => !actual.has(id));
      const extra = [...actual.keys()].filter((id) => !expected.has(id));
      const different = [...expected.keys()].filter((id) => actual.has(id) && actual.get(id) !== expected.get(id));
      expect(
        { seed, missing: missing.slice(0, 5), extra: extra.slice(0, 5), different: different.slice(0, 3).map((id) => ({ pg: expected.get(id)!.slice(0, 400), mysql: actual.get(id)!.slice(0, 400) })) },
        `seed ${seed}, ${ops} operations`,
      ).toEqual({ seed, missing: [], extra: [], different: [] });
      expect(checksum(actual)).toBe(checksum(expected));
      expect(expected.size).toBeGreaterThan(0);

      // Append mode: the sink applies every record of the topic exactly once, despite three crashes
      // and a restart: the rows of events_log are the topic's inserts into events, one for one, and
      // every event row of Postgres is among them.
      const [logRows] = await check.query<mysql2.RowDataPacket[]>('SELECT id FROM events_log ORDER BY id');
      const appended = logRows.map((r) => Number(r['id']));
      expect(appended).toEqual(published);
      const pgEvents = (await admin.query<{ id: string }>('SELECT id FROM events ORDER BY id')).rows.map((r) => Number(r.id));
      expect([...new Set(appended)]).toEqual(pgEvents);
      // Zero duplicates end to end: postgres-cdc appends each streamed change to the log once even
      // when killed between appending and storing its offset (the runtime's source-offset marks),
      // and the sink applies each log record once.
      expect(published.length - new Set(published).size, 'inserts appended to the topic twice').toBe(0);
      expect(appended.length - new Set(appended).size, 'rows appended to events_log twice').toBe(0);
    } finally {
      await check.end();
      await admin.end();
      await run.stop();
    }
  });
});

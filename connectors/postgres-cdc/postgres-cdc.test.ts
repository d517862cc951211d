/**
 * The postgres-cdc source against a real Postgres: a private cluster with wal_level=logical
 * (test/support/postgres-cluster.ts), one database per test. The task runs in-process through a
 * harness that plays the runtime's part (poll, then commit what was polled).
 */
import { describe, expect, it } from 'vitest';
import { postgresClusterForFile } from '../../test/support/postgres-cluster.ts';
import { Harness, configOf, type ChangeEvent } from './fixtures/harness.ts';
import { UNCHANGED_TOAST_MARKER } from './types.ts';
import { postgresCdc } from './index.ts';

const local = postgresClusterForFile();
let dbSeq = 0;

/** A fresh database for one test, returning its URL. */
async function freshDatabase(label: string): Promise<{ name: string; url: string; sql: (text: string, params?: unknown[]) => Promise<unknown[]> }> {
  const name = `t_${label}_${++dbSeq}`;
  await local.cluster.query(`CREATE DATABASE ${name}`);
  return {
    name,
    url: local.cluster.url(name),
    sql: async (text, params) => (await local.cluster.query(text, params, name)).rows,
  };
}

async function confirmedFlush(slot: string): Promise<bigint> {
  const rows = (await local.cluster.query<{ lsn: string }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [slot])).rows;
  const [hi, lo] = rows[0]!.lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

const TYPES_DDL = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE DOMAIN posint AS int CHECK (VALUE > 0);
  CREATE TABLE types_t (
    id int PRIMARY KEY,
    i2 int2, i4 int4, i8 int8, i8big int8, i8neg int8,
    f4 float4, f8 float8, fnan float8, finf float8,
    num numeric(20,5), numbig numeric, numnan numeric,
    b bool, t text, vc varchar(10), ch char(5), u uuid,
    j json, jb jsonb,
    tstz timestamptz, ts timestamp, d date, tm time, tmtz timetz,
    ba bytea,
    ai int[], atx text[], a2 int[][], anull int[], atstz timestamptz[],
    e mood, ea mood[], dom posint,
    iv interval, bc date, tsinf timestamptz, big_year timestamp,
    nul text
  )`;

const TYPES_VALUES = `
    1::int2, 2147483647, 9007199254740991, 9223372036854775807, -9007199254740993,
    1.5, 0.1, 'NaN', '-Infinity',
    12345.678, 123456789012345678901234567890.123456789, 'NaN',
    true, E'héllo "quoted"\\n\\ttab', 'abc', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"a": [1, 2.50, "x"], "big": 12345678901234567890}', '{"k": 1, "a": [true, null]}',
    '2024-02-29 13:14:15.123456+05:30', '2024-02-29 13:14:15.5', '2024-02-29', '13:14:15.25', '13:14:15+02',
    '\\x00ff10',
    '{1,2,NULL}', '{"a b","c\\"d",NULL,"NULL"}', '{{1,2},{3,4}}', NULL, '{"2024-01-01 00:00:00+00"}',
    'happy', '{sad,happy}', 5,
    '1 year 2 months 3 days 04:05:06', '0044-03-15 BC', 'infinity', '12345-01-01 00:00:00',
    NULL`;

/** Every documented mapping, as the events must carry it. */
const EXPECTED_TYPES: Record<string, unknown> = {
  i2: 1,
  i4: 2147483647,
  i8: 9007199254740991,
  i8big: '9223372036854775807',
  i8neg: '-9007199254740993',
  f4: 1.5,
  f8: 0.1,
  fnan: 'NaN',
  finf: '-Infinity',
  num: '12345.67800',
  numbig: '123456789012345678901234567890.123456789',
  numnan: 'NaN',
  b: true,
  t: 'héllo "quoted"\n\ttab',
  vc: 'abc',
  ch: 'ab   ',
  u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  j: { a: [1, 2.5, 'x'], big: 12345678901234567890 },
  jb: { a: [true, null], k: 1 },
  tstz: '2024-02-29T07:44:15.123456Z',
  ts: '2024-02-29T13:14:15.500000',
  d: '2024-02-29',
  tm: '13:14:15.250000',
  tmtz: '13:14:15.000000+02:00',
  ba: Buffer.from([0x00, 0xff, 0x10]).toString('base64'),
  ai: [1, 2, null],
  atx: ['a b', 'c"d', null, 'NULL'],
  a2: [
    [1, 2],
    [3, 4],
  ],
  anull: null,
  atstz: ['2024-01-01T00:00:00.000000Z'],
  e: 'happy',
  ea: ['sad', 'happy'],
  dom: 5,
  iv: 'P1Y2M3DT4H5M6S',
  bc: '-000043-03-15',
  tsinf: 'infinity',
  big_year: '+012345-01-01T00:00:00.000000',
  nul: null,
};

describe('postgres-cdc', () => {
  it('maps every documented type the same way in the snapshot and in the stream', async () => {
    // Guarantee: each type of the documented mapping arrives as documented, identically from a snapshot read and from a streamed insert, whatever the database's TimeZone and DateStyle.
    const db = await freshDatabase('types');
    await db.sql(`ALTER DATABASE ${db.name} SET timezone TO 'Asia/Kolkata'`);
    await db.sql(`ALTER DATABASE ${db.name} SET datestyle TO 'SQL, DMY'`);
    await db.sql(TYPES_DDL);
    await db.sql(`INSERT INTO types_t VALUES (1, ${TYPES_VALUES})`);
    const h = new Harness(configOf({ url: db.url, slot: 'types_slot' }));
    await h.start();
    h.run();
    try {
      await h.waitFor('the snapshot row', () => h.eventsOf('types_t').length >= 1);
      await db.sql(`INSERT INTO types_t VALUES (2, ${TYPES_VALUES})`);
      await h.waitFor('the streamed row', () => h.eventsOf('types_t').length >= 2);
      const [snap, streamed] = h.eventsOf('types_t') as [ChangeEvent, ChangeEvent];
      expect(snap.value.op).toBe('r');
      expect(streamed.value.op).toBe('c');
      const { id: id1, ...fromSnapshot } = snap.value.after!;
      const { id: id2, ...fromStream } = streamed.value.after!;
      expect([id1, id2]).toEqual([1, 2]);
      expect(fromSnapshot).toEqual(EXPECTED_TYPES);
      expect(fromStream).toEqual(EXPECTED_TYPES);
      // Digits beyond double precision survive in the bytes of the event.
      expect(streamed.record.value!.toString()).toContain('"big": 12345678901234567890');
      expect(streamed.key).toEqual({ id: 2 });
      expect(streamed.topicVars).toEqual({ prefix: 'cdc', database: db.name, schema: 'public', table: 'types_t' });
      expect(streamed.value.source).toMatchObject({ db: db.name, schema: 'public', table: 'types_t', snapshot: false });
      expect(streamed.value.source.commit_ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      expect(snap.value.source).toMatchObject({ snapshot: true, txid: null, commit_ts: null });
      const columns = Object.fromEntries(streamed.schema!.columns.map((c) => [c.name, c]));
      expect(columns['id']).toEqual({ name: 'id', type: 'integer', nullable: false, pk: true });
      expect(columns['num']).toEqual({ name: 'num', type: 'numeric(20,5)', nullable: true, pk: false });
      expect(columns['vc']!.type).toBe('character varying(10)');
      expect(columns['ai']!.type).toBe('integer[]');
      expect(snap.schema).toEqual(streamed.schema);
    } finally {
      await h.stop();
    }
  });

  it('writes the unchanged-TOAST marker under REPLICA IDENTITY DEFAULT and the real value under FULL', async () => {
    // Guarantee: an update that leaves a TOASTed column unchanged never produces a null that looks like data: the documented marker under DEFAULT, the actual value under FULL.
    const db = await freshDatabase('toast');
    const big = 'x'.repeat(20000) + Array.from({ length: 2000 }, (_, i) => i).join(',');
    await db.sql('CREATE TABLE toast_default (id int PRIMARY KEY, note text, doc text); CREATE TABLE toast_full (id int PRIMARY KEY, note text, doc text)');
    await db.sql('ALTER TABLE toast_full REPLICA IDENTITY FULL');
    // Uncompressible enough to be stored out of line.
    await db.sql("ALTER TABLE toast_default ALTER COLUMN doc SET STORAGE EXTERNAL; ALTER TABLE toast_full ALTER COLUMN doc SET STORAGE EXTERNAL");
    const h = new Harness(configOf({ url: db.url, slot: 'toast_slot', snapshot: 'never' }));
    await h.start();
    h.run();
    try {
      await db.sql('INSERT INTO toast_default VALUES (1, $1, $2)', ['a', big]);
      await db.sql('INSERT INTO toast_full VALUES (1, $1, $2)', ['a', big]);
      await db.sql("UPDATE toast_default SET note = 'b' WHERE id = 1");
      await db.sql("UPDATE toast_full SET note = 'b' WHERE id = 1");
      await h.waitFor('both updates', () => h.events().filter((e) => e.value.op === 'u').length >= 2);
      const updDefault = h.eventsOf('toast_default').find((e) => e.value.op === 'u')!;
      const updFull = h.eventsOf('toast_full').find((e) => e.value.op === 'u')!;
      expect(updDefault.value.after).toEqual({ id: 1, note: 'b', doc: UNCHANGED_TOAST_MARKER });
      expect(updDefault.value.before).toBeNull();
      expect(updFull.value.after).toEqual({ id: 1, note: 'b', doc: big });
      expect(updFull.value.before).toEqual({ id: 1, note: 'a', doc: big });
      expect(h.eventsOf('toast_default').find((e) => e.value.op === 'c')!.value.after!['doc']).toBe(big);
    } finally {
      await h.stop();
    }
  });

  it('turns a primary-key update into a delete and an insert, and streams deletes, truncates and added columns', async () => {
    // Guarantee: every key's last event says whether its row exists (a key change deletes the old key), truncates arrive as op t, and a column added mid-stream appears in the following events and in the schema header.
    const db = await freshDatabase('dml');
    await db.sql('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
    const h = new Harness(configOf({ url: db.url, slot: 'dml_slot', include_transaction_markers: true }));
    await h.start();
    h.run();
    try {
      await db.sql("INSERT INTO items VALUES (1, 'one'), (2, 'two')");
      await db.sql('UPDATE items SET id = 10 WHERE id = 1');
      await db.sql('DELETE FROM items WHERE id = 2');
      await db.sql('ALTER TABLE items ADD COLUMN price numeric(10,2)');
      await db.sql("INSERT INTO items VALUES (3, 'three', 9.90)");
      await db.sql("UPDATE items SET price = 1.5, name = 'ten' WHERE id = 10");
      await db.sql('TRUNCATE items');
      await h.waitFor('the truncate', () => h.eventsOf('items').some((e) => e.value.op === 't'));
      const events = h.eventsOf('items').map((e) => [e.value.op, e.key, e.value.before, e.value.after]);
      expect(events).toEqual([
        ['c', { id: 1 }, null, { id: 1, name: 'one' }],
        ['c', { id: 2 }, null, { id: 2, name: 'two' }],
        ['d', { id: 1 }, { id: 1 }, null],
        ['c', { id: 10 }, null, { id: 10, name: 'one' }],
        ['d', { id: 2 }, { id: 2 }, null],
        ['c', { id: 3 }, null, { id: 3, name: 'three', price: '9.90' }],
        ['u', { id: 10 }, null, { id: 10, name: 'ten', price: '1.50' }],
        ['t', null, null, null],
      ]);
      const added = h.eventsOf('items').find((e) => e.key?.['id'] === 3)!;
      expect(added.schema!.columns.map((c) => [c.name, c.type])).toEqual([
        ['id', 'integer'],
        ['name', 'text'],
        ['price', 'numeric(10,2)'],
      ]);
      // Transaction markers: BEGIN and END around each transaction, with the event count.
      const markers = h.records.filter((r) => r.topicVars?.['table'] === 'transactions').map((r) => JSON.parse(r.value!.toString()) as { status: string; event_count?: number });
      expect(markers.filter((m) => m.status === 'BEGIN').length).toBe(6); // the ALTER TABLE writes no row: Postgres skips its empty transaction
      const insertTx = markers.find((m) => m.status === 'END' && m.event_count === 2);
      expect(insertTx).toBeDefined();
      expect(h.eventsOf('items')[0]!.value.transaction).toMatchObject({ id: expect.any(Number), total_order: expect.any(Number) });
    } finally {
      await h.stop();
    }
  });

  it('acknowledges a change to Postgres only after commit() reported it durable', async () => {
    // Guarantee: the slot's confirmed_flush_lsn never passes a change whose record is not durable in the log.
    const db = await freshDatabase('ack');
    await db.sql('CREATE TABLE acked (id int PRIMARY KEY)');
    const h = new Harness(configOf({ url: db.url, slot: 'ack_slot', snapshot: 'never', heartbeat_interval: '0s' }));
    await h.start();
    h.autoCommit = false;
    h.run();
    try {
      await h.waitFor('the stream to open', () => h.lines.some((l) => l.message === 'streaming'));
      const before = await confirmedFlush('ack_slot');
      const lsn = (await db.sql("INSERT INTO acked VALUES (1) RETURNING pg_current_wal_lsn()::text AS lsn")) as Array<{ lsn: string }>;
      await h.waitFor('the insert', () => h.eventsOf('acked').length === 1);
      // Polled, not committed: keepalives and status updates come and go, the slot stays.
      await new Promise((r) => setTimeout(r, 1500));
      expect(await confirmedFlush('ack_slot')).toBe(before);
      await h.commitAll();
      const [hi, lo] = lsn[0]!.lsn.split('/');
      const insertLsn = (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
      const deadline = Date.now() + 15_000;
      while ((await confirmedFlush('ack_slot')) <= insertLsn && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await confirmedFlush('ack_slot')).toBeGreaterThan(insertLsn);
    } finally {
      await h.stop();
    }
  });

  it('advances the slot on an idle table while another database writes, through heartbeats', async () => {
    // Guarantee: with the captured tables idle and another database busy, the slot's confirmed_flush_lsn keeps up with the server's WAL, so the slot does not hold WAL back.
    const db = await freshDatabase('idle');
    const other = await freshDatabase('busy');
    await db.sql('CREATE TABLE quiet (id int PRIMARY KEY)');
    await other.sql('CREATE TABLE noisy (id serial PRIMARY KEY, payload text)');
    const h = new Harness(configOf({ url: db.url, slot: 'idle_slot', snapshot: 'never', heartbeat_interval: '300ms' }));
    await h.start();
    h.run();
    try {
      await h.waitFor('the stream to open', () => h.lines.some((l) => l.message === 'streaming'));
      const start = await confirmedFlush('idle_slot');
      for (let i = 0; i < 20; i++) await other.sql("INSERT INTO noisy (payload) SELECT repeat('x', 200) FROM generate_series(1, 500)");
      const written = (await local.cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
      const [hi, lo] = written.split('/');
      const target = (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
      const deadline = Date.now() + 20_000;
      while ((await confirmedFlush('idle_slot')) < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await confirmedFlush('idle_slot')).toBeGreaterThanOrEqual(target);
      expect(await confirmedFlush('idle_slot')).toBeGreaterThan(start);
      // Keepalives alone already move it here; the heartbeat is what moves it when the server has nothing to say.
      // The message can come back through the replication connection before the writing query's
      // reply reaches the task, so both counts are waited for, in either order.
      await h.waitFor('a heartbeat to be written and to come back through the slot', () => (h.counters.get('heartbeats_sent') ?? 0) > 0 && (h.counters.get('heartbeats_received') ?? 0) > 0, 10_000);
      expect(h.counters.get('heartbeats_sent') ?? 0).toBeGreaterThan(0);
      expect(h.counters.get('heartbeats_received') ?? 0).toBeGreaterThan(0);
      expect(h.eventsOf('quiet')).toEqual([]);
    } finally {
      await h.stop();
    }
  });

  it('reports the WAL the slot retains and warns above max_slot_lag_bytes', async () => {
    // Guarantee: the retained_wal_bytes metric follows pg_replication_slots, and a slot holding back more than max_slot_lag_bytes is logged as a warning.
    const db = await freshDatabase('lag');
    const h = new Harness(configOf({ url: db.url, slot: 'lag_slot', snapshot: 'never', max_slot_lag_bytes: 1, slot_check_interval: '1s' }));
    await h.start();
    h.run();
    try {
      await h.waitFor('the lag warning', () => h.lines.some((l) => l.level === 'warn' && (l.message ?? '').includes('holds back')), 10_000);
      expect(h.gauges.get('retained_wal_bytes')).toBeGreaterThan(1);
      expect(h.gauges.has('confirmed_lag_bytes')).toBe(true);
    } finally {
      await h.stop();
    }
  });

  it('keeps streaming across a Postgres restart without losing or repeating a change', async () => {
    // Guarantee: a Postgres restart mid-stream (every connection dropped) is retried, and streaming resumes where it was: every change arrives exactly once.
    const db = await freshDatabase('restart');
    await db.sql('CREATE TABLE ticks (id int PRIMARY KEY)');
    const h = new Harness(configOf({ url: db.url, slot: 'restart_slot', snapshot: 'never', batch_size: 50 }));
    await h.start();
    h.run();
    try {
      for (let i = 1; i <= 200; i++) await db.sql('INSERT INTO ticks VALUES ($1)', [i]);
      await h.waitFor('some ticks', () => h.eventsOf('ticks').length >= 50);
      await local.cluster.restart();
      for (let i = 201; i <= 400; i++) await db.sql('INSERT INTO ticks VALUES ($1)', [i]);
      await h.waitFor('all ticks after the restart', () => new Set(h.eventsOf('ticks').map((e) => e.key!['id'])).size >= 400, 60_000);
      const ids = h.eventsOf('ticks').map((e) => e.key!['id'] as number);
      expect(ids).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
      expect(h.counters.get('reconnects') ?? 0).toBeGreaterThan(0);
    } finally {
      await h.stop();
    }
  }, 120_000);

  it('resumes inside a partly durable transaction without repeating or losing its changes', async () => {
    // Guarantee: after a restart, changes at or below the stored offset are skipped, even inside a transaction only part of which was durable.
    const db = await freshDatabase('partial');
    await db.sql('CREATE TABLE bulk (id int PRIMARY KEY)');
    const first = new Harness(configOf({ url: db.url, slot: 'partial_slot', snapshot: 'never', batch_size: 100 }));
    await first.start();
    first.autoCommit = false;
    first.run();
    await first.waitFor('the stream to open', () => first.lines.some((l) => l.message === 'streaming'));
    await db.sql('INSERT INTO bulk SELECT generate_series(1, 1000)');
    await first.waitFor('the whole transaction polled', () => first.eventsOf('bulk').length === 1000);
    // Only the first 350 records became durable before the "crash".
    const durable = first.records[349]!;
    await first.task.commit([{ sourcePartition: durable.sourcePartition, sourceOffset: durable.sourceOffset }]);
    await first.stop();
    const second = new Harness(configOf({ url: db.url, slot: 'partial_slot', snapshot: 'never', batch_size: 100 }), [
      { sourcePartition: durable.sourcePartition, sourceOffset: durable.sourceOffset },
    ]);
    await second.start();
    second.run();
    try {
      await second.waitFor('the rest of the transaction', () => second.eventsOf('bulk').length >= 650);
      await new Promise((r) => setTimeout(r, 500));
      const ids = second.eventsOf('bulk').map((e) => e.key!['id'] as number);
      expect(ids).toEqual(Array.from({ length: 650 }, (_, i) => i + 351));
    } finally {
      await second.stop();
    }
  });

  it('fails with the recovery command when the slot was invalidated', async () => {
    // Guarantee: an invalidated slot (wal_status = lost) puts the connector in FAILED with a message naming npx sluice cdc reset PIPELINE SOURCE, never silently streaming past lost changes.
    const db = await freshDatabase('lost');
    await db.sql('CREATE TABLE lost_t (id int PRIMARY KEY)');
    const h = new Harness(configOf({ url: db.url, slot: 'lost_slot', snapshot: 'never' }));
    await h.start();
    h.run();
    await db.sql('INSERT INTO lost_t VALUES (1)');
    await h.waitFor('the insert', () => h.eventsOf('lost_t').length === 1);
    await h.stop();
    const stored = h.committed;
    // Make the server drop the slot's WAL: a small keep size, then more WAL than that and a checkpoint.
    await local.cluster.query("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    await local.cluster.query('SELECT pg_reload_conf()');
    try {
      for (let i = 0; i < 5; i++) {
        await db.sql("INSERT INTO lost_t SELECT g FROM generate_series($1::int, $1::int + 20000) g", [i * 30000 + 10]);
        await local.cluster.query('SELECT pg_switch_wal()');
      }
      await local.cluster.query('CHECKPOINT');
      const status = (await local.cluster.query<{ wal_status: string }>("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'")).rows[0]!.wal_status;
      expect(status).toBe('lost');
      const again = new Harness(configOf({ url: db.url, slot: 'lost_slot', snapshot: 'never' }), stored, { pipeline: 'shop', connector: 'orders-cdc' });
      const failure = await again.start().then(
        () => null,
        (err: unknown) => err as Error & { code?: string; retriable?: boolean },
      );
      await again.stop();
      expect(failure?.code).toBe('CONNECTOR_FAILED');
      expect(failure?.retriable).toBe(false);
      expect(failure?.message).toContain('wal_status = lost');
      expect(failure?.message).toContain('npx sluice cdc reset shop orders-cdc');
    } finally {
      await local.cluster.query('ALTER SYSTEM RESET max_slot_wal_keep_size');
      await local.cluster.query('SELECT pg_reload_conf()');
      await local.cluster.query("SELECT pg_drop_replication_slot('lost_slot')").catch(() => undefined);
    }
  });

  it('resumes an interrupted snapshot after the last stored chunk, with a composite text key', async () => {
    // Guarantee: a snapshot interrupted after some chunks resumes after the last stored key (in primary-key order, composite and text keys included): every row once, none copied twice.
    const db = await freshDatabase('resume');
    await db.sql('CREATE TABLE composite (region text, n int, v text, PRIMARY KEY (region, n))');
    await db.sql("INSERT INTO composite SELECT r, g, 'v' || g FROM unnest(ARRAY['eu-west', 'us \"east\"', 'Ölkü']) r, generate_series(1, 400) g");
    const config = configOf({ url: db.url, slot: 'resume_slot', snapshot_chunk_size: 70, batch_size: 70 });
    const first = new Harness(config);
    await first.start();
    const polled = [...(await first.task.poll(first.abort.signal)), ...(await first.task.poll(first.abort.signal)), ...(await first.task.poll(first.abort.signal))];
    expect(polled.length).toBe(210);
    const last = polled[polled.length - 1]!;
    await first.task.commit([{ sourcePartition: last.sourcePartition, sourceOffset: last.sourceOffset }]);
    await first.stop();
    const second = new Harness(config, [{ sourcePartition: last.sourcePartition, sourceOffset: last.sourceOffset }]);
    await second.start();
    second.run();
    try {
      await second.waitFor('the rest of the snapshot', () => second.lines.some((l) => l.message === 'snapshot complete'));
      await db.sql("INSERT INTO composite VALUES ('zz', 1, 'streamed')");
      await second.waitFor('the streamed row', () => second.events().some((e) => e.value.op === 'c'));
      expect(second.lines.some((l) => l.message?.startsWith('resuming the snapshot after a restart'))).toBe(true);
      const keys = [...polled.map((r) => r.key!.toString()), ...second.events().filter((e) => e.value.op === 'r').map((e) => e.record.key!.toString())];
      expect(keys.length).toBe(1200);
      expect(new Set(keys).size).toBe(1200);
      expect(JSON.parse(keys[0]!)).toEqual({ region: 'eu-west', n: 1 });
    } finally {
      await second.stop();
    }
  });

  it('captures only the included tables, and keys tables without a primary key by their replica identity', async () => {
    // Guarantee: tables.include/exclude decide what is captured, in the snapshot and in the stream, and a table without a primary key under REPLICA IDENTITY FULL is keyed by all its columns, so each key's last event still says whether that row exists.
    const db = await freshDatabase('filter');
    await db.sql('CREATE TABLE keep_me (id int PRIMARY KEY); CREATE TABLE skip_me (id int PRIMARY KEY); CREATE TABLE nopk (a int, b text)');
    await db.sql('ALTER TABLE nopk REPLICA IDENTITY FULL');
    await db.sql("INSERT INTO keep_me VALUES (1); INSERT INTO skip_me VALUES (1); INSERT INTO nopk VALUES (1, 'x')");
    const h = new Harness(configOf({ url: db.url, slot: 'filter_slot', tables: { include: ['public.*'], exclude: ['public.skip_*'] } }));
    await h.start();
    h.run();
    try {
      await db.sql("INSERT INTO keep_me VALUES (2); INSERT INTO skip_me VALUES (2); UPDATE nopk SET b = 'y'; DELETE FROM nopk");
      await h.waitFor('the nopk delete', () => h.eventsOf('nopk').some((e) => e.value.op === 'd'));
      expect(h.eventsOf('skip_me')).toEqual([]);
      expect(h.eventsOf('keep_me').map((e) => [e.value.op, e.key])).toEqual([
        ['r', { id: 1 }],
        ['c', { id: 2 }],
      ]);
      expect(h.eventsOf('nopk').map((e) => [e.value.op, e.key, e.value.before, e.value.after])).toEqual([
        ['r', { a: 1, b: 'x' }, null, { a: 1, b: 'x' }],
        // The key is the whole row, so an update changes it: the old key's row goes, the new key's row comes.
        ['d', { a: 1, b: 'x' }, { a: 1, b: 'x' }, null],
        ['c', { a: 1, b: 'y' }, null, { a: 1, b: 'y' }],
        ['d', { a: 1, b: 'y' }, { a: 1, b: 'y' }, null],
      ]);
    } finally {
      await h.stop();
    }
  });

  it('has a health check that names what is wrong', async () => {
    // Guarantee: a wrong database is a configuration error (not retried), a refused connection is retriable.
    const wrongDb = postgresCdc.healthCheck!(configOf({ url: local.cluster.url('no_such_db'), slot: 'x' }), { signal: new AbortController().signal, logger: noLogger });
    await expect(wrongDb).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    const refused = postgresCdc.healthCheck!(configOf({ host: '127.0.0.1', port: 1, database: 'postgres', slot: 'x' }), { signal: new AbortController().signal, logger: noLogger });
    await expect(refused).rejects.toMatchObject({ retriable: true });
    await expect(postgresCdc.healthCheck!(configOf({ url: local.cluster.url(), slot: 'x' }), { signal: new AbortController().signal, logger: noLogger })).resolves.toBeUndefined();
  });
});

const noop = (): void => {};
const noLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, child: () => noLogger };

/**
 * The postgres and mysql sinks against the real Postgres and MariaDB on this machine, one suite
 * run for each: every mode, table mapping, schema evolution, error classes, exactly-once replay
 * and a connection killed mid-batch. Tasks are driven directly with records built here, shaped as
 * postgres-cdc writes them; each test uses its own tables and drops them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetriableError, SluiceError, isSluiceError, type SinkRecord } from '../../core/connector.ts';
import { UNCHANGED_TOAST_MARKER } from '../postgres-cdc/index.ts';
import { sinkContext, type TestSinkContext } from '../../test/support/task-context.ts';
import { EventStream, record, type HeaderColumn } from './fixtures/records.ts';
import { TARGETS, uniqueName, type Admin, type RecordedTask, type SqlTarget, type TestSettings } from './fixtures/targets.ts';

/** Values as text, so Postgres' and MySQL's drivers compare alike (bigints come back as strings). */
function text(rows: Array<Record<string, unknown>>): Array<Record<string, string | null>> {
  return rows.map((row) =>
    Object.fromEntries(
      Object.entries(row).map(([k, v]) => [k, v === null || v === undefined ? null : Buffer.isBuffer(v) ? v.toString('hex') : typeof v === 'object' ? JSON.stringify(v) : String(v)]),
    ),
  );
}

async function caught(promise: Promise<unknown>): Promise<SluiceError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof SluiceError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe.each(TARGETS.map((t) => [t.engine, t] as const))('%s sink', (_engine, target: SqlTarget) => {
  let admin: Admin;
  const tables = new Set<string>();
  const open: Array<{ stop(): Promise<void> }> = [];

  beforeAll(async () => {
    admin = await target.admin();
  });

  afterAll(async () => {
    for (const t of open.splice(0)) await t.stop().catch(() => {});
    await target.drop(admin, ...tables);
    await admin.close();
  });

  /** A unique table name, dropped after the suite. */
  const table = (label: string): string => {
    const name = uniqueName(label);
    tables.add(name);
    return name;
  };

  /** A started task with its own offsets table. */
  async function started(settings: TestSettings, options: { pipeline?: string } = {}): Promise<RecordedTask & TestSinkContext & { offsets: string }> {
    const offsets = settings.offsets_table ?? table('offsets');
    const recorded = target.task({ ...settings, offsets_table: offsets });
    const context = sinkContext(target.metrics, { pipeline: options.pipeline ?? 'p', connector: 'sink' });
    await recorded.task.start(context.ctx);
    open.push(recorded.task);
    return { ...recorded, ...context, offsets };
  }

  const q = (name: string): string => admin.quote(name);
  const select = async (name: string, order = 'id'): Promise<Array<Record<string, string | null>>> => text(await admin.query(`SELECT * FROM ${q(name)} ORDER BY ${q(order)}`));
  const count = async (name: string): Promise<number> => Number((await admin.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${q(name)}`))[0]!.n);

  describe('insert mode', () => {
    it('appends every record value as one row, creating the table from the values', async () => {
      // Guarantee: insert mode writes one row per record, never merging records with the same content.
      const t = table('insert');
      const sink = await started({ mode: 'insert', table: t, auto_create: true });
      await sink.task.put([
        record('events', 0, 0, null, { id: 1, kind: 'click', meta: { x: 1 } }),
        record('events', 0, 1, null, { id: 2, kind: 'view', meta: null }),
        record('events', 0, 2, null, { id: 1, kind: 'click', meta: { x: 1 } }),
      ]);
      const rows = await select(t);
      expect(rows.map((r) => [r['id'], r['kind']])).toEqual([
        ['1', 'click'],
        ['1', 'click'],
        ['2', 'view'],
      ]);
      expect(JSON.parse(rows[0]!['meta']!)).toEqual({ x: 1 });
    });

    it('refuses a tombstone as a bad record', async () => {
      // Guarantee: a record insert mode cannot write fails as a record-level error, which the runtime bisects to the DLQ.
      const t = table('insert_tomb');
      const sink = await started({ mode: 'insert', table: t, auto_create: true });
      const err = await caught(sink.task.put([record('events', 0, 0, { id: 1 }, null)]));
      expect(err.code).toBe('CONNECTOR_FAILED');
      expect(err.message).toMatch(/tombstone/);
    });
  });

  describe('upsert mode', () => {
    it('inserts, updates by the record key, deletes on a tombstone, and collapses a batch to the last change per key', async () => {
      // Guarantee: upsert mode leaves exactly the last state of each key, whether the changes came in one batch or several.
      const t = table('upsert');
      await admin.query(`CREATE TABLE ${q(t)} (${q('id')} INT PRIMARY KEY, ${q('name')} VARCHAR(40), ${q('score')} INT)`);
      const sink = await started({ mode: 'upsert', table: t });
      await sink.task.put([
        record('u', 0, 0, { id: 1 }, { name: 'ann', score: 1 }),
        record('u', 0, 1, { id: 2 }, { name: 'bob', score: 2 }),
        record('u', 0, 2, { id: 1 }, { name: 'ann', score: 3 }),
        record('u', 0, 3, { id: 3 }, { name: 'cy', score: 4 }),
        record('u', 0, 4, { id: 3 }, null),
        record('u', 0, 5, { id: 4 }, null),
      ]);
      expect(await select(t)).toEqual([
        { id: '1', name: 'ann', score: '3' },
        { id: '2', name: 'bob', score: '2' },
      ]);
      // A partial row updates only the fields it has.
      await sink.task.put([record('u', 0, 6, { id: 2 }, { score: 20 }), record('u', 0, 7, { id: 3 }, { name: 'cy', score: 5 })]);
      expect(await select(t)).toEqual([
        { id: '1', name: 'ann', score: '3' },
        { id: '2', name: 'bob', score: '20' },
        { id: '3', name: 'cy', score: '5' },
      ]);
      expect(sink.counters.get('rows_total{op=upsert}')).toBe(4);
      expect(sink.counters.get('rows_total{op=delete}')).toBe(2);
    });

    it('takes the key from key_columns in the value when set', async () => {
      // Guarantee: with key_columns the row is matched on those value fields, whatever the record key holds.
      const t = table('upsert_kc');
      await admin.query(`CREATE TABLE ${q(t)} (${q('tenant')} VARCHAR(10) NOT NULL, ${q('id')} INT NOT NULL, ${q('v')} VARCHAR(10), PRIMARY KEY (${q('tenant')}, ${q('id')}))`);
      const sink = await started({ mode: 'upsert', table: t, key_columns: ['tenant', 'id'] });
      await sink.task.put([
        record('u', 0, 0, 'ignored', { tenant: 'a', id: 1, v: 'x' }),
        record('u', 0, 1, null, { tenant: 'b', id: 1, v: 'y' }),
        record('u', 0, 2, null, { tenant: 'a', id: 1, v: 'z' }),
      ]);
      expect(await select(t, 'tenant')).toEqual([
        { tenant: 'a', id: '1', v: 'z' },
        { tenant: 'b', id: '1', v: 'y' },
      ]);
    });

    it('fails the connector when the table has no key matching the upsert key', async () => {
      // Guarantee: an upsert that could not match rows fails loudly as CONFIG_INVALID instead of appending duplicates.
      const t = table('upsert_nokey');
      await admin.query(`CREATE TABLE ${q(t)} (${q('id')} INT, ${q('v')} INT)`);
      const sink = await started({ mode: 'upsert', table: t });
      const err = await caught(sink.task.put([record('u', 0, 0, { id: 1 }, { v: 1 })]));
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain('no primary key or unique index on exactly (id)');
      expect(await count(t)).toBe(0);
    });
  });

  describe('cdc mode', () => {
    const columns: HeaderColumn[] = [
      { name: 'id', type: 'integer', pk: true },
      { name: 'status', type: 'text' },
      { name: 'body', type: 'text' },
    ];

    it('applies inserts, updates, deletes and truncates from change events in order', async () => {
      // Guarantee: r/c/u upsert, d deletes and t truncates, so the target ends as the source did.
      const source = uniqueName('orders');
      const t = table('cdc');
      const s = new EventStream('cdc.public', source, ['id'], columns);
      const sink = await started({ mode: 'cdc', table: t, auto_create: true });
      await sink.task.put([s.r({ id: 1, status: 'new', body: 'a' }), s.c({ id: 2, status: 'new', body: 'b' }), s.c({ id: 3, status: 'new', body: 'c' })]);
      await sink.task.put([s.u({ id: 1, status: 'paid', body: 'a' }), s.d({ id: 2 }), s.c({ id: 4, status: 'new', body: 'd' })]);
      expect(await select(t)).toEqual([
        { id: '1', status: 'paid', body: 'a' },
        { id: '3', status: 'new', body: 'c' },
        { id: '4', status: 'new', body: 'd' },
      ]);
      // A truncate wipes the table; changes after it in the same batch survive, changes before it do not matter.
      await sink.task.put([s.u({ id: 3, status: 'gone', body: 'c' }), s.t(), s.c({ id: 5, status: 'new', body: 'e' })]);
      expect(await select(t)).toEqual([{ id: '5', status: 'new', body: 'e' }]);
    });

    it('routes events to tables by the table template, from the events\' source block', async () => {
      // Guarantee: one topic can carry many tables; {schema}_{table} sends each event to its own table.
      const a = uniqueName('a');
      const b = uniqueName('b');
      tables.add(`shop_${a}`);
      tables.add(`shop_${b}`);
      const sa = new EventStream('cdc.shop', a, ['id'], columns, { schema: 'shop' });
      const sb = new EventStream('cdc.shop', b, ['id'], columns, { schema: 'shop', start: 1 });
      const sink = await started({ mode: 'cdc', table: '{schema}_{table}', auto_create: true });
      await sink.task.put([sa.c({ id: 1, status: 'x', body: null }), sb.c({ id: 1, status: 'y', body: null })]);
      expect(await select(`shop_${a}`)).toEqual([{ id: '1', status: 'x', body: null }]);
      expect(await select(`shop_${b}`)).toEqual([{ id: '1', status: 'y', body: null }]);
    });

    it('deletes the old key when an update changes the primary key', async () => {
      // Guarantee: a primary-key update moves the row; the old key does not linger.
      const t = table('cdc_pk');
      const s = new EventStream('cdc.public', t, ['id'], columns);
      const sink = await started({ mode: 'cdc', auto_create: true });
      await sink.task.put([s.c({ id: 1, status: 'a', body: 'x' }), s.c({ id: 2, status: 'b', body: 'y' })]);
      // Debezium's shape: u with the old key in before (postgres-cdc writes d + c, covered by the test above).
      await sink.task.put([s.u({ id: 10, status: 'a', body: 'x' }, { id: 1 })]);
      // And within one batch: key 2 moves to 20, then a new row takes key 2.
      await sink.task.put([s.u({ id: 20, status: 'b', body: 'y' }, { id: 2 }), s.c({ id: 2, status: 'new', body: null })]);
      expect(await select(t)).toEqual([
        { id: '2', status: 'new', body: null },
        { id: '10', status: 'a', body: 'x' },
        { id: '20', status: 'b', body: 'y' },
      ]);
    });

    it('keeps the target\'s value for a column carrying the unchanged-TOAST marker', async () => {
      // Guarantee: an unchanged TOASTed value never overwrites data, whether its row was written in an earlier batch or the same one.
      const t = table('cdc_toast');
      const s = new EventStream('cdc.public', t, ['id'], columns);
      const sink = await started({ mode: 'cdc', auto_create: true });
      const big = 'x'.repeat(10_000);
      await sink.task.put([s.c({ id: 1, status: 'new', body: big })]);
      await sink.task.put([
        s.u({ id: 1, status: 'paid', body: UNCHANGED_TOAST_MARKER }),
        s.c({ id: 2, status: 'new', body: `${big}2` }),
        s.u({ id: 2, status: 'paid', body: UNCHANGED_TOAST_MARKER }),
        s.u({ id: 2, status: 'sent', body: UNCHANGED_TOAST_MARKER }),
      ]);
      expect(await select(t)).toEqual([
        { id: '1', status: 'paid', body: big },
        { id: '2', status: 'sent', body: `${big}2` },
      ]);
    });

    it('keeps the TOASTed value of a row whose primary key changed, within a batch, across batches and across a restart', async () => {
      // Guarantee: a key change under REPLICA IDENTITY DEFAULT (a delete of the old key, then the new row with the unchanged-TOAST marker) moves the old row's value to the new key wherever the batch boundaries fall, even after a crash between the two.
      const t = table('cdc_move');
      const offsets = table('cdc_move_offsets');
      const s = new EventStream('cdc.public', t, ['id'], columns);
      const sink = await started({ mode: 'cdc', auto_create: true, offsets_table: offsets });
      const big = (n: number): string => `${n}:${'y'.repeat(5000)}`;
      await sink.task.put([s.c({ id: 1, status: 'a', body: big(1) }), s.c({ id: 2, status: 'b', body: big(2) }), s.c({ id: 3, status: 'c', body: big(3) })]);
      // In one batch, with an earlier change of the old row in the same batch: postgres-cdc's d + c.
      await sink.task.put([s.u({ id: 1, status: 'a2', body: UNCHANGED_TOAST_MARKER }), s.d({ id: 1 }), s.c({ id: 10, status: 'a2', body: UNCHANGED_TOAST_MARKER })]);
      // Debezium's shape: one u with the old key in before.
      await sink.task.put([s.u({ id: 20, status: 'b', body: UNCHANGED_TOAST_MARKER }, { id: 2 })]);
      // Split over two batches: the delete ends one, the insert starts the next, and a later update of the new row in the same batch keeps the moved value.
      await sink.task.put([s.d({ id: 3 })]);
      await sink.task.put([s.c({ id: 30, status: 'x', body: UNCHANGED_TOAST_MARKER }), s.u({ id: 30, status: 'c', body: UNCHANGED_TOAST_MARKER })]);
      expect(await select(t)).toEqual([
        { id: '10', status: 'a2', body: big(1) },
        { id: '20', status: 'b', body: big(2) },
        { id: '30', status: 'c', body: big(3) },
      ]);
      // Split, with a crash in between: the next task finds the old row kept in the offsets table.
      await sink.task.put([s.d({ id: 30 })]);
      const restarted = await started({ mode: 'cdc', auto_create: true, offsets_table: offsets });
      await restarted.task.put([s.c({ id: 300, status: 'c', body: UNCHANGED_TOAST_MARKER })]);
      expect((await select(t)).map((r) => [r['id'], r['body']])).toEqual([
        ['10', big(1)],
        ['20', big(2)],
        ['300', big(3)],
      ]);
      expect(restarted.counters.get('unchanged_values_lost_total')).toBeUndefined();
      // Moved and then updated in the same batch, with the old row only in the target.
      await restarted.task.put([s.c({ id: 5, status: 'e', body: big(5) })]);
      await restarted.task.put([s.d({ id: 5 }), s.c({ id: 50, status: 'e', body: UNCHANGED_TOAST_MARKER }), s.u({ id: 50, status: 'e2', body: UNCHANGED_TOAST_MARKER })]);
      expect((await select(t)).find((r) => r['id'] === '50')).toEqual({ id: '50', status: 'e2', body: big(5) });
      // Moved twice in one batch: the second move takes what the first gets from the target.
      await restarted.task.put([s.c({ id: 6, status: 'f', body: big(6) })]);
      await restarted.task.put([s.d({ id: 6 }), s.c({ id: 60, status: 'f', body: UNCHANGED_TOAST_MARKER }), s.d({ id: 60 }), s.c({ id: 600, status: 'f', body: UNCHANGED_TOAST_MARKER })]);
      expect((await select(t)).find((r) => r['id'] === '600')).toEqual({ id: '600', status: 'f', body: big(6) });
      await restarted.task.put([s.d({ id: 50 }), s.d({ id: 600 })]);
      // An update right after an unrelated delete is no key change: it keeps its own row's value.
      await restarted.task.put([s.c({ id: 4, status: 'd', body: big(4) })]);
      await restarted.task.put([s.d({ id: 10 }), s.u({ id: 4, status: 'd2', body: UNCHANGED_TOAST_MARKER })]);
      await restarted.task.put([s.d({ id: 20 })]);
      await restarted.task.put([s.u({ id: 4, status: 'd3', body: UNCHANGED_TOAST_MARKER })]);
      expect((await select(t)).map((r) => [r['id'], r['status'], r['body']])).toEqual([
        ['4', 'd3', big(4)],
        ['300', 'c', big(3)],
      ]);
    });

    it('skips tombstones and transaction markers', async () => {
      // Guarantee: records that carry no row change (Debezium tombstones, BEGIN/END markers) change nothing and fail nothing.
      const t = table('cdc_skip');
      const sink = await started({ mode: 'cdc', auto_create: true });
      await sink.task.put([
        record('cdc.public', 0, 0, { id: 1 }, { status: 'BEGIN', id: 7, lsn: '0/1', commit_ts: '2024-05-01T10:00:00.000000Z', ts_ms: 1 }),
        record('cdc.public', 0, 1, { id: 1 }, null),
      ]);
      const after = new EventStream('cdc.public', t, ['id'], columns, { start: 2 });
      await sink.task.put([after.c({ id: 1, status: 'a', body: null })]);
      expect(await select(t)).toEqual([{ id: '1', status: 'a', body: null }]);
    });

    it('renames, includes and excludes columns, and refuses to exclude a key column', async () => {
      // Guarantee: the column mapping applies to every statement, keys included, and a mapping that would lose the key fails the connector.
      const t = table('cdc_map');
      const s = new EventStream('cdc.public', t, ['id'], [...columns, { name: 'secret', type: 'text' }]);
      const sink = await started({ mode: 'cdc', auto_create: true, columns: { rename: { id: 'order_id', [`${t}.status`]: 'state' }, exclude: ['secret'] } });
      await sink.task.put([s.c({ id: 1, status: 'a', body: 'x', secret: 'pw' }), s.u({ id: 1, status: 'b', body: 'x', secret: 'pw2' })]);
      await sink.task.put([s.d({ id: 1 }), s.c({ id: 2, status: 'c', body: null, secret: 'pw3' })]);
      expect(await select(t, 'order_id')).toEqual([{ order_id: '2', state: 'c', body: null }]);

      const t2 = table('cdc_map_key');
      const s2 = new EventStream('cdc.public', t2, ['id'], columns);
      const bad = await started({ mode: 'cdc', auto_create: true, columns: { exclude: ['id'] } });
      const err = await caught(bad.task.put([s2.c({ id: 1, status: 'a', body: null })]));
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain('key column');
    });

    it('quotes hostile table and column names from change events, never executing them', async () => {
      // Guarantee: identifiers from change events are data: quotes, backticks and semicolons in them cannot inject SQL.
      const victim = table('victim');
      await admin.query(`CREATE TABLE ${q(victim)} (${q('id')} INT PRIMARY KEY)`);
      const hostile = `${uniqueName('h')}"; DROP TABLE ${victim}; -- \`x`;
      tables.add(hostile);
      const column = 'a"b`c; DROP TABLE x';
      const s = new EventStream('cdc.public', hostile, ['id'], [{ name: 'id', type: 'integer', pk: true }, { name: column, type: 'text' }]);
      const sink = await started({ mode: 'cdc', auto_create: true });
      await sink.task.put([s.c({ id: 1, [column]: "it's \"quoted\" `too`" })]);
      expect(await select(hostile)).toEqual([{ id: '1', [column]: "it's \"quoted\" `too`" }]);
      expect(await count(victim)).toBe(0);
    });

    it('fails the connector, naming the table, when a table is missing and auto_create is off', async () => {
      // Guarantee: a missing table is a configuration problem reported as CONFIG_INVALID, not a stream of bad records.
      const t = uniqueName('missing');
      const s = new EventStream('cdc.public', t, ['id'], columns);
      const sink = await started({ mode: 'cdc' });
      const err = await caught(sink.task.put([s.c({ id: 1, status: 'a', body: null })]));
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain(`table "${t}" does not exist`);
    });
  });

  describe('schema evolution', () => {
    const base: HeaderColumn[] = [
      { name: 'id', type: 'bigint', pk: true },
      { name: 'name', type: 'character varying(40)' },
    ];

    it('adds a column that appears in the change events, then writes it', async () => {
      // Guarantee: a column added upstream mid-stream becomes a column of the target, and no event is lost or fails.
      const t = table('evolve');
      let s = new EventStream('cdc.public', t, ['id'], base);
      const sink = await started({ mode: 'cdc', auto_create: true });
      await sink.task.put([s.c({ id: 1, name: 'a' })]);
      s = s.withColumns([...base, { name: 'price', type: 'numeric(10,2)' }, { name: 'tags', type: 'text[]' }]);
      await sink.task.put([s.c({ id: 2, name: 'b', price: '12.50', tags: ['x', 'y'] }), s.u({ id: 1, name: 'a', price: '1.00', tags: null })]);
      const rows = await select(t);
      expect(rows.map((r) => [r['id'], r['name'], r['price']])).toEqual([
        ['1', 'a', '1.00'],
        ['2', 'b', '12.50'],
      ]);
      expect(sink.counters.get('schema_changes_total{change=add_column}')).toBe(2);
    });

    it('fails the connector on a new column under schema_evolution: fail', async () => {
      // Guarantee: with evolution off, a new column stops the connector with its name rather than dropping its values.
      const t = table('evolve_fail');
      let s = new EventStream('cdc.public', t, ['id'], base);
      const sink = await started({ mode: 'cdc', auto_create: true, schema_evolution: 'fail' });
      await sink.task.put([s.c({ id: 1, name: 'a' })]);
      s = s.withColumns([...base, { name: 'extra', type: 'integer' }]);
      const err = await caught(sink.task.put([s.c({ id: 2, name: 'b', extra: 1 })]));
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain('has no column "extra"');
      expect(await count(t)).toBe(1);
    });

    it('fails the connector, writing nothing, when a column\'s type changes incompatibly', async () => {
      // Guarantee: a source column that changed to a type the target column cannot hold stops the connector instead of corrupting or half-writing.
      const t = table('evolve_type');
      let s = new EventStream('cdc.public', t, ['id'], [...base, { name: 'qty', type: 'integer' }]);
      const sink = await started({ mode: 'cdc', auto_create: true });
      await sink.task.put([s.c({ id: 1, name: 'a', qty: 1 })]);
      s = s.withColumns([...base, { name: 'qty', type: 'text' }]);
      const err = await caught(sink.task.put([s.c({ id: 2, name: 'b', qty: 'many' })]));
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toMatch(/column "qty" of table ".*" is .* in the target, but the source sends text/);
      expect(await count(t)).toBe(1);
    });
  });

  describe('errors', () => {
    it('reports a constraint violation as a bad record with a short message', async () => {
      // Guarantee: a row the database refuses is a record-level error (bisected by the runtime), never retried forever or fatal, and its message does not carry the statement.
      const t = table('constraint');
      await admin.query(`CREATE TABLE ${q(t)} (${q('id')} INT PRIMARY KEY, ${q('code')} VARCHAR(5) NOT NULL)`);
      const sink = await started({ mode: 'insert', table: t });
      const good = Array.from({ length: 999 }, (_, i) => record('e', 0, i, null, { id: i, code: `c${i % 100}` }));
      const err = await caught(sink.task.put([...good, record('e', 0, 999, null, { id: 999, code: 'way too long' })]));
      expect(err).not.toBeInstanceOf(RetriableError);
      expect(err.code).toBe('CONNECTOR_FAILED');
      expect(err.message.length).toBeLessThan(600);
      expect(err.message).not.toContain('c98');
      // The message names the record, so tolerance: none fails with its coordinates.
      expect(err.message).toContain('e/0@999 (the first record of e/0@0..999 that fails)');
      expect(err.context['offset']).toBe('999');
      expect(err.cause).toBeUndefined();
      // Nothing of the batch was applied, and no offset was stored.
      expect(await count(t)).toBe(0);
      expect(await sink.task.committedOffsets!([{ topic: 'e', partition: 0 }])).toEqual([]);
    });

    it('names a bad record of a batch converted before its transaction opens, and writes nothing of that batch', async () => {
      // Guarantee: once the stored offset is known, rows are converted before BEGIN; a value refused then (MySQL) or by the database (Postgres) is still a bad record with its coordinates, and neither rows nor offset move.
      const t = table('early');
      await admin.query(`CREATE TABLE ${q(t)} (${q('id')} INT PRIMARY KEY, ${q('code')} VARCHAR(5), ${q('ts')} ${target.engine === 'mysql' ? 'DATETIME(6)' : 'timestamptz'})`);
      const sink = await started({ mode: 'upsert', table: t });
      const row = (id: number): Record<string, unknown> => ({ code: `c${id}`, ts: '2024-05-01T10:20:30.123456Z' });
      await sink.task.put(Array.from({ length: 10 }, (_, id) => record('u', 0, id, { id }, row(id))));
      // MySQL refuses 'infinity' while converting; Postgres takes it and refuses the too-long code instead.
      const poison = target.engine === 'mysql' ? { code: 'ok', ts: 'infinity' } : { code: 'way too long', ts: '2024-05-01T10:20:30Z' };
      const err = await caught(sink.task.put(Array.from({ length: 10 }, (_, i) => record('u', 0, 10 + i, { id: 10 + i }, i === 5 ? poison : row(10 + i)))));
      expect(err).not.toBeInstanceOf(RetriableError);
      expect(err.code).toBe('CONNECTOR_FAILED');
      expect(err.message).toContain('u/0@15 (the first record of u/0@10..19 that fails)');
      expect(err.context['offset']).toBe('15');
      expect(await count(t)).toBe(10);
      expect(await sink.task.committedOffsets!([{ topic: 'u', partition: 0 }])).toEqual([{ topic: 'u', partition: 0, offset: 10n }]);
      expect(sink.counters.get('rows_total{op=upsert}')).toBe(10);
    });

    it('retries after its connection is killed mid-batch, losing and repeating nothing', async () => {
      // Guarantee: a connection killed server-side in the middle of a transaction is a RetriableError; the retried batch applies every record exactly once.
      const t = table('kill');
      await admin.query(`CREATE TABLE ${q(t)} (${q('id')} INT PRIMARY KEY, ${q('v')} INT)`);
      await admin.query(`INSERT INTO ${q(t)} VALUES (5000, 0)`);
      const sink = await started({ mode: 'upsert', table: t, connections: 1 });
      const batch = Array.from({ length: 3000 }, (_, i) => record('k', 0, i, { id: i + 2001 }, { v: i }));
      await sink.task.put(batch.slice(0, 1000).map((r, i) => ({ ...r, key: Buffer.from(JSON.stringify({ id: i + 1 })) })));
      // A second connection holds a lock on a row the batch updates, so the batch blocks inside its transaction.
      const blocker = await target.admin();
      await blocker.query(target.engine === 'postgres' ? 'BEGIN' : 'START TRANSACTION');
      await blocker.query(`UPDATE ${q(t)} SET ${q('v')} = 1 WHERE ${q('id')} = 5000`);
      const put = sink.task.put(batch.slice(1000)).then(
        () => null,
        (err: unknown) => err,
      );
      await new Promise((r) => setTimeout(r, 500));
      const [session] = sink.sessions();
      await target.kill(admin, session!);
      const err = await put;
      await blocker.query('ROLLBACK');
      await blocker.close();
      expect(err).toBeInstanceOf(RetriableError);
      // The runtime retries the same batch.
      await sink.task.put(batch.slice(1000));
      expect(await count(t)).toBe(3000);
      const values = await admin.query<{ id: unknown; v: unknown }>(`SELECT ${q('id')} AS id, ${q('v')} AS v FROM ${q(t)} WHERE ${q('id')} > 1000 ORDER BY ${q('id')}`);
      expect(values.map((r) => Number(r.v))).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1000));
      expect(await sink.task.committedOffsets!([{ topic: 'k', partition: 0 }])).toEqual([{ topic: 'k', partition: 0, offset: 3000n }]);
    });
  });

  describe('exactly-once', () => {
    it('a crash before the group commit re-delivers records, and none is applied twice', async () => {
      // Guarantee: in insert mode, records re-delivered after a crash are skipped by the stored offsets: zero duplicates.
      const t = table('eo');
      await admin.query(`CREATE TABLE ${q(t)} (${q('n')} INT NOT NULL)`);
      const offsets = table('eo_offsets');
      const batch = (from: number, to: number, partition = 0): SinkRecord[] =>
        Array.from({ length: to - from }, (_, i) => record('eo', partition, from + i, null, { n: partition * 1000 + from + i }));
      const first = await started({ mode: 'insert', table: t, offsets_table: offsets });
      await first.task.put([...batch(0, 100), ...batch(0, 40, 1)]);
      // "Crash": the process dies before the runtime commits the group offsets; the task is never stopped.
      const second = await started({ mode: 'insert', table: t, offsets_table: offsets });
      expect(await second.task.committedOffsets!([{ topic: 'eo', partition: 0 }, { topic: 'eo', partition: 1 }, { topic: 'eo', partition: 2 }])).toEqual([
        { topic: 'eo', partition: 0, offset: 100n },
        { topic: 'eo', partition: 1, offset: 40n },
      ]);
      // The group's committed offsets were older, so the runtime delivers from there again.
      await second.task.put([...batch(0, 150), ...batch(0, 60, 1)]);
      const rows = await admin.query<{ n: unknown }>(`SELECT ${q('n')} AS n FROM ${q(t)} ORDER BY ${q('n')}`);
      expect(rows.map((r) => Number(r.n))).toEqual([...Array.from({ length: 150 }, (_, i) => i), ...Array.from({ length: 60 }, (_, i) => 1000 + i)]);
      expect(second.counters.get('skipped_records_total')).toBe(140);
      // A third instance that never read the offsets table (its cache is empty) finds them while locking.
      const third = await started({ mode: 'insert', table: t, offsets_table: offsets });
      await third.task.put(batch(100, 160));
      expect(await count(t)).toBe(220);
    });

    it('a second writer of the same partition cannot apply a batch the first already applied', async () => {
      // Guarantee: two tasks racing on one partition (a rebalance with a slow old owner) still apply each record once, by the compare-and-set on the offset row.
      const t = table('eo_race');
      await admin.query(`CREATE TABLE ${q(t)} (${q('n')} INT NOT NULL)`);
      const offsets = table('eo_race_offsets');
      const records = Array.from({ length: 20 }, (_, i) => record('race', 0, i, null, { n: i }));
      const a = await started({ mode: 'insert', table: t, offsets_table: offsets });
      const b = await started({ mode: 'insert', table: t, offsets_table: offsets });
      await a.task.put(records.slice(0, 5));
      expect(await a.task.committedOffsets!([{ topic: 'race', partition: 0 }])).toEqual([{ topic: 'race', partition: 0, offset: 5n }]);
      expect(await b.task.committedOffsets!([{ topic: 'race', partition: 0 }])).toEqual([{ topic: 'race', partition: 0, offset: 5n }]);
      // a moves on while b still believes 5 is stored.
      await a.task.put(records.slice(5, 12));
      const err = await caught(b.task.put(records.slice(5, 20)));
      expect(err).toBeInstanceOf(RetriableError);
      await b.task.put(records.slice(5, 20));
      const rows = await admin.query<{ n: unknown }>(`SELECT ${q('n')} AS n FROM ${q(t)} ORDER BY ${q('n')}`);
      expect(rows.map((r) => Number(r.n))).toEqual(Array.from({ length: 20 }, (_, i) => i));
    });

    it('stores the offsets of records that never reached put, so they are not delivered again', async () => {
      // Guarantee: preCommit advances the offset row past records the runtime sent to the DLQ or filtered out at the end of a batch.
      const t = table('eo_pre');
      await admin.query(`CREATE TABLE ${q(t)} (${q('n')} INT NOT NULL)`);
      const sink = await started({ mode: 'insert', table: t });
      await sink.task.put([record('pre', 0, 0, null, { n: 0 })]);
      expect(await sink.task.preCommit!([{ topic: 'pre', partition: 0, offset: 3n }])).toEqual([{ topic: 'pre', partition: 0, offset: 3n }]);
      expect(await sink.task.committedOffsets!([{ topic: 'pre', partition: 0 }])).toEqual([{ topic: 'pre', partition: 0, offset: 3n }]);
      expect(await count(t)).toBe(1);
    });

    it('writes partitions of one batch in parallel, each with its own offset row', async () => {
      // Guarantee: a batch spanning partitions lands whole, and each partition's stored offset covers exactly its records.
      const t = table('parallel');
      await admin.query(`CREATE TABLE ${q(t)} (${q('id')} INT PRIMARY KEY, ${q('p')} INT)`);
      const sink = await started({ mode: 'upsert', table: t, connections: 4 });
      const records: SinkRecord[] = [];
      for (let i = 0; i < 4000; i++) records.push(record('par', i % 4, Math.floor(i / 4), { id: i }, { p: i % 4 }));
      await sink.task.put(records);
      expect(await count(t)).toBe(4000);
      const stored = await sink.task.committedOffsets!([0, 1, 2, 3].map((partition) => ({ topic: 'par', partition })));
      expect(stored.map((o) => o.offset)).toEqual([1000n, 1000n, 1000n, 1000n]);
      expect(new Set(sink.sessions()).size).toBeGreaterThan(1);
    });
  });

  it('health check: passes for a usable target, is retriable for an unreachable one, and CONFIG_INVALID for a missing database', async () => {
    // Guarantee: the runtime waits for a database that is not up yet, and fails at once on a configuration no retry can fix.
    const options = { signal: AbortSignal.timeout(10_000), logger: sinkContext(target.metrics, { connector: 'sql-out' }).ctx.logger };
    const base = target.config({ mode: 'upsert' }) as unknown as Record<string, unknown>;
    const url = new URL(String(base['url']));
    await expect(target.definition.healthCheck!(base, options)).resolves.toBeUndefined();
    const unreachable = new URL(url);
    unreachable.port = '1';
    const down = await caught(target.definition.healthCheck!({ ...base, url: unreachable.toString(), connect_timeout: '2s' }, options));
    expect(down).toBeInstanceOf(RetriableError);
    const missing = new URL(url);
    missing.pathname = '/no_such_database_sluice';
    const wrong = await caught(target.definition.healthCheck!({ ...base, url: missing.toString() }, options));
    expect(wrong.code).toBe('CONFIG_INVALID');
    expect(wrong.message).toContain('no_such_database_sluice');
  });

  it('fails start with CONFIG_INVALID for a key column excluded or {table} outside cdc mode', async () => {
    // Guarantee: a config that cannot work is refused when the task starts, before any record.
    const recorded = target.task({ mode: 'insert', table: '{table}' });
    const err = await caught(recorded.task.start(sinkContext(target.metrics, { connector: 'sql-out' }).ctx));
    expect(isSluiceError(err, 'CONFIG_INVALID')).toBe(true);
    expect(err.message).toContain('{table}');
  });
});

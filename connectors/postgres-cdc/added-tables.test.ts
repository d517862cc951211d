/**
 * Tables that join the publication after the initial snapshot are copied while streaming, against
 * a real private cluster: a table created and filled mid-stream under concurrent writes, a table
 * added with ALTER PUBLICATION that nobody writes to afterwards, and a crash during such a copy.
 */
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { postgresClusterForFile } from '../../test/support/postgres-cluster.ts';
import { Harness, configOf, type ChangeEvent } from './fixtures/harness.ts';

const local = postgresClusterForFile();

async function freshDatabase(name: string): Promise<{ url: string; sql: (text: string, params?: unknown[]) => Promise<pg.QueryResult> }> {
  await local.cluster.query(`CREATE DATABASE ${name}`);
  return { url: local.cluster.url(name), sql: (text, params) => local.cluster.query(text, params, name) };
}

/** Each key's state after applying the events in order, as a sink in cdc mode would. */
function fold(events: readonly ChangeEvent[]): Map<string, unknown> {
  const state = new Map<string, unknown>();
  for (const e of events) {
    if (e.value.op === 't') state.clear();
    else if (e.value.op === 'd') state.delete(JSON.stringify(e.key));
    else state.set(JSON.stringify(e.key), e.value.after);
  }
  return state;
}

async function tableState(sql: (text: string) => Promise<pg.QueryResult>, table: string): Promise<Map<string, unknown>> {
  const rows = (await sql(`SELECT * FROM ${table} ORDER BY id`)).rows as Array<Record<string, unknown>>;
  return new Map(rows.map((r) => [JSON.stringify({ id: r['id'] }), r]));
}

/** Waits until an insert into `marker` made now has been polled: the stream has passed every earlier commit. */
async function caughtUp(h: Harness, sql: (text: string, params?: unknown[]) => Promise<unknown>, id: number): Promise<void> {
  await sql('INSERT INTO marker VALUES ($1)', [id]);
  await h.waitFor(`marker ${id}`, () => h.eventsOf('marker').some((e) => e.key?.['id'] === id), 60_000);
}

describe('postgres-cdc: tables added after the snapshot', () => {
  it('copies a table created and filled while streaming, and its final state per key equals the table despite concurrent updates and deletes', async () => {
    // Guarantee: a table that joins a FOR ALL TABLES publication mid-stream is copied (op r) in a snapshot consistent with the stream, so with writes during its copy every key's last event is its row.
    const db = await freshDatabase('t_added_late');
    await db.sql('CREATE TABLE marker (id int PRIMARY KEY)');
    const h = new Harness(configOf({ url: db.url, slot: 'late_slot', snapshot_chunk_size: 100, batch_size: 500, heartbeat_interval: '1s' }));
    await h.start();
    h.run();
    try {
      await h.waitFor('the initial snapshot', () => h.lines.some((l) => l.message === 'snapshot complete'));
      await db.sql("CREATE TABLE late (id int PRIMARY KEY, v int NOT NULL, note text); INSERT INTO late SELECT g, 0, 'row ' || g FROM generate_series(1, 50000) g");
      // Three writers run until the copy is over, so their commits land before, during and after it.
      let writes = 0;
      let copyDone = false;
      const writer = async (seed: number): Promise<void> => {
        const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % 50000 + 1;
        while (!copyDone || writes < 600) {
          const id = next();
          const kind = writes % 5;
          if (kind === 0) await db.sql('DELETE FROM late WHERE id = $1', [id]);
          else if (kind === 1) await db.sql("INSERT INTO late VALUES ($1, 1, 'again') ON CONFLICT (id) DO UPDATE SET note = 'upserted'", [id]);
          else await db.sql('UPDATE late SET v = v + 1 WHERE id = $1', [id]);
          writes++;
        }
      };
      const writers = Promise.all([writer(7), writer(11), writer(13)]);
      await h.waitFor('the copy to start', () => h.lines.some((l) => l.message?.startsWith('copy of public.late ready')), 60_000);
      const writesBeforeCopy = writes;
      await h.waitFor('the copy of late', () => h.lines.some((l) => l.message === 'snapshot of public.late complete'), 60_000);
      const writesDuringCopy = writes - writesBeforeCopy;
      copyDone = true;
      await writers;
      await caughtUp(h, db.sql, 1);
      expect(writesDuringCopy).toBeGreaterThan(0);
      const events = h.eventsOf('late');
      const copiedRows = events.filter((e) => e.value.op === 'r');
      expect(copiedRows.length).toBeGreaterThan(49000);
      expect(copiedRows.every((e) => e.value.source.snapshot && e.value.source.txid === null)).toBe(true);
      expect(h.lines.some((l) => l.message === 'public.late joined the publication after the snapshot: copying it')).toBe(true);
      expect(h.counters.get('snapshot_rows')).toBeGreaterThanOrEqual(copiedRows.length);
      const expected = await tableState(db.sql, 'late');
      const actual = fold(events);
      expect(actual.size).toBe(expected.size);
      expect(actual).toEqual(expected);
    } finally {
      await h.stop();
    }
  }, 120_000);

  it('copies a filled table added with ALTER PUBLICATION even when nothing writes to it afterwards', async () => {
    // Guarantee: with a listed-tables publication, a table added by ALTER PUBLICATION ... ADD TABLE is found by the periodic check and copied, without waiting for a change to it.
    const db = await freshDatabase('t_added_listed');
    await db.sql('CREATE TABLE marker (id int PRIMARY KEY); CREATE TABLE listed_a (id int PRIMARY KEY)');
    const h = new Harness(
      configOf({ url: db.url, slot: 'listed_slot', tables: { include: ['public.listed_*', 'public.marker'], exclude: [] }, slot_check_interval: '1s', snapshot_chunk_size: 300 }),
    );
    await h.start();
    h.run();
    try {
      await h.waitFor('the initial snapshot', () => h.lines.some((l) => l.message === 'snapshot complete'));
      // Created after the publication: not in it, so none of these inserts is streamed.
      await db.sql("CREATE TABLE listed_b (id int PRIMARY KEY, name text); INSERT INTO listed_b SELECT g, 'b' || g FROM generate_series(1, 1000) g");
      await caughtUp(h, db.sql, 1);
      expect(h.eventsOf('listed_b')).toEqual([]);
      await db.sql('ALTER PUBLICATION listed_slot ADD TABLE listed_b');
      await h.waitFor('the copy of listed_b', () => h.lines.some((l) => l.message === 'snapshot of public.listed_b complete'), 30_000);
      await db.sql("UPDATE listed_b SET name = 'changed' WHERE id = 5");
      await caughtUp(h, db.sql, 2);
      const events = h.eventsOf('listed_b');
      expect(events.filter((e) => e.value.op === 'r').length).toBe(1000);
      expect(fold(events)).toEqual(await tableState(db.sql, 'listed_b'));
    } finally {
      await h.stop();
    }
  }, 60_000);

  it('resumes an interrupted copy after the last stored key, and the final state still equals the table', async () => {
    // Guarantee: a crash during the copy of a table added later loses nothing: the restart streams from the stored change and copies the rest of the table after the last stored key, in a new consistent snapshot.
    const db = await freshDatabase('t_added_crash');
    await db.sql('CREATE TABLE marker (id int PRIMARY KEY)');
    const config = configOf({ url: db.url, slot: 'crash_slot', snapshot_chunk_size: 100, batch_size: 100, heartbeat_interval: '1s' });
    const first = new Harness(config);
    await first.start();
    first.run();
    await first.waitFor('the initial snapshot', () => first.lines.some((l) => l.message === 'snapshot complete'));
    await db.sql('CREATE TABLE crashy (id int PRIMARY KEY, v int NOT NULL); INSERT INTO crashy SELECT g, 0 FROM generate_series(1, 5000) g');
    await first.waitFor('part of the copy', () => first.eventsOf('crashy').filter((e) => e.value.op === 'r').length >= 300);
    await first.stop();
    const stored = first.committed;
    expect(stored[0]!.sourceOffset['phase']).toBe('stream_snapshot');
    const storedAfter = Number((stored[0]!.sourceOffset['after'] as string[])[0]);
    expect(storedAfter).toBeLessThan(5000);
    // Changes while the connector is down: before and after the stored key.
    await db.sql('UPDATE crashy SET v = 1 WHERE id IN (1, 4999); DELETE FROM crashy WHERE id IN (2, 4998)');
    const second = new Harness(config, stored);
    await second.start();
    second.run();
    try {
      await second.waitFor('the rest of the copy', () => second.lines.some((l) => l.message === 'snapshot of public.crashy complete'), 60_000);
      await caughtUp(second, db.sql, 1);
      expect(second.lines.some((l) => l.message === 'resuming the copy of public.crashy after a restart')).toBe(true);
      const resumedKeys = second
        .eventsOf('crashy')
        .filter((e) => e.value.op === 'r')
        .map((e) => e.key!['id'] as number);
      expect(Math.min(...resumedKeys)).toBe(storedAfter + 1);
      // What a sink saw: the first run's records up to the stored offset, then the second run's.
      const durable = first.records.slice(0, first.records.findIndex((r) => r.sourceOffset === stored[0]!.sourceOffset) + 1);
      const events = [...durable, ...second.records].filter((r) => r.topicVars?.['table'] === 'crashy').map((r) => ({ key: JSON.parse(r.key!.toString()), value: JSON.parse(r.value!.toString()) }) as ChangeEvent);
      expect(fold(events)).toEqual(await tableState(db.sql, 'crashy'));
    } finally {
      await second.stop();
    }
  }, 120_000);
});

/**
 * The postgres sink's large-batch upsert path against the real Postgres: a batch of new keys is
 * COPYed straight into the table; a batch that meets existing keys falls back, inside the same
 * transaction, to COPY into a staging table and INSERT ... ON CONFLICT. Either way the table ends
 * exactly as row-by-row upserts would leave it, and a row the table refuses is still a bad record.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SluiceError, type SinkRecord } from '../../core/connector.ts';
import { sinkContext } from '../../test/support/task-context.ts';
import { record } from '../sql-sink/fixtures/records.ts';
import { postgresTarget, uniqueName, type Admin } from '../sql-sink/fixtures/targets.ts';
import { quoteIdent } from './dialect.ts';

/** Upsert records keyed {id} for ids `from`..`to`-1 at offsets starting at `offset`, with `value(id)` as the row. */
function upserts(offset: number, from: number, to: number, value: (id: number) => Record<string, unknown>): SinkRecord[] {
  const out: SinkRecord[] = [];
  for (let id = from; id < to; id++) out.push(record('u', 0, offset + id - from, { id }, value(id)));
  return out;
}

describe('postgres sink: upserts of large batches', () => {
  let admin: Admin;
  const tables: string[] = [];
  const open: Array<{ stop(): Promise<void> }> = [];

  beforeAll(async () => {
    admin = await postgresTarget.admin();
  });

  afterAll(async () => {
    for (const t of open.splice(0)) await t.stop().catch(() => {});
    await postgresTarget.drop(admin, ...tables);
    await admin.close();
  });

  async function started(table: string) {
    const offsets = uniqueName('copy_off');
    tables.push(table, offsets);
    const { task } = postgresTarget.task({ mode: 'upsert', table, offsets_table: offsets, copy_threshold: 10 });
    const context = sinkContext(postgresTarget.metrics, { pipeline: 'p', connector: 'sink' });
    await task.start(context.ctx);
    open.push(task);
    return { task, offsets, ...context };
  }

  const rows = async (table: string): Promise<Array<Record<string, unknown>>> =>
    admin.query(`SELECT id::int AS id, name, score, note FROM ${quoteIdent(table)} ORDER BY id`);

  it('leaves the rows row-by-row upserts would, whether the keys are new, existing or mixed, and keeps unwritten columns', async () => {
    // Guarantee: the COPY-only attempt and its fallback are invisible in the result: new keys are inserted (with column defaults), existing keys updated in the columns the records carry.
    const t = uniqueName('copy_upsert');
    await admin.query(`CREATE TABLE ${quoteIdent(t)} (id integer PRIMARY KEY, name text, score integer, note text NOT NULL DEFAULT 'kept')`);
    const sink = await started(t);

    // All keys new: COPY straight into the table.
    await sink.task.put(upserts(0, 0, 40, (id) => ({ name: `n${id}`, score: id })));
    // Half the keys exist: the COPY fails on the first of them and the batch is merged instead.
    await sink.task.put(upserts(40, 20, 60, (id) => ({ name: `m${id}`, score: id * 10 })));
    // Right after a failed attempt the merge runs directly; new keys only in this one.
    await sink.task.put(upserts(80, 60, 80, (id) => ({ name: `o${id}`, score: -id })));
    // Only existing keys, updating one column.
    await sink.task.put(upserts(100, 0, 20, () => ({ score: 7 })));

    const expected = Array.from({ length: 80 }, (_, id) => ({
      id,
      name: id < 20 ? `n${id}` : id < 60 ? `m${id}` : `o${id}`,
      score: id < 20 ? 7 : id < 60 ? id * 10 : -id,
      note: 'kept',
    }));
    expect(await rows(t)).toEqual(expected);
    const stored = await admin.query<{ next_offset: string }>(`SELECT next_offset FROM ${quoteIdent(sink.offsets)}`);
    expect(stored.map((r) => r.next_offset)).toEqual(['120']);
    expect(sink.counters.get('rows_total{op=upsert}')).toBe(120);
  });

  it('collapses repeated keys of one batch before the COPY, so the last change of each key wins', async () => {
    // Guarantee: a batch that names a key several times writes it once, with its last values merged over its earlier ones.
    const t = uniqueName('copy_dups');
    await admin.query(`CREATE TABLE ${quoteIdent(t)} (id integer PRIMARY KEY, name text, score integer, note text NOT NULL DEFAULT 'kept')`);
    const sink = await started(t);
    const batch = [...upserts(0, 0, 15, (id) => ({ name: `a${id}`, score: id })), ...upserts(15, 0, 15, (id) => ({ score: id + 100 }))];
    await sink.task.put(batch);
    expect(await rows(t)).toEqual(Array.from({ length: 15 }, (_, id) => ({ id, name: `a${id}`, score: id + 100, note: 'kept' })));
  });

  it('reports a row another unique index refuses as a bad record, applying nothing of its batch', async () => {
    // Guarantee: a unique violation that is not about the upsert key is still the record's fault, after the fallback merge refuses it too; the transaction, offsets included, is rolled back.
    const t = uniqueName('copy_unique');
    await admin.query(`CREATE TABLE ${quoteIdent(t)} (id integer PRIMARY KEY, name text UNIQUE, score integer, note text NOT NULL DEFAULT 'kept')`);
    const sink = await started(t);
    const batch = upserts(0, 0, 30, (id) => ({ name: id === 29 ? 'n3' : `n${id}`, score: id }));
    const err = await sink.task.put(batch).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('CONNECTOR_FAILED');
    expect((err as SluiceError).message).toContain('u/0@29');
    expect(await rows(t)).toEqual([]);
    expect(await admin.query(`SELECT next_offset FROM ${quoteIdent(sink.offsets)}`)).toEqual([]);
    // The good records alone go in.
    await sink.task.put(batch.slice(0, 29));
    expect((await rows(t)).length).toBe(29);
  });
});

/**
 * Type round trip Postgres → Postgres: rows of a real table with a column of every mapped type,
 * turned into change events by postgres-cdc's own snapshot code, applied by the postgres sink with
 * auto_create, read back identical, type by type and value by value.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_TYPES, allTypesSql } from '../sql-sink/fixtures/all-types.ts';
import { cdcClient, snapshotRecords } from '../sql-sink/fixtures/cdc-snapshot.ts';
import { sinkContext } from '../../test/support/task-context.ts';
import { PG_URL, postgresTarget, uniqueName } from '../sql-sink/fixtures/targets.ts';
import { quoteIdent } from './dialect.ts';

describe('postgres sink: Postgres → Postgres types', () => {
  let client: pg.Client;
  const tables: string[] = [];

  beforeAll(async () => {
    client = await cdcClient(PG_URL);
  });

  afterAll(async () => {
    for (const t of tables) await client.query(`DROP TABLE IF EXISTS ${quoteIdent(t)}`);
    await client.query(`DROP TYPE IF EXISTS ${quoteIdent('t_mood_rt')}`).catch(() => {});
    await client.end();
  });

  /** Every column as its text output, ordered by id: what psql would show. */
  async function texts(table: string, columns: readonly string[]): Promise<Array<Array<string | null>>> {
    const list = columns.map((c) => `${quoteIdent(c)}::text`).join(', ');
    const res = await client.query({ text: `SELECT ${list} FROM ${quoteIdent(table)} ORDER BY id`, rowMode: 'array' });
    return res.rows as Array<Array<string | null>>;
  }

  async function types(table: string): Promise<Record<string, string>> {
    const res = await client.query<{ name: string; type: string }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
      [quoteIdent(table)],
    );
    return Object.fromEntries(res.rows.map((r) => [r.name, r.type]));
  }

  it('copies every type exactly, creating the target with the same column types', async () => {
    // Guarantee: Postgres → Postgres through change events is lossless: the target table has the source's types and text-identical values, json formatting and numeric digits included.
    const source = uniqueName('types_src');
    const target = uniqueName('types_dst');
    const offsets = uniqueName('types_off');
    tables.push(source, target, offsets);
    for (const sql of allTypesSql(source, quoteIdent)) await client.query(sql);
    // Edge values only Postgres holds: NaN, infinities, BC and far-future dates, a huge json number.
    await client.query(
      `INSERT INTO ${quoteIdent(source)} (id, c_num, c_num_free, c_real, c_float8, c_ts, c_tstz, c_date, c_jsonb, c_json)
       VALUES (4, 'NaN', '123456789012345678901234567890.123456789', 'Infinity', '-Infinity', 'infinity', '-infinity', '0044-03-15 BC',
               '{"big": 12345678901234567890123, "f": 1.10}', '{ "spaced" :  [1,2] , "dup": 1, "dup": 2 }'),
              (5, NULL, NULL, 'NaN', 'NaN', '10000-01-01 00:00:00', '0001-01-01 00:00:00+00 BC', '294276-12-31', NULL, NULL)`,
    );
    const records = await snapshotRecords(client, 'public', source, 'cdc.public');
    expect(records).toHaveLength(5);

    const { task } = postgresTarget.task({ mode: 'cdc', table: target, auto_create: true, offsets_table: offsets });
    await task.start(sinkContext(postgresTarget.metrics, { connector: 'sql-out' }).ctx);
    try {
      await task.put(records);
    } finally {
      await task.stop();
    }

    const columns = ALL_TYPES.map(([name]) => name);
    expect(await texts(target, columns)).toEqual(await texts(source, columns));
    const sourceTypes = await types(source);
    expect(await types(target)).toEqual(sourceTypes);
  });

  it('writes enum and other types the target may lack as text, and arrays of them as text[]', async () => {
    // Guarantee: a type auto_create cannot reproduce becomes text holding the source's text output, never a failed table.
    const source = uniqueName('enum_src');
    const target = uniqueName('enum_dst');
    const offsets = uniqueName('enum_off');
    tables.push(source, target, offsets);
    await client.query(`DROP TYPE IF EXISTS ${quoteIdent('t_mood_rt')}`);
    await client.query(`CREATE TYPE ${quoteIdent('t_mood_rt')} AS ENUM ('sad', 'ok', 'happy')`);
    await client.query(`CREATE TABLE ${quoteIdent(source)} (id int PRIMARY KEY, mood t_mood_rt, moods t_mood_rt[], r int4range, p point)`);
    await client.query(`INSERT INTO ${quoteIdent(source)} VALUES (1, 'happy', '{sad,ok}', '[1,5)', '(1.5,2)'), (2, NULL, NULL, NULL, NULL)`);
    const records = await snapshotRecords(client, 'public', source, 'cdc.public');
    const { task } = postgresTarget.task({ mode: 'cdc', table: target, auto_create: true, offsets_table: offsets });
    await task.start(sinkContext(postgresTarget.metrics, { connector: 'sql-out' }).ctx);
    try {
      await task.put(records);
    } finally {
      await task.stop();
    }
    expect(await types(target)).toEqual({ id: 'integer', mood: 'text', moods: 'text[]', r: 'text', p: 'text' });
    const cols = ['id', 'mood', 'moods', 'r', 'p'];
    expect(await texts(target, cols)).toEqual(await texts(source, cols));
  });
});

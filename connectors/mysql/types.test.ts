/**
 * Type round trip Postgres → MariaDB: rows of a real Postgres table with a column of every mapped
 * type, turned into change events by postgres-cdc's own snapshot code, applied by the mysql sink
 * with auto_create, and compared value by value with what Postgres holds, through the documented
 * type mapping.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetriableError, SluiceError } from '../../core/connector.ts';
import { quoteIdent as pgQuote } from '../postgres/dialect.ts';
import { allTypesSql } from '../sql-sink/fixtures/all-types.ts';
import { cdcClient, snapshotRecords } from '../sql-sink/fixtures/cdc-snapshot.ts';
import { sinkContext } from '../../test/support/task-context.ts';
import { PG_URL, mysqlTarget, uniqueName, type Admin } from '../sql-sink/fixtures/targets.ts';

type Row = Record<string, unknown>;

describe('mysql sink: Postgres → MariaDB types', () => {
  let client: pg.Client;
  let admin: Admin;
  const pgTables: string[] = [];
  const myTables: string[] = [];

  beforeAll(async () => {
    client = await cdcClient(PG_URL);
    admin = await mysqlTarget.admin();
  });

  afterAll(async () => {
    for (const t of pgTables) await client.query(`DROP TABLE IF EXISTS ${pgQuote(t)}`);
    await mysqlTarget.drop(admin, ...myTables);
    await client.end();
    await admin.close();
  });

  async function copy(source: string): Promise<{ target: string; put: () => Promise<void> }> {
    const target = uniqueName('types_dst');
    const offsets = uniqueName('types_off');
    myTables.push(target, offsets);
    const records = await snapshotRecords(client, 'public', source, 'cdc.public');
    const { task } = mysqlTarget.task({ mode: 'cdc', table: target, auto_create: true, offsets_table: offsets });
    return {
      target,
      put: async () => {
        await task.start(sinkContext(mysqlTarget.metrics, { connector: 'sql-out' }).ctx);
        try {
          await task.put(records);
        } finally {
          await task.stop();
        }
      },
    };
  }

  it('maps every type as documented and keeps every value', async () => {
    // Guarantee: Postgres → MySQL through change events creates the documented column types and stores each value without loss (timestamptz as its UTC instant).
    const source = uniqueName('types_src');
    pgTables.push(source);
    for (const sql of allTypesSql(source, pgQuote)) await client.query(sql);
    const { target, put } = await copy(source);
    await put();

    const columns = await admin.query<{ name: string; type: string }>(
      'SELECT COLUMN_NAME AS name, COLUMN_TYPE AS type FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
      [target],
    );
    expect(Object.fromEntries(columns.map((c) => [c.name, c.type]))).toEqual({
      id: 'int(11)',
      c_int2: 'smallint(6)',
      c_int8: 'bigint(20)',
      c_num: 'decimal(12,4)',
      c_num_free: 'longtext',
      c_real: 'float',
      c_float8: 'double',
      c_bool: 'tinyint(1)',
      c_text: 'longtext',
      c_varchar: 'varchar(20)',
      c_char: 'char(5)',
      c_uuid: 'char(36)',
      // MariaDB's JSON is LONGTEXT with a json_valid check.
      c_json: 'longtext',
      c_jsonb: 'longtext',
      c_ts: 'datetime(6)',
      c_tstz: 'datetime(6)',
      c_date: 'date',
      c_time: 'time(6)',
      c_timetz: 'varchar(32)',
      c_interval: 'varchar(64)',
      c_bytea: 'longblob',
      c_int_arr: 'longtext',
      c_text_arr: 'longtext',
      c_inet: 'varchar(64)',
    });

    const pgRows = (
      await client.query<Row>(
        `SELECT *, c_tstz AT TIME ZONE 'UTC' AS tstz_utc, c_bytea AS raw_bytea, c_time::text AS time_text, c_date::text AS date_text FROM ${pgQuote(source)} ORDER BY id`,
        [],
      )
    ).rows;
    // JSON columns as text: mysql2 parses columns the server labels JSON, which would hide a JSON string from a text.
    const myRows = await admin.query<Row>(
      `SELECT *, CONCAT('', c_json) AS json_text, CONCAT('', c_jsonb) AS jsonb_text, CONCAT('', c_int_arr) AS int_arr_text, CONCAT('', c_text_arr) AS text_arr_text FROM \`${target}\` ORDER BY id`,
    );
    expect(myRows).toHaveLength(pgRows.length);

    for (let i = 0; i < pgRows.length; i++) {
      const p = pgRows[i]!;
      const m = myRows[i]!;
      const at = `row id ${String(p['id'])}`;
      const nullOr = <T>(v: unknown, f: (x: unknown) => T): T | null => (v === null || v === undefined ? null : f(v));
      const json = (v: unknown): unknown => (v === null ? null : JSON.parse(String(v)));
      expect(m['c_int2'] === null ? null : Number(m['c_int2']), at).toBe(nullOr(p['c_int2'], Number));
      expect(m['c_int8'], at).toBe(p['c_int8']);
      expect(m['c_num'], at).toBe(p['c_num']);
      expect(m['c_num_free'], at).toBe(p['c_num_free']);
      if (p['c_real'] === null) expect(m['c_real']).toBeNull();
      else expect(Number(m['c_real']) / Number(p['c_real']), at).toBeCloseTo(1, 6);
      expect(nullOr(m['c_float8'], Number), at).toBe(nullOr(p['c_float8'], Number));
      expect(nullOr(m['c_bool'], Number), at).toBe(nullOr(p['c_bool'], (b) => (b ? 1 : 0)));
      expect(m['c_text'], at).toBe(p['c_text']);
      expect(m['c_varchar'], at).toBe(p['c_varchar']);
      // MySQL's CHAR drops the pad spaces Postgres' character(n) keeps.
      expect(m['c_char'], at).toBe(nullOr(p['c_char'], (c) => String(c).trimEnd()));
      expect(m['c_uuid'], at).toBe(p['c_uuid']);
      expect(json(m['json_text']), at).toEqual(p['c_json']);
      expect(json(m['jsonb_text']), at).toEqual(p['c_jsonb']);
      expect(m['c_bytea'] === null ? null : (m['c_bytea'] as Buffer).toString('hex'), at).toBe(nullOr(p['raw_bytea'], (b) => (b as Buffer).toString('hex')));
      expect(json(m['int_arr_text']), at).toEqual(p['c_int_arr']);
      expect(json(m['text_arr_text']), at).toEqual(p['c_text_arr']);
      expect(m['c_inet'], at).toBe(p['c_inet']);
      expect(m['c_date'], at).toBe(p['date_text']);
      expect(m['c_time'], at).toBe(nullOr(p['time_text'], (t) => `${String(t)}${String(t).includes('.') ? '' : '.'}`.replace(/\.(\d*)$/, (_x, f: string) => `.${f.padEnd(6, '0')}`)));
    }

    // Datetimes, compared as text in UTC on both sides, to the microsecond.
    const pgTimes = (
      await client.query<{ ts: string | null; tstz: string | null; timetz: string | null; iv: string | null }>(
        `SELECT to_char(c_ts, 'YYYY-MM-DD HH24:MI:SS.US') AS ts, to_char(c_tstz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS tstz,
                c_timetz::text AS timetz, c_interval::text AS iv FROM ${pgQuote(source)} ORDER BY id`,
      )
    ).rows;
    const myTimes = await admin.query<{ ts: string | null; tstz: string | null; timetz: string | null; iv: string | null }>(
      `SELECT c_ts AS ts, c_tstz AS tstz, c_timetz AS timetz, c_interval AS iv FROM \`${target}\` ORDER BY id`,
    );
    expect(myTimes.map((r) => [r.ts, r.tstz])).toEqual(pgTimes.map((r) => [r.ts, r.tstz]));
    // timetz and interval keep postgres-cdc's text, which Postgres reads back as the same value.
    for (let i = 0; i < myTimes.length; i++) {
      if (pgTimes[i]!.timetz === null) {
        expect(myTimes[i]!.timetz).toBeNull();
        continue;
      }
      const back = await client.query<{ same: boolean }>('SELECT $1::timetz = $2::timetz AND $3::interval = $4::interval AS same', [
        myTimes[i]!.timetz,
        pgTimes[i]!.timetz,
        myTimes[i]!.iv,
        pgTimes[i]!.iv,
      ]);
      expect(back.rows[0]!.same).toBe(true);
    }
  });

  it('refuses values MySQL cannot hold (infinity, BC dates, NaN) as bad records, writing nothing of their batch', async () => {
    // Guarantee: a value outside MySQL's range is a record-level error the runtime can bisect to the DLQ, never a silently altered value.
    const source = uniqueName('types_edge');
    pgTables.push(source);
    await client.query(`CREATE TABLE ${pgQuote(source)} (id int PRIMARY KEY, ts timestamptz, d date, f double precision)`);
    for (const [values, what] of [
      [`(1, 'infinity', NULL, NULL)`, 'infinity'],
      [`(1, NULL, '0044-03-15 BC', NULL)`, 'BC'],
      [`(1, NULL, NULL, 'NaN')`, 'NaN'],
    ] as const) {
      await client.query(`TRUNCATE ${pgQuote(source)}`);
      await client.query(`INSERT INTO ${pgQuote(source)} VALUES (0, now(), current_date, 1), ${values}`);
      const { target, put } = await copy(source);
      let error: unknown;
      try {
        await put();
      } catch (err) {
        error = err;
      }
      expect(error, what).toBeInstanceOf(SluiceError);
      expect(error, what).not.toBeInstanceOf(RetriableError);
      expect((error as SluiceError).code, what).toBe('CONNECTOR_FAILED');
      expect((error as SluiceError).message, what).toContain('cdc.public/0@1');
      const rows = await admin.query<{ n: unknown }>(`SELECT count(*) AS n FROM \`${target}\``);
      expect(Number(rows[0]!.n), what).toBe(0);
    }
  });
});

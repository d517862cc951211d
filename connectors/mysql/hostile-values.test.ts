/**
 * The mysql sink sends values only as statement parameters: against the real MariaDB, values built
 * to break out of a string literal land byte for byte, and placeholder-like characters in
 * identifiers or values are never substituted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sinkContext } from '../../test/support/task-context.ts';
import { record } from '../sql-sink/fixtures/records.ts';
import { mysqlTarget, uniqueName, type Admin } from '../sql-sink/fixtures/targets.ts';
import { quoteIdent } from './dialect.ts';

const HOSTILE = [
  "'); DROP TABLE victim; --",
  'ends with a backslash \\',
  "\\'; SELECT 1; -- ",
  'nul \u0000 byte, ctrl-z \u001a, tab \t, newline \n, cr \r, backspace \b',
  'two ?? and one ? placeholder, and :named',
  'emoji 😀 and café',
  '"double" `back` \'single\'',
  '',
];

describe('mysql sink: hostile values and identifiers', () => {
  let admin: Admin;
  const tables: string[] = [];
  const open: Array<{ stop(): Promise<void> }> = [];

  beforeAll(async () => {
    admin = await mysqlTarget.admin();
  });

  afterAll(async () => {
    for (const t of open.splice(0)) await t.stop().catch(() => {});
    await mysqlTarget.drop(admin, ...tables);
    await admin.close();
  });

  it('stores hostile strings and bytes exactly, with ? in column names left alone', async () => {
    // Guarantee: no value and no identifier can change the statement: every string comes back as sent, the victim table is untouched.
    const t = uniqueName('esc');
    const victim = uniqueName('victim');
    const offsets = uniqueName('esc_off');
    tables.push(t, victim, offsets);
    const column = 'v?';
    await admin.query(`CREATE TABLE ${quoteIdent(victim)} (id INT PRIMARY KEY)`);
    await admin.query(`CREATE TABLE ${quoteIdent(t)} (id INT PRIMARY KEY, ${quoteIdent(column)} LONGTEXT, b LONGBLOB) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
    const { task } = mysqlTarget.task({ mode: 'upsert', table: t, offsets_table: offsets });
    const context = sinkContext(mysqlTarget.metrics, { pipeline: 'p', connector: 'sink' });
    await task.start(context.ctx);
    open.push(task);

    const bytes = Buffer.from([0x00, 0x27, 0x5c, 0x22, 0xff, 0x0a]);
    await task.put(HOSTILE.map((text, id) => record('u', 0, id, { id }, { [column]: text, b: bytes.toString('base64') })));
    // The same keys again: the update half of the upsert takes them alike.
    await task.put(HOSTILE.map((text, id) => record('u', 0, HOSTILE.length + id, { id }, { [column]: `${text}${text}` })));

    const rows = await admin.query<Record<string, unknown>>(`SELECT id, ${quoteIdent(column)} AS v, b FROM ${quoteIdent(t)} ORDER BY id`);
    expect(rows.map((r) => r['v'])).toEqual(HOSTILE.map((text) => `${text}${text}`));
    expect(rows.map((r) => Buffer.from(r['b'] as Buffer).toString('hex'))).toEqual(HOSTILE.map(() => bytes.toString('hex')));
    expect(Number((await admin.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${quoteIdent(victim)}`))[0]!.n)).toBe(0);
  });
});

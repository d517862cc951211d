/**
 * The mysql sink against the connector conformance suite: its examples and docs, a restart
 * mid-stream, and a timely stop, in a real runtime on a real log, appending into a real MariaDB
 * table.
 */
import mysql2 from 'mysql2/promise';
import { describeSinkConformance } from '../../test/conformance/suite.ts';
import { MYSQL_URL, uniqueName } from '../sql-sink/fixtures/targets.ts';
import { quoteIdent } from './dialect.ts';
import { mysql } from './index.ts';

/** The table a check writes into, and a connection to read it back and drop it. */
interface Target {
  readonly table: string;
  readonly offsets: string;
  readonly connection: mysql2.Connection;
}

describeSinkConformance(mysql, {
  setup: async (): Promise<Target> => {
    const connection = await mysql2.createConnection({ uri: MYSQL_URL });
    return { table: uniqueName('conformance'), offsets: uniqueName('conformance_offsets'), connection };
  },
  teardown: async ({ fixture }) => {
    await fixture.connection.query(`DROP TABLE IF EXISTS ${quoteIdent(fixture.table)}`);
    await fixture.connection.query(`DROP TABLE IF EXISTS ${quoteIdent(fixture.offsets)}`);
    await fixture.connection.end();
  },
  configFor: ({ fixture }) => ({ url: MYSQL_URL, mode: 'insert', table: fixture.table, offsets_table: fixture.offsets, auto_create: true }),
  // Each row's id column holds the feeder's record id.
  readBack: async ({ fixture }) => {
    try {
      const [rows] = await fixture.connection.query<mysql2.RowDataPacket[]>(`SELECT id FROM ${quoteIdent(fixture.table)}`);
      return rows.map((r) => String(r['id']));
    } catch (err) {
      if ((err as { errno?: unknown }).errno === 1146) return [];
      throw err;
    }
  },
  // Offsets live in the target, in the same transaction as the rows: a restart repeats nothing.
  maxDuplicates: 0,
});

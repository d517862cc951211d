/**
 * The postgres sink against the connector conformance suite: its examples and docs, a restart
 * mid-stream, and a timely stop, in a real runtime on a real log, appending into a real table.
 */
import pg from 'pg';
import { describeSinkConformance } from '../../test/conformance/suite.ts';
import { PG_URL, uniqueName } from '../sql-sink/fixtures/targets.ts';
import { quoteIdent } from './dialect.ts';
import { postgres } from './index.ts';

/** The table a check writes into, and a client to read it back and drop it. */
interface Target {
  readonly table: string;
  readonly offsets: string;
  readonly client: pg.Client;
}

describeSinkConformance(postgres, {
  setup: async (): Promise<Target> => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    return { table: uniqueName('conformance'), offsets: uniqueName('conformance_offsets'), client };
  },
  teardown: async ({ fixture }) => {
    await fixture.client.query(`DROP TABLE IF EXISTS ${quoteIdent(fixture.table)}`);
    await fixture.client.query(`DROP TABLE IF EXISTS ${quoteIdent(fixture.offsets)}`);
    await fixture.client.end();
  },
  configFor: ({ fixture }) => ({ url: PG_URL, mode: 'insert', table: fixture.table, offsets_table: fixture.offsets, auto_create: true }),
  // Each row's id column holds the feeder's record id.
  readBack: async ({ fixture }) => {
    const exists = await fixture.client.query('SELECT to_regclass($1) AS t', [quoteIdent(fixture.table)]);
    if (exists.rows[0]?.t === null) return [];
    return (await fixture.client.query<{ id: string }>(`SELECT id FROM ${quoteIdent(fixture.table)}`)).rows.map((r) => r.id);
  },
  // Offsets live in the target, in the same transaction as the rows: a restart repeats nothing.
  maxDuplicates: 0,
});

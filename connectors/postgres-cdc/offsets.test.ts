/**
 * The ordering postgres-cdc gives the runtime for restarts without duplicates (compareOffsets):
 * its contract on made-up offsets, and the three requirements of SourceConnector.compareOffsets
 * checked on what a real slot streams, transaction markers included.
 */
import { describe, expect, it } from 'vitest';
import type { SourceRecord } from '../../core/connector.ts';
import { postgresClusterForFile } from '../../test/support/postgres-cluster.ts';
import { Harness, configOf } from './fixtures/harness.ts';
import { postgresCdc } from './index.ts';

const local = postgresClusterForFile();
const compare = postgresCdc.compareOffsets!;

const stream = (lsn: string, seq: number, system: string | null = '7301'): Record<string, string | number | null> => ({ system, phase: 'stream', lsn, seq });

describe('postgres-cdc compareOffsets', () => {
  it('orders streamed changes by commit LSN as a number, then by ordinal', () => {
    // Guarantee: stream offsets compare by (commit LSN as a 64-bit number, ordinal), never as text.
    expect(compare(stream('0/16B3748', 3), stream('0/16B3748', 3))).toBe(0);
    expect(compare(stream('0/16B3748', 2), stream('0/16B3748', 3))).toBeLessThan(0);
    expect(compare(stream('0/16B3748', 9), stream('0/16B3750', 0))).toBeLessThan(0);
    // As text '9/0' sorts after '10/0'; as LSNs it comes first.
    expect(compare(stream('9/0', 5), stream('10/0', 1))).toBeLessThan(0);
    expect(compare(stream('1/0', 0), stream('0/FFFFFFFF', 7))).toBeGreaterThan(0);
  });

  it('refuses to order snapshot rows, other clusters and foreign offsets', () => {
    // Guarantee: compareOffsets returns null (so nothing is ever dropped) for anything but two streamed changes of one cluster, and never throws.
    const initialRow = { system: '7301', phase: 'snapshot', lsn: '0/1000', done: [], table: 'public.t', after: ['5'], rows: 5 };
    const addedTableRow = { system: '7301', phase: 'stream_snapshot', lsn: '0/16B3748', seq: 3, copied: [16384], table: 'public.t', oid: 16385, after: ['5'], rows: 5 };
    expect(compare(initialRow, initialRow)).toBeNull();
    expect(compare(initialRow, stream('0/16B3748', 3))).toBeNull();
    expect(compare(stream('0/16B3748', 3), initialRow)).toBeNull();
    expect(compare(addedTableRow, stream('0/16B3748', 3))).toBeNull();
    expect(compare(addedTableRow, addedTableRow)).toBeNull();
    expect(compare(stream('0/1', 1, '7301'), stream('0/2', 1, '9999'))).toBeNull();
    expect(compare({ position: 10 }, { position: 20 })).toBeNull();
    expect(compare(stream('not an lsn', 1), stream('0/2', 1))).toBeNull();
    expect(compare({ phase: 'stream', lsn: '0/1', seq: '1' }, stream('0/1', 1, null))).toBeNull();
  });

  it('gives streamed records offsets that never decrease, are shared only within one poll, and repeat with the same keys when re-streamed', async () => {
    // Guarantee: on a real slot, with transaction markers, key changes and a truncate of two tables, the three requirements of compareOffsets hold.
    await local.cluster.query('CREATE DATABASE t_offsets');
    const sql = (text: string): Promise<unknown> => local.cluster.query(text, [], 't_offsets');
    await sql('CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text)');
    const config = configOf({ url: local.cluster.url('t_offsets'), slot: 'offsets_slot', snapshot: 'never', include_transaction_markers: true, batch_size: 3, heartbeat_interval: '0s' });
    const first = new Harness(config);
    await first.start();
    const polls: SourceRecord[][] = [];
    // The first poll opens the stream: changes made after it are streamed.
    polls.push([...(await first.task.poll(first.abort.signal))]);
    await sql("INSERT INTO a SELECT g, 'x' FROM generate_series(1, 5) g; INSERT INTO b VALUES (1, 'y')");
    await sql("BEGIN; UPDATE a SET id = 10 WHERE id = 1; UPDATE a SET v = 'z' WHERE id = 2; DELETE FROM b WHERE id = 1; COMMIT");
    await sql('TRUNCATE a, b');
    await sql("INSERT INTO a VALUES (1, 'again')");
    // 4 transactions, each with BEGIN and END; 6 inserts; the key change (d, c), an update and a delete; 2 truncates; 1 insert.
    const expected = 8 + 6 + 4 + 2 + 1;
    const deadline = Date.now() + 30_000;
    while (polls.flat().length < expected && Date.now() < deadline) polls.push([...(await first.task.poll(first.abort.signal))]);
    await first.stop();
    const records = polls.flat();
    expect(records.length).toBe(expected);
    const pollOf = polls.flatMap((batch, i) => batch.map(() => i));
    let shared = 0;
    for (let i = 1; i < records.length; i++) {
      const order = compare(records[i - 1]!.sourceOffset, records[i]!.sourceOffset);
      expect(order).not.toBeNull();
      expect(order!).toBeLessThanOrEqual(0);
      if (order === 0) {
        shared++;
        expect(pollOf[i]).toBe(pollOf[i - 1]);
      }
    }
    // The key change (d + c) and the truncate of two tables share offsets.
    expect(shared).toBe(2);

    // Resume after the first record, as after a crash that stored only its offset.
    const stored = [{ sourcePartition: records[0]!.sourcePartition, sourceOffset: records[0]!.sourceOffset }];
    const second = new Harness(config, stored);
    await second.start();
    const again: SourceRecord[] = [];
    const until = Date.now() + 30_000;
    while (again.length < expected - 1 && Date.now() < until) again.push(...(await second.task.poll(second.abort.signal)));
    await second.stop();
    await local.cluster.query("SELECT pg_drop_replication_slot('offsets_slot')");
    const view = (r: SourceRecord): unknown => [r.sourceOffset, r.key?.toString() ?? null, r.topicVars];
    expect(again.map(view)).toEqual(records.slice(1).map(view));
  });
});

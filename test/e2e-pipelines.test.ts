/**
 * The shipped example pipelines that no other end-to-end test runs, run exactly as a user would:
 * the spec file copied unchanged, `sluice run` as a child process, settings through the
 * environment variables the spec documents. (quickstart, app-logs and postgres-cdc have their own
 * files: e2e-quickstart, e2e-file-tail, e2e-postgres-cdc.)
 */
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, cleanUp, completeLines, start, tempDir, waitFor } from './e2e-helpers.ts';
import { postgresClusterForFile } from './support/postgres-cluster.ts';
import { freePort } from './support/free-port.ts';

const local = postgresClusterForFile();
const suffix = `${process.pid}_${Date.now().toString(36)}`;

afterEach(cleanUp);

async function copyPipeline(name: string): Promise<string> {
  const dir = await tempDir(`pipeline-${name}`);
  copyFileSync(path.join(ROOT, 'pipelines', `${name}.yaml`), path.join(dir, `${name}.yaml`));
  return dir;
}

/** A source database on the private logical-replication cluster with an orders table and two rows. */
async function sourceDatabase(label: string): Promise<{ url: string; sql: (text: string) => Promise<unknown> }> {
  const name = `pipe_${label}_${suffix}`;
  await local.cluster.query(`CREATE DATABASE ${name}`);
  const sql = async (text: string): Promise<unknown> => (await local.cluster.query(text, [], name)).rows;
  await sql('CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, total numeric(10,2), note text)');
  await sql("INSERT INTO orders VALUES (1, 'ada', 12.50, 'first'), (2, 'bob', 3.20, NULL)");
  return { url: local.cluster.url(name), sql };
}

describe('example pipelines', () => {
  it('runs pipelines/clickstream.yaml: a POSTed event is answered 200 and lands in the output file', async () => {
    // Guarantee: the shipped clickstream collector works as its comment says, from curl to the JSON-lines file.
    const dir = await copyPipeline('clickstream');
    const port = await freePort();
    const run = start(['run', 'clickstream.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd: dir, env: { WEBHOOK_PORT: String(port) } });
    await run.apiUrl();
    let answer: Response | null = null;
    await waitFor(
      async () => {
        try {
          answer = await fetch(`http://127.0.0.1:${port}/collect`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify([
              { user_id: 'u-1', event: 'page_view', url: '/' },
              { user_id: 'u-1', event: 'click', target: 'buy' },
            ]),
          });
          return true;
        } catch {
          return false;
        }
      },
      { what: 'the webhook to listen' },
    );
    expect(answer!.status).toBe(200);
    const out = path.join(dir, 'data/out/clickstream.jsonl');
    await waitFor(() => completeLines(out).length === 2, { what: 'both events in the output file' });
    expect(completeLines(out).map((l) => JSON.parse(l) as { event: string })).toEqual([
      { user_id: 'u-1', event: 'page_view', url: '/' },
      { user_id: 'u-1', event: 'click', target: 'buy' },
    ]);
    expect((await run.stop()).code).toBe(0);
  });

  it('runs pipelines/postgres-to-mysql.yaml: snapshot and streamed changes arrive in MariaDB', async () => {
    // Guarantee: the shipped Postgres → MySQL sync creates the target table and keeps it equal to the source, snapshot then stream.
    const source = await sourceDatabase('mysql');
    const target = `pipe_mysql_${suffix}`;
    const admin = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
    try {
      await admin.query(`CREATE DATABASE \`${target}\``);
      const dir = await copyPipeline('postgres-to-mysql');
      const run = start(['run', 'postgres-to-mysql.yaml', '--data-dir', 'data', '--no-api', '--status-interval', '0'], {
        cwd: dir,
        env: { SOURCE_URL: source.url, TARGET_URL: `mysql://root@127.0.0.1:3306/${target}` },
      });
      const rows = async (): Promise<unknown[]> => {
        try {
          const [result] = await admin.query(`SELECT id, customer, total, note FROM \`${target}\`.\`orders\` ORDER BY id`);
          return (result as Array<Record<string, unknown>>).map((r) => ({ ...r, id: Number(r['id']), total: r['total'] === null ? null : String(r['total']) }));
        } catch {
          return [];
        }
      };
      await waitFor(async () => (await rows()).length === 2, { timeoutMs: 60_000, what: 'the snapshot rows in MariaDB' });
      await source.sql("INSERT INTO orders VALUES (3, 'cy', 7.00, 'streamed')");
      await source.sql("UPDATE orders SET total = 99.99, note = 'changed' WHERE id = 1");
      await source.sql('DELETE FROM orders WHERE id = 2');
      const expected = [
        { id: 1, customer: 'ada', total: '99.99', note: 'changed' },
        { id: 3, customer: 'cy', total: '7.00', note: 'streamed' },
      ];
      await waitFor(async () => JSON.stringify(await rows()) === JSON.stringify(expected), { timeoutMs: 60_000, what: 'the streamed changes in MariaDB' });
      expect((await run.stop()).code).toBe(0);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS \`${target}\``);
      await admin.end();
    }
  });

  it('runs pipelines/postgres-to-postgres.yaml: snapshot and streamed changes arrive in the replica', async () => {
    // Guarantee: the shipped Postgres → Postgres sync keeps the replica equal to the source, types included.
    const source = await sourceDatabase('pg');
    const target = `pipe_pg_${suffix}`;
    const admin = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${target}`);
      const dir = await copyPipeline('postgres-to-postgres');
      const run = start(['run', 'postgres-to-postgres.yaml', '--data-dir', 'data', '--no-api', '--status-interval', '0'], {
        cwd: dir,
        env: { SOURCE_URL: source.url, TARGET_URL: `postgres://postgres@127.0.0.1:5432/${target}` },
      });
      const replica = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: target });
      await replica.connect();
      try {
        const rows = async (): Promise<unknown[]> => {
          try {
            return (await replica.query('SELECT id::int AS id, customer, total::text AS total, note FROM public.orders ORDER BY id')).rows;
          } catch {
            return [];
          }
        };
        await waitFor(async () => (await rows()).length === 2, { timeoutMs: 60_000, what: 'the snapshot rows in the replica' });
        await source.sql("INSERT INTO orders VALUES (3, 'cy', 7.00, 'streamed')");
        await source.sql("UPDATE orders SET total = 99.99, note = 'changed' WHERE id = 1");
        await source.sql('DELETE FROM orders WHERE id = 2');
        const expected = [
          { id: 1, customer: 'ada', total: '99.99', note: 'changed' },
          { id: 3, customer: 'cy', total: '7.00', note: 'streamed' },
        ];
        await waitFor(async () => JSON.stringify(await rows()) === JSON.stringify(expected), { timeoutMs: 60_000, what: 'the streamed changes in the replica' });
        const type = await replica.query("SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total'");
        expect(type.rows[0]).toEqual({ data_type: 'numeric', numeric_precision: 10, numeric_scale: 2 });
        expect((await run.stop()).code).toBe(0);
      } finally {
        await replica.end();
      }
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
      await admin.end();
    }
  });
});

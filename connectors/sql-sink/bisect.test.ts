/**
 * The postgres and mysql sinks in a real Runtime on a real embedded log, fed by a tiny source
 * that emits a known batch: a poison record among good ones is bisected out by the runtime and
 * lands in the DLQ under tolerance: all, and fails the connector with its coordinates under
 * tolerance: none.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineRegistry, defineSource, type Logger, type SourceRecord, type SourceTaskContext } from '../../core/connector.ts';
import { openLog } from '../../core/log/embedded-log.ts';
import { DLQ_HEADERS, dlqTopic } from '../../core/runtime/dlq.ts';
import { Runtime } from '../../core/runtime/runtime.ts';
import { validateSpecTexts } from '../../core/spec/index.ts';
import { MYSQL_URL, PG_URL, TARGETS, uniqueName, type Admin, type SqlTarget } from './fixtures/targets.ts';

/**
 * Emits `count` upsert records `{id: n}` → `{v: n}` in one poll, except at `poison`, whose value
 * `{v: "poison"}` no integer column takes. Its source offset is `{ next }`, so a restart resumes.
 */
const rows = defineSource({
  kind: 'source',
  name: 'rows',
  description: 'Emits numbered rows with one poison record (test connector).',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['count', 'poison'],
    properties: {
      count: { type: 'integer', minimum: 1, description: 'How many records to emit.' },
      poison: { type: 'integer', minimum: 0, description: 'The index of the record no integer column accepts.' },
    },
  } as const,
  createTask: (config) => {
    let next = 0;
    return {
      async start(ctx: SourceTaskContext) {
        const stored = ctx.committedOffset({ rows: ctx.connector });
        next = typeof stored?.['next'] === 'number' ? stored['next'] : 0;
      },
      async poll() {
        if (next >= config.count) {
          await new Promise((r) => setTimeout(r, 50));
          return [];
        }
        const out: SourceRecord[] = [];
        for (; next < config.count; next++) {
          out.push({
            sourcePartition: { rows: 'rows' },
            sourceOffset: { next: next + 1 },
            key: Buffer.from(JSON.stringify({ id: next })),
            value: Buffer.from(JSON.stringify({ v: next === config.poison ? 'poison' : next })),
          });
        }
        return out;
      },
      async commit() {},
      async stop() {},
    };
  },
});

function silentLogger(): Logger {
  const noop = (): void => {};
  const logger: Logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, child: () => logger };
  return logger;
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(TARGETS.map((t) => [t.engine, t] as const))('%s sink in a runtime', (_engine, target: SqlTarget) => {
  let admin: Admin;
  const tables: string[] = [];
  const dirs: string[] = [];

  beforeAll(async () => {
    admin = await target.admin();
  });

  afterAll(async () => {
    await target.drop(admin, ...tables);
    await admin.close();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function run(options: { tolerance: 'all' | 'none'; poison: number; count: number }) {
    const table = uniqueName('bisect');
    const offsets = uniqueName('bisect_offsets');
    tables.push(table, offsets);
    await admin.query(`CREATE TABLE ${admin.quote(table)} (${admin.quote('id')} INT PRIMARY KEY, ${admin.quote('v')} INT NOT NULL)`);
    const pipeline = `bisect-${options.tolerance}`;
    const url = target.engine === 'postgres' ? PG_URL : MYSQL_URL;
    const yaml = `
name: ${pipeline}
topics: [{ name: rows, partitions: 1 }]
sources:
  - { name: src, connector: rows, topic: rows, config: { count: ${options.count}, poison: ${options.poison} } }
sinks:
  - name: db
    connector: ${target.engine}
    topics: [rows]
    errors: { tolerance: ${options.tolerance}, dlq: true, retry_timeout: 5s }
    config: { url: "${url}", mode: upsert, table: ${table}, offsets_table: ${offsets} }
`;
    const registry = defineRegistry([rows, target.definition]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sql-bisect-'));
    dirs.push(dir);
    const { problems, specs } = validateSpecTexts([{ file: path.join(dir, 'spec.yaml'), text: yaml }], { registry, env: {} });
    expect(problems).toEqual([]);
    const log = await openLog(path.join(dir, 'log'), { maintenanceIntervalMs: 0 });
    const runtime = await Runtime.start(specs, { log, registry, logger: silentLogger(), statusIntervalMs: 0, shutdownTimeoutMs: 5000 });
    const stop = async (): Promise<void> => {
      await runtime.stop();
      await log.close();
    };
    return { runtime, log, table, offsets, pipeline, stop };
  }

  it('one poison record in a batch of 1000 goes to the DLQ and the other 999 are applied', async () => {
    // Guarantee: under tolerance all, the runtime bisects the failing batch down to the one bad row; it lands in the DLQ with its coordinates and every other row is written exactly once.
    const { runtime, log, table, offsets, pipeline, stop } = await run({ tolerance: 'all', poison: 637, count: 1000 });
    try {
      const count = async (): Promise<number> => Number((await admin.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${admin.quote(table)}`))[0]!.n);
      const dlq = dlqTopic(pipeline, 'db');
      const dlqSize = async (): Promise<bigint> => ((await log.listTopics()).includes(dlq) ? (await log.describeTopic(dlq)).partitions[0]!.endOffset : 0n);
      await until(async () => (await count()) === 999 && (await dlqSize()) === 1n, '999 rows and one dead letter');
      const letter = (await log.read(dlq, 0, 0n)).records[0]!;
      expect(JSON.parse(letter.value!.toString())).toEqual({ v: 'poison' });
      expect(letter.headers[DLQ_HEADERS.offset]!.toString()).toBe('637');
      expect(letter.headers[DLQ_HEADERS.error]!.toString()).toMatch(/refused a row/);
      const ids = await admin.query<{ id: unknown }>(`SELECT ${admin.quote('id')} AS id FROM ${admin.quote(table)} ORDER BY ${admin.quote('id')}`);
      expect(ids.map((r) => Number(r.id))).toEqual(Array.from({ length: 1000 }, (_, i) => i).filter((i) => i !== 637));
      // The offsets table covers the whole batch, the dead letter included.
      await until(async () => {
        const stored = await admin.query<{ n: unknown }>(`SELECT next_offset AS n FROM ${admin.quote(offsets)}`);
        return stored.length === 1 && Number(stored[0]!.n) === 1000;
      }, 'the stored offset to reach 1000');
      expect(runtime.status('db').state).toBe('RUNNING');
    } finally {
      await stop();
    }
  });

  it('under tolerance none, the connector fails with the poison record\'s coordinates and applies nothing of its batch', async () => {
    // Guarantee: without tolerance a bad row stops the sink, its error names topic/partition@offset of that record, and the batch leaves no partial rows.
    const { runtime, table, stop } = await run({ tolerance: 'none', poison: 412, count: 1000 });
    try {
      await until(async () => runtime.status('db').state === 'FAILED', 'the sink to fail');
      const status = runtime.status('db');
      expect(status.tasks[0]!.error!.message).toContain('rows/0@412');
      expect(Number((await admin.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${admin.quote(table)}`))[0]!.n)).toBe(0);
    } finally {
      await stop();
    }
  });
});

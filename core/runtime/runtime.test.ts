import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defineRegistry, defineSink, defineSource, RetriableError, SluiceError, type SinkRecord, type SourceRecord, type SourceTaskContext } from '../connector.ts';
import { openLog, type EmbeddedLog } from '../log/embedded-log.ts';
import type { Logger } from '../connector.ts';
import { validateSpecTexts } from '../spec/index.ts';
import { DLQ_HEADERS, dlqTopic } from './dlq.ts';
import { MARK_HEADER } from './source-marks.ts';
import { SOURCE_OFFSETS_TOPIC } from './source-offsets.ts';
import { Runtime, sinkGroup } from './runtime.ts';

// Test connectors: a source counting up from its committed offset, and sinks that write into
// in-process arrays. They stand in for connectors, not for any service.

/** What the test sinks wrote, per sink name. */
const written = new Map<string, SinkRecord[]>();
/** The bytes of keys and values in each put, per sink name. */
const putBytes = new Map<string, number[]>();
/** Source offsets each test source was told are durable, per connector name. */
const committedBySource = new Map<string, unknown[]>();
/** Behaviour switches for the sinks, per sink name. */
const sinkBehaviour = new Map<string, { poison?: (value: string) => boolean; retriableFailures?: number; block?: Promise<void>; storedOffsets?: bigint; configError?: boolean }>();

const counterSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    count: { type: 'integer', minimum: 0, description: 'How many records to produce.' },
    batch: { type: 'integer', minimum: 1, default: 10, description: 'Records per poll.' },
    key_mod: { type: 'integer', minimum: 1, default: 4, description: 'Keys cycle through this many values.' },
  },
  required: ['count'],
} as const;

const counter = defineSource({
  kind: 'source',
  name: 'counter',
  description: 'Counts up (test connector).',
  configSchema: counterSchema,
  createTask: (config) => {
    let next = 0;
    let ctx: SourceTaskContext;
    return {
      async start(c) {
        ctx = c;
        const stored = c.committedOffset({ counter: c.connector });
        next = typeof stored?.['next'] === 'number' ? stored['next'] : 0;
      },
      async poll(signal) {
        if (next >= config.count) {
          await new Promise((r) => setTimeout(r, 20));
          return [];
        }
        if (signal.aborted) return [];
        const out: SourceRecord[] = [];
        for (let i = 0; i < config.batch && next < config.count; i++, next++) {
          out.push({
            sourcePartition: { counter: ctx.connector },
            sourceOffset: { next: next + 1 },
            key: Buffer.from(`k${next % config.key_mod}`),
            value: Buffer.from(JSON.stringify({ n: next })),
          });
        }
        return out;
      },
      async commit(offsets) {
        const list = committedBySource.get(ctx.connector) ?? [];
        list.push(...offsets.map((o) => o.sourceOffset['next']));
        committedBySource.set(ctx.connector, list);
      },
      async stop() {},
    };
  },
});

const collect = defineSink({
  kind: 'sink',
  name: 'collect',
  description: 'Collects records in memory (test connector).',
  configSchema: { type: 'object', additionalProperties: false, properties: { exactly_once: { type: 'boolean', default: false, description: 'Report stored offsets.' } } } as const,
  createTask: (config) => {
    let name = '';
    let failures = 0;
    return {
      async start(ctx) {
        name = ctx.connector;
      },
      async put(records) {
        const behaviour = sinkBehaviour.get(name) ?? {};
        if (behaviour.block) await behaviour.block;
        if (behaviour.configError) throw new SluiceError('CONFIG_INVALID', 'target says 401: bad credentials');
        if (behaviour.retriableFailures !== undefined && failures < behaviour.retriableFailures) {
          failures++;
          throw new RetriableError('target busy');
        }
        for (const r of records) {
          if (behaviour.poison?.(r.value!.toString())) throw new SluiceError('CONNECTOR_FAILED', `poison record ${r.value!.toString()}`);
        }
        const list = written.get(name) ?? [];
        list.push(...records);
        written.set(name, list);
        putBytes.set(name, [...(putBytes.get(name) ?? []), records.reduce((n, r) => n + (r.key?.length ?? 0) + (r.value?.length ?? 0), 0)]);
      },
      ...(config.exactly_once
        ? {
            async committedOffsets(partitions: readonly { topic: string; partition: number }[]) {
              const stored = sinkBehaviour.get(name)?.storedOffsets;
              return stored === undefined ? [] : partitions.map((p) => ({ ...p, offset: stored }));
            },
          }
        : {}),
      async stop() {},
    };
  },
});

/** The counter, declaring that its offsets are ordered, so restarts append nothing twice. */
const orderedCounter = defineSource({
  ...counter,
  name: 'ordered-counter',
  compareOffsets: (a, b) => (typeof a['next'] === 'number' && typeof b['next'] === 'number' ? a['next'] - b['next'] : null),
});

const registry = defineRegistry([counter, orderedCounter, collect]);

function silentLogger(): Logger {
  const noop = (): void => {};
  const logger: Logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, child: () => logger };
  return logger;
}

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  written.clear();
  putBytes.clear();
  committedBySource.clear();
  sinkBehaviour.clear();
});

async function setup(yaml: string, dir?: string): Promise<{ runtime: Runtime; log: EmbeddedLog; dir: string; stop: () => Promise<void> }> {
  const dataDir = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-runtime-'));
  const { problems, specs } = validateSpecTexts([{ file: path.join(dataDir, 'spec.yaml'), text: yaml }], { registry, env: {} });
  expect(problems).toEqual([]);
  const log = await openLog(dataDir, { maintenanceIntervalMs: 0 });
  const runtime = await Runtime.start(specs, { log, registry, logger: silentLogger(), statusIntervalMs: 0, shutdownTimeoutMs: 2000 });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await runtime.stop();
    await log.close();
  };
  cleanup.push(stop);
  if (!dir) cleanup.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  return { runtime, log, dir: dataDir, stop };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function endOffset(log: EmbeddedLog, topic: string, partition = 0): Promise<bigint> {
  if (!(await log.listTopics()).includes(topic)) return 0n;
  return (await log.describeTopic(topic)).partitions[partition]!.endOffset;
}

const values = (name: string): number[] => (written.get(name) ?? []).map((r) => (JSON.parse(r.value!.toString()) as { n: number }).n);

describe('runtime', () => {
  it('moves every record from a source through a topic to a sink, keyed records staying in order per key', async () => {
    // Guarantee: records flow source → log → sink, and records with one key arrive in order.
    const { runtime } = await setup(`
name: flow
topics: [{ name: numbers, partitions: 3 }]
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 500 } }]
sinks: [{ name: out, connector: collect, topics: [numbers] }]
`);
    await until(() => values('out').length === 500);
    expect(new Set(values('out')).size).toBe(500);
    const perKey = new Map<string, number[]>();
    for (const r of written.get('out')!) perKey.set(r.key!.toString(), [...(perKey.get(r.key!.toString()) ?? []), JSON.parse(r.value!.toString()).n]);
    for (const list of perKey.values()) expect(list).toEqual([...list].sort((a, b) => a - b));
    expect(runtime.status('src').state).toBe('RUNNING');
    expect(runtime.status('out').tasks[0]!.recordsOut).toBe(500);
  });

  it('stores source offsets only for durable records, and a restart resumes after them without loss', async () => {
    // Guarantee: a source restarted on the same log resumes from its stored offset; nothing is lost or re-appended.
    const first = await setup(`
name: resume
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 300 } }]
`);
    await until(async () => (await endOffset(first.log, 'numbers')) === 300n);
    await until(() => (committedBySource.get('src') ?? []).includes(300));
    await first.stop();
    const second = await setup(
      `
name: resume
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 450 } }]
`,
      first.dir,
    );
    cleanup.push(() => fs.rmSync(first.dir, { recursive: true, force: true }));
    await until(async () => (await endOffset(second.log, 'numbers')) >= 450n);
    await new Promise((r) => setTimeout(r, 100));
    expect((await second.log.describeTopic('numbers')).partitions[0]!.endOffset).toBe(450n);
    const offsets = await second.runtime.offsetsOf('src');
    expect(offsets.sourceOffsets).toEqual([{ sourcePartition: { counter: 'src' }, sourceOffset: { next: 450 } }]);
  });

  it('appends nothing twice when a restart re-polls records whose offsets were not stored, and sinks never see the marks', async () => {
    // Guarantee: with ordered source offsets, the crash window between a batch's append and its offset store repeats nothing in the log.
    const spec = (count: number): string => `
name: marks
topics: [{ name: numbers, partitions: 3 }]
sources: [{ name: src, connector: ordered-counter, topic: numbers, config: { count: ${count}, batch: 7 } }]
sinks: [{ name: out, connector: collect, topics: [numbers] }]
`;
    const first = await setup(spec(300));
    await until(() => values('out').length === 300);
    await first.stop();
    // The state a crash leaves behind: every record appended, but the stored offset far behind.
    const rewind = await openLog(first.dir);
    await rewind.append(SOURCE_OFFSETS_TOPIC, [{ key: Buffer.from(JSON.stringify(['marks', 'src', { counter: 'src' }])), value: Buffer.from(JSON.stringify({ next: 120 })) }]);
    await rewind.close();

    const second = await setup(spec(400), first.dir);
    cleanup.push(() => fs.rmSync(first.dir, { recursive: true, force: true }));
    await until(() => values('out').length >= 400);
    await new Promise((r) => setTimeout(r, 100));
    let total = 0n;
    for (const p of (await second.log.describeTopic('numbers')).partitions) total += p.endOffset;
    expect(total).toBe(400n);
    expect(values('out').sort((a, b) => a - b)).toEqual(Array.from({ length: 400 }, (_, i) => i));
    expect(written.get('out')!.filter((r) => r.headers[MARK_HEADER] !== undefined)).toEqual([]);
    expect((await second.runtime.offsetsOf('src')).sourceOffsets).toEqual([{ sourcePartition: { counter: 'src' }, sourceOffset: { next: 400 } }]);
  });

  it("bounds each put by the sink's batch_max_bytes, overshooting by at most one stored batch per partition", async () => {
    // Guarantee: batch_max_bytes sets how much one put receives.
    const head = `
name: sized
topics: [{ name: numbers, partitions: 2 }]
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 2000, batch: 10 } }]
`;
    const fill = await setup(head);
    await until(async () => (await endOffset(fill.log, 'numbers', 0)) + (await endOffset(fill.log, 'numbers', 1)) === 2000n);
    await fill.stop();
    // The topic is full before the sinks start, so each poll is limited by its size alone.
    await setup(
      `${head}sinks:
  - { name: small, connector: collect, topics: [numbers], batch_max_bytes: 1KiB }
  - { name: large, connector: collect, topics: [numbers], batch_max_bytes: 4MiB }
`,
      fill.dir,
    );
    cleanup.push(() => fs.rmSync(fill.dir, { recursive: true, force: true }));
    await until(() => values('small').length === 2000 && values('large').length === 2000);
    // A stored batch holds 10 records of at most 14 bytes each.
    expect(Math.max(...putBytes.get('small')!)).toBeLessThanOrEqual(1024 + 2 * 10 * 14);
    expect(putBytes.get('small')!.length).toBeGreaterThan(20);
    expect(putBytes.get('large')!.length).toBeLessThanOrEqual(2);
  });

  it('commits sink offsets only after put, so a restarted sink continues where it stopped', async () => {
    // Guarantee: a sink's group offsets cover exactly what put accepted; a restart re-delivers nothing already committed.
    const first = await setup(`
name: sinkresume
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 200 } }]
sinks: [{ name: out, connector: collect, topics: [numbers] }]
`);
    await until(() => values('out').length === 200);
    await until(async () => (await first.log.describeGroup(sinkGroup('sinkresume', 'out')))[0]?.lag === 0n);
    await first.stop();
    written.clear();
    const second = await setup(
      `
name: sinkresume
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 260 } }]
sinks: [{ name: out, connector: collect, topics: [numbers] }]
`,
      first.dir,
    );
    cleanup.push(() => fs.rmSync(first.dir, { recursive: true, force: true }));
    await until(() => values('out').length >= 60);
    await new Promise((r) => setTimeout(r, 200));
    expect(values('out').sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => 200 + i));
    await second.stop();
  });

  it('sends records a transform rejects to the DLQ with their coordinates, and delivers the rest', async () => {
    // Guarantee: under tolerance all, a failing transform sets aside exactly the failing records, with error headers.
    const { runtime, log } = await setup(`
name: dlqflow
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 100 } }]
sinks:
  - name: out
    connector: collect
    topics: [numbers]
    errors: { tolerance: all }
    transforms:
      - { type: set, fields: { checked: "n % 10 = 0 ? $error('divisible by ten') : n" } }
`);
    await until(() => values('out').length === 90);
    const dlq = dlqTopic('dlqflow', 'out');
    await until(async () => (await endOffset(log, dlq)) === 10n);
    const letters = (await log.read(dlq, 0, 0n)).records;
    expect(letters.map((r) => JSON.parse(r.value!.toString()).n).sort((a: number, b: number) => a - b)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    for (const r of letters) {
      expect(r.headers[DLQ_HEADERS.stage]!.toString()).toBe('transform');
      expect(r.headers[DLQ_HEADERS.topic]!.toString()).toBe('numbers');
      expect(r.headers[DLQ_HEADERS.offset]).toBeDefined();
      expect(r.headers[DLQ_HEADERS.error]!.toString()).toContain('divisible by ten');
    }
    expect(values('out')).not.toContain(0);
    expect(runtime.status('out').state).toBe('RUNNING');
    expect(runtime.status('out').tasks[0]!.deadLetters).toBe(10);
  });

  it('bisects a batch that put rejects, sending only the poison records to the DLQ', async () => {
    // Guarantee: one bad record in a batch costs only that record; the other records of the batch are written.
    sinkBehaviour.set('out', { poison: (v) => JSON.parse(v).n === 137 });
    const { log } = await setup(`
name: bisect
topics: [{ name: numbers, partitions: 1 }]
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 1000, batch: 1000 } }]
sinks: [{ name: out, connector: collect, topics: [numbers], errors: { tolerance: all } }]
`);
    await until(() => values('out').length === 999);
    const dlq = dlqTopic('bisect', 'out');
    await until(async () => (await endOffset(log, dlq)) === 1n);
    const letters = (await log.read(dlq, 0, 0n)).records;
    expect(letters.map((r) => JSON.parse(r.value!.toString()).n)).toEqual([137]);
    expect(letters[0]!.headers[DLQ_HEADERS.stage]!.toString()).toBe('put');
    expect(letters[0]!.headers[DLQ_HEADERS.error]!.toString()).toContain('poison record');
  });

  it('fails the connector on CONFIG_INVALID even under tolerance all, sending nothing to the DLQ', async () => {
    // Guarantee: a connector-level failure (bad credentials) is never mistaken for bad records and bisected into the DLQ.
    sinkBehaviour.set('out', { configError: true });
    const { runtime, log } = await setup(`
name: badconfig
topics: [{ name: numbers, partitions: 1 }]
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 20, batch: 20 } }]
sinks: [{ name: out, connector: collect, topics: [numbers], errors: { tolerance: all } }]
`);
    await until(() => runtime.status('out').state === 'FAILED');
    expect(runtime.status('out').tasks[0]!.error!.code).toBe('CONFIG_INVALID');
    expect(await log.listTopics()).not.toContain(dlqTopic('badconfig', 'out'));
  });

  it('puts the connector into FAILED with the error under tolerance none, without committing the failed batch', async () => {
    // Guarantee: a non-retriable failure under tolerance none stops the connector visibly and commits nothing past it.
    sinkBehaviour.set('out', { poison: (v) => JSON.parse(v).n === 5 });
    const { runtime, log } = await setup(`
name: failing
topics: [{ name: numbers, partitions: 1 }]
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 20, batch: 20 } }]
sinks: [{ name: out, connector: collect, topics: [numbers] }]
`);
    await until(() => runtime.status('out').state === 'FAILED');
    const status = runtime.status('out');
    expect(status.tasks[0]!.error!.message).toContain('poison record');
    expect(status.tasks[0]!.error!.message).toMatch(/numbers\/0@0/);
    expect(status.tasks[0]!.error!.trace).toContain('Caused by');
    expect(runtime.health().healthy).toBe(false);
    expect(runtime.health().reasons.join()).toContain('out is FAILED');
    const group = await log.describeGroup(sinkGroup('failing', 'out'));
    expect(group.every((p) => p.committed === null || p.committed === 0n)).toBe(true);
    expect(runtime.status('src').state).toBe('RUNNING');
  });

  it('retries a RetriableError on the same batch and then delivers it', async () => {
    // Guarantee: "retry the same batch" means the records arrive once the target recovers, none lost.
    sinkBehaviour.set('out', { retriableFailures: 3 });
    const { runtime } = await setup(`
name: retrying
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 50 } }]
sinks: [{ name: out, connector: collect, topics: [numbers], errors: { retry_backoff_max: 50ms } }]
`);
    await until(() => values('out').length === 50);
    expect(runtime.status('out').state).toBe('RUNNING');
  });

  it('keeps a stalled sink from holding back the source or another sink', async () => {
    // Guarantee: isolation; one sink blocked on its target lags while the source and the other sink go on.
    let release!: () => void;
    sinkBehaviour.set('slow', { block: new Promise<void>((r) => (release = r)) });
    const { log } = await setup(`
name: isolation
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 2000, batch: 100 } }]
sinks:
  - { name: slow, connector: collect, topics: [numbers] }
  - { name: fast, connector: collect, topics: [numbers] }
`);
    await until(() => values('fast').length === 2000);
    expect(values('slow').length).toBe(0);
    const lag = (await log.describeGroup(sinkGroup('isolation', 'slow'))).reduce((n, p) => n + p.lag, 0n);
    expect(lag).toBeGreaterThan(0n);
    release();
    await until(() => values('slow').length === 2000);
  });

  it('pauses and resumes a sink through the runtime', async () => {
    // Guarantee: a paused sink writes nothing until resumed, then catches up.
    const { runtime } = await setup(`
name: pausing
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 100000, batch: 50 } }]
sinks: [{ name: out, connector: collect, topics: [numbers] }]
`);
    await until(() => values('out').length > 0);
    runtime.pause('out');
    await new Promise((r) => setTimeout(r, 700));
    const atPause = values('out').length;
    await new Promise((r) => setTimeout(r, 500));
    expect(values('out').length).toBe(atPause);
    expect(runtime.status('out').state).toBe('PAUSED');
    runtime.resume('out');
    await until(() => values('out').length > atPause);
    expect(runtime.status('out').state).toBe('RUNNING');
  });

  it('resumes an exactly-once sink from the offsets it stored, not from the group', async () => {
    // Guarantee: a sink reporting committedOffsets is positioned there, so it never re-applies what it stored.
    sinkBehaviour.set('out', { storedOffsets: 40n });
    await setup(`
name: eos
topics: [{ name: numbers, partitions: 1 }]
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 50, batch: 50 } }]
sinks: [{ name: out, connector: collect, topics: [numbers], config: { exactly_once: true } }]
`);
    await until(() => values('out').length === 10);
    await new Promise((r) => setTimeout(r, 200));
    expect(values('out')).toEqual([40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
  });

  it('restarts a FAILED connector from its committed offsets', async () => {
    // Guarantee: restart clears FAILED and continues from the last commit, losing nothing.
    sinkBehaviour.set('out', { poison: (v) => JSON.parse(v).n === 5 });
    const { runtime } = await setup(`
name: restarting
topics: [{ name: numbers, partitions: 1 }]
sources: [{ name: src, connector: counter, topic: numbers, config: { count: 20, batch: 20 } }]
sinks: [{ name: out, connector: collect, topics: [numbers] }]
`);
    await until(() => runtime.status('out').state === 'FAILED');
    sinkBehaviour.set('out', {});
    await runtime.restart('out');
    await until(() => values('out').length === 20);
    expect(runtime.status('out').state).toBe('RUNNING');
  });
});

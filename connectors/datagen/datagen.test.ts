import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { Ajv } from 'ajv';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { isSluiceError, type Logger, type SourceOffsetEntry, type SourceRecord, type SourceTaskContext, type TaskMetrics } from '../../core/connector.ts';
import { IDLE_POLL_MS, datagen, sourcePartitionOf, type DatagenConfig, type DatagenTask } from './index.ts';

// ---------------------------------------------------------------------------------------------
// A task context from real objects: a logger that collects lines, metrics that record the
// declared gauges, and AbortControllers.

interface LogLine {
  level: string;
  fields: object;
  message: string | undefined;
}

function collectingLogger(lines: LogLine[], bindings: object = {}): Logger {
  const at =
    (level: string) =>
    (fields: object | string, message?: string): void => {
      if (typeof fields === 'string') lines.push({ level, fields: bindings, message: fields });
      else lines.push({ level, fields: { ...bindings, ...fields }, message });
    };
  return {
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => collectingLogger(lines, { ...bindings, ...more }),
  };
}

interface Harness {
  ctx: SourceTaskContext;
  lines: LogLine[];
  gauges: Map<string, number>;
  abort: AbortController;
}

function harness(task: number, committed: readonly SourceOffsetEntry[] = []): Harness {
  const lines: LogLine[] = [];
  const gauges = new Map<string, number>();
  const abort = new AbortController();
  const declared = (name: string): void => {
    if (!datagen.metrics?.[name]) throw new Error(`undeclared metric ${name}`);
  };
  const metrics: TaskMetrics = {
    count: (name) => declared(name),
    gauge: (name, value) => {
      declared(name);
      gauges.set(name, value);
    },
    observe: (name) => declared(name),
  };
  const ctx: SourceTaskContext = {
    pipeline: 'datagen-test',
    connector: 'gen',
    task,
    signal: abort.signal,
    logger: collectingLogger(lines, { pipeline: 'datagen-test', connector: 'gen', task }),
    metrics,
    committedOffsets: committed,
    committedOffset: (partition) => committed.find((e) => isDeepStrictEqual(e.sourcePartition, partition))?.sourceOffset,
  };
  return { ctx, lines, gauges, abort };
}

function newAjv(): Ajv {
  // The spec loader's options, so defaults are filled in exactly as the runtime fills them.
  return new Ajv({ allErrors: true, useDefaults: true, verbose: true, allowUnionTypes: true, strict: true, strictRequired: false });
}

const validate = newAjv().compile(datagen.configSchema);

/** A config as the runtime hands it over: validated, defaults filled in. */
function configOf(partial: Record<string, unknown>): DatagenConfig {
  const config = structuredClone(partial);
  if (!validate(config)) throw new Error(JSON.stringify(validate.errors));
  return config as DatagenConfig;
}

interface Started {
  task: DatagenTask;
  h: Harness;
}

/** Creates and starts every task of a config, as the runtime would. */
async function startTasks(partial: Record<string, unknown>, maxTasks = 1, committed: readonly SourceOffsetEntry[] = []): Promise<Started[]> {
  const configs = datagen.taskConfigs!(configOf(partial), maxTasks);
  return Promise.all(
    configs.map(async (config, i) => {
      const task = datagen.createTask(config) as DatagenTask;
      const h = harness(i, committed);
      await task.start(h.ctx);
      return { task, h };
    }),
  );
}

/** Starts a single-task config. */
async function startOne(partial: Record<string, unknown>, committed: readonly SourceOffsetEntry[] = []): Promise<Started> {
  const [started] = await startTasks(partial, 1, committed);
  return started!;
}

/**
 * Polls until at least `n` records arrived or, with `count`, until the task reports none remaining
 * (which spares the idle wait of a poll after the end).
 */
async function drain({ task, h }: Started, n = Infinity, signal: AbortSignal = h.abort.signal): Promise<SourceRecord[]> {
  const out: SourceRecord[] = [];
  while (out.length < n && h.gauges.get('remaining_events') !== 0) out.push(...(await task.poll(signal)));
  return out;
}

const seqOf = (record: SourceRecord): number => JSON.parse(record.value!.toString('utf8')).seq;
/** One string per record, key and value, for comparing sequences byte for byte. */
const bytesOf = (records: readonly SourceRecord[]): string[] => records.map((r) => `${r.key!.toString('hex')}:${r.value!.toString('hex')}`);

/** The first index where two record sequences differ in bytes or length, or -1: a short failure message where toEqual would print megabytes. */
function firstDifference(a: readonly SourceRecord[], b: readonly SourceRecord[]): number {
  const [x, y] = [bytesOf(a), bytesOf(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) return i;
  return -1;
}

// ---------------------------------------------------------------------------------------------

describe('datagen determinism', () => {
  // Pins that the same seed gives a byte-identical record sequence, and another seed a different one.
  it.each(['clickstream', 'orders'])('%s: same seed, same bytes', async (preset) => {
    const ra = await drain(await startOne({ preset, seed: 42 }), 3000);
    const rb = await drain(await startOne({ preset, seed: 42 }), 3000);
    const rc = await drain(await startOne({ preset, seed: 43 }), 3000);
    expect(ra).toHaveLength(3000);
    expect(firstDifference(rb, ra)).toBe(-1);
    expect(firstDifference(rc, ra)).toBe(0);
    expect(ra.map(seqOf)).toEqual(Array.from({ length: 3000 }, (_, i) => i));
  });

  // Pins the generated bytes across code changes: a change here breaks resuming pipelines that ran the previous version.
  it.each([
    ['clickstream', 'ec8c241c67f381e8f4bdb145a2fe821dfe17b05fec4fa6e6909627fbd41395f0'],
    ['orders', '641415f0bcfc63cb84611f6843f311bd4911454601b167c531f37af140763d9d'],
  ])('%s: the first 1000 events of seed 42 have a fixed digest', async (preset, digest) => {
    const records = (await drain(await startOne({ preset, seed: 42, rate: 0 }), 1000)).slice(0, 1000);
    const hash = createHash('sha256');
    for (const r of records) hash.update(r.key!).update('\n').update(r.value!).update('\n');
    expect(hash.digest('hex')).toBe(digest);
  });

  // Pins the record shape: keys are the entity the log partitions by, values carry the preset's fields and a deterministic event time.
  it('keys by user_id or customer_id and stamps ts from start_time and rate', async () => {
    const records = await drain(await startOne({ preset: 'clickstream', seed: 1, rate: 0, start_time: '2025-06-01T12:00:00Z' }), 10);
    for (const r of records) {
      const value = JSON.parse(r.value!.toString('utf8'));
      expect(Object.keys(value)).toEqual(['user_id', 'session_id', 'url', 'referrer', 'user_agent', 'event', 'ts', 'seq']);
      expect(r.key!.toString('utf8')).toBe(value.user_id);
      expect(value.ts).toBe(new Date(Date.parse('2025-06-01T12:00:00Z') + value.seq).toISOString());
      expect(value.session_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(r.timestamp).toBeUndefined();
    }
    // With a rate, event times are 1000/rate ms apart.
    const paced = await drain(await startOne({ preset: 'clickstream', seed: 1, rate: 200, start_time: '2025-06-01T12:00:00Z' }), 2);
    expect(paced.slice(0, 2).map((r) => JSON.parse(r.value!.toString('utf8')).ts)).toEqual(['2025-06-01T12:00:00.000Z', '2025-06-01T12:00:00.005Z']);

    for (const r of await drain(await startOne({ preset: 'orders', seed: 1 }), 200)) {
      const value = JSON.parse(r.value!.toString('utf8'));
      expect(Object.keys(value)).toEqual(['order_id', 'customer_id', 'items', 'total', 'currency', 'status', 'ts', 'seq']);
      expect(r.key!.toString('utf8')).toBe(value.customer_id);
      const cents = value.items.reduce((sum: number, item: { qty: number; price: number }) => sum + item.qty * Math.round(item.price * 100), 0);
      expect(Math.round(value.total * 100)).toBe(cents);
      expect(value.items.length).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('datagen offsets', () => {
  // Pins that a restart from a committed offset regenerates exactly the continuation, byte for byte.
  it.each(['clickstream', 'orders'])('%s: resumes at the committed offset', async (preset) => {
    const reference = await drain(await startOne({ preset, seed: 42 }), 3000);
    const committedRecord = reference[1233]!;
    expect(committedRecord.sourceOffset).toEqual({ next: 1234 });
    expect(committedRecord.sourcePartition).toEqual(sourcePartitionOf(0, 1));

    const committed = [{ sourcePartition: committedRecord.sourcePartition, sourceOffset: committedRecord.sourceOffset }];
    const again = await startOne({ preset, seed: 42 }, committed);
    const continuation = (await drain(again, 3000 - 1234)).slice(0, 3000 - 1234);
    expect(firstDifference(continuation, reference.slice(1234))).toBe(-1);
    expect(again.h.lines).toContainEqual(expect.objectContaining({ message: 'generating', fields: expect.objectContaining({ next: 1234, resumed: true }) }));
  });

  // Pins that count split across tasks generates every index 0..count-1 exactly once, with the bytes one task would produce.
  it('splits count across tasks without gaps or overlaps', async () => {
    const single = await drain(await startOne({ preset: 'orders', seed: 5, count: 997 }));
    expect(single).toHaveLength(997);
    const bySeq = new Map(single.map((r) => [seqOf(r), r]));

    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 64 }), async (count, maxTasks, batchSize) => {
        const tasks = await startTasks({ preset: 'orders', seed: 5, count, batch_size: batchSize }, maxTasks);
        expect(tasks).toHaveLength(Math.min(count, maxTasks));
        const seen: number[] = [];
        for (const started of tasks) {
          const { h } = started;
          const records = await drain(started);
          for (const r of records) {
            expect(r.sourcePartition).toEqual(sourcePartitionOf(h.ctx.task, tasks.length));
            expect(firstDifference([r], [bySeq.get(seqOf(r))!])).toBe(-1);
          }
          seen.push(...records.map(seqOf));
          expect(h.gauges.get('remaining_events')).toBe(0);
        }
        expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i));
      }),
      { numRuns: 40 },
    );
  });

  // Pins that changing the task count between runs resumes without losing any event (duplicates are allowed).
  it('resumes across a change of task count without gaps', async () => {
    const count = 600;
    const before = await startTasks({ preset: 'clickstream', seed: 9, count, batch_size: 50 }, 2);
    const committed: SourceOffsetEntry[] = [];
    const seen = new Set<number>();
    // Task 0 gets far, task 1 less far: the restart must honour the slower one.
    for (const [started, n] of [
      [before[0]!, 200],
      [before[1]!, 50],
    ] as const) {
      const records = await drain(started, n);
      records.forEach((r) => seen.add(seqOf(r)));
      const last = records[records.length - 1]!;
      committed.push({ sourcePartition: last.sourcePartition, sourceOffset: last.sourceOffset });
    }
    const after = await startTasks({ preset: 'clickstream', seed: 9, count, batch_size: 50 }, 3, committed);
    for (const started of after) (await drain(started)).forEach((r) => seen.add(seqOf(r)));
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i));
  });

  // Pins that an offset which cannot belong to the task fails start instead of skewing the split.
  it('refuses a committed offset that is not one of its indexes', async () => {
    const committed = [{ sourcePartition: sourcePartitionOf(1, 2), sourceOffset: { next: 4 } }];
    const err = await startTasks({ seed: 1 }, 2, committed).catch((e: unknown) => e);
    expect(isSluiceError(err, 'CONNECTOR_FAILED')).toBe(true);
  });

  // Pins that after count the task idles: polls return [] after a short wait rather than spinning, and the end is logged once.
  it('idles after count', async () => {
    const started = await startOne({ seed: 1, count: 10 });
    const { task, h } = started;
    expect(await drain(started)).toHaveLength(10);
    const t0 = performance.now();
    expect(await task.poll(h.abort.signal)).toEqual([]);
    expect(await task.poll(h.abort.signal)).toEqual([]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(2 * IDLE_POLL_MS - 20);
    expect(h.lines.filter((l) => l.message === 'count reached; idle')).toHaveLength(1);
  });
});

describe('datagen pacing', () => {
  // Pins that the rate is honoured on the wall clock, within generous bounds, and that polls stay short.
  it('generates about rate events per second', async () => {
    const { task, h } = await startOne({ seed: 1, rate: 200 });
    const t0 = performance.now();
    let total = 0;
    let longest = 0;
    while (performance.now() - t0 < 1000) {
      const before = performance.now();
      total += (await task.poll(h.abort.signal)).length;
      longest = Math.max(longest, performance.now() - before);
    }
    expect(total).toBeGreaterThan(140);
    expect(total).toBeLessThan(260);
    expect(longest).toBeLessThan(IDLE_POLL_MS + 80);
  });

  // Pins that the rate is the connector's, shared by its tasks.
  it('splits the rate across tasks', async () => {
    const tasks = await startTasks({ seed: 1, rate: 400 }, 4);
    const t0 = performance.now();
    const totals = await Promise.all(
      tasks.map(async ({ task, h }) => {
        let n = 0;
        while (performance.now() - t0 < 1000) n += (await task.poll(h.abort.signal)).length;
        return n;
      }),
    );
    for (const n of totals) {
      expect(n).toBeGreaterThan(60);
      expect(n).toBeLessThan(140);
    }
  });

  // Pins that rate 0 means no pacing: a poll returns a full batch at once.
  it('returns full batches at once with rate 0', async () => {
    const { task, h } = await startOne({ seed: 1, rate: 0, batch_size: 2500 });
    expect(await task.poll(h.abort.signal)).toHaveLength(2500);
  });

  // Pins that a waiting poll resolves promptly when its signal or the task's signal aborts.
  it.each(['poll signal', 'task signal', 'idle after count'])('resolves promptly on abort (%s)', async (which) => {
    const started = await startOne(which === 'idle after count' ? { seed: 1, count: 1 } : { seed: 1, rate: 1 });
    const { task, h } = started;
    const pollAbort = new AbortController();
    if (which === 'idle after count') await drain(started);
    // Nothing is due for a second at rate 1 (and never after count), so the poll would wait its full bound.
    const pending = task.poll(pollAbort.signal);
    const t0 = performance.now();
    setTimeout(() => (which === 'task signal' ? h.abort.abort() : pollAbort.abort()), 20);
    const records = await pending;
    expect(performance.now() - t0).toBeLessThan(60);
    expect(records.length).toBeLessThanOrEqual(1);
    await task.stop();
  });
});

describe('datagen schema', () => {
  // Pins that the quickstart's datagen config validates, and gets the documented defaults.
  it('validates the quickstart config', () => {
    const spec = parseYaml(fs.readFileSync(new URL('../../pipelines/quickstart.yaml', import.meta.url), 'utf8'));
    const entry = spec.sources.find((s: { connector: string }) => s.connector === 'datagen');
    expect(entry.config).toEqual({ preset: 'clickstream', rate: 200, seed: 42 });
    const config = structuredClone(entry.config);
    expect(validate(config), JSON.stringify(validate.errors)).toBe(true);
    expect(config).toEqual({ preset: 'clickstream', rate: 200, seed: 42, start_time: '2025-01-01T00:00:00Z', batch_size: 1000 });
  });

  // Pins that every example in the definition validates.
  it.each(datagen.examples!.map((e) => [e.title, e.config] as const))('example %s validates', (_title, config) => {
    expect(validate(structuredClone(config)), JSON.stringify(validate.errors)).toBe(true);
  });

  // Pins the errors of bad configs, with the JSON path of the offending field.
  it.each([
    [{ rate: 1.5 }, '/rate', 'must be integer'],
    [{ rate: -1 }, '/rate', 'must be >= 0'],
    [{ preset: 'logs' }, '/preset', 'must be equal to one of the allowed values'],
    [{ count: 0 }, '/count', 'must be >= 1'],
    [{ start_time: 'yesterday' }, '/start_time', 'must match pattern'],
    [{ speed: 3 }, '', 'must NOT have additional properties'],
  ])('rejects %j', (config, path, message) => {
    expect(validate(structuredClone(config))).toBe(false);
    expect(validate.errors).toContainEqual(expect.objectContaining({ instancePath: path, message: expect.stringContaining(message) }));
  });

  // Pins that a start_time the pattern admits but the calendar does not fails before any task starts.
  it('rejects an impossible start_time in taskConfigs', () => {
    expect(() => datagen.taskConfigs!(configOf({ start_time: '2025-13-45T00:00:00Z' }), 1)).toThrow(/start_time must be an ISO 8601 timestamp/);
  });
});

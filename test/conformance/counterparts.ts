/**
 * The counterpart connectors the conformance suite runs a connector under test against, in a real
 * runtime: a deterministic source that feeds a sink under test, and a collecting sink that drains a
 * source under test. They are test connectors, registered only in the suite's own registry.
 */
import {
  defineSink,
  defineSource,
  type SinkRecord,
  type SourceOffsetEntry,
  type SourceRecord,
  type SourceTaskContext,
} from '../../core/connector.ts';

/** The connector type of the feeding source. */
export const FEEDER = 'conformance-feeder';
/** The connector type of the collecting sink. */
export const COLLECTOR = 'conformance-collector';

/** Every id the feeder writes matches this, wherever a sink puts the value (a line, an array element, an envelope). */
export const FEEDER_ID = /sluice-conformance-(\d{7})/g;

/** The id of the feeder's record number `n`. */
export function feederId(n: number): string {
  return `sluice-conformance-${String(n).padStart(7, '0')}`;
}

/** The ids a sink's readBack texts hold, one per feeder record they contain, in order of appearance. */
export function feederIdsIn(texts: readonly string[]): string[] {
  const ids: string[] = [];
  for (const text of texts) for (const match of text.matchAll(FEEDER_ID)) ids.push(match[0]);
  return ids;
}

const feederSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['count'],
  properties: {
    count: { type: 'integer', minimum: 1, description: 'How many records to emit in total, numbered from 0.' },
    batch: { type: 'integer', minimum: 1, default: 20, description: 'Records per poll.' },
    interval_ms: { type: 'integer', minimum: 0, default: 20, description: 'Wait before each poll, so a stream lasts long enough to be stopped mid-way.' },
  },
} as const;

/**
 * Emits records numbered 0..count-1, `batch` per poll, each value `{"id":"sluice-conformance-NNNNNNN","n":N}`
 * with key `kN%8` (so records spread over partitions). Its source offset is `{ next }`, and it
 * resumes from its committed offset, so a graceful restart re-emits nothing.
 */
export const feeder = defineSource({
  kind: 'source',
  name: FEEDER,
  description: 'Emits numbered records and resumes from its committed offset (conformance suite counterpart).',
  configSchema: feederSchema,
  createTask: (config) => {
    let next = 0;
    let ctx: SourceTaskContext | undefined;
    const partition = { feeder: FEEDER };
    return {
      async start(c: SourceTaskContext): Promise<void> {
        ctx = c;
        const stored = c.committedOffset(partition)?.['next'];
        next = typeof stored === 'number' ? stored : 0;
      },
      async poll(signal: AbortSignal): Promise<readonly SourceRecord[]> {
        const done = next >= config.count;
        await abortableSleep(done ? 50 : config.interval_ms, [signal, ctx!.signal]);
        if (done || signal.aborted) return [];
        const out: SourceRecord[] = [];
        for (let i = 0; i < config.batch && next < config.count; i++, next++) {
          out.push({
            sourcePartition: partition,
            sourceOffset: { next: next + 1 },
            key: Buffer.from(`k${next % 8}`),
            value: Buffer.from(JSON.stringify({ id: feederId(next), n: next })),
          });
        }
        return out;
      },
      async commit(_offsets: readonly SourceOffsetEntry[]): Promise<void> {},
      async stop(): Promise<void> {},
    };
  },
});

/** What the collector received, per `bucket`; buckets outlive runtimes, so a restart adds to them. */
const buckets = new Map<string, SinkRecord[]>();

/** The records the collector put into `bucket`, in arrival order, duplicates included. */
export function collected(bucket: string): readonly SinkRecord[] {
  return buckets.get(bucket) ?? [];
}

/** Forgets a bucket once its test is over. */
export function dropBucket(bucket: string): void {
  buckets.delete(bucket);
}

const collectorSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['bucket'],
  properties: {
    bucket: { type: 'string', minLength: 1, description: 'Where the records go in memory; one per test.' },
  },
} as const;

/** Keeps every record it is put in memory; a resolved put is "durable" at once. */
export const collector = defineSink({
  kind: 'sink',
  name: COLLECTOR,
  description: 'Collects records in memory (conformance suite counterpart).',
  configSchema: collectorSchema,
  createTask: (config) => ({
    async start(): Promise<void> {},
    async put(records: readonly SinkRecord[]): Promise<void> {
      let list = buckets.get(config.bucket);
      if (!list) buckets.set(config.bucket, (list = []));
      list.push(...records);
    },
    async stop(): Promise<void> {},
  }),
});

/** Resolves after `ms`, or as soon as any of `signals` aborts. Never rejects. */
function abortableSleep(ms: number, signals: readonly AbortSignal[]): Promise<void> {
  if (signals.some((s) => s.aborted)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of signals) s.addEventListener('abort', done, { once: true });
  });
}

// Source-offset marks drop a re-polled record only when a mark proves it is in the log partition it
// routes to, and never otherwise.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SourceOffset } from '../connector.ts';
import { openLog, type EmbeddedLog } from '../log/embedded-log.ts';
import type { ProducerRecord } from '../log/types.ts';
import { MARK_HEADER, SourceMarks, type RecordSource } from './source-marks.ts';
import { canonicalJson } from './source-offsets.ts';

const compare = (a: SourceOffset, b: SourceOffset): number | null =>
  typeof a.n === 'number' && typeof b.n === 'number' ? a.n - b.n : null;

const SP = { stream: 'a' };
const SP_KEY = canonicalJson(SP);

let dir: string;
let log: EmbeddedLog;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-marks-'));
  log = await openLog(dir);
  await log.createTopic('t3', { partitions: 3 });
  await log.createTopic('t1', { partitions: 1 });
});

afterEach(async () => {
  await log.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function batch(from: number, to: number, keyed = true): { records: ProducerRecord[]; sources: RecordSource[] } {
  const records: ProducerRecord[] = [];
  const sources: RecordSource[] = [];
  for (let n = from; n < to; n++) {
    records.push({ key: keyed ? Buffer.from(`k${n}`) : null, value: Buffer.from(String(n)), headers: {} });
    sources.push({ key: SP_KEY, partition: SP, offset: { n } });
  }
  return { records, sources };
}

async function marksFor(connector = 'src'): Promise<SourceMarks> {
  const marks = new SourceMarks(log, 'p', connector, compare);
  await marks.load();
  return marks;
}

async function append(marks: SourceMarks, topic: string, from: number, to: number, keyed = true): Promise<ProducerRecord[]> {
  await marks.partitionsOf(topic);
  const { records, sources } = batch(from, to, keyed);
  marks.stamp(topic, records, sources);
  await log.append(topic, records);
  return records;
}

describe('SourceMarks', () => {
  it('marks only the last record of each log partition a batch writes to', async () => {
    const marks = await marksFor();
    const records = await append(marks, 't3', 0, 30);
    const marked = records.filter((r) => r.headers![MARK_HEADER] !== undefined);
    const partitions = new Set(records.map((r) => marks.routeOf('t3', r)));
    expect(marked.length).toBe(partitions.size);
    for (const p of partitions) {
      const inP = records.filter((r) => marks.routeOf('t3', r) === p);
      expect(inP[inP.length - 1]!.headers![MARK_HEADER]).toBeDefined();
    }
  });

  it('after a restart, drops exactly the re-polled records already in their partition', async () => {
    const first = await marksFor();
    await append(first, 't3', 0, 50);
    // Simulates the crash window: the source resumes from an older stored offset, 20, and polls 20..59.
    const restarted = await marksFor();
    expect(restarted.filtering).toBe(true);
    const { records } = batch(20, 60);
    const kept: number[] = [];
    records.forEach((r, i) => {
      const n = 20 + i;
      if (!restarted.isDuplicate(SP_KEY, { n }, 't3', restarted.routeOf('t3', r))) kept.push(n);
    });
    expect(kept).toEqual(Array.from({ length: 10 }, (_, i) => 50 + i));
    // Past the highest mark the filter is finished.
    expect(restarted.filtering).toBe(false);
  });

  it('keeps a record whose partition has no mark, even when another partition is ahead', async () => {
    const first = await marksFor();
    // Only records routed to one partition reached the log: the crash hit between partitions.
    const { records, sources } = batch(0, 30);
    await first.partitionsOf('t3');
    const target = first.routeOf('t3', records[0]!)!;
    const onlyTarget = records.map((r, i) => [r, sources[i]!] as const).filter(([r]) => first.routeOf('t3', r) === target);
    const kept = onlyTarget.map(([r]) => r);
    first.stamp('t3', kept, onlyTarget.map(([, s]) => s));
    await log.append('t3', kept);

    const restarted = await marksFor();
    for (let n = 0; n < 30; n++) {
      const r = records[n]!;
      const partition = restarted.routeOf('t3', r);
      expect(restarted.isDuplicate(SP_KEY, { n }, 't3', partition), `record ${n} in partition ${partition}`).toBe(partition === target);
    }
  });

  it('never drops keyless records of a topic with several partitions, but does on a single partition', async () => {
    const first = await marksFor();
    await append(first, 't3', 0, 10, false);
    await append(first, 't1', 0, 10, false);
    const restarted = await marksFor();
    const { records } = batch(0, 10, false);
    expect(records.map((r, i) => restarted.isDuplicate(SP_KEY, { n: i }, 't3', restarted.routeOf('t3', r)))).toEqual(Array(10).fill(false));
    expect(records.map((r, i) => restarted.isDuplicate(SP_KEY, { n: i }, 't1', restarted.routeOf('t1', r)))).toEqual(Array(10).fill(true));
  });

  it("ignores other connectors' marks and offsets it cannot order", async () => {
    const other = await marksFor('other');
    await append(other, 't1', 0, 10);
    const mine = await marksFor('src');
    expect(mine.filtering).toBe(false);

    const first = await marksFor();
    await append(first, 't1', 0, 10);
    const restarted = await marksFor();
    const r = batch(0, 1).records[0]!;
    expect(restarted.isDuplicate(SP_KEY, { snapshot: 3 }, 't1', 0)).toBe(false);
    expect(restarted.isDuplicate(SP_KEY, { n: 0 }, 't1', restarted.routeOf('t1', r))).toBe(true);
  });

  it('ignores marks whose offsets cannot be ordered at all, so the filter still ends', async () => {
    const first = await marksFor();
    await first.partitionsOf('t1');
    const records: ProducerRecord[] = [{ key: null, value: Buffer.from('s'), headers: {} }];
    first.stamp('t1', records, [{ key: SP_KEY, partition: SP, offset: { snapshot: 1 } }]);
    await log.append('t1', records);
    const restarted = await marksFor();
    expect(restarted.filtering).toBe(false);
  });

  it('copies a shared headers object before marking one record', async () => {
    const marks = await marksFor();
    await marks.partitionsOf('t1');
    const shared = { h: Buffer.from('x') };
    const records: ProducerRecord[] = [0, 1, 2].map((n) => ({ key: null, value: Buffer.from(String(n)), headers: shared }));
    marks.stamp('t1', records, [0, 1, 2].map((n) => ({ key: SP_KEY, partition: SP, offset: { n } })));
    expect(shared[MARK_HEADER as keyof typeof shared]).toBeUndefined();
    expect(records[2]!.headers![MARK_HEADER]).toBeDefined();
    expect(records[0]!.headers).toBe(shared);
  });
});

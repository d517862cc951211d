/**
 * End to end: `sluice run` killed with SIGKILL at random moments and restarted, a datagen → file
 * pipeline still delivers every generated record, byte for byte, with duplicates bounded by what
 * was in flight at each kill. The log itself holds every record exactly once: datagen orders its
 * offsets, so the runtime's source-offset marks keep a restart from appending anything twice.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateEvent } from '../connectors/datagen/presets.ts';
import { openLog } from '../core/log/embedded-log.ts';
import { MARK_HEADER } from '../core/runtime/source-marks.ts';
import { SINK_POLL_BYTES } from '../core/runtime/task-runner.ts';
import { cleanUp, completeLines, DATAGEN_FILE_OUTPUT, datagenToFileSpec, seqs, sleep, start, tempDir, waitFor, type Running } from './e2e-helpers.ts';

afterEach(cleanUp);

const COUNT = 80_000;
const SEED = 7;
const RATE = 8_000;
const BATCH = 100;
const PARTITIONS = 3;
const KILLS = 4;

const SPEC = datagenToFileSpec({ name: 'crash', count: COUNT, seed: SEED, rate: RATE, batch: BATCH, partitions: PARTITIONS });

describe('crash and restart', () => {
  // A datagen → file pipeline killed with kill -9 mid-run and restarted delivers every generated record, with duplicates only within the last uncommitted batch.
  it('delivers every record after repeated kill -9, duplicates bounded by the batches in flight', { timeout: 90_000 }, async () => {
    const cwd = await tempDir('crash');
    await writeFile(path.join(cwd, 'spec.yaml'), SPEC);
    const output = path.join(cwd, DATAGEN_FILE_OUTPUT);
    const run = (): Running => start(['run', 'spec.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd });

    let kills = 0;
    /** How many whole lines the output held after each kill: where the next run's lines begin. */
    const boundaries: number[] = [];
    while (kills < KILLS) {
      const child = run();
      const before = completeLines(output).length;
      // Each run must make progress of its own before it is killed, so every kill lands mid-stream.
      await waitFor(() => completeLines(output).length > before, { timeoutMs: 20_000, what: `run ${kills + 1} to write output; stderr: ${child.stderr}` });
      await sleep(100 + Math.floor(Math.random() * 900));
      const exit = await child.kill('SIGKILL');
      expect(exit.signal).toBe('SIGKILL');
      kills++;
      // A torn last line is cut by the next run before it appends, so it is not counted here.
      boundaries.push(completeLines(output).length);
      expect(new Set(seqs(output)).size, 'the pipeline finished before the last kill; lower the rate').toBeLessThan(COUNT);
    }

    const last = run();
    await waitFor(() => completeLines(output).length >= COUNT && new Set(seqs(output)).size === COUNT, {
      timeoutMs: 40_000,
      intervalMs: 250,
      what: `all ${COUNT} seq values in the output`,
    });
    expect(await last.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    // Whole lines only: the file ends with a newline, and every line is JSON (seqs throws otherwise).
    const text = readFileSync(output, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const lines = completeLines(output);
    const got = seqs(output);
    const distinct = new Set(got);
    expect(distinct.size).toBe(COUNT);
    expect(got.every((seq) => Number.isInteger(seq) && seq >= 0 && seq < COUNT)).toBe(true);

    // Each line is exactly what datagen generates for its seq with this seed: no record was altered.
    const options = { seed: SEED, startMs: Date.parse('2025-01-01T00:00:00Z'), rate: RATE };
    lines.forEach((line, i) => {
      if (line !== JSON.stringify(generateEvent('clickstream', options, got[i]!).value)) {
        expect.fail(`line ${i + 1} (seq ${got[i]}) differs from the generated event: ${line}`);
      }
    });

    // The log holds every seq exactly once, whatever the kills interrupted, and no record a sink
    // reads carries the runtime's marks.
    const log = await openLog(path.join(cwd, 'data'), { readOnly: true });
    const inLog = new Map<number, number>();
    try {
      for (let partition = 0; partition < PARTITIONS; partition++) {
        let offset = 0n;
        for (;;) {
          const result = await log.read('clicks', partition, offset, { maxBytes: 4 << 20 });
          if (result.records.length === 0) break;
          for (const r of result.records) {
            const seq = (JSON.parse(r.value!.toString('utf8')) as { seq: number }).seq;
            inLog.set(seq, (inLog.get(seq) ?? 0) + 1);
          }
          offset = result.nextOffset;
        }
      }
    } finally {
      await log.close();
    }
    const twice = [...inLog].filter(([, n]) => n > 1).map(([seq]) => seq);
    expect(twice, `seqs appended more than once: ${twice.slice(0, 10).join(', ')}`).toEqual([]);
    expect(inLog.size).toBe(COUNT);
    expect(text.includes(MARK_HEADER)).toBe(false);

    // The bound on duplicates in the output, which now come from the sink alone: the last batch put
    // but not committed. A poll reads at most SINK_POLL_BYTES of keys and values in total,
    // overshooting by at most one stored batch per partition (a read returns a first batch whole),
    // and a stored batch holds at most BATCH records. Record keys and values are at least as long as
    // the shortest line, so a poll is at most SINK_POLL_BYTES / shortest + PARTITIONS * BATCH
    // records: about 4,300 + 300 here, against ~8,000 records a run writes before it is killed.
    const shortest = Math.min(...lines.map((l) => Buffer.byteLength(l)));
    const perKill = Math.ceil(SINK_POLL_BYTES / shortest) + PARTITIONS * BATCH;
    const duplicates = lines.length - COUNT;
    expect(duplicates, `${duplicates} duplicates after ${kills} kills; bound ${kills} × ${perKill}`).toBeLessThanOrEqual(kills * perKill);

    // And they are the last uncommitted batch: what a run repeats of the earlier output lies within
    // the last perKill lines written before the kill, never further back.
    const lastIndex = new Map<number, number>();
    let from = 0;
    for (const [k, boundary] of boundaries.entries()) {
      for (let i = from; i < boundary; i++) lastIndex.set(got[i]!, i);
      const until = boundaries[k + 1] ?? lines.length;
      let repeated = 0;
      for (let i = boundary; i < until; i++) {
        const earlier = lastIndex.get(got[i]!);
        if (earlier === undefined || earlier >= boundary) continue;
        repeated++;
        expect(earlier, `run ${k + 2} repeated seq ${got[i]} from line ${earlier + 1}, ${boundary - earlier} lines before its kill`).toBeGreaterThanOrEqual(boundary - perKill);
      }
      expect(repeated, `run ${k + 2} repeated ${repeated} earlier records`).toBeLessThanOrEqual(perKill);
      from = boundary;
    }
  });
});

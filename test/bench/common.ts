// Shared plumbing for the benchmark suites: options, output, timing, scratch directories.
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Log, ProducerRecord } from '../../core/log/types.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface BenchOptions {
  /** Wall-clock budget of one timed run, in seconds. */
  durationS: number;
  /** Untimed run before each timed one, in seconds, so the JIT and the page cache settle first. */
  warmupS: number;
  /** Payload bytes one case may write at most, so a fast case stops early instead of filling the disk. */
  maxBytes: number;
  /** Run only the baselines and peers: useful before the engine exists or to calibrate a machine. */
  baselinesOnly: boolean;
  peers: boolean;
  listOnly: boolean;
  /** Substrings; a case runs when its name contains any of them (all cases when empty). */
  filters: string[];
}

export interface BenchContext {
  options: BenchOptions;
  /** One JSON object per line on stdout, so results can be piped to jq or appended to a file. */
  emit(row: Record<string, unknown>): void;
  /** Human-readable progress on stderr, out of the way of the JSON on stdout. */
  progress(message: string): void;
  /** A fresh directory on the project's filesystem; removed by `removeScratch` or at exit. */
  scratchDir(label: string): string;
  removeScratch(dir: string): void;
  selected(caseName: string): boolean;
}

const DATA_DIR = join(PROJECT_ROOT, 'data');
const SCRATCH_ROOT = join(DATA_DIR, 'bench-tmp');
// data/ also holds real data for the CLI; only a data/ this run created is removed when left empty.
const dataDirExisted = existsSync(DATA_DIR);
const liveScratch = new Set<string>();
let scratchSeq = 0;

export function createContext(options: BenchOptions): BenchContext {
  return {
    options,
    emit(row) {
      process.stdout.write(JSON.stringify(row, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
    },
    progress(message) {
      process.stderr.write(`[bench] ${message}\n`);
    },
    scratchDir(label) {
      const dir = join(SCRATCH_ROOT, `${process.pid}-${scratchSeq++}-${label.replace(/[^A-Za-z0-9_.-]/g, '_')}`);
      mkdirSync(dir, { recursive: true });
      liveScratch.add(dir);
      return dir;
    },
    removeScratch(dir) {
      rmSync(dir, { recursive: true, force: true });
      liveScratch.delete(dir);
    },
    selected(caseName) {
      return options.filters.length === 0 || options.filters.some((f) => caseName.includes(f));
    },
  };
}

/** Removes whatever a crashed or interrupted case left, and data/bench-tmp itself when empty. */
export function removeAllScratch(): void {
  for (const dir of liveScratch) rmSync(dir, { recursive: true, force: true });
  liveScratch.clear();
  try {
    if (existsSync(SCRATCH_ROOT) && readdirSync(SCRATCH_ROOT).length === 0) rmdirSync(SCRATCH_ROOT);
    if (!dataDirExisted && existsSync(DATA_DIR) && readdirSync(DATA_DIR).length === 0) rmdirSync(DATA_DIR);
  } catch {
    // Another bench run may be using it concurrently; leaving an empty dir is harmless.
  }
}

export function nowNs(): bigint {
  return process.hrtime.bigint();
}

export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export function deadlineAfter(seconds: number): bigint {
  return process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
}

export const MiB = 1 << 20;

/** What a timed run of {@link appendFor} appended, and how long it took. */
export interface AppendRun {
  records: number;
  bytes: number;
  seconds: number;
}

/**
 * Appends through the Log interface, as the log and jetstream suites measure it: cycles through
 * `batches` with `concurrency` appends in flight until `seconds` have passed or the next batch
 * would take the records issued past `limit`. `size` is the payload bytes of one record, for `bytes`.
 */
export async function appendFor(
  log: Log,
  topic: string,
  batches: readonly ProducerRecord[][],
  run: { size: number; concurrency: number; seconds: number; limit: number },
): Promise<AppendRun> {
  const deadline = deadlineAfter(run.seconds);
  let issued = 0;
  let appended = 0;
  let next = 0;
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const batch = batches[next++ % batches.length]!;
      if (issued + batch.length > run.limit) {
        stop = true;
        break;
      }
      issued += batch.length;
      // Awaited first: `appended += await …` would read `appended` before the await and lose the
      // other workers' updates.
      const result = await log.append(topic, batch);
      appended += result.count;
      if (nowNs() > deadline) stop = true;
    }
  };
  const start = nowNs();
  await Promise.all(Array.from({ length: run.concurrency }, worker));
  return { records: appended, bytes: appended * run.size, seconds: secondsSince(start) };
}

/**
 * Distinct random payloads carved from one slab. Random so that nothing downstream (compression,
 * dedup in the page cache) gets an easy ride; distinct so the engine cannot get away with reusing
 * one buffer. A pool is cycled rather than allocating one payload per record, because tens of
 * millions of Buffers would measure the garbage collector instead of the log.
 */
export function makePayloads(size: number, count: number): Buffer[] {
  const slab = Buffer.allocUnsafeSlow(size * count);
  randomFillSync(slab);
  const out: Buffer[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = slab.subarray(i * size, (i + 1) * size);
  return out;
}

export function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function rate(count: number, seconds: number): number {
  return seconds > 0 ? count / seconds : 0;
}

export function mibPerS(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / MiB / seconds : 0;
}

/** Every regular file under `dir`, recursively, with its size. */
export function listFiles(dir: string): Array<{ path: string; size: number }> {
  const out: Array<{ path: string; size: number }> = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) out.push({ path: p, size: statSync(p).size });
    }
  };
  walk(dir);
  return out;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

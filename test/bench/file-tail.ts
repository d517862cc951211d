// The file-tail source's throughput into the embedded log, in a real runtime: ten files of 256-byte
// lines, rotated by rename half-way through, against a plain sequential read and line split of the
// same files in the same process right after.
//
// Each case writes its files first (page cache, like a log being tailed), starts a Runtime with one
// file-tail source into a one-partition topic and no sink, and times from the start until every
// line is appended. When the first files are about 40% read, each app-N.log is renamed to
// app-N.log.1 (out of the glob, so it is read to its end as a rotated file) and a new app-N.log,
// staged beforehand in another directory, is renamed into place: a rotation that costs the
// measurement no writing. MiB/s counts line bytes (newlines included), for ours and the baseline.
import { mkdirSync, openSync, readSync, closeSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import type { Logger } from '../../core/connector.ts';
import { type BenchContext, MiB, deadlineAfter, errorMessage, mibPerS, nowNs, rate, round, secondsSince } from './common.ts';

const FILES = 10;
const LINE_BYTES = 256;
const TOPIC = 'bench-lines';
const TARGET_MIB_PER_S = 150;

interface Case {
  name: string;
  fsync: 'never' | 'interval';
}

const CASES: Case[] = [
  { name: 'file-tail-10x256B-rotate-fsync-never', fsync: 'never' },
  { name: 'file-tail-10x256B-rotate-fsync-interval', fsync: 'interval' },
];

export function caseNames(): string[] {
  return CASES.map((c) => c.name);
}

const silent: Logger = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silent,
};

/** One file's worth of distinct 256-byte lines (255 printable bytes and a newline). */
function fileContent(file: number, generation: number, lines: number): Buffer {
  const buf = Buffer.alloc(lines * LINE_BYTES, 'x');
  for (let i = 0; i < lines; i++) {
    const at = i * LINE_BYTES;
    buf.write(`g${generation} f${String(file).padStart(2, '0')} l${String(i).padStart(9, '0')} `, at, 'latin1');
    buf[at + LINE_BYTES - 1] = 10;
  }
  return buf;
}

interface Layout {
  dir: string;
  /** Every file the case reads, in the order the baseline reads them. */
  files: string[];
  lines: number;
  bytes: number;
  rotate(): void;
}

/** Writes generation 1 under the glob and stages generation 2 outside it. */
function layOut(dir: string, bytesTotal: number): Layout {
  const logs = path.join(dir, 'logs');
  const staged = path.join(dir, 'staged');
  mkdirSync(logs, { recursive: true });
  mkdirSync(staged, { recursive: true });
  const linesPerFile = Math.max(1, Math.floor(bytesTotal / (2 * FILES * LINE_BYTES)));
  const files: string[] = [];
  for (let f = 0; f < FILES; f++) {
    writeFileSync(path.join(logs, `app-${f}.log`), fileContent(f, 1, linesPerFile));
    writeFileSync(path.join(staged, `app-${f}.log`), fileContent(f, 2, linesPerFile));
    files.push(path.join(logs, `app-${f}.log.1`), path.join(logs, `app-${f}.log`));
  }
  const lines = 2 * FILES * linesPerFile;
  return {
    dir,
    files,
    lines,
    bytes: lines * LINE_BYTES,
    rotate() {
      for (let f = 0; f < FILES; f++) {
        renameSync(path.join(logs, `app-${f}.log`), path.join(logs, `app-${f}.log.1`));
        renameSync(path.join(staged, `app-${f}.log`), path.join(logs, `app-${f}.log`));
      }
    },
  };
}

interface Result {
  seconds: number;
  /** CPU time of the whole process over the run (user + system): the cost, whatever else the machine runs. */
  cpuSeconds: number;
  lines: number;
  rotatedAt: number;
}

/** Runs file-tail into the log until every line is appended; resolves with the time it took. */
async function runTail(ctx: BenchContext, layout: Layout, fsync: Case['fsync'], maxSeconds: number): Promise<Result> {
  const [{ registry }, { openLog }, { Runtime }, { validateSpecTexts, formatProblem }] = await Promise.all([
    import('../../connectors/index.ts'),
    import('../../core/log/embedded-log.ts'),
    import('../../core/runtime/runtime.ts'),
    import('../../core/spec/index.ts'),
  ]);
  const text = toYaml({
    name: 'bench-file-tail',
    topics: [{ name: TOPIC, partitions: 1, fsync, ...(fsync === 'interval' ? { fsync_interval: '1s' } : {}) }],
    sources: [{ name: 'tail', connector: 'file-tail', topic: TOPIC, config: { paths: [path.join(layout.dir, 'logs', 'app-*.log')], rotate_wait: '1s' } }],
  });
  const { problems, specs } = validateSpecTexts([{ file: 'bench.yaml', text }], { registry, env: {} });
  if (problems.length > 0) throw new Error(problems.map(formatProblem).join('\n'));
  const log = await openLog(path.join(layout.dir, 'data'), { maintenanceIntervalMs: 0 });
  const deadline = deadlineAfter(maxSeconds);
  let runtime: Awaited<ReturnType<typeof Runtime.start>> | undefined;
  try {
    const start = nowNs();
    const cpu = process.cpuUsage();
    runtime = await Runtime.start(specs, { log, registry, logger: silent, statusIntervalMs: 0, shutdownTimeoutMs: 5000 });
    const appended = (): number => runtime!.status('tail').tasks.reduce((n, t) => n + t.recordsOut, 0);
    let rotatedAt = -1;
    for (;;) {
      const n = appended();
      if (rotatedAt < 0 && n >= layout.lines * 0.2) {
        // Generation 1 is half of the lines: 20% of all is 40% of the files being rotated.
        layout.rotate();
        rotatedAt = n;
      }
      if (n >= layout.lines) break;
      const state = runtime.status('tail');
      if (state.state === 'FAILED' || state.tasks.some((t) => t.state === 'FAILED')) throw new Error(`file-tail failed: ${JSON.stringify(state)}`);
      if (nowNs() > deadline) throw new Error(`only ${n} of ${layout.lines} lines appended within ${maxSeconds}s`);
      await new Promise((r) => setTimeout(r, 2));
    }
    const seconds = secondsSince(start);
    const used = process.cpuUsage(cpu);
    const cpuSeconds = (used.user + used.system) / 1e6;
    ctx.progress(`  appended ${layout.lines} lines in ${seconds.toFixed(2)}s, ${cpuSeconds.toFixed(2)}s of CPU (rotated after ${rotatedAt})`);
    return { seconds, cpuSeconds, lines: layout.lines, rotatedAt };
  } finally {
    await runtime?.stop();
    await log.close();
  }
}

/** The baseline: the same files read sequentially in 1 MiB chunks, counting lines with Buffer.indexOf. */
function readAndSplit(files: readonly string[]): { seconds: number; lines: number; bytes: number } {
  const buf = Buffer.allocUnsafeSlow(MiB);
  let lines = 0;
  let bytes = 0;
  const start = nowNs();
  for (const file of files) {
    const fd = openSync(file, 'r');
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, MiB, null);
        if (n === 0) break;
        bytes += n;
        let at = buf.indexOf(10, 0);
        while (at >= 0 && at < n) {
          lines++;
          at = buf.indexOf(10, at + 1);
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  return { seconds: secondsSince(start), lines, bytes };
}

export async function run(ctx: BenchContext): Promise<void> {
  const { options } = ctx;
  if (options.listOnly) {
    for (const name of caseNames()) process.stdout.write(`${name}\n`);
    return;
  }
  // At the target rate a run takes about two seconds; --max-mb caps it, --duration bounds a slow one.
  const bytesTotal = Math.min(options.maxBytes, 320 * MiB);
  const maxSeconds = Math.max(options.durationS * 10, 30);
  for (const c of CASES) {
    if (!ctx.selected(c.name)) continue;
    ctx.progress(`${c.name}: ${FILES} files x 2 generations, ${Math.round(bytesTotal / MiB)} MiB of ${LINE_BYTES}-byte lines`);
    try {
      if (!options.baselinesOnly) {
        // Warm-up: the same work on 1/8 of the data, untimed, so the JIT has seen the hot path.
        const warm = ctx.scratchDir(`${c.name}-warmup`);
        try {
          await runTail(ctx, layOut(warm, Math.max(8 * MiB, bytesTotal / 8)), c.fsync, maxSeconds);
        } finally {
          ctx.removeScratch(warm);
        }
      }
      const dir = ctx.scratchDir(c.name);
      try {
        const layout = layOut(dir, bytesTotal);
        const ours = options.baselinesOnly ? undefined : await runTail(ctx, layout, c.fsync, maxSeconds);
        if (options.baselinesOnly) layout.rotate();
        const base = readAndSplit(layout.files);
        if (base.lines !== layout.lines) throw new Error(`baseline counted ${base.lines} lines, expected ${layout.lines}`);
        const baseMib = mibPerS(base.bytes, base.seconds);
        const row: Record<string, unknown> = {
          case: c.name,
          fsync: c.fsync,
          files: FILES * 2,
          line_bytes: LINE_BYTES,
          lines: layout.lines,
          mib: round(layout.bytes / MiB, 1),
          baseline: 'read-split-1MiB',
          baseline_mb_per_s: round(baseMib, 1),
          baseline_lines_per_s: round(rate(base.lines, base.seconds)),
        };
        if (ours) {
          const mib = mibPerS(layout.bytes, ours.seconds);
          Object.assign(row, {
            mb_per_s: round(mib, 1),
            records_per_s: round(rate(ours.lines, ours.seconds)),
            seconds: round(ours.seconds, 3),
            cpu_seconds: round(ours.cpuSeconds, 3),
            ratio: round(mib / baseMib, 3),
            target: { metric: 'mb_per_s', min: TARGET_MIB_PER_S },
            meets_target: mib >= TARGET_MIB_PER_S,
          });
        }
        ctx.emit(row);
      } finally {
        ctx.removeScratch(dir);
      }
    } catch (err) {
      ctx.emit({ case: c.name, error: errorMessage(err) });
    }
  }
}

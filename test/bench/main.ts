/**
 * Benchmark harness. Benchmarks are not tests: nothing here fails on a slow number; rows carry
 * `target`/`meets_target` instead, and an unreachable peer is reported as skipped.
 *
 * Usage:
 *   npm run bench -- <suite> [filter...] [--duration=S] [--warmup=S] [--max-mb=N]
 *                            [--baselines-only | raw] [--no-peers] [--list]
 *
 *   npm run bench -- log                     every log case, then the peers
 *   npm run bench -- log append-100B read    cases whose name contains any filter
 *   npm run bench -- log raw                 baselines and peers only (no engine needed)
 *   npm run bench -- log --list              case names
 *   BENCH_DURATION=1 npm run bench -- log    shorter runs (env twins: BENCH_WARMUP, BENCH_MAX_MB,
 *                                            BENCH_BASELINES_ONLY=1, BENCH_NO_PEERS=1)
 *   Peers: JetStream at BENCH_NATS (default 127.0.0.1:4222), Redis at BENCH_REDIS (127.0.0.1:6379).
 *
 * Profiling a case: node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx test/bench/main.ts log <case> --no-peers
 *
 * Output: progress on stderr; on stdout one JSON object per line per case, e.g.
 *   {"case":"append-100B-b1000-nosync-p1","records_per_s":…,"mb_per_s":…,"baseline":"raw-write-1MiB",
 *    "baseline_records_per_s":…,"baseline_mb_per_s":…,"ratio":…,"target":{…},"meets_target":true}
 * `mb_per_s` is MiB/s of record payload (not framing) for ours and the baselines alike, and `ratio`
 * is ours/baseline in records/s, so a row reads the same whatever the on-disk format costs. Peer
 * rows put sluice's comparable case over the peer instead.
 *
 * Durable (fsync) cases are divided by the same writes fdatasync'ed per batch (or per
 * batch*concurrency, a perfect group commit); `physical_ratio` divides them by the unsynced limit.
 *
 * Each timed run stops at --duration seconds (default 3) or --max-mb of payload (default 512),
 * whichever comes first, after --warmup seconds (default 0.3) of the same work untimed. Past about
 * 1 GiB per run the page cache on this VM slows down unpredictably (up to 2x, on raw writes too),
 * which would drown the differences the ratios are meant to show. Baselines run in the same process
 * right after the case they measure, on the same filesystem: scratch data goes under
 * data/bench-tmp/ (not os.tmpdir(), which may be tmpfs and flatter every number) and is removed
 * after each case.
 *
 * Adding a suite: a module exporting `run(ctx: BenchContext)` and a line in SUITES.
 */
import { type BenchContext, type BenchOptions, createContext, removeAllScratch } from './common.ts';

interface Suite {
  describe: string;
  load(): Promise<{ run(ctx: BenchContext): Promise<void> }>;
}

// Lazy imports, so one suite's missing dependency or broken module does not stop the others.
const SUITES: Record<string, Suite> = {
  log: { describe: 'embedded log appends and reads vs raw file I/O, JetStream and Redis', load: () => import('./log.ts') },
  'file-tail': { describe: 'file-tail into the log: ten files of 256-byte lines with rotation vs a plain read and line split', load: () => import('./file-tail.ts') },
  webhook: { describe: 'webhook source vs a bare node:http JSON server, single events and 100-event batches, fsync interval and always', load: () => import('./webhook.ts') },
  cdc: { describe: 'postgres-cdc backlog drain (1M changes) vs pg_recvlogical, and commit-to-log latency at 5k changes/s', load: () => import('./cdc.ts') },
  'sink-mysql': { describe: 'mysql sink: 1M upserts from a topic into MariaDB through a Runtime vs mysql2 multi-row upserts', load: () => import('./sink-mysql.ts') },
  'sink-postgres': { describe: 'postgres sink: 1M upserts from a topic into Postgres through a Runtime vs COPY', load: () => import('./sink-postgres.ts') },
  jetstream: { describe: 'JetStream log backend appends and reads, 1 and 3 replicas, vs raw JetStream publishes/direct gets and the embedded log', load: () => import('./jetstream.ts') },
};

function usage(): string {
  const lines = Object.entries(SUITES).map(([name, s]) => `  ${name.padEnd(12)} ${s.describe}`);
  return [
    'usage: npm run bench -- <suite> [filter...] [--duration=S] [--warmup=S] [--max-mb=N] [--baselines-only|raw] [--no-peers] [--list]',
    'suites:',
    ...lines,
  ].join('\n');
}

function numberFrom(flag: string | undefined, env: string | undefined, fallback: number, what: string): number {
  const raw = flag ?? env;
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${what} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

function parseArgs(argv: string[]): { suite: string | undefined; options: BenchOptions } {
  const flags = new Map<string, string>();
  const positional: string[] = [];
  for (const arg of argv) {
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      flags.set(eq < 0 ? arg.slice(2) : arg.slice(2, eq), eq < 0 ? 'true' : arg.slice(eq + 1));
    } else {
      positional.push(arg);
    }
  }
  const known = new Set(['duration', 'warmup', 'max-mb', 'baselines-only', 'no-peers', 'list', 'help']);
  for (const f of flags.keys()) if (!known.has(f)) throw new Error(`unknown flag --${f}\n${usage()}`);
  if (flags.has('help')) {
    process.stderr.write(`${usage()}\n`);
    process.exit(0);
  }
  const [suite, ...rest] = positional;
  // `raw` reads as a filter but means "baselines only", matching how people ask for it.
  const rawAlias = rest.includes('raw');
  const filters = rest.filter((f) => f !== 'raw');
  const env = process.env;
  return {
    suite,
    options: {
      durationS: numberFrom(flags.get('duration'), env.BENCH_DURATION, 3, '--duration'),
      warmupS: numberFrom(flags.get('warmup'), env.BENCH_WARMUP, 0.3, '--warmup'),
      maxBytes: numberFrom(flags.get('max-mb'), env.BENCH_MAX_MB, 512, '--max-mb') * (1 << 20),
      baselinesOnly: flags.has('baselines-only') || rawAlias || env.BENCH_BASELINES_ONLY === '1',
      peers: !flags.has('no-peers') && env.BENCH_NO_PEERS !== '1',
      listOnly: flags.has('list'),
      filters,
    },
  };
}

async function main(): Promise<void> {
  const { suite, options } = parseArgs(process.argv.slice(2));
  const entry = suite === undefined ? undefined : SUITES[suite];
  if (!entry) {
    process.stderr.write(`${suite === undefined ? 'no suite given' : `unknown suite ${suite}`}\n${usage()}\n`);
    process.exitCode = 2;
    return;
  }
  const ctx = createContext(options);
  const onSignal = (): void => {
    removeAllScratch();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const start = process.hrtime.bigint();
  try {
    const mod = await entry.load();
    await mod.run(ctx);
  } finally {
    removeAllScratch();
  }
  if (!options.listOnly) ctx.progress(`done in ${(Number(process.hrtime.bigint() - start) / 1e9).toFixed(1)}s`);
}

await main();

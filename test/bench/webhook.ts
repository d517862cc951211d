/**
 * `npm run bench -- webhook`: sluice's webhook source against a bare node:http server, with the same
 * load generator for both, in the same run: autocannon (in this process), or Debian's wrk with
 * BENCH_LOADGEN=wrk. Each row names its generator.
 *
 * - The bare server reads the body, JSON.parses it and replies 202: the floor any Node HTTP ingest
 *   pays. It runs as plain `node` in a child process.
 * - sluice runs as a child `sluice run` with a webhook route into a 4-partition topic keyed by
 *   user_id, and no sink: what is measured is ingest, where every 200 means the events are in the
 *   log (fsync'ed first with `fsync: always`).
 *
 * Cases, each with `fsync: interval` and `fsync: always` on the topic:
 * - single-event POSTs (about 310 bytes), reported as a ratio of sluice's requests/s to the bare
 *   server's (target >= 0.7);
 * - 100-event batch POSTs, reported in events/s (target >= 300,000).
 *
 * Both servers get their own process and the generator its own, so on a 2-core machine each
 * server competes with the generator only. Connections: 64, as in the wrk -c64 figure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { PROJECT_ROOT, round, type BenchContext } from './common.ts';
import { freePort } from '../support/free-port.ts';

const CONNECTIONS = 64;
const BATCH = 100;
const SINGLE_RATIO_TARGET = 0.7;
const BATCH_EVENTS_TARGET = 300_000;
const FSYNC = ['interval', 'always'] as const;
const MIN_WARMUP_S = 2;

// Plain node, no loader: the baseline must not pay for anything sluice's child does not.
const BARE_SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    try {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(202, { 'Content-Type': 'application/json', 'Content-Length': 2 });
      res.end('{}');
    } catch {
      res.writeHead(400);
      res.end();
    }
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

/** A click event of about 310 bytes, as a browser collector would send it. */
function clickEvent(i: number): Record<string, unknown> {
  return {
    user_id: `u-${(i * 7919) % 100_000}`,
    session_id: `s-${(i * 104_729).toString(36)}`,
    event: 'page_view',
    url: `https://shop.example.com/products/${i % 5000}?ref=campaign-${i % 17}`,
    referrer: 'https://www.example.org/search?q=running+shoes',
    user_agent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
    ts: '2025-06-01T12:34:56.789Z',
  };
}

interface Load {
  requestsPerS: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  errors: number;
  requests: number;
  seconds: number;
}

type LoadGenerator = 'autocannon' | 'wrk';

/**
 * The generator both servers get: autocannon (in this process) unless BENCH_LOADGEN=wrk asks for
 * Debian's wrk, the generator of the reference figure. wrk is C, so on two cores it leaves
 * the server more of the machine than autocannon's Node event loop does.
 */
function loadGenerator(): LoadGenerator {
  const wanted = process.env['BENCH_LOADGEN'] ?? 'autocannon';
  if (wanted !== 'autocannon' && wanted !== 'wrk') throw new Error(`BENCH_LOADGEN must be autocannon or wrk, got ${JSON.stringify(wanted)}`);
  return wanted;
}

/** One run of the chosen generator for `seconds` against `url`, after an untimed warmup of the same load. */
async function load(url: string, body: string, seconds: number, warmupS: number): Promise<Load> {
  if (loadGenerator() === 'wrk') {
    if (warmupS > 0) await wrk(url, body, warmupS);
    return wrk(url, body, seconds);
  }
  const options = { url, method: 'POST' as const, connections: CONNECTIONS, pipelining: 1, headers: { 'content-type': 'application/json' }, body };
  if (warmupS > 0) await autocannon({ ...options, duration: warmupS });
  const result = await autocannon({ ...options, duration: seconds });
  return {
    requestsPerS: result.requests.total / result.duration,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    requests: result.requests.total,
    seconds: result.duration,
  };
}

// wrk takes the method, headers and body from a Lua script, and its done() hook prints the summary
// as JSON, so nothing depends on its text report.
const WRK_SCRIPT = `
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("SLUICE_BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
`;

/** One wrk run (one thread, as in the figure); its body and script go through scratch files. */
async function wrk(url: string, body: string, seconds: number): Promise<Load> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-wrk-'));
  try {
    writeFileSync(join(dir, 'body.json'), body);
    writeFileSync(join(dir, 'post.lua'), WRK_SCRIPT);
    const args = ['-t1', `-c${CONNECTIONS}`, `-d${Math.max(1, Math.round(seconds))}s`, '--timeout', '10s', '-s', join(dir, 'post.lua'), url];
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('wrk', args, { env: { ...process.env, SLUICE_BENCH_BODY: join(dir, 'body.json') }, stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      child.once('error', (err) => reject(new Error(`cannot run wrk (apt-get install wrk, or leave BENCH_LOADGEN unset): ${err.message}`)));
      child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}`))));
    });
    const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
    if (line === undefined) throw new Error(`wrk printed no summary: ${out.slice(0, 200)}`);
    const r = JSON.parse(line) as { requests: number; duration_us: number; p50_us: number; p99_us: number; non2xx: number; errors: number };
    const seconds_ = r.duration_us / 1e6;
    return { requestsPerS: r.requests / seconds_, latencyP50Ms: round(r.p50_us / 1000, 2), latencyP99Ms: round(r.p99_us / 1000, 2), non2xx: r.non2xx, errors: r.errors, requests: r.requests, seconds: seconds_ };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Starts the bare server; resolves with its URL. */
async function startBare(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['-e', BARE_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`the bare server exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}/collect`, child };
}

/** Starts `sluice run` on a fresh data dir with the webhook into a topic with `fsync`; resolves once /healthz answers. */
async function startSluice(ctx: BenchContext, fsync: (typeof FSYNC)[number]): Promise<{ url: string; child: ChildProcess; dir: string }> {
  const dir = ctx.scratchDir(`webhook-${fsync}`);
  const port = await freePort();
  const spec = join(dir, 'spec.yaml');
  writeFileSync(
    spec,
    `name: bench
topics:
  - name: clicks
    partitions: 4
    fsync: ${fsync}
sources:
  - name: collector
    connector: webhook
    config:
      port: ${port}
      max_pending: 100000
      routes:
        - { path: /collect, topic: clicks, key_field: user_id }
sinks: []
`,
  );
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'core/cli/bin.js'), 'run', spec, '--data-dir', join(dir, 'data'), '--no-api', '--status-interval', '0', '--log-level', 'warn'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sluice run exited with ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      http.get(`${base}/healthz`, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      }).on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error('sluice did not listen within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { url: `${base}/collect`, child, dir };
}

const caseName = (kind: 'single' | 'batch100', fsync: string): string => `webhook-${kind}-fsync-${fsync}`;

export async function run(ctx: BenchContext): Promise<void> {
  const names = FSYNC.flatMap((f) => [caseName('single', f), caseName('batch100', f)]);
  if (ctx.options.listOnly) {
    for (const name of ['bare-single', 'bare-batch100', ...names]) ctx.emit({ case: name });
    return;
  }
  const { durationS } = ctx.options;
  // A freshly started server needs a couple of seconds of load before its JIT settles (sluice's
  // first second runs at half speed); both sides get the same warmup.
  const warmupS = Math.max(ctx.options.warmupS, MIN_WARMUP_S);
  const single = JSON.stringify(clickEvent(1));
  const batch = JSON.stringify(Array.from({ length: BATCH }, (_, i) => clickEvent(i)));
  const wanted = (kind: 'single' | 'batch100'): boolean => FSYNC.some((f) => ctx.selected(caseName(kind, f))) || ctx.selected(`bare-${kind}`);

  // The baselines first, once, shared by both fsync modes.
  const bare: Partial<Record<'single' | 'batch100', Load>> = {};
  const server = await startBare();
  try {
    for (const [kind, body] of [['single', single], ['batch100', batch]] as const) {
      if (!wanted(kind)) continue;
      ctx.progress(`bare node:http, ${kind} (${Buffer.byteLength(body)} bytes), ${CONNECTIONS} connections`);
      const result = await load(server.url, body, durationS, warmupS);
      bare[kind] = result;
      const events = kind === 'single' ? 1 : BATCH;
      ctx.emit({ case: `bare-${kind}`, load_generator: loadGenerator(), connections: CONNECTIONS, body_bytes: Buffer.byteLength(body), requests_per_s: round(result.requestsPerS), events_per_s: round(result.requestsPerS * events), p50_ms: result.latencyP50Ms, p99_ms: result.latencyP99Ms, non_2xx: result.non2xx, errors: result.errors });
    }
  } finally {
    await stopChild(server.child);
  }

  for (const fsync of FSYNC) {
    if (!ctx.selected(caseName('single', fsync)) && !ctx.selected(caseName('batch100', fsync))) continue;
    const sluice = await startSluice(ctx, fsync);
    try {
      for (const [kind, body] of [['single', single], ['batch100', batch]] as const) {
        const name = caseName(kind, fsync);
        if (!ctx.selected(name)) continue;
        ctx.progress(`${name}: sluice webhook, ${CONNECTIONS} connections`);
        const result = await load(sluice.url, body, durationS, warmupS);
        const events = kind === 'single' ? 1 : BATCH;
        const baseline = bare[kind];
        const row: Record<string, unknown> = {
          case: name,
          load_generator: loadGenerator(),
          connections: CONNECTIONS,
          body_bytes: Buffer.byteLength(body),
          requests_per_s: round(result.requestsPerS),
          events_per_s: round(result.requestsPerS * events),
          p50_ms: result.latencyP50Ms,
          p99_ms: result.latencyP99Ms,
          non_2xx: result.non2xx,
          errors: result.errors,
          baseline: `bare-${kind}`,
          baseline_requests_per_s: baseline ? round(baseline.requestsPerS) : null,
          ratio: baseline ? round(result.requestsPerS / baseline.requestsPerS, 3) : null,
        };
        if (kind === 'single') {
          row['target'] = { ratio: SINGLE_RATIO_TARGET };
          row['meets_target'] = typeof row['ratio'] === 'number' ? (row['ratio'] as number) >= SINGLE_RATIO_TARGET : null;
        } else {
          row['target'] = { events_per_s: BATCH_EVENTS_TARGET };
          row['meets_target'] = result.requestsPerS * events >= BATCH_EVENTS_TARGET;
        }
        ctx.emit(row);
      }
    } finally {
      await stopChild(sluice.child);
      ctx.removeScratch(sluice.dir);
    }
  }
}

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { defineRegistry, defineSink, defineSource, type Logger, type SinkRecord, type SourceRecord } from '../connector.ts';
import { openLog, type EmbeddedLog } from '../log/embedded-log.ts';
import { Runtime } from '../runtime/runtime.ts';
import { formatProblem, scrubSecrets, validateSpecTexts, type LoadedSpec } from '../spec/index.ts';
import { isLoopback, startAdminApi, type AdminApi, type AdminApiOptions } from './server.ts';

// Test connectors: a source of numbered records and a sink that collects them in memory.

const PARTITION = { stream: 'numbers' } as const;

/** Resolves after `ms`, or at once when `signal` aborts: poll must return promptly on pause and stop. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

const numbers = defineSource({
  kind: 'source',
  name: 'numbers',
  description: 'Numbered records 0..count-1, a batch every interval (test double).',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['count'],
    properties: {
      count: { type: 'integer', minimum: 0, description: 'How many records.' },
      batch: { type: 'integer', minimum: 1, default: 10, description: 'Records per poll.' },
      interval_ms: { type: 'integer', minimum: 0, default: 10, description: 'Wait before each poll.' },
      password: { type: 'string', writeOnly: true, description: 'A secret, to test redaction.' },
    },
  } as const,
  createTask: (config) => {
    let next = 0;
    return {
      async start(ctx) {
        const committed = ctx.committedOffset(PARTITION)?.['next'];
        next = typeof committed === 'number' ? committed : 0;
      },
      async poll(signal) {
        await pause(config.interval_ms, signal);
        const records: SourceRecord[] = [];
        for (; next < config.count && records.length < config.batch; next++) {
          records.push({ sourcePartition: PARTITION, sourceOffset: { next: next + 1 }, key: Buffer.from(String(next)), value: Buffer.from(JSON.stringify({ n: next })) });
        }
        return records;
      },
      async commit() {},
      async stop() {},
    };
  },
});

/** What the collecting sinks received, by `bucket`; and the buckets whose puts fail. */
const buckets = new Map<string, number[]>();
const failing = new Set<string>();

const collect = defineSink({
  kind: 'sink',
  name: 'collect',
  description: 'Collects record numbers into an in-memory bucket (test double).',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['bucket'],
    properties: {
      bucket: { type: 'string', description: 'Where the numbers go.' },
      password: { type: 'string', writeOnly: true, description: 'A secret, to test redaction.' },
    },
  } as const,
  createTask: (config) => ({
    async start() {},
    async put(records: readonly SinkRecord[]) {
      // A driver error that quotes the credentials, as real ones do with DSNs.
      if (failing.has(config.bucket)) throw new Error(`connection refused for user admin password ${config.password ?? ''}`);
      let list = buckets.get(config.bucket);
      if (!list) buckets.set(config.bucket, (list = []));
      for (const r of records) list.push((JSON.parse(r.value!.toString()) as { n: number }).n);
    },
    async stop() {},
  }),
});

const registry = defineRegistry([numbers, collect]);

const SOURCE_SECRET = 'source-pw-7f3a9c2e';
const SINK_SECRET = 'sink-literal-secret-51d0';

function specText(name: string, options: { count: number; bucket: string; interval?: number }): string {
  return `name: ${name}
topics:
  - name: ${name}-numbers
    partitions: 2
sources:
  - name: ${name}-src
    connector: numbers
    topic: ${name}-numbers
    config:
      count: ${options.count}
      interval_ms: ${options.interval ?? 10}
      password: \${env:API_TEST_PASSWORD}
sinks:
  - name: ${name}-sink
    connector: collect
    topics: [${name}-numbers]
    config:
      bucket: ${options.bucket}
      password: ${SINK_SECRET}
`;
}

// ---------------------------------------------------------------------------------------------
// Harness

interface Captured {
  level: string;
  fields: Record<string, unknown>;
  msg: string;
}

function captureLogger(lines: Captured[], bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (first: object | string, msg?: string): void => {
      if (typeof first === 'string') lines.push({ level, fields: { ...bindings }, msg: first });
      else lines.push({ level, fields: { ...bindings, ...first }, msg: msg ?? '' });
    };
  return { trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (more) => captureLogger(lines, { ...bindings, ...more }) };
}

interface Stack {
  runtime: Runtime;
  log: EmbeddedLog;
  api: AdminApi;
  specs: LoadedSpec[];
  lines: Captured[];
  url(p: string): string;
}

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
  buckets.clear();
  failing.clear();
});

let counter = 0;

async function startStack(options: { count?: number; interval?: number; failSink?: boolean; api?: Partial<AdminApiOptions> } = {}): Promise<Stack> {
  const name = `api${++counter}`;
  const bucket = `${name}-bucket`;
  if (options.failSink) failing.add(bucket);
  const { problems, specs } = validateSpecTexts([{ file: `${name}.yaml`, text: specText(name, { count: options.count ?? 100, bucket, interval: options.interval ?? 10 }) }], {
    registry,
    env: { API_TEST_PASSWORD: SOURCE_SECRET },
  });
  expect(problems.map(formatProblem)).toEqual([]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-api-test-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const log = await openLog(dir, { maintenanceIntervalMs: 0 });
  cleanups.push(() => log.close());
  const lines: Captured[] = [];
  const logger = captureLogger(lines);
  const runtime = await Runtime.start(specs, { log, registry, logger, statusIntervalMs: 0, shutdownTimeoutMs: 2_000 });
  cleanups.push(() => runtime.stop());
  const scrub = (text: string): string => specs.reduce((t, s) => scrubSecrets(t, s.secrets), text);
  const api = await startAdminApi(runtime, { port: 0, logger, scrub, ...options.api });
  cleanups.push(() => api.close());
  return { runtime, log, api, specs, lines, url: (p) => api.url + p };
}

function received(stack: Stack): number[] {
  const name = stack.specs[0]!.spec.name;
  return buckets.get(`${name}-bucket`) ?? [];
}

async function getJson(url: string, init?: RequestInit): Promise<{ status: number; body: any; headers: Headers; text: string }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text.length > 0 ? JSON.parse(text) : undefined, headers: res.headers, text };
}

/** A GET with an explicit Host header. */
function rawGet(url: string, host: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { headers: { Host: host } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

const waitFor = <T>(fn: () => T | Promise<T>, timeout = 10_000): Promise<T> => vi.waitFor(fn, { timeout, interval: 25 });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

describe('admin API', () => {
  // Pins that the connector list, info and status use Kafka Connect's shapes, with sluice's counts added.
  it('lists connectors and reports their status in Kafka Connect shapes', async () => {
    const s = await startStack({ count: 50 });
    await waitFor(() => expect(received(s)).toHaveLength(50));
    const [src, sink] = s.runtime.names() as [string, string];

    const root = await getJson(s.url('/'));
    expect(root.status).toBe(200);
    expect(root.body).toEqual({ version: '0.1.0', commit: null });

    const list = await getJson(s.url('/connectors'));
    expect(list.status).toBe(200);
    expect(list.headers.get('content-type')).toBe('application/json');
    expect(list.body).toEqual([src, sink]);

    const info = await getJson(s.url(`/connectors/${sink}`));
    expect(info.body).toMatchObject({ name: sink, type: 'sink', tasks: [{ connector: sink, task: 0 }], config: { name: sink, connector: 'collect', topics: [`${s.specs[0]!.spec.name}-numbers`] } });

    // The counts move just after put resolves, so the first read may be a batch behind.
    await waitFor(async () => expect((await getJson(s.url(`/connectors/${sink}/status`))).body.records_out).toBe(50));
    const status = await getJson(s.url(`/connectors/${sink}/status`));
    expect(status.status).toBe(200);
    expect(status.body).toEqual({
      name: sink,
      connector: { state: 'RUNNING', worker_id: `${os.hostname()}:${new URL(s.api.url).port}` },
      tasks: [{ id: 0, state: 'RUNNING', worker_id: `${os.hostname()}:${new URL(s.api.url).port}`, records_in: 50, records_out: 50, dlq_records: 0, last_activity: expect.any(String) }],
      type: 'sink',
      pipeline: s.specs[0]!.spec.name,
      connector_type: 'collect',
      records_in: 50,
      records_out: 50,
      dlq_records: 0,
    });
    const srcStatus = await getJson(s.url(`/connectors/${src}/status`));
    expect(srcStatus.body).toMatchObject({ name: src, type: 'source', connector: { state: 'RUNNING' }, records_out: 50 });

    const task = await getJson(s.url(`/connectors/${sink}/tasks/0/status`));
    expect(task.body).toMatchObject({ id: 0, state: 'RUNNING', records_out: 50 });
    expect((await getJson(s.url(`/connectors/${sink}/tasks/7/status`))).body).toEqual({ error_code: 404, message: `Task ${sink}-7 not found` });

    const expanded = await getJson(s.url('/connectors?expand=status&expand=info'));
    expect(Object.keys(expanded.body)).toEqual([src, sink]);
    // Tasks carry last_activity, which moves between two calls.
    expect({ ...expanded.body[sink].status, tasks: null }).toEqual({ ...status.body, tasks: null });
    expect(expanded.body[sink].info).toEqual(info.body);
    const statusOnly = await getJson(s.url('/connectors?expand=status'));
    expect(Object.keys(statusOnly.body[src])).toEqual(['status']);

    // Every request is logged at debug level with method, path, status and duration.
    expect(s.lines).toContainEqual(expect.objectContaining({ level: 'debug', fields: expect.objectContaining({ component: 'api', method: 'GET', path: '/connectors', status: 200, ms: expect.any(Number) }) }));
  });

  // Pins that pausing a sink through the API stops the flow to its target and resuming starts it again.
  it('pauses and resumes a connector', async () => {
    const s = await startStack({ count: 1_000_000, interval: 5 });
    const sink = s.runtime.names()[1]!;
    await waitFor(() => expect(received(s).length).toBeGreaterThan(20));

    const paused = await fetch(s.url(`/connectors/${sink}/pause`), { method: 'PUT' });
    expect(paused.status).toBe(202);
    expect(await paused.text()).toBe('');
    expect((await getJson(s.url(`/connectors/${sink}/status`))).body.connector.state).toBe('PAUSED');
    // A poll already in flight may still deliver its batch.
    await sleep(200);
    const before = received(s).length;
    await sleep(500);
    expect(received(s).length).toBe(before);

    const resumed = await fetch(s.url(`/connectors/${sink}/resume`), { method: 'PUT' });
    expect(resumed.status).toBe(202);
    expect(await resumed.text()).toBe('');
    await waitFor(() => expect(received(s).length).toBeGreaterThan(before + 20));
    expect((await getJson(s.url(`/connectors/${sink}/status`))).body.connector.state).toBe('RUNNING');
  });

  // Pins that a failing sink turns /health to 503 with its reason, and a restart through the API clears FAILED.
  it('reports health and restarts a failed connector', async () => {
    const s = await startStack({ count: 30, failSink: true });
    const [src, sink] = s.runtime.names() as [string, string];
    await waitFor(() => expect(s.runtime.status(sink).state).toBe('FAILED'));

    const health = await getJson(s.url('/health'));
    expect(health.status).toBe(503);
    expect(health.body.status).toBe('unhealthy');
    expect(health.body.reasons).toEqual([expect.stringContaining(`${sink} is FAILED`)]);

    const status = await getJson(s.url(`/connectors/${sink}/status`));
    expect(status.body.connector.state).toBe('FAILED');
    expect(status.body.tasks[0].state).toBe('FAILED');
    expect(status.body.tasks[0].message).toContain('connection refused for user admin');
    expect(status.body.tasks[0].trace).toContain('connection refused for user admin');
    expect(status.body.tasks[0].trace).toContain('    at ');

    // onlyFailed leaves a healthy connector alone and answers with its status.
    const untouched = await getJson(s.url(`/connectors/${src}/restart?onlyFailed=true`), { method: 'POST' });
    expect(untouched.status).toBe(202);
    expect(untouched.body.connector.state).toBe('RUNNING');

    failing.clear();
    const restarted = await fetch(s.url(`/connectors/${sink}/restart`), { method: 'POST' });
    expect(restarted.status).toBe(204);
    expect(await restarted.text()).toBe('');
    await waitFor(async () => {
      const h = await getJson(s.url('/health'));
      expect(h.body).toEqual({ status: 'healthy' });
      expect(h.status).toBe(200);
    });
    expect((await getJson(s.url(`/connectors/${sink}/status`))).body.connector.state).toBe('RUNNING');
    // The restarted sink resumes from its committed offsets, so every record arrives.
    await waitFor(() => expect(new Set(received(s)).size).toBe(30));
  });

  // Pins the Kafka Connect 3.5 offsets shape for sources and sinks, with the sink's lag added.
  it('reports source and sink offsets', async () => {
    const s = await startStack({ count: 40 });
    const [src, sink] = s.runtime.names() as [string, string];
    const topic = `${s.specs[0]!.spec.name}-numbers`;
    await waitFor(() => expect(received(s)).toHaveLength(40));

    await waitFor(async () => {
      const source = await getJson(s.url(`/connectors/${src}/offsets`));
      expect(source.status).toBe(200);
      expect(source.body).toEqual({ offsets: [{ partition: { stream: 'numbers' }, offset: { next: 40 } }] });
    });
    await waitFor(async () => {
      const offsets = await getJson(s.url(`/connectors/${sink}/offsets`));
      expect(offsets.body.group).toBe(`${s.specs[0]!.spec.name}.${sink}`);
      expect(offsets.body.lag).toBe(0);
      for (const o of offsets.body.offsets) expect(o).toEqual({ partition: { kafka_topic: topic, kafka_partition: expect.any(Number) }, offset: { kafka_offset: expect.any(Number) } });
      const committed = offsets.body.offsets.reduce((n: number, o: { offset: { kafka_offset: number } }) => n + o.offset.kafka_offset, 0);
      expect(committed).toBe(40);
      expect(offsets.body.partitions).toHaveLength(2);
      for (const p of offsets.body.partitions) expect(p).toEqual({ topic, partition: expect.any(Number), committed_offset: p.end_offset, end_offset: expect.any(Number), lag: 0 });
    });
  });

  // Pins that /metrics serves valid Prometheus text with the runtime's series, after refreshing the gauges.
  it('serves Prometheus metrics', async () => {
    const s = await startStack({ count: 25 });
    await waitFor(() => expect(received(s)).toHaveLength(25));
    const { name: pipeline } = s.specs[0]!.spec;
    const [src, sink] = s.runtime.names() as [string, string];
    const text = await waitFor(async () => {
      const res = await fetch(s.url('/metrics'));
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const body = await res.text();
      expect(body).toContain(`sluice_records_out_total{pipeline="${pipeline}",connector="${sink}"} 25`);
      return body;
    });

    const name = '[a-zA-Z_:][a-zA-Z0-9_:]*';
    const labels = `\\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\.)*",?)*\\}`;
    const value = '(?:[-+]?(?:\\d+(?:\\.\\d+)?(?:[eE][-+]?\\d+)?|Inf)|NaN)';
    const sample = new RegExp(`^(${name})(?:${labels})? ${value}(?: -?\\d+)?$`);
    const comment = new RegExp(`^# (?:HELP ${name} .*|TYPE ${name} (?:counter|gauge|histogram|summary|untyped))$`);
    const seen = new Set<string>();
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('#')) {
        expect(line).toMatch(comment);
        continue;
      }
      const m = sample.exec(line);
      expect(m, line).not.toBeNull();
      seen.add(m![1]!);
    }
    for (const series of ['sluice_records_in_total', 'sluice_records_out_total', 'sluice_append_latency_seconds_bucket', 'sluice_put_latency_seconds_count', 'sluice_consumer_lag_records', 'sluice_log_size_bytes', 'sluice_connector_state']) {
      expect(seen, series).toContain(series);
    }
    expect(text).toContain(`sluice_records_out_total{pipeline="${pipeline}",connector="${src}"} 25`);
    expect(text).toContain(`sluice_connector_state{pipeline="${pipeline}",connector="${sink}",state="RUNNING"} 1`);
  });

  // Pins that with a token every route but GET /health needs the bearer token, and that a wrong one is refused.
  it('requires the bearer token when one is set', async () => {
    const token = 'tok-' + 'x'.repeat(40);
    const s = await startStack({ count: 5, api: { token } });
    const sink = s.runtime.names()[1]!;
    for (const [method, p] of [['GET', '/'], ['GET', '/connectors'], ['GET', `/connectors/${sink}/status`], ['GET', '/metrics'], ['PUT', `/connectors/${sink}/pause`], ['POST', `/connectors/${sink}/restart`], ['GET', '/connectors/no-such/status']] as const) {
      const missing = await getJson(s.url(p), { method });
      expect(missing.status, `${method} ${p}`).toBe(401);
      expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="sluice"');
      expect(missing.body).toEqual({ error_code: 401, message: expect.any(String) });
      const wrong = await getJson(s.url(p), { method, headers: { Authorization: `Bearer ${token}x` } });
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toContain('error="invalid_token"');
      expect((await getJson(s.url(p), { method, headers: { Authorization: 'Basic abc' } })).status).toBe(401);
    }
    expect(s.runtime.status(sink).state).not.toBe('PAUSED');
    const ok = await getJson(s.url('/connectors'), { headers: { Authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual(s.runtime.names());
    expect((await fetch(s.url('/metrics'), { headers: { authorization: `bearer ${token}` } })).status).toBe(200);
    // Load balancers probe health without credentials.
    await waitFor(async () => expect((await getJson(s.url('/health'))).status).toBe(200));
  });

  // Pins Kafka Connect's error shape for unknown connectors and routes, and 405 with Allow for a wrong method.
  it('answers 404 and 405 in Kafka Connect shape', async () => {
    const s = await startStack({ count: 5 });
    const sink = s.runtime.names()[1]!;
    for (const p of ['/connectors/nope', '/connectors/nope/status', '/connectors/nope/offsets', '/connectors/nope/config']) {
      const r = await getJson(s.url(p));
      expect(r.status, p).toBe(404);
      expect(r.body).toEqual({ error_code: 404, message: 'Connector nope not found' });
    }
    expect((await fetch(s.url('/connectors/nope/pause'), { method: 'PUT' })).status).toBe(404);
    expect((await fetch(s.url('/connectors/nope/restart'), { method: 'POST' })).status).toBe(404);
    const route = await getJson(s.url('/nothing/here'));
    expect(route.status).toBe(404);
    expect(route.body).toEqual({ error_code: 404, message: 'no route for /nothing/here' });

    const del = await getJson(s.url(`/connectors/${sink}`), { method: 'DELETE' });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET, HEAD');
    expect(del.body.error_code).toBe(405);
    const getPause = await getJson(s.url(`/connectors/${sink}/pause`));
    expect(getPause.status).toBe(405);
    expect(getPause.headers.get('allow')).toBe('PUT');
    expect((await fetch(s.url(`/connectors/${sink}/restart`), { method: 'PUT' })).headers.get('allow')).toBe('POST');

    const badFlag = await getJson(s.url(`/connectors/${sink}/restart?onlyFailed=maybe`), { method: 'POST' });
    expect(badFlag.status).toBe(400);
    expect(badFlag.body).toEqual({ error_code: 400, message: 'onlyFailed must be true or false, got "maybe"' });
    expect((await getJson(s.url('/connectors/%E0%A4%A'))).status).toBe(400);

    const head = await fetch(s.url('/connectors'), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  // Pins that an unexpected failure answers 500 with a scrubbed message and no stack, and is logged.
  it('answers 500 without a stack for unexpected errors', async () => {
    const s = await startStack({ count: 5 });
    const broken = Object.assign(Object.create(s.runtime) as Runtime, {
      offsetsOf: async () => {
        throw new Error(`disk exploded near ${SOURCE_SECRET}`);
      },
    });
    const lines: Captured[] = [];
    const api = await startAdminApi(broken, { port: 0, logger: captureLogger(lines), scrub: (t) => scrubSecrets(t, s.specs[0]!.secrets) });
    cleanups.push(() => api.close());
    const r = await getJson(`${api.url}/connectors/${s.runtime.names()[0]}/offsets`);
    expect(r.status).toBe(500);
    expect(r.body).toEqual({ error_code: 500, message: 'internal error: disk exploded near [REDACTED]' });
    expect(r.text).not.toContain(' at ');
    expect(lines).toContainEqual(expect.objectContaining({ level: 'error', msg: 'admin API request failed: disk exploded near [REDACTED]' }));
    expect(JSON.stringify(lines)).not.toContain(SOURCE_SECRET);
  });

  // Pins that neither interpolated nor writeOnly secrets appear in any answer, even inside error messages and traces.
  it('never shows secrets', async () => {
    const more = await startStack({ count: 20, failSink: true });
    const failed = more.runtime.names()[1]!;
    await waitFor(() => expect(more.runtime.status(failed).state).toBe('FAILED'));
    // The runtime itself keeps the raw message; the API is what scrubs it.
    expect(more.runtime.status(failed).tasks[0]!.error!.message).toContain(SINK_SECRET);

    const texts: string[] = [];
    for (const p of [
      '/',
      '/connectors',
      '/connectors?expand=status&expand=info',
      ...more.runtime.names().flatMap((n) => [`/connectors/${n}`, `/connectors/${n}/config`, `/connectors/${n}/status`, `/connectors/${n}/tasks/0/status`, `/connectors/${n}/offsets`]),
      '/health',
      '/metrics',
    ]) {
      const res = await fetch(more.url(p));
      texts.push(await res.text());
    }
    const restart = await fetch(more.url(`/connectors/${failed}/restart?includeTasks=true`), { method: 'POST' });
    expect(restart.status).toBe(202);
    texts.push(await restart.text());
    const all = texts.join('\n');
    expect(all).not.toContain(SOURCE_SECRET);
    expect(all).not.toContain(SINK_SECRET);
    expect(all).toContain('[REDACTED]');
    const config = (await getJson(more.url(`/connectors/${more.runtime.names()[0]}/config`))).body;
    expect(config.config.password).toBe('[REDACTED]');
    const sinkConfig = (await getJson(more.url(`/connectors/${failed}`))).body;
    expect(sinkConfig.config.config.password).toBe('[REDACTED]');
  });

  // Pins that without a token, requests only a browser on another site would send are refused.
  it('refuses cross-site browser requests when there is no token', async () => {
    const s = await startStack({ count: 5 });
    const sink = s.runtime.names()[1]!;
    const csrf = await getJson(s.url(`/connectors/${sink}/restart`), { method: 'POST', headers: { Origin: 'https://evil.example' } });
    expect(csrf.status).toBe(403);
    expect(csrf.body.error_code).toBe(403);
    const port = new URL(s.api.url).port;
    // fetch does not let a caller set Host, so these go through node:http.
    const rebound = await rawGet(s.url('/connectors'), `evil.example:${port}`);
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.text)).toEqual({ error_code: 403, message: `Host evil.example:${port} is not a loopback name; the API listens on loopback only` });
    expect((await rawGet(s.url('/connectors'), `localhost:${port}`)).status).toBe(200);
    expect((await fetch(s.url(`/connectors/${sink}/pause`), { method: 'PUT' })).status).toBe(202);
  });

  // Pins which hosts count as loopback, which decides the warning and the Host check.
  it('recognises loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '192.168.1.1']) expect(isLoopback(h), h).toBe(false);
  });

  // Pins that binding beyond loopback without a token logs a warning, and that an empty token is refused.
  it('warns about an open non-loopback bind and refuses an empty token', async () => {
    const s = await startStack({ count: 1 });
    const lines: Captured[] = [];
    const api = await startAdminApi(s.runtime, { host: '0.0.0.0', port: 0, logger: captureLogger(lines) });
    cleanups.push(() => api.close());
    expect(lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: expect.stringContaining('without a token') }));
    await expect(startAdminApi(s.runtime, { port: 0, token: '', logger: captureLogger([]) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const port = Number(new URL(s.api.url).port);
    await expect(startAdminApi(s.runtime, { port, logger: captureLogger([]) })).rejects.toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining('EADDRINUSE') });
  });
});

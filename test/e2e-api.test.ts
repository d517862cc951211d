/**
 * End to end: the REST admin API of `sluice run`, over a real socket. Pause, resume and restart
 * drive the flow, status and offsets report it, /metrics is valid Prometheus text, a token guards
 * the API, and secrets from `${env:...}` never leave the process through the API or the logs.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanUp, completeLines, request, sleep, start, startServer, tempDir, waitFor } from './e2e-helpers.ts';

afterEach(cleanUp);

const SPEC = `name: api
sources:
  - name: gen
    connector: datagen
    topic: clicks
    config: { preset: clickstream, rate: 500, seed: 1 }
sinks:
  - name: archive
    connector: file
    topics: [clicks]
    config: { path: out/clicks.jsonl }
`;

/**
 * Checks Prometheus text exposition (format 0.0.4) line by line and returns the samples. Every line
 * is blank, a comment, or `name{label="value",...} value [timestamp]`, and every sample belongs to
 * a family declared by a # TYPE line.
 */
function parsePrometheus(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const LABEL = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"`;
  const VALUE = '([-+]?(?:[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))';
  const sample = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? ${VALUE}(?: -?[0-9]+)?$`);
  const types = new Map<string, string>();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (type) types.set(type[1]!, type[2]!);
      else expect(line, `line ${i + 1}`).toMatch(/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$|^#(?! TYPE| HELP)/);
      continue;
    }
    const match = sample.exec(line);
    if (!match) expect.fail(`line ${i + 1} is not a Prometheus sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const m of (match[2] ?? '').matchAll(new RegExp(LABEL, 'g'))) labels[m[1]!] = m[2]!;
    const name = match[1]!;
    const family = [name, name.replace(/_(bucket|sum|count)$/, '')].find((n) => types.has(n));
    expect(family, `line ${i + 1}: ${name} has no # TYPE line`).toBeDefined();
    const raw = match[match.length - 1]!;
    samples.push({ name, labels, value: raw.endsWith('Inf') ? (raw.startsWith('-') ? -Infinity : Infinity) : Number(raw) });
  }
  return samples;
}

describe('admin API', () => {
  // Pause and resume through the REST API stop and restart the flow, and /metrics parses as Prometheus text.
  it('pauses, resumes and restarts a sink, and reports status, offsets, health and metrics', { timeout: 60_000 }, async () => {
    const cwd = await tempDir('api');
    await writeFile(path.join(cwd, 'spec.yaml'), SPEC);
    const output = path.join(cwd, 'out/clicks.jsonl');
    const lines = (): number => completeLines(output).length;
    const run = start(['run', 'spec.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd });
    const api = await run.apiUrl();
    const status = async (name: string): Promise<any> => (await request(`${api}/connectors/${name}/status`)).json();

    expect((await request(`${api}/connectors`)).json()).toEqual(['gen', 'archive']);
    await waitFor(async () => (await status('archive')).connector.state === 'RUNNING' && lines() > 0, { what: 'archive RUNNING and writing' });
    expect(await status('archive')).toMatchObject({ name: 'archive', type: 'sink', pipeline: 'api', connector_type: 'file', tasks: [{ id: 0, state: 'RUNNING' }] });
    expect(await status('gen')).toMatchObject({ name: 'gen', type: 'source', connector: { state: 'RUNNING' }, tasks: [{ id: 0, state: 'RUNNING' }] });
    expect((await request(`${api}/health`)).status).toBe(200);
    expect((await request(`${api}/connectors/nope/status`)).status).toBe(404);

    // Paused, the sink writes nothing while the source goes on, so its lag grows.
    const pause = await request(`${api}/connectors/archive/pause`, { method: 'PUT' });
    expect(pause.status).toBe(202);
    expect((await status('archive')).connector.state).toBe('PAUSED');
    expect((await status('archive')).tasks[0].state).toBe('PAUSED');
    // A put in flight when the pause came still finishes; from then on the output must stay put.
    let settled = lines();
    await waitFor(
      async () => {
        await sleep(200);
        const now = lines();
        const stable = now === settled;
        settled = now;
        return stable;
      },
      { what: 'the output to stop growing after the pause' },
    );
    const pausedAt = lines();
    const lagBefore = (await request(`${api}/connectors/archive/offsets`)).json().lag as number;
    await sleep(1000);
    expect(lines()).toBe(pausedAt);
    const offsets = (await request(`${api}/connectors/archive/offsets`)).json();
    expect(offsets.lag).toBeGreaterThan(lagBefore);
    expect(offsets).toMatchObject({ group: 'api.archive', partitions: [{ topic: 'clicks', partition: 0 }] });
    expect(offsets.offsets).toEqual([{ partition: { kafka_topic: 'clicks', kafka_partition: 0 }, offset: { kafka_offset: offsets.partitions[0].committed_offset } }]);
    expect(offsets.partitions[0].end_offset - offsets.partitions[0].committed_offset).toBe(offsets.lag);
    // A paused connector is not healthy: 503 with the reason.
    const health = await request(`${api}/health`);
    expect(health.status).toBe(503);
    expect(health.json()).toEqual({ status: 'unhealthy', reasons: ['archive is PAUSED'] });

    // Resumed, it catches up.
    expect((await request(`${api}/connectors/archive/resume`, { method: 'PUT' })).status).toBe(202);
    expect((await status('archive')).connector.state).toBe('RUNNING');
    await waitFor(() => lines() > pausedAt + 100, { what: 'the output to grow after resume' });

    // A restart stops the tasks and starts new ones from the committed offsets.
    expect((await request(`${api}/connectors/archive/restart`, { method: 'POST' })).status).toBe(204);
    await waitFor(async () => (await status('archive')).connector.state === 'RUNNING', { what: 'archive RUNNING after restart' });
    const restartedAt = lines();
    await waitFor(() => lines() > restartedAt + 50, { what: 'the output to grow after restart' });

    const source = (await request(`${api}/connectors/gen/offsets`)).json();
    expect(source.offsets).toEqual([{ partition: { generator: 'datagen', task: 0, tasks: 1 }, offset: { next: expect.any(Number) } }]);
    expect(source.offsets[0].offset.next).toBeGreaterThan(restartedAt);
    await waitFor(async () => (await request(`${api}/health`)).status === 200, { what: '/health back to 200' });

    const metrics = await request(`${api}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    const samples = parsePrometheus(metrics.text);
    const names = new Set(samples.map((s) => s.name));
    for (const name of [
      'sluice_records_in_total',
      'sluice_records_out_total',
      'sluice_consumer_lag_records',
      'sluice_log_size_bytes',
      'sluice_append_latency_seconds_bucket',
      'sluice_put_latency_seconds_bucket',
    ]) {
      expect(names, name).toContain(name);
    }
    const out = samples.find((s) => s.name === 'sluice_records_out_total' && s.labels['connector'] === 'archive')!;
    expect(out.labels).toEqual({ pipeline: 'api', connector: 'archive' });
    expect(out.value).toBeGreaterThanOrEqual(restartedAt);
    expect(samples.find((s) => s.name === 'sluice_log_size_bytes' && s.labels['topic'] === 'clicks')!.value).toBeGreaterThan(0);
    expect(samples.find((s) => s.name === 'sluice_consumer_lag_records')!.labels).toEqual({ group: 'api.archive', topic: 'clicks', partition: '0' });
    // Histogram buckets are cumulative and end with +Inf, which equals the count.
    for (const histogram of ['sluice_append_latency_seconds', 'sluice_put_latency_seconds']) {
      const buckets = samples.filter((s) => s.name === `${histogram}_bucket`);
      const counts = buckets.map((b) => b.value);
      expect(counts).toEqual([...counts].sort((a, b) => a - b));
      expect(buckets[buckets.length - 1]!.labels['le']).toBe('+Inf');
      expect(samples.find((s) => s.name === `${histogram}_count`)!.value).toBe(counts[counts.length - 1]);
    }

    expect(await run.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  // With --api-token every route but /health needs the bearer token, and a secret given through ${env:...} appears neither in API answers nor in the logs.
  it('requires the token, and keeps secrets out of the API and the logs', { timeout: 60_000 }, async () => {
    const secret = `e2e-secret-${randomBytes(12).toString('hex')}`;
    const apiToken = `e2e-api-token-${randomBytes(12).toString('hex')}`;
    let requests = 0;
    const authorizations = new Set<string>();
    // The target quotes the request's Authorization header back in its first errors, as a careless
    // server might: the sink's retry messages then carry the secret, which must be scrubbed.
    const target = await startServer((req, _body, res) => {
      requests++;
      authorizations.add(String(req.headers.authorization));
      if (requests <= 2) {
        res.writeHead(503, { 'Content-Type': 'text/plain' }).end(`not now, ${String(req.headers.authorization)}`);
        return;
      }
      res.writeHead(200).end();
    });
    const cwd = await tempDir('api-secret');
    await writeFile(
      path.join(cwd, 'spec.yaml'),
      `name: guarded
sources:
  - name: gen
    connector: datagen
    topic: clicks
    config: { preset: clickstream, rate: 200, seed: 2 }
sinks:
  - name: hook
    connector: http
    topics: [clicks]
    config:
      url: ${target.url}/ingest
      auth: { type: bearer, token: "\${env:SLUICE_E2E_TOKEN}" }
    errors: { retry_backoff_max: 200ms }
`,
    );
    const run = start(['run', 'spec.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--api-token', apiToken, '--status-interval', '1', '--log-level', 'debug'], {
      cwd,
      env: { SLUICE_E2E_TOKEN: secret },
    });
    const api = await run.apiUrl();
    const auth = { Authorization: `Bearer ${apiToken}` };

    // Without the token, or with another one: 401 with a Bearer challenge.
    for (const route of ['/connectors', '/connectors/hook', '/connectors/hook/status', '/metrics']) {
      const anonymous = await request(`${api}${route}`);
      expect(anonymous.status, route).toBe(401);
      expect(anonymous.headers['www-authenticate']).toMatch(/^Bearer /);
      expect((await request(`${api}${route}`, { headers: { Authorization: 'Bearer wrong' } })).status, route).toBe(401);
    }
    expect((await request(`${api}/connectors/hook/pause`, { method: 'PUT' })).status).toBe(401);
    expect((await request(`${api}/connectors/hook/restart`, { method: 'POST' })).status).toBe(401);
    expect((await request(`${api}/connectors`, { headers: auth })).json()).toEqual(['gen', 'hook']);

    // The sink really sends the secret, and gets through once the target stops failing.
    await waitFor(() => requests > 3, { what: 'the http sink to deliver after the failures' });
    expect(authorizations).toEqual(new Set([`Bearer ${secret}`]));
    await waitFor(async () => (await request(`${api}/connectors/hook/status`, { headers: auth })).json().records_out > 0, { what: 'hook records_out > 0' });
    // /health stays open without the token, for probes.
    await waitFor(async () => (await request(`${api}/health`)).status === 200, { what: '/health 200 without a token' });
    await run.waitForLog((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('status hook'), 'a status line of hook');

    const answers: string[] = [];
    for (const route of ['/connectors?expand=info&expand=status', '/connectors/hook', '/connectors/hook/config', '/connectors/hook/status', '/connectors/hook/tasks/0/status', '/connectors/hook/offsets', '/health', '/metrics']) {
      const answer = await request(`${api}${route}`, { headers: auth });
      expect(answer.status, route).toBe(200);
      answers.push(answer.text);
    }
    const info = JSON.parse(answers[1]!);
    expect(info.config.config.url).toBe(`${target.url}/ingest`);
    expect(info.config.config.auth.type).toBe('bearer');
    expect(info.config.config.auth.token).not.toBe(secret);

    expect(await run.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    // The retries were logged (so the logs did see the failing responses), without the secret.
    expect(run.stdout).toContain("503");
    for (const [where, text] of [
      ['API answers', answers.join('\n')],
      ['stdout', run.stdout],
      ['stderr', run.stderr],
    ] as const) {
      expect(text.includes(secret), `the secret appears in ${where}`).toBe(false);
      expect(text.includes(apiToken), `the API token appears in ${where}`).toBe(false);
    }
  });
});

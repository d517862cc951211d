/**
 * End to end: sinks of one pipeline are isolated from each other. A failing http target only makes
 * its own sink lag, and under `tolerance: all` the records a target rejects are found by bisection
 * and dead-lettered while the rest are delivered.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanUp, request, seqs, sluiceOk, start, startServer, tempDir, waitFor } from './e2e-helpers.ts';

afterEach(cleanUp);

const COUNT = 2000;

function spec(url: string, hookErrors: string): string {
  return `name: iso
topics:
  - name: clicks
    partitions: 2
sources:
  - name: gen
    connector: datagen
    topic: clicks
    config: { preset: clickstream, count: ${COUNT}, seed: 5, rate: 0, batch_size: 100 }
sinks:
  - name: archive
    connector: file
    topics: [clicks]
    config: { path: out/clicks.jsonl }
  - name: hook
    connector: http
    topics: [clicks]
    config: { url: ${url}/ingest, timeout: 2s, max_batch_records: 100 }
    errors: ${hookErrors}
`;
}

/** Sums a metric's samples whose labels include `labels`. */
function metric(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const labelText = line.slice(name.length + 1, line.lastIndexOf('}'));
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('sink isolation', () => {
  // A failing http sink does not stall the file sink of the same pipeline: the file sink delivers everything while the http sink retries and lags.
  it('a failing http sink does not stall the file sink of the same pipeline', { timeout: 60_000 }, async () => {
    let requests = 0;
    const target = await startServer((_req, _body, res) => {
      requests++;
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end('down for maintenance');
    });
    const cwd = await tempDir('isolation');
    await writeFile(path.join(cwd, 'spec.yaml'), spec(target.url, '{ retry_timeout: 10m, retry_backoff_max: 200ms }'));
    const output = path.join(cwd, 'out/clicks.jsonl');
    const run = start(['run', 'spec.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd });
    const api = await run.apiUrl();

    await waitFor(() => seqs(output).length >= COUNT, { what: `${COUNT} lines from the file sink` });
    expect(new Set(seqs(output)).size).toBe(COUNT);
    await waitFor(() => requests >= 5, { what: 'the http sink to keep retrying' });

    await waitFor(async () => (await request(`${api}/connectors/archive/offsets`)).json().lag === 0, { what: 'archive lag 0' });
    expect((await request(`${api}/connectors/archive/offsets`)).json().partitions).toHaveLength(2);
    // Nor is the source held back.
    expect((await request(`${api}/connectors/gen/status`)).json().records_out).toBe(COUNT);
    const hook = (await request(`${api}/connectors/hook/offsets`)).json();
    expect(hook.lag).toBeGreaterThan(0);
    // The http sink is retrying, not failed: still RUNNING, nothing delivered.
    const status = (await request(`${api}/connectors/hook/status`)).json();
    expect(status.connector.state).toBe('RUNNING');
    expect(status.records_out).toBe(0);

    const metrics = (await request(`${api}/metrics`)).text;
    expect(metric(metrics, 'sluice_consumer_lag_records', { group: 'iso.hook' })).toBeGreaterThan(0);
    expect(metric(metrics, 'sluice_consumer_lag_records', { group: 'iso.archive' })).toBe(0);
    expect(metric(metrics, 'sluice_records_out_total', { connector: 'archive' })).toBe(COUNT);
    expect(metric(metrics, 'sluice_records_out_total', { connector: 'hook' })).toBe(0);
    expect(metric(metrics, 'sluice_errors_total', { connector: 'hook', stage: 'put' })).toBeGreaterThan(0);

    expect(await run.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  // Under tolerance: all, the records an http target rejects with 400 are bisected out to the DLQ and every other record is delivered.
  it('bisects a batch the target rejects, dead-letters exactly the bad records and delivers the rest', { timeout: 60_000 }, async () => {
    const isBad = (seq: number): boolean => seq % 100 === 0;
    const received = new Set<number>();
    const target = await startServer((_req, body, res) => {
      const values = JSON.parse(body) as Array<{ seq: number }>;
      const bad = values.filter((v) => isBad(v.seq));
      if (bad.length > 0) {
        res.writeHead(400, { 'Content-Type': 'text/plain' }).end(`rejected seq ${bad.map((v) => v.seq).join(',')}`);
        return;
      }
      for (const v of values) received.add(v.seq);
      res.writeHead(200).end();
    });
    const cwd = await tempDir('bisect');
    await writeFile(path.join(cwd, 'spec.yaml'), spec(target.url, '{ tolerance: all, retry_backoff_max: 200ms }'));
    const run = start(['run', 'spec.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd });
    const api = await run.apiUrl();

    const good = Array.from({ length: COUNT }, (_, i) => i).filter((s) => !isBad(s));
    const bad = Array.from({ length: COUNT }, (_, i) => i).filter(isBad);
    await waitFor(() => received.size === good.length, { what: `${good.length} distinct records at the target` });
    await waitFor(async () => (await request(`${api}/connectors/hook/status`)).json().dlq_records === bad.length, { what: `${bad.length} dead letters` });
    expect([...received].sort((a, b) => a - b)).toEqual(good);
    await waitFor(async () => (await request(`${api}/connectors/hook/offsets`)).json().lag === 0, { what: 'hook lag 0' });
    expect((await request(`${api}/connectors/hook/status`)).json().connector.state).toBe('RUNNING');
    const metrics = (await request(`${api}/metrics`)).text;
    expect(metric(metrics, 'sluice_dlq_records_total', { connector: 'hook' })).toBe(bad.length);
    expect(await run.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    const letters = (await sluiceOk(['dlq', 'show', 'iso', 'hook', '--data-dir', 'data'], { cwd })).stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { error: string; stage: string; original: { topic: string; partition: number; offset: string }; value: { seq: number } });
    expect(letters.map((l) => l.value.seq).sort((a, b) => a - b)).toEqual(bad);
    for (const letter of letters) {
      expect(letter.stage).toBe('put');
      expect(letter.error).toContain(`answered 400`);
      expect(letter.error).toContain(`rejected seq ${letter.value.seq}`);
      expect(letter.original.topic).toBe('clicks');
      expect([0, 1]).toContain(letter.original.partition);
      expect(letter.original.offset).toMatch(/^\d+$/);
    }
  });
});

/**
 * End to end: three `sluice run --cluster` workers (child processes) share a datagen → file
 * pipeline over the JetStream log (a private 3-node NATS cluster, replicas 3). One worker is
 * kill -9'd, then one NATS node: the dead worker's tasks are taken over within 10 s (measured), and
 * the output ends up holding every generated record, byte for byte, with duplicates only from the
 * sink batches that were written but not committed when their task moved.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateEvent } from '../connectors/datagen/presets.ts';
import { MARK_HEADER } from '../core/runtime/source-marks.ts';
import { SINK_POLL_BYTES } from '../core/runtime/task-runner.ts';
import { cleanUp, completeLines, DATAGEN_FILE_OUTPUT, datagenToFileSpec, request, seqs, sluice, start, tempDir, waitFor, type Running } from './e2e-helpers.ts';
import { startNatsCluster, type NatsCluster } from './support/nats-cluster.ts';

const COUNT = 30_000;
const SEED = 11;
const RATE = 1_500;
const BATCH = 100;
const PARTITIONS = 3;
const SOURCE_TASKS = 3;

let nats: NatsCluster;

beforeAll(async () => {
  nats = await startNatsCluster();
}, 60_000);

afterEach(cleanUp);

let started: Running[] = [];
// SLUICE_TEST_DEBUG=DIR keeps each worker's log lines in DIR/worker-N.log.
afterEach(() => {
  const dir = process.env['SLUICE_TEST_DEBUG'];
  if (dir) started.forEach((w, i) => writeFileSync(path.join(dir, `worker-${i}.log`), w.stdout));
  started = [];
});

afterAll(async () => {
  await nats?.destroy();
});

interface GroupView {
  worker_id: string;
  workers: Array<{ id: string; api: string | null }>;
  tasks: Array<{ id: string; connector: string; worker_id: string | null; state: string }>;
}

/** The warnings and errors the workers logged, for failure messages. */
function problems(workers: readonly Running[]): string {
  return workers
    .map((w, i) => `worker ${i}:\n${w.logLines().filter((l) => (l.level ?? 0) >= 40).slice(-15).map((l) => `  ${JSON.stringify(l).slice(0, 600)}`).join('\n')}\n${w.stderr.slice(-1000)}`)
    .join('\n');
}

/** `wait`, failing with the workers' warnings and errors appended. */
async function explained(workers: readonly Running[], wait: Promise<void>): Promise<void> {
  try {
    await wait;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${problems(workers)}`);
  }
}

async function groupView(api: string): Promise<GroupView> {
  const res = await request(`${api}/cluster`);
  if (res.status !== 200) throw new Error(`GET /cluster answered ${res.status}: ${res.text}`);
  return res.json() as GroupView;
}

describe('worker group', () => {
  // Workers of a group must share one log, so --cluster on the embedded log is refused before anything starts.
  it('refuses --cluster with the embedded log', async () => {
    const cwd = await tempDir('cluster-embedded');
    await writeFile(path.join(cwd, 'spec.yaml'), 'name: alone\nsources:\n  - { name: gen, connector: datagen, topic: t, config: { count: 1 } }\n');
    const result = await sluice(['run', 'spec.yaml', '--cluster', 'e2e', '--no-api'], { cwd });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--cluster needs the jetstream log backend');
    expect(result.stderr).toContain('log: { backend: jetstream, servers: [nats://');
  });

  // A worker killed with kill -9 has its tasks taken over within 10 s, and with a NATS node lost too, no record is lost.
  it('fails over a dead worker within 10 s and loses nothing when a worker and a NATS node die', { timeout: 180_000 }, async () => {
    const cwd = await tempDir('cluster');
    const spec = datagenToFileSpec({
      name: 'scale',
      log: `{ backend: jetstream, servers: [${nats.servers.join(', ')}], replicas: 3 }`,
      count: COUNT,
      seed: SEED,
      rate: RATE,
      batch: BATCH,
      partitions: PARTITIONS,
      tasks: SOURCE_TASKS,
    });
    await writeFile(path.join(cwd, 'spec.yaml'), spec);
    const output = path.join(cwd, DATAGEN_FILE_OUTPUT);
    const workers: Running[] = [0, 1, 2].map((i) =>
      start(['run', 'spec.yaml', '--cluster', 'e2e', '--data-dir', `data-${i}`, '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd }),
    );
    started = workers;
    const apis = await Promise.all(workers.map((w) => w.apiUrl()));
    const ids = await Promise.all(workers.map(async (w) => (await w.waitForLog((l) => typeof l['worker_id'] === 'string' && typeof l['api'] === 'string', 'the running line')).worker_id as string));

    // Every task runs, spread over the three workers, and any worker's API shows the whole group.
    let view!: GroupView;
    await waitFor(
      async () => {
        view = await groupView(apis[0]!);
        const owners = new Set(view.tasks.map((t) => t.worker_id));
        return view.tasks.length === SOURCE_TASKS + 1 && view.tasks.every((t) => t.state === 'RUNNING') && owners.size === 3 && view.workers.length === 3;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: `all tasks RUNNING on 3 workers; last view: ${JSON.stringify(view)}` },
    );
    // Another worker's API shows the sink with the worker running it (its view is at most a lease renewal and a reconcile old).
    const sinkOwners = view.tasks.filter((t) => t.connector === 'archive').map((t) => t.worker_id);
    let status: { connector: { state: string }; tasks: Array<{ worker_id: string; state: string }> } | undefined;
    await waitFor(
      async () => {
        status = (await request(`${apis[1]!}/connectors/archive/status`)).json() as typeof status;
        return status!.connector.state === 'RUNNING' && JSON.stringify(status!.tasks.map((t) => t.worker_id)) === JSON.stringify(sinkOwners);
      },
      { timeoutMs: 5_000, intervalMs: 100, what: `the sink RUNNING on ${sinkOwners.join()} in worker 1's view; last: ${JSON.stringify(status)}` },
    );

    await waitFor(() => completeLines(output).length > COUNT / 5, { timeoutMs: 30_000, what: 'a fifth of the output' });

    // Kill the worker running the sink, so both a source and the sink task fail over.
    const sinkOwner = view.tasks.find((t) => t.connector === 'archive')!.worker_id!;
    const victim = ids.indexOf(sinkOwner);
    const victimTasks = view.tasks.filter((t) => t.worker_id === sinkOwner).map((t) => t.id);
    const survivor = apis[(victim + 1) % 3]!;
    const killedAt = performance.now();
    expect((await workers[victim]!.kill('SIGKILL')).signal).toBe('SIGKILL');
    await waitFor(
      async () => {
        view = await groupView(survivor);
        return victimTasks.every((id) => {
          const t = view.tasks.find((x) => x.id === id)!;
          return t.worker_id !== null && t.worker_id !== sinkOwner && t.state === 'RUNNING';
        });
      },
      { timeoutMs: 20_000, intervalMs: 100, what: `the dead worker's tasks ${victimTasks.join(', ')} RUNNING elsewhere` },
    );
    const takeoverMs = Math.round(performance.now() - killedAt);
    console.log(JSON.stringify({ takeover_ms: takeoverMs, tasks: victimTasks.length }));
    expect(takeoverMs).toBeLessThan(10_000);
    await waitFor(async () => (await groupView(survivor)).workers.length === 2, { timeoutMs: 10_000, what: 'the dead worker to leave the group view' });

    // Then a NATS node: with replicas 3 the log and the leases keep a quorum.
    const before = completeLines(output).length;
    await nats.kill(1);
    await explained(workers, waitFor(() => completeLines(output).length > before, { timeoutMs: 30_000, what: 'output to grow after a NATS node died' }));

    await explained(
      workers,
      waitFor(() => completeLines(output).length >= COUNT && new Set(seqs(output)).size === COUNT, { timeoutMs: 90_000, intervalMs: 250, what: `all ${COUNT} seq values in the output` }).catch((err: unknown) => {
        // Whether the run was slow or lost records is what a failure here must tell.
        const distinct = new Set(seqs(output));
        const missing: number[] = [];
        for (let seq = 0; seq < COUNT && missing.length < 10; seq++) if (!distinct.has(seq)) missing.push(seq);
        throw new Error(`${(err as Error).message}; the output holds ${completeLines(output).length} lines and ${distinct.size} distinct seq values, missing for example ${missing.join(', ')}`);
      }),
    );
    for (const [i, w] of workers.entries()) if (i !== victim) expect(await w.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    const text = readFileSync(output, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.includes(MARK_HEADER)).toBe(false);
    const lines = completeLines(output);
    const got = seqs(output);
    expect(new Set(got).size).toBe(COUNT);
    expect(got.every((seq) => Number.isInteger(seq) && seq >= 0 && seq < COUNT)).toBe(true);
    const options = { seed: SEED, startMs: Date.parse('2025-01-01T00:00:00Z'), rate: RATE };
    lines.forEach((line, i) => {
      if (line !== JSON.stringify(generateEvent('clickstream', options, got[i]!).value)) expect.fail(`line ${i + 1} (seq ${got[i]}) differs from the generated event: ${line}`);
    });

    // Duplicates come only from sink batches put but not committed when the sink task stopped
    // abruptly: once at the kill, and at most once more if the NATS node's death cost the sink its
    // lease. A poll holds at most SINK_POLL_BYTES of records (plus one stored batch per partition).
    const shortest = Math.min(...lines.map((l) => Buffer.byteLength(l)));
    const perMove = Math.ceil(SINK_POLL_BYTES / shortest) + PARTITIONS * BATCH;
    const duplicates = lines.length - COUNT;
    console.log(JSON.stringify({ records: COUNT, lines: lines.length, duplicates, bound: 2 * perMove }));
    expect(duplicates).toBeLessThanOrEqual(2 * perMove);
  });
});

/**
 * Two runtimes in one process, each a worker of one group (leases on a real private NATS JetStream
 * server), sharing one embedded log: a datagen → file pipeline whose tasks move when a worker joins
 * and when one leaves. Graceful moves duplicate nothing: a moved source resumes from the offsets
 * and marks its predecessor stored, a moved sink from the group offsets it committed. Any worker's
 * admin API shows every task with the worker running it.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registry } from '../../connectors/index.ts';
import { startNatsCluster, type NatsCluster } from '../../test/support/nats-cluster.ts';
import { startAdminApi } from '../api/server.ts';
import type { Logger } from '../connector.ts';
import { openLog } from '../log/embedded-log.ts';
import { Runtime } from '../runtime/runtime.ts';
import { validateSpecTexts } from '../spec/index.ts';
import type { LeaseTimings } from './lease-bucket.ts';
import { isLeasedConnector, runtimeHost } from './runtime-host.ts';
import { WorkerGroup } from './worker-group.ts';

const quiet: Logger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };
const FAST: LeaseTimings = { ttlMs: 3_000, renewEveryMs: 1_000, stopMarginMs: 1_000, reconcileEveryMs: 250 };
const COUNT = 6_000;

let nats: NatsCluster;
let dir: string;

beforeAll(async () => {
  nats = await startNatsCluster({ size: 1 });
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-runtime-host-'));
}, 60_000);

afterAll(async () => {
  await nats?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function lines(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').slice(0, -1);
}

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('runtime in a worker group', () => {
  // Tasks handed between workers gracefully (a join, then a leave) deliver every record exactly once.
  it('moves source and sink tasks between workers without losing or repeating a record', { timeout: 60_000 }, async () => {
    const output = path.join(dir, 'out.jsonl');
    const yaml = `name: moving
topics:
  - name: clicks
    partitions: 2
sources:
  - name: gen
    connector: datagen
    topic: clicks
    tasks: 2
    config: { preset: clickstream, count: ${COUNT}, seed: 3, rate: 600, batch_size: 50 }
sinks:
  - name: out
    connector: file
    topics: [clicks]
    config: { path: ${JSON.stringify(output)} }
`;
    const { problems, specs } = validateSpecTexts([{ file: path.join(dir, 'spec.yaml'), text: yaml }], { registry, env: {} });
    expect(problems).toEqual([]);
    const log = await openLog(path.join(dir, 'data'));
    const worker = async (id: string): Promise<{ runtime: Runtime; group: WorkerGroup }> => {
      const runtime = await Runtime.start(specs, { log, registry, logger: quiet, statusIntervalMs: 0, shutdownTimeoutMs: 5_000, leased: isLeasedConnector });
      const group = await WorkerGroup.join({ cluster: 'moving', servers: nats.servers, host: runtimeHost(runtime), logger: quiet, timings: FAST, workerId: id });
      return { runtime, group };
    };
    const a = await worker('a');
    let b: Awaited<ReturnType<typeof worker>> | null = null;
    try {
      await until('a to run all 3 tasks', () => a.group.heldTasks().length === 3 && a.runtime.taskStates('gen').every((s) => s === 'RUNNING'));
      await until('some output', () => lines(output).length > 500);

      b = await worker('b');
      await until('the tasks to spread 2/1', () => a.group.heldTasks().length + b!.group.heldTasks().length === 3 && b!.group.heldTasks().length >= 1 && a.group.heldTasks().length >= 1);
      const api = await startAdminApi(b.runtime, { port: 0, logger: quiet, cluster: b.group });
      try {
        // Worker b's API shows the tasks worker a runs, with a as their worker.
        await until('b to see both workers', async () => {
          const res = await fetch(`${api.url}/connectors/gen/status`);
          const body = (await res.json()) as { tasks: Array<{ worker_id: string; state: string }> };
          return body.tasks.length === 2 && body.tasks.every((t) => t.state === 'RUNNING');
        });
        const cluster = (await (await fetch(`${api.url}/cluster`)).json()) as { workers: Array<{ id: string }>; tasks: Array<{ worker_id: string }> };
        expect(cluster.workers.map((w) => w.id).sort()).toEqual(['a', 'b']);
        expect(new Set(cluster.tasks.map((t) => t.worker_id))).toEqual(new Set(['a', 'b']));
        expect((await fetch(`${api.url}/health`)).status).toBe(200);
      } finally {
        await api.close();
      }

      await until('more output', () => lines(output).length > 2_500);
      await a.group.leave();
      await until('b to run all 3 tasks', () => b!.group.heldTasks().length === 3 && a.runtime.taskStates('gen').length === 0);
      await until(`all ${COUNT} records`, () => lines(output).length >= COUNT, 30_000);
      // The sink commits after each put; a late duplicate would show up within a poll.
      await new Promise((r) => setTimeout(r, 1_000));
      const seqs = lines(output).map((l) => (JSON.parse(l) as { seq: number }).seq);
      expect(seqs.length).toBe(COUNT);
      expect(new Set(seqs).size).toBe(COUNT);
    } finally {
      await b?.group.leave();
      await a.group.leave();
      await b?.runtime.stop();
      await a.runtime.stop();
      await log.close();
    }
  });
});

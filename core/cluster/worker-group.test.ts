/**
 * The worker group on a real 3-node NATS JetStream cluster, with workers in this process driving a
 * recording task host: every task runs on exactly one worker, tasks spread evenly, joins and
 * leaves move only the tasks that must move, and a worker cut off from NATS stops its tasks before
 * another worker starts them.
 */
import { performance } from 'node:perf_hooks';
import { connect } from 'nats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, type NatsCluster } from '../../test/support/nats-cluster.ts';
import type { Logger } from '../connector.ts';
import { bucketName, DEFAULT_LEASE_TIMINGS, type LeaseTimings } from './lease-bucket.ts';
import { WorkerGroup, type GroupTask, type HostedTaskStatus, type TaskHost } from './worker-group.ts';

let cluster: NatsCluster;
let groupSeq = 0;
const groups: WorkerGroup[] = [];

beforeAll(async () => {
  cluster = await startNatsCluster();
}, 60_000);

afterEach(async () => {
  await Promise.all(groups.splice(0).map((g) => g.leave().catch(() => {})));
});

afterAll(async () => {
  await cluster?.destroy();
});

const quiet: Logger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };
const print = ((...args: unknown[]) => console.log(...args)) as Logger['info'];
/** SLUICE_TEST_DEBUG=1 prints the workers' log lines. */
const logger: Logger = process.env['SLUICE_TEST_DEBUG'] ? { trace() {}, debug() {}, info: print, warn: print, error: print, child: () => logger } : quiet;

/** Short timings keep the tests fast; the lease arithmetic is the same as with the defaults. */
const FAST: LeaseTimings = { ttlMs: 3_000, renewEveryMs: 1_000, stopMarginMs: 1_000, reconcileEveryMs: 250 };

interface Event {
  at: number;
  worker: string;
  task: string;
  what: 'start' | 'stop';
}

/** Where every task runs, across all workers of a test: fails the test if a task ever runs twice. */
class Recorder {
  readonly running = new Map<string, string>();
  readonly events: Event[] = [];
  readonly violations: string[] = [];
  /** Tasks that report FAILED with a retriable error until they are started again. */
  readonly failing = new Set<string>();

  host(worker: string, tasks: readonly GroupTask[]): TaskHost {
    const local = new Set<string>();
    return {
      tasks: async () => tasks,
      start: async (task, signal) => {
        await new Promise((r) => setTimeout(r, 20));
        if (signal.aborted) return;
        const other = this.running.get(task.id);
        if (other !== undefined) this.violations.push(`${task.id} started on ${worker} while running on ${other}`);
        this.running.set(task.id, worker);
        this.failing.delete(task.id);
        local.add(task.id);
        this.events.push({ at: performance.now(), worker, task: task.id, what: 'start' });
      },
      stop: async (task) => {
        if (!local.delete(task.id)) return;
        await new Promise((r) => setTimeout(r, 20));
        if (this.running.get(task.id) === worker) this.running.delete(task.id);
        this.events.push({ at: performance.now(), worker, task: task.id, what: 'stop' });
      },
      status: (task): HostedTaskStatus | null => {
        if (!local.has(task.id)) return null;
        if (this.failing.has(task.id)) return { state: 'FAILED', recordsIn: 0, recordsOut: 0, error: 'NATS JetStream unavailable (TIMEOUT)', retriable: true };
        return { state: 'RUNNING', recordsIn: 0, recordsOut: 0 };
      },
    };
  }

  where(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [task, worker] of this.running) out.set(worker, [...(out.get(worker) ?? []), task].sort());
    return out;
  }
}

function tasksOf(n: number): GroupTask[] {
  return Array.from({ length: n }, (_, i) => ({ id: `p.c${i % 2}.${i}`, pipeline: 'p', connector: `c${i % 2}`, task: i, kind: i % 2 === 0 ? 'source' : 'sink' }));
}

async function worker(rec: Recorder, name: string, cl: string, tasks: readonly GroupTask[], options: { servers?: string[]; timings?: LeaseTimings; discover?: boolean } = {}): Promise<WorkerGroup> {
  const g = await WorkerGroup.join({ cluster: cl, servers: options.servers ?? cluster.servers, replicas: 3, host: rec.host(name, tasks), logger, timings: options.timings ?? FAST, workerId: name, ...(options.discover !== undefined ? { discover: options.discover } : {}) });
  groups.push(g);
  return g;
}

async function until(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The name of the node leading the group's bucket stream. */
async function bucketLeader(cl: string): Promise<string> {
  const nc = await connect({ servers: cluster.servers });
  try {
    const info = await (await nc.jetstreamManager()).streams.info(`KV_${bucketName(cl)}`);
    return info.cluster!.leader!;
  } finally {
    await nc.close();
  }
}

function counts(rec: Recorder): number[] {
  return [...rec.where().values()].map((t) => t.length).sort();
}

describe('WorkerGroup', () => {
  // Three workers joining at once end up running every task exactly once, spread 3/2/2.
  it('runs every task on exactly one worker, spread evenly', { timeout: 30_000 }, async () => {
    const rec = new Recorder();
    const cl = `g${++groupSeq}`;
    const tasks = tasksOf(7);
    await Promise.all(['a', 'b', 'c'].map((n) => worker(rec, n, cl, tasks)));
    await until('7 tasks spread 2/2/3', () => rec.running.size === 7 && counts(rec).join() === '2,2,3');
    // Stable: another few rounds change nothing.
    const before = rec.events.length;
    await new Promise((r) => setTimeout(r, 1_500));
    expect(rec.events.length).toBe(before);
    expect(rec.violations).toEqual([]);
  });

  // A joining worker gets its share from the others' excess only: no task that stays where it is stops.
  it('rebalances incrementally when a worker joins', { timeout: 30_000 }, async () => {
    const rec = new Recorder();
    const cl = `g${++groupSeq}`;
    const tasks = tasksOf(6);
    await worker(rec, 'a', cl, tasks);
    await worker(rec, 'b', cl, tasks);
    await until('6 tasks on 2 workers', () => rec.running.size === 6 && counts(rec).join() === '3,3');
    const mark = rec.events.length;
    await worker(rec, 'c', cl, tasks);
    await until('6 tasks on 3 workers', () => rec.running.size === 6 && counts(rec).join() === '2,2,2');
    await new Promise((r) => setTimeout(r, 1_000));
    const moves = rec.events.slice(mark);
    expect(moves.filter((e) => e.what === 'stop')).toHaveLength(2);
    expect(moves.filter((e) => e.what === 'start').map((e) => e.worker)).toEqual(['c', 'c']);
    // Each moved task stopped on its old worker before it started on c.
    for (const start of moves.filter((e) => e.what === 'start')) {
      const stop = moves.find((e) => e.what === 'stop' && e.task === start.task)!;
      expect(stop.at).toBeLessThan(start.at);
    }
    expect(rec.violations).toEqual([]);
  });

  // A worker leaving gracefully hands its tasks over at once; the others' tasks keep running.
  it('moves only the leaving worker tasks when a worker leaves', { timeout: 30_000 }, async () => {
    const rec = new Recorder();
    const cl = `g${++groupSeq}`;
    const tasks = tasksOf(6);
    const [, b] = await Promise.all(['a', 'b', 'c'].map((n) => worker(rec, n, cl, tasks)));
    await until('6 tasks on 3 workers', () => rec.running.size === 6 && counts(rec).join() === '2,2,2');
    const mark = rec.events.length;
    const leftAt = performance.now();
    await b!.leave();
    await until('6 tasks on a and c', () => rec.running.size === 6 && counts(rec).join() === '3,3');
    // Released leases are taken without waiting for their TTL.
    expect(performance.now() - leftAt).toBeLessThan(FAST.ttlMs);
    const moves = rec.events.slice(mark);
    expect(moves.filter((e) => e.what === 'stop').map((e) => e.worker)).toEqual(['b', 'b']);
    expect(moves.filter((e) => e.what === 'start')).toHaveLength(2);
    expect(rec.violations).toEqual([]);
  });

  // A task that failed with a retriable error is restarted where it runs, without losing its lease.
  it('restarts a task failed by a retriable error', { timeout: 30_000 }, async () => {
    const rec = new Recorder();
    const cl = `g${++groupSeq}`;
    const tasks = tasksOf(2);
    const a = await worker(rec, 'a', cl, tasks);
    await until('both tasks on a', () => rec.running.size === 2);
    const mark = rec.events.length;
    rec.failing.add(tasks[0]!.id);
    await until('the failed task to start again', () => !rec.failing.has(tasks[0]!.id), 10_000);
    expect(rec.events.slice(mark).map((e) => `${e.what} ${e.task}`)).toEqual([`stop ${tasks[0]!.id}`, `start ${tasks[0]!.id}`]);
    expect(a.heldTasks().sort()).toEqual(tasks.map((t) => t.id).sort());
    expect(rec.violations).toEqual([]);
  });

  // A worker whose NATS node dies stops its tasks before its leases can expire, and the others take them over within 10 s.
  it('stops a cut-off worker tasks before anyone else starts them, and fails them over within 10 s', { timeout: 60_000 }, async () => {
    const rec = new Recorder();
    const cl = `g${++groupSeq}`;
    const tasks = tasksOf(6);
    // The default timings: this is the failover the README promises.
    const timings = DEFAULT_LEASE_TIMINGS;
    await worker(rec, 'a', cl, tasks, { timings });
    // The node to cut must not lead the group's bucket: a JetStream leader election after a kill
    // takes 4 to 6 s on nats-server 2.9, longer than a lease survives without renewals, so every
    // worker would stop its tasks (safely, but this test is about one cut-off worker).
    const leader = await bucketLeader(cl);
    const victim = cluster.nodes.findIndex((n) => n.name !== leader);
    const others = cluster.servers.filter((_, i) => i !== victim);
    await worker(rec, 'b', cl, tasks, { servers: others, timings });
    // Pinned to one node: it cannot fail over to the others, as a worker on the wrong side of a partition.
    await worker(rec, 'cut', cl, tasks, { servers: [cluster.servers[victim]!], timings, discover: false });
    await until('6 tasks on 3 workers', () => rec.running.size === 6 && counts(rec).join() === '2,2,2', 20_000);
    const victims = rec.where().get('cut')!;
    const mark = rec.events.length;
    const killedAt = performance.now();
    await cluster.kill(victim);
    try {
      await until('the cut-off worker tasks to run elsewhere', () => victims.every((t) => rec.running.has(t) && rec.running.get(t) !== 'cut'), 15_000);
      const takeover = performance.now() - killedAt;
      expect(takeover).toBeLessThan(10_000);
      const moves = rec.events.slice(mark);
      for (const task of victims) {
        const stop = moves.find((e) => e.what === 'stop' && e.task === task && e.worker === 'cut');
        const start = moves.find((e) => e.what === 'start' && e.task === task);
        expect(stop, `${task} stopped on the cut-off worker`).toBeDefined();
        expect(stop!.at).toBeLessThan(start!.at);
      }
      expect(moves.filter((e) => e.what === 'stop' && e.worker !== 'cut')).toEqual([]);
      expect(counts(rec).join()).toBe('3,3');
      expect(rec.violations).toEqual([]);
    } finally {
      await cluster.start(victim);
    }
  });
});

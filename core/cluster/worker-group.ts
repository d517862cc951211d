/**
 * The worker group behind `sluice run --cluster NAME`: workers started with the same specs share
 * their tasks through leases in one NATS KV bucket ({@link LeaseBucket}).
 *
 * Keys of the bucket `sluice_group_<NAME>`:
 * - `workers.<worker id>`: one per live worker, rewritten every renewal (who it is, its admin API);
 * - `tasks.<pipeline>.<connector>.<task>`: the lease of one task; its value names the holder and
 *   the task's state and counters as the holder last saw them, so any worker can show the group.
 *
 * Each worker runs three loops:
 * - renewal (every `renewEveryMs`): rewrites its member key and compare-and-sets each held lease;
 *   a lease found taken by someone else is stopped at once;
 * - deadline (4 times a second): a lease not renewed for `ttlMs - stopMarginMs`, measured from the
 *   send time of its last successful renewal on this worker's monotonic clock, is given up and its
 *   task stopped, so a worker cut off from NATS stops writing before anyone can take over;
 * - reconcile (every `reconcileEveryMs`): reads the group and follows {@link plan}: releases the
 *   tasks above its fair share (stopped first, released after) and takes free ones below it.
 *
 * What it cannot guard against: a process frozen (SIGSTOP, a swap storm) longer than the margin
 * wakes up with tasks running past its lease until the deadline loop runs. The log's own fencing
 * (NOT_ASSIGNED on sink commits) still refuses that zombie's offset commits.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { connect, type NatsConnection } from 'nats';
import type { Logger } from '../connector.ts';
import { SluiceError } from '../errors.ts';
import { plan } from './balance.ts';
import { DEFAULT_LEASE_TIMINGS, isTransient, LeaseBucket, type Lease, type LeaseTimings } from './lease-bucket.ts';

/** A task the group leases. */
export interface GroupTask {
  /** `<pipeline>.<connector>.<task>`: the same on every worker started with the same specs. */
  id: string;
  pipeline: string;
  connector: string;
  task: number;
  kind: 'source' | 'sink';
}

/** A task's state on the worker running it, as written into its lease. */
export interface HostedTaskStatus {
  state: string;
  recordsIn: number;
  recordsOut: number;
  error?: string;
  /** FAILED by a retriable error that escaped the task's own retries: the group restarts it. */
  retriable?: boolean;
}

/**
 * What the group drives on its worker: the runtime, or a test's recorder. The group calls every
 * method from its own loops; calls for one task never overlap (a stop waits for its start).
 */
export interface TaskHost {
  /** The tasks to lease, in the same order on every worker. Called once, at join. */
  tasks(): Promise<readonly GroupTask[]>;
  /**
   * Starts a task on this worker; called right after its lease was taken. `signal` aborts when the
   * lease is lost while the host is still preparing (e.g. a connector's health check), and the
   * host must then not start it. A rejection means the task cannot run here: it is reported FAILED
   * and the lease kept, as a single worker keeps a failed connector.
   */
  start(task: GroupTask, signal: AbortSignal): Promise<void>;
  /**
   * Stops a task; resolves once it wrote its last record. Called when it is released to another
   * worker (`timeoutMs` generous, the lease is renewed meanwhile) or its lease is lost (`timeoutMs`
   * is what is left of the margin). Must not reject.
   */
  stop(task: GroupTask, timeoutMs: number): Promise<void>;
  /** The task's state here; null when it does not run here. Read at every renewal. */
  status(task: GroupTask): HostedTaskStatus | null;
}

export interface WorkerGroupOptions {
  /** The group's name (`--cluster`): letters, digits, `_`, `-`. */
  cluster: string;
  /** NATS URLs. */
  servers: string[];
  /** Replicas of the group's bucket; the log's `replicas`. */
  replicas?: number;
  host: TaskHost;
  logger: Logger;
  timings?: Partial<LeaseTimings>;
  /** How long a task released to another worker may take to stop. Default 10 s. */
  releaseTimeoutMs?: number;
  /** Default `<hostname>-<pid>-<random>`. */
  workerId?: string;
  /**
   * Whether the NATS client may move to cluster nodes the servers tell it about, beyond `servers`.
   * Default true; false pins it to `servers` (a worker that must only use its own site's nodes).
   */
  discover?: boolean;
}

/** A worker as its member key describes it. */
export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  started_at: string;
  /** The worker's admin API, once it listens. */
  api: string | null;
}

/** A lease's value. */
interface LeaseValue {
  worker: string;
  state: string;
  since: string;
  records_in: number;
  records_out: number;
  error?: string;
}

/** One task in the group view. */
export interface GroupTaskView {
  id: string;
  pipeline: string;
  connector: string;
  task: number;
  type: 'source' | 'sink';
  /** The worker holding the lease; null while nobody does. */
  worker_id: string | null;
  /** The state the holder reported at its last renewal; UNASSIGNED while nobody holds the task. */
  state: string;
  since: string | null;
  records_in: number;
  records_out: number;
  error?: string;
}

/** The whole group as this worker last read it. */
export interface GroupSnapshot {
  cluster: string;
  worker_id: string;
  /** When the group was last read (ISO 8601); null before the first read. */
  read_at: string | null;
  workers: Array<WorkerInfo & { tasks: number }>;
  tasks: GroupTaskView[];
}

interface Held {
  task: GroupTask;
  lease: Lease;
  since: string;
  /** Lost leases are not renewed or released: someone else may hold the key already. */
  lost: boolean;
  stopping: boolean;
  /** Aborts a start still preparing. */
  abort: AbortController;
  /** The start, then the stop: calls for one task never overlap. */
  op: Promise<void>;
  error?: string;
  /** performance.now() of the last start; a retriable failure is restarted at most every {@link RESTART_PAUSE_MS}. */
  startedAt: number;
}

/**
 * How long a task failed by a retriable error waits before the group restarts it. Such failures
 * come from the log being briefly unavailable (a JetStream leader election takes seconds).
 */
const RESTART_PAUSE_MS = 3_000;

export class WorkerGroup {
  readonly workerId: string;
  private readonly timings: LeaseTimings;
  private readonly held = new Map<string, Held>();
  private readonly info: WorkerInfo;
  private tasks: readonly GroupTask[] = [];
  private snap: GroupSnapshot;
  private timers: NodeJS.Timeout[] = [];
  private renewing = false;
  private reconciling: Promise<void> | null = null;
  private leaving = false;
  private renewWarned = false;
  private readWarned = false;

  private constructor(
    private readonly options: WorkerGroupOptions,
    private readonly nc: NatsConnection,
    private readonly bucket: LeaseBucket,
    private readonly logger: Logger,
  ) {
    this.timings = { ...DEFAULT_LEASE_TIMINGS, ...options.timings };
    // The id is part of a KV key, which allows letters, digits, `-`, `_`, `=` and `.` only.
    this.workerId = options.workerId ?? `${os.hostname().replace(/[^A-Za-z0-9_-]/g, '-')}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.info = { id: this.workerId, host: os.hostname(), pid: process.pid, started_at: new Date().toISOString(), api: null };
    this.snap = { cluster: options.cluster, worker_id: this.workerId, read_at: null, workers: [], tasks: [] };
  }

  /**
   * Connects to NATS, opens the group's bucket, announces this worker and starts its loops. The
   * first reconcile runs one interval later, so workers started together see each other before
   * they take tasks. Rejects when NATS is unreachable or the bucket's TTL differs from ours.
   */
  static async join(options: WorkerGroupOptions): Promise<WorkerGroup> {
    const timings = { ...DEFAULT_LEASE_TIMINGS, ...options.timings };
    if (!(timings.renewEveryMs < timings.ttlMs - timings.stopMarginMs && timings.stopMarginMs > 0)) {
      throw new SluiceError('INVALID_ARGUMENT', `lease timings must renew (every ${timings.renewEveryMs} ms) before the stop deadline (${timings.ttlMs} - ${timings.stopMarginMs} ms)`, { context: { ...timings } });
    }
    const logger = options.logger.child({ component: 'cluster', cluster: options.cluster });
    const nc = await connect({
      servers: options.servers,
      name: `sluice-worker-${options.cluster}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // A server that died without closing the socket is noticed within a lease, not two minutes.
      pingInterval: timings.renewEveryMs,
      maxPingOut: 2,
      ignoreClusterUpdates: options.discover === false,
    });
    try {
      const bucket = await LeaseBucket.open(nc, options.cluster, { ttlMs: timings.ttlMs, ...(options.replicas !== undefined ? { replicas: options.replicas } : {}), timeoutMs: 2 * timings.renewEveryMs });
      const group = new WorkerGroup(options, nc, bucket, logger);
      group.tasks = await options.host.tasks();
      // A bucket created a moment ago may not take writes yet (its stream leader is being elected).
      for (let attempt = 0; ; attempt++) {
        try {
          await bucket.put(group.memberKey(), group.info);
          break;
        } catch (err) {
          if (attempt >= 20 || !isTransient(err)) throw err;
          await new Promise((r) => setTimeout(r, 250 + Math.random() * 250));
        }
      }
      group.timers.push(setInterval(() => void group.renew(), timings.renewEveryMs));
      group.timers.push(setInterval(() => group.checkDeadlines(), Math.min(250, timings.stopMarginMs / 4)));
      group.timers.push(setInterval(() => void group.reconcile(), timings.reconcileEveryMs));
      logger.info({ worker_id: group.workerId, tasks: group.tasks.length, ttl_ms: timings.ttlMs, renew_ms: timings.renewEveryMs }, `joined worker group ${options.cluster} as ${group.workerId}`);
      return group;
    } catch (err) {
      await nc.close().catch(() => {});
      throw err;
    }
  }

  /** Sets what other workers see of this one, e.g. the admin API's URL once it listens. */
  advertise(info: { api?: string | null }): void {
    if (info.api !== undefined) this.info.api = info.api;
  }

  /** The group as last read (at most one reconcile interval old), with this worker's own tasks current. */
  snapshot(): GroupSnapshot {
    const tasks = this.snap.tasks.map((t) => {
      const h = this.held.get(t.id);
      if (!h || h.lost) return t;
      const v = this.leaseValue(h);
      return { ...t, worker_id: this.workerId, state: v.state, since: v.since, records_in: v.records_in, records_out: v.records_out, ...(v.error !== undefined ? { error: v.error } : {}) };
    });
    return { ...this.snap, tasks };
  }

  /** Ids of the tasks running (or starting, or stopping) on this worker. */
  heldTasks(): string[] {
    return [...this.held.keys()];
  }

  /**
   * Leaves the group gracefully: stops taking tasks, stops every held task (sources first, then
   * sinks; the leases are renewed meanwhile), releases the leases so the others take them at once,
   * removes this worker's member key and closes the connection. Called by `sluice run` on SIGTERM.
   */
  async leave(): Promise<void> {
    if (this.leaving) return;
    this.leaving = true;
    await this.reconciling;
    for (const kind of ['source', 'sink'] as const) {
      await Promise.all([...this.held.values()].filter((h) => h.task.kind === kind).map((h) => this.release(h)));
    }
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.bucket.delete(this.memberKey()).catch(() => {});
    await this.nc.close().catch(() => {});
    this.logger.info({ worker_id: this.workerId }, 'left the worker group');
  }

  private memberKey(): string {
    return `workers.${this.workerId}`;
  }

  private leaseValue(h: Held): LeaseValue {
    const s = this.options.host.status(h.task);
    const error = h.error ?? s?.error;
    return {
      worker: this.workerId,
      state: h.error !== undefined ? 'FAILED' : h.stopping ? 'STOPPING' : (s?.state ?? 'UNASSIGNED'),
      since: h.since,
      records_in: s?.recordsIn ?? 0,
      records_out: s?.recordsOut ?? 0,
      ...(error !== undefined ? { error } : {}),
    };
  }

  /** The renewal loop's body. Rounds never overlap: a round stuck on an unreachable NATS is not doubled. */
  private async renew(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      const results = await Promise.allSettled([
        this.bucket.put(this.memberKey(), this.info),
        ...[...this.held.values()]
          .filter((h) => !h.lost)
          .map(async (h) => {
            if (!(await this.bucket.renew(h.lease, this.leaseValue(h)))) this.lose(h, 'its lease was taken by another worker');
          }),
      ]);
      this.restartRetriable();
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed && !this.renewWarned) {
        this.renewWarned = true;
        this.logger.warn({ err: failed.reason }, `cannot renew leases: ${(failed.reason as Error).message}; tasks stop ${this.timings.ttlMs - this.timings.stopMarginMs} ms after the last renewal`);
      } else if (!failed && this.renewWarned) {
        this.renewWarned = false;
        this.logger.info('lease renewals succeed again');
      }
    } finally {
      this.renewing = false;
    }
  }

  private checkDeadlines(): void {
    const now = performance.now();
    for (const h of this.held.values()) {
      if (!h.lost && now >= h.lease.sentAt + this.timings.ttlMs - this.timings.stopMarginMs) {
        this.lose(h, `its lease was not renewed for ${Math.round(now - h.lease.sentAt)} ms`);
      }
    }
  }

  /** Gives up a lease that is or may soon be someone else's: the task stops within what is left of the margin. */
  private lose(h: Held, reason: string): void {
    if (h.lost) return;
    h.lost = true;
    h.stopping = true;
    h.abort.abort();
    const left = Math.max(100, h.lease.sentAt + this.timings.ttlMs - performance.now() - 250);
    this.logger.warn({ task: h.task.id, reason }, `stopping task ${h.task.id}: ${reason}`);
    h.op = h.op
      .then(() => this.options.host.stop(h.task, Math.min(left, this.timings.stopMarginMs)))
      .finally(() => this.held.delete(h.task.id));
  }

  /** Stops a task this worker still holds and then releases its lease for another worker. */
  private release(h: Held): Promise<void> {
    if (h.stopping) return h.op;
    h.stopping = true;
    h.abort.abort();
    h.op = h.op
      .then(() => this.options.host.stop(h.task, this.options.releaseTimeoutMs ?? 10_000))
      .then(async () => {
        if (!h.lost) await this.bucket.release(h.lease);
      })
      .catch((err: unknown) => this.logger.warn({ err, task: h.task.id }, `could not release the lease of ${h.task.id}; it expires on its own`))
      .finally(() => this.held.delete(h.task.id));
    return h.op;
  }

  private async take(task: GroupTask): Promise<boolean> {
    const since = new Date().toISOString();
    const lease = await this.bucket.acquire(`tasks.${task.id}`, { worker: this.workerId, state: 'UNASSIGNED', since, records_in: 0, records_out: 0 } satisfies LeaseValue);
    if (!lease) return false;
    const h: Held = { task, lease, since, lost: false, stopping: false, abort: new AbortController(), op: Promise.resolve(), startedAt: performance.now() };
    this.held.set(task.id, h);
    this.logger.info({ task: task.id }, `took task ${task.id}`);
    h.op = this.start(h);
    return true;
  }

  private start(h: Held): Promise<void> {
    h.startedAt = performance.now();
    return this.options.host.start(h.task, h.abort.signal).catch((err: unknown) => {
      h.error = (err as Error).message;
      this.logger.error({ err, task: h.task.id }, `task ${h.task.id} cannot start here: ${(err as Error).message}`);
    });
  }

  /**
   * Restarts held tasks that failed with a retriable error. A retriable error means "the same call
   * may succeed later", and a worker group meets more of them than one machine (NATS nodes and
   * leaders come and go), so the group gives such a task another run instead of leaving it FAILED.
   */
  private restartRetriable(): void {
    const now = performance.now();
    for (const h of this.held.values()) {
      if (h.stopping || h.lost || now - h.startedAt < RESTART_PAUSE_MS) continue;
      const s = this.options.host.status(h.task);
      if (s?.state !== 'FAILED' || !s.retriable) continue;
      this.logger.warn({ task: h.task.id, error: s.error }, `restarting task ${h.task.id}, failed by a retriable error: ${s.error ?? ''}`);
      h.startedAt = now;
      h.op = h.op.then(() => this.options.host.stop(h.task, this.options.releaseTimeoutMs ?? 10_000)).then(() => {
        if (!h.stopping) return this.start(h);
      });
    }
  }

  /** The reconcile loop's body; rounds never overlap. */
  private reconcile(): Promise<void> {
    if (this.reconciling || this.leaving) return this.reconciling ?? Promise.resolve();
    this.reconciling = this.reconcileOnce()
      .then(() => {
        if (this.readWarned) this.logger.info('the worker group can be read again');
        this.readWarned = false;
      })
      .catch((err: unknown) => {
        if (!this.readWarned) this.logger.warn({ err }, `cannot read the worker group: ${(err as Error).message}; tasks stay where they are`);
        this.readWarned = true;
      })
      .finally(() => (this.reconciling = null));
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<void> {
    const [members, leases] = await Promise.all([this.bucket.list<WorkerInfo>('workers.'), this.bucket.list<LeaseValue>('tasks.')]);
    const byId = new Map(leases.map((l) => [l.key.slice('tasks.'.length), l.value]));
    const owners = new Map<string, string>();
    for (const t of this.tasks) {
      const mine = this.held.get(t.id);
      // A task this worker still stops counts as its own until the stop is done (it is not free),
      // but not toward its share, so the balance is not thrown off by a stop in progress.
      if (mine) owners.set(t.id, mine.stopping ? '' : this.workerId);
      else {
        const owner = byId.get(t.id)?.worker;
        if (owner !== undefined && owner !== this.workerId) owners.set(t.id, owner);
      }
    }
    const workers = [...new Set([...members.map((m) => m.value.id), this.workerId])];
    this.snap = {
      cluster: this.options.cluster,
      worker_id: this.workerId,
      read_at: new Date().toISOString(),
      workers: members
        .map((m) => ({ ...m.value, tasks: [...owners.values()].filter((o) => o === m.value.id).length }))
        .sort((a, b) => (a.id < b.id ? -1 : 1)),
      tasks: this.tasks.map((t) => {
        const v = byId.get(t.id);
        return {
          id: t.id,
          pipeline: t.pipeline,
          connector: t.connector,
          task: t.task,
          type: t.kind,
          worker_id: v?.worker ?? null,
          state: v?.state ?? 'UNASSIGNED',
          since: v?.since ?? null,
          records_in: v?.records_in ?? 0,
          records_out: v?.records_out ?? 0,
          ...(v?.error !== undefined ? { error: v.error } : {}),
        };
      }),
    };
    if (this.leaving) return;

    const decision = plan({ self: this.workerId, workers, tasks: this.tasks.map((t) => ({ id: t.id, connector: `${t.pipeline}.${t.connector}` })), owners });
    for (const id of decision.release) {
      const h = this.held.get(id);
      if (h) {
        this.logger.info({ task: id, target: decision.target }, `releasing task ${id} to rebalance`);
        void this.release(h);
      }
    }
    let taken = 0;
    for (const id of decision.candidates) {
      if (taken >= decision.take || this.leaving) break;
      const task = this.tasks.find((t) => t.id === id)!;
      if (await this.take(task)) taken++;
    }
  }
}

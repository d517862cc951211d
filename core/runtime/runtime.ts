/**
 * The runtime: runs the connectors of loaded pipeline specs over a {@link Log} and answers for them
 * (status, pause, resume, restart, offsets, health). The CLI's `run` and the admin API drive it.
 *
 * Every entry of a spec becomes a connector here, known by its name, which must be unique across
 * the pipelines of one run (the admin API addresses connectors by name, as Kafka Connect does).
 */
import path from 'node:path';
import type { AnySinkConnector, AnySourceConnector, ConnectorRegistry, Logger, SourceOffsetEntry } from '../connector.ts';
import { SluiceError } from '../errors.ts';
import type { Log, TopicPartitionOffset } from '../log/types.ts';
import type { ErrorsSpec, LoadedSpec, SinkSpec, SourceSpec } from '../spec/index.ts';
import { redactSecrets, topicConfigOf } from '../spec/index.ts';
import { parseDuration, parseSize } from '../spec/units.ts';
import { buildTransformChain, type TransformEntry, type TransformFn } from '../transforms/index.ts';
import { RuntimeMetrics } from './metrics.ts';
import { retry } from './retry.ts';
import { SourceOffsetStore } from './source-offsets.ts';
import { errorTrace, SinkRunner, SourceRunner, type ErrorHandling, type TaskState, type TaskStatus } from './task-runner.ts';

export type ConnectorState = 'UNASSIGNED' | 'RUNNING' | 'PAUSED' | 'FAILED' | 'STOPPED';

export interface ConnectorStatus {
  name: string;
  pipeline: string;
  /** source or sink */
  type: 'source' | 'sink';
  /** The connector type, e.g. datagen. */
  connector: string;
  state: ConnectorState;
  tasks: TaskStatus[];
  error?: { message: string; trace: string };
}

export interface ConnectorOffsets {
  name: string;
  type: 'source' | 'sink';
  /** Sources: the stored source offsets. */
  sourceOffsets?: SourceOffsetEntry[];
  /** Sinks: the consumer group, and per partition its committed offset, end offset and lag. */
  group?: string;
  partitions?: Array<{ topic: string; partition: number; committed: string | null; end: string; lag: string }>;
}

export interface HealthReport {
  healthy: boolean;
  reasons: string[];
}

export interface RuntimeOptions {
  log: Log;
  registry: ConnectorRegistry;
  /** The root logger; connectors get `child({ pipeline, connector, task })`. */
  logger: Logger;
  /** How often a status line per connector is logged. 0 disables it. Default 10 s. */
  statusIntervalMs?: number;
  /** How long a task may take to stop before it is abandoned. Default 10 s. */
  shutdownTimeoutMs?: number;
  /** A running connector whose tasks showed no activity for this long is unhealthy. Default 60 s. */
  staleAfterMs?: number;
  /**
   * Connectors whose tasks a worker group places (`sluice run --cluster`): the runtime prepares
   * them as usual (transforms, health check, task configs) but runs a task only between
   * {@link Runtime.startTask} and {@link Runtime.stopTask}. Default: none, every task runs here.
   */
  leased?: (connector: { name: string; pipeline: string; kind: 'source' | 'sink'; connector: string }) => boolean;
}

type Runner = SourceRunner | SinkRunner;

interface Connector {
  name: string;
  pipeline: string;
  kind: 'source' | 'sink';
  definition: AnySourceConnector | AnySinkConnector;
  entry: SourceSpec | SinkSpec;
  loaded: LoadedSpec;
  entryIndex: number;
  runners: Runner[];
  paused: boolean;
  /** A failure before any task ran: bad task configs, a failed health check, a transform that does not build. */
  failure: Error | null;
  starting: Promise<void> | null;
  /** Its tasks run only when a worker group asks (see {@link RuntimeOptions.leased}). */
  leased: boolean;
  /** Creates the runner of one task, once the connector started; for tasks placed later. */
  build?: (task: number) => Runner;
  /** Leased connectors: the tasks the group placed here, started again after a restart. */
  placed: Set<number>;
}

/** `errors:` of a spec entry in runtime terms. */
export function errorHandlingOf(errors: ErrorsSpec): ErrorHandling {
  return {
    policy: { timeoutMs: parseDuration(errors.retry_timeout), backoffMaxMs: parseDuration(errors.retry_backoff_max) },
    tolerance: errors.tolerance,
    dlq: errors.dlq,
  };
}

export class Runtime {
  readonly metrics = new RuntimeMetrics();
  private readonly connectors = new Map<string, Connector>();
  private readonly knownTopics = new Set<string>();
  private readonly creatingTopics = new Map<string, Promise<void>>();
  private statusTimer: NodeJS.Timeout | null = null;
  private lastCounts = new Map<string, { out: number; at: number }>();
  private stopped = false;

  private constructor(
    private readonly log: Log,
    private readonly registry: ConnectorRegistry,
    private readonly logger: Logger,
    private readonly offsets: SourceOffsetStore,
    private readonly options: Required<Pick<RuntimeOptions, 'statusIntervalMs' | 'shutdownTimeoutMs' | 'staleAfterMs'>> & Pick<RuntimeOptions, 'leased'>,
  ) {}

  /**
   * Creates the declared topics and starts every connector of `specs`. Resolves once the
   * connectors are starting; each one becomes RUNNING (or FAILED) on its own.
   */
  static async start(specs: readonly LoadedSpec[], options: RuntimeOptions): Promise<Runtime> {
    const names = new Map<string, string>();
    for (const loaded of specs) {
      for (const entry of [...loaded.spec.sources, ...loaded.spec.sinks]) {
        const other = names.get(entry.name);
        if (other !== undefined) {
          throw new SluiceError('SPEC_INVALID', `connector name ${entry.name} is used in ${other} and ${loaded.file}; names must be unique across the pipelines of one run`, { context: { connector: entry.name } });
        }
        names.set(entry.name, loaded.file);
      }
    }
    const offsets = await SourceOffsetStore.open(options.log);
    const runtime = new Runtime(options.log, options.registry, options.logger, offsets, {
      statusIntervalMs: options.statusIntervalMs ?? 10_000,
      shutdownTimeoutMs: options.shutdownTimeoutMs ?? 10_000,
      staleAfterMs: options.staleAfterMs ?? 60_000,
      leased: options.leased,
    });
    for (const loaded of specs) {
      for (const topic of loaded.spec.topics) {
        const described = await options.log.createTopic(topic.name, topicConfigOf(topic), { ifNotExists: true });
        if (topic.partitions !== undefined && described.partitions.length !== topic.partitions) {
          options.logger.warn({ topic: topic.name, declared: topic.partitions, actual: described.partitions.length }, 'topic exists with another partition count; keeping the existing one');
        }
        runtime.knownTopics.add(topic.name);
      }
    }
    for (const loaded of specs) {
      loaded.spec.sources.forEach((entry, i) => runtime.add(loaded, entry, 'source', i));
      loaded.spec.sinks.forEach((entry, i) => runtime.add(loaded, entry, 'sink', i));
    }
    for (const c of runtime.connectors.values()) runtime.launch(c);
    if (runtime.options.statusIntervalMs > 0) {
      runtime.statusTimer = setInterval(() => void runtime.logStatus(), runtime.options.statusIntervalMs);
      runtime.statusTimer.unref();
    }
    return runtime;
  }

  private add(loaded: LoadedSpec, entry: SourceSpec | SinkSpec, kind: 'source' | 'sink', entryIndex: number): void {
    const definition = kind === 'source' ? this.registry.sources.get(entry.connector) : this.registry.sinks.get(entry.connector);
    if (!definition) throw new SluiceError('SPEC_INVALID', `unknown ${kind} connector ${entry.connector}`, { context: { connector: entry.name } });
    const everyWorker = kind === 'source' && (definition as AnySourceConnector).everyWorker === true;
    const leased = !everyWorker && (this.options.leased?.({ name: entry.name, pipeline: loaded.spec.name, kind, connector: entry.connector }) ?? false);
    this.connectors.set(entry.name, { name: entry.name, pipeline: loaded.spec.name, kind, definition, entry, loaded, entryIndex, runners: [], paused: false, failure: null, starting: null, leased, placed: new Set() });
  }

  /**
   * Creates a topic on first use. Concurrent callers share one creation, so they resume in the
   * order they asked and appends keep their order.
   */
  private ensureTopic(topic: string): Promise<void> {
    if (this.knownTopics.has(topic)) return Promise.resolve();
    let pending = this.creatingTopics.get(topic);
    if (!pending) {
      pending = this.log.createTopic(topic, {}, { ifNotExists: true }).then(
        () => {
          this.knownTopics.add(topic);
          this.creatingTopics.delete(topic);
        },
        (err: unknown) => {
          this.creatingTopics.delete(topic);
          throw err;
        },
      );
      this.creatingTopics.set(topic, pending);
    }
    return pending;
  }

  /** Builds transforms and task configs, runs the health check, and starts the tasks, in the background. */
  private launch(c: Connector): void {
    c.failure = null;
    c.starting = (async () => {
      const logger = this.logger.child({ pipeline: c.pipeline, connector: c.name });
      const errors = errorHandlingOf(c.entry.errors);
      try {
        const transforms = await this.buildTransforms(c);
        const config = c.entry.config as unknown;
        if (c.definition.healthCheck) {
          const check = c.definition.healthCheck.bind(c.definition);
          await retry(() => check(config, { signal: AbortSignal.timeout(errors.policy.timeoutMs), logger }), errors.policy, {
            onRetry: (err, attempt, delay) => logger.warn({ err, attempt, delay_ms: delay }, `health check failed, retrying: ${err.message}`),
          });
        }
        const taskConfigs = c.definition.taskConfigs ? c.definition.taskConfigs(config, c.entry.tasks) : [config];
        if (this.stopped) return;
        c.runners = taskConfigs.flatMap((taskConfig, task) => (!c.leased || c.placed.has(task) ? [this.createRunner(c, taskConfig, task, transforms, errors)] : []));
        c.build = (task) => this.createRunner(c, taskConfigs[task], task, transforms, errors);
        for (const runner of c.runners) {
          runner.start();
          if (c.paused) runner.pause();
        }
        logger.info({ tasks: c.runners.length }, `${c.kind} connector started`);
      } catch (err) {
        c.failure = err as Error;
        logger.error({ err }, `connector failed to start: ${(err as Error).message}`);
      }
    })();
  }

  private async buildTransforms(c: Connector): Promise<TransformFn | null> {
    const entries = c.entry.transforms as readonly TransformEntry[];
    if (entries.length === 0) return null;
    return buildTransformChain(entries, { baseDir: path.dirname(path.resolve(c.loaded.file)) });
  }

  private createRunner(c: Connector, taskConfig: unknown, task: number, transforms: TransformFn | null, errors: ErrorHandling): Runner {
    const deps = {
      log: this.log,
      pipeline: c.pipeline,
      connector: c.name,
      task,
      logger: this.logger.child({ pipeline: c.pipeline, connector: c.name, task }),
      metrics: this.metrics,
      taskMetrics: this.metrics.taskMetrics(c.definition.name, c.definition.metrics, { pipeline: c.pipeline, connector: c.name, task }),
      transforms,
      errors,
      ensureTopic: (topic: string) => this.ensureTopic(topic),
      taskConfig,
    };
    if (c.kind === 'source') {
      return new SourceRunner({ ...deps, definition: c.definition as AnySourceConnector, topic: (c.entry as SourceSpec).topic, offsets: this.offsets });
    }
    const sink = c.entry as SinkSpec;
    return new SinkRunner({ ...deps, definition: c.definition as AnySinkConnector, topics: [...sink.topics], group: sinkGroup(c.pipeline, c.name), pollBytes: parseSize(sink.batch_max_bytes) });
  }

  private get(name: string): Connector {
    const c = this.connectors.get(name);
    if (!c) throw new SluiceError('INVALID_ARGUMENT', `unknown connector ${JSON.stringify(name)}`, { context: { connector: name } });
    return c;
  }

  /** Connector names, in spec order. */
  names(): string[] {
    return [...this.connectors.keys()];
  }

  status(name: string): ConnectorStatus {
    const c = this.get(name);
    const tasks = c.runners.map((r) => r.status());
    let state: ConnectorState;
    if (c.failure || tasks.some((t) => t.state === 'FAILED')) state = 'FAILED';
    else if (c.paused) state = 'PAUSED';
    else if (tasks.length === 0) state = 'UNASSIGNED';
    else if (tasks.every((t) => t.state === 'STOPPED')) state = 'STOPPED';
    else state = tasks.some((t) => t.state === 'UNASSIGNED') ? 'UNASSIGNED' : 'RUNNING';
    const status: ConnectorStatus = { name: c.name, pipeline: c.pipeline, type: c.kind, connector: c.definition.name, state, tasks };
    const failure = c.failure ?? null;
    if (failure) status.error = { message: failure.message, trace: errorTrace(failure) };
    return status;
  }

  /** The entry as configured, with secrets redacted: what the admin API shows. */
  config(name: string): unknown {
    const c = this.get(name);
    const redacted = redactSecrets(c.loaded.spec, c.loaded.secrets);
    return c.kind === 'source' ? redacted.sources[c.entryIndex] : redacted.sinks[c.entryIndex];
  }

  /** Stops polling (sources) or consuming (sinks) without stopping the tasks. */
  pause(name: string): void {
    const c = this.get(name);
    c.paused = true;
    for (const r of c.runners) r.pause();
  }

  resume(name: string): void {
    const c = this.get(name);
    c.paused = false;
    for (const r of c.runners) r.resume();
  }

  /** Stops the connector's tasks and starts new ones from the stored offsets; clears FAILED. */
  async restart(name: string): Promise<void> {
    const c = this.get(name);
    await c.starting;
    const stopping = Promise.all(c.runners.map((r) => r.stop(this.options.shutdownTimeoutMs))).then(() => undefined);
    c.runners = [];
    // A task a worker group places meanwhile waits for the relaunch (see startTask).
    c.starting = stopping;
    await stopping;
    this.launch(c);
    await c.starting;
  }

  async offsetsOf(name: string): Promise<ConnectorOffsets> {
    const c = this.get(name);
    if (c.kind === 'source') return { name, type: 'source', sourceOffsets: this.offsets.offsets(c.pipeline, c.name) };
    const group = sinkGroup(c.pipeline, c.name);
    const partitions = (await this.log.describeGroup(group)).map((p) => ({
      topic: p.topic,
      partition: p.partition,
      committed: p.committed === null ? null : p.committed.toString(),
      end: p.endOffset.toString(),
      lag: p.lag.toString(),
    }));
    return { name, type: 'sink', group, partitions };
  }

  /** Healthy when every connector is RUNNING and every task showed activity recently. */
  health(now = Date.now()): HealthReport {
    const reasons: string[] = [];
    for (const [name, c] of this.connectors) {
      const s = this.status(name);
      // A worker of a group runs only its share of the leased tasks, possibly none of a connector.
      if (c.leased && !c.failure && s.state === 'UNASSIGNED' && s.tasks.length === 0) continue;
      if (s.state !== 'RUNNING') {
        reasons.push(`${name} is ${s.state}${s.error ? `: ${s.error.message}` : ''}${s.tasks.find((t) => t.error) ? `: ${s.tasks.find((t) => t.error)!.error!.message}` : ''}`);
        continue;
      }
      for (const t of s.tasks) {
        const idle = now - t.lastActivityAt;
        if (idle > this.options.staleAfterMs) reasons.push(`${name} task ${t.id} has been stuck for ${Math.round(idle / 1000)}s`);
      }
    }
    return { healthy: reasons.length === 0, reasons };
  }

  /** Refreshes the gauges that are read rather than counted (lag, log size, state), e.g. before a scrape. */
  async collect(): Promise<void> {
    for (const c of this.connectors.values()) {
      const state = this.status(c.name).state;
      for (const s of ['RUNNING', 'PAUSED', 'FAILED', 'UNASSIGNED', 'STOPPED'] as const) {
        this.metrics.connectorState.set({ pipeline: c.pipeline, connector: c.name, state: s }, s === state ? 1 : 0);
      }
      if (c.kind === 'sink') {
        const group = sinkGroup(c.pipeline, c.name);
        for (const p of await this.log.describeGroup(group)) {
          this.metrics.lag.set({ group, topic: p.topic, partition: String(p.partition) }, Number(p.lag));
        }
      }
    }
    for (const topic of await this.log.listTopics()) {
      try {
        for (const p of (await this.log.describeTopic(topic)).partitions) this.metrics.logSize.set({ topic, partition: String(p.partition) }, p.sizeBytes);
      } catch {
        // Deleted between the listing and the description.
      }
    }
  }

  /** Logs one line per connector: state, records in and out, the rate out since the last line, and lag. */
  async logStatus(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    for (const c of this.connectors.values()) {
      const s = this.status(c.name);
      const recordsIn = s.tasks.reduce((n, t) => n + t.recordsIn, 0);
      const recordsOut = s.tasks.reduce((n, t) => n + t.recordsOut, 0);
      const last = this.lastCounts.get(c.name);
      const rate = last ? ((recordsOut - last.out) * 1000) / Math.max(1, now - last.at) : 0;
      this.lastCounts.set(c.name, { out: recordsOut, at: now });
      const fields: Record<string, unknown> = { connector: c.name, state: s.state, records_in: recordsIn, records_out: recordsOut, rate_per_s: Math.round(rate * 10) / 10 };
      if (c.kind === 'sink') {
        try {
          fields['lag'] = Number((await this.log.describeGroup(sinkGroup(c.pipeline, c.name))).reduce((n, p) => n + p.lag, 0n));
        } catch {
          // The log is closing.
        }
      }
      const dead = s.tasks.reduce((n, t) => n + t.deadLetters, 0);
      if (dead > 0) fields['dlq'] = dead;
      this.logger.info(fields, `status ${c.name}: ${s.state}, in ${recordsIn}, out ${recordsOut}, ${fields['rate_per_s']}/s${fields['lag'] !== undefined ? `, lag ${fields['lag']}` : ''}`);
    }
  }

  /**
   * Graceful shutdown: sources stop first (their last durable batch is committed), then sinks
   * finish their batch and commit. Each task gets `shutdownTimeoutMs`. Does not close the log.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.statusTimer) clearInterval(this.statusTimer);
    const all = [...this.connectors.values()];
    await Promise.all(all.map((c) => c.starting));
    const stopKind = (kind: 'source' | 'sink'): Promise<unknown> =>
      Promise.all(all.filter((c) => c.kind === kind).flatMap((c) => c.runners.map((r) => r.stop(this.options.shutdownTimeoutMs))));
    await stopKind('source');
    await stopKind('sink');
  }

  /** The states of all tasks, for tests and the CLI. */
  taskStates(name: string): TaskState[] {
    return this.get(name).runners.map((r) => r.status().state);
  }

  /** Waits until a connector is no longer starting (health check and task creation done). */
  async started(name: string): Promise<void> {
    await this.get(name).starting;
  }

  /** Whether a worker group places the connector's tasks (see {@link RuntimeOptions.leased}). */
  isLeased(name: string): boolean {
    return this.get(name).leased;
  }

  /**
   * How many tasks the connector splits into: the same on every worker started with the same spec,
   * since task configs depend on the config alone. A connector whose split fails counts one task,
   * so one worker holds it and shows the failure.
   */
  taskCount(name: string): number {
    const c = this.get(name);
    if (!c.definition.taskConfigs) return 1;
    try {
      return Math.max(1, c.definition.taskConfigs(c.entry.config as never, c.entry.tasks).length);
    } catch {
      return 1;
    }
  }

  /**
   * Starts task `task` of a leased connector on this worker. Called by the worker group once it
   * holds the task's lease; waits for the connector to be ready (health check). `signal` aborting
   * meanwhile (the lease was lost) leaves the task unstarted. Rejects with the connector's failure
   * when it could not start here, or INVALID_ARGUMENT for a task it does not have.
   */
  async startTask(name: string, task: number, signal?: AbortSignal): Promise<void> {
    const c = this.get(name);
    c.placed.add(task);
    // Until the latest launch is done: a restart may begin while this waits.
    for (let seen = c.starting; ; seen = c.starting) {
      await seen;
      if (seen === c.starting) break;
    }
    if (signal?.aborted || this.stopped || !c.placed.has(task)) return;
    if (c.failure) throw c.failure;
    if (c.runners.some((r) => r.status().id === task)) return;
    if (!c.build || task >= this.taskCount(name)) {
      c.placed.delete(task);
      throw new SluiceError('INVALID_ARGUMENT', `connector ${name} has no task ${task}`, { context: { connector: name, task } });
    }
    const runner = c.build(task);
    c.runners.push(runner);
    runner.start();
    if (c.paused) runner.pause();
  }

  /**
   * Stops task `task` of a leased connector on this worker: resolves once it finished its batch
   * and committed what is durable, or after `timeoutMs` (default the shutdown timeout) when it is
   * abandoned. Called by the worker group before it releases the lease, or when the lease is lost.
   */
  async stopTask(name: string, task: number, timeoutMs = this.options.shutdownTimeoutMs): Promise<void> {
    const c = this.get(name);
    c.placed.delete(task);
    const runner = c.runners.find((r) => r.status().id === task);
    if (!runner) return;
    c.runners = c.runners.filter((r) => r !== runner);
    await runner.stop(timeoutMs);
  }

  /** The status of one task running here; null when it does not run here. */
  taskStatus(name: string, task: number): TaskStatus | null {
    return this.get(name).runners.find((r) => r.status().id === task)?.status() ?? null;
  }
}

/** The consumer group of a sink: `<pipeline>.<connector>`. */
export function sinkGroup(pipeline: string, connector: string): string {
  return `${pipeline}.${connector}`;
}

export type { TopicPartitionOffset };

/**
 * The loops that drive connector tasks. Each task runs in its own async loop, so a slow or failing
 * task only ever delays itself: a sink retrying a dead target lags (the lag shows in metrics) while
 * the sources and the other sinks go on.
 *
 * Delivery rules, which every connector gets without writing them:
 * - a source's offsets are stored, and the task told through `commit`, only after the records they
 *   cover are durable in the log;
 * - a sink's group offsets are committed only after `put` (and `preCommit`) resolved for the records
 *   they cover.
 */
import type {
  AnySinkConnector,
  AnySourceConnector,
  SinkRecord,
  SinkTask,
  SinkTaskContext,
  SourceOffsetEntry,
  SourceRecord,
  SourceTask,
  SourceTaskContext,
  SourcePartition,
  TaskContext,
  TaskMetrics,
  Logger,
} from '../connector.ts';
import { SluiceError, isSluiceError } from '../errors.ts';
import type { Consumer, Headers, Log, LogRecord, ProducerRecord, TopicPartition, TopicPartitionOffset } from '../log/types.ts';
import { fillTopicTemplate } from '../spec/topic-template.ts';
import type { TransformFn } from '../transforms/index.ts';
import { decodeMessage, encodeMessage } from './codec.ts';
import { sendToDlq, type DeadLetter, type FailureStage } from './dlq.ts';
import type { RuntimeMetrics } from './metrics.ts';
import { AbortedError, isRetriable, retry, type RetryPolicy } from './retry.ts';
import { SourceMarks, MARK_HEADER, type RecordSource } from './source-marks.ts';
import { canonicalJson, type SourceOffsetStore } from './source-offsets.ts';

export type TaskState = 'UNASSIGNED' | 'RUNNING' | 'PAUSED' | 'FAILED' | 'STOPPED';

export interface ErrorHandling {
  policy: RetryPolicy;
  tolerance: 'none' | 'all';
  dlq: boolean;
}

/** What every runner needs from the runtime. */
export interface RunnerDeps {
  log: Log;
  pipeline: string;
  /** The entry's name in the spec. */
  connector: string;
  task: number;
  logger: Logger;
  metrics: RuntimeMetrics;
  taskMetrics: TaskMetrics;
  transforms: TransformFn | null;
  errors: ErrorHandling;
  /** Creates a topic the first time a record is headed for it. */
  ensureTopic(topic: string): Promise<void>;
}

export interface TaskStatus {
  id: number;
  state: TaskState;
  recordsIn: number;
  recordsOut: number;
  deadLetters: number;
  /** When the task last moved data or found nothing to move (ms); for freshness in /health. */
  lastActivityAt: number;
  error?: { message: string; code?: string; trace: string };
}

/** The state machine and pause/stop plumbing shared by source and sink runners. */
abstract class TaskRunner {
  protected state: TaskState = 'UNASSIGNED';
  protected error: Error | null = null;
  protected readonly stopController = new AbortController();
  private pauseGate: { promise: Promise<void>; release: () => void } | null = null;
  /** Aborted to interrupt a poll when the task is paused or stopped. */
  protected pollController = new AbortController();
  private loopDone: Promise<void> | null = null;
  protected recordsIn = 0;
  protected recordsOut = 0;
  protected deadLetters = 0;
  protected lastActivityAt = Date.now();

  constructor(protected readonly deps: RunnerDeps) {}

  protected abstract run(): Promise<void>;
  protected abstract shutdown(): Promise<void>;

  /** Starts the loop in the background. The returned promise never rejects. */
  start(): void {
    this.loopDone = (async () => {
      try {
        await this.run();
        if (this.state !== 'FAILED') this.state = 'STOPPED';
      } catch (err) {
        // A retriable error while stopping is a retry that the stop cut short (retry() gives up at
        // once when the task's signal aborts), e.g. a put aborted mid-request: nothing was
        // committed for it, so the task stopped rather than failed.
        if (this.stopping && (err instanceof AbortedError || (err as Error)?.name === 'AbortError' || isRetriable(err))) {
          this.state = 'STOPPED';
        } else {
          this.fail(err as Error);
        }
      }
      try {
        await this.shutdown();
      } catch (err) {
        this.deps.logger.warn({ err }, 'task did not stop cleanly');
      }
    })();
  }

  protected fail(err: Error): void {
    this.state = 'FAILED';
    this.error = err;
    this.deps.logger.error({ err }, `task failed: ${err.message}`);
  }

  get stopping(): boolean {
    return this.stopController.signal.aborted;
  }

  /**
   * Holds the loop before its next poll. A task still starting is held as soon as it is up, so a
   * pause sent during a (re)start is not lost.
   */
  pause(): void {
    if (this.state === 'FAILED' || this.state === 'STOPPED' || this.pauseGate) return;
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    this.pauseGate = { promise, release };
    if (this.state === 'RUNNING') this.state = 'PAUSED';
    this.pollController.abort();
    this.deps.logger.info('paused');
  }

  resume(): void {
    if (!this.pauseGate) return;
    this.pauseGate.release();
    this.pauseGate = null;
    if (this.state === 'PAUSED') this.state = 'RUNNING';
    this.deps.logger.info('resumed');
  }

  /** The state once `start` succeeded: RUNNING, or PAUSED when a pause arrived meanwhile. */
  protected get startedState(): TaskState {
    return this.pauseGate ? 'PAUSED' : 'RUNNING';
  }

  protected async waitIfPaused(): Promise<void> {
    while (this.pauseGate && !this.stopping) {
      await Promise.race([this.pauseGate.promise, abortPromise(this.stopController.signal)]);
    }
    if (this.pollController.signal.aborted) this.pollController = new AbortController();
  }

  /** Stops the task: the loop finishes its batch (committing what is durable), then the task's `stop()`. */
  async stop(timeoutMs: number): Promise<void> {
    this.pauseGate?.release();
    this.pauseGate = null;
    this.stopController.abort();
    this.pollController.abort();
    if (!this.loopDone) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.loopDone.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) this.deps.logger.warn({ timeout_ms: timeoutMs }, 'task did not stop in time; abandoning it');
    if (this.state !== 'FAILED') this.state = 'STOPPED';
  }

  status(): TaskStatus {
    const status: TaskStatus = {
      id: this.deps.task,
      state: this.state,
      recordsIn: this.recordsIn,
      recordsOut: this.recordsOut,
      deadLetters: this.deadLetters,
      lastActivityAt: this.lastActivityAt,
    };
    if (this.error) {
      status.error = {
        message: this.error.message,
        ...(isSluiceError(this.error) ? { code: this.error.code } : {}),
        trace: errorTrace(this.error),
      };
    }
    return status;
  }

  /** What every task's context holds, whatever its kind. */
  protected taskContext(): TaskContext {
    const { pipeline, connector, task, logger, taskMetrics } = this.deps;
    return { pipeline, connector, task, signal: this.stopController.signal, logger, metrics: taskMetrics };
  }

  protected retryOptions(stage: string): { signal: AbortSignal; onRetry: (err: SluiceError, attempt: number, delayMs: number) => void } {
    const { metrics, pipeline, connector, logger } = this.deps;
    return {
      signal: this.stopController.signal,
      onRetry: (err, attempt, delayMs) => {
        metrics.errors.inc({ pipeline, connector, stage });
        logger.warn({ err, attempt, delay_ms: delayMs, stage }, `${stage} failed, retrying: ${err.message}`);
      },
    };
  }

  /** Routes one bad record: DLQ (tolerance all) or a failure of the connector (tolerance none). */
  protected badRecord(letter: Omit<DeadLetter, 'attempts'> & { attempts?: number }, sink: DeadLetter[]): void {
    const { metrics, pipeline, connector, logger, errors } = this.deps;
    metrics.errors.inc({ pipeline, connector, stage: letter.stage });
    const where = `${letter.topic}${letter.partition !== null ? `/${letter.partition}` : ''}${letter.offset !== null ? `@${letter.offset}` : ''}`;
    if (errors.tolerance === 'none') {
      throw new SluiceError('CONNECTOR_FAILED', `record ${where} failed in ${letter.stage}: ${letter.error.message}`, {
        cause: letter.error,
        context: { pipeline, connector, stage: letter.stage, topic: letter.topic, partition: letter.partition, offset: letter.offset },
      });
    }
    if (errors.dlq) {
      sink.push({ attempts: 1, ...letter });
    } else {
      logger.warn({ err: letter.error, stage: letter.stage, record: where }, 'dropped a failing record (tolerance: all, dlq: false)');
    }
  }

  protected async flushDeadLetters(letters: DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const { log, pipeline, connector, metrics, logger } = this.deps;
    await retry(() => sendToDlq(log, pipeline, connector, letters), this.deps.errors.policy, this.retryOptions('dlq'));
    metrics.deadLetters.inc({ pipeline, connector }, letters.length);
    this.deadLetters += letters.length;
    logger.warn({ records: letters.length, first_error: letters[0]!.error.message }, 'sent records to the dead-letter queue');
  }
}

function abortPromise(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** A failure of the connector as a whole rather than of the records it was given. */
export function isConnectorLevel(err: unknown): boolean {
  return isSluiceError(err, 'CONFIG_INVALID') || (isSluiceError(err, 'CONNECTOR_FAILED') && (err as SluiceError).context['attempts'] !== undefined);
}

export function errorTrace(err: Error): string {
  let trace = err.stack ?? `${err.name}: ${err.message}`;
  let cause = (err as { cause?: unknown }).cause;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    trace += `\nCaused by: ${cause.stack ?? cause.message}`;
    cause = (cause as { cause?: unknown }).cause;
  }
  return trace;
}

export interface SourceRunnerDeps extends RunnerDeps {
  definition: AnySourceConnector;
  taskConfig: unknown;
  /** The entry's topic or topic template; undefined when the connector names topics per record. */
  topic: string | undefined;
  offsets: SourceOffsetStore;
}

/** A polled batch, routed and transformed, waiting for its append. */
interface PreparedBatch {
  readonly byTopic: Map<string, ProducerRecord[]>;
  /** Where each record of `byTopic` came from, in the same order; only kept when marking. */
  readonly sources: Map<string, RecordSource[]> | null;
  readonly dead: DeadLetter[];
  /** The last offset per source partition: covers every polled record, dropped ones included. */
  readonly entries: SourceOffsetEntry[];
  readonly polled: number;
}

/**
 * Batches in flight at most, counting the one being appended: poll and transform of the next batch
 * overlap with the append of the previous one, while appends stay in poll order.
 */
const MAX_COMMITS_BEHIND = 2;

/**
 * Drives a {@link SourceTask}: poll → transform → append (durable) → store offsets → commit.
 *
 * The stages overlap. While batch N is appended, batch N+1 is polled and transformed. Storing N's
 * offsets and calling `commit` runs after N's append and may overlap with N+1's append. Appends
 * still run one batch at a time, in poll order, and commits in the same order. A source's latency
 * is then about one append, not one append plus one offset write plus the poll.
 */
export class SourceRunner extends TaskRunner {
  private task: SourceTask | null = null;
  private marks: SourceMarks | null = null;
  /** The first failure of a background stage; the loop rethrows it. */
  private stageError: unknown = null;
  private appending: Promise<void> | null = null;
  private committing: Promise<void> = Promise.resolve();
  private commitsBehind = 0;

  constructor(private readonly source: SourceRunnerDeps) {
    super(source);
  }

  protected async run(): Promise<void> {
    const { definition, taskConfig, offsets, pipeline, connector, logger, log } = this.source;
    await retry(() => offsets.refresh(), this.source.errors.policy, this.retryOptions('start'));
    const committed = offsets.offsets(pipeline, connector);
    const byPartition = new Map(committed.map((e) => [canonicalJson(e.sourcePartition), e.sourceOffset]));
    const ctx: SourceTaskContext = {
      ...this.taskContext(),
      committedOffsets: committed,
      committedOffset: (partition: SourcePartition) => byPartition.get(canonicalJson(partition)),
    };
    if (definition.compareOffsets && definition.storeOffsets !== false) {
      const marks = new SourceMarks(log, pipeline, connector, definition.compareOffsets.bind(definition));
      await retry(() => marks.load(), this.source.errors.policy, this.retryOptions('start'));
      this.marks = marks;
    }
    const task = definition.createTask(taskConfig);
    this.task = task;
    await retry(() => task.start(ctx), this.source.errors.policy, this.retryOptions('start'));
    this.state = this.startedState;
    logger.info({ resumed_partitions: committed.length }, 'source task started');
    try {
      while (!this.stopping) {
        await this.waitIfPaused();
        if (this.stopping) break;
        this.throwStageError();
        // Without overlap the poll waits for the previous append, so it takes all that came meanwhile.
        if (definition.overlapPolls === false) await this.appending;
        const signal = this.pollController.signal;
        let records: readonly SourceRecord[];
        try {
          records = await retry(() => task.poll(signal), this.source.errors.policy, this.retryOptions('poll'));
        } catch (err) {
          if (this.stopping || signal.aborted) continue;
          throw err;
        }
        this.lastActivityAt = Date.now();
        this.throwStageError();
        if (records.length > 0) await this.submit(task, await this.prepare(records));
      }
    } finally {
      // What was polled is appended and what is durable committed, also when the loop failed: a
      // batch that reached the log must not be left unacknowledged upstream.
      await this.appending;
      await this.committing;
    }
    this.throwStageError();
  }

  private throwStageError(): void {
    if (this.stageError !== null) throw this.stageError;
  }

  /** Starts the append of `batch` once the previous one is done, without waiting for it. */
  private async submit(task: SourceTask, batch: PreparedBatch): Promise<void> {
    await this.appending;
    if (this.commitsBehind >= MAX_COMMITS_BEHIND) await this.committing;
    this.throwStageError();
    this.appending = this.append(task, batch).catch((err: unknown) => {
      this.stageError ??= err;
      this.pollController.abort();
    });
  }

  /** Routes, transforms and (after a restart) de-duplicates a polled batch. */
  private async prepare(records: readonly SourceRecord[]): Promise<PreparedBatch> {
    const { pipeline, connector, metrics, transforms, topic: template, ensureTopic } = this.source;
    metrics.recordsIn.inc({ pipeline, connector }, records.length);
    this.recordsIn += records.length;
    const marks = this.marks;
    const byTopic = new Map<string, ProducerRecord[]>();
    const sources = marks ? new Map<string, RecordSource[]>() : null;
    const dead: DeadLetter[] = [];
    // The last offset per source partition in this batch: it covers every record of the batch,
    // including records a filter dropped or the DLQ took, since those are handled too.
    const reached = new Map<string, SourceOffsetEntry>();
    // Sources usually reuse one partition object for a whole batch; its key is computed once.
    let lastPartition: SourcePartition | null = null;
    let lastKey = '';
    // A batch's records mostly come from one source partition: its entry is written when the
    // partition changes and at the end, not once per record.
    let lastOffset: SourceRecord['sourceOffset'] | null = null;
    // Likewise one topicVars object per table: its topic is filled in once.
    let lastVars: SourceRecord['topicVars'] | null = null;
    let lastTopic = '';
    let lastListTopic: string | null = null;
    let lastList: ProducerRecord[] = [];
    for (const r of records) {
      if (r.sourcePartition !== lastPartition) {
        if (lastPartition !== null) reached.set(lastKey, { sourcePartition: lastPartition, sourceOffset: lastOffset! });
        lastPartition = r.sourcePartition;
        lastKey = canonicalJson(r.sourcePartition);
      }
      lastOffset = r.sourceOffset;
      const headers: Headers = r.headers ?? {};
      let topic: string;
      try {
        if (r.topic !== undefined) {
          topic = r.topic;
        } else if (r.topicVars !== undefined && r.topicVars === lastVars) {
          topic = lastTopic;
        } else {
          topic = fillTopicTemplate(template ?? '', r.topicVars);
          lastVars = r.topicVars ?? null;
          lastTopic = topic;
        }
      } catch (err) {
        this.badRecord({ key: r.key ?? null, value: r.value, headers, timestamp: r.timestamp ?? Date.now(), error: err as Error, stage: 'route', topic: template ?? '', partition: null, offset: null }, dead);
        continue;
      }
      // Without transforms or marks nothing changes the record, and the log only reads it: the
      // source's own object is appended, which spares an object per record that lives until the
      // append is durable (measured: about a sixth of the webhook's CPU per batched event).
      let out: ProducerRecord = transforms || marks ? { key: r.key ?? null, value: r.value, headers, timestamp: r.timestamp } : r;
      if (transforms) {
        const decoded = decodeMessage(topic, out.key ?? null, out.value, headers, r.timestamp ?? Date.now());
        let message;
        try {
          message = await retry(async () => transforms(decoded.message), this.source.errors.policy, this.retryOptions('transform'));
        } catch (err) {
          if (this.stopping) throw err;
          this.badRecord({ key: out.key ?? null, value: out.value, headers, timestamp: decoded.message.timestamp, error: err as Error, stage: 'transform', topic, partition: null, offset: null }, dead);
          continue;
        }
        if (message === null) continue;
        topic = message.topic;
        out = encodeMessage(decoded, message);
      }
      if (marks) {
        if (!marks.knowsTopic(topic)) {
          await retry(
            async () => {
              await ensureTopic(topic);
              await marks.partitionsOf(topic);
            },
            this.source.errors.policy,
            this.retryOptions('append'),
          );
        }
        const route = marks.routeOf(topic, out);
        // A keyed record is routed once, here: the filter, the mark (stamp) and the log all take
        // this partition instead of hashing the key again. `out` is the runner's own copy.
        if (route !== undefined && out.key != null && out.partition === undefined) out.partition = route;
        if (marks.filtering && marks.isDuplicate(lastKey, r.sourceOffset, topic, route)) continue;
      }
      if (topic !== lastListTopic) {
        let found = byTopic.get(topic);
        if (!found) byTopic.set(topic, (found = []));
        lastListTopic = topic;
        lastList = found;
      }
      lastList.push(out);
      if (sources) {
        let from = sources.get(topic);
        if (!from) sources.set(topic, (from = []));
        from.push({ key: lastKey, partition: r.sourcePartition, offset: r.sourceOffset });
      }
    }
    if (lastPartition !== null) reached.set(lastKey, { sourcePartition: lastPartition, sourceOffset: lastOffset! });
    if (marks && sources) {
      for (const [topic, list] of byTopic) marks.stamp(topic, list, sources.get(topic)!);
      if (marks.skipped > 0) {
        this.source.logger.info({ records: marks.skipped }, 'skipped records that reached the log before the restart');
        marks.skipped = 0;
      }
    }
    return { byTopic, sources, dead, entries: [...reached.values()], polled: records.length };
  }

  /** Appends a batch (durable), then queues the storing of its offsets and the task's commit. */
  private async append(task: SourceTask, batch: PreparedBatch): Promise<void> {
    const { log, pipeline, connector, metrics, ensureTopic, logger } = this.source;
    const started = process.hrtime.bigint();
    try {
      for (const [topic, list] of batch.byTopic) {
        await retry(
          async () => {
            await ensureTopic(topic);
            await log.append(topic, list);
          },
          this.source.errors.policy,
          this.retryOptions('append'),
        );
      }
      await this.flushDeadLetters(batch.dead);
    } catch (err) {
      if (task.reject && !this.stopping) {
        // A push source answers its clients "retry later" and keeps serving; nothing of this batch
        // is acknowledged, so nothing acknowledged is lost.
        metrics.errors.inc({ pipeline, connector, stage: 'append' });
        await task.reject(batch.entries, err as Error).catch((e: unknown) => logger.warn({ err: e }, 'reject failed'));
        return;
      }
      throw err;
    }
    metrics.appendLatency.observe({ pipeline, connector }, Number(process.hrtime.bigint() - started) / 1e9);
    let appended = 0;
    for (const list of batch.byTopic.values()) appended += list.length;
    metrics.recordsOut.inc({ pipeline, connector }, appended);
    this.recordsOut += appended;
    this.commitsBehind++;
    this.committing = this.committing
      .then(() => this.commit(task, batch.entries))
      .catch((err: unknown) => {
        this.stageError ??= err;
        this.pollController.abort();
      })
      .finally(() => {
        this.commitsBehind--;
      });
  }

  /** Stores the offsets of a durable batch, then tells the task. Runs in append order. */
  private async commit(task: SourceTask, entries: SourceOffsetEntry[]): Promise<void> {
    if (this.stageError !== null) return;
    const { offsets, pipeline, connector, logger } = this.source;
    if (this.source.definition.storeOffsets !== false) {
      await retry(() => offsets.commit(pipeline, connector, entries), this.source.errors.policy, this.retryOptions('commit'));
    }
    try {
      await task.commit(entries);
    } catch (err) {
      if (!isRetriable(err)) throw err;
      logger.warn({ err }, 'commit failed; the next commit carries these offsets too');
    }
  }

  protected async shutdown(): Promise<void> {
    await this.task?.stop();
  }
}

export interface SinkRunnerDeps extends RunnerDeps {
  definition: AnySinkConnector;
  taskConfig: unknown;
  topics: string[];
  group: string;
  /** The most bytes one poll returns; the entry's `batch_max_bytes`, else {@link SINK_POLL_BYTES}. */
  pollBytes?: number;
}

const SINK_POLL_WAIT_MS = 500;
/** The default of the most bytes a sink task's poll returns; end-to-end tests derive duplicate bounds from it. */
export const SINK_POLL_BYTES = 1 << 20;

/** Drives a {@link SinkTask}: poll the group → transform → put (bisecting under tolerance: all) → commit. */
export class SinkRunner extends TaskRunner {
  private task: SinkTask | null = null;
  private consumer: Consumer | null = null;
  private owned: TopicPartition[] = [];

  constructor(private readonly sink: SinkRunnerDeps) {
    super(sink);
  }

  /** The group's committed offsets, for the admin API. */
  consumerGroup(): string {
    return this.sink.group;
  }

  protected async run(): Promise<void> {
    const { definition, taskConfig, log, topics, group, logger, ensureTopic } = this.sink;
    // A topic a sink reads but nothing created yet (its source has not written) is created with the
    // defaults, as any topic used but not declared is.
    for (const topic of topics) await ensureTopic(topic);
    // A replicated log may refuse for a moment (a leader election): retried like any start-up call.
    const consumer = await retry(() => log.subscribe(group, topics), this.sink.errors.policy, this.retryOptions('start'));
    this.consumer = consumer;
    const ctx: SinkTaskContext = {
      ...this.taskContext(),
      assignment: () => consumer.assignment(),
      groupOffsets: () => consumer.positions(),
    };
    const task = definition.createTask(taskConfig);
    this.task = task;
    await retry(() => task.start(ctx), this.sink.errors.policy, this.retryOptions('start'));
    this.state = this.startedState;
    logger.info({ group, topics }, 'sink task started');
    while (!this.stopping) {
      await this.waitIfPaused();
      if (this.stopping) break;
      await this.syncAssignment(task, consumer);
      let polled: LogRecord[];
      try {
        const signal = this.pollController.signal;
        polled = await retry(() => consumer.poll({ maxWaitMs: SINK_POLL_WAIT_MS, maxBytes: this.sink.pollBytes ?? SINK_POLL_BYTES, signal }), this.sink.errors.policy, this.retryOptions('poll'));
      } catch (err) {
        if ((isSluiceError(err, 'LOG_CLOSED') || err instanceof AbortedError) && this.stopping) break;
        throw err;
      }
      this.lastActivityAt = Date.now();
      if (polled.length === 0) continue;
      withoutMarks(polled);
      await this.process(task, consumer, polled);
    }
  }

  private async syncAssignment(task: SinkTask, consumer: Consumer): Promise<void> {
    const now = consumer.assignment();
    const key = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;
    const before = new Set(this.owned.map(key));
    const after = new Set(now.map(key));
    const revoked = this.owned.filter((tp) => !after.has(key(tp)));
    const added = now.filter((tp) => !before.has(key(tp)));
    if (revoked.length === 0 && added.length === 0) return;
    this.owned = now;
    if (revoked.length > 0 && task.close) await task.close(revoked);
    if (added.length > 0) {
      if (task.open) await retry(() => task.open!(added), this.sink.errors.policy, this.retryOptions('open'));
      if (task.committedOffsets) {
        // Exactly-once sinks keep their offsets with the data; those win over the group's.
        const stored = await retry(() => task.committedOffsets!(added), this.sink.errors.policy, this.retryOptions('open'));
        for (const o of stored) consumer.seek(o.topic, o.partition, o.offset);
      }
      this.sink.logger.info({ partitions: added.map((tp) => `${tp.topic}/${tp.partition}`) }, 'partitions assigned');
    }
  }

  private async process(task: SinkTask, consumer: Consumer, polled: LogRecord[]): Promise<void> {
    const { pipeline, connector, metrics, transforms } = this.sink;
    metrics.recordsIn.inc({ pipeline, connector }, polled.length);
    this.recordsIn += polled.length;
    const dead: DeadLetter[] = [];
    let batch: SinkRecord[] = polled;
    const originals = new Map<SinkRecord, LogRecord>();
    if (transforms) {
      batch = [];
      for (const r of polled) {
        const decoded = decodeMessage(r.topic, r.key, r.value, r.headers, r.timestamp);
        let message;
        try {
          message = await retry(async () => transforms(decoded.message), this.sink.errors.policy, this.retryOptions('transform'));
        } catch (err) {
          if (this.stopping) throw err;
          this.badRecord({ key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp, error: err as Error, stage: 'transform', topic: r.topic, partition: r.partition, offset: r.offset }, dead);
          continue;
        }
        if (message === null) continue;
        const encoded = encodeMessage(decoded, message);
        const out: SinkRecord = { topic: message.topic, partition: r.partition, offset: r.offset, ...encoded };
        originals.set(out, r);
        batch.push(out);
      }
    }

    const started = process.hrtime.bigint();
    const delivered = await this.deliver(task, batch, originals, dead);
    metrics.putLatency.observe({ pipeline, connector }, Number(process.hrtime.bigint() - started) / 1e9);
    metrics.recordsOut.inc({ pipeline, connector }, delivered);
    this.recordsOut += delivered;
    await this.flushDeadLetters(dead);

    // Polls return each partition's records as a run, so the next offset is noted once per run.
    const next = new Map<string, TopicPartitionOffset>();
    const note = (r: LogRecord): void => void next.set(`${r.topic}\u0000${r.partition}`, { topic: r.topic, partition: r.partition, offset: r.offset + 1n });
    let last: LogRecord | null = null;
    for (const r of polled) {
      if (last !== null && (r.partition !== last.partition || r.topic !== last.topic)) note(last);
      last = r;
    }
    if (last !== null) note(last);
    let offsets = [...next.values()];
    if (task.preCommit) offsets = [...(await retry(() => task.preCommit!(offsets), this.sink.errors.policy, this.retryOptions('put')))];
    try {
      await retry(() => consumer.commit(offsets), this.sink.errors.policy, this.retryOptions('commit'));
    } catch (err) {
      // The partition moved to another member in the meantime; it resumes from the last commit.
      if (!isSluiceError(err, 'NOT_ASSIGNED')) throw err;
    }
  }

  /**
   * Puts `records`; under `tolerance: all` a batch that fails for a non-retriable reason is split in
   * halves until the records that fail alone are found and sent to the DLQ. Returns how many records
   * were written.
   */
  private async deliver(task: SinkTask, records: SinkRecord[], originals: Map<SinkRecord, LogRecord>, dead: DeadLetter[]): Promise<number> {
    if (records.length === 0) return 0;
    try {
      await retry(() => task.put(records), this.sink.errors.policy, this.retryOptions('put'));
      return records.length;
    } catch (err) {
      // Running out of retries means the target is unavailable, and CONFIG_INVALID that the connector
      // cannot work at all (bad credentials, no permission): neither is about a record, so neither is
      // bisected into the DLQ.
      if (this.stopping || isRetriable(err) || isConnectorLevel(err)) throw err;
      if (this.sink.errors.tolerance === 'none') {
        const first = records[0]!;
        const last = records[records.length - 1]!;
        throw new SluiceError('CONNECTOR_FAILED', `put of ${records.length} records (${first.topic}/${first.partition}@${first.offset} .. ${last.topic}/${last.partition}@${last.offset}) failed: ${(err as Error).message}`, {
          cause: err,
          context: { topic: first.topic, partition: first.partition, offset: first.offset },
        });
      }
      if (records.length === 1) {
        const r = originals.get(records[0]!) ?? records[0]!;
        this.badRecord({ key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp, error: err as Error, stage: 'put', topic: r.topic, partition: r.partition, offset: r.offset }, dead);
        return 0;
      }
      const mid = records.length >> 1;
      return (await this.deliver(task, records.slice(0, mid), originals, dead)) + (await this.deliver(task, records.slice(mid), originals, dead));
    }
  }

  protected async shutdown(): Promise<void> {
    try {
      if (this.task?.close && this.owned.length > 0) await this.task.close(this.owned);
      await this.task?.stop();
    } finally {
      await this.consumer?.close();
    }
  }

  assignment(): TopicPartition[] {
    return [...this.owned];
  }
}

/** Removes the runtime's source-offset marks, which are bookkeeping and not part of the data. */
function withoutMarks(records: LogRecord[]): void {
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (r.headers[MARK_HEADER] === undefined) continue;
    const headers = { ...r.headers };
    delete headers[MARK_HEADER];
    records[i] = { ...r, headers };
  }
}

export type { FailureStage };
export { AbortedError };

/**
 * The public connector API: the only core module a connector imports. It holds interfaces and a few
 * pure helpers, and depends on nothing in the runtime, so a connector can be built and tested
 * against it alone.
 *
 * The model is Kafka Connect's:
 * - a {@link SourceConnector} or {@link SinkConnector} is the control plane. It owns the config
 *   schema, splits the work into task configs with `taskConfigs(config, maxTasks)` and creates
 *   tasks;
 * - a {@link SourceTask} or {@link SinkTask} moves data. The runtime owns everything around it:
 *   offsets, retries, the dead-letter queue, transforms, metrics of records in and out.
 *
 * Errors a task throws mean one of two things:
 * - {@link RetriableError}: the same call, repeated later with the same input, may succeed. The
 *   runtime retries it with exponential backoff and jitter, up to the entry's
 *   `errors.retry_timeout`, and then treats it as non-retriable;
 * - anything else: the call failed for good. Under `errors.tolerance: none` the connector goes
 *   FAILED with the error in its status; under `tolerance: all` the runtime isolates the records
 *   involved and sends them to the DLQ topic `__dlq.<pipeline>.<connector>` (when `errors.dlq` is
 *   on), then continues.
 *
 * A connector module exports one definition made with {@link defineSource} or {@link defineSink},
 * and `connectors/index.ts` lists every definition in {@link defineRegistry}.
 */
import type { FromSchema, JSONSchema } from 'json-schema-to-ts';
import { SluiceError } from './errors.ts';
import type { Headers, LogRecord, TopicPartition, TopicPartitionOffset } from './log/types.ts';

export { RetriableError, SluiceError, isSluiceError, type ErrorCode, type ErrorContext } from './errors.ts';
export type { Headers, LogRecord, TopicPartition, TopicPartitionOffset } from './log/types.ts';
export {
  DURATION_PATTERN,
  SIZE_PATTERN,
  durationSchema,
  parseDuration,
  parseSize,
  sizeSchema,
} from './spec/units.ts';

// ---------------------------------------------------------------------------------------------
// Config

// The constraint is deliberately loose: checking an `as const` literal against json-schema-to-ts's
// recursive JSONSchema type at every definition made type checking several times slower and failed
// on nested schemas. Ajv's strict mode checks the schema instead, when the registry is first used.
/**
 * A connector's config schema: a JSON Schema object literal written `as const`, with
 * `type: 'object'` at the top. It validates the `config` block of a spec entry (ajv, all errors at
 * once), types it through {@link ConfigOf}, generates the connector's reference doc, and is composed
 * into the whole-spec schema that editors use. Every property needs a `description`; rules that
 * span fields go in the schema (`if`/`then`, `dependentRequired`) so the docs show them. Mark
 * secrets with `writeOnly: true`: the runtime redacts them from logs and API output.
 */
export type ConfigSchema = { readonly type: 'object' };

/**
 * The TypeScript type of a config validated by `S`. Properties with a `default` are required in
 * this type, because the loader fills defaults in before any connector code sees the config.
 *
 * @example
 * export const schema = { type: 'object', properties: { rate: { type: 'integer', default: 100, description: '...' } },
 *   additionalProperties: false } as const;
 * type DatagenConfig = ConfigOf<typeof schema>; // { rate: number }
 *
 * `never` when `S` is not a JSON Schema (a typo in a keyword's type), which makes any use of the
 * config a type error.
 */
export type ConfigOf<S> = S extends JSONSchema ? FromSchema<S> : never;

/** A JSON value: what configs, task configs and source offsets are made of. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

// ---------------------------------------------------------------------------------------------
// Records

/**
 * Identifies one upstream stream whose position a source tracks, e.g. `{ file: '<dev>:<ino>:<fp>' }`
 * or `{ slot: 'sluice_orders' }`. Two records belong to the same partition when their
 * `sourcePartition`s are deep-equal, key order aside.
 */
export type SourcePartition = Readonly<Record<string, string | number | boolean>>;

/**
 * A position within a {@link SourcePartition}, e.g. `{ position: 1024 }` or `{ lsn: '0/16B3748' }`.
 * It must be JSON (bigints as strings) because the runtime stores it in an internal compacted
 * topic, and it is opaque to the runtime: only the task that produced it interprets it.
 */
export type SourceOffset = Readonly<Record<string, JsonValue>>;

/** A source partition with the offset reached in it. */
export interface SourceOffsetEntry {
  readonly sourcePartition: SourcePartition;
  readonly sourceOffset: SourceOffset;
}

/**
 * A record a {@link SourceTask} polled. Keys and values are bytes; by convention JSON, which is what
 * transforms, the http sink and the database sinks expect.
 */
export interface SourceRecord {
  /** The upstream stream this record came from. */
  sourcePartition: SourcePartition;
  /**
   * The position to resume from once this record is durable: the offset of the *next* record to
   * read in `sourcePartition`, as Kafka's committed offsets are.
   */
  sourceOffset: SourceOffset;
  /**
   * Values for the placeholders of the entry's topic template, e.g. `{ schema: 'public', table:
   * 'orders' }` for `cdc.{schema}.{table}`. Every placeholder of the template must be given; the
   * runtime sends a record that leaves one unfilled to the error handling as a bad record. Records
   * of one table may share one object, which the runtime fills in once; never change an object
   * after a poll returned it.
   */
  topicVars?: Readonly<Record<string, string>>;
  /**
   * Writes the record to this topic instead of the entry's topic. For connectors whose config names
   * the topics (the webhook's routes); such connectors declare them in
   * {@link SourceConnector.producedTopics} so validation knows them.
   */
  topic?: string;
  /** Routes the record with Kafka's murmur2 partitioner; null or absent means sticky partitioning. */
  key?: Buffer | null;
  /** Null is a tombstone: in a compacted topic it deletes the key. */
  value: Buffer | null;
  headers?: Headers;
  /** Event time in milliseconds since the epoch; defaults to the time of the append. */
  timestamp?: number;
}

/**
 * Record bytes as one JSON text on one line, for sinks that write JSON lines or NDJSON. Valid JSON
 * is kept byte for byte, so big integers and key order survive; anything else becomes a JSON string
 * of its UTF-8 decoding, and null is `null`. In valid JSON a raw line break can only be
 * insignificant whitespace (inside strings it must be escaped), so replacing it with a space keeps
 * the value and makes it one line without reserialising it.
 */
export function jsonText(bytes: Buffer | null): string {
  if (bytes === null) return 'null';
  const text = bytes.toString('utf8');
  try {
    JSON.parse(text);
  } catch {
    return JSON.stringify(text);
  }
  return text.includes('\n') || text.includes('\r') ? text.replace(/[\r\n]/g, ' ') : text;
}

/** A record a {@link SinkTask} receives: a log record with its topic, partition and offset. */
export type SinkRecord = LogRecord;

// ---------------------------------------------------------------------------------------------
// What the runtime hands to tasks

/**
 * The logger tasks receive: the runtime's pino logger as `child({ pipeline, connector, task })`,
 * typed minimally so connectors never import pino. Structured fields come first:
 * `ctx.logger.info({ records, partition }, 'polled')`. Do not log config values marked
 * `writeOnly`: the runtime scrubs known secret texts from messages, but only those it knows.
 */
export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /** A logger whose lines carry `bindings` too, e.g. `{ file }` for one tailed file. */
  child(bindings: Record<string, unknown>): Logger;
}

/** One log method: `(fields, message)` or `(message)`. Put errors under `err` so they serialise. */
export interface LogFn {
  (fields: object, message?: string): void;
  (message: string): void;
}

/** Label values for a connector metric, e.g. `{ table: 'orders' }`. */
export type MetricLabels = Readonly<Record<string, string>>;

/**
 * Connector-specific metrics, declared in the definition's `metrics` and exported by the runtime as
 * Prometheus series named `sluice_<connector type>_<name>` (dashes become underscores) with the labels `pipeline`, `connector`
 * and `task` added. Records in and out, errors, lag and put latency are measured by the runtime;
 * a task reports only what the runtime cannot see, such as a replication slot's retained WAL.
 * Calls are cheap and synchronous. A name that the definition does not declare throws
 * `INVALID_ARGUMENT`: it is a programming error.
 */
export interface TaskMetrics {
  /** Adds `value` (default 1) to a declared counter. */
  count(name: string, value?: number, labels?: MetricLabels): void;
  /** Sets a declared gauge. */
  gauge(name: string, value: number, labels?: MetricLabels): void;
  /** Records one sample of a declared histogram, in seconds for latencies. */
  observe(name: string, value: number, labels?: MetricLabels): void;
}

/** A metric a connector declares; the reference doc lists them. */
export interface MetricSpec {
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  /** Label names the task passes, besides `pipeline`, `connector` and `task` that the runtime adds. */
  readonly labels?: readonly string[];
}

/** What every task receives in `start`. */
export interface TaskContext {
  /** The pipeline's `name`. */
  readonly pipeline: string;
  /** The entry's `name` in the spec (not the connector type). */
  readonly connector: string;
  /** The task's index in `taskConfigs`' result, from 0. */
  readonly task: number;
  /**
   * Aborted when the task must stop: shutdown, a restart through the API, or the loss of its lease
   * in a worker group. Pass it to every wait and I/O call. `stop()` follows.
   */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly metrics: TaskMetrics;
}

/** What a {@link SourceTask} receives in `start`. */
export interface SourceTaskContext extends TaskContext {
  /**
   * The last committed offset of every source partition this connector (all its tasks) ever
   * committed, read once before `start`. A task resumes each of its partitions from here; a
   * partition missing from the list starts fresh (e.g. a snapshot, or `start_at`).
   */
  readonly committedOffsets: readonly SourceOffsetEntry[];
  /** The committed offset of one partition, matched by deep equality, or undefined. */
  committedOffset(partition: SourcePartition): SourceOffset | undefined;
}

/** What a {@link SinkTask} receives in `start`. */
export interface SinkTaskContext extends TaskContext {
  /** The partitions this task owns right now; it changes between `close` and `open` calls. */
  assignment(): readonly TopicPartition[];
  /**
   * The consumer group's committed offsets (the next offset to read) for the owned partitions. A
   * sink that stores offsets in its target reports those through {@link SinkTask.committedOffsets}.
   */
  groupOffsets(): readonly TopicPartitionOffset[];
}

// ---------------------------------------------------------------------------------------------
// Tasks

/**
 * A source task pulls records from upstream.
 *
 * Lifecycle:
 * 1. `connector.createTask(config)` builds the task. No I/O.
 * 2. `start(ctx)` connects and resumes from `ctx.committedOffsets`.
 * 3. `poll(signal)` is called in a loop. Calls never overlap each other, but the runtime may poll
 *    the next batch while the previous one is still being appended.
 * 4. `commit(offsets)` is called once the records up to `offsets` are durable in the log and their
 *    offsets are stored. It may overlap with `poll`.
 * 5. On shutdown `ctx.signal` aborts, the in-flight `poll` settles, the last durable batch is
 *    committed, and `stop()` is called once, with no `poll` or `commit` in flight.
 *
 * Delivery is at-least-once: after a crash the task resumes from the last committed offsets, so
 * the records polled after them arrive again.
 */
export interface SourceTask {
  /**
   * Called once, before anything else. Connects upstream and positions every source partition at
   * its committed offset. A RetriableError (upstream not reachable yet) makes the runtime retry
   * `start` with backoff; any other error fails the connector.
   */
  start(ctx: SourceTaskContext): Promise<void>;
  /**
   * Returns the next batch, in order within each source partition. It may wait for data, but must
   * resolve within about a second (return `[]` when idle) and resolve promptly when `signal` aborts,
   * which happens on pause and on stop; records returned after the abort are still appended.
   * The returned records, and their buffers, belong to the runtime from then on: it may append
   * the very objects, so the task must never change or reuse them.
   * A RetriableError is retried with backoff; any other error fails the connector (poll has no
   * records yet, so there is nothing to send to a DLQ).
   */
  poll(signal: AbortSignal): Promise<readonly SourceRecord[]>;
  /**
   * Called with the offsets that are now durable: for every source partition polled since the
   * previous commit, the `sourceOffset` of its last durable record. Everything polled before those records
   * in that partition is durable too. This is where a task may acknowledge upstream (advance a
   * replication slot, answer an HTTP request with 2xx) and the first moment it may do so.
   * A RetriableError is logged, and the next commit carries the same or newer offsets; any other
   * error fails the connector (for instance, a replication slot that was invalidated).
   */
  commit(offsets: readonly SourceOffsetEntry[]): Promise<void>;
  /**
   * Optional, for push sources that answer upstream (the webhook). Called instead of `commit` for
   * records the runtime gave up appending, e.g. the log refused writes past `retry_timeout`, so the
   * task can answer "retry later" (HTTP 503) at once. These records are not retried and their
   * offsets are never committed; records polled after them may still be. Errors are logged only.
   */
  reject?(offsets: readonly SourceOffsetEntry[], error: Error): Promise<void>;
  /**
   * Called once, last. Releases connections, timers and watchers. Must settle within the runtime's
   * shutdown timeout (a few seconds); after it the runtime abandons the task. Errors are logged.
   */
  stop(): Promise<void>;
}

/**
 * A sink task writes records to a target.
 *
 * Lifecycle:
 * 1. `connector.createTask(config)` builds the task. No I/O.
 * 2. `start(ctx)` connects.
 * 3. `open(partitions)` is called when partitions are assigned to the task, at first and after each
 *    rebalance. If the task implements `committedOffsets`, it is called next for the same
 *    partitions, and reading resumes from what it returns instead of the group's offsets.
 * 4. `put(records)` is called with each batch, in offset order per partition. Calls never overlap.
 * 5. `preCommit(offsets)`, if implemented, is called before the runtime commits the group offsets,
 *    periodically and before `close`; it flushes and returns the offsets safe to commit. Without
 *    it, a resolved `put` means its records are durable in the target.
 * 6. `close(partitions)` is called when partitions are revoked (a rebalance, or shutdown before
 *    `stop`). After it, no `put` carries records of those partitions until they are opened again.
 * 7. `stop()` is called once, last, with no other call in flight.
 *
 * Delivery is at-least-once: after a crash, records after the last committed offset are put
 * again. A sink that writes its offsets into the target in the same transaction as the data, and
 * reports them through `committedOffsets`, makes delivery exactly-once.
 */
export interface SinkTask {
  /**
   * Called once, before anything else. A RetriableError (target not reachable yet) makes the runtime
   * retry `start` with backoff; any other error fails the connector.
   */
  start(ctx: SinkTaskContext): Promise<void>;
  /** Prepares writers for newly assigned partitions. Errors are handled as in `start`. */
  open?(partitions: readonly TopicPartition[]): Promise<void>;
  /**
   * Exactly-once sinks only: the offsets stored in the target for these partitions (the next offset
   * to write). Reading resumes from them instead of the consumer group's offsets; a partition
   * missing from the result falls back to the group's offset.
   */
  committedOffsets?(partitions: readonly TopicPartition[]): Promise<readonly TopicPartitionOffset[]>;
  /**
   * Writes a batch. When it resolves without `preCommit`, the records must be durable in the target,
   * because the runtime may commit their offsets next. A RetriableError means "retry the same
   * batch": the runtime calls `put` again with the same records. A `SluiceError` with code
   * `CONFIG_INVALID` means the connector cannot work at all (bad credentials, no permission, the
   * target does not exist): the connector goes FAILED whatever the tolerance. Any other error means
   * some record is bad: under `tolerance: none` the connector goes FAILED; under `tolerance: all` the
   * runtime bisects the batch, calling `put` with halves, to find the records that fail alone and
   * send them to the DLQ. A `put` that throws may therefore see part
   * of its batch again, so it must leave no partial effect, or one that is safe to repeat.
   */
  put(records: readonly SinkRecord[]): Promise<void>;
  /**
   * Flushes buffered records and returns the offsets that are safe to commit, at most `offsets`
   * (the next offset after the last record `put` per partition). Returning fewer holds those
   * partitions back. Errors are handled as in `put`, for the whole unflushed data.
   */
  preCommit?(offsets: readonly TopicPartitionOffset[]): Promise<readonly TopicPartitionOffset[]>;
  /** Flushes or discards what is buffered for revoked partitions and releases their writers. */
  close?(partitions: readonly TopicPartition[]): Promise<void>;
  /**
   * Called once, last. Releases connections. Must settle within the runtime's shutdown timeout;
   * after it the runtime abandons the task. Errors are logged.
   */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Connectors

/** What both kinds of connector definition share. `C` is the validated config, `T` a task config. */
interface ConnectorBase<S extends ConfigSchema, C, T> {
  /** The connector type that specs name in `connector:`, e.g. `datagen`. Kebab-case, unique per kind. */
  readonly name: string;
  /** One paragraph for `sluice connectors` and the reference doc. */
  readonly description: string;
  /** The config schema, the single source of truth for the config. */
  readonly configSchema: S;
  /**
   * Configs shown in the reference doc; the conformance suite checks that they validate. Typed as
   * the full config (defaults included): deriving the input type with defaults optional made the
   * type checker recurse too deeply on the larger schemas.
   */
  readonly examples?: ReadonlyArray<{ readonly title: string; readonly config: C }>;
  /** Connector-specific metrics the tasks report through {@link TaskMetrics}. */
  readonly metrics?: Readonly<Record<string, MetricSpec>>;
  /**
   * Splits the work into at most `maxTasks` task configs (the entry's `tasks`, default 1), one per
   * task to run: for example one per table set or path set. Called by the runtime at start and on
   * every restart, with a config that already passed schema validation. Task configs must be JSON,
   * because in a worker group they travel to other machines. Absent: one task gets the config.
   * A thrown error fails the connector before any task starts.
   */
  taskConfigs?(config: C, maxTasks: number): readonly T[];
  /**
   * Checks, without changing anything, that the upstream or target is reachable and usable with
   * this config (credentials, permissions, that a slot can be created). Called by the runtime before
   * it starts the tasks and by the CLI on demand. Resolves when healthy. A RetriableError means "not
   * reachable yet" and is retried with backoff; any other error is a misconfiguration, shown in
   * status, and the connector goes FAILED without starting tasks.
   */
  healthCheck?(config: C, options: { signal: AbortSignal; logger: Logger }): Promise<void>;
}

/** A source connector definition: config schema, work split and task factory. */
export interface SourceConnector<S extends ConfigSchema = ConfigSchema, C = ConfigOf<S>, T = C> extends ConnectorBase<S, C, T> {
  readonly kind: 'source';
  /**
   * The placeholders its records fill through {@link SourceRecord.topicVars}, e.g.
   * `['schema', 'table']`. Validation rejects a topic template using any other placeholder.
   */
  readonly topicVariables?: readonly string[];
  /**
   * Topics the tasks write through {@link SourceRecord.topic}, read from the config (the webhook's
   * routes). Validation uses them for cross-references. When defined, the entry's `topic` is
   * optional; otherwise it is required.
   */
  producedTopics?(config: C): readonly string[];
  /**
   * Whether the runtime stores this connector's source offsets. Default true. A push source that
   * never resumes from them (the webhook: unanswered clients resend) sets false, which saves one
   * durable write per batch; `commit` is still called only once the records are durable.
   */
  readonly storeOffsets?: boolean;
  /**
   * In a worker group, whether every worker runs this connector's tasks instead of the one worker
   * holding each task's lease. Default false. A server that receives pushed data (the webhook) sets
   * true: each worker answers the requests that reach it and appends to the shared log.
   */
  readonly everyWorker?: boolean;
  /**
   * Whether the runtime may poll the next batch while the previous one is being appended. Default
   * true, which keeps a backlog moving: decoding the next batch overlaps the previous one's write
   * and fsync. A push source whose clients wait for `commit` (the webhook) sets false. Its next
   * poll then takes everything that arrived during the append, so each client waits for one append
   * rather than two.
   */
  readonly overlapPolls?: boolean;
  /**
   * Optional: orders two offsets of one source partition. When defined, a restart appends nothing
   * twice. The runtime marks the last record of each partition it appends to with the source offsets
   * it reached there. After a crash it reads those marks back from the log, and it drops a re-polled
   * record whose offset is at or below the mark in the log partition the record would go to.
   *
   * Return a negative number, 0 or a positive number, as `Array.prototype.sort` expects. Return null
   * when the two cannot be ordered; the record is then appended again (at-least-once). Snapshot rows,
   * for example, are numbered by a read that may shift between runs.
   *
   * Only a source can promise what this needs, so only it should define the method:
   * - offsets within a source partition never decrease in poll order;
   * - records that share an offset are always returned by the same `poll`;
   * - a record polled again after a restart has the same offset and key as the first time.
   *
   * Called by the runtime on its hot path while a restart's overlap lasts. It must be pure and fast,
   * and it must not throw.
   */
  compareOffsets?(a: SourceOffset, b: SourceOffset): number | null;
  /** Creates one task for one task config. Called by the runtime; must not do I/O. */
  createTask(config: T): SourceTask;
}

/** A sink connector definition: config schema, work split and task factory. */
export interface SinkConnector<S extends ConfigSchema = ConfigSchema, C = ConfigOf<S>, T = C> extends ConnectorBase<S, C, T> {
  readonly kind: 'sink';
  /** Creates one task for one task config. Called by the runtime; must not do I/O. */
  createTask(config: T): SinkTask;
}

// Registries hold definitions of every config type; `any` is what lets a definition typed for its
// own config be stored next to the others (config types are contravariant in method parameters).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySourceConnector = SourceConnector<any, any, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySinkConnector = SinkConnector<any, any, any>;
export type AnyConnector = AnySourceConnector | AnySinkConnector;

/**
 * Defines a source connector with its config type inferred from `configSchema`. Declare the schema
 * as its own `as const` constant (in the connector's `schema.ts`) and pass it by name.
 *
 * @example
 * export const datagen = defineSource({ kind: 'source', name: 'datagen', description: '...',
 *   configSchema: schema, createTask: (config) => new DatagenTask(config) });
 */
export function defineSource<S extends ConfigSchema, T = ConfigOf<S>>(
  definition: SourceConnector<S, ConfigOf<S>, T>,
): SourceConnector<S, ConfigOf<S>, T> {
  return definition;
}

/** Defines a sink connector with its config type inferred from `configSchema`. */
export function defineSink<S extends ConfigSchema, T = ConfigOf<S>>(
  definition: SinkConnector<S, ConfigOf<S>, T>,
): SinkConnector<S, ConfigOf<S>, T> {
  return definition;
}

/** Every connector the runtime knows, by kind and then by `name`. */
export interface ConnectorRegistry {
  readonly sources: ReadonlyMap<string, AnySourceConnector>;
  readonly sinks: ReadonlyMap<string, AnySinkConnector>;
}

/**
 * Builds the registry from an explicit list; `connectors/index.ts` calls it once. Throws
 * `INVALID_ARGUMENT` for two connectors of one kind with the same name or a name that is not
 * kebab-case.
 */
export function defineRegistry(connectors: readonly AnyConnector[]): ConnectorRegistry {
  const sources = new Map<string, AnySourceConnector>();
  const sinks = new Map<string, AnySinkConnector>();
  for (const connector of connectors) {
    if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(connector.name)) {
      throw new SluiceError('INVALID_ARGUMENT', `connector name ${JSON.stringify(connector.name)} must be kebab-case`, {
        context: { connector: connector.name },
      });
    }
    const map: Map<string, AnyConnector> = connector.kind === 'source' ? sources : sinks;
    if (map.has(connector.name)) {
      throw new SluiceError('INVALID_ARGUMENT', `two ${connector.kind} connectors are named ${JSON.stringify(connector.name)}`, {
        context: { connector: connector.name },
      });
    }
    map.set(connector.name, connector);
  }
  return { sources, sinks };
}

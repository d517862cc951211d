/**
 * The connector conformance suite: the guarantees every connector owes the runtime and its users,
 * checked the same way for all of them, as Benthos runs one stream suite against every input and
 * output. Each connector's `conformance.test.ts` calls {@link describeSourceConformance} or
 * {@link describeSinkConformance} with what only it knows: a config that makes it move a known
 * set of records, and how to see what it moved.
 *
 * The checks:
 * 1. its examples validate against its schema (through the spec loader, as a user's spec would)
 *    and split into tasks, and it has a description;
 * 2. its reference doc renders from its schema, every setting is described, and the committed
 *    `connectors/<name>/README.md` is what the generator makes today;
 * 3. a graceful restart mid-stream, in a real {@link Runtime} on a real log (embedded unless the
 *    options' `openLog` says otherwise), resumes from the committed offsets: every record arrives,
 *    and at most one batch twice;
 * 4. `Runtime.stop()` settles within the shutdown timeout while data flows, every task's `stop()`
 *    is called once with no other call in flight and none after, and no socket, watcher or timer
 *    it opened outlives it.
 *
 * A connector under test runs against a counterpart from `counterparts.ts`: a source under test
 * feeds the in-memory collecting sink; a sink under test is fed by the numbering source, whose
 * record ids (`sluice-conformance-NNNNNNN`) the suite finds in whatever the sink's target received.
 */
import { createHook } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { registry as projectRegistry } from '../../connectors/index.ts';
import {
  defineRegistry,
  type AnyConnector,
  type AnySinkConnector,
  type AnySourceConnector,
  type ConnectorRegistry,
  type Logger,
  type SinkConnector,
  type SinkRecord,
  type SinkTask,
  type SourceConnector,
  type SourceTask,
} from '../../core/connector.ts';
import { missingDescriptions, renderConnectorDoc, writeConnectorDocs } from '../../core/docs.ts';
import { openLog } from '../../core/log/embedded-log.ts';
import type { Log } from '../../core/log/types.ts';
import { Runtime } from '../../core/runtime/runtime.ts';
import { formatProblem, validateSpecTexts, type LoadedSpec } from '../../core/spec/index.ts';
import { COLLECTOR, FEEDER, collected, collector, dropBucket, feeder, feederId, feederIdsIn } from './counterparts.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const PIPELINE = 'conformance';
const TOPIC = 'conformance.records';
/** The entry name of the connector under test. */
const UNDER_TEST = 'under-test';
const COUNTERPART = 'counterpart';

// ---------------------------------------------------------------------------------------------
// The API

/** What every hook of a conformance test receives. */
export interface ConformanceContext<F = undefined> {
  /** A fresh temporary directory for this test, removed afterwards. The log lives in `dir/log`; the rest is the connector's. */
  readonly dir: string;
  /** What `setup` returned, e.g. a local server and what it received. */
  readonly fixture: F;
}

/**
 * Options typed from the definition alone, with the fixture type taken from `setup`. Inferring the
 * config type from the options too would widen `preset: 'orders'` to `string` and reject it.
 */
type InferFixture<O, F> = NoInfer<O> & { setup?(ctx: { readonly dir: string }): F | Promise<F> };

interface CommonOptions<C, F> {
  /**
   * Called before each check that runs the connector, with the test's directory: starts what the
   * connector talks to (a local server) and returns it as the context's `fixture`.
   */
  setup?(ctx: { readonly dir: string }): F | Promise<F>;
  /** Called after each such check, even a failed one, after the runtime stopped. */
  teardown?(ctx: ConformanceContext<F>): void | Promise<void>;
  /** The runtime's shutdown timeout, which `Runtime.stop()` must beat. Default 5 s. */
  shutdownTimeoutMs?: number;
  /** How long a run may take to deliver everything. Default 15 s. */
  deliverTimeoutMs?: number;
  /**
   * Opens the log each runtime of a check runs on; called again on the same `dir` for the restart,
   * so it must reopen the same storage. Default: the embedded log in `dir/log`.
   */
  openLog?(ctx: { readonly dir: string }): Promise<Log>;
  /**
   * The config the runtime runs the connector with; it goes through the spec loader, so defaults
   * are filled in. For a source it must produce a finite, known set of records slowly enough to be
   * stopped mid-stream (about a second or more); for a sink it must write somewhere `readBack` sees.
   */
  configFor(ctx: ConformanceContext<F>): C;
}

/** What {@link describeSourceConformance} needs to know about a source. */
export interface SourceConformanceOptions<C, F = undefined> extends CommonOptions<C, F> {
  /**
   * The records `config` produces: their ids as {@link recordId} gives them, or just how many when
   * ids are unique but not known in advance.
   */
  expected(ctx: ConformanceContext<F>, config: C): number | readonly string[];
  /** The id of one record the source produced, as the collecting sink received it; unique per record. */
  recordId(record: SinkRecord): string;
  /** The most records one poll returns: a restart may repeat at most this many. */
  maxDuplicates: number;
  /**
   * Optional: pushes data upstream after each runtime started (`run` is 1, then 2 after the
   * restart), for sources that do not generate their own.
   */
  feed?(ctx: ConformanceContext<F>, run: number): Promise<void>;
}

/** What {@link describeSinkConformance} needs to know about a sink. */
export interface SinkConformanceOptions<C, F = undefined> extends CommonOptions<C, F> {
  /**
   * What the target holds now, as texts that contain the feeder's record ids: lines of files,
   * request bodies, rows as JSON. Each occurrence of an id counts as one delivery.
   */
  readBack(ctx: ConformanceContext<F>): Promise<readonly string[]>;
  /** How many records the restart check feeds. Default 1000. */
  records?: number;
  /** Records per poll of the feeding source. Default 10. */
  batch?: number;
  /** The most records a graceful restart may deliver twice. Default `batch`. */
  maxDuplicates?: number;
}

/**
 * Registers the conformance checks of a source connector as a vitest `describe` block. Call it
 * from `connectors/<name>/conformance.test.ts`.
 */
export function describeSourceConformance<C, F = undefined>(
  definition: SourceConnector<any, C, any>, // eslint-disable-line @typescript-eslint/no-explicit-any
  options: InferFixture<SourceConformanceOptions<Partial<C>, F>, F>,
): void {
  describe(`source ${definition.name}: conformance`, () => {
    describeStatic(definition);

    it('a graceful restart mid-stream resumes from the committed offset: every record arrives, at most one batch twice', async () => {
      // Guarantee: a source stopped mid-stream and started again on the same log loses no record and repeats at most one batch.
      await withScope(definition, options, async (scope) => {
        const config = options.configFor(scope.ctx);
        const expected = options.expected(scope.ctx, config);
        const total = typeof expected === 'number' ? expected : expected.length;
        const bucket = randomUUID();
        scope.onDispose(() => dropBucket(bucket));
        const registry = defineRegistry([definition, collector]);
        const spec = sourceSpec(definition, config, bucket, registry);
        const ids = (): string[] => collected(bucket).map(options.recordId);
        const progress = (): string => `${new Set(ids()).size} of ${total} distinct records collected`;

        const first = await scope.start(spec, registry);
        await options.feed?.(scope.ctx, 1);
        await scope.until('a fifth of the records to arrive', first, () => new Set(ids()).size >= Math.max(1, Math.floor(total / 5)), progress);
        expectNoFailure(first.runtime);
        await first.stop();
        const atStop = new Set(ids()).size;
        expect(atStop, 'the first run must still be streaming when it is stopped; make configFor slower').toBeLessThan(total);

        const second = await scope.start(spec, registry);
        await options.feed?.(scope.ctx, 2);
        await scope.until('every record to arrive after the restart', second, () => new Set(ids()).size >= total, progress);
        // Late duplicates would show up now.
        await sleep(300);
        expectNoFailure(second.runtime);
        await second.stop();

        const all = ids();
        const distinct = new Set(all);
        if (typeof expected === 'number') {
          expect(distinct.size, 'distinct records').toBe(total);
        } else {
          expect([...distinct].sort()).toEqual([...expected].sort());
        }
        expect(all.length - distinct.size, `duplicates after a restart at ${atStop} of ${total}`).toBeLessThanOrEqual(options.maxDuplicates);
      });
    });

    it('stop settles within the shutdown timeout while data flows, and stops every task cleanly', async () => {
      // Guarantee: Runtime.stop() beats the shutdown timeout mid-stream, calls each task's stop() once with nothing in flight, and leaves no handle open.
      await withScope(definition, options, async (scope) => {
        const config = options.configFor(scope.ctx);
        const expected = options.expected(scope.ctx, config);
        const total = typeof expected === 'number' ? expected : expected.length;
        const bucket = randomUUID();
        scope.onDispose(() => dropBucket(bucket));
        const lifecycle = newLifecycle();
        const registry = defineRegistry([instrument(definition, lifecycle), collector]);
        const spec = sourceSpec(definition, config, bucket, registry);
        const handles = trackHandles();
        scope.onDispose(() => handles.dispose());

        const run = await scope.start(spec, registry);
        await options.feed?.(scope.ctx, 1);
        await scope.until('records to flow', run, () => collected(bucket).length > 0, () => 'nothing collected yet');
        expectNoFailure(run.runtime);
        expect(new Set(collected(bucket).map(options.recordId)).size, 'the stream must still be flowing when stopped; make configFor slower').toBeLessThan(total);
        const elapsed = await run.stop();

        expect(elapsed, 'Runtime.stop() took as long as the shutdown timeout: a task did not stop in time').toBeLessThan(scope.shutdownTimeoutMs);
        expectCleanLifecycle(lifecycle, run.runtime);
        await handles.expectNoneLeft();
      });
    });
  });
}

/**
 * Registers the conformance checks of a sink connector as a vitest `describe` block. Call it from
 * `connectors/<name>/conformance.test.ts`.
 */
export function describeSinkConformance<C, F = undefined>(
  definition: SinkConnector<any, C, any>, // eslint-disable-line @typescript-eslint/no-explicit-any
  options: InferFixture<SinkConformanceOptions<Partial<C>, F>, F>,
): void {
  describe(`sink ${definition.name}: conformance`, () => {
    describeStatic(definition);

    it('a graceful restart mid-stream resumes from the committed offset: every record arrives, at most one batch twice', async () => {
      // Guarantee: a sink stopped mid-stream and started again on the same log delivers every record to its target and repeats at most one batch.
      await withScope(definition, options, async (scope) => {
        const total = options.records ?? 1000;
        const batch = options.batch ?? 10;
        const config = options.configFor(scope.ctx);
        const registry = defineRegistry([feeder, definition]);
        const spec = sinkSpec(definition, config, { count: total, batch, interval_ms: 10 });
        const received = async (): Promise<string[]> => feederIdsIn(await options.readBack(scope.ctx));
        let last: string[] = [];
        const progress = (): string => `${new Set(last).size} of ${total} distinct records in the target`;

        const first = await scope.start(spec, registry);
        await scope.until('a fifth of the records to reach the target', first, async () => new Set((last = await received())).size >= total / 5, progress);
        expectNoFailure(first.runtime);
        await first.stop();
        const atStop = new Set(await received()).size;
        expect(atStop, 'the first run must still be streaming when it is stopped').toBeLessThan(total);

        const second = await scope.start(spec, registry);
        await scope.until('every record to reach the target after the restart', second, async () => new Set((last = await received())).size >= total, progress);
        await sleep(300);
        expectNoFailure(second.runtime);
        await second.stop();

        const all = await received();
        const distinct = new Set(all);
        expect([...distinct].sort()).toEqual(Array.from({ length: total }, (_, n) => feederId(n)));
        expect(all.length - distinct.size, `duplicates after a restart at ${atStop} of ${total}`).toBeLessThanOrEqual(options.maxDuplicates ?? batch);
      });
    });

    it('stop settles within the shutdown timeout while data flows, and stops every task cleanly', async () => {
      // Guarantee: Runtime.stop() beats the shutdown timeout mid-stream, calls each task's stop() once with nothing in flight, and leaves no handle open.
      await withScope(definition, options, async (scope) => {
        const config = options.configFor(scope.ctx);
        const lifecycle = newLifecycle();
        const registry = defineRegistry([feeder, instrument(definition, lifecycle)]);
        const spec = sinkSpec(definition, config, { count: 1_000_000, batch: options.batch ?? 10, interval_ms: 10 });
        const handles = trackHandles();
        scope.onDispose(() => handles.dispose());

        const run = await scope.start(spec, registry);
        await scope.until('records to reach the target', run, async () => feederIdsIn(await options.readBack(scope.ctx)).length > 0, () => 'nothing received yet');
        expectNoFailure(run.runtime);
        const elapsed = await run.stop();

        expect(elapsed, 'Runtime.stop() took as long as the shutdown timeout: a task did not stop in time').toBeLessThan(scope.shutdownTimeoutMs);
        expectCleanLifecycle(lifecycle, run.runtime);
        await handles.expectNoneLeft();
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Checks 1 and 2: examples and docs, without running anything

function describeStatic(definition: AnyConnector): void {
  it('its examples validate against its schema and split into tasks, and it describes itself', () => {
    // Guarantee: every config the reference doc offers a user to copy passes the spec loader and yields tasks, and the connector has a description.
    expect(definition.description.trim(), 'description').not.toBe('');
    const examples = definition.examples ?? [];
    expect(examples.length, 'a connector ships at least one example config').toBeGreaterThan(0);
    const registry = suiteRegistry(definition);
    const entries = examples.map((example, i) => {
      const entry: Record<string, unknown> = { name: `example-${i}`, connector: definition.name, config: example.config };
      if (definition.kind === 'sink') entry.topics = [TOPIC];
      else if (!definition.producedTopics) entry.topic = TOPIC;
      return entry;
    });
    const text = toYaml({ name: PIPELINE, topics: [{ name: TOPIC }], [definition.kind === 'source' ? 'sources' : 'sinks']: entries }, { lineWidth: 0 });
    const { problems, specs } = validateSpecTexts([{ file: `${definition.name}-examples.yaml`, text }], { registry, env: placeholderEnv(text) });
    const titled = problems.map((p) => `${examples[Number(/^\/(?:sources|sinks)\/(\d+)/.exec(p.path)?.[1] ?? -1)]?.title ?? 'spec'}: ${formatProblem(p)}`);
    expect(titled).toEqual([]);
    const loaded = definition.kind === 'source' ? specs[0]!.spec.sources : specs[0]!.spec.sinks;
    loaded.forEach((entry, i) => {
      const config: unknown = entry.config;
      const taskConfigs: readonly unknown[] = definition.taskConfigs ? definition.taskConfigs(config, 1) : [config];
      expect(taskConfigs.length, `${examples[i]!.title}: task configs`).toBeGreaterThanOrEqual(1);
      for (const taskConfig of taskConfigs) {
        expect(JSON.parse(JSON.stringify(taskConfig)), `${examples[i]!.title}: task configs must be JSON`).toEqual(taskConfig);
        const task = definition.createTask(taskConfig);
        expect(typeof task.start).toBe('function');
        expect(typeof task.stop).toBe('function');
      }
    });
  });

  it('its reference doc renders from its schema, every setting is described, and the committed README is current', () => {
    // Guarantee: the docs cannot drift from the schema: the doc names every setting, each setting has a description, and README.md matches the generator.
    const doc = renderConnectorDoc(definition);
    expect(doc).toContain(`# ${definition.name}`);
    const properties = Object.keys((definition.configSchema as { properties?: object }).properties ?? {});
    for (const property of properties) expect(doc, `the doc names ${property}`).toContain(`\`${property}\``);
    expect(missingDescriptions(definition.configSchema), 'schema properties without a description').toEqual([]);
    // The project's connectors share a README by name; a connector outside the registry has its own.
    const sameName = [...projectRegistry.sources.values(), ...projectRegistry.sinks.values()].filter((c) => c.name === definition.name);
    const docs = defineRegistry(sameName.includes(definition) ? sameName : [definition]);
    expect(writeConnectorDocs(docs, ROOT, { check: true }).stale, 'stale reference docs: run npm run docs').toEqual([]);
  });
}

/** The connector with its counterparts, for validating specs that use it. */
function suiteRegistry(definition: AnyConnector): ConnectorRegistry {
  return defineRegistry(definition.kind === 'source' ? [definition, collector] : [feeder, definition]);
}

/** A value for every `${env:NAME}` the examples use, so they validate as they would with the variable set. */
function placeholderEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const match of text.matchAll(/\$\{env:([A-Za-z_][A-Za-z0-9_]*)/g)) env[match[1]!] = 'conformance-placeholder';
  return env;
}

// ---------------------------------------------------------------------------------------------
// Specs for the runs

function sourceSpec(definition: AnySourceConnector, config: unknown, bucket: string, registry: ConnectorRegistry): string {
  const source: Record<string, unknown> = { name: UNDER_TEST, connector: definition.name, config };
  let reads = [TOPIC];
  if (definition.producedTopics) {
    // producedTopics reads a validated config, so the loader fills the defaults in first.
    const [loaded] = load(toYaml({ name: PIPELINE, sources: [source] }), registry);
    reads = [...definition.producedTopics(loaded!.spec.sources[0]!.config)];
  } else {
    source.topic = TOPIC;
  }
  return toYaml(
    {
      name: PIPELINE,
      topics: definition.producedTopics ? [] : [{ name: TOPIC, partitions: 2 }],
      sources: [source],
      sinks: [{ name: COUNTERPART, connector: COLLECTOR, topics: reads, config: { bucket } }],
    },
    { lineWidth: 0 },
  );
}

function sinkSpec(definition: AnySinkConnector, config: unknown, feed: { count: number; batch: number; interval_ms: number }): string {
  return toYaml(
    {
      name: PIPELINE,
      topics: [{ name: TOPIC, partitions: 2 }],
      sources: [{ name: COUNTERPART, connector: FEEDER, topic: TOPIC, config: feed }],
      sinks: [{ name: UNDER_TEST, connector: definition.name, topics: [TOPIC], config }],
    },
    { lineWidth: 0 },
  );
}

function load(text: string, registry: ConnectorRegistry): LoadedSpec[] {
  const { problems, specs } = validateSpecTexts([{ file: 'conformance.yaml', text }], { registry, env: {} });
  if (problems.length > 0) throw new Error(`the conformance spec does not validate (check configFor):\n${problems.map(formatProblem).join('\n')}\n${text}`);
  return specs;
}

// ---------------------------------------------------------------------------------------------
// Runs: a runtime on an embedded log in the test's directory

interface Run {
  readonly runtime: Runtime;
  readonly log: Log;
  /** Stops the runtime, then closes the log; resolves with how long `runtime.stop()` took, in ms. Idempotent. */
  stop(): Promise<number>;
}

interface Scope<F> {
  readonly ctx: ConformanceContext<F>;
  readonly shutdownTimeoutMs: number;
  /** Opens the log (by default in `dir/log`) and starts a runtime on `specText`. */
  start(specText: string, registry: ConnectorRegistry): Promise<Run>;
  /** Polls `check` until it holds; on timeout fails with `progress()`, the connectors' states and the last warnings. */
  until(what: string, run: Run, check: () => boolean | Promise<boolean>, progress: () => string): Promise<void>;
  onDispose(fn: () => void | Promise<void>): void;
}

/** Runs `body` with a fresh directory, the connector's fixture and a recording logger, and cleans everything up afterwards. */
async function withScope<C, F>(definition: AnyConnector, options: CommonOptions<C, F>, body: (scope: Scope<F>) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-conformance-${definition.name}-`));
  const disposers: Array<() => void | Promise<void>> = [];
  const runs: Run[] = [];
  const lines: string[] = [];
  const logger = recordingLogger(lines, {});
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 5000;
  const deliverTimeoutMs = options.deliverTimeoutMs ?? 15_000;
  let ctx: ConformanceContext<F> | undefined;
  try {
    const fixture = options.setup ? await options.setup({ dir }) : (undefined as F);
    ctx = { dir, fixture };
    const scope: Scope<F> = {
      ctx,
      shutdownTimeoutMs,
      async start(specText, registry) {
        const specs = load(specText, registry);
        const log = options.openLog ? await options.openLog({ dir }) : await openLog(path.join(dir, 'log'), { maintenanceIntervalMs: 0 });
        let runtime: Runtime;
        try {
          runtime = await Runtime.start(specs, { log, registry, logger, statusIntervalMs: 0, shutdownTimeoutMs });
        } catch (err) {
          await log.close();
          throw err;
        }
        let stopping: Promise<number> | undefined;
        const run: Run = {
          runtime,
          log,
          stop: () =>
            (stopping ??= (async () => {
              const started = performance.now();
              try {
                await runtime.stop();
                return performance.now() - started;
              } finally {
                await log.close();
              }
            })()),
        };
        runs.push(run);
        return run;
      },
      async until(what, run, check, progress) {
        const deadline = Date.now() + deliverTimeoutMs;
        while (!(await check())) {
          if (Date.now() > deadline) {
            const states = run.runtime.names().map((name) => {
              const s = run.runtime.status(name);
              const error = s.error?.message ?? s.tasks.find((t) => t.error)?.error?.message;
              return `${name}: ${s.state}${error ? ` (${error})` : ''}`;
            });
            throw new Error(`timed out after ${deliverTimeoutMs}ms waiting for ${what}: ${progress()}; ${states.join(', ')}\n${lines.slice(-20).join('\n')}`);
          }
          await sleep(25);
        }
      },
      onDispose(fn) {
        disposers.push(fn);
      },
    };
    await body(scope);
  } finally {
    for (const run of runs.reverse()) await run.stop().catch(() => undefined);
    if (ctx && options.teardown) await options.teardown(ctx);
    for (const fn of disposers.reverse()) await fn();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A logger that keeps warnings and errors as text lines, for failure messages. */
function recordingLogger(lines: string[], bindings: Record<string, unknown>): Logger {
  const noop = (): void => {};
  const keep =
    (level: string) =>
    (fields: object | string, message?: string): void => {
      const text = typeof fields === 'string' ? fields : (message ?? '');
      const where = ['connector', 'task'].map((k) => bindings[k]).filter((v) => v !== undefined).join('/');
      const err = typeof fields === 'object' && fields !== null && 'err' in fields ? ` [${String((fields as { err: unknown }).err)}]` : '';
      lines.push(`${level} ${where}: ${text}${err}`);
      if (lines.length > 200) lines.shift();
    };
  return {
    trace: noop,
    debug: noop,
    info: noop,
    warn: keep('warn'),
    error: keep('error'),
    child: (more) => recordingLogger(lines, { ...bindings, ...more }),
  };
}

function expectNoFailure(runtime: Runtime): void {
  for (const name of runtime.names()) {
    const s = runtime.status(name);
    const error = s.error?.message ?? s.tasks.find((t) => t.error)?.error?.message;
    expect(s.state, `${name}${error ? `: ${error}` : ''}`).toBe('RUNNING');
  }
}

// ---------------------------------------------------------------------------------------------
// Check 4: the task lifecycle and handles

interface Lifecycle {
  tasks: number;
  /** stop() calls, and those that resolved. */
  stops: number;
  stopsSettled: number;
  /** Calls in flight when stop() was called, by method name. */
  inFlightAtStop: string[];
  /** Calls made after stop(), by method name. */
  callsAfterStop: string[];
  stopErrors: unknown[];
}

function newLifecycle(): Lifecycle {
  return { tasks: 0, stops: 0, stopsSettled: 0, inFlightAtStop: [], callsAfterStop: [], stopErrors: [] };
}

const TASK_METHODS = ['start', 'poll', 'commit', 'reject', 'open', 'committedOffsets', 'put', 'preCommit', 'close'] as const;

/** The definition with every task it creates wrapped to record its lifecycle; everything else is inherited. */
function instrument<D extends AnyConnector>(definition: D, lifecycle: Lifecycle): D {
  const wrapped = Object.create(definition) as D;
  Object.defineProperty(wrapped, 'createTask', {
    value: (config: unknown) => watch(definition.createTask(config), lifecycle),
  });
  return wrapped;
}

function watch<T extends SourceTask | SinkTask>(task: T, lifecycle: Lifecycle): T {
  lifecycle.tasks++;
  const inFlight = new Map<symbol, string>();
  let stopped = false;
  const wrapper: Record<string, unknown> = {};
  const methods = task as unknown as Record<string, unknown>;
  for (const method of TASK_METHODS) {
    const fn = methods[method];
    if (typeof fn !== 'function') continue;
    wrapper[method] = async (...args: unknown[]): Promise<unknown> => {
      if (stopped) lifecycle.callsAfterStop.push(method);
      const call = Symbol(method);
      inFlight.set(call, method);
      try {
        return await (fn as (...a: unknown[]) => Promise<unknown>).apply(task, args);
      } finally {
        inFlight.delete(call);
      }
    };
  }
  wrapper.stop = async (): Promise<void> => {
    lifecycle.stops++;
    lifecycle.inFlightAtStop.push(...inFlight.values());
    stopped = true;
    try {
      await task.stop();
      lifecycle.stopsSettled++;
    } catch (err) {
      lifecycle.stopErrors.push(err);
      throw err;
    }
  };
  return wrapper as unknown as T;
}

function expectCleanLifecycle(lifecycle: Lifecycle, runtime: Runtime): void {
  expect(lifecycle.tasks, 'tasks created').toBeGreaterThan(0);
  expect(lifecycle.stops, 'stop() calls: once per task').toBe(lifecycle.tasks);
  expect(lifecycle.stopErrors, 'stop() errors').toEqual([]);
  expect(lifecycle.stopsSettled, 'stop() calls that settled').toBe(lifecycle.tasks);
  expect(lifecycle.inFlightAtStop, 'calls in flight when stop() was called').toEqual([]);
  expect(lifecycle.callsAfterStop, 'calls after stop()').toEqual([]);
  const s = runtime.status(UNDER_TEST);
  const error = s.tasks.find((t) => t.error)?.error?.message;
  expect(
    s.tasks.map((t) => t.state),
    `task states after a graceful stop${error ? ` (${error})` : ''}`,
  ).toEqual(s.tasks.map(() => 'STOPPED'));
}

// Resources that keep the process alive and that a task could leave behind: timers, sockets,
// servers, child processes, watchers. FileHandles are not async resources of their own; files are
// each connector's own tests' business.
const TRACKED_RESOURCES = new Set(['Timeout', 'TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'PIPESERVERWRAP', 'UDPWRAP', 'PROCESSWRAP', 'FSEVENTWRAP', 'STATWATCHER', 'SIGNALWRAP']);

interface HandleTracker {
  /** Waits up to a second for every tracked resource created since `trackHandles()` to be gone or unref'd, then fails naming the rest. */
  expectNoneLeft(): Promise<void>;
  dispose(): void;
}

/** Starts recording the tracked resources created from now on, with where they were created. */
function trackHandles(): HandleTracker {
  const live = new Map<number, { type: string; resource: object; stack: string }>();
  // The check's own waits are not the run's.
  let checking = false;
  const hook = createHook({
    init(id, type, _trigger, resource) {
      if (checking || !TRACKED_RESOURCES.has(type)) return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 20;
      live.set(id, { type, resource, stack: new Error().stack ?? '' });
      Error.stackTraceLimit = limit;
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  const left = (): string[] =>
    [...live.values()]
      .filter(({ resource }) => {
        const hasRef = (resource as { hasRef?: () => boolean }).hasRef;
        return typeof hasRef !== 'function' || hasRef.call(resource);
      })
      .map(({ type, stack }) => `${type} created ${stack.split('\n').slice(2).filter((line) => !line.includes('node:') && !line.includes('suite.ts')).slice(0, 3).map((line) => line.trim()).join(' ← ')}`);
  return {
    async expectNoneLeft() {
      checking = true;
      const deadline = Date.now() + 1000;
      while (left().length > 0 && Date.now() < deadline) await sleep(20);
      expect(left(), 'timers, sockets or watchers still keeping the process alive after the runtime stopped and the log closed').toEqual([]);
    },
    dispose() {
      hook.disable();
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

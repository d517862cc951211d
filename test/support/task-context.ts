/**
 * Task contexts made of real objects, for driving a connector's task without the runtime: a logger
 * that keeps its lines, metrics that refuse undeclared names as the runtime's do and record what
 * they are given, and either a fixed assignment (sinks) or committed offsets given by the test
 * (sources).
 */
import { isDeepStrictEqual } from 'node:util';
import type {
  Logger,
  MetricLabels,
  MetricSpec,
  SinkTaskContext,
  SourceOffsetEntry,
  SourceTaskContext,
  TaskMetrics,
  TopicPartition,
  TopicPartitionOffset,
} from '../../core/connector.ts';

/** One line the test logger received. */
export interface LogLine {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  message: string | undefined;
}

/** The metric names a connector declares, as in its `metrics` field; absent means none. */
export type DeclaredMetrics = Readonly<Record<string, MetricSpec>> | undefined;

/** What the task reported through a test context, shared by sink and source contexts. */
export interface TestReports {
  lines: LogLine[];
  /** Counter sums by `name` and, for labelled counts, also by `name{label=value,...}`. */
  counters: Map<string, number>;
  /** The last value set for each gauge. */
  gauges: Map<string, number>;
  /** Aborting it aborts the context's signal, as a shutdown does. */
  controller: AbortController;
}

/** What {@link sinkContext} returns: the context and what the task reported through it. */
export interface TestSinkContext extends TestReports {
  ctx: SinkTaskContext;
}

/** What {@link sourceContext} returns: the context and what the task reported through it. */
export interface TestSourceContext extends TestReports {
  ctx: SourceTaskContext;
}

/** Names the context reports under; each defaults to something a test need not care about. */
export interface ContextNames {
  pipeline?: string;
  connector?: string;
}

/** Builds a sink context owning `assignment`, whose metrics accept only `declared` names. */
export function sinkContext(declared: DeclaredMetrics, options: ContextNames & { assignment?: readonly TopicPartition[] } = {}): TestSinkContext {
  const reports = newReports();
  const assignment = options.assignment ?? [];
  const ctx: SinkTaskContext = {
    ...taskContextBase(declared, options, 'sink', reports),
    assignment: () => assignment,
    // Every owned partition starts at 0, so a task that seeks from group offsets starts at the beginning.
    groupOffsets: (): readonly TopicPartitionOffset[] => assignment.map((tp) => ({ ...tp, offset: 0n })),
  };
  return { ctx, ...reports };
}

/** Builds a source context whose committed offsets are `committed`, whose metrics accept only `declared` names. */
export function sourceContext(declared: DeclaredMetrics, options: ContextNames & { committed?: readonly SourceOffsetEntry[] } = {}): TestSourceContext {
  const reports = newReports();
  const committed = options.committed ?? [];
  const ctx: SourceTaskContext = {
    ...taskContextBase(declared, options, 'source', reports),
    committedOffsets: committed,
    // Source partitions are plain objects the runtime compares by value, not identity.
    committedOffset: (partition) => committed.find((e) => isDeepStrictEqual(e.sourcePartition, partition))?.sourceOffset,
  };
  return { ctx, ...reports };
}

/** A logger that appends each call to `lines`, with the bindings of `child` loggers merged into its fields. */
export function collectingLogger(lines: LogLine[], bindings: Record<string, unknown> = {}): Logger {
  const method =
    (level: LogLine['level']) =>
    (fieldsOrMessage: object | string, message?: string): void => {
      if (typeof fieldsOrMessage === 'string') lines.push({ level, fields: { ...bindings }, message: fieldsOrMessage });
      else lines.push({ level, fields: { ...bindings, ...fieldsOrMessage }, message });
    };
  return {
    trace: method('trace'),
    debug: method('debug'),
    info: method('info'),
    warn: method('warn'),
    error: method('error'),
    child: (more) => collectingLogger(lines, { ...bindings, ...more }),
  };
}

// The part of a task context that sinks and sources share, wired to `reports`.
function taskContextBase(declared: DeclaredMetrics, names: ContextNames, connector: string, reports: TestReports) {
  return {
    pipeline: names.pipeline ?? 'test',
    connector: names.connector ?? connector,
    task: 0,
    signal: reports.controller.signal,
    logger: collectingLogger(reports.lines),
    metrics: checkedMetrics(declared ?? {}, reports),
  };
}

function newReports(): TestReports {
  return { lines: [], counters: new Map(), gauges: new Map(), controller: new AbortController() };
}

// The runtime refuses a metric the connector did not declare; a test context that accepted it would
// let a typo in a metric name pass every test and fail only in production.
function checkedMetrics(declared: Readonly<Record<string, MetricSpec>>, reports: TestReports): TaskMetrics {
  const check = (name: string): void => {
    if (!(name in declared)) throw new Error(`metric ${name} is not declared`);
  };
  return {
    count(name: string, value = 1, labels?: MetricLabels) {
      check(name);
      reports.counters.set(name, (reports.counters.get(name) ?? 0) + value);
      if (labels) {
        const key = `${name}{${Object.entries(labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',')}}`;
        reports.counters.set(key, (reports.counters.get(key) ?? 0) + value);
      }
    },
    gauge(name: string, value: number) {
      check(name);
      reports.gauges.set(name, value);
    },
    observe(name: string) {
      check(name);
    },
  };
}

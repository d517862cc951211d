/**
 * The datagen source: synthetic clickstream or order events at a rate or up to a count,
 * deterministic from a seed. It serves the quickstart, tests and benchmarks.
 */
import { defineSource } from '../../core/connector.ts';
import { datagenSchema, type DatagenConfig, type DatagenTaskConfig } from './schema.ts';
import { compareOffsets, DatagenTask, parseStartTime } from './task.ts';

export { datagenSchema, type DatagenConfig, type DatagenTaskConfig } from './schema.ts';
export { DatagenTask, GENERATOR, IDLE_POLL_MS, sourcePartitionOf } from './task.ts';
export { eventTime, generateEvent, type GeneratedEvent, type GeneratorOptions, type Preset } from './presets.ts';

// Examples are written as a user writes them, without the defaulted settings; the API types them as
// the validated config (defaults required), hence the assertion below, from a checked partial config.
const examples: ReadonlyArray<{ title: string; config: Partial<DatagenConfig> }> = [
  { title: 'A steady clickstream (the quickstart)', config: { preset: 'clickstream', rate: 200, seed: 42 } },
  { title: 'A fixed set of orders, then idle', config: { preset: 'orders', count: 100000, rate: 1000, seed: 7 } },
  { title: 'As fast as possible, for benchmarks', config: { preset: 'clickstream', rate: 0, batch_size: 5000 } },
];

/** The datagen source connector definition. */
export const datagen = defineSource({
  kind: 'source',
  name: 'datagen',
  description:
    'Generates synthetic events: a clickstream (page views, clicks, searches, purchases keyed by user) or e-commerce orders (keyed by customer). ' +
    'Events come at a steady rate or as fast as possible, optionally up to a count, and are deterministic from a seed: the same seed gives byte-identical ' +
    'record values, and a restart regenerates exactly the events after the committed offset. With several tasks, task k of n generates events k, k+n, k+2n..., ' +
    'each at rate/n per second, so the union of their output is the same as one task would produce.',
  configSchema: datagenSchema,
  examples: examples as ReadonlyArray<{ title: string; config: DatagenConfig }>,
  metrics: {
    remaining_events: { type: 'gauge', help: 'Events this task has left to generate before count is reached; only reported when count is set.' },
  },
  /**
   * Task k of n generates indexes k, k+n, k+2n... (a stride rather than contiguous ranges, so an
   * unbounded stream splits too, and the tasks' event times interleave as one task's would). With
   * `count` there are never more tasks than events.
   */
  taskConfigs(config: DatagenConfig, maxTasks: number): DatagenTaskConfig[] {
    parseStartTime(config.start_time);
    const tasks = Math.max(1, Math.min(maxTasks, config.count ?? maxTasks));
    return Array.from({ length: tasks }, (_, task) => ({ ...config, task, tasks }));
  },
  compareOffsets,
  createTask: (config: DatagenTaskConfig) => new DatagenTask(config),
});

/**
 * The datagen config schema: the one source of truth for the config's validation, its TypeScript
 * type ({@link DatagenConfig}) and the generated README.
 */
import type { ConfigOf } from '../../core/connector.ts';

/** An ISO 8601 timestamp with a time zone, e.g. `2025-01-01T00:00:00Z`; ajv has no `format` without ajv-formats. */
export const START_TIME_PATTERN = '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,3})?(Z|[+-][0-9]{2}:[0-9]{2})$';

export const datagenSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    preset: {
      type: 'string',
      enum: ['clickstream', 'orders'],
      default: 'clickstream',
      description:
        'What to generate. clickstream: page views, clicks, searches and purchases (user_id, session_id, url, referrer, user_agent, event, ts, seq), keyed by user_id. orders: e-commerce orders (order_id, customer_id, items, total, currency, status, ts, seq), keyed by customer_id.',
    },
    rate: {
      type: 'integer',
      minimum: 0,
      default: 0,
      description:
        'Events per second for the whole connector, shared evenly by its tasks. 0 generates as fast as the pipeline takes them, for benchmarks. The pace follows the wall clock; after a pause at most one second of backlog is caught up.',
      examples: [200],
    },
    count: {
      type: 'integer',
      minimum: 1,
      description:
        'Stop after this many events in total, across tasks. The connector then stays RUNNING and idle, polling nothing, so a pipeline with sinks keeps draining. Unset: generate forever.',
      examples: [100000],
    },
    seed: {
      type: 'integer',
      default: 0,
      description:
        'Seed of the generator. Event number i is a pure function of seed, preset and i, so the same seed gives byte-identical values on every run, whatever the task count, and a restart regenerates exactly the events after the committed offset.',
      examples: [42],
    },
    start_time: {
      type: 'string',
      pattern: START_TIME_PATTERN,
      default: '2025-01-01T00:00:00Z',
      description:
        'Event time (ts) of event 0. Event i is stamped start_time + i / rate seconds (1 ms apart when rate is 0), never the wall clock, so the output stays deterministic. The log records still get the time of their append.',
    },
    batch_size: {
      type: 'integer',
      minimum: 1,
      maximum: 100000,
      default: 1000,
      description: 'The most events one poll returns.',
    },
  },
} as const;

/** A validated datagen config, defaults filled in. */
export type DatagenConfig = ConfigOf<typeof datagenSchema>;

/** One task's share of the work: the config, its index and the task count (task k generates events k, k+tasks, k+2·tasks...). */
export type DatagenTaskConfig = DatagenConfig & { readonly task: number; readonly tasks: number };

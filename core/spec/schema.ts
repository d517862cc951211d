/**
 * The JSON Schema of a pipeline spec. `SPEC_SCHEMA` is the fixed shape without connector configs,
 * and the TypeScript types of a loaded spec derive from it. `composeSpecSchema(registry)` adds
 * every registered connector's config schema, selected by the entry's `connector` with `if`/`then`,
 * which gives the schema that validation runs and that `sluice schema` prints for editors.
 */
import type { FromSchema } from 'json-schema-to-ts';
import type { ConnectorRegistry } from '../connector.ts';
import { TRANSFORM_SCHEMA } from '../transforms/schema.ts';
import { DURATION_PATTERN, SIZE_PATTERN, durationSchema, sizeSchema } from './units.ts';

/** Pipeline and connector names become parts of topic and group names (`__dlq.<pipeline>.<connector>`). */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]*$';
/** The log's rule for topic names. */
export const TOPIC_NAME_PATTERN = '^[A-Za-z0-9._-]{1,249}$';
/** A topic name that may hold `{placeholder}`s; `topic-template.ts` checks the braces. */
export const TOPIC_TEMPLATE_PATTERN = '^[A-Za-z0-9._{}-]{1,249}$';
export const RETENTION_TIME_PATTERN = '^(none|([0-9]+(\\.[0-9]+)?(ms|s|m|h|d|w))+)$';
export const RETENTION_SIZE_PATTERN = '^(none|[0-9]+(\\.[0-9]+)?(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?)$';

/** Messages for pattern failures, which ajv would report as the bare regular expression. */
export const PATTERN_MESSAGES: Readonly<Record<string, string>> = {
  [NAME_PATTERN]: "must be letters, digits, '-' and '_', starting with a letter or digit",
  [TOPIC_NAME_PATTERN]: 'must be 1-249 characters of A-Z a-z 0-9 . _ -',
  [TOPIC_TEMPLATE_PATTERN]: 'must be a topic name of A-Z a-z 0-9 . _ -, with {placeholders} for a template',
  [DURATION_PATTERN]: 'must be a duration such as 500ms, 30s, 5m or 7d',
  [SIZE_PATTERN]: 'must be a size such as 512, 64KiB or 10GiB',
  [RETENTION_TIME_PATTERN]: 'must be a duration such as 12h or 7d, or none',
  [RETENTION_SIZE_PATTERN]: 'must be a size such as 512MiB or 10GiB, or none',
};

const nameSchema = { type: 'string', pattern: NAME_PATTERN, maxLength: 100 } as const;

const topicSchema = {
  type: 'object',
  description: 'A topic to create, or to check, before the connectors start. A topic used but not declared is created with the defaults.',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: TOPIC_NAME_PATTERN, description: 'The topic name.' },
    partitions: { type: 'integer', minimum: 1, description: 'Number of partitions. Default 1.' },
    retention: {
      type: 'object',
      description: 'Whole segments are deleted past either limit.',
      additionalProperties: false,
      properties: {
        time: { type: 'string', pattern: RETENTION_TIME_PATTERN, description: 'Keep records this long, e.g. 7d; none keeps them forever. Default 7d.' },
        bytes: {
          type: ['integer', 'string'],
          minimum: 0,
          pattern: RETENTION_SIZE_PATTERN,
          description: 'Keep at most this much per partition, e.g. 10GiB; none for no limit. Default none.',
        },
      },
    },
    cleanup: {
      type: 'string',
      enum: ['delete', 'compact'],
      description: 'delete drops old segments; compact keeps the latest record per key. Default delete.',
    },
    fsync: {
      type: 'string',
      enum: ['always', 'interval', 'never'],
      description: 'When an append counts as durable: after fsync (always), after the OS write with a periodic fsync (interval), or after the OS write (never). Default always.',
    },
    fsync_interval: { ...durationSchema, description: 'With fsync: interval, how often to fsync.' },
    segment_bytes: { ...sizeSchema, description: 'A segment rolls past this size.' },
    segment_time: { ...durationSchema, description: 'A segment rolls when its first record is this old.' },
    tombstone_retention: { ...durationSchema, description: 'Compacted topics: how long a delete stays visible to consumers.' },
  },
} as const;

const errorsSchema = {
  type: 'object',
  description: 'What happens when a record or a call fails.',
  additionalProperties: false,
  default: {},
  properties: {
    retry_timeout: { ...durationSchema, default: '5m', description: 'How long to retry a retriable failure before treating it as fatal.' },
    retry_backoff_max: { ...durationSchema, default: '30s', description: 'The longest wait between two retries; waits grow exponentially, with jitter.' },
    tolerance: {
      type: 'string',
      enum: ['none', 'all'],
      default: 'none',
      description: 'none: a failing record puts the connector into FAILED. all: failing records are set aside (see dlq) and the rest continue.',
    },
    dlq: {
      type: 'boolean',
      default: true,
      description: 'With tolerance: all, send failing records to the topic __dlq.<pipeline>.<connector>, with the error in headers. When false they are logged and dropped.',
    },
  },
} as const;

const transformsSchema = {
  type: 'array',
  description: 'Transforms applied in order to every record.',
  default: [],
  items: {
    type: 'object',
    required: ['type'],
    properties: { type: { type: 'string', description: 'The transform, e.g. filter, set, drop_fields, route.' } },
  },
} as const;

const tasksSchema = {
  type: 'integer',
  minimum: 1,
  default: 1,
  description: 'The most tasks the connector may split its work into.',
} as const;

const configSchema = {
  type: 'object',
  default: {},
  description: "The connector's settings, validated against its own schema.",
} as const;

const sourceSchema = {
  type: 'object',
  description: 'A source connector: reads from outside and appends to a topic.',
  required: ['name', 'connector'],
  additionalProperties: false,
  properties: {
    name: { ...nameSchema, description: 'Unique among the connectors of the pipeline; shown in status, metrics and logs.' },
    connector: { type: 'string', description: 'The source connector type.' },
    topic: {
      type: 'string',
      pattern: TOPIC_TEMPLATE_PATTERN,
      description: 'The topic to append to. May be a template such as cdc.{schema}.{table}, filled from record metadata.',
    },
    config: configSchema,
    transforms: transformsSchema,
    errors: errorsSchema,
    tasks: tasksSchema,
  },
} as const;

const sinkSchema = {
  type: 'object',
  description: 'A sink connector: reads topics as a consumer group and writes outside.',
  required: ['name', 'connector', 'topics'],
  additionalProperties: false,
  properties: {
    name: { ...nameSchema, description: 'Unique among the connectors of the pipeline; shown in status, metrics and logs.' },
    connector: { type: 'string', description: 'The sink connector type.' },
    topics: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { type: 'string', pattern: TOPIC_NAME_PATTERN },
      description: 'The topics to read.',
    },
    batch_max_bytes: {
      ...sizeSchema,
      default: '1MiB',
      description:
        'The most bytes of record keys and values one put receives, summed over partitions (a stored batch is never split, so one put may exceed it by a batch per partition). A crash repeats at most one put for sinks without exactly-once.',
    },
    config: configSchema,
    transforms: transformsSchema,
    errors: errorsSchema,
    tasks: tasksSchema,
  },
} as const;

const logSchema = {
  type: 'object',
  description: 'Where topics live. The embedded log keeps them in the data directory.',
  additionalProperties: false,
  default: {},
  properties: {
    backend: { type: 'string', enum: ['embedded', 'jetstream'], default: 'embedded', description: 'The log backend.' },
    servers: {
      type: 'array',
      minItems: 1,
      items: { type: 'string' },
      description: 'jetstream: NATS server URLs, e.g. nats://127.0.0.1:4222.',
    },
    replicas: { type: 'integer', minimum: 1, maximum: 5, description: 'jetstream: replicas per stream.' },
  },
  if: { type: 'object', properties: { backend: { const: 'jetstream' } }, required: ['backend'] },
  then: { required: ['servers'] },
} as const;

/** The fixed shape of a pipeline spec; connector configs are plain objects here. */
export const SPEC_SCHEMA = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { ...nameSchema, description: 'The pipeline name; part of consumer group and DLQ topic names.' },
    description: { type: 'string', description: 'What the pipeline is for.' },
    log: logSchema,
    topics: { type: 'array', items: topicSchema, default: [], description: 'Topics and their settings.' },
    sources: { type: 'array', items: sourceSchema, default: [], description: 'Source connectors.' },
    sinks: { type: 'array', items: sinkSchema, default: [], description: 'Sink connectors.' },
  },
} as const;

/** A validated pipeline spec with defaults filled in. */
export type PipelineSpec = FromSchema<typeof SPEC_SCHEMA>;
export type TopicSpec = PipelineSpec['topics'][number];
export type SourceSpec = PipelineSpec['sources'][number];
export type SinkSpec = PipelineSpec['sinks'][number];
export type ErrorsSpec = SourceSpec['errors'];
export type LogSpec = PipelineSpec['log'];

/** A JSON Schema document, as composed at run time. */
export type JsonSchemaObject = { [key: string]: unknown };

/**
 * The whole-spec schema for a registry: {@link SPEC_SCHEMA}, with `connector` limited to the known
 * names and, for each connector, an `if`/`then` that validates `config` against its schema. A
 * source whose connector does not declare `producedTopics` must name its `topic`. Printed by
 * `sluice schema` for yaml-language-server; draft-07, which editors support best.
 *
 * With `forEditors`, transform entries carry the full transform schema, for completion. Validation
 * leaves it out and checks each entry against its own type's schema instead, because a `oneOf`
 * over ten transform types reports a dozen errors for one mistake.
 */
export function composeSpecSchema(registry: ConnectorRegistry, options: { forEditors?: boolean } = {}): JsonSchemaObject {
  const sources = [...registry.sources.values()];
  const sinks = [...registry.sinks.values()];
  const withTransforms = <T extends { properties: { transforms: object } }>(entry: T): T =>
    options.forEditors ? { ...entry, properties: { ...entry.properties, transforms: { ...entry.properties.transforms, items: TRANSFORM_SCHEMA } } } : entry;
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'sluice pipeline spec',
    ...SPEC_SCHEMA,
    properties: {
      ...SPEC_SCHEMA.properties,
      sources: {
        ...SPEC_SCHEMA.properties.sources,
        items: composeEntry(
          withTransforms(SPEC_SCHEMA.properties.sources.items),
          sources.map((c) => ({
            name: c.name,
            description: c.description,
            configSchema: c.configSchema,
            required: c.producedTopics ? [] : ['topic'],
          })),
        ),
      },
      sinks: {
        ...SPEC_SCHEMA.properties.sinks,
        items: composeEntry(
          withTransforms(SPEC_SCHEMA.properties.sinks.items),
          sinks.map((c) => ({ name: c.name, description: c.description, configSchema: c.configSchema, required: [] })),
        ),
      },
    },
  };
}

interface EntryPart {
  name: string;
  description: string;
  configSchema: object;
  required: string[];
}

function composeEntry(base: typeof sourceSchema | typeof sinkSchema, connectors: EntryPart[]): JsonSchemaObject {
  const names = connectors.map((c) => c.name);
  const rules = connectors.map((c) => ({
    if: { type: 'object', properties: { connector: { const: c.name } }, required: ['connector'] },
    then: {
      ...(c.required.length > 0 ? { required: c.required } : {}),
      // The default is repeated here because ajv runs allOf before properties: without it a
      // missing config would meet the connector's schema as undefined and skip its defaults.
      properties: { config: { title: `${c.name} config`, description: c.description, default: {}, ...c.configSchema } },
    },
  }));
  return {
    ...base,
    properties: {
      ...base.properties,
      // ajv rejects an empty enum, and an empty registry simply has no valid connector.
      connector: names.length > 0 ? { ...base.properties.connector, enum: names } : base.properties.connector,
    },
    // ajv rejects an empty allOf too: a registry without sinks (or sources) has no rules to add.
    ...(rules.length > 0 ? { allOf: rules } : {}),
  };
}

/**
 * The settings the `postgres` and `mysql` sinks share: mode, table mapping, auto-create, schema
 * evolution, batching and the offsets table. Each connector's `schema.ts` spreads these into its
 * own `as const` schema next to its connection settings, so the generated README of each shows
 * them, with the type mapping of that target.
 */
import { durationSchema, type ConfigOf } from '../../core/connector.ts';

/** The placeholders a `table` template may hold. */
export const TABLE_PLACEHOLDERS = ['topic', 'db', 'schema', 'table'] as const;
export type TablePlaceholder = (typeof TABLE_PLACEHOLDERS)[number];

/** A table template: any text, with `{...}` only around a known placeholder. */
export const TABLE_TEMPLATE_PATTERN = `^(?:[^{}]|\\{(?:${TABLE_PLACEHOLDERS.join('|')})\\})+$`;

export const MODES = ['insert', 'upsert', 'cdc'] as const;
export type SqlSinkMode = (typeof MODES)[number];

/** The settings every SQL sink has, to spread into a connector schema's `properties`. */
export const sqlSinkProperties = {
  mode: {
    type: 'string',
    enum: MODES,
    description:
      'How records become rows. insert: every record value (a JSON object) is inserted as a new row, for append-only tables. ' +
      'upsert: the value is inserted, or updates the row with the same key; the key columns come from key_columns, else from the ' +
      'fields of the record key (a JSON object), and a tombstone (null value) deletes the row. cdc: the values are change events ' +
      'from postgres-cdc ({op, before, after, source, ts_ms}, also accepted wrapped as {schema, payload}): r, c and u upsert, d ' +
      'deletes, t truncates the table, an update that changes the primary key deletes the old key (and the new row takes the ' +
      'old row\'s TOASTed values the update left unchanged), and a column carrying the unchanged-TOAST marker keeps the value ' +
      'the target already has. Truncates and primary-key changes relate rows of different keys, so they replay exactly when ' +
      'a table\'s changes share one partition (a one-partition topic, as the example pipelines use); changes to one key are ' +
      'always in order.',
  },
  table: {
    type: 'string',
    minLength: 1,
    pattern: TABLE_TEMPLATE_PATTERN,
    description:
      'The target table, as a template. {topic} is the record\'s topic; {db}, {schema} and {table} come from a change event\'s ' +
      'source block, so cdc mode can spread one topic over many tables. The result is always quoted as one identifier (it may ' +
      'hold dots or any other character, but not NUL) and must fit the database\'s identifier length, else the record is bad. ' +
      'Default: {table} in cdc mode, {topic} otherwise.',
    examples: ['{table}', '{schema}_{table}', 'events'],
  },
  key_columns: {
    type: 'array',
    minItems: 1,
    uniqueItems: true,
    items: { type: 'string', minLength: 1 },
    description:
      'upsert mode: the columns that identify a row, read from the record value (after renames apply, these are target names). ' +
      'Unset: the fields of the record key, which must then be a JSON object. The target table needs a primary key or a unique ' +
      'index on exactly these columns.',
  },
  columns: {
    type: 'object',
    default: {},
    additionalProperties: false,
    description:
      'Which source columns (or value fields) are written, and under what names. A name matches a column of every table, or ' +
      'one table when written table.column, with the source table name in cdc mode and the topic otherwise.',
    properties: {
      rename: {
        type: 'object',
        description: 'Source name (or table.column) to target column name, e.g. {customer_id: cust_id, orders.note: remarks}.',
        additionalProperties: { type: 'string', minLength: 1, description: 'The target column name.' },
      },
      include: {
        type: 'array',
        items: { type: 'string', minLength: 1 },
        description: 'Only these source columns are written (key columns always are). Unset: all of them.',
      },
      exclude: {
        type: 'array',
        items: { type: 'string', minLength: 1 },
        description: 'These source columns are never written. Excluding a key column is an error, reported when its table is first written.',
      },
    },
  },
  auto_create: {
    type: 'boolean',
    default: false,
    description:
      'Create a missing target table when its first record arrives. In cdc mode the columns, types, nullability and primary key ' +
      'come from the column schema the change events carry (see the type mapping in the description above); otherwise column ' +
      'types are inferred from the first value of each field. Off: a missing table fails the connector with an error naming it.',
  },
  schema_evolution: {
    type: 'string',
    enum: ['add_columns', 'fail'],
    default: 'add_columns',
    description:
      'What a column the target lacks does. add_columns: ALTER TABLE ... ADD COLUMN (nullable) before the batch is written. ' +
      'fail: the connector fails with an error naming the table and column. Either way a change the target cannot follow ' +
      '(a source column whose type now maps to an incompatible target type, e.g. integer to text in a numeric column) fails ' +
      'the connector with an error naming table, column and both types; nothing is written in the wrong type. Columns dropped ' +
      'at the source are left in place in the target.',
  },
  offsets_table: {
    type: 'string',
    minLength: 1,
    maxLength: 63,
    default: 'sluice_offsets',
    description:
      'The table in the target that stores, per pipeline, connector, topic and partition, the next offset to write. It is ' +
      'created if missing and updated in the same transaction as the rows, which is what makes delivery exactly-once: on start ' +
      'the sink resumes from it, and records at or below a stored offset are skipped when they are delivered again.',
  },
  batch_rows: {
    type: 'integer',
    minimum: 1,
    maximum: 10000,
    default: 1000,
    description: 'The most rows in one multi-row INSERT, upsert or DELETE statement. A batch larger than this takes several statements, in one transaction.',
  },
  connections: {
    type: 'integer',
    minimum: 1,
    maximum: 64,
    default: 4,
    description:
      'How many connections a task opens at most. Partitions of one batch are written in parallel, each in its own transaction ' +
      'with its own offset row, up to this many at once.',
  },
  connect_timeout: {
    ...durationSchema,
    default: '10s',
    description: 'How long connecting may take. A timeout is retried with backoff, as a lost connection is.',
  },
} as const;

/**
 * Rules between settings that both SQL sinks share, for their schemas' `allOf`: key_columns only in
 * upsert mode, and either url or host and database.
 */
export const sqlSinkRules = [
  {
    if: { type: 'object', properties: { mode: { not: { const: 'upsert' } } }, required: ['mode'] },
    then: { properties: { key_columns: false } },
  },
  {
    if: { type: 'object', required: ['url'] },
    then: { properties: { host: false, port: false, user: false, password: false, database: false } },
    else: { required: ['host', 'database'] },
  },
] as const;

/** The shared settings alone, as a schema, so their type derives from the same literals as the connectors'. */
const sqlSinkSettingsSchema = { type: 'object', additionalProperties: false, required: ['mode'], properties: sqlSinkProperties } as const;

/** The shared settings as the task sees them, defaults filled in. */
export type SqlSinkSettings = ConfigOf<typeof sqlSinkSettingsSchema>;

/** The table template a config uses: its own, else the mode's default. */
export function tableTemplateOf(settings: Pick<SqlSinkSettings, 'mode' | 'table'>): string {
  return settings.table ?? (settings.mode === 'cdc' ? '{table}' : '{topic}');
}

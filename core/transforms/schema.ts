/**
 * The JSON Schema of one entry of a connector's `transforms` list: the one source of truth for the
 * entry's TypeScript type ({@link TransformEntry}), its validation and its reference doc.
 *
 * Each transform type is one `oneOf` branch whose `type` is a `const`, so a validator (or an
 * editor) can pick the branch from `type` alone. Optional settings state their default in their
 * description and the steps apply it: Ajv in strict mode with `useDefaults` (as the spec loader
 * runs it) rejects `default` keywords inside `oneOf`, where it cannot apply them.
 */
import type { FromSchema } from 'json-schema-to-ts';

/** A dot path into the record value, e.g. `user.email`. Segments are object keys; arrays are not indexed. */
export const DOT_PATH_PATTERN = '^[^.]+(\\.[^.]+)*$';
/** A topic template: literal text and `{placeholder}`s with balanced braces. */
export const ROUTE_TEMPLATE_PATTERN = '^(?:[^{}]|\\{[^{}]+\\})+$';

const dotPath = {
  type: 'string',
  pattern: DOT_PATH_PATTERN,
  description: 'A dot path into the record value, e.g. user.email. Each segment is an object key; arrays are not indexed.',
} as const;

const expressionDescription =
  'A JSONata expression evaluated against the record value, with $key, $headers, $topic and $timestamp bound to the rest of the record. Compiled once when the pipeline starts; a syntax error fails validation with its position.';

const filterSchema = {
  type: 'object',
  title: 'filter',
  description: 'Keeps the records for which the expression is truthy and drops the rest. Tombstones are evaluated too, with the value ($) null, so an expression such as `$ = null or status = "paid"` can keep them.',
  required: ['type', 'expr'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'filter', description: 'Keep or drop records by a JSONata condition.' },
    expr: { type: 'string', minLength: 1, description: `${expressionDescription} The record is kept when the result is truthy (JSONata's $boolean rules).`, examples: ['event = "purchase" and amount > 0'] },
  },
} as const;

const setSchema = {
  type: 'object',
  title: 'set',
  description:
    'Sets fields of the record value, creating missing parent objects. Every expression sees the value as the step received it, so fields may be swapped. A field whose expression yields nothing (a missing path) is removed. Tombstones pass unchanged; a non-object value is an error.',
  required: ['type', 'fields'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'set', description: 'Set fields of the value from JSONata expressions.' },
    fields: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: DOT_PATH_PATTERN },
      additionalProperties: { type: 'string', minLength: 1, description: expressionDescription },
      description: 'Dot path of the field to set → JSONata expression giving its value, applied in the order written.',
      examples: [{ 'page.host': '$substringBefore($substringAfter(url, "://"), "/")', source: '$headers.origin' }],
    },
  },
} as const;

const mapSchema = {
  type: 'object',
  title: 'map',
  description:
    'Replaces the record value with the result of an expression. Tombstones pass unchanged. An expression that yields nothing is an error: use filter to drop records.',
  required: ['type', 'expr'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'map', description: 'Replace the value with a JSONata expression result.' },
    expr: { type: 'string', minLength: 1, description: `${expressionDescription} Its result becomes the new value.`, examples: ['{ "user": user_id, "url": url, "at": ts }'] },
  },
} as const;

const dropFieldsSchema = {
  type: 'object',
  title: 'drop_fields',
  description: 'Removes fields from the record value. Missing fields are ignored.',
  required: ['type', 'fields'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'drop_fields', description: 'Remove fields from the value.' },
    fields: { type: 'array', minItems: 1, uniqueItems: true, items: dotPath, description: 'Dot paths of the fields to remove.', examples: [['user_agent', 'debug.trace']] },
  },
} as const;

const renameFieldsSchema = {
  type: 'object',
  title: 'rename_fields',
  description: 'Renames (moves) fields of the record value, in the order written. A missing source field is ignored; an existing target is overwritten.',
  required: ['type', 'fields'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'rename_fields', description: 'Rename or move fields of the value.' },
    fields: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: DOT_PATH_PATTERN },
      additionalProperties: dotPath,
      description: 'Dot path of the field to move → its new dot path; paths may move a field between nesting levels.',
      examples: [{ user_id: 'user.id', ts: 'event_time' }],
    },
  },
} as const;

const maskFieldsSchema = {
  type: 'object',
  title: 'mask_fields',
  description:
    'Masks personal data in the record value. Missing and null fields are left as they are. hash keeps values joinable (equal inputs give equal digests) without revealing them; redact removes them.',
  required: ['type', 'fields'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'mask_fields', description: 'Hash or redact fields of the value, for PII.' },
    fields: { type: 'array', minItems: 1, uniqueItems: true, items: dotPath, description: 'Dot paths of the fields to mask.', examples: [['email', 'user.ip']] },
    mode: {
      type: 'string',
      enum: ['redact', 'hash'],
      description:
        'Default: redact. redact replaces each value with the string "[REDACTED]". hash replaces it with a lowercase hex digest: HMAC-SHA256 keyed with salt when salt is set, else plain SHA-256. Strings are hashed as their UTF-8 bytes, other values as their JSON text.',
    },
    salt: {
      type: 'string',
      minLength: 1,
      writeOnly: true,
      description:
        'hash: the HMAC key. Without it, digests of guessable values (emails, phone numbers) can be reversed by brute force, so set it, e.g. from ${env:MASK_SALT}. Treated as a secret: redacted from API output and logs.',
    },
  },
} as const;

const routeSchema = {
  type: 'object',
  title: 'route',
  description:
    'Sets the record topic from a template. Placeholders: {topic}, {key}, {key.<path>}, {value}, {value.<path>}, {headers.<name>}, {timestamp}. A placeholder must resolve to a string, number or boolean; a missing one is a record error naming it, as is a result that is not a valid topic name.',
  required: ['type', 'topic'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'route', description: 'Send the record to a topic built from its fields.' },
    topic: { type: 'string', pattern: ROUTE_TEMPLATE_PATTERN, description: 'The topic template.', examples: ['clicks.{value.country}', '{topic}.{headers.tenant}'] },
  },
} as const;

const timestampSchema = {
  type: 'object',
  title: 'timestamp',
  description: 'Sets the record timestamp (event time) from a field of the value, which is kept. Tombstones pass unchanged; a missing or unparsable field is a record error.',
  required: ['type', 'field'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'timestamp', description: 'Take event time from a field of the value.' },
    field: { ...dotPath, description: 'Dot path of the field holding the event time.', examples: ['ts', 'source.ts_ms'] },
    format: {
      type: 'string',
      enum: ['auto', 'iso', 'epoch_ms', 'epoch_s'],
      description:
        'Default: auto. iso: an ISO 8601 date or date-time string; one without an offset is read as UTC. epoch_ms / epoch_s: a number, or a string holding one, of milliseconds / seconds since the epoch (seconds may be fractional). auto: numbers (and numeric strings) below 1e11 are seconds and larger ones milliseconds; other strings are read as iso.',
    },
  },
} as const;

const unwrapCdcSchema = {
  type: 'object',
  title: 'unwrap_cdc',
  description:
    'Turns Debezium-style change events {op, before, after, source, ts_ms} (also when wrapped as {schema, payload}) into plain rows. op c (create), r (snapshot read) and u (update) → the value becomes the after-image; d (delete) → see delete_handling; t (truncate) carries no row and no key, so it is dropped. The key is kept. A value that is not such an envelope is a record error; tombstones pass unchanged.',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'unwrap_cdc', description: 'Keep only the after-image of change events.' },
    delete_handling: {
      type: 'string',
      enum: ['tombstone', 'drop'],
      description: 'Default: tombstone. tombstone: a delete becomes a record with the same key and a null value, which compaction and upserting sinks treat as a delete. drop: deletes are dropped.',
    },
  },
} as const;

const jsSchema = {
  type: 'object',
  title: 'js',
  description:
    'Custom code: an ES module exporting a function (message) => message | null, sync or async, where message is {topic, key, value, headers, timestamp}. Returning null drops the record; throwing makes it a record error (a RetriableError is retried). The module is loaded once when the pipeline starts. The function may change and return the message it is given.',
  required: ['type', 'module'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', const: 'js', description: 'Run a user-supplied JavaScript function.' },
    module: { type: 'string', minLength: 1, description: "Path of the module, relative to the spec file's directory.", examples: ['./transforms/enrich.mjs'] },
    export: { type: 'string', minLength: 1, description: 'The name of the exported function. Default: the default export.' },
  },
} as const;

/** The schema of one transform entry. */
export const TRANSFORM_SCHEMA = {
  type: 'object',
  description: 'A transform applied to every record, chosen by type.',
  required: ['type'],
  oneOf: [filterSchema, setSchema, mapSchema, dropFieldsSchema, renameFieldsSchema, maskFieldsSchema, routeSchema, timestampSchema, unwrapCdcSchema, jsSchema],
} as const;

/** One transform entry of a pipeline spec. Derived from {@link TRANSFORM_SCHEMA}. */
export type TransformEntry = FromSchema<typeof TRANSFORM_SCHEMA>;

export type TransformType = TransformEntry['type'];

/** Every transform type, in schema order. */
export const TRANSFORM_TYPES: readonly TransformType[] = TRANSFORM_SCHEMA.oneOf.map((branch) => branch.properties.type.const);

/** The schema branch of each transform type. */
export const TRANSFORM_BRANCHES: ReadonlyMap<TransformType, (typeof TRANSFORM_SCHEMA.oneOf)[number]> = new Map(
  TRANSFORM_SCHEMA.oneOf.map((branch) => [branch.properties.type.const, branch]),
);

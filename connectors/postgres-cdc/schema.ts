/**
 * The postgres-cdc config schema: the one source of truth for the config's validation, its
 * TypeScript type ({@link PostgresCdcConfig}) and the generated README.
 */
import { type ConfigOf, durationSchema, sizeSchema } from '../../core/connector.ts';

/** A table pattern: `schema.table`, where `*` matches any run of characters and `?` one character. */
export const TABLE_PATTERN = '^[^.]+\\.[^.]+$';

/** Postgres' rule for replication slot names. */
export const SLOT_PATTERN = '^[a-z0-9_]{1,63}$';

export const postgresCdcSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['slot'],
  properties: {
    url: {
      type: 'string',
      pattern: '^postgres(ql)?://',
      writeOnly: true,
      description:
        'The connection as a URL, e.g. postgres://sluice:${env:PGPASSWORD}@db.internal:5432/shop?sslmode=require. Redacted from logs and API output, ' +
        'since it may hold a password. Either url or database (with host, port, user, password) is given, not both.',
    },
    host: { type: 'string', minLength: 1, description: 'The server host name or address, without url. Default localhost.' },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'The server port, without url. Default 5432.' },
    user: {
      type: 'string',
      minLength: 1,
      description: 'The role to connect as, without url. Default postgres. It needs the REPLICATION attribute (or superuser) and SELECT on the captured tables.',
    },
    password: { type: 'string', writeOnly: true, description: 'The role password, without url; pass it as ${env:NAME} or ${file:PATH}.' },
    database: { type: 'string', minLength: 1, description: 'The database to capture, without url. A slot belongs to one database.' },
    ssl: {
      type: 'string',
      enum: ['disable', 'require', 'verify-full'],
      description:
        'TLS: disable; require (encrypted, the certificate is not checked); verify-full (the certificate and host name are checked against the system CAs). ' +
        'Unset: the url\'s sslmode, or none.',
    },
    slot: {
      type: 'string',
      pattern: SLOT_PATTERN,
      description:
        'The logical replication slot (pgoutput) this connector owns: created when missing, and re-created when the connector starts with no stored offsets ' +
        'and snapshot is initial. One slot per source entry: two connectors sharing a slot lose changes.',
      examples: ['sluice_shop'],
    },
    publication: {
      type: 'string',
      minLength: 1,
      maxLength: 63,
      description:
        'The publication whose tables are captured. Default: the slot name. When missing it is created: FOR ALL TABLES when tables.include is the default, ' +
        'else FOR TABLE with the tables that match when the connector starts (add later tables with ALTER PUBLICATION ... ADD TABLE).',
    },
    tables: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'Which tables to capture, as schema.table patterns where * matches any run of characters and ? one character. A table is captured when it is in the ' +
        'publication, matches an include pattern and matches no exclude pattern. pg_catalog and information_schema are never captured.',
      properties: {
        include: { type: 'array', items: { type: 'string', pattern: TABLE_PATTERN }, minItems: 1, default: ['*.*'], description: 'Patterns of tables to capture.' },
        exclude: { type: 'array', items: { type: 'string', pattern: TABLE_PATTERN }, default: [], description: 'Patterns of tables to leave out, even when included.' },
      },
    },
    snapshot: {
      type: 'string',
      enum: ['initial', 'never', 'initial_only'],
      default: 'initial',
      description:
        'initial: on first start, copy every captured table (events with op r) in a snapshot consistent with the slot, then stream changes from the slot\'s ' +
        'consistent point, with no gap; a table that joins the publication later is copied too, consistently with the stream, once noticed. never: stream ' +
        'only, from where the slot is (created now when missing), and never copy. initial_only: copy the tables, then stop; no slot is kept and nothing is streamed.',
    },
    snapshot_chunk_size: {
      type: 'integer',
      minimum: 1,
      maximum: 1000000,
      default: 10000,
      description:
        'Rows per snapshot query. Tables are read in primary-key order, one chunk at a time, and the last key read is the stored offset, so a snapshot ' +
        'interrupted by a crash resumes after the last stored chunk instead of starting over.',
    },
    topic_prefix: {
      type: 'string',
      pattern: '^[A-Za-z0-9._-]+$',
      default: 'cdc',
      description:
        'The value of {prefix} in the entry\'s topic template. The usual template is {prefix}.{schema}.{table}; {database} is filled too. Characters of ' +
        'schema and table names other than A-Z a-z 0-9 _ - become _ in topic names.',
    },
    heartbeat_interval: {
      ...durationSchema,
      default: '10s',
      description:
        'How often to write a heartbeat, a transactional pg_logical_emit_message in the captured database, while streaming. It flows through the slot like a ' +
        'change, so the slot\'s confirmed position advances even when the captured tables are idle and other databases are busy, and the server can recycle ' +
        'WAL. 0s turns heartbeats off. The role needs EXECUTE on pg_logical_emit_message (superusers and REPLICATION roles have it).',
    },
    max_slot_lag_bytes: {
      ...sizeSchema,
      default: '1GiB',
      description:
        'A warning is logged when the slot holds back more WAL than this (the retained_wal_bytes metric), checked every slot_check_interval. The server only ' +
        'invalidates the slot past its own max_slot_wal_keep_size.',
    },
    slot_check_interval: {
      ...durationSchema,
      default: '10s',
      description:
        'How often the slot\'s retained WAL and state (pg_replication_slots) are read, for the metrics, the lag warning and an invalidated slot; and, with ' +
        'snapshot initial, how often the publication is checked for tables that joined it and need a copy.',
    },
    include_transaction_markers: {
      type: 'boolean',
      default: false,
      description:
        'Also write a BEGIN and an END event per transaction, {status, id, lsn, commit_ts, event_count}, with topic variables schema __sluice and table ' +
        'transactions (so {prefix}.{schema}.{table} gives cdc.__sluice.transactions), and add transaction {id, total_order} to every change event.',
    },
    schema_header: {
      type: 'boolean',
      default: true,
      description:
        'Put the table\'s columns in the header sluice.cdc.schema of every row event: {schema, table, columns: [{name, type, nullable, pk}]}, type as ' +
        'Postgres formats it (numeric(10,2), character varying(40), text[]), so sinks can create and evolve target tables.',
    },
    batch_size: {
      type: 'integer',
      minimum: 1,
      maximum: 100000,
      default: 5000,
      description: 'The most events one poll returns; the records of one poll are appended (and fsync\'ed) together.',
    },
  },
  oneOf: [{ required: ['url'] }, { required: ['database'] }],
  if: { required: ['url'] },
  then: { properties: { host: false, port: false, user: false, password: false } },
} as const;

/** A validated postgres-cdc config, defaults filled in. */
export type PostgresCdcConfig = ConfigOf<typeof postgresCdcSchema>;

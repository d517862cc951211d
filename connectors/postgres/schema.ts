/**
 * The postgres sink's config schema: the one source of truth for its config type, its validation
 * and its reference doc. The settings shared with the mysql sink come from `../sql-sink/config.ts`.
 */
import type { ConfigOf } from '../../core/connector.ts';
import { sqlSinkProperties, sqlSinkRules } from '../sql-sink/config.ts';

/** The `config` block of a postgres sink entry. */
export const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['mode'],
  properties: {
    url: {
      type: 'string',
      pattern: '^postgres(ql)?://',
      writeOnly: true,
      description:
        'The target database as a connection URL, postgres://user:password@host:5432/database?sslmode=require. Redacted, since it ' +
        'may hold the password; pass it with ${env:...}. Either url or host and database.',
      examples: ['${env:TARGET_URL:-postgres://postgres@127.0.0.1:5432/replica}'],
    },
    host: { type: 'string', minLength: 1, description: 'The server\'s host name or address, when url is not set.' },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'The server\'s port, when url is not set. Default 5432.' },
    user: { type: 'string', minLength: 1, description: 'The user to connect as, when url is not set. Default postgres.' },
    password: { type: 'string', writeOnly: true, description: 'The password, when url is not set.' },
    database: { type: 'string', minLength: 1, description: 'The database to write into, when url is not set.' },
    ssl: {
      type: 'string',
      enum: ['disable', 'require', 'verify-full'],
      default: 'disable',
      description:
        'TLS to the server, with host and database settings (a url says it with sslmode). require encrypts without checking the ' +
        'certificate; verify-full also checks it against the system CAs and the host name.',
    },
    target_schema: {
      type: 'string',
      minLength: 1,
      maxLength: 63,
      default: 'public',
      description: 'The Postgres schema that holds the target tables and the offsets table. It must exist.',
    },
    copy_threshold: {
      type: 'integer',
      minimum: 0,
      default: 2000,
      description:
        'A partition\'s batch with at least this many rows for one table is written with COPY into a temporary table and one ' +
        'INSERT ... SELECT (ON CONFLICT DO UPDATE in upsert and cdc modes), which is several times faster than multi-row ' +
        'INSERTs for large batches; smaller batches use multi-row statements. 0 turns COPY off.',
    },
    ...sqlSinkProperties,
  },
  allOf: sqlSinkRules,
} as const;

/** The validated config, with defaults filled in. */
export type PostgresSinkConfig = ConfigOf<typeof schema>;

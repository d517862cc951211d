/**
 * The mysql sink's config schema: the one source of truth for its config type, its validation and
 * its reference doc. The settings shared with the postgres sink come from `../sql-sink/config.ts`.
 */
import type { ConfigOf } from '../../core/connector.ts';
import { sqlSinkProperties, sqlSinkRules } from '../sql-sink/config.ts';

/** The `config` block of a mysql sink entry. */
export const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['mode'],
  properties: {
    url: {
      type: 'string',
      pattern: '^(mysql|mariadb)://',
      writeOnly: true,
      description:
        'The target database as a connection URL, mysql://user:password@host:3306/database. Redacted, since it may hold the ' +
        'password; pass it with ${env:...}. Either url or host and database.',
      examples: ['${env:TARGET_URL:-mysql://root@127.0.0.1:3306/replica}'],
    },
    host: { type: 'string', minLength: 1, description: 'The server\'s host name or address, when url is not set.' },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'The server\'s port, when url is not set. Default 3306.' },
    user: { type: 'string', minLength: 1, description: 'The user to connect as, when url is not set. Default root.' },
    password: { type: 'string', writeOnly: true, description: 'The password, when url is not set.' },
    database: { type: 'string', minLength: 1, description: 'The database (schema) that holds the target tables and the offsets table.' },
    ssl: {
      type: 'string',
      enum: ['disable', 'require', 'verify-full'],
      default: 'disable',
      description: 'TLS to the server. require encrypts without checking the certificate; verify-full also checks it against the system CAs and the host name.',
    },
    ...sqlSinkProperties,
  },
  allOf: sqlSinkRules,
} as const;

/** The validated config, with defaults filled in. */
export type MysqlSinkConfig = ConfigOf<typeof schema>;

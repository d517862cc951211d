/**
 * Connections to Postgres: client settings from the config, the text-only type parsers every
 * query uses, and the line between failures worth retrying (the server is restarting, the network
 * dropped) and failures that need a person (bad password, missing privilege).
 */
import pg from 'pg';
import { RetriableError, SluiceError } from '../../core/connector.ts';
import type { PostgresCdcConfig } from './schema.ts';
import { SESSION_OPTIONS } from './types.ts';

/** The connection settings of a config, without the replication flag. */
export function clientConfig(config: PostgresCdcConfig): pg.ClientConfig {
  const base: pg.ClientConfig = {
    application_name: 'sluice',
    options: SESSION_OPTIONS,
    keepAlive: true,
    connectionTimeoutMillis: 10_000,
  };
  if (config.url !== undefined) base.connectionString = config.url;
  else {
    base.host = config.host ?? 'localhost';
    base.port = config.port ?? 5432;
    base.user = config.user ?? 'postgres';
    if (config.password !== undefined) base.password = config.password;
    base.database = config.database;
  }
  if (config.ssl === 'disable') base.ssl = false;
  else if (config.ssl === 'require') base.ssl = { rejectUnauthorized: false };
  else if (config.ssl === 'verify-full') base.ssl = { rejectUnauthorized: true };
  return base;
}

/** Type parsers that return every value as Postgres' text output, so the type mapping is ours alone. */
export const RAW_TEXT_TYPES = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/** Connects a client, attaching an error listener first so a dropped socket never crashes the process. */
export async function connectClient(config: pg.ClientConfig, onError: (err: Error) => void): Promise<pg.Client> {
  const client = new pg.Client(config);
  client.on('error', onError);
  try {
    await client.connect();
  } catch (err) {
    client.removeAllListeners('error');
    client.on('error', () => {});
    throw err;
  }
  return client;
}

/** Ends a client within `timeoutMs`, destroying its socket after that. Never throws. */
export async function closeClient(client: pg.Client | null | undefined, timeoutMs = 2000): Promise<void> {
  if (!client) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.end().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
        resolve();
      }, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/** Double-quotes an identifier for SQL. */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A single-quoted SQL literal. */
export function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** SQLSTATE classes and codes that mean "try again": connection trouble, shutdown, too many clients, an object in use. */
const RETRIABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300', '53400', '55006', '40001', '40P01', '58000', '58030']);
/** SQLSTATEs that need the user: authentication, missing database, privileges, wrong wal_level. */
const CONFIG_CODES = new Set(['28P01', '28000', '3D000', '42501', '55000']);
const RETRIABLE_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'ECONNABORTED']);

/** Whether a raw error from `pg` or the socket means the same call may succeed later. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (RETRIABLE_CODES.has(code) || code.startsWith('08')) return true;
    if (RETRIABLE_ERRNOS.has(code)) return true;
  }
  return /Connection terminated|connection timeout|timeout expired|ECONNRESET|socket hang up|Client was closed|not queryable|Client has encountered a connection error/i.test(err.message);
}

/**
 * Wraps a failure of `what` (e.g. "connecting to 127.0.0.1:5432") as the runtime expects it: a
 * {@link RetriableError} for transient trouble, `CONFIG_INVALID` for what the user must fix, and
 * `CONNECTOR_FAILED` otherwise. SluiceErrors pass through unchanged.
 */
export function wrapError(err: unknown, what: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown })?.code;
  const context = { sqlstate: typeof code === 'string' ? code : undefined };
  if (isTransient(err)) return new RetriableError(`${what}: ${message}`, { cause: err, context });
  if (typeof code === 'string' && CONFIG_CODES.has(code)) return new SluiceError('CONFIG_INVALID', `${what}: ${message}`, { cause: err, context });
  return new SluiceError('CONNECTOR_FAILED', `${what}: ${message}`, { cause: err, context });
}

/** Where a config points, for messages: `host:port/database`, never the password. */
export function describeTarget(config: PostgresCdcConfig): string {
  if (config.url !== undefined) {
    try {
      const u = new URL(config.url);
      return `${u.hostname || 'localhost'}:${u.port || 5432}${u.pathname || '/'}`;
    } catch {
      return 'the configured url';
    }
  }
  return `${config.host ?? 'localhost'}:${config.port ?? 5432}/${config.database ?? ''}`;
}

/**
 * Database errors in connector-API terms: what the runtime retries, what fails the connector, and
 * what it bisects to a bad record. Driver errors are never attached as `cause`: mysql2 hangs the
 * whole statement with its values on the error (`sql`), which the logger would print.
 */
import { RetriableError, SluiceError } from '../../core/connector.ts';
import type { ClassifiedError } from './dialect.ts';

/** A classified database error as the error `put` and friends throw. */
export function sinkError(label: string, classified: ClassifiedError, context: Record<string, unknown> = {}): SluiceError {
  const full = { ...context, ...(classified.code !== undefined ? { dbCode: classified.code } : {}) };
  const where = typeof context['table'] === 'string' ? ` (table ${JSON.stringify(context['table'])})` : '';
  switch (classified.kind) {
    case 'retriable':
      return new RetriableError(`${label}: ${classified.message}${where}`, { context: full });
    case 'schema':
      return new RetriableError(`${label}: the target changed under the sink, describing it again: ${classified.message}${where}`, { context: full });
    case 'config':
      return new SluiceError('CONFIG_INVALID', `${label}: ${classified.message}${where}`, { context: full });
    case 'record':
      return new SluiceError('CONNECTOR_FAILED', `${label} refused a row: ${classified.message}${where}`, { context: full });
  }
}

/** Node socket errors that mean "the connection is gone, try again". */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOENT',
  // Node's own: the driver wrote to a socket that was already closed (a stop or a dead server).
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_STREAM_DESTROYED',
]);

/** The `code` property of an error, as a string, or undefined. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : typeof code === 'number' ? String(code) : undefined;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

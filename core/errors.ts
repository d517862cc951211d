/**
 * The one error type sluice throws. Every failure carries a closed `code`, so callers branch on
 * codes rather than on message text, and context (topic, partition, field, value...) that logs and
 * the admin API show as structured fields.
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'TOPIC_NOT_FOUND',
  'TOPIC_EXISTS',
  'INVALID_TOPIC_NAME',
  'OFFSET_OUT_OF_RANGE',
  'DATA_DIR_LOCKED',
  'LOG_CLOSED',
  'LOG_READ_ONLY',
  'CORRUPT_RECORD',
  'NOT_ASSIGNED',
  'REBALANCE_IN_PROGRESS',
  'IO_ERROR',
  'SPEC_INVALID',
  'CONFIG_INVALID',
  'CONNECTOR_FAILED',
  'TRANSFORM_FAILED',
  'RETRIABLE',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export type ErrorContext = Record<string, unknown>;

export class SluiceError extends Error {
  override readonly name: string = 'SluiceError';
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, options: { context?: ErrorContext; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = options.context ?? {};
  }

  /** Whether repeating the same call may succeed. Only {@link RetriableError} says yes. */
  get retriable(): boolean {
    return false;
  }
}

/**
 * Thrown by a connector or the log when the same call, repeated later with the same input, may
 * succeed: a lost connection, a full disk that is being cleaned, a 503 from a peer. The runtime
 * retries the same batch with backoff instead of failing the connector.
 */
export class RetriableError extends SluiceError {
  override readonly name: string = 'RetriableError';

  constructor(message: string, options: { context?: ErrorContext; cause?: unknown } = {}) {
    super('RETRIABLE', message, options);
  }

  override get retriable(): boolean {
    return true;
  }
}

export function isSluiceError(err: unknown, code?: ErrorCode): err is SluiceError {
  return err instanceof SluiceError && (code === undefined || err.code === code);
}

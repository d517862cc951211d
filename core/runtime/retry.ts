/**
 * Retrying with exponential backoff and full jitter, the runtime's single answer to
 * {@link RetriableError}: the same call is repeated until it succeeds, the entry's `retry_timeout`
 * passes, or the task is stopped.
 */
import { SluiceError } from '../errors.ts';

export interface RetryPolicy {
  /** Give up once this much time has passed since the first failure. */
  timeoutMs: number;
  /** The longest wait between two attempts. */
  backoffMaxMs: number;
}

const FIRST_DELAY_MS = 100;

/** Whether repeating the call may succeed: RetriableError, or a log write that hit an I/O error. */
export function isRetriable(err: unknown): boolean {
  if (!(err instanceof SluiceError)) return false;
  return err.retriable || err.code === 'IO_ERROR';
}

/** Full jitter (AWS's "exponential backoff and jitter"): uniform in [0, min(max, first * 2^attempt)]. */
export function backoffDelay(attempt: number, backoffMaxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(backoffMaxMs, FIRST_DELAY_MS * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling * random());
}

/** Resolves after `ms`, or at once when `signal` aborts (then it rejects with the abort reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class AbortedError extends Error {
  override readonly name = 'AbortedError';
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new AbortedError('stopped');
}

/**
 * Calls `fn` until it resolves. Retriable failures are retried after a backoff (or after the
 * `retryAfterMs` a failure carries in its context, as the http sink's 429 does); any other failure,
 * or a retriable one past `timeoutMs`, is thrown. `onRetry` sees each failure before its wait.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  options: { signal?: AbortSignal; onRetry?: (err: SluiceError, attempt: number, delayMs: number) => void } = {},
): Promise<T> {
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!isRetriable(err) || options.signal?.aborted) throw err;
      const error = err as SluiceError;
      const elapsed = Date.now() - started;
      if (elapsed >= policy.timeoutMs) {
        throw new SluiceError('CONNECTOR_FAILED', `gave up after retrying for ${Math.round(elapsed / 1000)}s (${attempt + 1} attempts): ${error.message}`, {
          cause: error,
          context: { ...error.context, attempts: attempt + 1 },
        });
      }
      const hinted = typeof error.context['retryAfterMs'] === 'number' ? (error.context['retryAfterMs'] as number) : null;
      const delay = Math.min(hinted ?? backoffDelay(attempt, policy.backoffMaxMs), Math.max(0, policy.timeoutMs - elapsed));
      options.onRetry?.(error, attempt + 1, delay);
      await sleep(delay, options.signal);
    }
  }
}

/**
 * How NATS and JetStream failures become {@link SluiceError}s, and the bounded retry of management
 * calls. JetStream answers API errors with a numeric `err_code` (stable across server versions), so
 * the mapping branches on it rather than on message text, with the text as a fallback for errors
 * the client raises itself (timeouts, no responders).
 */
import { RetriableError, SluiceError, type ErrorContext } from '../../errors.ts';

/** JetStream API error codes this backend reacts to (nats-server's errors.json). */
export const JS_ERR = {
  streamNotFound: 10059,
  streamNameInUse: 10058,
  noMessageFound: 10037,
  wrongLastMsgId: 10070,
  wrongLastSequence: 10071,
  keyExists: 10164,
  replicasNotSupported: 10074,
  insufficientResources: 10023,
  clusterNoPeers: 10005,
  temporarilyUnavailable: 10008,
  clusterNotAvailable: 10006,
  noLeader: 10009,
} as const;

interface NatsLikeError {
  code?: string;
  message?: string;
  api_error?: { code?: number; err_code?: number; description?: string };
}

export function apiErrorCode(err: unknown): number | undefined {
  return (err as NatsLikeError | null)?.api_error?.err_code;
}

function text(err: unknown): string {
  return String((err as NatsLikeError | null)?.message ?? err);
}

/** A publish expectation failed: another writer appended first, or our view of the tail is stale. */
export function isConflict(err: unknown): boolean {
  const code = apiErrorCode(err);
  if (code === JS_ERR.wrongLastSequence || code === JS_ERR.wrongLastMsgId || code === JS_ERR.keyExists) return true;
  return /wrong last (sequence|msg ?id)|key exists/i.test(text(err));
}

export function isNotFound(err: unknown): boolean {
  const e = err as NatsLikeError | null;
  return apiErrorCode(err) === JS_ERR.noMessageFound || e?.code === '404' || /no message found|message not found/i.test(text(err));
}

export function isStreamNotFound(err: unknown): boolean {
  return apiErrorCode(err) === JS_ERR.streamNotFound || /stream not found/i.test(text(err));
}

/** Failures that say nothing about the request itself: repeating it later may succeed. */
export function isTransient(err: unknown): boolean {
  if (err instanceof SluiceError) return err.retriable;
  const e = err as NatsLikeError | null;
  const code = apiErrorCode(err);
  if (code === JS_ERR.temporarilyUnavailable || code === JS_ERR.clusterNotAvailable || code === JS_ERR.noLeader || code === JS_ERR.clusterNoPeers) return true;
  if (e?.code === 'TIMEOUT' || e?.code === '503' || e?.code === 'CONNECTION_REFUSED' || e?.code === 'DISCONNECT' || e?.code === 'CONNECTION_CLOSED') return true;
  return /timeout|no responders|temporarily unavailable|no suitable peers|not available|stalled/i.test(text(err));
}

/**
 * Turns any NATS failure into a SluiceError: transient ones into {@link RetriableError} (the runtime
 * retries the same batch), a replica count the cluster cannot place into CONFIG_INVALID, anything
 * else into IO_ERROR. SluiceErrors pass through unchanged.
 */
export function toSluiceError(err: unknown, what: string, context: ErrorContext = {}): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = apiErrorCode(err);
  if (code === JS_ERR.replicasNotSupported || code === JS_ERR.insufficientResources || /replicas > 1 not supported|insufficient resources/i.test(text(err))) {
    return new SluiceError('CONFIG_INVALID', `${what}: the NATS cluster cannot place ${String(context['replicas'] ?? 'the configured')} replicas (${text(err)}); lower log.replicas to at most the number of JetStream servers`, {
      context,
      cause: err,
    });
  }
  if (isTransient(err)) return new RetriableError(`${what}: NATS JetStream unavailable (${text(err)})`, { context, cause: err });
  return new SluiceError('IO_ERROR', `${what}: ${text(err)}`, { context, cause: err });
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Repeats `call` with exponential backoff while it fails transiently, for at most `budgetMs`.
 * Right after a cluster starts (or loses a node) JetStream answers management requests with
 * timeouts until its meta leader is elected; those calls are worth repeating, others are not.
 */
export async function withRetry<T>(what: string, call: () => Promise<T>, options: { budgetMs?: number; context?: ErrorContext } = {}): Promise<T> {
  const deadline = Date.now() + (options.budgetMs ?? 20_000);
  let delay = 100;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!isTransient(err) || Date.now() + delay > deadline) throw toSluiceError(err, what, options.context);
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
    }
  }
}

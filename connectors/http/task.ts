/**
 * The http sink task: each `put` becomes one or more requests, sent in order, whose status decides
 * between success, "retry the same batch" and "some record is bad".
 */
import type http from 'node:http';
import { RetriableError, SluiceError, type SinkRecord, type SinkTask, type SinkTaskContext } from '../../core/connector.ts';
import { createAgent, displayUrl, parseRetryAfter, sendRequest, type HttpResponse } from './client.ts';
import { encodeRequests, type EncodedRequest } from './encode.ts';
import { authHeaders, resolveOptions, type HttpSinkOptions } from './options.ts';
import type { HttpSinkConfig } from './schema.ts';

/** How much of a response body an error message quotes; the context carries more. */
const MESSAGE_BODY_CHARS = 200;

/** Where one request stands within its `put`, for messages and context. */
interface Progress {
  /** 1-based index of the request. */
  readonly request: number;
  readonly requests: number;
  readonly records: number;
  /** Records of this `put` already delivered by earlier requests. */
  readonly delivered: number;
  readonly total: number;
}

/**
 * Writes batches to an HTTP endpoint.
 *
 * A `put` splits its records into requests of at most `max_batch_records` records and
 * `max_batch_bytes` bytes and sends them one after the other, each awaited before the next, so the
 * receiver sees records in offset order. It resolves once every request got a 2xx. Otherwise:
 * - 408, 429 and 5xx, a timeout or a network error throw {@link RetriableError}, and the runtime
 *   retries the same batch. `context.retryAfterMs` carries the wait the response's `Retry-After`
 *   asked for, when it did, so the runtime can wait at least that long;
 * - 3xx throws a `CONFIG_INVALID` error: redirects are not followed, because resending a POST
 *   elsewhere is a decision for the config, not the client;
 * - 401, 403, 404, 405 and 407 throw `CONFIG_INVALID` (the connector goes FAILED whatever the
 *   tolerance, since every record would fail the same way);
 * - any other status throws a `CONNECTOR_FAILED` error with `status` and the start of the response
 *   body in its context. Under `tolerance: all` the runtime bisects the batch until the record the
 *   receiver rejects is alone, and sends it to the DLQ.
 *
 * Delivery is at-least-once. When a request fails after earlier requests of the same `put`
 * succeeded, those records were delivered, and the retry (or the bisection) sends them again; the
 * error's `context.deliveredRecords` says how many. Receivers that need exactly-once deduplicate,
 * for instance on topic, partition and offset with `body: envelope`.
 */
export class HttpSinkTask implements SinkTask {
  readonly #config: HttpSinkConfig;
  #options: HttpSinkOptions | undefined;
  #agent: http.Agent | undefined;
  #ctx: SinkTaskContext | undefined;

  /** Called by the runtime through `createTask`; does no I/O. */
  constructor(config: HttpSinkConfig) {
    this.#config = config;
  }

  /** Resolves the config; throws `CONFIG_INVALID` for a URL that does not parse. Opens no connection yet. */
  async start(ctx: SinkTaskContext): Promise<void> {
    this.#options = resolveOptions(this.#config);
    this.#agent = createAgent(this.#options.url);
    this.#ctx = ctx;
  }

  async put(records: readonly SinkRecord[]): Promise<void> {
    const options = this.#options;
    const ctx = this.#ctx;
    if (options === undefined || ctx === undefined) throw new SluiceError('CONNECTOR_FAILED', 'http sink: put was called before start');
    if (records.length === 0) return;
    const requests = encodeRequests(records, {
      format: options.format,
      body: options.body,
      maxRecords: options.maxRecords,
      maxBytes: options.maxBytes,
    });
    let delivered = 0;
    for (const [index, request] of requests.entries()) {
      await this.#send(options, ctx, request, {
        request: index + 1,
        requests: requests.length,
        records: request.records,
        delivered,
        total: records.length,
      });
      delivered += request.records;
    }
  }

  /** Releases the keep-alive connection. */
  async stop(): Promise<void> {
    this.#agent?.destroy();
    this.#agent = undefined;
  }

  async #send(options: HttpSinkOptions, ctx: SinkTaskContext, request: EncodedRequest, progress: Progress): Promise<void> {
    // One controller per request, wired by hand rather than with AbortSignal.any/timeout, so that
    // nothing (listener on the long-lived task signal, pending timer) outlives the request.
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, options.timeoutMs);
    const onStop = (): void => controller.abort();
    if (ctx.signal.aborted) controller.abort();
    else ctx.signal.addEventListener('abort', onStop, { once: true });
    const started = performance.now();
    let response: HttpResponse;
    try {
      response = await sendRequest({
        url: options.url,
        method: options.method,
        // Auth comes last so a header of the same name in the config cannot weaken it.
        headers: { ...options.headers, ...authHeaders(options.auth, request.body, Date.now()) },
        body: request.body,
        agent: this.#agent!,
        signal: controller.signal,
      });
    } catch (err) {
      ctx.metrics.count('requests_total', 1, { status: timedOut && !ctx.signal.aborted ? 'timeout' : 'error' });
      throw this.#transportError(options, ctx, timedOut, err, progress);
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onStop);
    }
    const seconds = (performance.now() - started) / 1000;
    ctx.metrics.count('requests_total', 1, { status: String(response.status) });
    ctx.metrics.observe('request_seconds', seconds);
    ctx.logger.debug({ status: response.status, records: request.records, bytes: request.body.length, seconds }, 'request sent');
    if (response.status >= 200 && response.status < 300) return;
    throw this.#responseError(options, response, progress);
  }

  #transportError(options: HttpSinkOptions, ctx: SinkTaskContext, timedOut: boolean, err: unknown, progress: Progress): SluiceError {
    const target = `${options.method} ${displayUrl(options.url)}`;
    const code = (err as { code?: unknown } | null)?.code;
    const context = { method: options.method, url: displayUrl(options.url), ...progressContext(progress), ...(typeof code === 'string' ? { errorCode: code } : {}) };
    if (ctx.signal.aborted) {
      return new RetriableError(`http sink: ${target} was aborted because the task is stopping${partialNote(progress)}`, { context, cause: err });
    }
    if (timedOut) {
      return new RetriableError(`http sink: ${target} timed out after ${options.timeoutMs}ms${partialNote(progress)}`, {
        context: { ...context, timeoutMs: options.timeoutMs },
        cause: err,
      });
    }
    // Node's ERR_INVALID_* errors come from the request we built, not from the network: retrying cannot help.
    if (typeof code === 'string' && code.startsWith('ERR_INVALID')) {
      return new SluiceError('CONNECTOR_FAILED', `http sink: ${target} could not be sent: ${scrub(options, String((err as Error).message))}`, { context, cause: err });
    }
    const reason = err instanceof Error ? scrub(options, err.message) : 'unknown error';
    return new RetriableError(`http sink: ${target} failed: ${reason}${partialNote(progress)}`, { context, cause: err });
  }

  #responseError(options: HttpSinkOptions, response: HttpResponse, progress: Progress): SluiceError {
    const status = response.status;
    const target = `${options.method} ${displayUrl(options.url)}`;
    const body = scrub(options, response.body) + (response.truncated ? '…' : '');
    const excerpt = body.length > MESSAGE_BODY_CHARS ? `${body.slice(0, MESSAGE_BODY_CHARS)}…` : body;
    const answered = `http sink: ${target} answered ${status}${response.statusText ? ` ${response.statusText}` : ''}`;
    const context: Record<string, unknown> = { status, method: options.method, url: displayUrl(options.url), responseBody: body, ...progressContext(progress) };

    if (status === 408 || status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfter(headerValue(response.headers['retry-after']));
      if (retryAfterMs !== undefined) context.retryAfterMs = retryAfterMs;
      const wait = retryAfterMs === undefined ? '' : `; Retry-After asks to wait ${retryAfterMs}ms`;
      return new RetriableError(`${answered}${excerpt ? `: ${excerpt}` : ''}${wait}${partialNote(progress)}`, { context });
    }
    if (status >= 300 && status < 400) {
      const location = redirectTarget(options.url, headerValue(response.headers.location));
      if (location !== undefined) context.location = location;
      return new SluiceError(
        'CONFIG_INVALID',
        `${answered}, a redirect${location ? ` to ${location}` : ''}; the http sink does not follow redirects, so set url to the final address${partialNote(progress)}`,
        { context },
      );
    }
    // These answers are about the request as configured (credentials, address, method), not about
    // any record, so they fail the connector instead of sending every record to the DLQ.
    if (CONFIG_STATUSES.has(status)) {
      return new SluiceError('CONFIG_INVALID', `${answered}: check url, method and auth${excerpt ? `: ${excerpt}` : ''}${partialNote(progress)}`, { context });
    }
    return new SluiceError('CONNECTOR_FAILED', `${answered}${excerpt ? `: ${excerpt}` : ''}${partialNote(progress)}`, { context });
  }
}

const CONFIG_STATUSES = new Set([401, 403, 404, 405, 407]);

function progressContext(progress: Progress): Record<string, number> {
  return { request: progress.request, requests: progress.requests, records: progress.records, deliveredRecords: progress.delivered };
}

/** Says so in the message when a failure comes after part of the batch was already delivered. */
function partialNote(progress: Progress): string {
  if (progress.delivered === 0) return '';
  return ` (request ${progress.request} of ${progress.requests}; ${progress.delivered} of ${progress.total} records of this batch were delivered and will be sent again)`;
}

/** Where a redirect points, shown like the sink's own URL; undefined when absent or unreadable. */
function redirectTarget(base: URL, location: string | undefined): string | undefined {
  if (location === undefined) return undefined;
  try {
    return displayUrl(new URL(location, base));
  } catch {
    return undefined;
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** `text` without any secret of the config; a receiver may echo request headers back. */
function scrub(options: HttpSinkOptions, text: string): string {
  let out = text;
  for (const secret of [...options.secrets].sort((a, b) => b.length - a.length)) out = out.split(secret).join('[REDACTED]');
  return out;
}

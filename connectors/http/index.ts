/**
 * The http sink: posts batches of records to an HTTP endpoint as a JSON array or NDJSON, with
 * bearer or HMAC-SHA256 signing, retrying 408, 429 and 5xx and honouring Retry-After.
 */
import { RetriableError, SluiceError, defineSink } from '../../core/connector.ts';
import { displayUrl, isCertificateError, probe } from './client.ts';
import { resolveOptions } from './options.ts';
import { schema } from './schema.ts';
import { HttpSinkTask } from './task.ts';

export { schema, HMAC_DEFAULTS, type HttpSinkConfig } from './schema.ts';
export { HttpSinkTask } from './task.ts';

/**
 * The `http` sink connector definition, listed in `connectors/index.ts`.
 *
 * Errors from `put` follow the connector API: 408, 429, 5xx, timeouts and network errors are
 * {@link RetriableError}s whose `context.retryAfterMs`, when present, is the wait the receiver asked
 * for in `Retry-After` (the runtime should not retry sooner); redirects and other 4xx are
 * `CONNECTOR_FAILED` errors with `status` and `responseBody` in their context. See
 * {@link HttpSinkTask} for batching and delivery.
 */
export const http = defineSink({
  kind: 'sink',
  name: 'http',
  description:
    'Sends records to an HTTP endpoint in batches, as a JSON array or as NDJSON, with optional bearer-token auth or an HMAC-SHA256 ' +
    'signature of each body. 408, 429, 5xx, timeouts and network errors are retried with backoff, waiting at least as long as ' +
    'Retry-After asks; other 4xx answers count as bad records, which go to the DLQ under errors.tolerance: all. A batch larger than ' +
    'the limits is split into several requests sent in order; when one fails after others succeeded, the retry sends the whole ' +
    'batch again, so delivery is at-least-once.',
  configSchema: schema,
  examples: [
    {
      title: 'Post JSON arrays to a webhook with a bearer token',
      config: {
        url: 'https://hooks.example.com/ingest',
        method: 'POST',
        format: 'json_array',
        body: 'value',
        headers: {},
        auth: { type: 'bearer', token: '${env:HOOK_TOKEN}' },
        timeout: '30s',
        max_batch_records: 500,
        max_batch_bytes: '1MiB',
      },
    },
    {
      title: 'Stream full records as signed NDJSON, Stripe-style, in requests of at most 256KiB',
      config: {
        url: 'https://collector.example.com/v1/events',
        method: 'POST',
        format: 'ndjson',
        body: 'envelope',
        headers: { 'X-Tenant': 'acme' },
        auth: {
          type: 'hmac',
          secret: '${env:SIGNING_SECRET}',
          header: 'X-Sluice-Signature',
          algorithm: 'sha256',
          encoding: 'hex',
          prefix: 'sha256=',
          timestamp_header: 'X-Sluice-Timestamp',
        },
        timeout: '10s',
        max_batch_records: 1000,
        max_batch_bytes: '256KiB',
      },
    },
  ],
  metrics: {
    requests_total: {
      type: 'counter',
      help: 'Requests sent, by HTTP status, or timeout or error when no response arrived.',
      labels: ['status'],
    },
    request_seconds: { type: 'histogram', help: 'Time from sending a request to the end of its response, for requests that got one.' },
  },
  /**
   * Opens a TCP connection to the URL's host, with a TLS handshake for https, and closes it: it
   * proves the target is reachable and its certificate valid without sending data or assuming the
   * endpoint answers HEAD or OPTIONS. A refused, reset or slow connection and an unresolved host
   * are retriable (the target may be starting); a certificate error is not.
   */
  async healthCheck(config, { signal }) {
    const options = resolveOptions(config);
    const target = options.url.host;
    try {
      await probe(options.url, options.timeoutMs, signal);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      const context = { url: displayUrl(options.url), ...(typeof code === 'string' ? { errorCode: code } : {}) };
      const reason = err instanceof Error ? err.message : String(err);
      if (isCertificateError(err)) {
        throw new SluiceError('CONNECTOR_FAILED', `http sink: the TLS certificate of ${target} is not valid: ${reason}`, { context, cause: err });
      }
      throw new RetriableError(`http sink: cannot connect to ${target}: ${reason}`, { context, cause: err });
    }
  },
  createTask: (config) => new HttpSinkTask(config),
});

/**
 * The webhook source: HTTP ingest for clickstreams and webhooks, answering 2xx only once the
 * events are durable in the log.
 */
import { defineSource } from '../../core/connector.ts';
import { webhookSchema, type WebhookConfig } from './schema.ts';
import { WebhookTask, buildRoutes } from './task.ts';

export { webhookSchema, HEALTH_PATH, HMAC_DEFAULTS, type AuthConfig, type RouteConfig, type WebhookConfig } from './schema.ts';
export { IDLE_POLL_MS, MAX_POLL_EVENTS, RETRY_AFTER_FULL_S, RETRY_AFTER_UNAVAILABLE_S, WebhookTask } from './task.ts';
export { classifyContentType, parseBody, splitTopLevelArray, keyOf, type ParsedEvent } from './body.ts';
export { createAuthenticator, decodeDigest, safeEqualText } from './auth.ts';

// Examples are written as a user writes them, without the defaulted settings; the API types them as
// the validated config (defaults required), hence the assertion below, from a checked partial config.
type ExampleConfig = Omit<Partial<WebhookConfig>, 'routes'> & { routes: ReadonlyArray<Partial<WebhookConfig['routes'][number]> & { path: string; topic: string }> };
const examples: ReadonlyArray<{ title: string; config: ExampleConfig }> = [
  {
    title: 'A browser clickstream: batches from navigator.sendBeacon, keyed by user',
    config: {
      host: '0.0.0.0',
      port: 8080,
      routes: [{ path: '/collect', topic: 'clicks', format: 'json', key_field: 'user_id', rate_limit: { requests_per_second: 2000 } }],
      cors: { allowed_origins: ['https://shop.example.com'], allowed_headers: ['Content-Type'], max_age: '10m' },
    },
  },
  {
    title: 'GitHub, Stripe and Shopify webhooks on one server, each verified and de-duplicated',
    config: {
      port: 9000,
      routes: [
        { path: '/hooks/github', topic: 'github.events', auth: { type: 'github', secret: '${env:GITHUB_WEBHOOK_SECRET}' } },
        { path: '/hooks/stripe', topic: 'stripe.events', auth: { type: 'stripe', secret: '${env:STRIPE_ENDPOINT_SECRET}', tolerance: '5m' } },
        { path: '/hooks/shopify', topic: 'shopify.events', auth: { type: 'shopify', secret: '${env:SHOPIFY_CLIENT_SECRET}' } },
      ],
      dedupe_window: '72h',
    },
  },
  {
    title: 'NDJSON from a service, signed with a generic HMAC header',
    config: {
      port: 8081,
      routes: [
        {
          path: '/ingest',
          topic: 'app.events',
          format: 'ndjson',
          key_field: 'tenant.id',
          auth: { type: 'hmac', secret: '${env:INGEST_SECRET}', header: 'X-Signature', algorithm: 'sha256', encoding: 'base64' },
        },
      ],
      max_body_bytes: '8MiB',
    },
  },
];

/** The webhook source connector definition, listed in `connectors/index.ts`. */
export const webhook = defineSource({
  kind: 'source',
  name: 'webhook',
  description:
    'Receives events over HTTP POST on one or more routes, each writing to its own topic: browser clickstreams (JSON, batches, ' +
    'navigator.sendBeacon\'s text/plain, CORS with preflight) and webhooks (bearer, basic, HMAC, and GitHub, Stripe and Shopify ' +
    'signatures, all compared in constant time). A request is answered 200 only once its events are durable in the log: concurrent ' +
    'requests share one append and one fsync (group commit), and a sender that got 200 never loses the event, even to kill -9. ' +
    'A body is taken whole or not at all: one bad event gets 400 with a JSON reason and nothing is appended. Other answers: 401 bad auth, ' +
    '403 origin not allowed, 413 body too large, 415 unsupported content type, 429 with Retry-After above the rate limit, and 503 with ' +
    'Retry-After when the log refuses writes, too many requests are pending, or the server is stopping. A repeated Idempotency-Key or ' +
    'delivery id within dedupe_window gets the first answer again and appends nothing. Records carry the headers received_at (ISO 8601), ' +
    'remote_addr, user_agent and request_id (also sent back as X-Request-Id), and the time of receipt as their timestamp. ' +
    'The source partition is the server (host:port) and the offset a per-process request sequence: the runtime stores it, but a restart ' +
    'resumes nothing, because nothing unacknowledged was promised. One task serves all routes, whatever tasks says.',
  configSchema: webhookSchema,
  examples: examples as unknown as ReadonlyArray<{ title: string; config: WebhookConfig }>,
  metrics: {
    requests_total: { type: 'counter', help: 'Requests answered, by route (empty for unknown paths) and HTTP status.', labels: ['route', 'status'] },
    events_total: { type: 'counter', help: 'Events made durable, by route.', labels: ['route'] },
    ack_seconds: { type: 'histogram', help: 'Time from receiving a request to answering it 200, including the append and its fsync.', labels: ['route'] },
    pending_requests: { type: 'gauge', help: 'Requests read or being read and not yet answered, sampled every second.' },
  },
  // Clients resend what was not answered 2xx, so there is nothing to resume from after a restart.
  storeOffsets: false,
  everyWorker: true,
  overlapPolls: false,
  producedTopics: (config: WebhookConfig) => {
    // Validation calls this on every config the schema accepted, so a path given twice is reported there.
    buildRoutes(config.routes, 0);
    return [...new Set(config.routes.map((route) => route.topic))];
  },
  /** Always one task: the server owns its port. */
  taskConfigs: (config: WebhookConfig) => {
    buildRoutes(config.routes, 0);
    return [config];
  },
  createTask: (config: WebhookConfig) => new WebhookTask(config),
});

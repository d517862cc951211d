/**
 * The webhook source's config schema: the one source of truth for its validation, its TypeScript
 * type ({@link WebhookConfig}) and the generated README.
 */
import { type ConfigOf, durationSchema, sizeSchema } from '../../core/connector.ts';

/** An RFC 9110 field name (a `token`). */
const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

/** Kafka's topic-name rule, as the log enforces it. */
const TOPIC_PATTERN = '^[A-Za-z0-9._-]{1,249}$';

/** The path every server answers itself, so no route may take it. */
export const HEALTH_PATH = '/healthz';

/** Defaults of the generic `hmac` auth block, shared by the schema (where ajv fills them in) and the docs. */
export const HMAC_DEFAULTS = {
  header: 'X-Signature',
  algorithm: 'sha256',
  encoding: 'hex',
  prefix: '',
} as const;

const authSchema = {
  type: 'object',
  default: { type: 'none' },
  description:
    'How requests on this route prove who sent them. Every comparison is constant-time. none: anyone may post. ' +
    'bearer: Authorization: Bearer <token>. basic: Authorization: Basic with username and password. ' +
    'hmac: a signature of the exact body bytes with a shared secret, in header, written as <prefix><digest>. ' +
    'github: X-Hub-Signature-256 (sha256= and the hex HMAC-SHA256 of the body); X-GitHub-Delivery de-duplicates. ' +
    'stripe: Stripe-Signature (t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">), rejected when t is further than tolerance from now; ' +
    'the event id in the body de-duplicates. shopify: X-Shopify-Hmac-Sha256 (the base64 HMAC-SHA256 of the body); X-Shopify-Webhook-Id de-duplicates. ' +
    'A request that fails auth gets 401 and appends nothing.',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: {
      type: 'string',
      enum: ['none', 'bearer', 'basic', 'hmac', 'github', 'stripe', 'shopify'],
      description: 'The scheme: none, bearer, basic, hmac, or the presets github, stripe and shopify.',
    },
    token: { type: 'string', minLength: 1, writeOnly: true, description: 'bearer: the token senders put in Authorization: Bearer <token>.' },
    username: { type: 'string', minLength: 1, description: 'basic: the user name.' },
    password: { type: 'string', minLength: 1, writeOnly: true, description: 'basic: the password.' },
    secret: {
      type: 'string',
      minLength: 1,
      writeOnly: true,
      description: 'hmac, github, stripe, shopify: the signing secret shared with the sender (Stripe calls it the endpoint secret, whsec_...).',
    },
    header: { type: 'string', pattern: HEADER_NAME_PATTERN, description: `hmac: the header that carries the signature. Default ${HMAC_DEFAULTS.header}.` },
    algorithm: { type: 'string', enum: ['sha1', 'sha256', 'sha512'], description: `hmac: the hash function of the HMAC. Default ${HMAC_DEFAULTS.algorithm}.` },
    encoding: { type: 'string', enum: ['hex', 'base64'], description: `hmac: how the digest is written. Default ${HMAC_DEFAULTS.encoding}.` },
    prefix: {
      type: 'string',
      description: "hmac: text the sender writes before the digest, e.g. 'sha256='. Default '' (the digest alone).",
    },
    tolerance: {
      ...durationSchema,
      description: 'stripe: how far the signed timestamp may be from the clock, either way, before the request counts as a replay. Default 5m, as in Stripe\'s libraries.',
    },
  },
  allOf: [
    {
      if: { type: 'object', properties: { type: { const: 'none' } }, required: ['type'] },
      then: { properties: { token: false, username: false, password: false, secret: false, header: false, algorithm: false, encoding: false, prefix: false, tolerance: false } },
    },
    {
      if: { type: 'object', properties: { type: { const: 'bearer' } }, required: ['type'] },
      then: {
        required: ['token'],
        properties: { username: false, password: false, secret: false, header: false, algorithm: false, encoding: false, prefix: false, tolerance: false },
      },
    },
    {
      if: { type: 'object', properties: { type: { const: 'basic' } }, required: ['type'] },
      then: {
        required: ['username', 'password'],
        properties: { token: false, secret: false, header: false, algorithm: false, encoding: false, prefix: false, tolerance: false },
      },
    },
    {
      if: { type: 'object', properties: { type: { const: 'hmac' } }, required: ['type'] },
      then: {
        required: ['secret'],
        properties: {
          token: false,
          username: false,
          password: false,
          tolerance: false,
          // Filled in here rather than at the top, so other schemes stay free of hmac settings.
          header: { default: HMAC_DEFAULTS.header },
          algorithm: { default: HMAC_DEFAULTS.algorithm },
          encoding: { default: HMAC_DEFAULTS.encoding },
        },
      },
    },
    {
      if: { type: 'object', properties: { type: { enum: ['github', 'shopify'] } }, required: ['type'] },
      then: {
        required: ['secret'],
        properties: { token: false, username: false, password: false, header: false, algorithm: false, encoding: false, prefix: false, tolerance: false },
      },
    },
    {
      if: { type: 'object', properties: { type: { const: 'stripe' } }, required: ['type'] },
      then: {
        required: ['secret'],
        properties: { token: false, username: false, password: false, header: false, algorithm: false, encoding: false, prefix: false, tolerance: { default: '5m' } },
      },
    },
  ],
} as const;

const routeSchema = {
  type: 'object',
  required: ['path', 'topic'],
  additionalProperties: false,
  properties: {
    path: {
      type: 'string',
      pattern: '^/(?!healthz$)[^?#\\s]*$',
      description: `The URL path senders POST to, matched exactly (the query string is ignored). Each path appears once; ${HEALTH_PATH} is the server's own.`,
      examples: ['/collect', '/hooks/github'],
    },
    topic: { type: 'string', pattern: TOPIC_PATTERN, description: 'The topic this route writes to.' },
    format: {
      type: 'string',
      enum: ['json', 'ndjson'],
      default: 'json',
      description:
        'json: the body is one event (a JSON object) or an array of them, a batch. ndjson: one JSON object per line; blank lines are skipped. ' +
        'Either way the body may come as application/json, application/x-ndjson, text/plain (what navigator.sendBeacon sends), ' +
        'or application/x-www-form-urlencoded (what curl -d sends; a payload= field, as GitHub\'s form content type sends, holds the body). ' +
        'Each event must be a JSON object; one bad event rejects the whole request with 400 and appends nothing. ' +
        'Record values are the bytes of each event as sent, never re-encoded, so large integers keep every digit.',
    },
    key_field: {
      type: 'string',
      minLength: 1,
      description:
        'The event field whose value becomes the record key, so that events with the same value land in the same partition, in order. ' +
        'A dotted path reaches into nested objects (user.id). Strings are used as they are, numbers and booleans as their JSON text; ' +
        'an event without the field gets no key (sticky partitioning). Unset: no keys.',
      examples: ['user_id'],
    },
    auth: authSchema,
    rate_limit: {
      type: 'object',
      required: ['requests_per_second'],
      additionalProperties: false,
      description:
        'A token bucket for this route as a whole (not per client: behind a proxy every client shares one address): ' +
        'requests beyond it get 429 with Retry-After, before their body is read. Unset: no limit.',
      properties: {
        requests_per_second: { type: 'number', exclusiveMinimum: 0, description: 'The sustained rate the bucket refills at.', examples: [1000] },
        burst: { type: 'integer', minimum: 1, description: 'How many requests may arrive at once above the rate. Default: one second\'s worth.' },
      },
    },
  },
} as const;

export const webhookSchema = {
  type: 'object',
  required: ['routes'],
  additionalProperties: false,
  properties: {
    host: {
      type: 'string',
      minLength: 1,
      default: '127.0.0.1',
      description:
        'The address to listen on. 127.0.0.1 takes requests from this machine only (a reverse proxy terminating TLS in front); ' +
        '0.0.0.0 takes them from anywhere. The server speaks plain HTTP.',
    },
    port: {
      type: 'integer',
      minimum: 0,
      maximum: 65535,
      default: 8080,
      description: 'The TCP port to listen on. 0 picks a free one, which the "listening" log line names.',
    },
    routes: {
      type: 'array',
      minItems: 1,
      items: routeSchema,
      description: `The paths senders POST to, each writing to its own topic. GET ${HEALTH_PATH} answers 200 while the server accepts requests, 503 while it is full or stopping.`,
    },
    max_body_bytes: {
      ...sizeSchema,
      default: '1MiB',
      description:
        'The largest request body. A larger one gets 413: at once when Content-Length says so, otherwise as soon as the limit is crossed, ' +
        'without reading the rest; the connection is then closed.',
    },
    max_pending: {
      type: 'integer',
      minimum: 1,
      default: 1024,
      description:
        'The most requests waiting for their events to become durable. Past it, requests get 503 with Retry-After: 1 before their body is read, ' +
        'so a log that falls behind pushes back on senders instead of filling memory.',
    },
    ack_timeout: {
      ...durationSchema,
      default: '30s',
      description:
        'How long a request may wait for its events to become durable (while the connector is paused, or the log retries a failing write) ' +
        'before it gets 503 with Retry-After. Events not yet handed to the log are then dropped; those already handed over may still be ' +
        'appended, so a sender that retries may create a duplicate unless it sends an Idempotency-Key.',
    },
    dedupe_window: {
      ...durationSchema,
      default: '24h',
      description:
        'How long an Idempotency-Key header (or a preset\'s delivery id: X-GitHub-Delivery, X-Shopify-Webhook-Id, a Stripe event id) is remembered per route. ' +
        'A repeat within the window gets the first request\'s 2xx again, with Idempotent-Replayed: true, and appends nothing; a repeat while ' +
        'the first is still pending waits for its answer. Only 2xx answers are remembered, so a request that failed may be retried with the same key. ' +
        'The memory is per process: a restart forgets every key. 0s turns de-duplication off.',
    },
    dedupe_max_keys: {
      type: 'integer',
      minimum: 1,
      default: 100000,
      description: 'The most keys remembered at once; past it the oldest are forgotten before their window ends.',
    },
    cors: {
      type: 'object',
      required: ['allowed_origins'],
      additionalProperties: false,
      description:
        'Lets web pages on these origins post events from the browser (fetch, navigator.sendBeacon), preflight included. When set, a request ' +
        'carrying an Origin header that is not allowed gets 403 and appends nothing. Unset: no CORS headers, and Origin is not checked.',
      properties: {
        allowed_origins: {
          type: 'array',
          minItems: 1,
          items: { type: 'string', pattern: '^(\\*|https?://[^/\\s]+)$' },
          description: 'Origins as browsers send them (scheme://host[:port]), or * for any.',
          examples: [['https://shop.example.com']],
        },
        allowed_headers: {
          type: 'array',
          items: { type: 'string', pattern: HEADER_NAME_PATTERN },
          default: ['Content-Type', 'Authorization', 'Idempotency-Key'],
          description: 'Request headers a preflight allows.',
        },
        max_age: { ...durationSchema, default: '10m', description: 'How long browsers may cache a preflight answer.' },
      },
    },
    trust_proxy: {
      type: 'boolean',
      default: false,
      description:
        'Take the client address from the left-most X-Forwarded-For entry rather than the socket. Only for a server that a reverse proxy alone can reach.',
    },
  },
} as const;

/** A validated webhook config, defaults filled in. */
export type WebhookConfig = ConfigOf<typeof webhookSchema>;

/** One route of a validated config. */
export type RouteConfig = WebhookConfig['routes'][number];

/** The auth block of a route. */
export type AuthConfig = NonNullable<RouteConfig['auth']>;

/**
 * The http sink's config schema: the one source of truth for its config type, its validation and
 * its reference doc.
 */
import { type ConfigOf, durationSchema, sizeSchema } from '../../core/connector.ts';

/** Defaults of the `hmac` auth block, shared by the schema (where ajv fills them in) and the task. */
export const HMAC_DEFAULTS = {
  header: 'X-Sluice-Signature',
  algorithm: 'sha256',
  encoding: 'hex',
  prefix: 'sha256=',
} as const;

/** An RFC 9110 field name (a `token`). */
const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

// Framing and connection headers belong to the HTTP client: a user value would either be ignored
// or, worse, contradict the body that is actually sent.
const RESERVED_HEADERS = ['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'host', 'te', 'trailer', 'upgrade'];

/** A pattern matching header `names` (letters and '-') case-insensitively; JSON Schema regexes have no `i` flag. */
function anyOfNamesIgnoringCase(names: readonly string[]): string {
  const ignoringCase = (name: string): string => [...name].map((c) => (/[a-z]/.test(c) ? `[${c}${c.toUpperCase()}]` : c)).join('');
  return `^(${names.map(ignoringCase).join('|')})$`;
}

const authSchema = {
  type: 'object',
  description:
    'Authenticates or signs every request. bearer sends Authorization: Bearer <token>. hmac signs the exact body bytes with HMAC-SHA256 ' +
    'and sends the signature in header, as <prefix><digest>; with timestamp_header it signs <timestamp>.<body> instead and sends the ' +
    'Unix time in seconds in that header, as Stripe does, so a receiver can reject replays. Headers set here replace headers of the same name.',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', enum: ['bearer', 'hmac'], description: 'bearer: a static token. hmac: a signature of each request body with a shared secret.' },
    token: { type: 'string', minLength: 1, writeOnly: true, description: 'bearer: the token sent as Authorization: Bearer <token>.' },
    secret: { type: 'string', minLength: 1, writeOnly: true, description: 'hmac: the shared secret the receiver verifies the signature with.' },
    header: {
      type: 'string',
      pattern: HEADER_NAME_PATTERN,
      description: `hmac: the header that carries the signature. Default ${HMAC_DEFAULTS.header}.`,
    },
    algorithm: { type: 'string', enum: ['sha256'], description: `hmac: the hash function. Default ${HMAC_DEFAULTS.algorithm}.` },
    encoding: { type: 'string', enum: ['hex', 'base64'], description: `hmac: how the digest is written. Default ${HMAC_DEFAULTS.encoding}.` },
    prefix: { type: 'string', description: `hmac: text written before the digest. Default '${HMAC_DEFAULTS.prefix}'; an empty string writes the digest alone.` },
    timestamp_header: {
      type: 'string',
      pattern: HEADER_NAME_PATTERN,
      description: 'hmac: when set, the header that carries the Unix time in seconds, and the signed text becomes <timestamp>.<body>.',
    },
  },
  allOf: [
    {
      if: { type: 'object', properties: { type: { const: 'bearer' } }, required: ['type'] },
      then: {
        required: ['token'],
        properties: { secret: false, header: false, algorithm: false, encoding: false, prefix: false, timestamp_header: false },
      },
    },
    {
      if: { type: 'object', properties: { type: { const: 'hmac' } }, required: ['type'] },
      then: {
        required: ['secret'],
        properties: {
          token: false,
          // Ajv fills these in here rather than at the top, so a bearer block stays free of hmac settings.
          header: { default: HMAC_DEFAULTS.header },
          algorithm: { default: HMAC_DEFAULTS.algorithm },
          encoding: { default: HMAC_DEFAULTS.encoding },
          prefix: { default: HMAC_DEFAULTS.prefix },
        },
      },
    },
  ],
} as const;

/** The `config` block of an http sink entry. */
export const schema = {
  type: 'object',
  required: ['url'],
  additionalProperties: false,
  properties: {
    url: {
      type: 'string',
      pattern: '^https?://[^/?#\\s]+',
      description:
        'Where batches are sent: an http:// or https:// URL. Redirects are not followed, so name the final address. ' +
        'Put credentials in headers or auth, which are redacted, rather than in the URL, which is not.',
    },
    method: { type: 'string', enum: ['POST', 'PUT'], default: 'POST', description: 'The request method.' },
    format: {
      type: 'string',
      enum: ['json_array', 'ndjson'],
      default: 'json_array',
      description:
        'json_array sends one JSON array per request (Content-Type: application/json). ndjson sends one JSON document per line ' +
        '(Content-Type: application/x-ndjson).',
    },
    body: {
      type: 'string',
      enum: ['value', 'envelope'],
      default: 'value',
      description:
        'value sends each record value: JSON values as they are, other values as JSON strings (UTF-8 decoded), tombstones as null. ' +
        'envelope sends {topic, partition, offset, timestamp, key, value, headers} per record, with offset as a decimal string, ' +
        'timestamp in milliseconds since the epoch, key encoded like value, and header values as UTF-8 strings.',
    },
    headers: {
      type: 'object',
      default: {},
      description:
        'Extra request headers. Values are treated as secrets (redacted from logs and API output), so API keys may go here. ' +
        'Content-Type may be overridden; framing headers such as Content-Length and Host may not.',
      propertyNames: { pattern: HEADER_NAME_PATTERN, not: { pattern: anyOfNamesIgnoringCase(RESERVED_HEADERS) } },
      additionalProperties: {
        type: 'string',
        // Node's own rule for header values: no control characters besides tab, so no injected lines.
        pattern: '^[\\t\\x20-\\x7e\\x80-\\xff]*$',
        writeOnly: true,
        description: 'A header value: printable text without line breaks.',
      },
    },
    auth: authSchema,
    timeout: {
      ...durationSchema,
      default: '30s',
      description: 'How long one request may take, from connecting to the end of the response. A request that times out is retried.',
    },
    max_batch_records: {
      type: 'integer',
      minimum: 1,
      default: 500,
      description: 'The most records in one request. A larger batch is split into several requests, sent in order.',
    },
    max_batch_bytes: {
      ...sizeSchema,
      default: '1MiB',
      description:
        'The largest request body, e.g. 512KiB. A larger batch is split into several requests, sent in order; a single record ' +
        'larger than this is sent alone.',
    },
  },
} as const;

/** The validated config, with defaults filled in. */
export type HttpSinkConfig = ConfigOf<typeof schema>;

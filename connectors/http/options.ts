/**
 * The validated config turned into what requests need: a parsed URL, milliseconds and bytes, the
 * fixed headers, and the auth headers computed per request body.
 */
import { createHmac } from 'node:crypto';
import { SluiceError, parseDuration, parseSize } from '../../core/connector.ts';
import { HMAC_DEFAULTS, type HttpSinkConfig } from './schema.ts';

/** How every request is authenticated, with the schema's defaults applied. */
export type ResolvedAuth =
  | { readonly type: 'bearer'; readonly token: string }
  | {
      readonly type: 'hmac';
      readonly secret: string;
      readonly header: string;
      readonly encoding: 'hex' | 'base64';
      readonly prefix: string;
      readonly timestampHeader: string | undefined;
    };

/** The config in the form the task uses. */
export interface HttpSinkOptions {
  readonly url: URL;
  readonly method: 'POST' | 'PUT';
  readonly format: 'json_array' | 'ndjson';
  readonly body: 'value' | 'envelope';
  /** Content-Type and User-Agent, overridden by the config's `headers`; names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  readonly auth: ResolvedAuth | undefined;
  readonly timeoutMs: number;
  readonly maxRecords: number;
  readonly maxBytes: number;
  /** Every secret text in the config, for scrubbing what the task reports. */
  readonly secrets: readonly string[];
}

/** Sent unless the config's headers override it; names the sender in the receiver's logs. */
export const USER_AGENT = 'sluice-http-sink';

const MIN_SCRUB_LENGTH = 4;

const CONTENT_TYPES = { json_array: 'application/json', ndjson: 'application/x-ndjson' } as const;

/**
 * Resolves a config that passed schema validation. Throws `CONFIG_INVALID`, naming the field, for
 * what the schema cannot see: a URL that matches the pattern but does not parse, or an auth block
 * whose required secret is missing because validation was bypassed.
 */
export function resolveOptions(config: HttpSinkConfig): HttpSinkOptions {
  let url: URL;
  try {
    url = new URL(config.url);
  } catch (err) {
    throw new SluiceError('CONFIG_INVALID', `url must be an http:// or https:// URL, got ${JSON.stringify(config.url)}`, {
      context: { field: 'url', value: config.url },
      cause: err,
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SluiceError('CONFIG_INVALID', `url must be an http:// or https:// URL, got ${JSON.stringify(config.url)}`, {
      context: { field: 'url', value: config.url },
    });
  }
  const headers: Record<string, string> = { 'content-type': CONTENT_TYPES[config.format], 'user-agent': USER_AGENT };
  for (const [name, value] of Object.entries(config.headers)) headers[name.toLowerCase()] = value;
  const auth = resolveAuth(config.auth);
  const secrets = [...Object.values(config.headers), ...(auth?.type === 'bearer' ? [auth.token] : auth?.type === 'hmac' ? [auth.secret] : [])];
  return {
    url,
    method: config.method,
    format: config.format,
    body: config.body,
    headers,
    auth,
    timeoutMs: parseDuration(config.timeout),
    maxRecords: config.max_batch_records,
    maxBytes: parseSize(config.max_batch_bytes),
    // As the runtime does, short texts are not scrubbed: removing `1` from every message would garble it.
    secrets: secrets.filter((s) => s.length >= MIN_SCRUB_LENGTH),
  };
}

function resolveAuth(auth: HttpSinkConfig['auth']): ResolvedAuth | undefined {
  if (auth === undefined) return undefined;
  if (auth.type === 'bearer') {
    if (auth.token === undefined) throw missing('auth.token', 'bearer');
    return { type: 'bearer', token: auth.token };
  }
  if (auth.secret === undefined) throw missing('auth.secret', 'hmac');
  return {
    type: 'hmac',
    secret: auth.secret,
    header: auth.header ?? HMAC_DEFAULTS.header,
    encoding: auth.encoding ?? HMAC_DEFAULTS.encoding,
    prefix: auth.prefix ?? HMAC_DEFAULTS.prefix,
    timestampHeader: auth.timestamp_header,
  };
}

function missing(field: string, type: string): SluiceError {
  return new SluiceError('CONFIG_INVALID', `${field} is required when auth.type is ${type}`, { context: { field } });
}

/**
 * The headers that authenticate one request body. For hmac the signature covers exactly `body`,
 * or `<timestamp>.<body>` with a timestamp header, so every request of a split batch, and every
 * retry, is signed anew.
 *
 * @param nowMs the clock, in milliseconds since the epoch; the timestamp header is in seconds.
 */
export function authHeaders(auth: ResolvedAuth | undefined, body: Buffer, nowMs: number): Record<string, string> {
  if (auth === undefined) return {};
  if (auth.type === 'bearer') return { authorization: `Bearer ${auth.token}` };
  const hmac = createHmac('sha256', auth.secret);
  const headers: Record<string, string> = {};
  if (auth.timestampHeader !== undefined) {
    const timestamp = String(Math.floor(nowMs / 1000));
    headers[auth.timestampHeader.toLowerCase()] = timestamp;
    hmac.update(`${timestamp}.`, 'utf8');
  }
  hmac.update(body);
  headers[auth.header.toLowerCase()] = `${auth.prefix}${hmac.digest(auth.encoding)}`;
  return headers;
}

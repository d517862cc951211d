/**
 * Request authentication for the webhook routes: bearer and basic credentials, generic HMAC
 * signatures and the GitHub, Stripe and Shopify presets.
 *
 * Every secret comparison is constant-time: both sides are reduced to fixed-length digests (a
 * SHA-256 of a token, or the HMAC itself) and compared with `crypto.timingSafeEqual`. A provided
 * signature that does not decode, or decodes to the wrong length, fails before any comparison; its
 * length is public anyway, since the algorithm is.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { parseDuration } from '../../core/connector.ts';
import { HMAC_DEFAULTS, type AuthConfig } from './schema.ts';

/** What a check concluded: allowed, or denied with a reason for the 401 body (never naming the secret). */
export type AuthResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/**
 * One route's authenticator. `beforeBody` runs on the headers alone, so bearer and basic reject a
 * request before reading its body; `afterBody` runs on the exact body bytes, for signatures.
 */
export interface Authenticator {
  /** The scheme, for the WWW-Authenticate header of a 401. */
  readonly challenge: string | null;
  beforeBody(headers: IncomingHttpHeaders): AuthResult;
  afterBody(headers: IncomingHttpHeaders, body: Buffer, nowMs: number): AuthResult;
  /** The sender's delivery id in the headers, for de-duplication (X-GitHub-Delivery...), or undefined. */
  deliveryId(headers: IncomingHttpHeaders): string | undefined;
  /** Whether the delivery id is the `id` of the (single) event in the body, as Stripe's is. */
  readonly deliveryIdInBody: boolean;
}

const OK: AuthResult = { ok: true };
const deny = (reason: string): AuthResult => ({ ok: false, reason });

const sha256 = (text: string | Buffer): Buffer => createHash('sha256').update(text).digest();

/** Constant-time equality of two texts of any length: their SHA-256 digests are compared. */
export function safeEqualText(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

/** Constant-time equality of a computed digest and a provided one; a length mismatch is simply unequal. */
function safeEqualDigest(expected: Buffer, provided: Buffer | null): boolean {
  if (provided === null || provided.length !== expected.length) return false;
  return timingSafeEqual(expected, provided);
}

const HEX = /^(?:[0-9a-fA-F]{2})+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes a signature strictly. Buffer.from(text, 'hex') stops at the first bad character instead
 * of failing, so a valid digest followed by junk would otherwise pass.
 */
export function decodeDigest(text: string, encoding: 'hex' | 'base64'): Buffer | null {
  if (text.length === 0) return null;
  if (encoding === 'hex') return HEX.test(text) ? Buffer.from(text, 'hex') : null;
  return BASE64.test(text) ? Buffer.from(text, 'base64') : null;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function hmac(algorithm: string, secret: string, ...parts: Array<string | Buffer>): Buffer {
  const mac = createHmac(algorithm, secret);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

const NO_BODY_CHECK = (): AuthResult => OK;
const NO_DELIVERY_ID = (): undefined => undefined;

/** Builds the authenticator of one route from its validated auth block. */
export function createAuthenticator(auth: AuthConfig | undefined): Authenticator {
  const config = auth ?? { type: 'none' };
  switch (config.type) {
    case 'none':
      return { challenge: null, beforeBody: () => OK, afterBody: NO_BODY_CHECK, deliveryId: NO_DELIVERY_ID, deliveryIdInBody: false };
    case 'bearer': {
      const expected = sha256(config.token!);
      return {
        challenge: 'Bearer',
        beforeBody(headers) {
          const value = header(headers, 'authorization');
          const match = value === undefined ? null : /^Bearer[ ]+(.+)$/i.exec(value);
          if (!match) return deny('missing Authorization: Bearer <token>');
          return timingSafeEqual(expected, sha256(match[1]!.trim())) ? OK : deny('wrong bearer token');
        },
        afterBody: NO_BODY_CHECK,
        deliveryId: NO_DELIVERY_ID,
        deliveryIdInBody: false,
      };
    }
    case 'basic': {
      const expectedUser = sha256(config.username!);
      const expectedPassword = sha256(config.password!);
      return {
        challenge: 'Basic realm="sluice", charset="UTF-8"',
        beforeBody(headers) {
          const value = header(headers, 'authorization');
          const match = value === undefined ? null : /^Basic[ ]+([A-Za-z0-9+/=]+)$/i.exec(value);
          if (!match) return deny('missing Authorization: Basic <credentials>');
          const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
          const colon = decoded.indexOf(':');
          if (colon < 0) return deny('malformed Basic credentials');
          // Both halves are compared, always, so the time does not say which one was wrong.
          const userOk = timingSafeEqual(expectedUser, sha256(decoded.slice(0, colon)));
          const passwordOk = timingSafeEqual(expectedPassword, sha256(decoded.slice(colon + 1)));
          return userOk && passwordOk ? OK : deny('wrong user name or password');
        },
        afterBody: NO_BODY_CHECK,
        deliveryId: NO_DELIVERY_ID,
        deliveryIdInBody: false,
      };
    }
    case 'hmac': {
      const name = (config.header ?? HMAC_DEFAULTS.header).toLowerCase();
      const algorithm = config.algorithm ?? HMAC_DEFAULTS.algorithm;
      const encoding = config.encoding ?? HMAC_DEFAULTS.encoding;
      const prefix = config.prefix ?? HMAC_DEFAULTS.prefix;
      return signatureAuth(null, (headers, body) => {
        const value = header(headers, name);
        if (value === undefined) return deny(`missing ${config.header ?? HMAC_DEFAULTS.header}`);
        if (!value.startsWith(prefix)) return deny(`${config.header ?? HMAC_DEFAULTS.header} must start with '${prefix}'`);
        const provided = decodeDigest(value.slice(prefix.length).trim(), encoding);
        return safeEqualDigest(hmac(algorithm, config.secret!, body), provided) ? OK : deny('signature does not match the body');
      });
    }
    case 'github':
      // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
      return signatureAuth('x-github-delivery', (headers, body) => {
        const value = header(headers, 'x-hub-signature-256');
        if (value === undefined) return deny('missing X-Hub-Signature-256');
        if (!value.startsWith('sha256=')) return deny("X-Hub-Signature-256 must start with 'sha256='");
        const provided = decodeDigest(value.slice('sha256='.length), 'hex');
        return safeEqualDigest(hmac('sha256', config.secret!, body), provided) ? OK : deny('signature does not match the body');
      });
    case 'shopify':
      // https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook
      return signatureAuth('x-shopify-webhook-id', (headers, body) => {
        const value = header(headers, 'x-shopify-hmac-sha256');
        if (value === undefined) return deny('missing X-Shopify-Hmac-Sha256');
        const provided = decodeDigest(value.trim(), 'base64');
        return safeEqualDigest(hmac('sha256', config.secret!, body), provided) ? OK : deny('signature does not match the body');
      });
    case 'stripe': {
      // https://docs.stripe.com/webhooks#verify-manually
      const toleranceMs = parseDuration(config.tolerance ?? '5m');
      const check = (headers: IncomingHttpHeaders, body: Buffer, nowMs: number): AuthResult => {
        const value = header(headers, 'stripe-signature');
        if (value === undefined) return deny('missing Stripe-Signature');
        let timestamp: string | undefined;
        const signatures: Buffer[] = [];
        for (const part of value.split(',')) {
          const eq = part.indexOf('=');
          if (eq < 0) continue;
          const key = part.slice(0, eq).trim();
          const val = part.slice(eq + 1).trim();
          if (key === 't') timestamp = val;
          else if (key === 'v1') {
            const digest = decodeDigest(val, 'hex');
            if (digest) signatures.push(digest);
          }
        }
        if (timestamp === undefined || !/^[0-9]{1,12}$/.test(timestamp)) return deny('Stripe-Signature has no timestamp t=');
        if (signatures.length === 0) return deny('Stripe-Signature has no v1 signature');
        if (Math.abs(nowMs - Number(timestamp) * 1000) > toleranceMs) return deny('Stripe-Signature timestamp is outside the tolerance');
        const expected = hmac('sha256', config.secret!, timestamp, '.', body);
        // Stripe sends one v1 per active secret while a secret is rolled; any of them may match.
        let matched = false;
        for (const signature of signatures) matched = safeEqualDigest(expected, signature) || matched;
        return matched ? OK : deny('signature does not match the body');
      };
      return { challenge: null, beforeBody: () => OK, afterBody: check, deliveryId: NO_DELIVERY_ID, deliveryIdInBody: true };
    }
  }
}

/** A scheme that signs the body; `deliveryHeader` (lower case) names the sender's delivery id, if it has one. */
function signatureAuth(deliveryHeader: string | null, check: (headers: IncomingHttpHeaders, body: Buffer) => AuthResult): Authenticator {
  return {
    challenge: null,
    beforeBody: () => OK,
    afterBody: (headers, body) => check(headers, body),
    deliveryId: deliveryHeader === null ? NO_DELIVERY_ID : (headers) => header(headers, deliveryHeader),
    deliveryIdInBody: false,
  };
}

/**
 * The HTTP side of the sink, on node:http and node:https alone: one request per call over a
 * keep-alive agent, a bounded copy of the response body for error reports, and the TCP/TLS probe
 * behind the health check.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

/** The most response-body bytes kept for an error report; the rest is read and dropped. */
export const MAX_RESPONSE_BODY = 1024;

/** A response, with at most {@link MAX_RESPONSE_BODY} bytes of its body. */
export interface HttpResponse {
  readonly status: number;
  readonly statusText: string;
  readonly headers: http.IncomingHttpHeaders;
  /** The start of the body, UTF-8 decoded. */
  readonly body: string;
  /** Whether `body` was cut. */
  readonly truncated: boolean;
}

/** One request to make. */
export interface HttpRequest {
  readonly url: URL;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  readonly agent: http.Agent;
  /** Aborts the request at any stage, including while the response body is still arriving. */
  readonly signal: AbortSignal;
}

/** A keep-alive agent for `url`'s scheme. Requests never overlap, so one socket is enough. */
export function createAgent(url: URL): http.Agent {
  const options = { keepAlive: true, maxSockets: 1 };
  return url.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
}

/**
 * Sends one request and resolves once the whole response has arrived, whatever its status:
 * waiting for the end lets the socket be reused and keeps a slow body inside the timeout. Redirects
 * are not followed. Rejects with the transport's error (refused, reset, aborted).
 */
export function sendRequest(request: HttpRequest): Promise<HttpResponse> {
  const transport = request.url.protocol === 'https:' ? https : http;
  return new Promise<HttpResponse>((resolve, reject) => {
    const req = transport.request(
      request.url,
      { method: request.method, headers: { ...request.headers, 'content-length': String(request.body.length) }, agent: request.agent, signal: request.signal },
      (res) => {
        const kept: Buffer[] = [];
        let keptBytes = 0;
        let seenBytes = 0;
        res.on('data', (chunk: Buffer) => {
          seenBytes += chunk.length;
          if (keptBytes < MAX_RESPONSE_BODY) {
            kept.push(chunk);
            keptBytes += chunk.length;
          }
        });
        res.on('end', () => {
          const body = Buffer.concat(kept).subarray(0, MAX_RESPONSE_BODY);
          resolve({
            status: res.statusCode ?? 0,
            statusText: res.statusMessage ?? '',
            headers: res.headers,
            body: body.toString('utf8'),
            truncated: seenBytes > body.length,
          });
        });
        res.on('error', reject);
        // A connection cut mid-body ends the stream without 'end' on some Node versions.
        res.on('close', () => {
          if (!res.complete) reject(Object.assign(new Error('the connection closed before the response was complete'), { code: 'ECONNRESET' }));
        });
      },
    );
    req.on('error', reject);
    req.end(request.body);
  });
}

/**
 * The wait a `Retry-After` header asks for, in milliseconds: delay-seconds or an HTTP date
 * (RFC 9110 §10.2.3). Undefined when absent or unreadable; a date in the past gives 0.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^[0-9]+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/**
 * `url` without user info, query or fragment, for messages and logs: those are where credentials
 * end up when someone puts them in a URL.
 */
export function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * Opens a TCP connection to `url`'s host and port, with a TLS handshake that verifies the
 * certificate for https, then closes it. It proves the target is reachable without sending data
 * or assuming the endpoint answers HEAD or OPTIONS. Rejects with the socket's error, or with an
 * error of code `ETIMEDOUT` or `ABORT_ERR`.
 */
export function probe(url: URL, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const secure = url.protocol === 'https:';
  // URL keeps the brackets of an IPv6 literal, which sockets do not accept.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port === '' ? (secure ? 443 : 80) : Number(url.port);
  return new Promise<void>((resolve, reject) => {
    const socket = secure
      ? tls.connect({ host, port, servername: net.isIP(host) === 0 ? host : undefined })
      : net.connect({ host, port });
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const onAbort = (): void => finish(Object.assign(new Error('the health check was aborted'), { code: 'ABORT_ERR' }));
    const timer = setTimeout(() => finish(Object.assign(new Error(`no connection within ${timeoutMs}ms`), { code: 'ETIMEDOUT' })), timeoutMs);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once(secure ? 'secureConnect' : 'connect', () => finish());
    socket.once('error', (err) => finish(err));
  });
}

/** Whether a socket error is a certificate problem: a misconfiguration that retrying will not fix. */
export function isCertificateError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(code);
}

/**
 * The webhook task: an HTTP server whose requests become records, each answered 2xx only once the
 * runtime says its records are durable in the log.
 *
 * A request's way through:
 * 1. at the door, without reading the body: route, CORS, bearer/basic auth, rate limit, the
 *    pending-request limit, content type, Content-Length against `max_body_bytes`;
 * 2. the body is read up to `max_body_bytes`, then signatures are checked on its exact bytes, the
 *    idempotency key is looked up, and the body is parsed into events (all or none);
 * 3. it is queued with a sequence number; `poll` hands every queued request to the runtime at once,
 *    so concurrent requests share one append and one fsync (group commit);
 * 4. `commit` answers every request up to the committed sequence with 200; `reject` answers them
 *    with 503 and Retry-After.
 *
 * Source offsets: the source partition is `{ server: '<host>:<port>' }` and each request's offset
 * is `{ boot, next_request }`, a sequence that starts over in every process (`boot` tells runs
 * apart). The runtime stores them as for any source, but the task never resumes from them: what
 * was not acknowledged was never promised, and the sender retries it.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  RetriableError,
  SluiceError,
  parseDuration,
  parseSize,
  type Headers,
  type SourceOffsetEntry,
  type SourcePartition,
  type SourceRecord,
  type SourceTask,
  type SourceTaskContext,
} from '../../core/connector.ts';
import { createAuthenticator, type Authenticator } from './auth.ts';
import { classifyContentType, keyOf, parseBody, type BodyError, type BodyKind, type ParsedEvent } from './body.ts';
import { DedupeStore, type StoredAnswer } from './dedupe.ts';
import { TokenBucket } from './rate-limit.ts';
import { HEALTH_PATH, type RouteConfig, type WebhookConfig } from './schema.ts';

/** The longest an idle `poll` waits for a request before returning `[]`. */
export const IDLE_POLL_MS = 1000;
/** A poll stops adding requests past this many events (a single request is never split). */
export const MAX_POLL_EVENTS = 10_000;
/** Retry-After, in seconds, of a 503 when the pending-request limit is reached. */
export const RETRY_AFTER_FULL_S = 1;
/** Retry-After, in seconds, of a 503 when the log refused the events, the ack timed out or the server is stopping. */
export const RETRY_AFTER_UNAVAILABLE_S = 5;

/** Node's own limit on receiving a whole request; a slow body would otherwise hold a pending slot for 5 minutes. */
const REQUEST_TIMEOUT_MS = 60_000;
/** How long `stop` lets connections finish their last response before cutting them. */
const CLOSE_GRACE_MS = 500;
/** How long a connection that sent too large a body may keep sending before it is cut. */
const OVERSIZE_LINGER_MS = 1000;

const EXPOSED_HEADERS = 'X-Request-Id, Retry-After, Idempotent-Replayed';

/** Counter increments of one route not yet passed to the metrics. */
interface Tallies {
  events: number;
  /** Requests answered, by status. */
  readonly statuses: Map<number, number>;
}

interface Route {
  readonly path: string;
  readonly tallies: Tallies;
  readonly topic: string;
  readonly format: 'json' | 'ndjson';
  readonly keyPath: readonly string[] | null;
  readonly auth: Authenticator;
  readonly bucket: TokenBucket | null;
}

/** Where an accepted request stands. */
type Stage = 'queued' | 'inflight' | 'settled';

/** A request whose events wait to become durable. */
interface Accepted {
  readonly seq: number;
  readonly route: Route;
  readonly res: http.ServerResponse;
  readonly origin: string | null;
  readonly requestId: string;
  readonly receivedAt: number;
  readonly records: SourceRecord[];
  readonly dedupeKey: string | null;
  stage: Stage;
  /** The response is sent (or the client is gone): nothing more may be written. */
  replied: boolean;
}

/** What a request carries from the door to the queue. */
interface Incoming {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly route: Route;
  readonly origin: string | null;
  readonly requestId: string;
  readonly receivedAt: number;
  readonly kind: BodyKind;
}

interface Cors {
  readonly any: boolean;
  readonly origins: ReadonlySet<string>;
  readonly allowHeaders: string;
  readonly maxAgeS: string;
}

/**
 * Serves the routes of one config. One task per connector: a port has one owner.
 *
 * Concurrency: request handlers, `poll`, `commit`, `reject` and the ack-timeout sweep all run on
 * the event loop and touch the queues synchronously, so no two interleave within a step.
 */
export class WebhookTask implements SourceTask {
  readonly #config: WebhookConfig;
  #ctx: SourceTaskContext | undefined;
  #server: http.Server | undefined;
  #routes = new Map<string, Route>();
  #cors: Cors | null = null;
  #dedupe: DedupeStore;
  #partition: SourcePartition = { server: '' };
  readonly #boot = randomBytes(4).toString('hex');
  #maxBodyBytes = 0;
  #ackTimeoutMs = 0;
  #seq = 0;
  #requestCount = 0;
  /** Requests admitted past the pending-request check and not yet answered. */
  #pending = 0;
  #queue: Accepted[] = [];
  #inflight: Accepted[] = [];
  /** Counter increments of requests that matched no route. */
  readonly #unrouted: Tallies = { events: 0, statuses: new Map() };
  #wake: (() => void) | null = null;
  /** The received_at header of the last millisecond seen; requests of one millisecond share it. */
  #stampMs = -1;
  #stamp: Buffer = Buffer.alloc(0);
  /** Per connection: the remote address and user agent headers, shared by its requests. */
  #peers = new WeakMap<object, { addr: Buffer; agentText: string | undefined; agent: Buffer | undefined }>();
  #wakeScheduled = false;
  #sweeper: NodeJS.Timeout | undefined;
  /** Set when the task's signal aborts: new requests get 503 at the door. */
  #draining = false;
  #stopped = false;

  /** Called by the runtime through `createTask`; does no I/O. */
  constructor(config: WebhookConfig) {
    this.#config = config;
    this.#dedupe = new DedupeStore(parseDuration(config.dedupe_window), config.dedupe_max_keys);
  }

  /** Where the server listens, once started: for tests and for port 0. */
  get address(): { host: string; port: number; url: string } {
    const info = this.#server?.address() as AddressInfo | null | undefined;
    if (!info) throw new SluiceError('INVALID_ARGUMENT', 'the webhook server is not listening');
    const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
    return { host: info.address, port: info.port, url: `http://${host}:${info.port}` };
  }

  /**
   * Builds the routes and starts listening. A port already in use is a {@link RetriableError}
   * (an old process may still be letting go of it); any other listen error is fatal. Committed
   * offsets are ignored: nothing is resumed.
   */
  async start(ctx: SourceTaskContext): Promise<void> {
    const config = this.#config;
    this.#ctx = ctx;
    this.#maxBodyBytes = parseSize(config.max_body_bytes);
    this.#ackTimeoutMs = parseDuration(config.ack_timeout);
    this.#routes = buildRoutes(config.routes, Date.now());
    if (config.cors) {
      this.#cors = {
        any: config.cors.allowed_origins.includes('*'),
        origins: new Set(config.cors.allowed_origins.map((o) => o.toLowerCase())),
        allowHeaders: config.cors.allowed_headers.join(', '),
        maxAgeS: String(Math.floor(parseDuration(config.cors.max_age) / 1000)),
      };
    }
    const server = http.createServer({ requestTimeout: REQUEST_TIMEOUT_MS }, (req, res) => this.#onRequest(req, res, false));
    // curl and others ask before sending a large body; a request refused at the door is refused
    // before its body is sent at all.
    server.on('checkContinue', (req, res) => this.#onRequest(req, res, true));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      server.close();
      const code = (err as NodeJS.ErrnoException).code;
      const where = `${config.host}:${config.port}`;
      if (code === 'EADDRINUSE') throw new RetriableError(`webhook: ${where} is already in use`, { context: { host: config.host, port: config.port }, cause: err });
      throw new SluiceError('CONFIG_INVALID', `webhook: cannot listen on ${where}: ${(err as Error).message}`, { context: { host: config.host, port: config.port }, cause: err });
    }
    server.on('error', (err) => ctx.logger.error({ err }, 'webhook server error'));
    this.#server = server;
    this.#partition = { server: `${config.host}:${config.port}` };
    ctx.signal.addEventListener('abort', () => (this.#draining = true), { once: true });
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), Math.min(1000, Math.max(10, this.#ackTimeoutMs / 4)));
    this.#sweeper.unref();
    const { url } = this.address;
    ctx.logger.info({ url, routes: [...this.#routes.values()].map((r) => ({ path: r.path, topic: r.topic })) }, `webhook listening on ${url}`);
  }

  /**
   * Returns the events of every queued request, in arrival order, up to {@link MAX_POLL_EVENTS}
   * (whole requests only). When none is queued it waits up to {@link IDLE_POLL_MS} for one, and
   * returns at once when `signal` aborts.
   */
  async poll(signal: AbortSignal): Promise<readonly SourceRecord[]> {
    if (this.#queue.length === 0 && !signal.aborted && !this.#stopped) await this.#waitForRequests(signal);
    return this.#take();
  }

  /**
   * Answers 200 to every request whose events `offsets` cover, at once. Measured against writing
   * the answers in the next check phase (so that the runtime's next append starts first): writing
   * them here cost less CPU per request and gave more requests/s, with `fsync: interval` and
   * `always` alike, since every answer goes out one event-loop turn sooner.
   */
  async commit(offsets: readonly SourceOffsetEntry[]): Promise<void> {
    const next = this.#nextOf(offsets);
    if (next === null) return;
    const now = Date.now();
    this.#settle(next, (r) => {
      if (r.dedupeKey !== null) this.#dedupe.resolve(r.dedupeKey, { status: 200, body: okBody(r), requestId: r.requestId }, now);
      r.route.tallies.events += r.records.length;
      if (r.replied || this.#gone(r)) return;
      this.#ctx?.metrics.observe('ack_seconds', (now - r.receivedAt) / 1000, { route: r.route.path });
      this.#send(r, 200, okBody(r), r.requestId, null);
    });
  }

  /** Answers 503 with Retry-After to every request whose events the runtime gave up appending. */
  async reject(offsets: readonly SourceOffsetEntry[], error: Error): Promise<void> {
    const next = this.#nextOf(offsets);
    if (next === null) return;
    let requests = 0;
    this.#settle(next, (r) => {
      requests++;
      if (r.dedupeKey !== null) this.#dedupe.forget(r.dedupeKey);
      if (!r.replied) this.#fail(r, 503, 'unavailable', 'the log did not accept the events; retry later', RETRY_AFTER_UNAVAILABLE_S);
    });
    this.#ctx?.logger.warn({ err: error, requests }, `the log refused a batch; answered ${requests} requests with 503`);
  }

  /** Stops listening, answers every request still waiting with 503, and closes every connection. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#draining = true;
    clearInterval(this.#sweeper);
    this.#wake?.();
    let answered = 0;
    for (const r of [...this.#queue, ...this.#inflight]) {
      if (r.dedupeKey !== null && r.stage !== 'settled') this.#dedupe.forget(r.dedupeKey);
      r.stage = 'settled';
      if (!r.replied && !this.#gone(r)) {
        answered++;
        this.#fail(r, 503, 'unavailable', 'the server is stopping; retry later', RETRY_AFTER_UNAVAILABLE_S);
      }
    }
    this.#queue = [];
    this.#inflight = [];
    const server = this.#server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    server.closeAllConnections();
    await closed;
    this.#flushTallies();
    this.#ctx?.logger.info({ answered_503: answered }, 'webhook server stopped');
  }

  // -------------------------------------------------------------------------------------------
  // The queue

  #waitForRequests(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, IDLE_POLL_MS);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  /** Wakes a waiting poll after the current I/O phase, so requests that completed together go together. */
  #notify(): void {
    if (this.#wake === null || this.#wakeScheduled) return;
    this.#wakeScheduled = true;
    setImmediate(() => {
      this.#wakeScheduled = false;
      this.#wake?.();
    });
  }

  #take(): SourceRecord[] {
    const out: SourceRecord[] = [];
    let i = 0;
    for (; i < this.#queue.length; i++) {
      const r = this.#queue[i]!;
      if (r.stage !== 'queued') continue;
      if (r.res.destroyed) {
        this.#drop(r);
        continue;
      }
      if (out.length > 0 && out.length + r.records.length > MAX_POLL_EVENTS) break;
      r.stage = 'inflight';
      this.#inflight.push(r);
      for (const record of r.records) out.push(record);
    }
    this.#queue = i === this.#queue.length ? [] : this.#queue.slice(i);
    return out;
  }

  /** Drops a queued request whose client hung up: nothing of it is appended, so its retry is no duplicate. */
  #drop(r: Accepted): void {
    r.stage = 'settled';
    r.replied = true;
    this.#pending--;
    if (r.dedupeKey !== null) this.#dedupe.forget(r.dedupeKey);
  }

  /** The `next_request` our partition reached in `offsets`, or null when they are not ours (another boot). */
  #nextOf(offsets: readonly SourceOffsetEntry[]): number | null {
    for (const entry of offsets) {
      if (entry.sourcePartition['server'] !== this.#partition['server'] || entry.sourceOffset['boot'] !== this.#boot) continue;
      const next = entry.sourceOffset['next_request'];
      if (typeof next === 'number') return next;
    }
    return null;
  }

  /** Settles, in order, every in-flight request below `next`. */
  #settle(next: number, each: (r: Accepted) => void): void {
    let i = 0;
    for (; i < this.#inflight.length && this.#inflight[i]!.seq < next; i++) {
      const r = this.#inflight[i]!;
      r.stage = 'settled';
      each(r);
    }
    if (i > 0) this.#inflight = this.#inflight.slice(i);
  }

  /**
   * Answers 503 to requests older than `ack_timeout`. Queued ones are dropped, so nothing of them
   * is appended; in-flight ones are already with the log, so their outcome still settles their
   * idempotency key, and a retry carrying it gets the 2xx if they made it.
   */
  #sweep(now: number): void {
    const limit = now - this.#ackTimeoutMs;
    let dropped = false;
    for (const r of this.#queue) {
      if (r.stage !== 'queued') continue;
      if (r.res.destroyed) {
        // The client hung up while nothing polls (a paused pipeline): its slot is freed now.
        this.#drop(r);
        dropped = true;
        continue;
      }
      if (r.receivedAt > limit) continue;
      r.stage = 'settled';
      dropped = true;
      if (r.dedupeKey !== null) this.#dedupe.forget(r.dedupeKey);
      if (!r.replied) this.#fail(r, 503, 'unavailable', 'the events did not become durable in time; nothing was stored, retry later', RETRY_AFTER_UNAVAILABLE_S);
    }
    if (dropped) this.#queue = this.#queue.filter((r) => r.stage === 'queued');
    for (const r of this.#inflight) {
      if (r.replied || r.receivedAt > limit) continue;
      this.#fail(r, 503, 'unavailable', 'the events did not become durable in time; they may still be stored, retry with the same Idempotency-Key', RETRY_AFTER_UNAVAILABLE_S);
    }
    this.#ctx?.metrics.gauge('pending_requests', this.#pending);
    this.#flushTallies();
  }

  // Counting on the route and passing the sums on once a second keeps the metrics' label handling
  // off the path of every request (measured: a string key per count cost 3% of a small request).
  #tally(route: Route | null, status: number): void {
    const statuses = (route?.tallies ?? this.#unrouted).statuses;
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
  }

  #flushTallies(): void {
    const metrics = this.#ctx?.metrics;
    if (!metrics) return;
    const flush = (path: string, tallies: Tallies): void => {
      if (tallies.events > 0) metrics.count('events_total', tallies.events, { route: path });
      tallies.events = 0;
      for (const [status, n] of tallies.statuses) {
        if (n > 0) metrics.count('requests_total', n, { route: path, status: String(status) });
        tallies.statuses.set(status, 0);
      }
    };
    for (const route of this.#routes.values()) flush(route.path, route.tallies);
    flush('', this.#unrouted);
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse, expectsContinue: boolean): void {
    const receivedAt = Date.now();
    const requestId = `${this.#boot}-${(++this.#requestCount).toString(36)}`;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path === HEALTH_PATH) {
      this.#health(req, res, requestId);
      return;
    }
    const route = this.#routes.get(path);
    if (route === undefined) {
      this.#reject(res, null, null, requestId, 404, 'not_found', `no route ${path}`);
      return;
    }
    let origin: string | null = null;
    const originHeader = req.headers.origin;
    if (this.#cors !== null && originHeader !== undefined) {
      if (!this.#cors.any && !this.#cors.origins.has(originHeader.toLowerCase())) {
        this.#reject(res, route, null, requestId, 403, 'origin_not_allowed', `origin ${originHeader} is not allowed`);
        return;
      }
      origin = originHeader;
    }
    if (req.method === 'OPTIONS') {
      this.#preflight(res, route, origin, requestId);
      return;
    }
    if (req.method !== 'POST') {
      this.#reject(res, route, origin, requestId, 405, 'method_not_allowed', `use POST, not ${req.method}`, { Allow: 'POST, OPTIONS' });
      return;
    }
    if (this.#draining) {
      this.#reject(res, route, origin, requestId, 503, 'unavailable', 'the server is stopping; retry later', { 'Retry-After': String(RETRY_AFTER_UNAVAILABLE_S), Connection: 'close' });
      return;
    }
    const auth = route.auth.beforeBody(req.headers);
    if (!auth.ok) {
      this.#reject(res, route, origin, requestId, 401, 'unauthorized', auth.reason, route.auth.challenge ? { 'WWW-Authenticate': route.auth.challenge } : undefined);
      return;
    }
    if (route.bucket !== null) {
      const wait = route.bucket.take(receivedAt);
      if (wait > 0) {
        this.#reject(res, route, origin, requestId, 429, 'rate_limited', `the route takes at most ${this.#rateOf(route)} requests per second`, { 'Retry-After': String(wait) });
        return;
      }
    }
    if (this.#pending >= this.#config.max_pending) {
      this.#reject(res, route, origin, requestId, 503, 'overloaded', `${this.#pending} requests are waiting to become durable; retry later`, { 'Retry-After': String(RETRY_AFTER_FULL_S) });
      return;
    }
    const type = classifyContentType(req.headers['content-type']);
    if (!type.ok) {
      this.#reject(res, route, origin, requestId, type.problem.status, type.problem.error, type.problem.message);
      return;
    }
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > this.#maxBodyBytes) {
      this.#tooLarge(req, res, route, origin, requestId);
      return;
    }
    this.#pending++;
    if (expectsContinue) res.writeContinue();
    this.#readBody({ req, res, route, origin, requestId, receivedAt, kind: type.kind });
  }

  #readBody(incoming: Incoming): void {
    const { req, res } = incoming;
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > this.#maxBodyBytes) {
        over = true;
        chunks.length = 0;
        this.#pending--;
        this.#tooLarge(req, res, incoming.route, incoming.origin, incoming.requestId);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (over) return;
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      this.#onBody(incoming, body);
    });
    req.on('close', () => {
      // The client went away before sending its whole body: nothing to answer, nothing to append.
      if (!req.complete && !over) {
        over = true;
        this.#pending--;
      }
    });
  }

  #onBody(incoming: Incoming, body: Buffer): void {
    const { req, route } = incoming;
    if (this.#draining) {
      this.#pending--;
      this.#reject(incoming.res, route, incoming.origin, incoming.requestId, 503, 'unavailable', 'the server is stopping; retry later', { 'Retry-After': String(RETRY_AFTER_UNAVAILABLE_S), Connection: 'close' });
      return;
    }
    const auth = route.auth.afterBody(req.headers, body, Date.now());
    if (!auth.ok) {
      this.#pending--;
      this.#reject(incoming.res, route, incoming.origin, incoming.requestId, 401, 'unauthorized', auth.reason);
      return;
    }
    const headerKey = idempotencyKey(req.headers) ?? route.auth.deliveryId(req.headers);
    if (headerKey !== undefined) {
      this.#admitWithKey(incoming, body, headerKey, null);
      return;
    }
    const parsed = parseBody(body, route.format, incoming.kind);
    if (!parsed.ok) {
      this.#badBody(incoming, parsed.problem);
      return;
    }
    const bodyKey = route.auth.deliveryIdInBody ? eventId(parsed.events) : undefined;
    if (bodyKey !== undefined) this.#admitWithKey(incoming, body, bodyKey, parsed.events);
    else this.#enqueue(incoming, parsed.events, null);
  }

  /**
   * De-duplicates on `key`: replays a remembered 2xx, waits for a pending first request, or goes on
   * with this one as the first. `events` is the parsed body when the key came from it.
   */
  #admitWithKey(incoming: Incoming, body: Buffer, key: string, events: ParsedEvent[] | null): void {
    if (!this.#dedupe.enabled) {
      this.#parseAndEnqueue(incoming, body, events, null);
      return;
    }
    const scoped = `${incoming.route.path}\u0000${key}`;
    const known = this.#dedupe.claim(scoped, Date.now(), (answer) => {
      // The first request settled: replay its 2xx, or, when it failed, try again as the first.
      if (incoming.res.destroyed) {
        this.#pending--;
        return;
      }
      if (answer !== null) this.#replay(incoming, answer);
      else this.#admitWithKey(incoming, body, key, events);
    });
    if (known === 'pending') return;
    if (known === 'new') this.#parseAndEnqueue(incoming, body, events, scoped);
    else this.#replay(incoming, known);
  }

  #parseAndEnqueue(incoming: Incoming, body: Buffer, events: ParsedEvent[] | null, dedupeKey: string | null): void {
    let parsed = events;
    if (parsed === null) {
      const result = parseBody(body, incoming.route.format, incoming.kind);
      if (!result.ok) {
        if (dedupeKey !== null) this.#dedupe.forget(dedupeKey);
        this.#badBody(incoming, result.problem);
        return;
      }
      parsed = result.events;
    }
    this.#enqueue(incoming, parsed, dedupeKey);
  }

  #enqueue(incoming: Incoming, events: readonly ParsedEvent[], dedupeKey: string | null): void {
    const { route, receivedAt, requestId, req, res } = incoming;
    const seq = ++this.#seq;
    if (events.length === 0) {
      // Nothing to make durable: the empty batch is answered at once.
      const body = JSON.stringify({ accepted: 0, request_id: requestId });
      if (dedupeKey !== null) this.#dedupe.resolve(dedupeKey, { status: 200, body, requestId }, Date.now());
      this.#pending--;
      this.#write(res, route, incoming.origin, requestId, 200, body, undefined);
      return;
    }
    // Header values are shared read-only Buffers: on a keep-alive connection most requests carry
    // the same address and agent, and many arrive within one millisecond.
    if (receivedAt !== this.#stampMs) {
      this.#stampMs = receivedAt;
      this.#stamp = Buffer.from(new Date(receivedAt).toISOString());
    }
    const agentText = req.headers['user-agent'];
    let peer = this.#peers.get(req.socket);
    if (peer === undefined || peer.agentText !== agentText || this.#config.trust_proxy) {
      peer = { addr: Buffer.from(this.#remoteAddress(req)), agentText, agent: agentText === undefined ? undefined : Buffer.from(agentText) };
      if (!this.#config.trust_proxy) this.#peers.set(req.socket, peer);
    }
    const headers: Headers = { received_at: this.#stamp, remote_addr: peer.addr, request_id: Buffer.from(requestId) };
    if (peer.agent !== undefined) headers['user_agent'] = peer.agent;
    const sourceOffset = { boot: this.#boot, next_request: seq + 1 };
    const records: SourceRecord[] = new Array(events.length);
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      records[i] = {
        sourcePartition: this.#partition,
        sourceOffset,
        topic: route.topic,
        key: route.keyPath === null ? null : keyOf(event.object, route.keyPath),
        value: event.value,
        headers,
        timestamp: receivedAt,
      };
    }
    // A client that gives up waiting is noticed from `res.destroyed` when the request is polled or
    // answered, not through a 'close' listener per request: listeners were a measurable share of
    // the cost of a small request.
    const accepted: Accepted = { seq, route, res, origin: incoming.origin, requestId, receivedAt, records, dedupeKey, stage: 'queued', replied: false };
    this.#queue.push(accepted);
    this.#notify();
  }

  #badBody(incoming: Incoming, problem: BodyError): void {
    this.#pending--;
    this.#reject(incoming.res, incoming.route, incoming.origin, incoming.requestId, problem.status, problem.error, problem.message);
  }

  #replay(incoming: Incoming, answer: StoredAnswer): void {
    this.#pending--;
    this.#write(incoming.res, incoming.route, incoming.origin, answer.requestId, answer.status, answer.body, { 'Idempotent-Replayed': 'true' });
  }

  #tooLarge(req: http.IncomingMessage, res: http.ServerResponse, route: Route, origin: string | null, requestId: string): void {
    this.#reject(res, route, origin, requestId, 413, 'body_too_large', `the body is larger than max_body_bytes (${this.#maxBodyBytes} bytes)`, { Connection: 'close' });
    // The rest of the body is not read: Node discards what still arrives, and the connection is cut
    // if the client keeps sending past a short grace.
    const socket = req.socket;
    const timer = setTimeout(() => socket.destroy(), OVERSIZE_LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  #health(req: http.IncomingMessage, res: http.ServerResponse, requestId: string): void {
    const status = this.#draining ? 'stopping' : this.#pending >= this.#config.max_pending ? 'full' : 'ok';
    const body = JSON.stringify({ status, pending: this.#pending });
    const code = status === 'ok' ? 200 : 503;
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'X-Request-Id': requestId, 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  #preflight(res: http.ServerResponse, route: Route, origin: string | null, requestId: string): void {
    const headers: Record<string, string> = { Allow: 'POST, OPTIONS', 'X-Request-Id': requestId };
    if (this.#cors !== null && origin !== null) {
      headers['Access-Control-Allow-Origin'] = origin;
      headers['Access-Control-Allow-Methods'] = 'POST, OPTIONS';
      headers['Access-Control-Allow-Headers'] = this.#cors.allowHeaders;
      headers['Access-Control-Max-Age'] = this.#cors.maxAgeS;
      headers['Vary'] = 'Origin';
    }
    res.writeHead(204, headers);
    res.end();
    this.#tally(route, 204);
  }

  // -------------------------------------------------------------------------------------------
  // Replies

  /** Answers an accepted request with an error (once); the caller settles its stage. */
  #fail(r: Accepted, status: number, error: string, message: string, retryAfterS: number): void {
    this.#send(r, status, JSON.stringify({ error, message, request_id: r.requestId }), r.requestId, { 'Retry-After': String(retryAfterS) });
  }

  /** Settles the pending slot of a request whose client is gone, with nobody left to answer; true if so. */
  #gone(r: Accepted): boolean {
    if (!r.res.destroyed) return false;
    r.replied = true;
    this.#pending--;
    return true;
  }

  #send(r: Accepted, status: number, body: string, requestId: string, extra: Record<string, string> | null): void {
    if (this.#gone(r)) return;
    r.replied = true;
    this.#pending--;
    this.#write(r.res, r.route, r.origin, requestId, status, body, extra ?? undefined);
  }

  /** Answers a request that was never accepted: a JSON reason, and the status counted. */
  #reject(res: http.ServerResponse, route: Route | null, origin: string | null, requestId: string, status: number, error: string, message: string, extra?: Record<string, string>): void {
    this.#write(res, route, origin, requestId, status, JSON.stringify({ error, message, request_id: requestId }), extra);
  }

  #write(res: http.ServerResponse, route: Route | null, origin: string | null, requestId: string, status: number, body: string, extra: Record<string, string> | undefined): void {
    this.#tally(route, status);
    if (res.destroyed || res.headersSent) return;
    const headers: Record<string, string | number> = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'X-Request-Id': requestId };
    if (origin !== null) {
      headers['Access-Control-Allow-Origin'] = origin;
      headers['Access-Control-Expose-Headers'] = EXPOSED_HEADERS;
      headers['Vary'] = 'Origin';
    }
    if (extra !== undefined) Object.assign(headers, extra);
    res.writeHead(status, headers);
    res.end(body);
  }

  #remoteAddress(req: http.IncomingMessage): string {
    if (this.#config.trust_proxy) {
      const forwarded = req.headers['x-forwarded-for'];
      const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim();
      if (first) return first;
    }
    return req.socket.remoteAddress ?? '';
  }

  #rateOf(route: Route): number {
    return this.#config.routes.find((r) => r.path === route.path)?.rate_limit?.requests_per_second ?? 0;
  }
}

/** The routes of a config by path. Throws `CONFIG_INVALID` for a path given twice. */
export function buildRoutes(routes: readonly RouteConfig[], nowMs: number): Map<string, Route> {
  const out = new Map<string, Route>();
  for (const r of routes) {
    if (out.has(r.path)) {
      throw new SluiceError('CONFIG_INVALID', `webhook: route path ${r.path} appears twice; each path writes one topic`, { context: { field: 'routes', value: r.path } });
    }
    const limit = r.rate_limit;
    out.set(r.path, {
      path: r.path,
      topic: r.topic,
      format: r.format,
      keyPath: r.key_field === undefined ? null : r.key_field.split('.'),
      tallies: { events: 0, statuses: new Map() },
      auth: createAuthenticator(r.auth),
      bucket: limit ? new TokenBucket(limit.requests_per_second, limit.burst ?? Math.max(1, Math.ceil(limit.requests_per_second)), nowMs) : null,
    });
  }
  return out;
}

function okBody(r: Accepted): string {
  return `{"accepted":${r.records.length},"request_id":${JSON.stringify(r.requestId)}}`;
}

function idempotencyKey(headers: http.IncomingHttpHeaders): string | undefined {
  const value = headers['idempotency-key'];
  const key = Array.isArray(value) ? value[0] : value;
  return key === undefined || key === '' ? undefined : key;
}

/** The `id` of a body holding exactly one event, as Stripe's event ids are. */
function eventId(events: readonly ParsedEvent[]): string | undefined {
  if (events.length !== 1) return undefined;
  const id = events[0]!.object['id'];
  return typeof id === 'string' && id !== '' ? id : undefined;
}

/**
 * The REST admin API: what `sluice run --api HOST:PORT` serves, on plain `node:http`. Routes and
 * response shapes follow Kafka Connect's REST API wherever it has one, so its clients and habits
 * carry over; sluice's extras (records in and out, DLQ counts, lag) are added as extra fields.
 *
 * | Route                                   | Answer                                                       |
 * | --------------------------------------- | ------------------------------------------------------------ |
 * | `GET /`                                 | `{ version, commit }`                                        |
 * | `GET /connectors[?expand=status\|info]` | names, or a map name → `{ status, info }`                    |
 * | `GET /connectors/NAME`                  | `{ name, config, tasks: [{ connector, task }], type }`       |
 * | `GET /connectors/NAME/config`           | the entry as configured, secrets redacted                    |
 * | `GET /connectors/NAME/status`           | `{ name, connector: { state, worker_id, trace? }, tasks, type }` |
 * | `GET /connectors/NAME/tasks/ID/status`  | `{ id, state, worker_id, trace? }`                           |
 * | `PUT /connectors/NAME/pause`, `/resume` | 202, empty                                                   |
 * | `POST /connectors/NAME/restart`         | 204 once restarted (202 with the status for `includeTasks`/`onlyFailed`) |
 * | `GET /connectors/NAME/offsets`          | `{ offsets: [{ partition, offset }] }` plus the group and lag for sinks |
 * | `GET /cluster`                          | the worker group: its workers, and every task's owner and state (404 without `--cluster`) |
 * | `GET /health`                           | 200 `{ status: 'healthy' }` or 503 `{ status: 'unhealthy', reasons }` |
 * | `GET /metrics`                          | Prometheus text exposition                                   |
 *
 * Errors answer `{ error_code, message }`, as Kafka Connect's do. Every GET route answers HEAD too.
 *
 * In a worker group every worker answers for the whole group: a connector's status lists all its
 * tasks with the worker running each (`worker_id`) and the state that worker last reported (at
 * most one lease renewal old). Pause, resume and restart act on the tasks running on the worker
 * that receives them.
 *
 * Security:
 * - with a token, every route but `GET /health` requires `Authorization: Bearer <token>`. Health is
 *   left open because load balancers and orchestrator probes rarely carry credentials, and it says
 *   no more than which connectors are unhealthy and why (scrubbed);
 * - without a token, the loopback bind is the only protection. Browsers can still reach loopback,
 *   so requests a browser would make for another site are refused with 403: a PUT or POST with an
 *   `Origin` header (a cross-site form posting `/restart`), and, when bound to loopback, a `Host`
 *   that is not a loopback name (DNS rebinding);
 * - config comes redacted from the runtime, and every string of every answer (messages, traces,
 *   health reasons, metrics text) passes through the `scrub` option, which removes known secret
 *   texts such as a password a driver error quotes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import type { Registry } from 'prom-client';
import type { Logger } from '../connector.ts';
import { isSluiceError, SluiceError } from '../errors.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { TaskStatus } from '../runtime/task-runner.ts';
import type { GroupSnapshot, GroupTaskView } from '../cluster/worker-group.ts';

/** The part of the {@link Runtime} the API drives; the real `Runtime` satisfies it. */
export interface AdminRuntime extends Pick<Runtime, 'names' | 'status' | 'config' | 'pause' | 'resume' | 'restart' | 'offsetsOf' | 'health' | 'collect'> {
  readonly metrics: { readonly registry: Pick<Registry, 'metrics' | 'contentType'> };
}

export interface AdminApiOptions {
  /** The interface to listen on. Default `127.0.0.1`; anything else without a token logs a warning. */
  host?: string;
  /** Default 8083, Kafka Connect's port; 0 picks a free one (see the returned `url`). */
  port?: number;
  /** When set, requests must carry `Authorization: Bearer <token>` (all routes but `GET /health`). */
  token?: string;
  /** Receives one debug line per request, and errors the API could not answer properly. */
  logger: Logger;
  /** Removes secret texts from a string; applied to every string the API sends. Default: none. */
  scrub?: (text: string) => string;
  /** The worker group this worker belongs to (`sluice run --cluster`); the API then shows the whole group. */
  cluster?: AdminCluster;
}

/** The part of a worker group the API reads; `WorkerGroup` satisfies it. */
export interface AdminCluster {
  readonly workerId: string;
  /** The group as last read, this worker's own tasks current. Called on every request that shows tasks. */
  snapshot(): GroupSnapshot;
}

export interface AdminApi {
  /** Where the API listens, e.g. `http://127.0.0.1:8083`. */
  readonly url: string;
  /**
   * Stops listening. Requests in flight get {@link CLOSE_GRACE_MS} to finish, then their
   * connections are cut. Resolves once the server is closed.
   */
  close(): Promise<void>;
}

const CLOSE_GRACE_MS = 2_000;

const VERSION = readVersion();

function readVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Starts the admin API for `runtime`. Called once by `sluice run` after the runtime started;
 * resolves once the server listens. Rejects with `IO_ERROR` when it cannot listen (port in use,
 * host not local) and `INVALID_ARGUMENT` for an empty token.
 */
export async function startAdminApi(runtime: AdminRuntime, options: AdminApiOptions): Promise<AdminApi> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8083;
  const logger = options.logger.child({ component: 'api' });
  if (options.token !== undefined && options.token.length === 0) {
    throw new SluiceError('INVALID_ARGUMENT', 'the API token must not be empty', { context: { field: 'token' } });
  }
  const loopback = isLoopback(host);
  if (!loopback && options.token === undefined) {
    logger.warn({ host }, `the admin API listens on ${host}, beyond loopback, without a token: anyone who can reach it can pause and restart connectors; set --api-token`);
  }

  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new SluiceError('IO_ERROR', `the admin API cannot listen on ${formatHost(host)}:${port}: ${err.code ?? err.message}`, { cause: err, context: { host, port } }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const bound = (server.address() as net.AddressInfo).port;
  const handler = new ApiHandler(runtime, {
    token: options.token,
    scrub: options.scrub ?? ((text) => text),
    logger,
    workerId: options.cluster?.workerId ?? `${os.hostname()}:${bound}`,
    checkHost: loopback && options.token === undefined,
    cluster: options.cluster,
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => void handler.handle(req, res));
  server.on('error', (err) => logger.error({ err }, 'admin API server error'));
  const url = `http://${formatHost(host)}:${bound}`;
  logger.info({ url, auth: options.token !== undefined }, `admin API listening on ${url}`);

  let closing: Promise<void> | null = null;
  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        cut.unref();
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

/** Whether `host` names a loopback interface only. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) return h === '::1' || /^::ffff:127\./.test(h) || /^(0{1,4}:){7}0{0,3}1$/.test(h);
  return false;
}

function formatHost(host: string): string {
  return net.isIPv6(host) ? `[${host}]` : host;
}

// ---------------------------------------------------------------------------------------------
// Routing

type Method = 'GET' | 'PUT' | 'POST';

interface Reply {
  status: number;
  /** JSON to send; absent for an empty body. */
  body?: unknown;
  /** A non-JSON body, sent as is with its content type. */
  text?: { contentType: string; content: string };
  headers?: Record<string, string>;
}

interface RequestContext {
  params: Record<string, string>;
  query: URLSearchParams;
}

interface Route {
  /** Path segments; `:x` captures one segment as `params.x`. */
  segments: string[];
  methods: Partial<Record<Method, (ctx: RequestContext) => Promise<Reply>>>;
  /** Served without the token (GET only). */
  open?: boolean;
}

/** An answer other than 2xx, decided by the API itself. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface HandlerOptions {
  token: string | undefined;
  scrub: (text: string) => string;
  logger: Logger;
  workerId: string;
  /** Refuse Host headers that are not loopback names (DNS rebinding); set when bound to loopback without a token. */
  checkHost: boolean;
  cluster: AdminCluster | undefined;
}

/** A task as the API shows it: local ones from the runtime, the group's others from their leases. */
type ShownTask = { local: TaskStatus; remote?: undefined } | { local?: undefined; remote: GroupTaskView };

class ApiHandler {
  private readonly routes: Route[];
  private readonly tokenDigest: Buffer | null;

  constructor(
    private readonly runtime: AdminRuntime,
    private readonly options: HandlerOptions,
  ) {
    this.tokenDigest = options.token === undefined ? null : sha256(options.token);
    const r = (path: string, methods: Route['methods'], open = false): Route => ({ segments: path.split('/').filter(Boolean), methods, open });
    this.routes = [
      r('/', { GET: async () => ({ status: 200, body: { version: VERSION, commit: null } }) }),
      r('/connectors', { GET: async ({ query }) => ({ status: 200, body: this.list(query) }) }),
      r('/connectors/:name', { GET: async ({ params }) => ({ status: 200, body: this.info(params['name']!) }) }),
      r('/connectors/:name/config', { GET: async ({ params }) => ({ status: 200, body: this.runtime.config(params['name']!) }) }),
      r('/connectors/:name/status', { GET: async ({ params }) => ({ status: 200, body: this.connectorStatus(params['name']!) }) }),
      r('/connectors/:name/tasks/:task/status', { GET: async ({ params }) => ({ status: 200, body: this.taskStatus(params['name']!, params['task']!) }) }),
      r('/connectors/:name/pause', {
        PUT: async ({ params }) => {
          this.runtime.pause(params['name']!);
          return { status: 202 };
        },
      }),
      r('/connectors/:name/resume', {
        PUT: async ({ params }) => {
          this.runtime.resume(params['name']!);
          return { status: 202 };
        },
      }),
      r('/connectors/:name/restart', { POST: async ({ params, query }) => this.restart(params['name']!, query) }),
      r('/connectors/:name/offsets', { GET: async ({ params }) => ({ status: 200, body: await this.offsets(params['name']!) }) }),
      r('/cluster', {
        GET: async () => {
          if (!this.options.cluster) throw new HttpError(404, 'this worker is not part of a worker group; start it with sluice run --cluster NAME');
          return { status: 200, body: this.options.cluster.snapshot() };
        },
      }),
      r(
        '/health',
        {
          GET: async () => {
            const report = this.runtime.health();
            return report.healthy ? { status: 200, body: { status: 'healthy' } } : { status: 503, body: { status: 'unhealthy', reasons: report.reasons } };
          },
        },
        true,
      ),
      r('/metrics', {
        GET: async () => {
          await this.runtime.collect();
          const registry = this.runtime.metrics.registry;
          return { status: 200, text: { contentType: registry.contentType, content: this.options.scrub(await registry.metrics()) } };
        },
      }),
    ];
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = performance.now();
    const method = req.method ?? 'GET';
    let pathname = '/';
    res.on('close', () => {
      const fields: Record<string, unknown> = { method, path: pathname, status: res.statusCode, ms: Math.round((performance.now() - started) * 10) / 10 };
      if (!res.writableFinished) fields['aborted'] = true;
      this.options.logger.debug(fields, `${method} ${pathname} ${res.statusCode}`);
    });
    // Bodies are not read by any route; drain them so the connection can be reused.
    req.resume();
    let params: Record<string, string> = {};
    try {
      const target = parseTarget(req.url ?? '/');
      pathname = target.pathname;
      const match = this.match(pathname);
      if (!match) throw new HttpError(404, `no route for ${pathname}`);
      params = match.params;
      const asGet = method === 'HEAD' ? 'GET' : method;
      const fn = match.route.methods[asGet as Method];
      if (fn && !(asGet === 'GET' && match.route.open)) this.authorize(req);
      this.checkBrowser(req, asGet);
      if (!fn) {
        const allowed = Object.keys(match.route.methods).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
        throw new HttpError(405, `${method} is not allowed on ${pathname}; allowed: ${allowed.join(', ')}`, { Allow: allowed.join(', ') });
      }
      if (params['name'] !== undefined && !this.runtime.names().includes(params['name'])) {
        throw new HttpError(404, `Connector ${params['name']} not found`);
      }
      this.send(req, res, await fn({ params, query: target.query }));
    } catch (err) {
      this.send(req, res, this.errorReply(err, method, pathname, params['name']));
    }
  }

  private match(pathname: string): { route: Route; params: Record<string, string> } | null {
    const segments = pathname.split('/').filter(Boolean);
    for (const route of this.routes) {
      if (route.segments.length !== segments.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segments.length && ok; i++) {
        const want = route.segments[i]!;
        if (want.startsWith(':')) {
          try {
            params[want.slice(1)] = decodeURIComponent(segments[i]!);
          } catch {
            throw new HttpError(400, `malformed percent-encoding in ${pathname}`);
          }
        } else {
          ok = want === segments[i];
        }
      }
      if (ok) return { route, params };
    }
    return null;
  }

  private authorize(req: http.IncomingMessage): void {
    if (!this.tokenDigest) return;
    const header = req.headers.authorization;
    const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
    // Comparing fixed-size digests keeps the comparison constant-time and hides the token's length.
    if (match && timingSafeEqual(sha256(match[1]!), this.tokenDigest)) return;
    throw new HttpError(401, header === undefined ? 'this API requires Authorization: Bearer <token>' : 'invalid bearer token', {
      'WWW-Authenticate': header === undefined ? 'Bearer realm="sluice"' : 'Bearer realm="sluice", error="invalid_token"',
    });
  }

  /** Refuses what only a browser visiting another site would send; see the module comment. */
  private checkBrowser(req: http.IncomingMessage, method: string): void {
    if (this.tokenDigest) return;
    if (method !== 'GET' && req.headers.origin !== undefined) {
      throw new HttpError(403, `requests from browsers (Origin ${req.headers.origin}) may not change connectors; use a client without an Origin header or set an API token`);
    }
    if (this.options.checkHost && req.headers.host !== undefined) {
      const hostname = req.headers.host.replace(/:\d+$/, '');
      if (!isLoopback(hostname)) throw new HttpError(403, `Host ${req.headers.host} is not a loopback name; the API listens on loopback only`);
    }
  }

  private list(query: URLSearchParams): unknown {
    const names = this.runtime.names();
    const expand = new Set(query.getAll('expand').flatMap((v) => v.split(',')));
    if (!expand.has('status') && !expand.has('info')) return names;
    const out: Record<string, Record<string, unknown>> = {};
    for (const name of names) {
      const entry: Record<string, unknown> = {};
      if (expand.has('status')) entry['status'] = this.connectorStatus(name);
      if (expand.has('info')) entry['info'] = this.info(name);
      out[name] = entry;
    }
    return out;
  }

  private info(name: string): unknown {
    const status = this.runtime.status(name);
    return { name, config: this.runtime.config(name), tasks: this.tasksOf(name, status.tasks).map((t) => ({ connector: name, task: t.local?.id ?? t.remote!.task })), type: status.type };
  }

  /**
   * The tasks to show for a connector: the runtime's, or in a worker group every task of the
   * connector, each from the runtime when it runs here and from its lease otherwise.
   */
  private tasksOf(name: string, local: TaskStatus[]): ShownTask[] {
    const group = this.options.cluster?.snapshot().tasks.filter((t) => t.connector === name) ?? [];
    if (group.length === 0) return local.map((t) => ({ local: t }));
    const here = new Map(local.map((t) => [t.id, t]));
    return group.map((t) => {
      const mine = here.get(t.task);
      return mine ? { local: mine } : { remote: t };
    });
  }

  private connectorStatus(name: string): unknown {
    const s = this.runtime.status(name);
    const tasks = this.tasksOf(name, s.tasks);
    const sum = (pick: (t: TaskStatus) => number, remote: (t: GroupTaskView) => number): number => tasks.reduce((n, t) => n + (t.local ? pick(t.local) : remote(t.remote!)), 0);
    const states = tasks.map((t) => t.local?.state ?? t.remote!.state);
    // In a group the connector's state is the group's: a worker running none of its tasks would
    // otherwise call a connector UNASSIGNED that runs fine elsewhere.
    let state: string = s.state;
    if (tasks.some((t) => t.remote) && s.state !== 'FAILED' && s.state !== 'PAUSED') {
      state = states.includes('FAILED') ? 'FAILED' : states.every((x) => x === 'RUNNING') ? 'RUNNING' : 'UNASSIGNED';
    }
    return {
      name: s.name,
      connector: { state, worker_id: this.options.workerId, ...failureFields(s.error) },
      tasks: tasks.map((t) => (t.local ? this.task(t.local) : this.remoteTask(t.remote!))),
      type: s.type,
      pipeline: s.pipeline,
      connector_type: s.connector,
      records_in: sum((t) => t.recordsIn, (t) => t.records_in),
      records_out: sum((t) => t.recordsOut, (t) => t.records_out),
      dlq_records: sum((t) => t.deadLetters, () => 0),
    };
  }

  private remoteTask(t: GroupTaskView): unknown {
    return {
      id: t.task,
      state: t.state,
      worker_id: t.worker_id,
      ...(t.error !== undefined ? { message: t.error } : {}),
      records_in: t.records_in,
      records_out: t.records_out,
    };
  }

  private task(t: TaskStatus): unknown {
    return {
      id: t.id,
      state: t.state,
      worker_id: this.options.workerId,
      ...failureFields(t.error),
      records_in: t.recordsIn,
      records_out: t.recordsOut,
      dlq_records: t.deadLetters,
      last_activity: new Date(t.lastActivityAt).toISOString(),
    };
  }

  private taskStatus(name: string, id: string): unknown {
    const task = /^\d+$/.test(id) ? this.tasksOf(name, this.runtime.status(name).tasks).find((t) => (t.local?.id ?? t.remote!.task) === Number(id)) : undefined;
    if (!task) throw new HttpError(404, `Task ${name}-${id} not found`);
    return task.local ? this.task(task.local) : this.remoteTask(task.remote!);
  }

  /**
   * Kafka Connect's restart: by default 204 once restarted. With `onlyFailed=true` a connector that
   * is not FAILED is left alone; with either flag the answer is 202 with the status. Tasks always
   * restart with their connector here, so `includeTasks` changes only the answer.
   */
  private async restart(name: string, query: URLSearchParams): Promise<Reply> {
    const flag = (key: string): boolean => {
      const value = query.get(key);
      if (value === null || value === 'false') return false;
      if (value === 'true' || value === '') return true;
      throw new HttpError(400, `${key} must be true or false, got ${JSON.stringify(value)}`);
    };
    const includeTasks = flag('includeTasks');
    const onlyFailed = flag('onlyFailed');
    if (!onlyFailed || this.runtime.status(name).state === 'FAILED') await this.runtime.restart(name);
    return includeTasks || onlyFailed ? { status: 202, body: this.connectorStatus(name) } : { status: 204 };
  }

  private async offsets(name: string): Promise<unknown> {
    const o = await this.runtime.offsetsOf(name);
    if (o.type === 'source') {
      return { offsets: (o.sourceOffsets ?? []).map((e) => ({ partition: e.sourcePartition, offset: e.sourceOffset })) };
    }
    const partitions = o.partitions ?? [];
    return {
      offsets: partitions
        .filter((p) => p.committed !== null)
        .map((p) => ({ partition: { kafka_topic: p.topic, kafka_partition: p.partition }, offset: { kafka_offset: jsonInteger(p.committed!) } })),
      group: o.group,
      lag: jsonInteger(partitions.reduce((n, p) => n + BigInt(p.lag), 0n).toString()),
      partitions: partitions.map((p) => ({
        topic: p.topic,
        partition: p.partition,
        committed_offset: p.committed === null ? null : jsonInteger(p.committed),
        end_offset: jsonInteger(p.end),
        lag: jsonInteger(p.lag),
      })),
    };
  }

  private errorReply(err: unknown, method: string, pathname: string, name: string | undefined): Reply {
    if (err instanceof HttpError) return { status: err.status, body: { error_code: err.status, message: err.message }, headers: err.headers };
    if (isSluiceError(err, 'INVALID_ARGUMENT')) {
      // The runtime says INVALID_ARGUMENT for an unknown connector too; whether the name exists tells the two apart.
      const status = name !== undefined && !this.runtime.names().includes(name) ? 404 : 400;
      return { status, body: { error_code: status, message: err.message } };
    }
    if (isSluiceError(err, 'LOG_CLOSED')) return { status: 503, body: { error_code: 503, message: err.message } };
    const error = err instanceof Error ? err : new Error(String(err));
    this.options.logger.error({ method, path: pathname, error: this.options.scrub(error.stack ?? error.message) }, `admin API request failed: ${this.options.scrub(error.message)}`);
    return { status: 500, body: { error_code: 500, message: `internal error: ${error.message}` } };
  }

  private send(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    let body: string | undefined;
    const headers: Record<string, string> = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', ...reply.headers };
    if (reply.text) {
      body = reply.text.content;
      headers['Content-Type'] = reply.text.contentType;
    } else if (reply.body !== undefined) {
      body = JSON.stringify(scrubDeep(reply.body, this.options.scrub));
      headers['Content-Type'] = 'application/json';
    }
    if (body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(body));
    res.writeHead(reply.status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

function failureFields(error: { message: string; code?: string; trace: string } | undefined): Record<string, unknown> {
  if (!error) return {};
  return { trace: error.trace, message: error.message, ...(error.code !== undefined ? { code: error.code } : {}) };
}

/**
 * The path and query of a request target. Parsed by hand rather than with `new URL(target, base)`,
 * which reads `//x/y` as a host and a path.
 */
function parseTarget(target: string): { pathname: string; query: URLSearchParams } {
  if (/^https?:\/\//i.test(target)) {
    const url = new URL(target);
    return { pathname: url.pathname, query: url.searchParams };
  }
  const q = target.indexOf('?');
  return { pathname: q < 0 ? target : target.slice(0, q), query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)) };
}

/** An offset or count as a JSON number when it fits one exactly, else as a decimal string. */
function jsonInteger(decimal: string): number | string {
  const n = Number(decimal);
  return Number.isSafeInteger(n) ? n : decimal;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** A copy of `value` with `scrub` applied to every string in it (object keys included). */
function scrubDeep(value: unknown, scrub: (text: string) => string): unknown {
  if (typeof value === 'string') return scrub(value);
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, scrub));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[scrub(k)] = scrubDeep(v, scrub);
    return out;
  }
  return value;
}

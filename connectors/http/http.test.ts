import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ajv } from 'ajv';
import { afterEach, describe, expect, it } from 'vitest';
import { RetriableError, SluiceError, type Logger, type SinkRecord, type SinkTaskContext, type TaskMetrics } from '../../core/connector.ts';
import { http as httpSink, schema, type HttpSinkConfig } from './index.ts';
import { HttpSinkTask } from './task.ts';

// ---------------------------------------------------------------------------------------------
// Real receivers, a real task context

interface Received {
  method: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The client's port: equal across requests when the connection is reused. */
  remotePort: number;
}

interface Receiver {
  url: string;
  received: Received[];
}

type Answer = (req: Received, res: http.ServerResponse) => void;

const servers: http.Server[] = [];
const tasks: HttpSinkTask[] = [];

afterEach(async () => {
  await Promise.all(tasks.splice(0).map((t) => t.stop()));
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

/** Starts a receiver on 127.0.0.1 that records every request and answers with `answer` (200 by default). */
async function receiver(answer: Answer = (_req, res) => res.end('ok')): Promise<Receiver> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const entry = { method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks), remotePort: req.socket.remotePort ?? 0 };
      received.push(entry);
      answer(entry, res);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received };
}

/** A port nothing listens on: one the OS just handed out and that was closed again. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface LogLine {
  level: string;
  fields: Record<string, unknown>;
  message: string | undefined;
}

function collectingLogger(lines: LogLine[], bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (fieldsOrMessage: object | string, message?: string): void => {
      if (typeof fieldsOrMessage === 'string') lines.push({ level, fields: { ...bindings }, message: fieldsOrMessage });
      else lines.push({ level, fields: { ...bindings, ...fieldsOrMessage }, message });
    };
  return {
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => collectingLogger(lines, { ...bindings, ...more }),
  };
}

interface Harness {
  task: HttpSinkTask;
  controller: AbortController;
  lines: LogLine[];
  samples: Array<{ kind: string; name: string; value: number; labels: Record<string, string> | undefined }>;
}

/** Validates `config` as the loader does (strict ajv, defaults filled in), then starts a task with it. */
async function startTask(config: Record<string, unknown>): Promise<Harness> {
  const task = new HttpSinkTask(validConfig(config));
  tasks.push(task);
  const controller = new AbortController();
  const lines: LogLine[] = [];
  const samples: Harness['samples'] = [];
  const metrics: TaskMetrics = {
    count: (name, value = 1, labels) => samples.push({ kind: 'count', name, value, labels }),
    gauge: (name, value, labels) => samples.push({ kind: 'gauge', name, value, labels }),
    observe: (name, value, labels) => samples.push({ kind: 'observe', name, value, labels }),
  };
  const ctx: SinkTaskContext = {
    pipeline: 'http-test',
    connector: 'out',
    task: 0,
    signal: controller.signal,
    logger: collectingLogger(lines, { pipeline: 'http-test', connector: 'out', task: 0 }),
    metrics,
    assignment: () => [{ topic: 'events', partition: 0 }],
    groupOffsets: () => [{ topic: 'events', partition: 0, offset: 0n }],
  };
  await task.start(ctx);
  return { task, controller, lines, samples };
}

function newAjv(): Ajv {
  return new Ajv({ allErrors: true, useDefaults: true, verbose: true, allowUnionTypes: true, strict: true, strictRequired: false });
}

const validate = newAjv().compile(schema);

function validConfig(config: Record<string, unknown>): HttpSinkConfig {
  const copy = structuredClone(config);
  if (!validate(copy)) throw new Error(`invalid test config: ${JSON.stringify(validate.errors)}`);
  return copy as HttpSinkConfig;
}

function record(offset: number | bigint, value: string | null, extra: Partial<SinkRecord> = {}): SinkRecord {
  return {
    topic: 'events',
    partition: 0,
    offset: BigInt(offset),
    timestamp: 1_700_000_000_000 + Number(offset),
    key: null,
    value: value === null ? null : Buffer.from(value),
    headers: {},
    ...extra,
  };
}

function records(count: number): SinkRecord[] {
  return Array.from({ length: count }, (_, i) => record(i, JSON.stringify({ n: i })));
}

async function putError(task: HttpSinkTask, batch: readonly SinkRecord[]): Promise<SluiceError> {
  const err = await task.put(batch).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SluiceError);
  return err as SluiceError;
}

// ---------------------------------------------------------------------------------------------

describe('http sink: bodies', () => {
  it('sends record values as one JSON array, keeping JSON byte for byte and turning other values into strings', async () => {
    // A JSON array body holds every value in order: JSON unchanged (big integers intact), text as strings, tombstones as null.
    const target = await receiver();
    const { task } = await startTask({ url: target.url });
    await task.put([record(0, '{"id":12345678901234567890,"b":1}'), record(1, 'plain text'), record(2, null), record(3, '[1,2]')]);

    expect(target.received).toHaveLength(1);
    const [req] = target.received;
    expect(req!.method).toBe('POST');
    expect(req!.headers['content-type']).toBe('application/json');
    expect(req!.headers['user-agent']).toBe('sluice-http-sink');
    expect(req!.body.toString()).toBe('[{"id":12345678901234567890,"b":1},"plain text",null,[1,2]]');
  });

  it('sends NDJSON with one value per line, even for pretty-printed JSON, using PUT when asked', async () => {
    // NDJSON bodies stay one document per line whatever line breaks the record values hold.
    const target = await receiver();
    const { task } = await startTask({ url: target.url, format: 'ndjson', method: 'PUT' });
    await task.put([record(0, '{\n  "a": 1,\r\n  "s": "x\\ny"\n}'), record(1, 'line one\nline two'), record(2, '7')]);

    const [req] = target.received;
    expect(req!.method).toBe('PUT');
    expect(req!.headers['content-type']).toBe('application/x-ndjson');
    const lines = req!.body.toString().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[3]).toBe('');
    expect(JSON.parse(lines[0]!)).toEqual({ a: 1, s: 'x\ny' });
    expect(JSON.parse(lines[1]!)).toBe('line one\nline two');
    expect(JSON.parse(lines[2]!)).toBe(7);
  });

  it('sends the envelope of each record with body: envelope', async () => {
    // The envelope carries every coordinate of the record, with the offset as a string so it survives JSON number precision.
    const target = await receiver();
    const { task } = await startTask({ url: target.url, body: 'envelope' });
    await task.put([
      record(9007199254740993n, '{"x":1}', { partition: 3, key: Buffer.from('user-1'), headers: { trace: Buffer.from('abc') }, timestamp: 1_700_000_000_123 }),
    ]);

    expect(JSON.parse(target.received[0]!.body.toString())).toEqual([
      {
        topic: 'events',
        partition: 3,
        offset: '9007199254740993',
        timestamp: 1_700_000_000_123,
        key: 'user-1',
        value: { x: 1 },
        headers: { trace: 'abc' },
      },
    ]);
  });
});

describe('http sink: batching', () => {
  it('splits a put by max_batch_records into requests sent in order over one kept-alive connection', async () => {
    // A batch over the record limit arrives as consecutive requests, in offset order, without a new connection per request.
    const target = await receiver();
    const { task } = await startTask({ url: target.url, max_batch_records: 2 });
    await task.put(records(5));

    expect(target.received.map((r) => JSON.parse(r.body.toString()))).toEqual([[{ n: 0 }, { n: 1 }], [{ n: 2 }, { n: 3 }], [{ n: 4 }]]);
    expect(new Set(target.received.map((r) => r.remotePort)).size).toBe(1);
  });

  it('splits a put by max_batch_bytes, keeping every body within the limit and sending an oversized record alone', async () => {
    // No request body exceeds max_batch_bytes unless a single record does, and then that record goes alone.
    for (const format of ['json_array', 'ndjson'] as const) {
      const target = await receiver();
      const { task } = await startTask({ url: target.url, format, max_batch_bytes: 40 });
      const big = JSON.stringify({ big: 'x'.repeat(60) });
      // Each {"n":i} is 7 bytes; with framing, four fit in 40 bytes and five do not.
      await task.put([...records(6), record(6, big), ...records(2)]);

      const bodies = target.received.map((r) => r.body);
      const decoded = bodies.map((b) => (format === 'ndjson' ? b.toString().trimEnd().split('\n').map((l) => JSON.parse(l)) : JSON.parse(b.toString())));
      expect(decoded.flat()).toEqual([...records(6), record(6, big), ...records(2)].map((r) => JSON.parse(r.value!.toString())));
      expect(decoded.find((items) => items.some((v: { big?: string }) => v.big))).toHaveLength(1);
      for (const body of bodies) if (!body.toString().includes('big')) expect(body.length).toBeLessThanOrEqual(40);
      expect(bodies.length).toBeGreaterThanOrEqual(3);
    }
  });
});

describe('http sink: auth and headers', () => {
  it('sends configured headers and a bearer token', async () => {
    // Static headers and the bearer token reach the receiver on every request, and auth wins over a same-named header.
    const target = await receiver();
    const { task } = await startTask({
      url: target.url,
      headers: { 'X-Tenant': 'acme', Authorization: 'Basic bm9wZQ==' },
      auth: { type: 'bearer', token: 'tok-123456' },
    });
    await task.put(records(1));

    expect(target.received[0]!.headers['x-tenant']).toBe('acme');
    expect(target.received[0]!.headers.authorization).toBe('Bearer tok-123456');
  });

  it('signs the exact body with HMAC-SHA256 so a receiver can verify it', async () => {
    // A receiver holding the shared secret verifies every request, including each part of a split batch.
    const secret = 'whsec_test_secret';
    const target = await receiver();
    const { task } = await startTask({ url: target.url, max_batch_records: 2, auth: { type: 'hmac', secret } });
    await task.put(records(3));

    expect(target.received).toHaveLength(2);
    for (const req of target.received) {
      const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(req.body).digest('hex')}`);
      const given = Buffer.from(String(req.headers['x-sluice-signature']));
      expect(given.length === expected.length && timingSafeEqual(given, expected)).toBe(true);
    }
  });

  it('signs <timestamp>.<body> in base64 with a timestamp header, as Stripe does', async () => {
    // With timestamp_header the signature binds the time too, so a receiver can reject replays.
    const secret = 'another-secret';
    const target = await receiver();
    const { task } = await startTask({
      url: target.url,
      auth: { type: 'hmac', secret, header: 'X-Signature', encoding: 'base64', prefix: '', timestamp_header: 'X-Timestamp' },
    });
    const before = Math.floor(Date.now() / 1000);
    await task.put(records(2));

    const req = target.received[0]!;
    const timestamp = String(req.headers['x-timestamp']);
    expect(Number(timestamp)).toBeGreaterThanOrEqual(before);
    expect(Number(timestamp)).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(req.body).digest();
    const given = Buffer.from(String(req.headers['x-signature']), 'base64');
    expect(given.length === expected.length && timingSafeEqual(given, expected)).toBe(true);
  });
});

describe('http sink: errors', () => {
  it('throws a RetriableError on 500', async () => {
    // A server error means "retry the same batch", never "drop it" or "the record is bad".
    const target = await receiver((_req, res) => {
      res.statusCode = 500;
      res.end('database unavailable');
    });
    const { task } = await startTask({ url: target.url });
    const err = await putError(task, records(2));

    expect(err).toBeInstanceOf(RetriableError);
    expect(err.retriable).toBe(true);
    expect(err.context.status).toBe(500);
    expect(err.message).toContain('500');
    expect(err.context.retryAfterMs).toBeUndefined();
  });

  it('throws a RetriableError carrying retryAfterMs on 429 with Retry-After in seconds or as an HTTP date', async () => {
    // The wait a receiver asks for reaches the runtime as context.retryAfterMs.
    let retryAfter = '7';
    const target = await receiver((_req, res) => {
      res.writeHead(429, { 'Retry-After': retryAfter });
      res.end();
    });
    const { task } = await startTask({ url: target.url });
    const err = await putError(task, records(1));
    expect(err).toBeInstanceOf(RetriableError);
    expect(err.context.status).toBe(429);
    expect(err.context.retryAfterMs).toBe(7000);

    retryAfter = new Date(Date.now() + 120_000).toUTCString();
    const dated = await putError(task, records(1));
    expect(dated).toBeInstanceOf(RetriableError);
    // An HTTP date has one-second resolution.
    expect(dated.context.retryAfterMs).toBeGreaterThan(115_000);
    expect(dated.context.retryAfterMs).toBeLessThanOrEqual(120_000);
  });

  it('throws a non-retriable CONNECTOR_FAILED error with the status and the response body on 400', async () => {
    // A 4xx marks the batch as bad rather than the target as down, so the runtime can bisect it down to the record for the DLQ.
    const target = await receiver((_req, res) => {
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 'field amount must be a number', pad: 'p'.repeat(5000) }));
    });
    const { task } = await startTask({ url: target.url });
    const err = await putError(task, records(1));

    expect(err).not.toBeInstanceOf(RetriableError);
    expect(err.retriable).toBe(false);
    expect(err.code).toBe('CONNECTOR_FAILED');
    expect(err.context.status).toBe(400);
    expect(err.message).toContain('field amount must be a number');
    const body = String(err.context.responseBody);
    expect(body).toContain('field amount must be a number');
    expect(body.length).toBeLessThan(1100);
  });

  it.each([401, 403, 404])('throws CONFIG_INVALID on %i, so the runtime fails the connector instead of sending every record to the DLQ', async (status) => {
    // Answers about credentials or the address concern the config, not a record, so they are never bisected.
    const target = await receiver((_req, res) => {
      res.statusCode = status;
      res.end('nope');
    });
    const { task } = await startTask({ url: target.url });
    const err = await putError(task, records(2));
    expect(err.retriable).toBe(false);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.context.status).toBe(status);
    expect(err.message).toContain('check url, method and auth');
  });

  it('reports how much of a split batch was delivered, and resends the whole batch on retry', async () => {
    // A failure after some requests succeeded is at-least-once: the retry sends every record again, in order.
    let calls = 0;
    const target = await receiver((_req, res) => {
      calls += 1;
      res.statusCode = calls === 2 ? 503 : 200;
      res.end();
    });
    const { task } = await startTask({ url: target.url, max_batch_records: 1 });
    const batch = records(3);
    const err = await putError(task, batch);
    expect(err).toBeInstanceOf(RetriableError);
    expect(err.context).toMatchObject({ request: 2, requests: 3, deliveredRecords: 1 });
    expect(err.message).toContain('1 of 3 records of this batch were delivered');

    await task.put(batch);
    expect(target.received.map((r) => JSON.parse(r.body.toString())[0].n)).toEqual([0, 1, 0, 1, 2]);
  });

  it('throws a RetriableError when the receiver does not answer within timeout', async () => {
    // A hung receiver costs at most one timeout per attempt, and the batch is retried rather than lost.
    const target = await receiver(() => {
      // Never answers.
    });
    const { task } = await startTask({ url: target.url, timeout: '200ms' });
    const started = Date.now();
    const err = await putError(task, records(1));

    expect(err).toBeInstanceOf(RetriableError);
    expect(err.message).toContain('timed out after 200ms');
    expect(err.context.timeoutMs).toBe(200);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('throws a RetriableError when nothing listens at the URL', async () => {
    // A target that is down is retried, not treated as bad data.
    const { task } = await startTask({ url: `http://127.0.0.1:${await closedPort()}/hook` });
    const err = await putError(task, records(1));

    expect(err).toBeInstanceOf(RetriableError);
    expect(err.context.errorCode).toBe('ECONNREFUSED');
  });

  it('settles promptly with a RetriableError when the task is stopped mid-request', async () => {
    // Aborting the task signal ends an in-flight put at once, so stop() is never held up by a slow receiver.
    const target = await receiver(() => {
      // Never answers.
    });
    const { task, controller } = await startTask({ url: target.url, timeout: '1m' });
    const pending = putError(task, records(1));
    setTimeout(() => controller.abort(), 50);
    const err = await pending;

    expect(err).toBeInstanceOf(RetriableError);
    expect(err.message).toContain('task is stopping');
  });

  it('does not follow a redirect and fails with a message naming it', async () => {
    // A POST is never silently resent elsewhere: a 3xx is a config error the user sees.
    const target = await receiver((_req, res) => {
      res.writeHead(308, { Location: 'https://elsewhere.example.com/new?sig=abc' });
      res.end();
    });
    const { task } = await startTask({ url: target.url });
    const err = await putError(task, records(1));

    expect(target.received).toHaveLength(1);
    expect(err).not.toBeInstanceOf(RetriableError);
    expect(err.context.status).toBe(308);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain('does not follow redirects');
    expect(err.message).toContain('https://elsewhere.example.com/new');
    expect(err.message).not.toContain('sig=abc');
  });

  it('keeps secrets out of error messages, contexts and logs, even when the receiver echoes them', async () => {
    // No failure path leaks the token, the HMAC secret or a header value, whatever the receiver sends back.
    const token = 'super-secret-token-value';
    const apiKey = 'key-9f8e7d6c5b4a';
    for (const status of [400, 500]) {
      const target = await receiver((req, res) => {
        res.statusCode = status;
        res.end(JSON.stringify({ echoed: req.headers }));
      });
      const { task, lines } = await startTask({
        url: `http://user:pw-in-url@${new URL(target.url).host}/hook?api_key=in-query`,
        headers: { 'X-Api-Key': apiKey },
        auth: { type: 'bearer', token },
      });
      const err = await putError(task, records(1));

      // The receiver did get the credentials; only the report must not carry them.
      expect(target.received[0]!.headers.authorization).toBe(`Bearer ${token}`);
      const reported = [err.message, JSON.stringify(err.context), JSON.stringify(lines)].join('\n');
      for (const secret of [token, apiKey, 'pw-in-url', 'in-query']) expect(reported).not.toContain(secret);
      expect(reported).toContain('[REDACTED]');
    }

    const hmacSecret = 'hmac-secret-value';
    const target = await receiver((_req, res) => {
      res.statusCode = 422;
      res.end(`rejected, expected secret ${hmacSecret}`);
    });
    const { task } = await startTask({ url: target.url, auth: { type: 'hmac', secret: hmacSecret } });
    const err = await putError(task, records(1));
    expect(`${err.message}${JSON.stringify(err.context)}`).not.toContain(hmacSecret);
  });
});

describe('http sink: definition', () => {
  it('passes the health check for a listening receiver without sending it a request', async () => {
    // The health check proves reachability without posting data to the target.
    const target = await receiver();
    await httpSink.healthCheck!(validConfig({ url: target.url }), { signal: new AbortController().signal, logger: collectingLogger([]) });
    expect(target.received).toHaveLength(0);
  });

  it('fails the health check with a RetriableError when nothing listens', async () => {
    // A target that is not up yet is "not reachable yet", which the runtime retries, not a misconfiguration.
    const config = validConfig({ url: `http://127.0.0.1:${await closedPort()}/hook` });
    const err = await httpSink.healthCheck!(config, { signal: new AbortController().signal, logger: collectingLogger([]) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RetriableError);
  });

  it('has examples that validate against the schema in strict mode', () => {
    // The documented configs are configs the loader accepts.
    for (const example of httpSink.examples ?? []) {
      const check = newAjv().compile(schema);
      expect(check(structuredClone(example.config)), `${example.title}: ${JSON.stringify(check.errors)}`).toBe(true);
    }
  });

  it('rejects auth blocks that mix types, missing secrets and framing headers', () => {
    // Cross-field rules live in the schema, so validation and the docs report them.
    const invalid = [
      { url: 'http://x/h', auth: { type: 'bearer' } },
      { url: 'http://x/h', auth: { type: 'hmac', token: 'abcd' } },
      { url: 'http://x/h', auth: { type: 'bearer', token: 'abcd', secret: 'efgh' } },
      { url: 'http://x/h', headers: { 'content-LENGTH': '12' } },
      { url: 'http://x/h', headers: { 'X-Evil': 'a\r\nInjected: yes' } },
      { url: 'ftp://x/h' },
    ];
    for (const config of invalid) expect(validate(structuredClone(config)), JSON.stringify(config)).toBe(false);
  });

  it('fills hmac defaults into an hmac block only', () => {
    // A bearer block never carries hmac settings, so the docs and the redacted config stay truthful.
    const hmac = validConfig({ url: 'http://x/h', auth: { type: 'hmac', secret: 'abcd' } });
    expect(hmac.auth).toEqual({ type: 'hmac', secret: 'abcd', header: 'X-Sluice-Signature', algorithm: 'sha256', encoding: 'hex', prefix: 'sha256=' });
    const bearer = validConfig({ url: 'http://x/h', auth: { type: 'bearer', token: 'abcd' } });
    expect(bearer.auth).toEqual({ type: 'bearer', token: 'abcd' });
  });

  it('describes every property and marks every secret writeOnly', () => {
    // The generated reference doc has something to say for every setting, and the runtime knows what to redact.
    const walk = (node: Record<string, unknown>, path: string): void => {
      for (const [name, sub] of Object.entries((node.properties ?? {}) as Record<string, unknown>)) {
        const prop = sub as Record<string, unknown>;
        expect(typeof prop.description, `${path}/${name}`).toBe('string');
        walk(prop, `${path}/${name}`);
      }
    };
    walk(schema as unknown as Record<string, unknown>, '');
    expect(schema.properties.auth.properties.token.writeOnly).toBe(true);
    expect(schema.properties.auth.properties.secret.writeOnly).toBe(true);
    expect(schema.properties.headers.additionalProperties.writeOnly).toBe(true);
  });
});

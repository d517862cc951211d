/**
 * Fuzzing the webhook source through its socket with fast-check: bodies (valid batches, batches
 * with one bad event, NDJSON, arbitrary JSON, arbitrary text and bytes), content types, methods,
 * paths and extra headers. Whatever arrives, the server never answers 5xx (no 503 is provoked
 * here), never crashes, and never appends part of a request: after every request the log holds
 * exactly the events of the 200 answers so far.
 */
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './fixtures/harness.ts';
import { splitTopLevelArray } from './index.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ routes: [{ path: '/json', topic: 'fuzz.json', key_field: 'user_id' }, { path: '/nd', topic: 'fuzz.nd', format: 'ndjson' }], max_pending: 100000 });
});
afterAll(async () => {
  await h.close();
});

/** Records in the fuzzed topics right now. */
async function appended(): Promise<number> {
  let n = 0;
  for (const topic of ['fuzz.json', 'fuzz.nd']) {
    if (!(await h.log.listTopics()).includes(topic)) continue;
    for (const p of (await h.log.describeTopic(topic)).partitions) n += Number(p.endOffset - p.startOffset);
  }
  return n;
}

/** A body with what a correct server must make of it on each route: events appended, or a 400. */
interface Body {
  kind: string;
  bytes: Buffer;
  /** Events expected on the json and on the nd route; null means 400; undefined means anything but 5xx. */
  json: number | null | undefined;
  nd: number | null | undefined;
}

const event = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }).map((o) => ({ ...o, user_id: String(Object.keys(o).length) }));
const notAnObject = fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.boolean(), fc.array(fc.integer(), { minLength: 1, maxLength: 3 }));
const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');

const bodies: fc.Arbitrary<Body> = fc.oneof(
  event.map((e) => ({ kind: 'object', bytes: utf8(JSON.stringify(e)), json: 1, nd: 1 })),
  fc.array(event, { maxLength: 20 }).map((es) => ({ kind: 'batch', bytes: utf8(JSON.stringify(es)), json: es.length, nd: null })),
  fc.tuple(fc.array(event, { maxLength: 10 }), notAnObject, fc.nat()).map(([es, bad, at]) => {
    const mixed: unknown[] = [...es];
    mixed.splice(at % (es.length + 1), 0, bad);
    return { kind: 'batch with a bad event', bytes: utf8(JSON.stringify(mixed)), json: null, nd: null };
  }),
  fc.array(event, { minLength: 1, maxLength: 20 }).map((es) => ({
    kind: 'ndjson',
    bytes: utf8(es.map((e) => JSON.stringify(e)).join('\n') + '\n'),
    json: es.length === 1 ? 1 : null,
    nd: es.length,
  })),
  fc.tuple(fc.array(event, { maxLength: 10 }), fc.oneof(notAnObject.map((v) => JSON.stringify(v)), fc.constant('{"open":')), fc.nat()).map(([es, bad, at]) => {
    const lines = es.map((e) => JSON.stringify(e));
    lines.splice(at % (lines.length + 1), 0, bad);
    return { kind: 'ndjson with a bad line', bytes: utf8(lines.join('\n')), json: null, nd: null };
  }),
  fc.jsonValue().map((v) => ({ kind: 'any JSON', bytes: utf8(JSON.stringify(v) ?? 'null'), json: undefined, nd: undefined })),
  fc.string({ unit: 'binary', maxLength: 200 }).map((s) => ({ kind: 'any text', bytes: utf8(s), json: undefined, nd: undefined })),
  fc.uint8Array({ maxLength: 200 }).map((b) => ({ kind: 'any bytes', bytes: Buffer.from(b), json: undefined, nd: undefined })),
  fc.tuple(fc.array(event, { minLength: 1, maxLength: 5 }), fc.nat()).map(([es, cut]) => {
    const text = JSON.stringify(es);
    return { kind: 'truncated batch', bytes: utf8(text.slice(0, cut % text.length)), json: null, nd: null };
  }),
);

// Types the server reads as JSON; anything else is expected to get 415.
const READ_AS_JSON = ['application/json', 'text/plain;charset=UTF-8', 'application/x-ndjson', 'application/cloudevents+json', 'application/x-www-form-urlencoded'];
const contentTypes = fc.oneof(
  fc.constantFrom(...READ_AS_JSON, undefined),
  fc.constantFrom('application/xml', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'image/png', ''),
  fc.stringMatching(/^[!-~]{1,30}$/),
);
// Framing and connection headers would make the client itself send something else than the case.
const RESERVED = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'expect', 'upgrade', 'content-type', 'te', 'trailer', 'keep-alive']);
const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/).filter((n) => !RESERVED.has(n.toLowerCase()));
const headers = fc.dictionary(headerName, fc.stringMatching(/^[!-~]([ -~]{0,30}[!-~])?$/), { maxKeys: 4 });
const method = fc.oneof({ weight: 8, arbitrary: fc.constant('POST') }, { weight: 2, arbitrary: fc.constantFrom('GET', 'PUT', 'OPTIONS', 'DELETE', 'PATCH', 'HEAD') });
const pathname = fc.oneof({ weight: 8, arbitrary: fc.constantFrom('/json', '/nd', '/json?source=fuzz') }, { weight: 2, arbitrary: fc.oneof(fc.constantFrom('/healthz', '/', '/nope', '/json/'), fc.stringMatching(/^\/[A-Za-z0-9._~%-]{0,20}$/)) });

describe('webhook: fuzz', () => {
  it('never answers 5xx or appends part of a request, whatever the body, headers and content type', async () => {
    // Guarantee: no input makes the server fail, crash or append a partial request; well-formed events get 200, bad ones 400.
    let accepted = await appended();
    await fc.assert(
      fc.asyncProperty(method, pathname, contentTypes, headers, bodies, async (verb, where, type, extra, body) => {
        const sent: Record<string, string | number> = { ...extra };
        if (type !== undefined) sent['Content-Type'] = type;
        const reply = await h.request(verb, where, { body: verb === 'GET' || verb === 'HEAD' ? undefined : body.bytes, headers: sent });
        const what = `${verb} ${where} ${type} ${body.kind} ${JSON.stringify(body.bytes.toString('utf8').slice(0, 120))} -> ${reply.status} ${reply.text.slice(0, 200)}`;
        expect(reply.status, what).toBeLessThan(500);
        if (reply.status === 200 && where !== '/healthz' && reply.headers['idempotent-replayed'] === undefined) accepted += (reply.json() as { accepted: number }).accepted;
        expect(await appended(), `records in the log after ${what}`).toBe(accepted);

        // Where the case is fully determined, the answer must be the model's.
        const route = where.startsWith('/json') && where !== '/json/' ? 'json' : where === '/nd' ? 'nd' : null;
        const keyed = Object.keys(extra).some((k) => k.toLowerCase() === 'idempotency-key');
        const expected = route === null ? undefined : body[route];
        if (verb === 'POST' && route !== null && !keyed && (type === undefined || READ_AS_JSON.includes(type)) && expected !== undefined) {
          if (expected === null) expect(reply.status, what).toBe(400);
          else {
            expect(reply.status, what).toBe(200);
            expect(reply.json().accepted, what).toBe(expected);
          }
        }
      }),
      // FUZZ_SEED replays a failing run.
      { numRuns: 1000, ...(process.env['FUZZ_SEED'] ? { seed: Number(process.env['FUZZ_SEED']) } : {}) },
    );
    expect((await h.request('GET', '/healthz')).status).toBe(200);
  });

  it('splits every JSON array into exactly the elements JSON.parse finds', () => {
    // Guarantee: the byte-level splitter that keeps each event's original bytes agrees with JSON.parse on any array, escapes and nesting included.
    fc.assert(
      fc.property(fc.array(fc.jsonValue()), fc.constantFrom('', ' ', '\n', '\t \r\n'), (values, space) => {
        const text = `${space}[${space}${values.map((v) => JSON.stringify(v, null, space.length > 1 ? 1 : 0)).join(`${space},${space}`)}${space}]${space}`;
        const slices = splitTopLevelArray(Buffer.from(text)).map((b) => JSON.parse(b.toString('utf8')) as unknown);
        expect(slices).toEqual(JSON.parse(text));
      }),
      { numRuns: 2000 },
    );
  });

  it('survives arbitrary bytes on the socket', async () => {
    // Guarantee: garbage that is not HTTP at all never crashes the server or appends anything.
    const before = await appended();
    const { port } = new URL(h.url);
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.string({ maxLength: 200 }).map((s) => Buffer.from(`POST /json HTTP/1.1\r\nHost: x\r\n${s}\r\n\r\n`))), async (bytes) => {
        await new Promise<void>((resolve) => {
          const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(Buffer.from(bytes)));
          socket.on('data', () => {});
          socket.on('error', () => resolve());
          socket.on('close', () => resolve());
          socket.setTimeout(2000, () => socket.destroy());
        });
      }),
      { numRuns: 150 },
    );
    expect((await h.request('GET', '/healthz')).status).toBe(200);
    expect(await appended()).toBe(before);
  });
});

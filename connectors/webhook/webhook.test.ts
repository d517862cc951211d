/**
 * The webhook task on a real socket and a real embedded log, driven by a loop that does what the
 * runtime does (fixtures/harness.ts): bodies, replies, group commit, backpressure, rate limits,
 * CORS, de-duplication and shutdown. One test with the real Runtime pins the 503 of a log that
 * refuses writes end to end.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import type { Logger } from '../../core/connector.ts';
import { openLog } from '../../core/log/embedded-log.ts';
import { Runtime } from '../../core/runtime/runtime.ts';
import { formatProblem, validateSpecTexts } from '../../core/spec/index.ts';
import { registry } from '../index.ts';
import { send, startHarness, type Harness, type Reply } from './fixtures/harness.ts';
import { RETRY_AFTER_FULL_S, RETRY_AFTER_UNAVAILABLE_S, splitTopLevelArray, webhook, type WebhookConfig } from './index.ts';

const open: Harness[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((h) => h.close()));
});

async function harness(config: Record<string, unknown>): Promise<Harness> {
  const h = await startHarness(config);
  open.push(h);
  return h;
}

const CLICKS = { path: '/collect', topic: 'clicks' };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `n` requests are queued in the task (each answered only later), by polling its health route. */
async function untilPending(h: Harness, n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const health = (await h.request('GET', '/healthz')).json() as { pending: number };
    if (health.pending >= n) return;
    await sleep(5);
  }
  throw new Error(`fewer than ${n} requests became pending`);
}

/** Waits until at most `n` requests are pending, by polling the health route. */
async function untilPendingAtMost(h: Harness, n: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const health = (await h.request('GET', '/healthz')).json() as { pending: number };
    if (health.pending <= n) return;
    await sleep(5);
  }
  throw new Error(`more than ${n} requests stayed pending`);
}

describe('webhook: bodies and records', () => {
  it('answers 200 only once the event is in the log, with the request id in the reply and the record headers', async () => {
    // Guarantee: a 200 means the event is already readable in its topic, and the request id ties the reply to the record.
    const h = await harness({ routes: [{ ...CLICKS, key_field: 'user_id' }] });
    const reply = await h.post('/collect', '{"user_id":"u-1","event":"view"}', { 'User-Agent': 'test-agent/1.0' });
    expect(reply.status).toBe(200);
    const id = reply.headers['x-request-id'];
    expect(reply.json()).toEqual({ accepted: 1, request_id: id });
    const records = await h.records('clicks');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ key: 'u-1', value: '{"user_id":"u-1","event":"view"}' });
    expect(records[0]!.headers).toEqual({ received_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), remote_addr: '127.0.0.1', user_agent: 'test-agent/1.0', request_id: id });
    expect(Math.abs(records[0]!.timestamp - Date.parse(records[0]!.headers['received_at']!))).toBe(0);
  });

  it('splits a JSON array into one record per event, keeping each event\'s bytes and keying by a dotted path', async () => {
    // Guarantee: batch events become records whose values are the exact bytes sent (no precision loss), keyed by key_field when present.
    const h = await harness({ routes: [{ ...CLICKS, key_field: 'user.id' }] });
    const body = '[ {"user":{"id":42},"big":12345678901234567890123} ,\n{"s":"a,]}\\"[{"},{"user":{"id":"x"}}, {"user":{"id":true}} ]';
    const reply = await h.post('/collect', body);
    expect(reply.status, reply.text).toBe(200);
    expect(reply.json().accepted).toBe(4);
    const records = await h.records('clicks');
    expect(records.map((r) => r.value).sort()).toEqual(['{"s":"a,]}\\"[{"}', '{"user":{"id":"x"}}', '{"user":{"id":42},"big":12345678901234567890123}', '{"user":{"id":true}}'].sort());
    const keyOf = (value: string): string | null => records.find((r) => r.value === value)!.key;
    expect(keyOf('{"user":{"id":42},"big":12345678901234567890123}')).toBe('42');
    expect(keyOf('{"user":{"id":"x"}}')).toBe('x');
    expect(keyOf('{"user":{"id":true}}')).toBe('true');
    expect(keyOf('{"s":"a,]}\\"[{"}')).toBeNull();
  });

  it('reads NDJSON one object per line, skipping blank lines and CRs', async () => {
    // Guarantee: an ndjson route turns every non-blank line into one record, whatever the line endings.
    const h = await harness({ routes: [{ path: '/ingest', topic: 'lines', format: 'ndjson' }] });
    const reply = await h.post('/ingest', '{"n":1}\r\n\n  {"n":2}\n{"n":3}', { 'Content-Type': 'application/x-ndjson' });
    expect(reply.status, reply.text).toBe(200);
    expect((await h.records('lines')).map((r) => r.value)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
  });

  it.each([
    ['text/plain;charset=UTF-8 (navigator.sendBeacon)', 'text/plain;charset=UTF-8', '[{"e":1},{"e":2}]', 2],
    ['no content type', undefined, '{"e":1}', 1],
    ['application/vnd.api+json', 'application/vnd.api+json', '{"e":1}', 1],
    ['a form whose payload field holds the body (GitHub form content type)', 'application/x-www-form-urlencoded', `payload=${encodeURIComponent('{"e":"a&b=c"}')}`, 1],
    ['a form that is really JSON (curl -d)', 'application/x-www-form-urlencoded', '{"e":1}', 1],
  ])('accepts %s', async (_what, type, body, events) => {
    // Guarantee: the content types browsers and common tools send are read as JSON events.
    const h = await harness({ routes: [CLICKS] });
    const headers: Record<string, string> = {};
    const reply = await h.request('POST', '/collect', { body, headers: type === undefined ? headers : { 'Content-Type': type } });
    expect(reply.status, reply.text).toBe(200);
    expect(reply.json().accepted).toBe(events);
    expect(await h.records('clicks')).toHaveLength(events);
  });

  it.each([
    ['a batch with one event that is not an object', '[{"a":1},{"b":2},"three"]', 'application/json', 400, 'invalid_event'],
    ['a batch with a nested array', '[{"a":1},[{"b":2}]]', 'application/json', 400, 'invalid_event'],
    ['JSON that does not parse', '{"a":1', 'application/json', 400, 'invalid_json'],
    ['a scalar body', '17', 'application/json', 400, 'invalid_event'],
    ['an empty body', '  \n', 'application/json', 400, 'empty_body'],
    ['bytes that are not UTF-8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), 'application/json', 400, 'invalid_utf8'],
    ['an unsupported content type', '{"a":1}', 'application/xml', 415, 'unsupported_media_type'],
    ['a charset other than UTF-8', '{"a":1}', 'application/json; charset=iso-8859-1', 415, 'unsupported_media_type'],
  ])('refuses %s whole, with a JSON reason, appending nothing', async (_what, body, type, status, error) => {
    // Guarantee: a malformed body is refused as a whole with a reason, and none of its events reach the log.
    const h = await harness({ routes: [CLICKS] });
    const reply = await h.post('/collect', body, { 'Content-Type': type });
    expect(reply.status).toBe(status);
    expect(reply.json()).toMatchObject({ error, request_id: reply.headers['x-request-id'] });
    expect(typeof reply.json().message).toBe('string');
    expect(await h.records('clicks')).toEqual([]);
  });

  it('refuses a bad line of an NDJSON body with its line number, appending none of the good lines', async () => {
    // Guarantee: NDJSON is all-or-nothing too: the good lines before a bad one are not appended.
    const h = await harness({ routes: [{ path: '/ingest', topic: 'lines', format: 'ndjson' }] });
    const reply = await h.post('/ingest', '{"n":1}\n{"n":2}\n{"n":\n', { 'Content-Type': 'application/x-ndjson' });
    expect(reply.status).toBe(400);
    expect(reply.json().message).toMatch(/^line 3 is not JSON/);
    expect(await h.records('lines')).toEqual([]);
  });

  it('answers an empty batch 200 with nothing to append', async () => {
    // Guarantee: [] is a valid, empty batch, acknowledged at once.
    const h = await harness({ routes: [CLICKS] });
    const reply = await h.post('/collect', '[]');
    expect(reply.status).toBe(200);
    expect(reply.json().accepted).toBe(0);
    expect(h.batches).toEqual([]);
  });

  it('finds the elements of arrays as JSON.parse does', () => {
    // Guarantee: the byte-level array splitter cuts exactly where the elements of a valid array begin and end.
    const cases = ['[]', '[ ]', '[{}]', '[{"a":"]"},{"b":"\\\\"}]', ' [ {"x":[1,2,{"y":"}"}]} , {"z":"\\u005d"} ] ', '[{"a":"\\"],"}]'];
    for (const text of cases) {
      const parsed = JSON.parse(text) as unknown[];
      const slices = splitTopLevelArray(Buffer.from(text)).map((b) => JSON.parse(b.toString()) as unknown);
      expect(slices, text).toEqual(parsed);
    }
  });
});

describe('webhook: routes and limits', () => {
  it('sends each route to its own topic, and answers unknown paths, other methods and the health route', async () => {
    // Guarantee: routes map paths to topics exactly; anything else gets 404/405, never an append.
    const h = await harness({ routes: [CLICKS, { path: '/orders', topic: 'orders' }] });
    expect((await h.post('/collect?src=web', '{"a":1}')).status).toBe(200);
    expect((await h.post('/orders', '{"b":1}')).status).toBe(200);
    expect((await h.post('/collect/', '{"a":1}')).status).toBe(404);
    const get = await h.request('GET', '/collect');
    expect(get.status).toBe(405);
    expect(get.headers['allow']).toBe('POST, OPTIONS');
    const health = await h.request('GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.json()).toEqual({ status: 'ok', pending: 0 });
    expect((await h.records('clicks')).map((r) => r.value)).toEqual(['{"a":1}']);
    expect((await h.records('orders')).map((r) => r.value)).toEqual(['{"b":1}']);
  });

  it('refuses a body over max_body_bytes with 413, by Content-Length or while reading, and appends nothing', async () => {
    // Guarantee: oversized bodies are cut off with 413 (declared or streamed) and never reach the log.
    const h = await harness({ routes: [CLICKS], max_body_bytes: '1KiB' });
    const big = `[${Array.from({ length: 200 }, (_, i) => `{"i":${i}}`).join(',')}]`;
    const declared = await h.post('/collect', big);
    expect(declared.status).toBe(413);
    expect(declared.headers['connection']).toBe('close');
    // Chunked, without a Content-Length: the limit is found while reading.
    const streamed = await new Promise<Reply>((resolve, reject) => {
      const req = http.request(`${h.url}/collect`, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text) }));
      });
      req.on('error', reject);
      req.write(big.slice(0, 800));
      setTimeout(() => req.end(big.slice(800)), 20);
    });
    expect(streamed.status).toBe(413);
    expect(streamed.json().error).toBe('body_too_large');
    expect((await h.post('/collect', '{"small":true}')).status).toBe(200);
    expect((await h.records('clicks')).map((r) => r.value)).toEqual(['{"small":true}']);
  });

  it('answers 413 to Expect: 100-continue before the body is sent', async () => {
    // Guarantee: a client that asks first (curl does above 1 KiB) is refused without sending its oversized body.
    const h = await harness({ routes: [CLICKS], max_body_bytes: 100 });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${h.url}/collect`, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', 'Content-Length': 1000, Expect: '100-continue' } });
      req.on('continue', () => reject(new Error('the server invited the body')));
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
    });
    expect(status).toBe(413);
  });

  it('limits a route to its rate with 429 and Retry-After, before reading the body', async () => {
    // Guarantee: past the token bucket's burst, requests get 429 with a Retry-After and append nothing.
    const h = await harness({ routes: [{ ...CLICKS, rate_limit: { requests_per_second: 0.5, burst: 2 } }, { path: '/free', topic: 'free' }] });
    const replies = [];
    for (let i = 0; i < 3; i++) replies.push(await h.post('/collect', `{"i":${i}}`));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(replies[2]!.headers['retry-after']).toBe('2');
    expect(replies[2]!.json().error).toBe('rate_limited');
    // Other routes have their own bucket.
    expect((await h.post('/free', '{}')).status).toBe(200);
    expect(await h.records('clicks')).toHaveLength(2);
  });
});

describe('webhook: durability and backpressure', () => {
  it('shares one append among concurrent requests (group commit)', async () => {
    // Guarantee: requests that arrive while the log is busy are handed over together in one poll, so they share one append and fsync.
    const h = await harness({ routes: [CLICKS] });
    h.hold = true;
    const replies = Promise.all(Array.from({ length: 50 }, (_, i) => h.post('/collect', `{"i":${i}}`)));
    await untilPending(h, 50);
    h.hold = false;
    expect((await replies).map((r) => r.status)).toEqual(Array(50).fill(200));
    expect(h.batches).toEqual([50]);
    expect(await h.records('clicks')).toHaveLength(50);
  });

  it('answers 503 with Retry-After when the log refuses the batch, and 200 again once it accepts', async () => {
    // Guarantee: reject() turns into 503 + Retry-After for exactly the refused requests, and nothing of them is claimed durable.
    const h = await harness({ routes: [CLICKS] });
    h.refuse = new Error('disk full');
    const refused = await h.post('/collect', '{"a":1}');
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe(String(RETRY_AFTER_UNAVAILABLE_S));
    expect(refused.json().error).toBe('unavailable');
    expect(h.lines.some((l) => l.level === 'warn' && /refused a batch/.test(l.message ?? ''))).toBe(true);
    h.refuse = null;
    expect((await h.post('/collect', '{"b":2}')).status).toBe(200);
    expect((await h.records('clicks')).map((r) => r.value)).toEqual(['{"b":2}']);
  });

  it('answers 503 with Retry-After: 1 past max_pending, without reading the body', async () => {
    // Guarantee: a full in-flight queue pushes back at the door instead of buffering without bound.
    const h = await harness({ routes: [CLICKS], max_pending: 3 });
    h.hold = true;
    const first = Promise.all([1, 2, 3].map((i) => h.post('/collect', `{"i":${i}}`)));
    await untilPending(h, 3);
    expect((await h.request('GET', '/healthz')).status).toBe(503);
    const over = await h.post('/collect', '{"i":4}');
    expect(over.status).toBe(503);
    expect(over.headers['retry-after']).toBe(String(RETRY_AFTER_FULL_S));
    expect(over.json().error).toBe('overloaded');
    h.hold = false;
    expect((await first).map((r) => r.status)).toEqual([200, 200, 200]);
    expect(await h.records('clicks')).toHaveLength(3);
  });

  it('answers 503 after ack_timeout while nothing polls, and drops what was never handed over', async () => {
    // Guarantee: a paused pipeline cannot hold a sender forever, and a request answered 503 before it was polled is never appended.
    const h = await harness({ routes: [CLICKS], ack_timeout: '200ms' });
    h.hold = true;
    const reply = await h.post('/collect', '{"late":true}');
    expect(reply.status).toBe(503);
    expect(reply.headers['retry-after']).toBe(String(RETRY_AFTER_UNAVAILABLE_S));
    h.hold = false;
    expect((await h.post('/collect', '{"on_time":true}')).status).toBe(200);
    expect((await h.records('clicks')).map((r) => r.value)).toEqual(['{"on_time":true}']);
  });

  it('drops a request whose client hung up before the poll, appending nothing of it and freeing its slot', async () => {
    // Guarantee: a sender that gave up before its events were handed to the log never finds them appended, so its retry is no duplicate.
    const h = await harness({ routes: [CLICKS], max_pending: 1 });
    h.hold = true;
    const gone = http.request(`${h.url}/collect`, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json' } });
    const ended = new Promise<void>((resolve) => gone.once('error', () => resolve()).once('close', () => resolve()));
    gone.end('{"gave_up":true}');
    await untilPending(h, 1);
    gone.destroy();
    await ended;
    // Still paused: the slot comes free without a poll.
    await untilPendingAtMost(h, 0);
    h.hold = false;
    const reply = await h.post('/collect', '{"stayed":true}');
    expect(reply.status, reply.text).toBe(200);
    expect((await h.records('clicks')).map((r) => r.value)).toEqual(['{"stayed":true}']);
    expect(((await h.request('GET', '/healthz')).json() as { pending: number }).pending).toBe(0);
  });

  it('counts requests by route and status, and events by route, in its metrics', async () => {
    // Guarantee: every answered request is counted once under its route and status (unrouted ones under route ""), and every appended event under its route.
    const h = await startHarness({ routes: [CLICKS, { path: '/other', topic: 'other' }] });
    expect((await h.post('/collect', '[{"a":1},{"a":2}]')).status).toBe(200);
    expect((await h.post('/collect', '{"a":3}')).status).toBe(200);
    expect((await h.post('/collect', '{"a":')).status).toBe(400);
    expect((await h.post('/other', '{"b":1}')).status).toBe(200);
    expect((await h.post('/nowhere', '{"c":1}')).status).toBe(404);
    expect((await h.request('OPTIONS', '/other')).status).toBe(204);
    await h.close();
    const counted = Object.fromEntries([...h.counters].filter(([k]) => k.startsWith('requests_total') || k.startsWith('events_total')));
    expect(counted).toEqual({
      'requests_total{"route":"/collect","status":"200"}': 2,
      'requests_total{"route":"/collect","status":"400"}': 1,
      'requests_total{"route":"/other","status":"200"}': 1,
      'requests_total{"route":"/other","status":"204"}': 1,
      'requests_total{"route":"","status":"404"}': 1,
      'events_total{"route":"/collect"}': 3,
      'events_total{"route":"/other"}': 1,
    });
  });

  it('answers every waiting request 503 on stop, and frees the port', async () => {
    // Guarantee: stopping never leaves a sender hanging or claims durability for what was not appended.
    const h = await startHarness({ routes: [CLICKS] });
    h.hold = true;
    // Not through the harness's agent, which close() destroys.
    const waiting = Promise.all([1, 2].map((i) => send(false, `${h.url}/collect`, 'POST', `{"i":${i}}`, { 'Content-Type': 'application/json' })));
    await untilPending(h, 2);
    const port = new URL(h.url).port;
    await h.close();
    const replies = await waiting;
    expect(replies.map((r) => r.status)).toEqual([503, 503]);
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer().once('error', () => resolve(false));
      server.listen(Number(port), '127.0.0.1', () => server.close(() => resolve(true)));
    });
    expect(free).toBe(true);
  });
});

describe('webhook: CORS', () => {
  const config = { routes: [CLICKS], cors: { allowed_origins: ['https://shop.example.com'] } };

  it('answers a preflight from an allowed origin, and refuses other origins with 403 and no append', async () => {
    // Guarantee: browsers on allowed origins may post (preflight included); pages elsewhere cannot make the server append.
    const h = await harness(config);
    const preflight = await h.request('OPTIONS', '/collect', {
      headers: { Origin: 'https://shop.example.com', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers).toMatchObject({
      'access-control-allow-origin': 'https://shop.example.com',
      'access-control-allow-methods': 'POST, OPTIONS',
      'access-control-allow-headers': 'Content-Type, Authorization, Idempotency-Key',
      'access-control-max-age': '600',
      vary: 'Origin',
    });
    const allowed = await h.post('/collect', '{"a":1}', { Origin: 'https://shop.example.com' });
    expect(allowed.status).toBe(200);
    expect(allowed.headers['access-control-allow-origin']).toBe('https://shop.example.com');
    expect(allowed.headers['access-control-expose-headers']).toContain('X-Request-Id');
    const evilPreflight = await h.request('OPTIONS', '/collect', { headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
    expect(evilPreflight.status).toBe(403);
    const evil = await h.post('/collect', '{"b":2}', { Origin: 'https://evil.example', 'Content-Type': 'text/plain' });
    expect(evil.status).toBe(403);
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    // Clients that are not browsers send no Origin, and are not affected.
    expect((await h.post('/collect', '{"c":3}')).status).toBe(200);
    expect((await h.records('clicks')).map((r) => r.value).sort()).toEqual(['{"a":1}', '{"c":3}']);
  });
});

describe('webhook: de-duplication', () => {
  it('replays the first 2xx to a repeated Idempotency-Key and appends nothing', async () => {
    // Guarantee: a retried request with the same key within the window is acknowledged again without a second copy in the log.
    const h = await harness({ routes: [CLICKS, { path: '/other', topic: 'other' }] });
    const first = await h.post('/collect', '{"n":1}', { 'Idempotency-Key': 'k-1' });
    const again = await h.post('/collect', '{"n":1}', { 'Idempotency-Key': 'k-1' });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.text).toBe(first.text);
    expect(again.headers['x-request-id']).toBe(first.headers['x-request-id']);
    expect(again.headers['idempotent-replayed']).toBe('true');
    // Keys are per route.
    expect((await h.post('/other', '{"n":1}', { 'Idempotency-Key': 'k-1' })).headers['idempotent-replayed']).toBeUndefined();
    expect(await h.records('clicks')).toHaveLength(1);
    expect(await h.records('other')).toHaveLength(1);
  });

  it('makes a repeat that arrives while the first is pending wait for the first answer', async () => {
    // Guarantee: concurrent duplicates (a sender retrying on its own timeout) append once and both get the 2xx.
    const h = await harness({ routes: [CLICKS] });
    h.hold = true;
    const first = h.post('/collect', '{"n":1}', { 'Idempotency-Key': 'same' });
    await untilPending(h, 1);
    const second = h.post('/collect', '{"n":1}', { 'Idempotency-Key': 'same' });
    await sleep(50);
    h.hold = false;
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(b.json()).toEqual(a.json());
    expect(await h.records('clicks')).toHaveLength(1);
  });

  it('forgets a key whose request failed, so its retry is processed', async () => {
    // Guarantee: only 2xx answers are remembered: a retry after a 503 or a 400 is not told "done" for data that was never stored.
    const h = await harness({ routes: [CLICKS] });
    h.refuse = new Error('log full');
    expect((await h.post('/collect', '{"n":1}', { 'Idempotency-Key': 'retry-me' })).status).toBe(503);
    expect((await h.post('/collect', '{"n":', { 'Idempotency-Key': 'retry-me' })).status).toBe(400);
    h.refuse = null;
    const retried = await h.post('/collect', '{"n":1}', { 'Idempotency-Key': 'retry-me' });
    expect(retried.status).toBe(200);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
    expect(await h.records('clicks')).toHaveLength(1);
  });

  it('does not de-duplicate with dedupe_window 0s', async () => {
    // Guarantee: turning de-duplication off appends every request.
    const h = await harness({ routes: [CLICKS], dedupe_window: '0s' });
    await h.post('/collect', '{"n":1}', { 'Idempotency-Key': 'k' });
    await h.post('/collect', '{"n":1}', { 'Idempotency-Key': 'k' });
    expect(await h.records('clicks')).toHaveLength(2);
  });
});

describe('webhook: the definition', () => {
  it('declares its routes\' topics and rejects a duplicate path at validation', () => {
    // Guarantee: validation knows the topics a webhook writes, and a path given twice is a spec problem, not a runtime surprise.
    const spec = (routes: unknown[]): string =>
      toYaml({ name: 'p', sources: [{ name: 'hook', connector: 'webhook', config: { port: 0, routes } }], sinks: [{ name: 'out', connector: 'file', topics: ['clicks'], config: { path: 'x.jsonl' } }] });
    const ok = validateSpecTexts([{ file: 'p.yaml', text: spec([CLICKS, { path: '/b', topic: 'clicks' }]) }], { registry, env: {} });
    expect(ok.problems.map(formatProblem)).toEqual([]);
    expect(webhook.producedTopics!(ok.specs[0]!.spec.sources[0]!.config as WebhookConfig)).toEqual(['clicks']);
    const dup = validateSpecTexts([{ file: 'p.yaml', text: spec([CLICKS, { path: '/collect', topic: 'other' }]) }], { registry, env: {} });
    expect(dup.problems.map((p) => p.message)).toContainEqual(expect.stringContaining('route path /collect appears twice'));
    const health = validateSpecTexts([{ file: 'p.yaml', text: spec([{ path: '/healthz', topic: 'clicks' }]) }], { registry, env: {} });
    expect(health.problems.map((p) => p.path)).toContain('/sources/0/config/routes/0/path');
  });
});

describe('webhook: in the real runtime', () => {
  it('answers 503 when the runtime gives up appending, and keeps serving', async () => {
    // Guarantee: with the real SourceRunner, a log that refuses writes makes the webhook answer 503 instead of failing the connector or hanging.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-webhook-rt-'));
    const log = await openLog(dir, { maintenanceIntervalMs: 0 });
    // A topic whose every append throws: a compacted topic refuses records without a key.
    await log.createTopic('strict', { cleanup: 'compact' });
    const text = toYaml({
      name: 'rt',
      sources: [{ name: 'hook', connector: 'webhook', config: { port: 0, routes: [{ path: '/good', topic: 'good' }, { path: '/strict', topic: 'strict' }] }, errors: { retry_timeout: '1s' } }],
      sinks: [],
    });
    // The project's registry: a registry without any sink fails to compose (see the report).
    const { problems, specs } = validateSpecTexts([{ file: 'rt.yaml', text }], { registry, env: {} });
    expect(problems.map(formatProblem)).toEqual([]);
    const lines: string[] = [];
    const logger = quietLogger(lines);
    const runtime = await Runtime.start(specs, { log, registry, logger, statusIntervalMs: 0, shutdownTimeoutMs: 3000 });
    try {
      await runtime.started('hook');
      const url = await waitForUrl(lines);
      const strict = await send(false, `${url}/strict`, 'POST', '{"no":"key"}', { 'Content-Type': 'application/json' });
      expect(strict.status).toBe(503);
      expect(strict.headers['retry-after']).toBe(String(RETRY_AFTER_UNAVAILABLE_S));
      const good = await send(false, `${url}/good`, 'POST', '{"ok":1}', { 'Content-Type': 'application/json' });
      expect(good.status).toBe(200);
      expect(runtime.status('hook').state).toBe('RUNNING');
      expect((await log.describeTopic('good')).partitions[0]!.endOffset).toBe(1n);
    } finally {
      await runtime.stop();
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A logger that keeps the messages, with the url of the listening line in front. */
function quietLogger(lines: string[]): Logger {
  const keep = (fields: object | string, message?: string): void => {
    if (typeof fields === 'string') lines.push(fields);
    else lines.push(`${message ?? ''} ${JSON.stringify(fields, (_k, v: unknown) => (v instanceof Error ? v.message : v))}`);
  };
  const logger = { trace: keep, debug: keep, info: keep, warn: keep, error: keep, child: () => logger };
  return logger;
}

async function waitForUrl(lines: string[]): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const line = lines.find((l) => l.startsWith('webhook listening on '));
    if (line) return /listening on (\S+)/.exec(line)![1]!;
    await sleep(10);
  }
  throw new Error(`the webhook never listened: ${lines.join('\n')}`);
}


/**
 * Every auth mode and preset of the webhook source against a running server, with each signature
 * computed here the way the real sender computes it (GitHub's, Stripe's and Shopify's documented
 * algorithms over the raw body), and the wrong secret, a tampered body and malformed signatures
 * rejected with 401 and nothing appended.
 */
import { createHmac } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './fixtures/harness.ts';
import { decodeDigest, safeEqualText } from './index.ts';

const open: Harness[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((h) => h.close()));
});

async function serve(auth: Record<string, unknown>, format: 'json' | 'ndjson' = 'json'): Promise<Harness> {
  const h = await startHarness({ routes: [{ path: '/hook', topic: 'hooks', format, auth }] });
  open.push(h);
  return h;
}

const hmacOf = (algorithm: string, secret: string, payload: string | Buffer, encoding: 'hex' | 'base64'): string =>
  createHmac(algorithm, secret).update(payload).digest(encoding);

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** A GitHub delivery as GitHub sends it: X-Hub-Signature-256 = sha256= + hex HMAC-SHA256 of the raw body. */
function github(secret: string, body: string, delivery = '72d3162e-cc78-11e3-81ab-4c9367dc0958'): Record<string, string> {
  return {
    'Content-Type': 'application/json',
    'User-Agent': 'GitHub-Hookshot/044aadd',
    'X-GitHub-Event': 'push',
    'X-GitHub-Delivery': delivery,
    'X-Hub-Signature-256': `sha256=${hmacOf('sha256', secret, body, 'hex')}`,
  };
}

/** A Stripe event as Stripe signs it: Stripe-Signature t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">. */
function stripe(secret: string, body: string, t = Math.floor(Date.now() / 1000)): Record<string, string> {
  return { 'Content-Type': 'application/json; charset=utf-8', 'Stripe-Signature': `t=${t},v1=${hmacOf('sha256', secret, `${t}.${body}`, 'hex')}` };
}

/** A Shopify webhook as Shopify signs it: X-Shopify-Hmac-Sha256 = base64 HMAC-SHA256 of the raw body. */
function shopify(secret: string, body: string, webhookId = 'b54557e4-bdd9-4b37-8a5f-bf7d70bcd043'): Record<string, string> {
  return {
    'Content-Type': 'application/json',
    'X-Shopify-Topic': 'orders/create',
    'X-Shopify-Webhook-Id': webhookId,
    'X-Shopify-Hmac-Sha256': hmacOf('sha256', secret, body, 'base64'),
  };
}

describe('webhook auth: none, bearer and basic', () => {
  it('none lets anyone post', async () => {
    // Guarantee: a route without auth accepts unauthenticated requests.
    const h = await serve({ type: 'none' });
    expect((await h.post('/hook', '{"a":1}')).status).toBe(200);
  });

  it('bearer accepts the token and refuses a wrong or missing one with 401 and a challenge', async () => {
    // Guarantee: only Authorization: Bearer <token> with the configured token appends.
    const h = await serve({ type: 'bearer', token: 's3cret-token' });
    expect((await h.post('/hook', '{"a":1}', { Authorization: 'Bearer s3cret-token' })).status).toBe(200);
    for (const header of ['Bearer s3cret-token2', 'Bearer s3cret-toke', 'Basic s3cret-token', 'bearer', '']) {
      const reply = await h.post('/hook', '{"b":2}', header ? { Authorization: header } : {});
      expect(reply.status, header).toBe(401);
      expect(reply.headers['www-authenticate']).toBe('Bearer');
      expect(reply.json().error).toBe('unauthorized');
    }
    expect(await h.records('hooks')).toHaveLength(1);
  });

  it('basic accepts the user and password and refuses either one wrong', async () => {
    // Guarantee: Basic credentials must match in both halves; the answer does not say which was wrong.
    const h = await serve({ type: 'basic', username: 'collector', password: 'pa:ss word' });
    expect((await h.post('/hook', '{"a":1}', { Authorization: basic('collector', 'pa:ss word') })).status).toBe(200);
    const wrongUser = await h.post('/hook', '{"b":2}', { Authorization: basic('collectorx', 'pa:ss word') });
    const wrongPassword = await h.post('/hook', '{"b":2}', { Authorization: basic('collector', 'pa:ss wor') });
    expect([wrongUser.status, wrongPassword.status]).toEqual([401, 401]);
    expect(wrongUser.json().message).toBe(wrongPassword.json().message);
    expect(wrongUser.headers['www-authenticate']).toMatch(/^Basic realm=/);
    expect((await h.post('/hook', '{"b":2}', { Authorization: 'Basic !!!' })).status).toBe(401);
    expect(await h.records('hooks')).toHaveLength(1);
  });
});

describe('webhook auth: generic hmac', () => {
  it.each([
    ['sha256', 'hex', 'sha256='],
    ['sha1', 'base64', ''],
    ['sha512', 'hex', 'v1,'],
  ] as const)('%s, %s digests with prefix %j verify the exact body bytes', async (algorithm, encoding, prefix) => {
    // Guarantee: the configured header, algorithm, encoding and prefix are honoured, and a wrong secret, a tampered body or junk after the digest fails.
    const h = await serve({ type: 'hmac', secret: 'hmac-secret', header: 'X-Acme-Signature', algorithm, encoding, prefix }, 'ndjson');
    const body = '{"n":1}\n{"n":2}\n';
    const sign = (secret: string, payload: string): string => `${prefix}${hmacOf(algorithm, secret, payload, encoding)}`;
    expect((await h.post('/hook', body, { 'X-Acme-Signature': sign('hmac-secret', body) })).status).toBe(200);
    const refused: Array<Record<string, string>> = [
      { 'X-Acme-Signature': sign('wrong-secret', body) },
      { 'X-Acme-Signature': sign('hmac-secret', body.replace('2', '3')) },
      { 'X-Acme-Signature': `${sign('hmac-secret', body)}${encoding === 'hex' ? 'zz' : '!'}` },
      { 'X-Acme-Signature': sign('hmac-secret', body).slice(0, -4) },
      { 'X-Signature': sign('hmac-secret', body) },
      {},
    ];
    for (const headers of refused) expect((await h.post('/hook', body, headers)).status, JSON.stringify(headers)).toBe(401);
    expect(await h.records('hooks')).toHaveLength(2);
  });
});

describe('webhook auth: presets', () => {
  it('github verifies X-Hub-Signature-256 and de-duplicates on X-GitHub-Delivery', async () => {
    // Guarantee: a GitHub delivery signed with the secret is appended once, even when GitHub redelivers it; another secret gets 401.
    const h = await serve({ type: 'github', secret: 'It\'s a Secret to Everybody' });
    const body = JSON.stringify({ ref: 'refs/heads/main', repository: { id: 1296269, full_name: 'octocat/Hello-World' } });
    // The test vector of GitHub's docs, to be sure the scheme is GitHub's.
    expect(hmacOf('sha256', 'It\'s a Secret to Everybody', 'Hello, World!', 'hex')).toBe('757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17');
    const first = await h.post('/hook', body, github('It\'s a Secret to Everybody', body));
    expect(first.status).toBe(200);
    const redelivered = await h.post('/hook', body, github('It\'s a Secret to Everybody', body));
    expect(redelivered.status).toBe(200);
    expect(redelivered.headers['idempotent-replayed']).toBe('true');
    expect((await h.post('/hook', body, github('another secret', body, 'other-delivery'))).status).toBe(401);
    expect((await h.post('/hook', `${body} `, github('It\'s a Secret to Everybody', body, 'tampered'))).status).toBe(401);
    const unsigned = github('It\'s a Secret to Everybody', body, 'unsigned');
    delete unsigned['X-Hub-Signature-256'];
    expect((await h.post('/hook', body, unsigned)).status).toBe(401);
    expect(await h.records('hooks')).toHaveLength(1);
  });

  it('github verifies the form content type over the raw form body', async () => {
    // Guarantee: GitHub's application/x-www-form-urlencoded deliveries (payload=...) are verified on the bytes sent and stored as the JSON payload.
    const h = await serve({ type: 'github', secret: 'form-secret' });
    const payload = JSON.stringify({ action: 'opened', number: 7 });
    const body = `payload=${encodeURIComponent(payload)}`;
    const reply = await h.post('/hook', body, { ...github('form-secret', body), 'Content-Type': 'application/x-www-form-urlencoded' });
    expect(reply.status, reply.text).toBe(200);
    expect((await h.records('hooks')).map((r) => r.value)).toEqual([payload]);
  });

  it('stripe verifies Stripe-Signature within the tolerance and de-duplicates on the event id', async () => {
    // Guarantee: a Stripe event signed with the endpoint secret is appended once; a wrong secret, a stale or future timestamp, or a tampered body gets 401.
    const h = await serve({ type: 'stripe', secret: 'whsec_test_secret', tolerance: '5m' });
    const body = JSON.stringify({ id: 'evt_1NG8Du2eZvKYlo2CUI79vXWy', object: 'event', type: 'payment_intent.succeeded', data: { object: { amount: 2000 } } });
    expect((await h.post('/hook', body, stripe('whsec_test_secret', body))).status).toBe(200);
    const again = await h.post('/hook', body, stripe('whsec_test_secret', body));
    expect(again.status).toBe(200);
    expect(again.headers['idempotent-replayed']).toBe('true');
    const now = Math.floor(Date.now() / 1000);
    const other = body.replace('evt_1NG8Du2eZvKYlo2CUI79vXWy', 'evt_other');
    expect((await h.post('/hook', other, stripe('whsec_wrong', other))).status).toBe(401);
    expect((await h.post('/hook', other, stripe('whsec_test_secret', other, now - 301))).status).toBe(401);
    expect((await h.post('/hook', other, stripe('whsec_test_secret', other, now + 301))).status).toBe(401);
    expect((await h.post('/hook', `${other}\n`, stripe('whsec_test_secret', other))).status).toBe(401);
    expect((await h.post('/hook', other, { 'Stripe-Signature': `t=${now}` })).status).toBe(401);
    // While a secret is rolled, Stripe sends a v1 per secret; one match is enough.
    const rolled = stripe('whsec_test_secret', other)['Stripe-Signature']!.replace(',v1=', `,v1=${hmacOf('sha256', 'whsec_old', `${now}.${other}`, 'hex')},v0=abc,v1=`);
    expect((await h.post('/hook', other, { 'Stripe-Signature': rolled })).status).toBe(200);
    expect((await h.records('hooks')).map((r) => JSON.parse(r.value).id).sort()).toEqual(['evt_1NG8Du2eZvKYlo2CUI79vXWy', 'evt_other']);
  });

  it('shopify verifies X-Shopify-Hmac-Sha256 and de-duplicates on X-Shopify-Webhook-Id', async () => {
    // Guarantee: a Shopify webhook signed with the app secret is appended once per webhook id; another secret gets 401.
    const h = await serve({ type: 'shopify', secret: 'shpss_app_secret' });
    const body = '{"id":820982911946154508,"email":"jon@example.com","total_price":"403.00"}';
    expect((await h.post('/hook', body, shopify('shpss_app_secret', body))).status).toBe(200);
    expect((await h.post('/hook', body, shopify('shpss_app_secret', body))).headers['idempotent-replayed']).toBe('true');
    expect((await h.post('/hook', body, shopify('shpss_other', body, 'another-id'))).status).toBe(401);
    const hexInstead = { ...shopify('shpss_app_secret', body, 'hex-id'), 'X-Shopify-Hmac-Sha256': hmacOf('sha256', 'shpss_app_secret', body, 'hex') };
    expect((await h.post('/hook', body, hexInstead)).status).toBe(401);
    const records = await h.records('hooks');
    expect(records).toHaveLength(1);
    // The id is past 2^53: the stored bytes keep it, JSON.parse would not.
    expect(records[0]!.value).toBe(body);
  });
});

describe('webhook auth: comparisons', () => {
  it('decodes digests strictly and compares texts of any length', () => {
    // Guarantee: a signature with junk around a valid digest never decodes to that digest, and text comparison is total.
    expect(decodeDigest('abcd', 'hex')).toEqual(Buffer.from([0xab, 0xcd]));
    expect(decodeDigest('abcdzz', 'hex')).toBeNull();
    expect(decodeDigest('abc', 'hex')).toBeNull();
    expect(decodeDigest('', 'hex')).toBeNull();
    expect(decodeDigest('q83v', 'base64')).toEqual(Buffer.from([0xab, 0xcd, 0xef]));
    expect(decodeDigest('q83v!', 'base64')).toBeNull();
    expect(decodeDigest('q8=3', 'base64')).toBeNull();
    expect(safeEqualText('a', 'a')).toBe(true);
    expect(safeEqualText('a', 'ab')).toBe(false);
    expect(safeEqualText('', '')).toBe(true);
  });
});

import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { SluiceError, isSluiceError } from '../errors.ts';
import {
  REDACTED_TEXT,
  TRANSFORM_SCHEMA,
  TRANSFORM_TYPES,
  buildTransformChain,
  validateTransformEntries,
  type Message,
  type TransformEntry,
} from './index.ts';

const baseDir = process.cwd();

function click(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    user_id: 'u_1042',
    session_id: 's_9f2c',
    url: 'https://shop.example.com/cart?item=42',
    referrer: 'https://www.google.com/',
    user_agent: 'Mozilla/5.0 (X11; Linux x86_64)',
    event: 'add_to_cart',
    country: 'DE',
    email: 'ada@example.com',
    ip: '203.0.113.7',
    ts: '2024-03-07T10:15:30.250Z',
    ...overrides,
  };
}

function message(value: unknown, overrides: Partial<Message> = {}): Message {
  return { topic: 'clicks', key: 'u_1042', value, headers: { tenant: 'acme' }, timestamp: 1_700_000_000_000, ...overrides };
}

function cdc(op: string, before: unknown, after: unknown): Record<string, unknown> {
  return {
    before,
    after,
    source: { connector: 'postgresql', db: 'shop', schema: 'public', table: 'orders', lsn: 24023128 },
    op,
    ts_ms: 1_709_806_530_250,
  };
}

async function run(entries: TransformEntry[], input: Message): Promise<Message | null> {
  const chain = await buildTransformChain(entries, { baseDir });
  return chain(input);
}

async function failure(promise: Promise<unknown>): Promise<SluiceError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof SluiceError) return err;
    throw err;
  }
  throw new Error('expected a SluiceError, got success');
}

function hasJsonataInternals(value: unknown): boolean {
  if (Array.isArray(value)) return Object.hasOwn(value, 'sequence') || value.some(hasJsonataInternals);
  if (typeof value === 'object' && value !== null) {
    return Object.getPrototypeOf(value) !== Object.prototype || Object.values(value).some(hasJsonataInternals);
  }
  return false;
}

describe('schema', () => {
  it('documents every property of every transform type', () => {
    // Every property of every branch has a description, since the reference doc is generated from the schema.
    const missing: string[] = [];
    for (const branch of TRANSFORM_SCHEMA.oneOf as readonly { title: string; description?: string; properties: object }[]) {
      if (!branch.description) missing.push(branch.title);
      for (const [name, property] of Object.entries(branch.properties)) {
        if (!(property as { description?: string }).description) missing.push(`${branch.title}.${name}`);
      }
    }
    expect(missing).toEqual([]);
    expect(TRANSFORM_TYPES).toEqual(['filter', 'set', 'map', 'drop_fields', 'rename_fields', 'mask_fields', 'route', 'timestamp', 'unwrap_cdc', 'js']);
  });

  it('compiles under the spec loader’s strict Ajv settings and validates the examples', () => {
    // The schema can be embedded in the pipeline spec schema as the spec loader compiles it (strict, useDefaults).
    const ajv = new Ajv({ allErrors: true, useDefaults: true, verbose: true, allowUnionTypes: true, strict: true, strictRequired: false });
    const validate = ajv.compile({ type: 'array', items: TRANSFORM_SCHEMA });
    const entries: TransformEntry[] = [
      { type: 'filter', expr: 'event = "purchase"' },
      { type: 'set', fields: { 'page.host': '$substringBefore($substringAfter(url, "://"), "/")' } },
      { type: 'map', expr: '{ "user": user_id }' },
      { type: 'drop_fields', fields: ['user_agent'] },
      { type: 'rename_fields', fields: { user_id: 'user.id' } },
      { type: 'mask_fields', fields: ['email'], mode: 'hash', salt: 's3cret-salt' },
      { type: 'route', topic: 'clicks.{value.country}' },
      { type: 'timestamp', field: 'ts', format: 'iso' },
      { type: 'unwrap_cdc', delete_handling: 'drop' },
      { type: 'js', module: './enrich.mjs', export: 'enrich' },
    ];
    expect(validate(entries), JSON.stringify(validate.errors)).toBe(true);
    expect(validate([{ type: 'mask_fields', fields: ['email'], mode: 'scramble' }])).toBe(false);
  });

  it('derives the entry type from the schema', () => {
    // TransformEntry is the schema's type, so a misspelt option fails to compile rather than at runtime.
    expectTypeOf<Extract<TransformEntry, { type: 'mask_fields' }>['mode']>().toEqualTypeOf<'redact' | 'hash' | undefined>();
    expectTypeOf<Extract<TransformEntry, { type: 'set' }>['fields']>().toEqualTypeOf<{ [x: string]: string }>();
  });
});

describe('validation at build time', () => {
  it('reports a JSONata syntax error with the transform index and the character position', async () => {
    // A broken expression fails when the chain is built, naming the entry, the field and where in the expression.
    const entries: TransformEntry[] = [
      { type: 'drop_fields', fields: ['ip'] },
      { type: 'filter', expr: 'event = = "purchase"' },
    ];
    const err = await failure(buildTransformChain(entries, { baseDir }));
    expect(err.code).toBe('SPEC_INVALID');
    expect(err.message).toMatch(/^transforms\/1\/expr \(filter\): JSONata syntax error at character 9: /);
    expect(err.context).toMatchObject({ transform: 1, transform_type: 'filter', position: 9 });
  });

  it('points a set expression error at its field', async () => {
    // Each expression of a set is compiled on its own, and its error names the field it computes.
    const problems = validateTransformEntries([{ type: 'set', fields: { 'page.host': '$substringAfter(url, "://"' } }]);
    expect(problems).toEqual([
      expect.objectContaining({ index: 0, type: 'set', path: '/0/fields/page.host', message: expect.stringMatching(/JSONata syntax error at character \d+/) }),
    ]);
  });

  it('gives one readable problem per mistake instead of one per oneOf branch', () => {
    // Entries are checked against their own type's branch, with did-you-mean for misspellings.
    const problems = validateTransformEntries([
      { type: 'flter', expr: 'true' },
      { type: 'filter' },
      { type: 'filter', exprs: 'true', expr: 'true' },
      { type: 'mask_fields', fields: ['email'], mode: 'scramble' },
      { type: 'drop_fields', fields: ['a..b'] },
      { type: 'route', topic: 'clicks.{vaule.country}' },
      { type: 'route', topic: 'clicks.{value.country' },
      'filter',
    ]);
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      expect.stringMatching(/^\/0\/type: unknown transform type "flter" \(did you mean filter\?\); known: filter, set, /),
      "/1: must have required property 'expr'",
      expect.stringMatching(/^\/2\/exprs: unknown property "exprs" for filter \(did you mean expr\?\)/),
      '/3/mode: must be one of redact, hash',
      expect.stringMatching(/^\/4\/fields\/0: must match pattern/),
      expect.stringMatching(/^\/5\/topic: unknown placeholder \{vaule\.country\} at character 8 of "clicks\.\{vaule\.country\}"; use \{topic\}/),
      expect.stringMatching(/^\/6\/topic: must match pattern/),
      '/7: must be an object with a type',
    ]);
  });

  it('treats an empty list as the identity', async () => {
    // A connector without transforms passes records through untouched.
    const input = message(click());
    expect(await run([], input)).toBe(input);
  });
});

describe('filter', () => {
  it('keeps records whose expression is truthy and drops the rest', async () => {
    // filter keeps exactly the records its JSONata condition holds for.
    const chain = await buildTransformChain([{ type: 'filter', expr: 'event in ["purchase", "add_to_cart"] and country != "US"' }], { baseDir });
    const kept = message(click());
    expect(await chain(kept)).toBe(kept);
    expect(await chain(message(click({ event: 'page_view' })))).toBeNull();
    expect(await chain(message(click({ country: 'US' })))).toBeNull();
  });

  it('binds $key, $headers, $topic and $timestamp', async () => {
    // Expressions see the whole record, not only its value.
    const chain = await buildTransformChain(
      [{ type: 'filter', expr: '$key = "u_1042" and $headers.tenant = "acme" and $topic = "clicks" and $timestamp > 1600000000000' }],
      { baseDir },
    );
    expect(await chain(message(click()))).not.toBeNull();
    expect(await chain(message(click(), { key: 'u_7' }))).toBeNull();
    expect(await chain(message(click(), { headers: { tenant: 'globex' } }))).toBeNull();
  });

  it('evaluates tombstones with a null value, so the expression decides whether deletes pass', async () => {
    // Deletes reach filter too; an expression that tests only the value drops them, one that tests $key can keep them.
    const tombstone = message(null, { key: { id: 1001 } });
    expect(await run([{ type: 'filter', expr: 'status = "paid"' }], tombstone)).toBeNull();
    expect(await run([{ type: 'filter', expr: '$ = null or status = "paid"' }], tombstone)).toBe(tombstone);
  });
});

describe('set', () => {
  it('sets nested fields from expressions without mutating the input', async () => {
    // set writes each field by dot path, creating parents, and leaves the record it was given unchanged.
    const value = click();
    const input = message(value);
    const snapshot = structuredClone(input);
    const out = await run(
      [{
        type: 'set',
        fields: {
          'page.host': '$substringBefore($substringAfter(url, "://"), "/")',
          'page.path': '$substringBefore($substringAfter($substringAfter(url, "://"), "/"), "?")',
          tenant: '$headers.tenant',
          is_conversion: 'event in ["purchase", "add_to_cart"]',
        },
      }],
      input,
    );
    expect(out?.value).toEqual({ ...value, page: { host: 'shop.example.com', path: 'cart' }, tenant: 'acme', is_conversion: true });
    expect(input).toEqual(snapshot);
  });

  it('evaluates every expression against the value the step received', async () => {
    // Fields in one set step do not see each other's new values, so two fields can be swapped.
    const out = await run([{ type: 'set', fields: { a: 'b', b: 'a' } }], message({ a: 1, b: 2 }));
    expect(out?.value).toEqual({ a: 2, b: 1 });
  });

  it('removes a field whose expression yields nothing and returns plain JSON', async () => {
    // A missing path removes the field, and JSONata sequences and prototype-less objects come out as plain arrays and objects.
    const out = await run(
      [{ type: 'set', fields: { referrer: 'missing_field', skus: 'items.sku', summary: '{ "count": $count(items), "skus": items.sku }' } }],
      message({ referrer: 'x', items: [{ sku: 'A-1' }, { sku: 'B-2' }] }),
    );
    expect(out?.value).toEqual({ items: [{ sku: 'A-1' }, { sku: 'B-2' }], skus: ['A-1', 'B-2'], summary: { count: 2, skus: ['A-1', 'B-2'] } });
    expect(hasJsonataInternals(out?.value)).toBe(false);
  });

  it('passes tombstones and fails on values that are not objects', async () => {
    // set only edits rows: deletes pass unchanged, and a scalar value is a record error.
    const tombstone = message(null);
    expect(await run([{ type: 'set', fields: { a: '1' } }], tombstone)).toBe(tombstone);
    const err = await failure(run([{ type: 'set', fields: { a: '1' } }], message('just a string')));
    expect(err.code).toBe('TRANSFORM_FAILED');
    expect(err.message).toBe('transform 0 (set): set needs an object value, got a string');
  });

  it('fails when a parent on the path is not an object', async () => {
    // set never silently replaces a scalar with an object.
    const err = await failure(run([{ type: 'set', fields: { 'country.code': '"DE"' } }], message(click())));
    expect(err.message).toBe('transform 0 (set): cannot set country.code: country is a string, not an object');
    expect(err.context).toMatchObject({ field: 'country.code' });
  });
});

describe('map', () => {
  it('replaces the value with the expression result', async () => {
    // map reshapes the value into whatever the expression builds.
    const out = await run(
      [{ type: 'map', expr: '{ "user": user_id, "session": session_id, "action": $uppercase(event), "key": $key }' }],
      message(click()),
    );
    expect(out?.value).toEqual({ user: 'u_1042', session: 's_9f2c', action: 'ADD_TO_CART', key: 'u_1042' });
    expect(Object.getPrototypeOf(out?.value)).toBe(Object.prototype);
  });

  it('passes tombstones and rejects an expression that yields nothing', async () => {
    // map never turns a delete into a row, nor a row into an accidental delete.
    const tombstone = message(null);
    expect(await run([{ type: 'map', expr: '{ "x": 1 }' }], tombstone)).toBe(tombstone);
    const err = await failure(run([{ type: 'map', expr: 'no_such_field' }], message(click())));
    expect(err.message).toBe('transform 0 (map): map expression yielded nothing; use a filter to drop records');
  });
});

describe('drop_fields and rename_fields', () => {
  it('drops top-level and nested fields, ignoring missing ones', async () => {
    // drop_fields removes what is there and does not fail on what is not.
    const input = message({ ...click(), debug: { trace: 'abc', level: 2 } });
    const out = await run([{ type: 'drop_fields', fields: ['user_agent', 'debug.trace', 'not.there'] }], input);
    const { user_agent: _ua, debug: _debug, ...rest } = input.value as Record<string, unknown>;
    expect(out?.value).toEqual({ ...rest, debug: { level: 2 } });
    expect((input.value as { debug: { trace?: string } }).debug.trace).toBe('abc');
  });

  it('returns the same record when nothing was dropped', async () => {
    // An unchanged record is not copied.
    const input = message(click());
    expect(await run([{ type: 'drop_fields', fields: ['missing'] }], input)).toBe(input);
    expect(await run([{ type: 'drop_fields', fields: ['missing'] }], message(null))).toEqual(message(null));
  });

  it('renames and moves fields between nesting levels, in order', async () => {
    // rename_fields moves values by dot path, overwriting an existing target and skipping missing sources.
    const out = await run(
      [{ type: 'rename_fields', fields: { user_id: 'user.id', session_id: 'user.session', ts: 'event_time', country: 'event', gone: 'nowhere' } }],
      message(click()),
    );
    const value = out?.value as Record<string, unknown>;
    expect(value.user).toEqual({ id: 'u_1042', session: 's_9f2c' });
    expect(value.event_time).toBe('2024-03-07T10:15:30.250Z');
    expect(value.event).toBe('DE');
    expect(value).not.toHaveProperty('user_id');
    expect(value).not.toHaveProperty('ts');
    expect(value).not.toHaveProperty('nowhere');
  });
});

describe('mask_fields', () => {
  it('redacts by default and leaves missing and null fields alone', async () => {
    // Redaction replaces the value whatever its type; there is nothing to hide in a null.
    const out = await run([{ type: 'mask_fields', fields: ['email', 'ip', 'phone', 'address'] }], message({ ...click(), phone: null, address: { city: 'Berlin' } }));
    expect(out?.value).toMatchObject({ email: REDACTED_TEXT, ip: REDACTED_TEXT, phone: null, address: REDACTED_TEXT, user_id: 'u_1042' });
    expect(REDACTED_TEXT).toBe('[REDACTED]');
  });

  it('hashes with HMAC-SHA256 keyed by the salt, stably across records and chains', async () => {
    // Equal inputs give equal digests (so masked data stays joinable), and the digest is the HMAC of the value keyed by the salt.
    const entries: TransformEntry[] = [{ type: 'mask_fields', fields: ['email', 'user.ip'], mode: 'hash', salt: 'pepper-2024' }];
    const a = await run(entries, message({ email: 'ada@example.com', user: { ip: '203.0.113.7' } }));
    const b = await run(entries, message({ email: 'ada@example.com', user: { ip: '198.51.100.1' } }));
    const expected = createHmac('sha256', 'pepper-2024').update('ada@example.com').digest('hex');
    expect((a?.value as { email: string }).email).toBe(expected);
    expect((b?.value as { email: string }).email).toBe(expected);
    expect((a?.value as { user: { ip: string } }).user.ip).toMatch(/^[0-9a-f]{64}$/);
    expect((a?.value as { user: { ip: string } }).user.ip).not.toBe((b?.value as { user: { ip: string } }).user.ip);
  });

  it('gives different digests for different salts, and plain SHA-256 without one', async () => {
    // The salt keys the hash, so digests from differently salted pipelines cannot be matched against each other.
    const value = { email: 'ada@example.com', zip: 10115 };
    const salted1 = await run([{ type: 'mask_fields', fields: ['email'], mode: 'hash', salt: 'salt-one' }], message(value));
    const salted2 = await run([{ type: 'mask_fields', fields: ['email'], mode: 'hash', salt: 'salt-two' }], message(value));
    const unsalted = await run([{ type: 'mask_fields', fields: ['email', 'zip'], mode: 'hash' }], message(value));
    expect((salted1?.value as { email: string }).email).not.toBe((salted2?.value as { email: string }).email);
    expect(unsalted?.value).toEqual({
      email: createHash('sha256').update('ada@example.com').digest('hex'),
      zip: createHash('sha256').update('10115').digest('hex'),
    });
  });
});

describe('route', () => {
  it('fills placeholders from the value, key, headers, topic and timestamp', async () => {
    // route builds the topic from any part of the record.
    const out = await run([{ type: 'route', topic: '{topic}.{headers.tenant}.{value.country}.{key}' }], message(click()));
    expect(out?.topic).toBe('clicks.acme.DE.u_1042');
    const byKeyField = await run([{ type: 'route', topic: 'orders.shard-{key.shard}' }], message({}, { key: { id: 1001, shard: 3 } }));
    expect(byKeyField?.topic).toBe('orders.shard-3');
    const byTime = await run([{ type: 'route', topic: 'clicks.{timestamp}' }], message(click()));
    expect(byTime?.topic).toBe('clicks.1700000000000');
  });

  it('fails naming the placeholder when the record lacks it', async () => {
    // A record without the routed field is a record error that says which placeholder was missing.
    const { country: _country, ...withoutCountry } = click();
    const err = await failure(run([{ type: 'route', topic: 'clicks.{value.country}' }], message(withoutCountry)));
    expect(err.code).toBe('TRANSFORM_FAILED');
    expect(err.message).toBe('transform 0 (route): route: topic template "clicks.{value.country}" needs {value.country}, but the record does not have it');
    expect(err.context).toMatchObject({ transform: 0, transform_type: 'route', placeholder: 'value.country', topic: 'clicks' });
  });

  it('rejects non-scalar placeholders and invalid topic names', async () => {
    // Routing never produces a topic name the log would refuse.
    const nested = await failure(run([{ type: 'route', topic: 'x.{value.user}' }], message({ user: { id: 1 } })));
    expect(nested.message).toContain('needs {value.user}, but the record has an object there');
    const invalid = await failure(run([{ type: 'route', topic: 'clicks.{value.country}' }], message(click({ country: 'United States' }))));
    expect(invalid.message).toContain('gives the invalid topic name "clicks.United States"');
  });
});

describe('timestamp', () => {
  const cases: Array<[format: 'iso' | 'epoch_ms' | 'epoch_s' | 'auto', input: unknown, expected: number]> = [
    ['iso', '2024-03-07T10:15:30.250Z', Date.UTC(2024, 2, 7, 10, 15, 30, 250)],
    ['iso', '2024-03-07T11:15:30.250+01:00', Date.UTC(2024, 2, 7, 10, 15, 30, 250)],
    ['iso', '2024-03-07T05:45:30-0430', Date.UTC(2024, 2, 7, 10, 15, 30)],
    ['iso', '2024-03-07 10:15:30.250123', Date.UTC(2024, 2, 7, 10, 15, 30, 250)],
    ['iso', '2024-03-07T10:15', Date.UTC(2024, 2, 7, 10, 15)],
    ['iso', '2024-03-07', Date.UTC(2024, 2, 7)],
    ['epoch_ms', 1709806530250, 1709806530250],
    ['epoch_ms', '1709806530250', 1709806530250],
    ['epoch_s', 1709806530, 1709806530000],
    ['epoch_s', 1709806530.25, 1709806530250],
    ['epoch_s', '1709806530', 1709806530000],
    ['auto', 1709806530, 1709806530000],
    ['auto', 1709806530250, 1709806530250],
    ['auto', '1709806530.5', 1709806530500],
    ['auto', '2024-03-07T10:15:30.250Z', Date.UTC(2024, 2, 7, 10, 15, 30, 250)],
  ];

  it.each(cases)('reads %s %j', async (format, input, expected) => {
    // Each format reads its inputs to the same instant, with offset-less ISO read as UTC whatever the machine's zone.
    const out = await run([{ type: 'timestamp', field: 'event.at', format }], message({ event: { at: input } }));
    expect(out?.timestamp).toBe(expected);
    expect(out?.value).toEqual({ event: { at: input } });
  });

  it('defaults to auto', async () => {
    // Without a format, epoch seconds and ISO strings are both understood.
    expect((await run([{ type: 'timestamp', field: 'ts' }], message({ ts: 1709806530 })))?.timestamp).toBe(1709806530000);
    expect((await run([{ type: 'timestamp', field: 'ts' }], message(click())))?.timestamp).toBe(Date.UTC(2024, 2, 7, 10, 15, 30, 250));
  });

  it.each([
    ['iso', 'yesterday', 'holds "yesterday", which is not an ISO 8601 date or date-time (format iso)'],
    ['iso', '2024-02-30T00:00:00Z', 'is not an ISO 8601 date or date-time'],
    ['iso', 1709806530, 'is not an ISO 8601 string'],
    ['epoch_ms', '12:30', 'is not a number of milliseconds'],
    ['epoch_s', true, 'is not a number of seconds'],
    ['auto', 'March 7th', 'is neither an epoch number nor an ISO 8601 date-time'],
    ['epoch_ms', 1e20, 'is out of the range of dates'],
  ] as const)('rejects %s %j', async (format, input, reason) => {
    // An unparsable event time is a record error, never a silently wrong timestamp.
    const err = await failure(run([{ type: 'timestamp', field: 'ts', format }], message({ ts: input })));
    expect(err.code).toBe('TRANSFORM_FAILED');
    expect(err.message).toContain(reason);
    expect(err.context).toMatchObject({ transform: 0, transform_type: 'timestamp', field: 'ts' });
  });

  it('fails on a missing field and passes tombstones', async () => {
    // A record without the event-time field is an error; a delete has no fields and passes.
    const err = await failure(run([{ type: 'timestamp', field: 'ts' }], message({ other: 1 })));
    expect(err.message).toBe('transform 0 (timestamp): timestamp: the value has no field ts');
    const tombstone = message(null);
    expect(await run([{ type: 'timestamp', field: 'ts' }], tombstone)).toBe(tombstone);
  });
});

describe('unwrap_cdc', () => {
  const row = { id: 1001, email: 'ada@example.com', status: 'paid', total_cents: 4999 };
  const key = { id: 1001 };

  it.each(['c', 'r', 'u'])('turns op %s into the after-image', async (op) => {
    // Creates, snapshot reads and updates all become the row as it is now, with the key kept.
    const out = await run([{ type: 'unwrap_cdc' }], message(cdc(op, op === 'u' ? { ...row, status: 'pending' } : null, row), { key, topic: 'cdc.public.orders' }));
    expect(out).toEqual(message(row, { key, topic: 'cdc.public.orders' }));
  });

  it('turns a delete into a tombstone that keeps the key', async () => {
    // A delete becomes key + null value, which compaction and upserting sinks treat as a delete.
    const out = await run([{ type: 'unwrap_cdc' }], message(cdc('d', row, null), { key }));
    expect(out).toEqual(message(null, { key }));
  });

  it('drops deletes with delete_handling: drop, and always drops truncates', async () => {
    // Deletes can be filtered out; truncates have no row or key a record could carry, so they are dropped.
    expect(await run([{ type: 'unwrap_cdc', delete_handling: 'drop' }], message(cdc('d', row, null), { key }))).toBeNull();
    const truncate = { op: 't', source: { table: 'orders' }, ts_ms: 1_709_806_530_250 };
    expect(await run([{ type: 'unwrap_cdc' }], message(truncate, { key: null }))).toBeNull();
  });

  it('unwraps envelopes wrapped by the JSON converter as {schema, payload}', async () => {
    // Debezium's JSON converter with schemas enabled wraps the envelope; it is unwrapped too.
    const out = await run([{ type: 'unwrap_cdc' }], message({ schema: { type: 'struct' }, payload: cdc('c', null, row) }, { key }));
    expect(out?.value).toEqual(row);
  });

  it('rejects values that are not change events, and unknown ops', async () => {
    // unwrap_cdc on a topic that does not hold change events fails loudly, without quoting the record's contents.
    const notEnvelope = await failure(run([{ type: 'unwrap_cdc' }], message(click())));
    expect(notEnvelope.code).toBe('TRANSFORM_FAILED');
    expect(notEnvelope.message).toMatch(/^transform 0 \(unwrap_cdc\): unwrap_cdc: the value is not a change event .*; got an object with keys \{user_id, /);
    expect(notEnvelope.message).not.toContain('ada@example.com');
    const unknownOp = await failure(run([{ type: 'unwrap_cdc' }], message(cdc('x', null, row))));
    expect(unknownOp.message).toContain('unknown change event op "x"');
    const noAfter = await failure(run([{ type: 'unwrap_cdc' }], message(cdc('c', null, null))));
    expect(noAfter.message).toContain('needs an object "after", got null');
    const tombstone = message(null, { key });
    expect(await run([{ type: 'unwrap_cdc' }], tombstone)).toBe(tombstone);
  });
});

describe('js', () => {
  let dir: string;
  const errorsModule = fileURLToPath(new URL('../errors.ts', import.meta.url));

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-transforms-js-'));
    await fs.mkdir(path.join(dir, 'transforms'));
    await fs.writeFile(
      path.join(dir, 'transforms', 'enrich.mjs'),
      [
        'export default (message) => ({ ...message, value: { ...message.value, enriched: true }, headers: { ...message.headers, via: "js" } });',
        'export async function dropBots(message) {',
        '  await new Promise((resolve) => setTimeout(resolve, 1));',
        '  return /bot/i.test(message.value.user_agent) ? null : message;',
        '}',
        'export function forgetful(message) { message.value.x = 1; }',
        'export function explode(message) { throw new TypeError(`cannot enrich ${message.value.user_id}`); }',
        'export const notAFunction = 42;',
      ].join('\n'),
    );
    await fs.writeFile(
      path.join(dir, 'transforms', 'flaky.ts'),
      `import { RetriableError } from ${JSON.stringify(errorsModule)};\nexport default () => { throw new RetriableError('lookup service unavailable'); };\n`,
    );
  });

  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('loads the default export relative to the spec directory and runs it', async () => {
    // A js module path resolves against baseDir, and its default export transforms each record.
    const chain = await buildTransformChain([{ type: 'js', module: './transforms/enrich.mjs' }], { baseDir: dir });
    const out = await chain(message(click()));
    expect(out?.value).toMatchObject({ user_id: 'u_1042', enriched: true });
    expect(out?.headers).toEqual({ tenant: 'acme', via: 'js' });
  });

  it('runs a named async export, which may drop records', async () => {
    // A named export is used when given, may be async, and returns null to drop.
    const chain = await buildTransformChain([{ type: 'js', module: 'transforms/enrich.mjs', export: 'dropBots' }], { baseDir: dir });
    expect(await chain(message(click({ user_agent: 'Googlebot/2.1' })))).toBeNull();
    expect(await chain(message(click()))).not.toBeNull();
  });

  it('fails at build time when the module or the export is missing', async () => {
    // A bad module reference fails when the pipeline starts, not on the first record.
    const missing = await failure(buildTransformChain([{ type: 'js', module: './nope.mjs' }], { baseDir: dir }));
    expect(missing.code).toBe('SPEC_INVALID');
    expect(missing.message).toMatch(/^transforms\/0\/module \(js\): cannot load module .*nope\.mjs/);
    const noExport = await failure(buildTransformChain([{ type: 'filter', expr: 'true' }, { type: 'js', module: './transforms/enrich.mjs', export: 'enrichAll' }], { baseDir: dir }));
    expect(noExport.message).toMatch(/^transforms\/1\/export \(js\): module .*enrich\.mjs has no export "enrichAll" \(it exports: default, dropBots, /);
    expect(noExport.context).toMatchObject({ transform: 1, transform_type: 'js' });
    const notFunction = await failure(buildTransformChain([{ type: 'js', module: './transforms/enrich.mjs', export: 'notAFunction' }], { baseDir: dir }));
    expect(notFunction.message).toContain('exports a number as "notAFunction", not a function');
  });

  it('wraps what the function throws, keeping it as the cause', async () => {
    // A throwing user function is a TRANSFORM_FAILED record error naming the step, with the original error as cause.
    const chain = await buildTransformChain([{ type: 'drop_fields', fields: ['ip'] }, { type: 'js', module: './transforms/enrich.mjs', export: 'explode' }], { baseDir: dir });
    const err = await failure(Promise.resolve(chain(message(click()))));
    expect(err.code).toBe('TRANSFORM_FAILED');
    expect(err.message).toBe('transform 1 (js) threw: cannot enrich u_1042');
    expect(err.context).toMatchObject({ transform: 1, transform_type: 'js', topic: 'clicks' });
    expect(err.cause).toBeInstanceOf(TypeError);
  });

  it('rejects a function that returns no message', async () => {
    // Forgetting to return the message is a record error with a hint, not a record of undefined.
    const chain = await buildTransformChain([{ type: 'js', module: './transforms/enrich.mjs', export: 'forgetful' }], { baseDir: dir });
    const err = await failure(Promise.resolve(chain(message(click()))));
    expect(err.message).toBe('transform 0 (js): js: the function returned undefined, not a message {topic, key, value, headers, timestamp} or null; return null to drop a record');
  });

  it('keeps a RetriableError retriable', async () => {
    // A js step that hits a transient failure is retried by the runtime rather than dead-lettered.
    const chain = await buildTransformChain([{ type: 'js', module: './transforms/flaky.ts' }], { baseDir: dir });
    const err = await failure(Promise.resolve(chain(message(click()))));
    expect(err.retriable).toBe(true);
    expect(err.code).toBe('RETRIABLE');
    expect(err.message).toBe('transform 0 (js): lookup service unavailable');
    expect(err.context).toMatchObject({ transform: 0, transform_type: 'js' });
  });
});

describe('the chain', () => {
  it('applies transforms in order, each seeing the previous one’s output', async () => {
    // Order matters: a filter on a renamed field only works after the rename.
    const renameThenFilter: TransformEntry[] = [
      { type: 'rename_fields', fields: { event: 'action' } },
      { type: 'filter', expr: 'action = "add_to_cart"' },
    ];
    expect(await run(renameThenFilter, message(click()))).not.toBeNull();
    expect(await run([...renameThenFilter].reverse(), message(click()))).toBeNull();
  });

  it('runs a realistic clickstream chain end to end', async () => {
    // A typical PII-safe clickstream chain filters, enriches, masks, trims, takes event time and routes.
    const out = await run(
      [
        { type: 'filter', expr: 'event != "heartbeat"' },
        { type: 'set', fields: { 'page.host': '$substringBefore($substringAfter(url, "://"), "/")' } },
        { type: 'mask_fields', fields: ['email'], mode: 'hash', salt: 'pepper' },
        { type: 'mask_fields', fields: ['ip'] },
        { type: 'drop_fields', fields: ['user_agent', 'referrer'] },
        { type: 'timestamp', field: 'ts', format: 'iso' },
        { type: 'route', topic: 'clicks.{value.country}' },
      ],
      message(click()),
    );
    expect(out).toEqual({
      topic: 'clicks.DE',
      key: 'u_1042',
      headers: { tenant: 'acme' },
      timestamp: Date.UTC(2024, 2, 7, 10, 15, 30, 250),
      value: {
        user_id: 'u_1042',
        session_id: 's_9f2c',
        url: 'https://shop.example.com/cart?item=42',
        event: 'add_to_cart',
        country: 'DE',
        email: createHmac('sha256', 'pepper').update('ada@example.com').digest('hex'),
        ip: '[REDACTED]',
        ts: '2024-03-07T10:15:30.250Z',
        page: { host: 'shop.example.com' },
      },
    });
  });

  it('stops at the first step that drops the record', async () => {
    // After a filter drops a record, later steps never see it, so they cannot fail on it.
    const out = await run(
      [
        { type: 'filter', expr: 'event = "purchase"' },
        { type: 'route', topic: 'orders.{value.no_such_field}' },
      ],
      message(click()),
    );
    expect(out).toBeNull();
  });

  it('runs CDC unwrap, then routes by the source table', async () => {
    // A change event can be unwrapped and its after-image routed like any row.
    const out = await run(
      [
        { type: 'set', fields: { 'after.table': 'source.table' } },
        { type: 'unwrap_cdc' },
        { type: 'route', topic: 'rows.{value.table}' },
      ],
      message(cdc('u', null, { id: 7, status: 'shipped' }), { key: { id: 7 } }),
    );
    expect(out).toEqual(message({ id: 7, status: 'shipped', table: 'orders' }, { key: { id: 7 }, topic: 'rows.orders' }));
  });

  it('wraps runtime errors with the failing transform’s index and type and keeps the cause', async () => {
    // A step failing mid-chain throws TRANSFORM_FAILED naming that step, for the runtime to dead-letter the record.
    const chain = await buildTransformChain(
      [
        { type: 'drop_fields', fields: ['ip'] },
        { type: 'set', fields: { score: 'event & 1' } },
        { type: 'map', expr: 'user_id + 1' },
      ],
      { baseDir },
    );
    const err = await failure(Promise.resolve(chain(message(click()))));
    expect(isSluiceError(err, 'TRANSFORM_FAILED')).toBe(true);
    expect(err.retriable).toBe(false);
    expect(err.message).toMatch(/^transform 2 \(map\): expression \/expr failed at character \d+: The left side of the "\+" operator must evaluate to a number \(T2001\)$/);
    expect(err.context).toMatchObject({ transform: 2, transform_type: 'map', topic: 'clicks', field: '/expr', jsonata_code: 'T2001' });
    expect(err.cause).toBeInstanceOf(Error);
    expect((err.cause as Error).message).toContain('must evaluate to a number');
  });
});

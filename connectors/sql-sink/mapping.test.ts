/**
 * The pure pieces of the SQL sinks: Postgres type parsing and the documented mappings, value
 * conversion for each target, exact json text, names and templates, message trimming.
 */
import { describe, expect, it } from 'vitest';
import { trimMessage } from './dialect.ts';
import { checkIdentifier, ColumnMapping, TableTemplate } from './names.ts';
import { RawJson, rawColumns } from './raw-json.ts';
import { MYSQL_TYPE_MAPPING, compatible, mysqlColumnFamily, mysqlTargetType, parsePgType, pgFamily, pgTargetType } from './type-mapping.ts';
import { mysqlDatetime, pgDatetime, toParam } from './values.ts';

describe('Postgres types', () => {
  it('parses format_type and udt spellings, and re-renders them without passing untrusted text through', () => {
    // Guarantee: a type name from a change event reaches DDL only as a known base type with numeric modifiers; anything else becomes text.
    expect(parsePgType('numeric(10,2)')).toEqual({ base: 'numeric', modifiers: [10, 2], array: 0 });
    expect(parsePgType('timestamp(3) with time zone')).toEqual({ base: 'timestamp with time zone', modifiers: [3], array: 0 });
    expect(parsePgType('_int4')).toEqual({ base: 'integer', modifiers: [], array: 1 });
    expect(parsePgType('character varying(40)[]')).toEqual({ base: 'character varying', modifiers: [40], array: 1 });
    expect(pgTargetType(parsePgType('timestamp(3) with time zone'))).toBe('timestamp(3) with time zone');
    expect(pgTargetType(parsePgType('numeric'))).toBe('numeric');
    expect(pgTargetType(parsePgType('mood[]'))).toBe('text[]');
    expect(pgTargetType(parsePgType('int); DROP TABLE x; --'))).toBe('text');
  });

  it('maps every documented Postgres type to MySQL as the table says', () => {
    // Guarantee: the type mapping auto_create uses is the one the README documents.
    const cases: Array<[string, boolean, string]> = [
      ['jsonb', false, 'JSON'],
      ['numeric(12,4)', false, 'DECIMAL(12,4)'],
      ['numeric', false, 'LONGTEXT'],
      ['numeric(70,2)', false, 'LONGTEXT'],
      ['timestamp with time zone', false, 'DATETIME(6)'],
      ['uuid', false, 'CHAR(36)'],
      ['bytea', false, 'LONGBLOB'],
      ['bytea', true, 'VARBINARY(767)'],
      ['text', false, 'LONGTEXT'],
      ['text', true, 'VARCHAR(768)'],
      ['integer[]', false, 'JSON'],
      ['character varying(20)', false, 'VARCHAR(20)'],
      ['character varying(2000)', false, 'LONGTEXT'],
      ['boolean', false, 'BOOLEAN'],
      ['mood', true, 'VARCHAR(255)'],
    ];
    for (const [source, key, mysql] of cases) expect([source, key, mysqlTargetType(parsePgType(source), key)]).toEqual([source, key, mysql]);
    expect(MYSQL_TYPE_MAPPING.map((r) => r.source)).toContain('arrays of any type');
  });

  it('tells compatible type changes from incompatible ones', () => {
    // Guarantee: schema evolution refuses a change that would store values in a column that cannot hold them.
    expect(compatible(pgFamily(parsePgType('bigint')), pgFamily(parsePgType('integer')))).toBe(true);
    expect(compatible(pgFamily(parsePgType('integer')), pgFamily(parsePgType('text')))).toBe(false);
    expect(compatible(pgFamily(parsePgType('text')), pgFamily(parsePgType('uuid')))).toBe(true);
    expect(compatible(mysqlColumnFamily('datetime(6)'), 'timestamptz', { mysqlDatetime: true })).toBe(true);
    expect(compatible(pgFamily(parsePgType('timestamp')), pgFamily(parsePgType('timestamptz')))).toBe(false);
    expect(mysqlColumnFamily('tinyint(1)')).toBe('bool');
    expect(mysqlColumnFamily('longtext', true)).toBe('json');
  });
});

describe('values', () => {
  it('converts change-event values for each target column', () => {
    // Guarantee: values reach drivers only as scalars, Buffers or (Postgres) arrays, converted as the mapping documents.
    const my = { engine: 'mysql' } as const;
    const pg = { engine: 'postgres' } as const;
    expect(toParam('2024-05-01T10:20:30.123456Z', 'timestamptz', my)).toBe('2024-05-01 10:20:30.123456');
    expect(toParam('2024-05-01T01:20:30.5+02:00', 'timestamp', my)).toBe('2024-04-30 23:20:30.500000');
    expect(toParam('AQID', 'binary', my)).toEqual(Buffer.from([1, 2, 3]));
    expect(toParam(true, 'bool', my)).toBe(1);
    expect(toParam('a string', 'json', my)).toBe('"a string"');
    expect(toParam({ a: 1 }, 'text', my)).toBe('{"a":1}');
    expect(toParam([1, null, [2]], 'array', pg)).toEqual([1, null, [2]]);
    expect(toParam(new RawJson('{"n": 1.10}'), 'json', pg)).toBe('{"n": 1.10}');
    expect(() => toParam('infinity', 'timestamptz', my)).toThrow(/no MySQL DATETIME equivalent/);
    expect(() => toParam('0999-01-01T00:00:00.000000Z', 'timestamptz', my)).toThrow(/before MySQL DATETIME's range/);
    expect(mysqlDatetime('2024-05-01T10:20:30.123456')).toBe('2024-05-01 10:20:30.123456');
  });

  it('spells ISO expanded years and year 0 as Postgres reads them', () => {
    // Guarantee: BC and far-future dates from postgres-cdc round-trip into Postgres.
    expect(pgDatetime('-000043-03-15')).toBe('0044-03-15 BC');
    expect(pgDatetime('0000-01-01T00:00:00.000000Z')).toBe('0001-01-01T00:00:00.000000Z BC');
    expect(pgDatetime('+010000-01-01')).toBe('10000-01-01');
    expect(pgDatetime('2024-01-01')).toBe('2024-01-01');
  });

  it('finds the exact text of json values in a change event', () => {
    // Guarantee: json digits and spacing survive: 1.10 stays 1.10 and big integers keep every digit.
    const text = '{"op":"c","before":null,"after":{"id":1,"j":{ "n" : 1.10, "big": 12345678901234567890 },"s":"x"},"source":{}}';
    const found = rawColumns(text, new Set(['after', 'before']), new Set(['j', 's']));
    expect(found.get('after')).toEqual(new Map([['j', '{ "n" : 1.10, "big": 12345678901234567890 }'], ['s', '"x"']]));
    expect(found.has('before')).toBe(false);
  });
});

describe('names', () => {
  it('refuses names the database would alter or reject', () => {
    // Guarantee: a name Postgres would truncate silently (two names becoming one) is a bad record, not a collision.
    const pg = { engine: 'Postgres', maxLength: 63, measure: 'bytes', mysql: false } as const;
    const my = { engine: 'MySQL', maxLength: 64, measure: 'chars', mysql: true } as const;
    expect(() => checkIdentifier('é'.repeat(32), 'table', pg)).toThrow(/limit of 63 bytes/);
    expect(() => checkIdentifier('é'.repeat(32), 'table', my)).not.toThrow();
    expect(() => checkIdentifier('a\u0000b', 'column', pg)).toThrow(/NUL/);
    expect(() => checkIdentifier('trailing ', 'column', my)).toThrow(/ends with a space/);
    expect(() => checkIdentifier('x"; DROP TABLE y; --', 'table', pg)).not.toThrow();
  });

  it('fills table templates and maps columns by plain or table-qualified names', () => {
    // Guarantee: renames, includes and excludes apply per table as configured, and a template placeholder a record lacks is a bad record.
    const template = new TableTemplate('{schema}_{table}');
    expect(template.fill({ schema: 'shop', table: 'orders', topic: 'x' })).toBe('shop_orders');
    expect(() => template.fill({ topic: 'x' })).toThrow(/needs \{schema\}/);
    const mapping = new ColumnMapping({ rename: { id: 'order_id', 'orders.note': 'remark' }, exclude: ['secret'] });
    expect(mapping.fate('orders', 'note', false)).toEqual({ write: true, target: 'remark' });
    expect(mapping.fate('other', 'note', false)).toEqual({ write: true, target: 'note' });
    expect(mapping.fate('orders', 'secret', false)).toEqual({ write: false });
    expect(mapping.fate('orders', 'id', true)).toEqual({ write: true, target: 'order_id' });
    expect(() => new ColumnMapping({ exclude: ['id'] }).fate('orders', 'id', true)).toThrow(/key column/);
  });

  it('cuts MariaDB\'s statement quotes out of error messages', () => {
    // Guarantee: an error message never carries a whole multi-row statement into logs or DLQ headers.
    const message = `You have an error in your SQL syntax; check the manual near '${'(1, 2, 3), '.repeat(10000)}' at line 1`;
    const trimmed = trimMessage(message);
    expect(trimmed.length).toBeLessThanOrEqual(301);
    expect(trimmed).toContain("near '(1, 2, 3), (1, 2, 3)");
  });
});

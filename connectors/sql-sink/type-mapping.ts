/**
 * Column types: Postgres types as change events name them, what `auto_create` and
 * `schema_evolution` make of them in each target, and the "family" of a target column that
 * decides how a JSON value is converted into a parameter for it.
 *
 * Type names from change events are untrusted. They never reach SQL as given: they are parsed
 * into a known base type with numeric modifiers and rendered again, and a type that is not known
 * becomes text.
 */

/**
 * How a target column stores values, which decides how a JSON value becomes a parameter (see
 * `toParam` in values.ts) and which source types it can take without loss.
 */
export type Family =
  | 'int'
  | 'decimal'
  | 'float'
  | 'bool'
  | 'text'
  | 'binary'
  | 'json'
  | 'timestamptz'
  | 'timestamp'
  | 'date'
  | 'time'
  | 'uuid'
  | 'array'
  | 'other';

/** A Postgres base type this module knows, by its canonical (format_type) name. */
const PG_BASE_TYPES = [
  'smallint',
  'integer',
  'bigint',
  'numeric',
  'real',
  'double precision',
  'boolean',
  'text',
  'character varying',
  'character',
  'timestamp with time zone',
  'timestamp without time zone',
  'date',
  'time without time zone',
  'time with time zone',
  'interval',
  'uuid',
  'json',
  'jsonb',
  'bytea',
  'money',
  'inet',
  'cidr',
  'macaddr',
  'macaddr8',
  'bit',
  'bit varying',
  'xml',
  'oid',
  'tsvector',
  'tsquery',
] as const;
export type PgBaseType = (typeof PG_BASE_TYPES)[number];

/** Aliases (udt names, SQL spellings) to canonical names. */
const PG_ALIASES: Readonly<Record<string, PgBaseType>> = {
  int2: 'smallint',
  smallserial: 'smallint',
  int: 'integer',
  int4: 'integer',
  serial: 'integer',
  serial4: 'integer',
  int8: 'bigint',
  bigserial: 'bigint',
  serial8: 'bigint',
  decimal: 'numeric',
  float4: 'real',
  float8: 'double precision',
  float: 'double precision',
  bool: 'boolean',
  varchar: 'character varying',
  char: 'character',
  bpchar: 'character',
  timestamptz: 'timestamp with time zone',
  timestamp: 'timestamp without time zone',
  time: 'time without time zone',
  timetz: 'time with time zone',
  varbit: 'bit varying',
};

/** A Postgres column type, parsed. */
export interface PgType {
  /** The known base type, or null for anything else (enums, domains, ranges, geometry...). */
  readonly base: PgBaseType | null;
  /** Length, precision or fractional-seconds precision, when the type has one. */
  readonly modifiers: readonly number[];
  /** Array dimensions written in the type (`integer[]` is 1); 0 for a scalar. */
  readonly array: number;
}

const TYPMOD = /\(\s*(\d{1,9})\s*(?:,\s*(\d{1,9})\s*)?\)/;

/**
 * Parses a type as `format_type` writes it (`numeric(10,2)`, `timestamp(3) with time zone`,
 * `character varying[]`) or as a udt name (`int4`, `_text`, `timestamptz`). Never throws: an
 * unknown or malformed type has `base: null`.
 */
export function parsePgType(type: string): PgType {
  let text = type.trim().toLowerCase();
  let array = 0;
  while (text.endsWith('[]')) {
    array++;
    text = text.slice(0, -2).trimEnd();
  }
  // `integer ARRAY` and `_int4` are other spellings of `integer[]`.
  if (/\sarray$/.test(text)) {
    array = Math.max(array, 1);
    text = text.replace(/\s+array$/, '');
  }
  if (array === 0 && text.startsWith('_')) {
    array = 1;
    text = text.slice(1);
  }
  const modifiers: number[] = [];
  const m = TYPMOD.exec(text);
  if (m) {
    modifiers.push(Number(m[1]));
    if (m[2] !== undefined) modifiers.push(Number(m[2]));
    text = (text.slice(0, m.index) + text.slice(m.index + m[0].length)).replace(/\s+/g, ' ').trim();
  }
  text = text.replace(/\s+/g, ' ').replace(/^pg_catalog\./, '');
  const base = (PG_BASE_TYPES as readonly string[]).includes(text) ? (text as PgBaseType) : (PG_ALIASES[text] ?? null);
  return { base, modifiers, array };
}

/** The family a Postgres type belongs to, as source or as target column. */
export function pgFamily(type: PgType): Family {
  if (type.array > 0) return 'array';
  switch (type.base) {
    case 'smallint':
    case 'integer':
    case 'bigint':
    case 'oid':
      return 'int';
    case 'numeric':
      return 'decimal';
    case 'real':
    case 'double precision':
      return 'float';
    case 'boolean':
      return 'bool';
    case 'text':
    case 'character varying':
    case 'character':
      return 'text';
    case 'bytea':
      return 'binary';
    case 'json':
    case 'jsonb':
      return 'json';
    case 'timestamp with time zone':
      return 'timestamptz';
    case 'timestamp without time zone':
      return 'timestamp';
    case 'date':
      return 'date';
    case 'time without time zone':
      return 'time';
    case 'uuid':
      return 'uuid';
    default:
      return 'other';
  }
}

// ---------------------------------------------------------------------------------------------
// Postgres → Postgres

/**
 * The DDL type for a Postgres target: the source type itself, re-rendered from its parsed form.
 * Types the target may not have (enums, domains, extension types) become `text`, arrays of them
 * `text[]`, since their values arrive as text.
 */
export function pgTargetType(type: PgType): string {
  const dims = '[]'.repeat(type.array);
  if (type.base === null) return `text${dims}`;
  const mods = type.modifiers;
  switch (type.base) {
    case 'numeric':
      return `numeric${mods.length === 2 ? `(${mods[0]},${mods[1]})` : mods.length === 1 ? `(${mods[0]})` : ''}${dims}`;
    case 'character varying':
    case 'character':
    case 'bit':
    case 'bit varying':
      return `${type.base}${mods.length >= 1 ? `(${mods[0]})` : ''}${dims}`;
    case 'timestamp with time zone':
    case 'timestamp without time zone':
    case 'time with time zone':
    case 'time without time zone': {
      const [word, ...rest] = type.base.split(' ');
      return `${word}${mods.length >= 1 ? `(${Math.min(mods[0]!, 6)})` : ''} ${rest.join(' ')}${dims}`;
    }
    case 'interval':
      return `interval${mods.length >= 1 && mods[0]! <= 6 ? `(${mods[0]})` : ''}${dims}`;
    default:
      return `${type.base}${dims}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Postgres → MySQL / MariaDB

/** The longest VARCHAR a text key column gets: 768 characters of utf8mb4 fill InnoDB's 3072-byte key limit. */
export const MYSQL_MAX_KEY_CHARS = 768;
/** Bounded text up to this length stays VARCHAR; longer becomes LONGTEXT, so many columns cannot overflow the 64 KiB row limit. */
export const MYSQL_MAX_VARCHAR = 255;

/**
 * The documented Postgres → MySQL mapping, in the order the README lists it: source types, the
 * MySQL type, and what a primary-key column gets when the usual type cannot be a key. `auto_create`
 * and `schema_evolution` follow {@link mysqlTargetType}, which implements exactly this table.
 */
export const MYSQL_TYPE_MAPPING: ReadonlyArray<{ readonly source: string; readonly mysql: string; readonly key?: string }> = [
  { source: 'smallint (int2)', mysql: 'SMALLINT' },
  { source: 'integer (int4)', mysql: 'INT' },
  { source: 'bigint (int8)', mysql: 'BIGINT' },
  { source: 'numeric(p,s)', mysql: 'DECIMAL(p,s) when p <= 65 and s <= 30, else LONGTEXT', key: 'VARCHAR(255)' },
  { source: 'numeric (unbounded)', mysql: 'LONGTEXT (the exact decimal text)', key: 'VARCHAR(255)' },
  { source: 'real (float4)', mysql: 'FLOAT' },
  { source: 'double precision (float8)', mysql: 'DOUBLE' },
  { source: 'boolean', mysql: 'BOOLEAN (TINYINT(1), true is 1)' },
  { source: 'text, character varying without a length', mysql: 'LONGTEXT', key: `VARCHAR(${MYSQL_MAX_KEY_CHARS})` },
  { source: 'character varying(n)', mysql: `VARCHAR(n) when n <= ${MYSQL_MAX_VARCHAR}, else LONGTEXT`, key: `VARCHAR(n), at most ${MYSQL_MAX_KEY_CHARS}` },
  { source: 'character(n)', mysql: `CHAR(n) when n <= 255, else LONGTEXT (MySQL drops the trailing pad spaces)`, key: `CHAR(n) or VARCHAR(${MYSQL_MAX_KEY_CHARS})` },
  { source: 'timestamp with time zone', mysql: 'DATETIME(6), converted to UTC' },
  { source: 'timestamp without time zone', mysql: 'DATETIME(6), as given' },
  { source: 'date', mysql: 'DATE' },
  { source: 'time without time zone', mysql: 'TIME(6)' },
  { source: 'time with time zone', mysql: 'VARCHAR(32), the text as given' },
  { source: 'interval', mysql: 'VARCHAR(64), the text as given' },
  { source: 'uuid', mysql: 'CHAR(36)' },
  { source: 'json, jsonb', mysql: 'JSON' },
  { source: 'bytea', mysql: 'LONGBLOB (the base64 of the event decoded)', key: 'VARBINARY(767)' },
  { source: 'arrays of any type', mysql: 'JSON (a JSON array)' },
  { source: 'money, inet, cidr, macaddr, macaddr8', mysql: 'VARCHAR(64), the text as given' },
  { source: 'oid', mysql: 'BIGINT' },
  { source: 'bit(n), bit varying(n)', mysql: 'VARCHAR(n), the bits as text, or LONGTEXT past 255' },
  { source: 'enums and any other type', mysql: 'LONGTEXT, the text as given', key: 'VARCHAR(255)' },
];

/** The mapping as a Markdown table, for the mysql sink's reference doc. */
export function mysqlMappingTable(): string {
  const cell = (text: string): string => text.replace(/\|/g, '\\|');
  return [
    '| Postgres | MySQL / MariaDB | As a primary-key column |',
    '| --- | --- | --- |',
    ...MYSQL_TYPE_MAPPING.map((row) => `| ${cell(row.source)} | ${cell(row.mysql)} | ${cell(row.key ?? 'the same')} |`),
  ].join('\n');
}

/** The MySQL DDL type for a Postgres source column, per {@link MYSQL_TYPE_MAPPING}. */
export function mysqlTargetType(type: PgType, isKey: boolean): string {
  if (type.array > 0) return 'JSON';
  const [m0, m1] = type.modifiers;
  const textKey = (n?: number): string => `VARCHAR(${Math.min(n ?? MYSQL_MAX_KEY_CHARS, MYSQL_MAX_KEY_CHARS)})`;
  switch (type.base) {
    case 'smallint':
      return 'SMALLINT';
    case 'integer':
      return 'INT';
    case 'bigint':
    case 'oid':
      return 'BIGINT';
    case 'numeric':
      if (m0 !== undefined && m0 <= 65 && (m1 ?? 0) <= 30) return `DECIMAL(${m0},${m1 ?? 0})`;
      return isKey ? 'VARCHAR(255)' : 'LONGTEXT';
    case 'real':
      return 'FLOAT';
    case 'double precision':
      return 'DOUBLE';
    case 'boolean':
      return 'BOOLEAN';
    case 'text':
      return isKey ? textKey() : 'LONGTEXT';
    case 'character varying':
      if (isKey) return textKey(m0);
      return m0 !== undefined && m0 <= MYSQL_MAX_VARCHAR ? `VARCHAR(${m0})` : 'LONGTEXT';
    case 'character':
      if (m0 !== undefined && m0 <= 255) return `CHAR(${m0})`;
      return isKey ? textKey(m0) : m0 === undefined ? 'CHAR(1)' : 'LONGTEXT';
    case 'timestamp with time zone':
    case 'timestamp without time zone':
      return 'DATETIME(6)';
    case 'date':
      return 'DATE';
    case 'time without time zone':
      return 'TIME(6)';
    case 'time with time zone':
      return 'VARCHAR(32)';
    case 'interval':
      return 'VARCHAR(64)';
    case 'uuid':
      return 'CHAR(36)';
    case 'json':
    case 'jsonb':
      return 'JSON';
    case 'bytea':
      return isKey ? 'VARBINARY(767)' : 'LONGBLOB';
    case 'money':
    case 'inet':
    case 'cidr':
    case 'macaddr':
    case 'macaddr8':
      return 'VARCHAR(64)';
    case 'bit':
    case 'bit varying':
      return m0 !== undefined && m0 <= 255 ? `VARCHAR(${m0})` : isKey ? 'VARCHAR(255)' : 'LONGTEXT';
    default:
      return isKey ? 'VARCHAR(255)' : 'LONGTEXT';
  }
}

// ---------------------------------------------------------------------------------------------
// Inferring a type from a JSON value (insert and upsert modes, which carry no column schema)

/** The Postgres type a JSON value suggests, for tables and columns created without a column schema. */
export function inferPgType(value: unknown): PgType {
  const base: PgBaseType =
    typeof value === 'boolean'
      ? 'boolean'
      : typeof value === 'number'
        ? Number.isInteger(value)
          ? 'bigint'
          : 'double precision'
        : value !== null && typeof value === 'object'
          ? 'jsonb'
          : 'text';
  return { base, modifiers: [], array: 0 };
}

// ---------------------------------------------------------------------------------------------
// Compatibility

/** Which source families a target family takes without loss. */
const ACCEPTS: Readonly<Record<Family, ReadonlySet<Family>>> = {
  int: new Set(['int', 'bool']),
  decimal: new Set(['int', 'decimal']),
  float: new Set(['int', 'float']),
  bool: new Set(['bool']),
  text: new Set(['int', 'decimal', 'float', 'bool', 'text', 'timestamptz', 'timestamp', 'date', 'time', 'uuid', 'other', 'json', 'array']),
  binary: new Set(['binary']),
  json: new Set(['json', 'array', 'int', 'decimal', 'float', 'bool', 'text']),
  timestamptz: new Set(['timestamptz']),
  timestamp: new Set(['timestamp']),
  date: new Set(['date']),
  time: new Set(['time']),
  uuid: new Set(['uuid']),
  array: new Set(['array']),
  other: new Set(['other', 'text']),
};

/**
 * Whether a target column of family `target` can hold values of a source column whose type maps
 * to family `source`, without corrupting them. `mysqlDatetime`: MySQL's DATETIME takes both
 * timestamp kinds, since values with a time zone are converted to UTC.
 */
export function compatible(target: Family, source: Family, options: { mysqlDatetime?: boolean } = {}): boolean {
  if (options.mysqlDatetime && target === 'timestamp' && source === 'timestamptz') return true;
  return ACCEPTS[target].has(source);
}

/** The family a source type has once mapped to MySQL (arrays become JSON, uuid CHAR(36)...). */
export function mysqlFamilyOf(type: PgType, isKey: boolean): Family {
  return mysqlColumnFamily(mysqlTargetType(type, isKey));
}

/**
 * The family of a MySQL/MariaDB column from its COLUMN_TYPE (`tinyint(1)`, `decimal(10,2)`,
 * `datetime(6)`), plus whether MariaDB marks it JSON with a json_valid check.
 */
export function mysqlColumnFamily(columnType: string, isJson = false): Family {
  if (isJson) return 'json';
  const t = columnType.trim().toLowerCase();
  if (/^(tinyint\(1\)|boolean|bool)(\s|$)/.test(t)) return 'bool';
  if (/^(tinyint|smallint|mediumint|int|integer|bigint|year)\b/.test(t)) return 'int';
  if (/^(decimal|numeric|dec|fixed)\b/.test(t)) return 'decimal';
  if (/^(float|double|real)\b/.test(t)) return 'float';
  if (/^json\b/.test(t)) return 'json';
  if (/^(char|varchar|tinytext|text|mediumtext|longtext|enum|set)\b/.test(t)) return 'text';
  if (/^(binary|varbinary|tinyblob|blob|mediumblob|longblob)\b/.test(t)) return 'binary';
  if (/^(datetime|timestamp)\b/.test(t)) return 'timestamp';
  if (/^date\b/.test(t)) return 'date';
  if (/^time\b/.test(t)) return 'time';
  return 'other';
}

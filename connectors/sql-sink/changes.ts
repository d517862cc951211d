/**
 * Records to row changes: the one place that knows what a record means in each mode. A change
 * names its target table and holds rows under target column names (renames, include and exclude
 * applied), with JSON values still unconverted; the dialect converts them for the target column.
 *
 * The change-event format is postgres-cdc's (Debezium's envelope): `{op, before, after, source:
 * {db, schema, table, lsn, txid, commit_ts, snapshot}, ts_ms}`, the record key being the primary-key
 * columns as a JSON object. Its constants are imported from that connector, so the two cannot
 * drift apart:
 * - {@link UNCHANGED_TOAST_MARKER} stands in an after-image for a TOASTed column an UPDATE left
 *   unchanged; the sink keeps the target's current value for that column;
 * - the header {@link SCHEMA_HEADER} carries the table's column schema, `{schema, table, columns:
 *   [{name, type, nullable, pk}]}` with `type` as format_type writes it; auto_create and
 *   schema_evolution read it;
 * - transaction markers (`{status: BEGIN|END, id, ...}`) carry no row and are skipped.
 */
import { SluiceError, type SinkRecord } from '../../core/connector.ts';
import { SCHEMA_HEADER, UNCHANGED_TOAST_MARKER } from '../postgres-cdc/index.ts';
import { tableTemplateOf, type SqlSinkSettings } from './config.ts';
import { ColumnMapping, TableTemplate, preview } from './names.ts';
import { RawJson, rawColumns } from './raw-json.ts';
import { parsePgType, type PgType } from './type-mapping.ts';

export { SCHEMA_HEADER, UNCHANGED_TOAST_MARKER };

/** A column of a change event's schema, under its target name. */
export interface SourceColumn {
  readonly name: string;
  readonly type: PgType;
  /** The type as the event wrote it, for messages. */
  readonly typeText: string;
  readonly nullable: boolean;
  readonly pk: boolean;
}

export type Row = Record<string, unknown>;

interface ChangeBase {
  /** The target table (the filled template). */
  readonly table: string;
  /** The record's offset; changes of one partition come in offset order. */
  readonly offset: bigint;
  /** The source's column schema under target names, when the record carried one (cdc mode). */
  readonly columns: readonly SourceColumn[] | undefined;
}

export interface UpsertChange extends ChangeBase {
  readonly kind: 'upsert';
  /** Target names of the key columns, in key order. */
  readonly keyColumns: readonly string[];
  /** The row, key columns included. Unchanged-TOAST columns are absent. */
  readonly row: Row;
  /** Columns whose target value must be kept (unchanged TOAST). */
  readonly unchanged: readonly string[];
  /** The change event inserted the row (op c or r) rather than updating it (u), or is not a change event. */
  readonly inserted: boolean;
}

export interface InsertChange extends ChangeBase {
  readonly kind: 'insert';
  readonly row: Row;
}

export interface DeleteChange extends ChangeBase {
  readonly kind: 'delete';
  readonly keyColumns: readonly string[];
  /** The key columns' values. */
  readonly key: Row;
}

export interface TruncateChange extends ChangeBase {
  readonly kind: 'truncate';
}

export type Change = UpsertChange | InsertChange | DeleteChange | TruncateChange;

/** A record-level error: the runtime bisects a batch down to the record that throws it. */
function bad(record: SinkRecord, message: string, context: Record<string, unknown> = {}): SluiceError {
  return new SluiceError('CONNECTOR_FAILED', `record ${record.topic}/${record.partition}@${record.offset}: ${message}`, {
    context: { topic: record.topic, partition: record.partition, offset: record.offset.toString(), ...context },
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** Decodes records into changes for one sink config. Stateless apart from caches. */
export class ChangeDecoder {
  readonly #mode: SqlSinkSettings['mode'];
  readonly #template: TableTemplate;
  readonly #mapping: ColumnMapping;
  readonly #keyColumns: readonly string[] | undefined;
  #lastKeyNames: readonly string[] | undefined;
  #lastTopic: string | undefined;
  #lastTable: string | undefined;
  /** Parsed column schemas by their JSON text: events of one table repeat the same schema. */
  readonly #schemas = new Map<string, ParsedSchema>();

  constructor(settings: Pick<SqlSinkSettings, 'mode' | 'table' | 'columns' | 'key_columns'>) {
    this.#mode = settings.mode;
    this.#template = new TableTemplate(tableTemplateOf(settings));
    this.#mapping = new ColumnMapping(settings.columns);
    this.#keyColumns = settings.key_columns;
    if (this.#mode !== 'cdc') {
      for (const p of ['db', 'schema', 'table'] as const) {
        if (this.#template.placeholders.has(p)) {
          throw new SluiceError('CONFIG_INVALID', `table ${JSON.stringify(this.#template.template)} uses {${p}}, which only change events carry; use mode: cdc or {topic}`, {
            context: { field: 'table', value: this.#template.template },
          });
        }
      }
    }
  }

  /**
   * The changes one record makes, in order: none (a tombstone after a delete in cdc mode), one, or
   * two (a primary-key update: delete the old key, upsert the new). Throws a record-level error for
   * a record this mode cannot read, and `CONFIG_INVALID` for a mapping that cannot work (a key
   * column excluded).
   */
  decode(record: SinkRecord): Change[] {
    switch (this.#mode) {
      case 'insert':
        return [this.#insert(record)];
      case 'upsert':
        return [this.#upsert(record)];
      case 'cdc':
        return this.#cdc(record);
    }
  }

  /** The table of a record outside cdc mode, where only {topic} can vary: filled once per topic in a row. */
  #topicTable(topic: string): string {
    if (topic !== this.#lastTopic || this.#lastTable === undefined) {
      this.#lastTable = this.#template.fill({ topic });
      this.#lastTopic = topic;
    }
    return this.#lastTable;
  }

  #parse(record: SinkRecord, what: 'key' | 'value', bytes: Buffer | string): unknown {
    try {
      // toString() without an encoding is UTF-8 too, and skips the encoding lookup: this runs twice per record.
      return JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString());
    } catch (err) {
      throw bad(record, `the ${what} is not JSON: ${(err as Error).message}`);
    }
  }

  #insert(record: SinkRecord): InsertChange {
    if (record.value === null) throw bad(record, 'insert mode cannot write a tombstone (null value)');
    const value = this.#parse(record, 'value', record.value);
    if (!isObject(value)) throw bad(record, `the value must be a JSON object (one row), got ${describe(value)}`);
    const table = this.#topicTable(record.topic);
    return { kind: 'insert', table, offset: record.offset, columns: undefined, row: this.#mapRow(record.topic, value, new Set()) };
  }

  #upsert(record: SinkRecord): UpsertChange | DeleteChange {
    const table = this.#topicTable(record.topic);
    const keyValue = record.key === null ? undefined : this.#parse(record, 'key', record.key);
    if (record.value === null) {
      // A tombstone deletes the row its key names.
      if (!isObject(keyValue)) throw bad(record, `a tombstone deletes by key, so the key must be a JSON object, got ${describe(keyValue ?? null)}`);
      const key = this.#mapRow(record.topic, keyValue, new Set(Object.keys(keyValue)));
      const keyColumns = this.#keyColumns ?? Object.keys(key);
      return { kind: 'delete', table, offset: record.offset, columns: undefined, keyColumns, key: pick(record, key, keyColumns) };
    }
    const value = this.#parse(record, 'value', record.value);
    if (!isObject(value)) throw bad(record, `the value must be a JSON object (one row), got ${describe(value)}`);
    let row: Row;
    let keyColumns: readonly string[];
    if (this.#keyColumns) {
      keyColumns = this.#keyColumns;
      row = this.#mapRow(record.topic, value, new Set());
    } else {
      if (!isObject(keyValue)) throw bad(record, `upsert mode without key_columns needs a record key that is a JSON object, got ${describe(keyValue ?? null)}`);
      const keyNames = Object.keys(keyValue);
      // Key fields win over value fields of the same name: the key is what identifies the row. The
      // parsed value is this decoder's own, so it takes them in place.
      for (const k of keyNames) value[k] = keyValue[k];
      if (this.#mapping.identity) {
        row = value;
        keyColumns = this.#sameKeyNames(keyNames);
      } else {
        row = this.#mapRow(record.topic, value, new Set(keyNames));
        keyColumns = this.#mapKeyNames(record.topic, keyNames);
      }
    }
    checkKey(record, row, keyColumns);
    return { kind: 'upsert', table, offset: record.offset, columns: undefined, keyColumns, row, unchanged: [], inserted: false };
  }

  #cdc(record: SinkRecord): Change[] {
    const keyValue = record.key === null ? undefined : this.#parse(record, 'key', record.key);
    if (record.value === null) {
      // A tombstone follows a delete in Debezium's stream; the delete already removed the row.
      return [];
    }
    const text = record.value.toString('utf8');
    let event = this.#parse(record, 'value', text);
    let wrapped = false;
    // Debezium's JSON converter with schemas on wraps the envelope as {schema, payload}.
    if (isObject(event) && isObject(event.payload) && 'schema' in event && !('op' in event)) {
      event = event.payload;
      wrapped = true;
    }
    // Transaction markers (include_transaction_markers) share topics with row events when the topic names no table.
    if (isObject(event) && !('op' in event) && (event.status === 'BEGIN' || event.status === 'END')) return [];
    if (!isObject(event) || typeof event.op !== 'string') throw bad(record, `cdc mode needs a change event {op, before, after, source}, got ${describe(event)}${isObject(event) ? ' without op' : ''}`);
    const source = isObject(event.source) ? event.source : {};
    const sourceTable = typeof source.table === 'string' ? source.table : undefined;
    const vars = {
      topic: record.topic,
      ...(typeof source.db === 'string' ? { db: source.db } : {}),
      ...(typeof source.schema === 'string' ? { schema: source.schema } : {}),
      ...(sourceTable !== undefined ? { table: sourceTable } : {}),
    };
    const table = this.#template.fill(vars);
    const mapTable = sourceTable ?? record.topic;
    const parsed = this.#columnSchema(record, record.headers[SCHEMA_HEADER]);
    const raw = parsed?.columns;
    const pkNames = raw?.filter((c) => c.pk).map((c) => c.name);
    // json and jsonb values keep their exact text (see raw-json.ts).
    const exact = parsed && parsed.json.size > 0 && !wrapped ? rawColumns(text, IMAGES, parsed.json) : undefined;
    const exactValue = (image: 'after' | 'before', name: string, value: unknown): unknown => {
      const slice = exact?.get(image)?.get(name);
      return slice === undefined || value === null || value === UNCHANGED_TOAST_MARKER ? value : new RawJson(slice);
    };
    const keySource: readonly string[] | undefined = pkNames && pkNames.length > 0 ? pkNames : isObject(keyValue) ? Object.keys(keyValue) : undefined;
    const keySet = new Set(keySource ?? []);
    const columns = raw ? this.#mapColumns(mapTable, raw, keySet) : undefined;
    const keyColumns = keySource ? this.#sameKeyNames(this.#mapKeyNames(mapTable, keySource)) : undefined;
    const offset = record.offset;
    const needKey = (): readonly string[] => {
      if (!keyColumns || keyColumns.length === 0) {
        throw bad(record, `the change event of table ${preview(table)} names no primary key (no pk column in its schema and no JSON object key); set REPLICA IDENTITY or a primary key upstream`);
      }
      return keyColumns;
    };

    switch (event.op) {
      case 'r':
      case 'c':
      case 'u': {
        if (!isObject(event.after)) throw bad(record, `a change event with op ${event.op} needs an object "after", got ${describe(event.after)}`, { op: event.op });
        const keys = needKey();
        const unchanged: string[] = [];
        const after: Row = {};
        for (const [name, value] of Object.entries(event.after)) {
          if (value === UNCHANGED_TOAST_MARKER) {
            const fate = this.#mapping.fate(mapTable, name, keySet.has(name));
            if (fate.write) unchanged.push(fate.target);
          } else {
            after[name] = exact ? exactValue('after', name, value) : value;
          }
        }
        const row = this.#mapRow(mapTable, after, keySet);
        pick(record, row, keys);
        const out: Change[] = [];
        if (event.op === 'u' && isObject(event.before)) {
          const before = this.#mapRow(mapTable, event.before, keySet);
          // Under REPLICA IDENTITY DEFAULT "before" holds the old key only when it changed; under FULL it always holds the old row.
          if (keys.every((k) => k in before) && keys.some((k) => !sameValue(before[k], row[k]))) {
            out.push({ kind: 'delete', table, offset, columns, keyColumns: keys, key: pick(record, before, keys) });
          }
        }
        out.push({ kind: 'upsert', table, offset, columns, keyColumns: keys, row, unchanged, inserted: event.op !== 'u' });
        return out;
      }
      case 'd': {
        const keys = needKey();
        const before = isObject(event.before) ? this.#mapRow(mapTable, event.before, keySet) : undefined;
        const fromKey = isObject(keyValue) ? this.#mapRow(mapTable, keyValue, keySet) : undefined;
        const image = before && keys.every((k) => k in before) ? before : fromKey;
        if (!image) throw bad(record, 'a delete event needs the old key, in "before" or in the record key');
        return [{ kind: 'delete', table, offset, columns, keyColumns: keys, key: pick(record, image, keys) }];
      }
      case 't':
        return [{ kind: 'truncate', table, offset, columns }];
      default:
        throw bad(record, `unknown change event op ${JSON.stringify(event.op).slice(0, 20)}; expected r, c, u, d or t`, { op: String(event.op).slice(0, 20) });
    }
  }

  /** The column schema of the record's schema header, parsed once per distinct header; undefined when absent. */
  #columnSchema(record: SinkRecord, header: Buffer | undefined): ParsedSchema | undefined {
    if (header === undefined) return undefined;
    const text = header.toString('utf8');
    const cached = this.#schemas.get(text);
    if (cached) return cached;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw bad(record, `the header ${SCHEMA_HEADER} is not JSON: ${(err as Error).message}`);
    }
    const list = isObject(value) && Array.isArray(value.columns) ? value.columns : undefined;
    if (!list) throw bad(record, `the header ${SCHEMA_HEADER} must be {schema, table, columns: [{name, type, nullable, pk}]}, got ${describe(value)}`);
    const columns: RawColumn[] = [];
    for (const c of list) {
      if (!isObject(c) || typeof c.name !== 'string' || typeof c.type !== 'string') {
        throw bad(record, `each column of the header ${SCHEMA_HEADER} needs a string name and type`);
      }
      columns.push({ name: c.name, typeText: c.type, type: parsePgType(c.type), nullable: c.nullable !== false, pk: c.pk === true });
    }
    const json = new Set(columns.filter((c) => c.type.array === 0 && (c.type.base === 'json' || c.type.base === 'jsonb')).map((c) => c.name));
    const parsed = { columns, json };
    if (this.#schemas.size > 1000) this.#schemas.clear();
    this.#schemas.set(text, parsed);
    return parsed;
  }

  #mapColumns(table: string, raw: readonly RawColumn[], keySet: ReadonlySet<string>): SourceColumn[] {
    const out: SourceColumn[] = [];
    for (const c of raw) {
      const fate = this.#mapping.fate(table, c.name, keySet.has(c.name));
      if (fate.write) out.push({ ...c, name: fate.target });
    }
    return out;
  }

  /** `names`, as the array the previous record with the same key names got, so records of one shape share it. */
  #sameKeyNames(names: readonly string[]): readonly string[] {
    const last = this.#lastKeyNames;
    if (last && sameNames(last, names)) return last;
    this.#lastKeyNames = names;
    return names;
  }

  #mapKeyNames(table: string, names: readonly string[]): string[] {
    return names.map((name) => {
      const fate = this.#mapping.fate(table, name, true);
      return fate.write ? fate.target : name;
    });
  }

  /** `value`'s fields under target names, dropping excluded ones. */
  #mapRow(table: string, value: Record<string, unknown>, keySet: ReadonlySet<string>): Row {
    if (this.#mapping.identity) return value;
    const row: Row = {};
    for (const [name, v] of Object.entries(value)) {
      const fate = this.#mapping.fate(table, name, keySet.has(name));
      if (fate.write) row[fate.target] = v;
    }
    return row;
  }
}

/** The images of a change event whose json values keep their text. */
const IMAGES: ReadonlySet<string> = new Set(['after', 'before']);

interface ParsedSchema {
  readonly columns: readonly RawColumn[];
  /** Source names of the json and jsonb columns. */
  readonly json: ReadonlySet<string>;
}

interface RawColumn {
  readonly name: string;
  readonly type: PgType;
  readonly typeText: string;
  readonly nullable: boolean;
  readonly pk: boolean;
}

/** Throws a record-level error unless every key column of `row` is present and not null. */
function checkKey(record: SinkRecord, row: Row, keyColumns: readonly string[]): void {
  for (const k of keyColumns) {
    const v = row[k];
    if (v === undefined || v === null) throw bad(record, `key column ${preview(k)} is ${v === null ? 'null' : 'missing'}`, { column: k });
  }
}

/** The key columns of `row`, checking each is present and not null. */
function pick(record: SinkRecord, row: Row, keyColumns: readonly string[]): Row {
  const key: Row = {};
  for (const k of keyColumns) {
    const v = row[k];
    if (v === undefined || v === null) throw bad(record, `key column ${preview(k)} is ${v === null ? 'null' : 'missing'}`, { column: k });
    key[k] = v;
  }
  return key;
}

/** Whether two column-name lists hold the same names in the same order. */
export function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Key values compared as the database would: 1 and "1" are one key. */
export function sameValue(a: unknown, b: unknown): boolean {
  return keyText(a) === keyText(b);
}

/** One key value as text for maps: scalars by their string form, anything else as JSON. */
export function keyText(value: unknown): string {
  return typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
}

/**
 * Table and column names: the `table` template, the column mapping (rename, include, exclude), and
 * the checks every name passes before a dialect quotes it. Names come from change events and
 * record values, so they are untrusted: they are only ever used quoted, and a name the database
 * would silently alter (truncate past its length limit) is refused instead.
 */
import { SluiceError } from '../../core/connector.ts';
import { TABLE_PLACEHOLDERS, type SqlSinkSettings, type TablePlaceholder } from './config.ts';

/** The identifier limits of one database, for {@link checkIdentifier}. */
export interface IdentifierRules {
  /** Shown in messages, e.g. `Postgres`. */
  readonly engine: string;
  /** The longest identifier, measured by `measure`. */
  readonly maxLength: number;
  /** Postgres counts bytes of UTF-8, MySQL counts characters. */
  readonly measure: 'bytes' | 'chars';
  /** MySQL rejects names ending in a space and characters outside the BMP. */
  readonly mysql: boolean;
}

/**
 * Throws a record-level error when `name` cannot be a `what` (table, column) in this database:
 * empty, NUL, longer than the limit (Postgres would truncate it silently, so two names could
 * meet), or, for MySQL, a trailing space or a character beyond U+FFFF.
 */
export function checkIdentifier(name: string, what: string, rules: IdentifierRules): void {
  const bad = (why: string): never => {
    throw new SluiceError('CONNECTOR_FAILED', `${what} name ${preview(name)} ${why}`, { context: { [what]: preview(name) } });
  };
  if (name.length === 0) bad('is empty');
  if (name.includes('\u0000')) bad('holds a NUL character');
  const length = rules.measure === 'bytes' ? Buffer.byteLength(name, 'utf8') : [...name].length;
  if (length > rules.maxLength) bad(`is longer than ${rules.engine}'s limit of ${rules.maxLength} ${rules.measure === 'bytes' ? 'bytes' : 'characters'}`);
  if (rules.mysql) {
    if (name.endsWith(' ')) bad(`ends with a space, which ${rules.engine} does not allow`);
    if (/[\u{10000}-\u{10FFFF}]/u.test(name)) bad(`holds a character beyond U+FFFF, which ${rules.engine} does not allow in names`);
  }
}

/** A name shown in a message: JSON-quoted and cut, since it may come from hostile data. */
export function preview(name: string, max = 80): string {
  return JSON.stringify(name.length > max ? `${name.slice(0, max)}…` : name);
}

// ---------------------------------------------------------------------------------------------
// Table templates

type TemplatePart = { text: string } | { placeholder: TablePlaceholder };

/** A parsed `table` template. */
export class TableTemplate {
  readonly parts: readonly TemplatePart[];
  readonly placeholders: ReadonlySet<TablePlaceholder>;

  /** `template` already passed the schema's pattern, so braces are balanced and names known. */
  constructor(readonly template: string) {
    const parts: TemplatePart[] = [];
    const re = /\{([a-z]+)\}/g;
    let last = 0;
    for (let m = re.exec(template); m !== null; m = re.exec(template)) {
      if (m.index > last) parts.push({ text: template.slice(last, m.index) });
      const name = m[1] as TablePlaceholder;
      if (!(TABLE_PLACEHOLDERS as readonly string[]).includes(name)) {
        throw new SluiceError('CONFIG_INVALID', `table template ${JSON.stringify(template)} has an unknown placeholder {${name}}`, { context: { field: 'table', value: template } });
      }
      parts.push({ placeholder: name });
      last = m.index + m[0].length;
    }
    if (last < template.length) parts.push({ text: template.slice(last) });
    this.parts = parts;
    this.placeholders = new Set(parts.flatMap((p) => ('placeholder' in p ? [p.placeholder] : [])));
  }

  /** The table name for these values; a record-level error when one the template uses is missing. */
  fill(values: Partial<Record<TablePlaceholder, string>>): string {
    let out = '';
    for (const part of this.parts) {
      if ('text' in part) {
        out += part.text;
        continue;
      }
      const value = values[part.placeholder];
      if (typeof value !== 'string' || value === '') {
        throw new SluiceError('CONNECTOR_FAILED', `table template ${JSON.stringify(this.template)} needs {${part.placeholder}}, which this record does not carry${part.placeholder === 'topic' ? '' : ' (it comes from the source block of a change event)'}`, {
          context: { field: 'table', placeholder: part.placeholder },
        });
      }
      out += value;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Column mapping

/** What happens to one source column of one table. */
export type ColumnFate = { write: true; target: string } | { write: false };

/**
 * Applies `columns.rename`, `include` and `exclude`. A name in those lists matches a column of
 * every table (`note`) or of one table (`orders.note`, the source table in cdc mode, the topic
 * otherwise), compared as whole strings, so names holding dots need no escaping.
 */
export class ColumnMapping {
  readonly #rename: ReadonlyMap<string, string>;
  readonly #include: ReadonlySet<string> | undefined;
  readonly #exclude: ReadonlySet<string>;
  readonly #cache = new Map<string, ColumnFate>();

  constructor(columns: SqlSinkSettings['columns']) {
    this.#rename = new Map(Object.entries(columns.rename ?? {}));
    this.#include = columns.include ? new Set(columns.include) : undefined;
    this.#exclude = new Set(columns.exclude ?? []);
  }

  /** True when the mapping changes nothing, so rows can be used as they are. */
  get identity(): boolean {
    return this.#rename.size === 0 && this.#include === undefined && this.#exclude.size === 0;
  }

  /** The fate of `column` of source table (or topic) `table`; `isKey` columns ignore `include`. */
  fate(table: string, column: string, isKey: boolean): ColumnFate {
    const cacheKey = `${table}\u0000${column}\u0000${isKey ? 1 : 0}`;
    let fate = this.#cache.get(cacheKey);
    if (fate) return fate;
    const qualified = `${table}.${column}`;
    const has = (set: ReadonlySet<string>): boolean => set.has(qualified) || set.has(column);
    if (has(this.#exclude)) {
      if (isKey) {
        throw new SluiceError('CONFIG_INVALID', `columns.exclude removes ${JSON.stringify(column)}, a key column of ${JSON.stringify(table)}; rows cannot be matched without it`, {
          context: { field: 'columns.exclude', value: column, table },
        });
      }
      fate = { write: false };
    } else if (this.#include && !isKey && !has(this.#include)) {
      fate = { write: false };
    } else {
      fate = { write: true, target: this.#rename.get(qualified) ?? this.#rename.get(column) ?? column };
    }
    if (this.#cache.size > 100_000) this.#cache.clear();
    this.#cache.set(cacheKey, fate);
    return fate;
  }
}

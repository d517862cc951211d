/**
 * Connector reference docs, generated from each definition: its description, its config schema
 * (the one source of truth), its examples and its declared metrics. `npm run docs` writes
 * `connectors/<name>/README.md`; `sluice connectors describe NAME` prints the same text; a test
 * fails when a README is stale or a property has no description.
 */
import fs from 'node:fs';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import type { AnyConnector, ConnectorRegistry } from './connector.ts';
import { PATTERN_MESSAGES } from './spec/schema.ts';

type Schema = { readonly [keyword: string]: unknown };

const isSchema = (value: unknown): value is Schema => typeof value === 'object' && value !== null && !Array.isArray(value);
const schemaAt = (value: unknown): Schema => (isSchema(value) ? value : {});
const stringsAt = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
const propertiesOf = (schema: Schema): Array<[string, Schema]> => Object.entries(schemaAt(schema.properties)).map(([name, sub]) => [name, schemaAt(sub)]);

// ---------------------------------------------------------------------------------------------
// Markdown helpers

/** A code span that survives backticks inside `text`. */
function code(text: string): string {
  const fence = text.includes('`') ? '``' : '`';
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

/** A value as a spec would write it: strings bare, anything else as JSON. */
function valueCode(value: unknown): string {
  return code(typeof value === 'string' ? value : JSON.stringify(value));
}

function list(items: readonly string[], conjunction: 'and' | 'or'): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} ${conjunction} ${items[items.length - 1]}`;
}

/**
 * Escapes prose for Markdown: `<pipeline>` would otherwise vanish as an HTML tag. Code spans are
 * left alone, since Markdown shows them verbatim.
 */
function prose(text: string): string {
  return text
    .split(/(`[^`]*`)/)
    .map((part, i) => (i % 2 === 1 ? part : part.replace(/</g, '&lt;').replace(/>/g, '&gt;')))
    .join('');
}

/** A table cell: one line, and pipes escaped even inside code spans, as GFM tables require. */
function cell(text: string): string {
  return text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
}

// ---------------------------------------------------------------------------------------------
// The config table

interface Row {
  readonly path: string;
  readonly schema: Schema;
  readonly required: boolean;
}

/**
 * Flattens a schema's properties into rows: nested objects as `a.b`, objects inside arrays as
 * `a[].b`, map values as `a.*`. Properties that only `allOf`/`oneOf`/`anyOf` branches or `then`/
 * `else` introduce get rows too, since a config may set them.
 */
function collectRows(schema: Schema, prefix: string, rows: Row[], seen: Set<string>): void {
  const required = new Set(stringsAt(schema.required));
  const own = propertiesOf(schema);
  for (const [name, sub] of own) {
    const at = prefix + name;
    if (seen.has(at)) continue;
    seen.add(at);
    rows.push({ path: at, schema: sub, required: required.has(name) });
    collectNested(sub, at, rows, seen);
  }
  for (const keyword of ['allOf', 'oneOf', 'anyOf'] as const) {
    for (const branch of Array.isArray(schema[keyword]) ? schema[keyword] : []) collectBranch(schemaAt(branch), prefix, rows, seen);
  }
  for (const keyword of ['then', 'else'] as const) {
    if (isSchema(schema[keyword])) collectBranch(schema[keyword], prefix, rows, seen);
  }
}

/** Rows for the properties only a branch introduces; never marked required, as they are only conditionally. */
function collectBranch(branch: Schema, prefix: string, rows: Row[], seen: Set<string>): void {
  const fresh = propertiesOf(branch).filter(([name, sub]) => !seen.has(prefix + name) && Object.keys(sub).length > 0);
  collectRows({ ...branch, required: [], properties: Object.fromEntries(fresh) }, prefix, rows, seen);
}

function collectNested(sub: Schema, at: string, rows: Row[], seen: Set<string>): void {
  if (isSchema(sub.properties) || hasBranches(sub)) collectRows(sub, `${at}.`, rows, seen);
  const items = schemaAt(sub.items);
  if (isSchema(items.properties) || hasBranches(items)) collectRows(items, `${at}[].`, rows, seen);
  if (isSchema(sub.additionalProperties)) {
    const values = sub.additionalProperties;
    const mapAt = `${at}.*`;
    if (!seen.has(mapAt) && (typeof values.description === 'string' || isSchema(values.properties))) {
      seen.add(mapAt);
      rows.push({ path: mapAt, schema: values, required: false });
      collectNested(values, mapAt, rows, seen);
    }
  }
}

function hasBranches(schema: Schema): boolean {
  return ['allOf', 'oneOf', 'anyOf'].some((k) => Array.isArray(schema[k])) || isSchema(schema.then) || isSchema(schema.else);
}

/** The type as a reader thinks of it: `integer or string`, `array of string`, `object`. */
function typeText(schema: Schema): string {
  if ('const' in schema) return schema.const === null ? 'null' : typeof schema.const;
  let types: string[] = Array.isArray(schema.type) ? stringsAt(schema.type) : typeof schema.type === 'string' ? [schema.type] : [];
  if (types.length === 0 && Array.isArray(schema.enum)) types = schema.enum.map((v) => (v === null ? 'null' : typeof v));
  if (types.length === 0) {
    for (const keyword of ['oneOf', 'anyOf'] as const) {
      for (const branch of Array.isArray(schema[keyword]) ? schema[keyword] : []) types.push(...typeText(schemaAt(branch)).split(' or '));
    }
  }
  if (types.length === 0 && isSchema(schema.properties)) types = ['object'];
  const unique = [...new Set(types.filter((t) => t !== 'any'))];
  if (unique.length === 0) return 'any';
  return unique.map((t) => (t === 'array' && isSchema(schema.items) ? `array of ${typeText(schema.items)}` : t)).join(' or ');
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

const BOUNDS: ReadonlyArray<readonly [string, (n: number) => string]> = [
  ['minimum', (n) => `>= ${n}`],
  ['exclusiveMinimum', (n) => `> ${n}`],
  ['maximum', (n) => `<= ${n}`],
  ['exclusiveMaximum', (n) => `< ${n}`],
  ['multipleOf', (n) => `a multiple of ${n}`],
  ['minLength', (n) => `at least ${plural(n, 'character')}`],
  ['maxLength', (n) => `at most ${plural(n, 'character')}`],
  ['minItems', (n) => `at least ${plural(n, 'item')}`],
  ['maxItems', (n) => `at most ${plural(n, 'item')}`],
  ['minProperties', (n) => `at least ${plural(n, 'entry', 'entries')}`],
  ['maxProperties', (n) => `at most ${plural(n, 'entry', 'entries')}`],
];

/** The value rules of one schema as short phrases: enum, bounds, lengths, pattern, format. */
function constraints(schema: Schema): string[] {
  const out: string[] = [];
  if ('const' in schema) out.push(`exactly ${valueCode(schema.const)}`);
  if (Array.isArray(schema.enum)) out.push(`one of ${schema.enum.map(valueCode).join(', ')}`);
  for (const [keyword, phrase] of BOUNDS) {
    const n = schema[keyword];
    if (typeof n === 'number') out.push(phrase(n));
  }
  if (schema.uniqueItems === true) out.push('no duplicate items');
  if (typeof schema.pattern === 'string') {
    const message = PATTERN_MESSAGES[schema.pattern];
    out.push(message ? message.replace(/^must be /, '') : `matches ${code(schema.pattern)}`);
  }
  if (typeof schema.format === 'string') out.push(`format ${schema.format}`);
  if (isSchema(schema.propertyNames) && typeof schema.propertyNames.pattern === 'string') {
    out.push(`keys match ${code(schema.propertyNames.pattern)}`);
  }
  if (isSchema(schema.items)) out.push(...constraints(schema.items).map((c) => `each item ${c}`));
  return out;
}

function descriptionCell(schema: Schema): string {
  const parts: string[] = [];
  if (schema.writeOnly === true) parts.push('**Secret:** redacted from logs and API output.');
  if (schema.deprecated === true) parts.push('**Deprecated.**');
  if (typeof schema.description === 'string') parts.push(prose(schema.description));
  if (Array.isArray(schema.examples) && schema.examples.length > 0) {
    parts.push(`Example${schema.examples.length > 1 ? 's' : ''}: ${schema.examples.map(valueCode).join(', ')}.`);
  }
  return parts.join(' ');
}

function renderTable(rows: readonly Row[]): string[] {
  const lines = ['| Setting | Type | Required | Default | Allowed | Description |', '| --- | --- | --- | --- | --- | --- |'];
  for (const row of rows) {
    lines.push(
      `| ${[
        code(row.path),
        typeText(row.schema),
        row.required ? 'yes' : 'no',
        'default' in row.schema ? valueCode(row.schema.default) : '',
        constraints(row.schema).join('; '),
        descriptionCell(row.schema),
      ]
        .map(cell)
        .join(' | ')} |`,
    );
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Rules between settings, in words

function names(prefix: string, keys: readonly string[]): string[] {
  return keys.map((k) => code(prefix + k));
}

/** The condition of an `if`, e.g. "`preset` is `orders`". `parent` supplies defaults, which count as set. */
function conditionText(schema: Schema, prefix: string, parent: Schema): string | undefined {
  const required = new Set(stringsAt(schema.required));
  const parts: string[] = [];
  for (const [name, sub] of propertiesOf(schema)) {
    const subject = code(prefix + name);
    let phrase: string | undefined;
    if ('const' in sub) phrase = `is ${valueCode(sub.const)}`;
    else if (Array.isArray(sub.enum)) phrase = `is one of ${sub.enum.map(valueCode).join(', ')}`;
    else if (isSchema(sub.not) && 'const' in sub.not) phrase = `is not ${valueCode(sub.not.const)}`;
    else if (constraints(sub).length > 0) phrase = `is ${constraints(sub).join(' and ')}`;
    if (phrase === undefined) return undefined;
    // Without `required`, an absent property satisfies the condition too; a default is never absent.
    const hasDefault = 'default' in schemaAt(schemaAt(parent.properties)[name]);
    parts.push(required.has(name) || hasDefault ? `${subject} ${phrase}` : `${subject} ${phrase} or is unset`);
    required.delete(name);
  }
  for (const name of required) parts.push(`${code(prefix + name)} is set`);
  const rest = Object.keys(schema).filter((k) => !['type', 'properties', 'required'].includes(k));
  if (parts.length === 0 || rest.length > 0) return undefined;
  return list(parts, 'and');
}

/** What a `then`/`else` demands, e.g. "`servers` is required and `token` must not be set". */
function consequenceText(schema: Schema, prefix: string): string | undefined {
  const required = stringsAt(schema.required);
  const not = schema.not;
  if (not !== undefined && !(isSchema(not) && Object.keys(not).every((k) => k === 'required'))) return undefined;
  const forbidden = isSchema(not) ? stringsAt(not.required) : [];
  const musts: string[] = [];
  const defaults: string[] = [];
  for (const [name, sub] of Object.entries(schemaAt(schema.properties))) {
    if (sub === false) {
      forbidden.push(name);
      continue;
    }
    if (!isSchema(sub)) return undefined;
    const rules = constraints(sub);
    if (rules.length === 0 && !('default' in sub && Object.keys(sub).every((k) => k === 'default' || k === 'description' || k === 'type'))) return undefined;
    if (rules.length > 0) musts.push(`${code(prefix + name)} must be ${list(rules, 'and')}`);
    // A default in a branch applies only when the branch does: the loader fills it in then.
    if ('default' in sub) defaults.push(`${code(prefix + name)} defaults to ${valueCode(sub.default)}`);
  }
  const parts: string[] = [];
  if (required.length > 0) parts.push(`${list(names(prefix, required), 'and')} ${required.length > 1 ? 'are' : 'is'} required`);
  parts.push(...musts);
  if (forbidden.length > 0) parts.push(`${list(names(prefix, forbidden), 'and')} must not be set`);
  parts.push(...defaults);
  const rest = Object.keys(schema).filter((k) => !['type', 'properties', 'required', 'not'].includes(k));
  if (parts.length === 0 || rest.length > 0) return undefined;
  return parts.length > 2 ? `${parts.slice(0, -1).join('; ')}; and ${parts[parts.length - 1]}` : list(parts, 'and');
}

/** A rule the words above cannot express, shown as its JSON Schema rather than left out. */
function rawRule(keyword: string, value: unknown, prefix: string): string {
  const where = prefix ? ` (in ${code(prefix.replace(/\.$/, ''))})` : '';
  return `Must satisfy ${code(`${keyword}: ${JSON.stringify(value)}`)}${where}.`;
}

function ifThenRule(schema: Schema, prefix: string, parent: Schema): string {
  const condition = isSchema(schema.if) ? conditionText(schema.if, prefix, parent) : undefined;
  const then = isSchema(schema.then) ? consequenceText(schema.then, prefix) : undefined;
  const otherwise = isSchema(schema.else) ? consequenceText(schema.else, prefix) : undefined;
  if (condition === undefined || (isSchema(schema.then) && then === undefined) || (isSchema(schema.else) && otherwise === undefined)) {
    return rawRule('if', { if: schema.if, then: schema.then, else: schema.else }, prefix);
  }
  const sentences: string[] = [];
  if (then !== undefined) sentences.push(`When ${condition}, ${then}.`);
  if (otherwise !== undefined) sentences.push(then !== undefined ? `Otherwise, ${otherwise}.` : `Unless ${condition}, ${otherwise}.`);
  return sentences.join(' ');
}

/** Only `required` in each branch: "exactly one of `a`, `b` must be set". */
function choiceRule(keyword: 'oneOf' | 'anyOf', branches: readonly unknown[], prefix: string): string {
  const sets = branches.map((b) => (isSchema(b) && Object.keys(b).every((k) => k === 'required') ? stringsAt(b.required) : undefined));
  if (sets.some((s) => s === undefined || s.length === 0)) return rawRule(keyword, branches, prefix);
  const options = sets.map((s) => list(names(prefix, s!), 'and'));
  return `${keyword === 'oneOf' ? 'Exactly one' : 'At least one'} of ${list(options, 'or')} must be set.`;
}

/** Every cross-field rule of an object schema and of the objects nested in it, in words. */
function collectRules(schema: Schema, prefix: string, rules: string[]): void {
  ownRules(schema, prefix, schema, rules);
  for (const [name, sub] of propertiesOf(schema)) {
    collectRules(sub, `${prefix}${name}.`, rules);
    if (isSchema(sub.items)) collectRules(sub.items, `${prefix}${name}[].`, rules);
  }
}

/** The rules one schema object states, and those of its `allOf` branches; `parent` holds the properties (for defaults). */
function ownRules(schema: Schema, prefix: string, parent: Schema, rules: string[]): void {
  const dependent = { ...schemaAt(schema.dependencies), ...schemaAt(schema.dependentRequired) };
  for (const [name, needs] of Object.entries(dependent)) {
    const needed = stringsAt(needs);
    if (Array.isArray(needs) && needed.length === needs.length) {
      rules.push(`When ${code(prefix + name)} is set, ${list(names(prefix, needed), 'and')} ${needed.length > 1 ? 'are' : 'is'} required.`);
    } else {
      rules.push(rawRule('dependencies', { [name]: needs }, prefix));
    }
  }
  if (isSchema(schema.if)) rules.push(ifThenRule(schema, prefix, parent));
  for (const keyword of ['oneOf', 'anyOf'] as const) {
    // Branches that declare properties are alternatives of shape, whose rows the table shows.
    const branches = Array.isArray(schema[keyword]) ? schema[keyword] : [];
    if (branches.length > 0 && !branches.some((b) => isSchema(b) && isSchema(b.properties))) rules.push(choiceRule(keyword, branches, prefix));
  }
  if (isSchema(schema.not)) {
    const forbidden = stringsAt(schema.not.required);
    const onlyRequired = Object.keys(schema.not).every((k) => k === 'required');
    if (onlyRequired && forbidden.length > 1) rules.push(`${list(names(prefix, forbidden), 'and')} cannot all be set together.`);
    else if (onlyRequired && forbidden.length === 1) rules.push(`${names(prefix, forbidden)[0]} must not be set.`);
    else rules.push(rawRule('not', schema.not, prefix));
  }
  for (const branch of Array.isArray(schema.allOf) ? schema.allOf : []) {
    if (isSchema(branch)) ownRules(branch, prefix, parent, rules);
  }
}

// ---------------------------------------------------------------------------------------------
// The document

const HEADER = '<!-- Generated by core/docs.ts from the connector definition and its config schema. Do not edit: change the schema, then run npm run docs. -->';

/** A spec entry using `config`, as a user would paste it into a pipeline spec. */
function exampleEntry(connector: AnyConnector, config: unknown): string {
  const entry: Record<string, unknown> = { name: connector.name, connector: connector.name };
  if (connector.kind === 'source') {
    const vars = connector.topicVariables ?? [];
    if (!connector.producedTopics) entry.topic = ['events', ...vars.map((v: string) => `{${v}}`)].join('.');
  } else {
    entry.topics = ['events'];
  }
  entry.config = config;
  return toYaml({ [connector.kind === 'source' ? 'sources' : 'sinks']: [entry] }, { lineWidth: 0 }).trimEnd();
}

/**
 * Renders a connector's reference doc as Markdown: title, kind, description, the config table
 * generated from its JSON Schema (nested settings flattened as `a.b`, with type, required, default,
 * allowed values and description; secrets marked), the rules between settings in words (from
 * `if`/`then`/`else`, `dependentRequired`, `oneOf`/`anyOf` of `required` and `not`), the examples as
 * spec entries in YAML, and the declared metrics. Pure and deterministic: `writeConnectorDocs`
 * compares its bytes with the README on disk, and `sluice connectors describe` prints it.
 */
export function renderConnectorDoc(connector: AnyConnector): string {
  const schema = schemaAt(connector.configSchema);
  const out: string[] = [HEADER, '', `# ${connector.name}`, ''];
  const section = connector.kind === 'source' ? 'sources' : 'sinks';
  out.push(`**Kind:** ${connector.kind}. Use it in a pipeline spec's \`${section}\` with \`connector: ${connector.name}\`.`, '');
  out.push(prose(connector.description), '');
  if (connector.kind === 'source' && connector.topicVariables && connector.topicVariables.length > 0) {
    out.push(`Its records fill these placeholders of a topic template: ${connector.topicVariables.map((v: string) => code(`{${v}}`)).join(', ')}.`, '');
  }
  if (connector.kind === 'source' && connector.producedTopics) {
    out.push('The topics it writes come from its config, so the entry may leave out `topic`.', '');
  }

  out.push('## Configuration', '');
  const rows: Row[] = [];
  collectRows(schema, '', rows, new Set());
  if (rows.length === 0) {
    out.push('This connector has no settings.', '');
  } else {
    out.push(`Settings go under the entry's \`config\`. Settings with a default may be left out.`, '');
    out.push(...renderTable(rows), '');
  }
  if (schema.additionalProperties !== false && rows.length > 0) {
    out.push('Settings not listed here are accepted and passed through.', '');
  }
  const rules: string[] = [];
  collectRules(schema, '', rules);
  if (rules.length > 0) {
    out.push('### Rules between settings', '');
    for (const rule of rules) out.push(`- ${rule}`);
    out.push('');
  }

  const examples = connector.examples ?? [];
  if (examples.length > 0) {
    out.push('## Examples', '');
    for (const example of examples) {
      out.push(`### ${prose(example.title)}`, '', '```yaml', exampleEntry(connector, example.config), '```', '');
    }
  }

  const metrics = Object.entries(connector.metrics ?? {});
  if (metrics.length > 0) {
    out.push('## Metrics', '');
    out.push('Besides the records in and out, errors, lag and latencies the runtime measures for every connector, its tasks report:', '');
    out.push('| Metric | Type | Labels | Description |', '| --- | --- | --- | --- |');
    for (const [name, spec] of metrics) {
      const metric = `sluice_${connector.name}_${name}`.replace(/-/g, '_');
      const labels = ['pipeline', 'connector', 'task', ...(spec.labels ?? [])].map(code).join(', ');
      out.push(`| ${[code(metric), spec.type, labels, prose(spec.help)].map(cell).join(' | ')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

/**
 * JSON pointers (into `schema`) of the properties that have no `description`, e.g.
 * `/properties/items/items/properties/sku`. Follows nested `properties`, `items`,
 * `additionalProperties` and `patternProperties`, and the properties that `allOf`/`oneOf`/`anyOf`
 * branches or `then`/`else` introduce; a branch that only refines a property described above
 * (`then: { properties: { servers: { minItems: 1 } } }`) needs none. Empty means documented.
 */
export function missingDescriptions(schema: unknown): string[] {
  const missing: string[] = [];
  walkDescriptions(schemaAt(schema), '', new Set(), missing);
  return missing;
}

function walkDescriptions(schema: Schema, pointer: string, known: ReadonlySet<string>, missing: string[]): void {
  const own = new Set(Object.keys(schemaAt(schema.properties)));
  for (const [name, sub] of propertiesOf(schema)) {
    if (known.has(name)) continue;
    const at = `${pointer}/properties/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    if (typeof sub.description !== 'string' || sub.description.trim() === '') missing.push(at);
    walkDescriptions(sub, at, new Set(), missing);
  }
  const defined = new Set([...known, ...own]);
  for (const keyword of ['allOf', 'oneOf', 'anyOf'] as const) {
    (Array.isArray(schema[keyword]) ? schema[keyword] : []).forEach((branch, i) => walkDescriptions(schemaAt(branch), `${pointer}/${keyword}/${i}`, defined, missing));
  }
  for (const keyword of ['then', 'else'] as const) {
    if (isSchema(schema[keyword])) walkDescriptions(schema[keyword], `${pointer}/${keyword}`, defined, missing);
  }
  if (isSchema(schema.items)) walkDescriptions(schema.items, `${pointer}/items`, new Set(), missing);
  if (isSchema(schema.additionalProperties)) walkDescriptions(schema.additionalProperties, `${pointer}/additionalProperties`, new Set(), missing);
  for (const [pattern, sub] of Object.entries(schemaAt(schema.patternProperties))) {
    walkDescriptions(schemaAt(sub), `${pointer}/patternProperties/${pattern.replace(/~/g, '~0').replace(/\//g, '~1')}`, new Set(), missing);
  }
}

/** Where a connector's README lives, relative to the project root, with `/` separators. */
export function connectorDocPath(name: string): string {
  return `connectors/${name}/README.md`;
}

/**
 * Brings every registered connector's `connectors/<name>/README.md` (under `rootDir`) up to date,
 * writing a file only when its bytes change, so an unchanged doc keeps its mtime and CI can diff.
 * A source and a sink sharing a name share the file, source first. With `check`, writes nothing.
 * Returns the files that were stale (and, without `check`, are now rewritten), relative to `rootDir`.
 * Synchronous: it runs from a script and a test. I/O errors other than a missing file are thrown.
 */
export function writeConnectorDocs(registry: ConnectorRegistry, rootDir: string, options: { check?: boolean } = {}): { stale: string[] } {
  const byName = new Map<string, AnyConnector[]>();
  for (const connector of [...registry.sources.values(), ...registry.sinks.values()]) {
    byName.set(connector.name, [...(byName.get(connector.name) ?? []), connector]);
  }
  const stale: string[] = [];
  for (const name of [...byName.keys()].sort()) {
    const text = Buffer.from(`${byName.get(name)!.map(renderConnectorDoc).join('\n')}`, 'utf8');
    const relative = connectorDocPath(name);
    const file = path.join(rootDir, ...relative.split('/'));
    let current: Buffer | undefined;
    try {
      current = fs.readFileSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (current?.equals(text)) continue;
    stale.push(relative);
    if (!options.check) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
    }
  }
  return { stale };
}

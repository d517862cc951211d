/**
 * Loading and validating pipeline specs. One pass finds every problem at once, each with the line
 * and column it comes from:
 * 1. YAML syntax;
 * 2. `${env:...}` / `${file:...}` references;
 * 3. the composed schema: the spec's shape and every connector's config (ajv, all errors);
 * 4. cross-references: unknown connectors (with a did-you-mean), duplicate names, bad topic
 *    templates, and, across all the files given together, sinks reading topics that nothing
 *    declares or produces.
 *
 * `sluice validate` prints {@link validateSpecFiles}' problems; `sluice run` calls {@link loadSpecs},
 * which throws `SPEC_INVALID` carrying the same problems.
 */
import fs from 'node:fs/promises';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { AnySinkConnector, AnySourceConnector, ConnectorRegistry } from '../connector.ts';
import { SluiceError } from '../errors.ts';
import { validateTransformEntries } from '../transforms/index.ts';
import { interpolate, type Env } from './interpolate.ts';
import { formatProblem, fromPointer, sortProblems, toPointer, type Problem } from './problem.ts';
import { PATTERN_MESSAGES, SPEC_SCHEMA, composeSpecSchema, type PipelineSpec } from './schema.ts';
import { collectWriteOnly, type SecretCollector, type SpecSecrets } from './secrets.ts';
import { didYouMean } from './suggest.ts';
import { parseTopicTemplate, topicTemplateRegExp } from './topic-template.ts';
import { parseDuration, parseSize } from './units.ts';
import { locate, parseYamlSource, type YamlSource } from './yaml-source.ts';

export interface SpecOptions {
  /** The connectors a spec may use. */
  registry: ConnectorRegistry;
  /** Variables for `${env:...}`. Default: `process.env`. */
  env?: Env;
}

/** A spec that passed validation: interpolated, with defaults filled in. */
export interface LoadedSpec {
  /** The file as the caller named it. */
  readonly file: string;
  readonly spec: PipelineSpec;
  readonly secrets: SpecSecrets;
}

export interface SpecInput {
  file: string;
  text: string;
}

export interface ValidationResult {
  /** Every problem, ordered by file and position. Empty when all specs are valid. */
  problems: Problem[];
  /** The loaded specs, in input order; empty unless `problems` is. */
  specs: LoadedSpec[];
}

/** Reads and validates spec files together, so topics may flow from one file's source to another's sink. */
export async function validateSpecFiles(files: readonly string[], options: SpecOptions): Promise<ValidationResult> {
  const inputs: SpecInput[] = [];
  const readProblems: Problem[] = [];
  for (const file of files) {
    try {
      inputs.push({ file, text: await fs.readFile(file, 'utf8') });
    } catch (err) {
      readProblems.push({ file, line: 1, col: 1, path: '', message: `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
    }
  }
  const result = validateSpecTexts(inputs, options);
  if (readProblems.length === 0) return result;
  return { problems: sortProblems([...readProblems, ...result.problems], files), specs: [] };
}

/** Loads spec files for running. Throws `SPEC_INVALID` whose message has one line per problem and whose context has `problems`. */
export async function loadSpecs(files: readonly string[], options: SpecOptions): Promise<LoadedSpec[]> {
  const { problems, specs } = await validateSpecFiles(files, options);
  if (problems.length > 0) {
    throw new SluiceError('SPEC_INVALID', problems.map(formatProblem).join('\n'), { context: { problems } });
  }
  return specs;
}

/** Loads one spec file; see {@link loadSpecs}. */
export async function loadSpec(file: string, options: SpecOptions): Promise<LoadedSpec> {
  const [spec] = await loadSpecs([file], options);
  return spec!;
}

/** Validates spec texts together; the synchronous core of {@link validateSpecFiles}. */
export function validateSpecTexts(inputs: readonly SpecInput[], options: SpecOptions): ValidationResult {
  const validate = validatorFor(options.registry);
  const env = options.env ?? process.env;
  const problems: Problem[] = [];
  const checked = inputs.map((input) => checkOne(input, options.registry, validate, env, problems));
  checkAcrossFiles(checked, problems);
  const sorted = sortProblems(
    problems,
    inputs.map((i) => i.file),
  );
  if (sorted.length > 0) return { problems: sorted, specs: [] };
  return { problems: [], specs: checked.map((c) => c.loaded!) };
}

// ---------------------------------------------------------------------------------------------
// Schema validation

const validators = new WeakMap<ConnectorRegistry, ValidateFunction>();

function newAjv(): Ajv {
  // useDefaults fills defaults in, so tasks see the config their ConfigOf type promises.
  return new Ajv({ allErrors: true, useDefaults: true, verbose: true, allowUnionTypes: true, strict: true, strictRequired: false });
}

function validatorFor(registry: ConnectorRegistry): ValidateFunction {
  const cached = validators.get(registry);
  if (cached) return cached;
  // Compiling each connector's schema alone first names the connector whose schema is broken.
  for (const connector of [...registry.sources.values(), ...registry.sinks.values()]) {
    try {
      newAjv().compile(connector.configSchema);
    } catch (err) {
      throw new SluiceError('CONFIG_INVALID', `the config schema of the ${connector.kind} connector ${connector.name} is invalid: ${(err as Error).message}`, {
        context: { connector: connector.name },
        cause: err,
      });
    }
  }
  const validate = newAjv().compile(composeSpecSchema(registry));
  validators.set(registry, validate);
  return validate;
}

/**
 * Interpolation yields strings; where the schema wanted a number, an integer or a boolean at an
 * interpolated value and the string is one, converts it in place. Returns whether anything changed.
 */
function coerceInterpolated(data: unknown, errors: readonly ErrorObject[], interpolated: ReadonlySet<string>): boolean {
  let changed = false;
  for (const error of errors) {
    if (error.keyword !== 'type' || !interpolated.has(error.instancePath)) continue;
    const segments = fromPointer(error.instancePath);
    const parent = segments.slice(0, -1).reduce<unknown>((node, segment) => (node as Record<string, unknown> | undefined)?.[segment], data);
    const key = segments[segments.length - 1];
    if (key === undefined || typeof parent !== 'object' || parent === null) continue;
    const text = (parent as Record<string, unknown>)[key];
    if (typeof text !== 'string') continue;
    const wanted = String((error.params as { type: string | string[] }).type).split(',');
    let value: unknown;
    if (wanted.includes('integer') && /^[-+]?[0-9]+$/.test(text) && Number.isSafeInteger(Number(text))) value = Number(text);
    else if (wanted.includes('number') && /^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$/.test(text)) value = Number(text);
    else if (wanted.includes('boolean') && (text === 'true' || text === 'false')) value = text === 'true';
    if (value === undefined) continue;
    (parent as Record<string, unknown>)[key] = value;
    changed = true;
  }
  return changed;
}

const CONNECTOR_POINTER = /^\/(sources|sinks)\/\d+\/connector$/;
const GOT_KEYWORDS = new Set(['pattern', 'enum', 'const', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf']);

function schemaProblems(source: YamlSource, errors: readonly ErrorObject[], skip: ReadonlySet<string>, secretPaths: ReadonlySet<string>): Problem[] {
  const problems: Problem[] = [];
  for (const error of errors) {
    // An `if` failing only says which `then` failed; that branch's own errors carry the detail.
    if (error.keyword === 'if') continue;
    // Unknown connectors get their own problem, with the known names and a did-you-mean.
    if (error.keyword === 'enum' && CONNECTOR_POINTER.test(error.instancePath)) continue;
    if ([...skip].some((p) => error.instancePath === p || error.instancePath.startsWith(`${p}/`))) continue;
    let pointer = error.instancePath;
    let key = false;
    let message = error.message ?? 'is invalid';
    if (error.keyword === 'additionalProperties') {
      const property = String((error.params as { additionalProperty: string }).additionalProperty);
      pointer += toPointer([property]);
      key = true;
      const allowed = Object.keys((error.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const suggestion = didYouMean(property, allowed);
      message = suggestion
        ? `unknown property (did you mean '${suggestion}'?)`
        : allowed.length > 0
          ? `unknown property (allowed: ${allowed.join(', ')})`
          : 'unknown property';
    } else if (error.keyword === 'pattern') {
      message = PATTERN_MESSAGES[String((error.params as { pattern: string }).pattern)] ?? message;
    } else if (error.keyword === 'enum') {
      message = `must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.map((v) => String(v)).join(', ')}`;
    }
    const secret = secretPaths.has(error.instancePath) || (error.parentSchema as { writeOnly?: boolean } | undefined)?.writeOnly === true;
    if (GOT_KEYWORDS.has(error.keyword) && !secret) message += `, got ${JSON.stringify(error.data)}`;
    problems.push({ file: source.file, ...locate(source, pointer, { key }), path: pointer, message });
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// One file

interface TopicRef {
  name: string;
  pointer: string;
}

/** What one file contributes to the checks across files. */
interface Checked {
  source?: YamlSource;
  data?: Record<string, unknown>;
  loaded?: LoadedSpec;
  pipeline?: TopicRef;
  declared: Array<TopicRef & { settings: string }>;
  produced: TopicRef[];
  templates: Array<TopicRef & { regex: RegExp }>;
  reads: TopicRef[];
}

function checkOne(input: SpecInput, registry: ConnectorRegistry, validate: ValidateFunction, env: Env, problems: Problem[]): Checked {
  const checked: Checked = { declared: [], produced: [], templates: [], reads: [] };
  const parsed = parseYamlSource(input.file, input.text);
  if (parsed.problems.length > 0) {
    // The structure of a document with syntax errors cannot be trusted; report only those.
    problems.push(...parsed.problems);
    return checked;
  }
  const source = parsed.source;
  checked.source = source;
  const interpolated = interpolate(source, env);
  problems.push(...interpolated.problems);
  const unresolved = new Set(interpolated.problems.map((p) => p.path));

  const data: unknown = source.doc.toJS({ maxAliasCount: 1000 });
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    problems.push({ file: input.file, ...locate(source, ''), path: '', message: 'a pipeline spec must be a YAML mapping with name, topics, sources and sinks' });
    return checked;
  }
  let valid = validate(data);
  if (!valid && coerceInterpolated(data, validate.errors ?? [], interpolated.secretPaths)) valid = validate(data);
  const schemaErrors = valid ? [] : (validate.errors ?? []);
  problems.push(...schemaProblems(source, schemaErrors, unresolved, interpolated.secretPaths));
  const badPaths = new Set([...schemaErrors.map((e) => e.instancePath), ...unresolved]);
  const isClean = (pointer: string): boolean => ![...badPaths].some((p) => p === pointer || p.startsWith(`${pointer}/`));

  const spec = data as Record<string, unknown>;
  checked.data = spec;
  const pipeline = typeof spec.name === 'string' ? spec.name : undefined;
  if (pipeline !== undefined) checked.pipeline = { name: pipeline, pointer: '/name' };
  const problem = (pointer: string, message: string): void => {
    problems.push({ file: input.file, ...locate(source, pointer), path: pointer, message });
  };

  const secrets: SecretCollector = { paths: new Set(interpolated.secretPaths), values: new Set(interpolated.secretValues) };
  collectWriteOnly(SPEC_SCHEMA, spec, [], secrets);

  const where = (pointer: string): string => `${pointer} (line ${locate(source, pointer).line})`;
  checkTopics(spec, checked, isClean, where, problem);
  const names = new Map<string, string>();
  for (const kind of ['sources', 'sinks'] as const) {
    const entries = Array.isArray(spec[kind]) ? (spec[kind] as unknown[]) : [];
    entries.forEach((entry, i) => {
      if (!isObject(entry)) return;
      const base = `/${kind}/${i}`;
      if (typeof entry.name === 'string') {
        const first = names.get(entry.name);
        if (first !== undefined) {
          problem(`${base}/name`, `connector name '${entry.name}' is already used at ${where(first)}`);
        } else {
          names.set(entry.name, `${base}/name`);
        }
      }
      const connector = lookUpConnector(kind, entry, base, registry, problem);
      if (connector && isObject(entry.config)) collectWriteOnly(connector.configSchema, entry.config, [...pathOf(base), 'config'], secrets);
      if (kind === 'sources') checkSourceTopics(entry, base, connector as AnySourceConnector | undefined, isClean(base), checked, problem);
      else if (Array.isArray(entry.topics)) {
        entry.topics.forEach((topic, t) => {
          if (typeof topic === 'string') checked.reads.push({ name: topic, pointer: `${base}/topics/${t}` });
        });
      }
      checkErrors(entry, base, pipeline, checked);
      // The spec schema only requires each transform to have a type; the entries' own schemas,
      // JSONata syntax and route templates are checked here, so they fail validation, not the run.
      if (Array.isArray(entry.transforms) && isClean(`${base}/transforms`)) {
        for (const p of validateTransformEntries(entry.transforms)) problem(`${base}/transforms${p.path}`, p.message);
      }
    });
  }

  checked.loaded = { file: input.file, spec: spec as PipelineSpec, secrets };
  return checked;
}

function checkTopics(
  spec: Record<string, unknown>,
  checked: Checked,
  isClean: (pointer: string) => boolean,
  where: (pointer: string) => string,
  problem: (pointer: string, message: string) => void,
): void {
  const topics = Array.isArray(spec.topics) ? spec.topics : [];
  const seen = new Map<string, string>();
  topics.forEach((topic, i) => {
    if (!isObject(topic) || typeof topic.name !== 'string') return;
    const pointer = `/topics/${i}/name`;
    if (seen.has(topic.name)) {
      problem(pointer, `topic '${topic.name}' is already declared at ${where(seen.get(topic.name)!)}`);
      return;
    }
    seen.set(topic.name, pointer);
    const { name: _name, ...settings } = topic;
    checked.declared.push({ name: topic.name, pointer, settings: JSON.stringify(settings) });
    // The schema checks the form of durations and sizes; only the parsers know one is too large.
    const units: Array<[string, unknown, (v: never) => number]> = [
      ['retention/time', isObject(topic.retention) ? topic.retention.time : undefined, parseDuration],
      ['retention/bytes', isObject(topic.retention) ? topic.retention.bytes : undefined, parseSize],
      ['fsync_interval', topic.fsync_interval, parseDuration],
      ['segment_bytes', topic.segment_bytes, parseSize],
      ['segment_time', topic.segment_time, parseDuration],
      ['tombstone_retention', topic.tombstone_retention, parseDuration],
    ];
    for (const [field, value, parse] of units) {
      const fieldPointer = `/topics/${i}/${field}`;
      if (value === undefined || value === 'none' || !isClean(fieldPointer)) continue;
      try {
        parse(value as never);
      } catch (err) {
        problem(fieldPointer, (err as Error).message);
      }
    }
  });
}

function lookUpConnector(
  kind: 'sources' | 'sinks',
  entry: Record<string, unknown>,
  base: string,
  registry: ConnectorRegistry,
  problem: (pointer: string, message: string) => void,
): AnySourceConnector | AnySinkConnector | undefined {
  if (typeof entry.connector !== 'string') return undefined;
  const name = entry.connector;
  const [own, other, singular, otherSingular] =
    kind === 'sources' ? [registry.sources, registry.sinks, 'source', 'sink'] : [registry.sinks, registry.sources, 'sink', 'source'];
  const found = own.get(name);
  if (found) return found;
  const known = [...own.keys()].sort();
  const list = `known ${kind}: ${known.length > 0 ? known.join(', ') : 'none'}`;
  if (other.has(name)) {
    problem(`${base}/connector`, `'${name}' is a ${otherSingular} connector, not a ${singular}; ${list}`);
    return undefined;
  }
  const suggestion = didYouMean(name, known);
  const hint = suggestion ? ` (did you mean '${suggestion}'?)` : '';
  problem(`${base}/connector`, `unknown ${singular} connector '${name}'${hint}; ${list}`);
  return undefined;
}

function checkSourceTopics(
  entry: Record<string, unknown>,
  base: string,
  connector: AnySourceConnector | undefined,
  clean: boolean,
  checked: Checked,
  problem: (pointer: string, message: string) => void,
): void {
  if (typeof entry.topic === 'string') {
    const pointer = `${base}/topic`;
    const template = parseTopicTemplate(entry.topic);
    if (!template.ok) {
      problem(pointer, `bad topic template '${entry.topic}': ${template.error}`);
    } else if (template.placeholders.length === 0) {
      checked.produced.push({ name: entry.topic, pointer });
    } else {
      const known = connector?.topicVariables ?? [];
      const unknown = connector ? template.placeholders.filter((p) => !known.includes(p)) : [];
      for (const placeholder of unknown) {
        const suggestion = didYouMean(placeholder, known);
        const fills = known.length > 0 ? `${connector!.name} fills ${known.map((k) => `{${k}}`).join(', ')}` : `${connector!.name} fills no placeholders`;
        problem(pointer, `bad topic template '${entry.topic}': unknown placeholder {${placeholder}}${suggestion ? ` (did you mean {${suggestion}}?)` : ''}; ${fills}`);
      }
      if (unknown.length === 0) checked.templates.push({ name: entry.topic, pointer, regex: topicTemplateRegExp(template.parts) });
    }
  }
  // producedTopics reads the config, so it only runs on a config the schema accepted.
  if (connector?.producedTopics && clean && isObject(entry.config)) {
    try {
      for (const topic of connector.producedTopics(entry.config)) checked.produced.push({ name: topic, pointer: `${base}/config` });
    } catch (err) {
      problem(`${base}/config`, `${connector.name} could not list the topics it writes: ${(err as Error).message}`);
    }
  }
}

function checkErrors(
  entry: Record<string, unknown>,
  base: string,
  pipeline: string | undefined,
  checked: Checked,
): void {
  const errors = entry.errors;
  if (!isObject(errors) || pipeline === undefined || typeof entry.name !== 'string') return;
  if (errors.tolerance === 'all' && errors.dlq !== false) checked.produced.push({ name: `__dlq.${pipeline}.${entry.name}`, pointer: `${base}/errors` });
}

// ---------------------------------------------------------------------------------------------
// Across files

function checkAcrossFiles(checked: readonly Checked[], problems: Problem[]): void {
  const at = (c: Checked, pointer: string): string => {
    const { line, col } = locate(c.source!, pointer);
    return `${c.source!.file}:${line}:${col}`;
  };
  const push = (c: Checked, pointer: string, message: string): void => {
    problems.push({ file: c.source!.file, ...locate(c.source!, pointer), path: pointer, message });
  };

  const pipelines = new Map<string, Checked>();
  const declared = new Map<string, { c: Checked; pointer: string; settings: string }>();
  let log: { c: Checked; json: string } | undefined;
  for (const c of checked) {
    if (!c.source) continue;
    if (c.pipeline) {
      const first = pipelines.get(c.pipeline.name);
      if (first) push(c, c.pipeline.pointer, `pipeline name '${c.pipeline.name}' is already used at ${at(first, '/name')}`);
      else pipelines.set(c.pipeline.name, c);
    }
    for (const topic of c.declared) {
      const first = declared.get(topic.name);
      if (!first) declared.set(topic.name, { c, pointer: topic.pointer, settings: topic.settings });
      else if (first.c !== c && first.settings !== topic.settings) {
        push(c, topic.pointer, `topic '${topic.name}' is declared with other settings at ${at(first.c, first.pointer)}`);
      }
    }
    if (c.data && isObject(c.data.log) && checked.length > 1) {
      const json = JSON.stringify(c.data.log);
      if (!log) log = { c, json };
      else if (log.json !== json) push(c, '/log', `log settings differ from those at ${at(log.c, '/log')}; specs run together share one log`);
    }
  }

  // A file that failed to parse contributes nothing, so its topics would look missing.
  if (checked.some((c) => !c.source)) return;
  const concrete = new Set<string>([...declared.keys(), ...checked.flatMap((c) => c.produced.map((p) => p.name))]);
  const templates = checked.flatMap((c) => c.templates);
  for (const c of checked) {
    for (const read of c.reads) {
      if (concrete.has(read.name) || templates.some((t) => t.regex.test(read.name))) continue;
      const suggestion = didYouMean(read.name, concrete);
      push(c, read.pointer, `topic '${read.name}' is neither declared under topics nor written by a source${suggestion ? `; did you mean '${suggestion}'?` : ''}`);
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function pathOf(pointer: string): string[] {
  return pointer.split('/').slice(1);
}

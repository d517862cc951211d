/**
 * Transforms: the ordered per-connector chain a pipeline spec's `transforms` list describes. The
 * runtime builds one chain per connector when the pipeline starts and calls it per record, between
 * the log and the connector (sinks) or between the connector and the log (sources).
 *
 * Everything that can be checked without a record is checked when the chain is built: the entry
 * against its schema, JSONata syntax, route templates, and that a `js` module loads and exports a
 * function. Per record, a step failing throws a `SluiceError` the runtime treats like any record
 * error (`errors.tolerance`, the DLQ).
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { RetriableError, SluiceError, isSluiceError, type ErrorContext } from '../errors.ts';
import { didYouMean } from '../spec/suggest.ts';
import { buildFilter, buildMap, buildSet, escapePointer } from './expression.ts';
import { EntryError, RecordError } from './failure.ts';
import { buildDropFields, buildMaskFields, buildRenameFields } from './fields.ts';
import { loadJsTransform } from './js-module.ts';
import { buildRoute } from './route.ts';
import { TRANSFORM_BRANCHES, TRANSFORM_TYPES, type TransformEntry, type TransformType } from './schema.ts';
import { buildTimestamp } from './timestamp.ts';
import { buildUnwrapCdc } from './unwrap-cdc.ts';
import type { Message, TransformFn } from './types.ts';

export { DOT_PATH_PATTERN, ROUTE_TEMPLATE_PATTERN, TRANSFORM_SCHEMA, TRANSFORM_TYPES, type TransformEntry, type TransformType } from './schema.ts';
export { REDACTED_TEXT } from './fields.ts';
export type { Message, TransformFn } from './types.ts';

/** A problem with one entry of a `transforms` list, found without running a record. */
export interface TransformProblem {
  /** The entry's index in the list. */
  index: number;
  /** The entry's type, when it has a known one. */
  type?: TransformType;
  /** JSON pointer relative to the list, e.g. `/2/expr`; prefix it with the list's own pointer. */
  path: string;
  /** e.g. `JSONata syntax error at character 9: ...`. */
  message: string;
  /** For expression and template errors, the 1-based character position inside the string at `path`. */
  position?: number;
}

export interface BuildTransformChainOptions {
  /** The directory `js` module paths are relative to: the spec file's directory. */
  baseDir: string;
}

/**
 * Checks a `transforms` list without loading `js` modules: each entry against its type's schema
 * branch (so a `filter` missing `expr` gets one message, not one per type), then JSONata syntax
 * and route templates. For `sluice validate`, which maps each problem's path to a YAML position.
 */
export function validateTransformEntries(entries: readonly unknown[]): TransformProblem[] {
  return prepare(entries).problems;
}

/**
 * Builds the chain for one connector's `transforms` list, in order: a step's output is the next
 * step's input, and a null from any step drops the record without running the rest. An empty list
 * gives the identity.
 *
 * Called once per connector when the pipeline starts (and again on restart). Expressions are parsed
 * and `js` modules imported here, so per-record work is only the steps themselves.
 *
 * Throws `SPEC_INVALID` when an entry is invalid — its message has one line per problem, and its
 * context has `problems` ({@link TransformProblem}[]) plus the first problem's `transform` index,
 * `transform_type` and `position` — or when a `js` module cannot be loaded or lacks the function.
 *
 * The returned function throws, per record:
 * - `TRANSFORM_FAILED` when a step fails, with context `transform` (index), `transform_type`,
 *   `topic`, and the step's details (`field`, `placeholder`, `position`...); `cause` is the
 *   underlying error (a JSONata error, or what a `js` function threw);
 * - a {@link RetriableError} (code `RETRIABLE`, same context) when a `js` function threw one, so
 *   the runtime retries the record instead of dead-lettering it.
 */
export async function buildTransformChain(entries: readonly TransformEntry[], options: BuildTransformChainOptions): Promise<TransformFn> {
  const { problems, prepared } = prepare(entries);
  if (problems.length > 0) {
    const first = problems[0]!;
    throw new SluiceError('SPEC_INVALID', problems.map(formatTransformProblem).join('\n'), {
      context: { problems, transform: first.index, transform_type: first.type, position: first.position },
    });
  }
  const steps: Step[] = [];
  for (const [index, item] of prepared.entries()) {
    const { entry, fn } = item!;
    let built = fn;
    if (entry.type === 'js') {
      try {
        built = await loadJsTransform(entry, options.baseDir);
      } catch (err) {
        if (!(err instanceof EntryError)) throw err;
        const problem: TransformProblem = { index, type: 'js', path: `/${index}${err.path}`, message: err.message };
        throw new SluiceError('SPEC_INVALID', formatTransformProblem(problem), {
          context: { problems: [problem], transform: index, transform_type: 'js', ...err.context },
          cause: err.cause,
        });
      }
    }
    steps.push({ fn: built!, context: { transform: index, transform_type: entry.type }, label: `transform ${index} (${entry.type})` });
  }
  return steps.length === 0 ? identity : chain(steps);
}

/** `/2/expr (filter): JSONata syntax error at character 9: ...` */
export function formatTransformProblem(problem: TransformProblem): string {
  return `transforms${problem.path}${problem.type === undefined ? '' : ` (${problem.type})`}: ${problem.message}`;
}

// ---------------------------------------------------------------------------------------------
// Building

interface Step {
  fn: TransformFn;
  context: { transform: number; transform_type: TransformType };
  label: string;
}

interface Prepared {
  entry: TransformEntry;
  /** Undefined for `js`, whose module is loaded later. */
  fn: TransformFn | undefined;
}

function prepare(entries: readonly unknown[]): { problems: TransformProblem[]; prepared: Array<Prepared | undefined> } {
  const problems: TransformProblem[] = [];
  const prepared: Array<Prepared | undefined> = [];
  entries.forEach((entry, index) => {
    const schemaProblems = checkSchema(entry, index);
    if (schemaProblems.length > 0) {
      problems.push(...schemaProblems);
      prepared.push(undefined);
      return;
    }
    const valid = entry as TransformEntry;
    try {
      prepared.push({ entry: valid, fn: buildSync(valid) });
    } catch (err) {
      if (!(err instanceof EntryError)) throw err;
      const position = typeof err.context.position === 'number' ? err.context.position : undefined;
      problems.push({ index, type: valid.type, path: `/${index}${err.path}`, message: err.message, ...(position === undefined ? {} : { position }) });
      prepared.push(undefined);
    }
  });
  return { problems, prepared };
}

/** Every step but `js`; throws {@link EntryError} for a bad expression or template. */
function buildSync(entry: TransformEntry): TransformFn | undefined {
  switch (entry.type) {
    case 'filter':
      return buildFilter(entry);
    case 'set':
      return buildSet(entry);
    case 'map':
      return buildMap(entry);
    case 'drop_fields':
      return buildDropFields(entry);
    case 'rename_fields':
      return buildRenameFields(entry);
    case 'mask_fields':
      return buildMaskFields(entry);
    case 'route':
      return buildRoute(entry);
    case 'timestamp':
      return buildTimestamp(entry);
    case 'unwrap_cdc':
      return buildUnwrapCdc(entry);
    case 'js':
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Schema checks

const validators = new Map<TransformType, ValidateFunction>();

function validatorFor(type: TransformType): ValidateFunction {
  let validate = validators.get(type);
  if (!validate) {
    validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, strictRequired: false }).compile(TRANSFORM_BRANCHES.get(type)!);
    validators.set(type, validate);
  }
  return validate;
}

function checkSchema(entry: unknown, index: number): TransformProblem[] {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    return [{ index, path: `/${index}`, message: 'must be an object with a type' }];
  }
  const type = (entry as { type?: unknown }).type;
  if (typeof type !== 'string' || !(TRANSFORM_TYPES as readonly string[]).includes(type)) {
    const known = TRANSFORM_TYPES.join(', ');
    if (type === undefined) return [{ index, path: `/${index}`, message: `must have a type, one of ${known}` }];
    const suggestion = typeof type === 'string' ? didYouMean(type, TRANSFORM_TYPES) : undefined;
    return [{
      index,
      path: `/${index}/type`,
      message: `unknown transform type ${JSON.stringify(type)}${suggestion ? ` (did you mean ${suggestion}?)` : ''}; known: ${known}`,
    }];
  }
  const known = type as TransformType;
  const validate = validatorFor(known);
  if (validate(entry)) return [];
  return (validate.errors ?? []).map((error) => ({ index, type: known, ...describeAjvError(error, known, index) }));
}

function describeAjvError(error: ErrorObject, type: TransformType, index: number): { path: string; message: string } {
  const path = `/${index}${error.instancePath}`;
  if (error.keyword === 'additionalProperties' && error.instancePath === '') {
    const property = String((error.params as { additionalProperty: unknown }).additionalProperty);
    const allowed = Object.keys(TRANSFORM_BRANCHES.get(type)!.properties);
    const suggestion = didYouMean(property, allowed);
    return {
      path: `${path}/${escapePointer(property)}`,
      message: `unknown property ${JSON.stringify(property)} for ${type}${suggestion ? ` (did you mean ${suggestion}?)` : ''}; allowed: ${allowed.join(', ')}`,
    };
  }
  if (error.keyword === 'propertyNames') {
    const name = String((error.params as { propertyName: unknown }).propertyName);
    return { path: `${path}/${escapePointer(name)}`, message: `${JSON.stringify(name)} is not a dot path like user.email` };
  }
  if (error.keyword === 'enum') {
    const allowed = (error.params as { allowedValues: unknown[] }).allowedValues;
    return { path, message: `must be one of ${allowed.join(', ')}` };
  }
  return { path, message: error.message ?? error.keyword };
}

// ---------------------------------------------------------------------------------------------
// Running

const identity: TransformFn = (message) => message;

function chain(steps: readonly Step[]): TransformFn {
  return async (message) => {
    let current = message;
    for (const step of steps) {
      let next: Message | null;
      try {
        const result = step.fn(current);
        next = result instanceof Promise ? await result : result;
      } catch (err) {
        throw stepFailure(err, step, current);
      }
      if (next === null) return null;
      current = next;
    }
    return current;
  };
}

function stepFailure(err: unknown, step: Step, message: Message): SluiceError {
  const context: ErrorContext = { ...step.context, topic: message.topic };
  if (err instanceof RecordError) {
    return new SluiceError('TRANSFORM_FAILED', `${step.label}: ${err.message}`, { context: { ...err.context, ...context }, cause: err.cause ?? err });
  }
  if (isSluiceError(err)) {
    const wrapped = { context: { ...err.context, ...context }, cause: err };
    return err.retriable ? new RetriableError(`${step.label}: ${err.message}`, wrapped) : new SluiceError('TRANSFORM_FAILED', `${step.label}: ${err.message}`, wrapped);
  }
  const text = err instanceof Error ? err.message : String(err);
  return new SluiceError('TRANSFORM_FAILED', `${step.label} threw: ${text}`, { context, cause: err });
}

/**
 * The expression transforms — `filter`, `set` and `map` — and the JSONata plumbing they share.
 * Expressions are JSONata, parsed once at build time; spec text is never handed to `eval` or
 * `new Function`.
 */
import jsonata from 'jsonata';
import { EntryError, RecordError } from './failure.ts';
import { deletePath, describeType, isPlainObject, parsePath, PathConflictError, setPath } from './paths.ts';
import type { Message, TransformFn } from './types.ts';

/** A parsed expression with where it came from, for error messages. */
export interface CompiledExpression {
  readonly expression: jsonata.Expression;
  /** JSON pointer inside the entry, e.g. `/expr`. */
  readonly pointer: string;
}

/** The shape of JSONata's errors, which are plain objects rather than `Error`s. */
interface JsonataFailure {
  message?: unknown;
  code?: unknown;
  position?: unknown;
  token?: unknown;
}

/** Parses `source`; a syntax error becomes an {@link EntryError} with the character position. */
export function compileExpression(source: string, pointer: string): CompiledExpression {
  try {
    return { expression: jsonata(source), pointer };
  } catch (err) {
    const failure = err as JsonataFailure;
    const position = typeof failure.position === 'number' ? failure.position : undefined;
    const where = position === undefined ? '' : ` at character ${position}`;
    throw new EntryError(pointer, `JSONata syntax error${where}: ${String(failure.message ?? err)} in ${JSON.stringify(source)}`, {
      position,
      token: failure.token,
      jsonata_code: failure.code,
    }, { cause: toError(err) });
  }
}

/**
 * Evaluates against the message value with `$key`, `$headers`, `$topic` and `$timestamp` bound.
 * The result is plain JSON (see {@link toPlainJson}); undefined means "no result".
 */
export async function evaluate(compiled: CompiledExpression, message: Message): Promise<unknown> {
  let result: unknown;
  try {
    result = await compiled.expression.evaluate(message.value, {
      key: message.key,
      headers: message.headers,
      topic: message.topic,
      timestamp: message.timestamp,
    });
  } catch (err) {
    const failure = err as JsonataFailure;
    const position = typeof failure.position === 'number' ? failure.position : undefined;
    const where = position === undefined ? '' : ` at character ${position}`;
    const code = typeof failure.code === 'string' ? ` (${failure.code})` : '';
    throw new RecordError(`expression ${compiled.pointer} failed${where}: ${String(failure.message ?? err)}${code}`, {
      field: compiled.pointer,
      position,
      jsonata_code: failure.code,
    }, { cause: toError(err) });
  }
  return toPlainJson(result, compiled.pointer);
}

/**
 * JSONata's results carry its internals: arrays flagged as sequences and objects without a
 * prototype. Downstream code (a `js` step, a sink) expects plain JSON, so those are copied into
 * plain arrays and objects; values that came from the input are returned as they are.
 */
function toPlainJson(value: unknown, pointer: string): unknown {
  if (typeof value === 'function') throw new RecordError(`expression ${pointer} yielded a function, not JSON`, { field: pointer });
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined = Object.hasOwn(value, 'sequence') ? value.slice() : undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const plain = toPlainJson(item, pointer);
      if (plain !== item) (copy ??= value.slice())[i] = plain;
    }
    return copy ?? value;
  }
  const object = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined = Object.getPrototypeOf(object) === null ? { ...object } : undefined;
  for (const name of Object.keys(object)) {
    const item = object[name];
    const plain = toPlainJson(item, pointer);
    if (plain !== item) (copy ??= { ...object })[name] = plain;
  }
  return copy ?? object;
}

/** JSONata's `$boolean` rules, which `filter` keeps records by. */
export function truthy(value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (Array.isArray(value)) return value.some(truthy);
  switch (typeof value) {
    case 'boolean':
      return value;
    case 'number':
      return value !== 0;
    case 'string':
      return value.length > 0;
    case 'object':
      return Object.keys(value).length > 0;
    default:
      return false;
  }
}

export function buildFilter(entry: { expr: string }): TransformFn {
  const expr = compileExpression(entry.expr, '/expr');
  return async (message) => (truthy(await evaluate(expr, message)) ? message : null);
}

export function buildSet(entry: { fields: Record<string, string> }): TransformFn {
  const fields = Object.entries(entry.fields).map(([field, source]) => ({
    field,
    path: parsePath(field),
    expr: compileExpression(source, `/fields/${escapePointer(field)}`),
  }));
  return async (message) => {
    const original = message.value;
    if (original === null) return message;
    if (!isPlainObject(original)) throw new RecordError(`set needs an object value, got ${describeType(original)}`, {});
    // Evaluate all first, so every expression sees the value as the step received it.
    const values: unknown[] = [];
    for (const { expr } of fields) values.push(await evaluate(expr, message));
    let value: Record<string, unknown> = original;
    for (let i = 0; i < fields.length; i++) {
      const { field, path } = fields[i]!;
      const result = values[i];
      try {
        value = result === undefined ? deletePath(value, path) : setPath(value, path, result);
      } catch (err) {
        if (err instanceof PathConflictError) throw new RecordError(err.message, { field }, { cause: err });
        throw err;
      }
    }
    return { ...message, value };
  };
}

export function buildMap(entry: { expr: string }): TransformFn {
  const expr = compileExpression(entry.expr, '/expr');
  return async (message) => {
    if (message.value === null) return message;
    const value = await evaluate(expr, message);
    if (value === undefined) throw new RecordError('map expression yielded nothing; use a filter to drop records', { field: '/expr' });
    return { ...message, value };
  };
}

/** RFC 6901 escaping of one pointer segment. */
export function escapePointer(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}

function toError(err: unknown): Error {
  if (err instanceof Error) return err;
  const failure = (err ?? {}) as JsonataFailure;
  const error = new Error(String(failure.message ?? err));
  Object.assign(error, { code: failure.code, position: failure.position, token: failure.token });
  return error;
}

/**
 * The `js` transform: a user's ES module exporting `(message) => message | null`, sync or async.
 * The module is imported once, when the chain is built; its function then runs per record with
 * no wrapper beyond a check that it returned a message or null.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EntryError, RecordError } from './failure.ts';
import { describeType, isPlainObject } from './paths.ts';
import type { Message, TransformFn } from './types.ts';

/** Imports the module at `module`, resolved against `baseDir`, and returns its exported function. */
export async function loadJsTransform(entry: { module: string; export?: string }, baseDir: string): Promise<TransformFn> {
  const file = path.resolve(baseDir, entry.module);
  const name = entry.export ?? 'default';
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    throw new EntryError('/module', `cannot load module ${file}: ${(err as Error).message ?? String(err)}`, { module: file }, { cause: err });
  }
  const fn = namespace[name];
  if (typeof fn !== 'function') {
    const problem = fn === undefined ? `has no export ${JSON.stringify(name)} (it exports: ${Object.keys(namespace).join(', ') || 'nothing'})` : `exports ${describeType(fn)} as ${JSON.stringify(name)}, not a function`;
    throw new EntryError(entry.export === undefined ? '/module' : '/export', `module ${file} ${problem}`, { module: file, export: name });
  }
  const user = fn as (message: Message) => unknown;
  return (message) => {
    const result = user(message);
    return result instanceof Promise ? result.then(checkResult) : checkResult(result);
  };
}

/** A user function that returns something other than a message would corrupt the record downstream, so it is a record error here. */
function checkResult(result: unknown): Message | null {
  if (result === null) return null;
  if (isPlainObject(result) && typeof result.topic === 'string' && typeof result.timestamp === 'number' && isPlainObject(result.headers) && 'value' in result) {
    return result as unknown as Message;
  }
  const hint = result === undefined ? '; return null to drop a record' : '';
  throw new RecordError(`js: the function returned ${describeType(result)}, not a message {topic, key, value, headers, timestamp} or null${hint}`, {});
}

/**
 * The field transforms — `drop_fields`, `rename_fields` and `mask_fields` — which edit the record
 * value by dot path. A path that is not there is not an error: these steps describe fields that
 * *may* be present, and tombstones and non-object values pass unchanged. An unchanged record is
 * returned as the same object.
 */
import { createHash, createHmac } from 'node:crypto';
import { RecordError } from './failure.ts';
import { deletePath, getPath, isPlainObject, parsePath, PathConflictError, setPath } from './paths.ts';
import type { TransformFn } from './types.ts';

/** What `mask_fields` in `redact` mode writes in place of a value. */
export const REDACTED_TEXT = '[REDACTED]';

export function buildDropFields(entry: { fields: readonly string[] }): TransformFn {
  const paths = entry.fields.map(parsePath);
  return (message) => {
    let value = message.value;
    for (const path of paths) value = deletePath(value, path);
    return value === message.value ? message : { ...message, value };
  };
}

export function buildRenameFields(entry: { fields: Record<string, string> }): TransformFn {
  const moves = Object.entries(entry.fields).map(([from, to]) => ({ from: parsePath(from), to: parsePath(to), target: to }));
  return (message) => {
    if (!isPlainObject(message.value)) return message;
    let value: Record<string, unknown> = message.value;
    for (const { from, to, target } of moves) {
      const moved = getPath(value, from);
      if (moved === undefined) continue;
      value = deletePath(value, from);
      try {
        value = setPath(value, to, moved);
      } catch (err) {
        if (err instanceof PathConflictError) throw new RecordError(`rename_fields: ${err.message}`, { field: target }, { cause: err });
        throw err;
      }
    }
    return value === message.value ? message : { ...message, value };
  };
}

export function buildMaskFields(entry: { fields: readonly string[]; mode?: 'redact' | 'hash'; salt?: string }): TransformFn {
  const paths = entry.fields.map(parsePath);
  const salt = entry.salt;
  const mask: (value: unknown) => string = entry.mode === 'hash' ? (value) => digest(value, salt) : () => REDACTED_TEXT;
  return (message) => {
    if (!isPlainObject(message.value)) return message;
    let value: Record<string, unknown> = message.value;
    for (const path of paths) {
      const original = getPath(value, path);
      // Nothing to hide in a missing or null field, and keeping null keeps "unknown" distinguishable.
      if (original === undefined || original === null) continue;
      value = setPath(value, path, mask(original));
    }
    return value === message.value ? message : { ...message, value };
  };
}

/** HMAC-SHA256 keyed with `salt`, or SHA-256 without, as lowercase hex. Non-strings are hashed as their JSON text. */
export function digest(value: unknown, salt: string | undefined): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return (salt === undefined ? createHash('sha256') : createHmac('sha256', salt)).update(text, 'utf8').digest('hex');
}

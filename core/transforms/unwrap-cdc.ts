/**
 * The `unwrap_cdc` transform: Debezium-style change events `{op, before, after, source, ts_ms}` to
 * plain rows, like Debezium's ExtractNewRecordState. Ops:
 * - `c` create, `r` snapshot read, `u` update → the value becomes `after`;
 * - `d` delete → a tombstone (same key, null value), or dropped with `delete_handling: drop`;
 * - `t` truncate → dropped: it names a table, not a row, and has no key a tombstone could carry,
 *   so no per-row record could represent it. A pipeline that must see truncates reads the raw topic.
 */
import { RecordError, preview } from './failure.ts';
import { describeType, isPlainObject } from './paths.ts';
import type { TransformFn } from './types.ts';

export function buildUnwrapCdc(entry: { delete_handling?: 'tombstone' | 'drop' }): TransformFn {
  const dropDeletes = entry.delete_handling === 'drop';
  return (message) => {
    if (message.value === null) return message;
    const envelope = envelopeOf(message.value);
    switch (envelope.op) {
      case 'c':
      case 'r':
      case 'u': {
        const after = envelope.after;
        if (!isPlainObject(after)) {
          throw new RecordError(`unwrap_cdc: a change event with op ${JSON.stringify(envelope.op)} needs an object "after", got ${describeType(after)}`, { op: envelope.op });
        }
        return { ...message, value: after };
      }
      case 'd':
        return dropDeletes ? null : { ...message, value: null };
      case 't':
        return null;
      default:
        throw new RecordError(`unwrap_cdc: unknown change event op ${preview(envelope.op)}; expected c, r, u, d or t`, { op: envelope.op });
    }
  };
}

/** The envelope itself, or its `payload` when the JSON converter wrapped it as `{schema, payload}`. */
function envelopeOf(value: unknown): Record<string, unknown> {
  let envelope = value;
  if (isPlainObject(envelope) && !Object.hasOwn(envelope, 'op') && isPlainObject(envelope.payload) && Object.hasOwn(envelope, 'schema')) {
    envelope = envelope.payload;
  }
  // Debezium's truncate events carry neither before nor after.
  if (!isPlainObject(envelope) || typeof envelope.op !== 'string' || !(envelope.op === 't' || Object.hasOwn(envelope, 'after') || Object.hasOwn(envelope, 'before'))) {
    // Keys, not contents: the value may hold personal data, and this message reaches logs.
    const shape = isPlainObject(envelope) ? `an object with keys {${Object.keys(envelope).slice(0, 10).join(', ')}}` : describeType(envelope);
    throw new RecordError(`unwrap_cdc: the value is not a change event {op, before, after, ...}; got ${shape}`, {});
  }
  return envelope;
}

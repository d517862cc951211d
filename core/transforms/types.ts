/**
 * What a transform chain sees and returns. The runtime turns each log record (or each record a
 * source polled) into a {@link Message} before the chain and back into bytes after it, so
 * transforms never touch the log's encoding.
 */

/** A record as transforms see it: JSON-shaped, decoupled from the log's bytes. */
export interface Message {
  /** The topic the record was read from or will be appended to; `route` may change it. */
  topic: string;
  /** Parsed JSON when the key bytes were JSON, else the UTF-8 string, or null. */
  key: unknown;
  /** Parsed JSON value; null is a tombstone (delete). */
  value: unknown;
  /** Record headers, name to UTF-8 value. */
  headers: Record<string, string>;
  /** Event time in ms since the epoch; `timestamp` may change it. */
  timestamp: number;
}

/**
 * One step, or a whole chain. Returns the message (possibly changed, or a new object), or null to
 * drop it. Throws → record error (DLQ rules apply).
 *
 * The runtime calls a chain once per record, in record order within a task; calls for different
 * records may overlap when the runtime pipelines a batch, so a step keeps no per-record state.
 * Built-in steps never mutate the message they are given: they return a new message whose changed
 * containers are shallow copies, so the runtime's original stays intact for the DLQ.
 */
export type TransformFn = (message: Message) => Message | null | Promise<Message | null>;

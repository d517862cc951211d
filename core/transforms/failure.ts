/**
 * The two ways a built-in step fails. Steps throw these; `buildTransformChain` turns them into
 * `SluiceError`s that name the transform's index and type, so a step need not know where it sits.
 */
import type { ErrorContext } from '../errors.ts';

/** An entry that cannot be built: a bad expression, template or module. Found when the chain is built. */
export class EntryError extends Error {
  override readonly name = 'EntryError';
  constructor(
    /** JSON pointer inside the entry, e.g. `/expr` or `/fields/page.host`. */
    readonly path: string,
    message: string,
    readonly context: ErrorContext = {},
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

/** A record the step cannot transform: a missing field, an unparsable timestamp, a failing expression. */
export class RecordError extends Error {
  override readonly name = 'RecordError';
  constructor(
    message: string,
    readonly context: ErrorContext = {},
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

/** A short, single-line rendering of a record's value for error messages. */
export function preview(value: unknown, max = 80): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

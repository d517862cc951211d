/**
 * Secrets in a loaded spec: the values that `${env:...}` and `${file:...}` resolved into, and the
 * config values a connector's schema marks `writeOnly`. The runtime redacts them by path from API
 * output and logs, and scrubs their text from error messages (a driver error quoting a DSN).
 */
import { fromPointer, toPointer } from './problem.ts';

export interface SpecSecrets {
  /** JSON pointers of secret values, e.g. `/sources/0/config/password`. */
  readonly paths: ReadonlySet<string>;
  /**
   * The secret texts, for scrubbing free text. Texts shorter than {@link MIN_SCRUB_LENGTH} are left
   * out: scrubbing `200` from every message would garble it, and path redaction still covers them.
   */
  readonly values: ReadonlySet<string>;
}

export const MIN_SCRUB_LENGTH = 4;
export const REDACTED = '[REDACTED]';

/** Mutable form used while loading. */
export interface SecretCollector {
  paths: Set<string>;
  values: Set<string>;
}

/**
 * Adds a resolved value to the texts scrubbed from messages. Plain numbers are left out: a port or a
 * batch size from `${env:...}` would otherwise be blanked out of every message that mentions the
 * number, and credentials are not bare numbers. Path redaction in API output still covers them.
 */
export function addSecretValue(collector: SecretCollector, value: unknown): void {
  if (typeof value === 'string' && value.length >= MIN_SCRUB_LENGTH && !/^-?\d+(\.\d+)?$/.test(value)) collector.values.add(value);
}

/**
 * Records every value of `data` that `schema` marks `writeOnly: true`. Follows `properties`,
 * `patternProperties`, `additionalProperties`, `items` and every `allOf`/`anyOf`/`oneOf`/`then`/
 * `else` branch; a value counts as secret when any branch that could apply marks it.
 */
export function collectWriteOnly(schema: unknown, data: unknown, segments: Array<string | number>, collector: SecretCollector): void {
  const all = branches(schema);
  if (all.some((s) => s.writeOnly === true)) {
    collector.paths.add(toPointer(segments));
    addSecretValue(collector, data);
    return;
  }
  if (Array.isArray(data)) {
    data.forEach((item, i) => {
      for (const s of all) {
        if (isObject(s.items)) collectWriteOnly(s.items, item, [...segments, i], collector);
        else if (Array.isArray(s.items)) collectWriteOnly(s.items[i], item, [...segments, i], collector);
      }
    });
  } else if (isObject(data)) {
    for (const [key, value] of Object.entries(data)) {
      for (const s of all) {
        const properties = isObject(s.properties) ? s.properties : {};
        if (key in properties) collectWriteOnly(properties[key], value, [...segments, key], collector);
        else if (isObject(s.additionalProperties)) collectWriteOnly(s.additionalProperties, value, [...segments, key], collector);
        if (isObject(s.patternProperties)) {
          for (const [pattern, sub] of Object.entries(s.patternProperties)) {
            if (new RegExp(pattern, 'u').test(key)) collectWriteOnly(sub, value, [...segments, key], collector);
          }
        }
      }
    }
  }
}

function branches(schema: unknown, out: Array<Record<string, unknown>> = []): Array<Record<string, unknown>> {
  if (!isObject(schema)) return out;
  out.push(schema);
  for (const keyword of ['allOf', 'anyOf', 'oneOf']) {
    const list = schema[keyword];
    if (Array.isArray(list)) for (const sub of list) branches(sub, out);
  }
  branches(schema.then, out);
  branches(schema.else, out);
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A deep copy of `value` with every secret path replaced by `[REDACTED]`, for API output. */
export function redactSecrets<T>(value: T, secrets: SpecSecrets): T {
  const copy = structuredClone(value) as unknown;
  for (const pointer of secrets.paths) {
    const segments = fromPointer(pointer);
    if (segments.length === 0) return REDACTED as T;
    let parent: unknown = copy;
    for (const segment of segments.slice(0, -1)) parent = isObject(parent) || Array.isArray(parent) ? (parent as Record<string, unknown>)[segment] : undefined;
    const last = segments[segments.length - 1]!;
    if ((isObject(parent) || Array.isArray(parent)) && last in parent) (parent as Record<string, unknown>)[last] = REDACTED;
  }
  return copy as T;
}

/** `text` with every secret value replaced by `[REDACTED]`, longest first so no fragment survives. */
export function scrubSecrets(text: string, secrets: SpecSecrets): string {
  let out = text;
  for (const secret of [...secrets.values].sort((a, b) => b.length - a.length)) out = out.split(secret).join(REDACTED);
  return out;
}

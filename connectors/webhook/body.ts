/**
 * Request bodies into events: content types, JSON and NDJSON, and the record key. Pure functions
 * over bytes, so the fuzz tests can hammer them directly as well as through the server.
 *
 * An event's record value is the exact bytes the sender wrote for it (trimmed of surrounding
 * whitespace), never a re-encoding: `JSON.parse` then `JSON.stringify` would round integers past
 * 2^53, which ids often are.
 */
import { isUtf8 } from 'node:buffer';

/** One event of a body: its bytes and its parsed object, for the key. */
export interface ParsedEvent {
  readonly value: Buffer;
  readonly object: Record<string, unknown>;
}

/** Why a body was refused: the HTTP status, a stable code and a message for the JSON reply. */
export interface BodyError {
  readonly status: 400 | 415;
  readonly error: string;
  readonly message: string;
}

export type ParseResult = { readonly ok: true; readonly events: ParsedEvent[] } | { readonly ok: false; readonly problem: BodyError };

/** How a content type is read: as the route's format, or as a form whose `payload` field holds the body. */
export type BodyKind = 'plain' | 'form';

const JSON_LIKE = new Set([
  '',
  'application/json',
  'text/json',
  'text/plain',
  'application/x-ndjson',
  'application/ndjson',
  'application/jsonl',
  'application/x-jsonlines',
  'application/jsonlines',
  'application/json-seq',
]);

/**
 * Classifies a Content-Type header: JSON-ish types (including `text/plain`, which
 * `navigator.sendBeacon` sends, `+json` types, and none at all) are read as the route's format;
 * `application/x-www-form-urlencoded` as a form. Anything else, or a charset other than UTF-8, is
 * refused with 415.
 */
export function classifyContentType(header: string | undefined): { ok: true; kind: BodyKind } | { ok: false; problem: BodyError } {
  if (header === undefined) return { ok: true, kind: 'plain' };
  const semi = header.indexOf(';');
  const type = (semi < 0 ? header : header.slice(0, semi)).trim().toLowerCase();
  if (semi >= 0) {
    const charset = /(?:^|;)\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(header.slice(semi));
    if (charset && !/^utf-?8$/i.test(charset[1]!)) {
      return { ok: false, problem: { status: 415, error: 'unsupported_media_type', message: `charset ${charset[1]} is not supported; send UTF-8` } };
    }
  }
  if (JSON_LIKE.has(type) || (type.startsWith('application/') && type.endsWith('+json'))) return { ok: true, kind: 'plain' };
  if (type === 'application/x-www-form-urlencoded') return { ok: true, kind: 'form' };
  return {
    ok: false,
    problem: { status: 415, error: 'unsupported_media_type', message: `content type ${type} is not supported; send application/json, application/x-ndjson or text/plain` },
  };
}

const bad = (error: string, message: string): ParseResult => ({ ok: false, problem: { status: 400, error, message } });

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Parses a body into events. `format` is the route's; a `form` body is first reduced to its
 * `payload` field when it has one (GitHub's form content type), else read as it is (curl -d).
 * Every event must be a JSON object; the first one that is not fails the whole body.
 */
export function parseBody(raw: Buffer, format: 'json' | 'ndjson', kind: BodyKind): ParseResult {
  let body = raw;
  if (!isUtf8(body)) return bad('invalid_utf8', 'the body is not valid UTF-8');
  if (kind === 'form' && startsWith(body, 'payload=')) {
    const payload = new URLSearchParams(body.toString('utf8')).get('payload');
    if (payload === null) return bad('invalid_form', 'the form has no payload field');
    body = Buffer.from(payload, 'utf8');
  }
  const start = skipBom(body);
  if (start > 0) body = body.subarray(start);
  if (isBlank(body)) return bad('empty_body', 'the body is empty; send a JSON object, an array of them, or NDJSON');
  return format === 'json' ? parseJson(body) : parseNdjson(body);
}

function parseJson(body: Buffer): ParseResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return bad('invalid_json', `the body is not JSON: ${(err as Error).message}`);
  }
  if (isObject(parsed)) return { ok: true, events: [{ value: trim(body), object: parsed }] };
  if (!Array.isArray(parsed)) return bad('invalid_event', `the body must be a JSON object or an array of objects, got ${typeName(parsed)}`);
  const slices = splitTopLevelArray(body);
  const events: ParsedEvent[] = new Array(parsed.length);
  for (let i = 0; i < parsed.length; i++) {
    const object: unknown = parsed[i];
    if (!isObject(object)) return bad('invalid_event', `event ${i} of the batch must be a JSON object, got ${typeName(object)}; nothing was accepted`);
    events[i] = { value: slices[i]!, object };
  }
  return { ok: true, events };
}

function parseNdjson(body: Buffer): ParseResult {
  const events: ParsedEvent[] = [];
  let line = 0;
  let from = 0;
  while (from <= body.length) {
    let to = body.indexOf(0x0a, from);
    if (to < 0) to = body.length;
    line++;
    const slice = trim(body.subarray(from, to));
    from = to + 1;
    if (slice.length === 0) continue;
    let object: unknown;
    try {
      object = JSON.parse(slice.toString('utf8'));
    } catch (err) {
      return bad('invalid_json', `line ${line} is not JSON: ${(err as Error).message}; nothing was accepted`);
    }
    if (!isObject(object)) return bad('invalid_event', `line ${line} must be a JSON object, got ${typeName(object)}; nothing was accepted`);
    events.push({ value: slice, object });
  }
  return { ok: true, events };
}

/**
 * The bytes of each element of a JSON array that `JSON.parse` already accepted: a scan that tracks
 * strings and nesting, cutting at the commas of the top level.
 */
export function splitTopLevelArray(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (isSpace(body[i]!)) i++;
  i++; // [
  let depth = 0;
  let start = i;
  for (; i < body.length; i++) {
    const c = body[i]!;
    if (c === 0x22) {
      // Most bytes of an event are inside strings: jump to the closing quote natively, the one
      // not preceded by an odd run of backslashes.
      let close = body.indexOf(0x22, i + 1);
      for (;;) {
        let backslashes = 0;
        while (body[close - 1 - backslashes] === 0x5c) backslashes++;
        if (backslashes % 2 === 0) break;
        close = body.indexOf(0x22, close + 1);
      }
      i = close;
    } else if (c === 0x5b || c === 0x7b) depth++;
    else if (c === 0x5d || c === 0x7d) {
      if (depth === 0) {
        const last = trim(body.subarray(start, i));
        if (last.length > 0) out.push(last);
        break;
      }
      depth--;
    } else if (c === 0x2c && depth === 0) {
      out.push(trim(body.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}

/**
 * The record key of an event: the value at `path` (dotted for nested objects). Strings as they
 * are, numbers and booleans as JSON text, objects and arrays as JSON; null or missing means no key.
 */
export function keyOf(object: Record<string, unknown>, path: readonly string[]): Buffer | null {
  let value: unknown = object;
  for (const segment of path) {
    if (!isObject(value)) return null;
    value = value[segment];
  }
  if (value === undefined || value === null) return null;
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8');
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

function trim(b: Buffer): Buffer {
  let s = 0;
  let e = b.length;
  while (s < e && isSpace(b[s]!)) s++;
  while (e > s && isSpace(b[e - 1]!)) e--;
  return s === 0 && e === b.length ? b : b.subarray(s, e);
}

function isBlank(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (!isSpace(b[i]!)) return false;
  return true;
}

function skipBom(b: Buffer): number {
  return b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0;
}

function startsWith(b: Buffer, text: string): boolean {
  return b.length >= text.length && b.toString('latin1', 0, text.length) === text;
}

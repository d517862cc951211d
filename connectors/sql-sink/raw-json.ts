/**
 * The exact text of json and jsonb values inside a change event. JSON.parse turns `1.10` into 1.1
 * and `12345678901234567890` into 12345678901234567000, and re-serialising drops a json column's
 * spacing and key order: a copy would not be exact. For columns the schema header says are json or
 * jsonb, the decoder keeps the value's source text instead, found by this scanner, which walks the
 * event without building values.
 */

/** A json/jsonb value kept as its exact JSON text. */
export class RawJson {
  constructor(readonly text: string) {}

  toJSON(): unknown {
    return JSON.parse(this.text);
  }
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);

/** Index after the JSON value starting at `i` (whitespace already skipped); throws on malformed input. */
function skipValue(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === 0x22) return skipString(s, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < s.length; j++) {
      const d = s.charCodeAt(j);
      if (d === 0x22) {
        j = skipString(s, j) - 1;
      } else if (d === 0x7b || d === 0x5b) {
        depth++;
      } else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    throw new SyntaxError('unterminated JSON container');
  }
  let j = i;
  while (j < s.length) {
    const d = s.charCodeAt(j);
    if (d === 0x2c || d === 0x7d || d === 0x5d || WS.has(d)) break;
    j++;
  }
  if (j === i) throw new SyntaxError(`unexpected character at ${i}`);
  return j;
}

function skipString(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    const d = s.charCodeAt(j);
    if (d === 0x5c) j++;
    else if (d === 0x22) return j + 1;
  }
  throw new SyntaxError('unterminated JSON string');
}

function skipWs(s: string, i: number): number {
  while (i < s.length && WS.has(s.charCodeAt(i))) i++;
  return i;
}

/** Calls `member(key, start, end)` for each member of the object at `i`; returns the index after it. */
function members(s: string, i: number, member: (key: string, start: number, end: number) => void): number {
  if (s.charCodeAt(i) !== 0x7b) throw new SyntaxError(`expected an object at ${i}`);
  i = skipWs(s, i + 1);
  if (s.charCodeAt(i) === 0x7d) return i + 1;
  for (;;) {
    const keyEnd = skipString(s, i);
    const key = JSON.parse(s.slice(i, keyEnd)) as string;
    i = skipWs(s, keyEnd);
    if (s.charCodeAt(i) !== 0x3a) throw new SyntaxError(`expected : at ${i}`);
    i = skipWs(s, i + 1);
    const end = skipValue(s, i);
    member(key, i, end);
    i = skipWs(s, end);
    const c = s.charCodeAt(i);
    if (c === 0x7d) return i + 1;
    if (c !== 0x2c) throw new SyntaxError(`expected , or } at ${i}`);
    i = skipWs(s, i + 1);
  }
}

/**
 * The source text of `columns` in the objects `fields` (e.g. after, before) of the JSON object
 * `text`, by field then column. Fields that are null or absent are left out. `text` is already
 * known to be valid JSON (JSON.parse read it), so this only finds boundaries.
 */
export function rawColumns(text: string, fields: ReadonlySet<string>, columns: ReadonlySet<string>): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  members(text, skipWs(text, 0), (field, start) => {
    if (!fields.has(field) || text.charCodeAt(start) !== 0x7b) return;
    const found = new Map<string, string>();
    members(text, start, (column, s, e) => {
      if (columns.has(column)) found.set(column, text.slice(s, e));
    });
    out.set(field, found);
  });
  return out;
}

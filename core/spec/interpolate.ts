/**
 * `${env:NAME}`, `${env:NAME:-default}` and `${file:PATH}` in spec values, resolved at load time on
 * the YAML nodes themselves, so a missing variable is reported where it is written.
 *
 * - `${env:NAME:-default}` uses the default when NAME is unset or empty, as the shell does.
 * - `${file:PATH}` reads the file (relative paths start at the spec's directory) and drops one
 *   trailing newline, as secret files usually end with one.
 * - `$${` writes a literal `${`.
 * - A resolved value is a string. Where the schema wants a number or a boolean and the string is
 *   one, validation converts it (`load.ts`), so `rate: ${env:RATE}` is an integer when RATE=200.
 * - Inside a flow mapping (`{ rate: ... }`) YAML reads `{` as structure: quote the reference there,
 *   `{ rate: "${env:RATE}" }`.
 *
 * Every value that a reference went into is recorded as a secret: the runtime redacts those paths
 * from API output and logs, and scrubs the resolved text from error messages.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isMap, isPair, isScalar, isSeq, type Scalar } from 'yaml';
import { toPointer, type Problem } from './problem.ts';
import { MIN_SCRUB_LENGTH } from './secrets.ts';
import { positionAt, type YamlSource } from './yaml-source.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export interface InterpolationResult {
  problems: Problem[];
  /** JSON pointers of values that hold a resolved reference. */
  secretPaths: Set<string>;
  /** Resolved texts, whole values and the pieces references contributed, if long enough to scrub. */
  secretValues: Set<string>;
}

const ENV_REFERENCE = /^env:([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;
const FILE_REFERENCE = /^file:([\s\S]+)$/;

/** Resolves every reference in the document's values, in place. */
export function interpolate(source: YamlSource, env: Env): InterpolationResult {
  const result: InterpolationResult = { problems: [], secretPaths: new Set(), secretValues: new Set() };
  walk(source.doc.contents, [], (scalar, segments) => resolveScalar(source, env, scalar, segments, result));
  return result;
}

function walk(node: unknown, segments: Array<string | number>, visit: (scalar: Scalar, segments: Array<string | number>) => void): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      walk(pair.value, [...segments, isScalar(pair.key) ? String(pair.key.value) : String(pair.key)], visit);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => walk(item, [...segments, i], visit));
  } else if (isScalar(node) && typeof node.value === 'string') {
    visit(node, segments);
  }
}

function resolveScalar(source: YamlSource, env: Env, scalar: Scalar, segments: Array<string | number>, result: InterpolationResult): void {
  const text = scalar.value as string;
  if (!text.includes('${')) return;
  const pointer = toPointer(segments);
  const pieces: string[] = [];
  let out = '';
  let failed = false;
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      out += '${';
      i += 3;
      continue;
    }
    if (!text.startsWith('${', i)) {
      out += text[i];
      i++;
      continue;
    }
    const end = text.indexOf('}', i + 2);
    const problem = (message: string): void => {
      result.problems.push({ file: source.file, ...positionAt(source, offsetInSource(source, scalar, text, i)), path: pointer, message });
      failed = true;
    };
    if (end === -1) {
      problem(`unterminated reference ${JSON.stringify(text.slice(i))}: missing '}'`);
      break;
    }
    const body = text.slice(i + 2, end);
    const resolved = resolveReference(source, env, body, problem);
    if (resolved !== undefined) {
      out += resolved;
      pieces.push(resolved);
    }
    i = end + 1;
  }
  if (failed) return;
  if (pieces.length === 0) {
    // Only `$${` escapes: nothing secret, just the unescaped text.
    scalar.value = out;
    return;
  }
  scalar.value = out;
  result.secretPaths.add(pointer);
  for (const value of [out, ...pieces]) if (value.length >= MIN_SCRUB_LENGTH) result.secretValues.add(value);
}

function resolveReference(source: YamlSource, env: Env, body: string, problem: (message: string) => void): string | undefined {
  const envMatch = ENV_REFERENCE.exec(body);
  if (envMatch) {
    const [, name, fallback] = envMatch;
    const value = env[name!];
    if (fallback !== undefined) return value === undefined || value === '' ? fallback : value;
    if (value === undefined) {
      problem(`environment variable ${name} is not set (write \${env:${name}:-default} to give a default)`);
      return undefined;
    }
    return value;
  }
  const fileMatch = FILE_REFERENCE.exec(body);
  if (fileMatch) {
    const file = path.resolve(path.dirname(source.file), fileMatch[1]!);
    try {
      return fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      problem(`cannot read ${JSON.stringify(fileMatch[1])} for \${file:...}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      return undefined;
    }
  }
  problem(`unknown reference \${${body}}: use \${env:NAME}, \${env:NAME:-default} or \${file:PATH}`);
  return undefined;
}

/**
 * Where character `index` of a scalar's value is in the source: exact for plain and quoted values
 * written on one line without escapes before it, else the start of the value.
 */
function offsetInSource(source: YamlSource, scalar: Scalar, text: string, index: number): number {
  const start = scalar.range?.[0] ?? 0;
  const prefix = text.slice(0, index);
  for (const skip of [0, 1]) {
    if (source.text.startsWith(prefix, start + skip) && source.text.startsWith('${', start + skip + index)) return start + skip + index;
  }
  return start;
}

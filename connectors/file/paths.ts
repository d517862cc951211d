/**
 * Path templates and the names of rolled files. A template is resolved per record to the active
 * file it appends to; the same template, with the date placeholders left open, finds the active
 * files an earlier run left behind, so a restart can cut their torn lines.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { SluiceError } from '../../core/connector.ts';
import { PATH_PLACEHOLDERS } from './schema.ts';

type Placeholder = (typeof PATH_PLACEHOLDERS)[number];
type Part = string | { readonly placeholder: Placeholder };

const TIME_PLACEHOLDERS: ReadonlySet<Placeholder> = new Set(['date', 'yyyy', 'mm', 'dd', 'hh']);
const HOUR_MS = 3_600_000;

// Only digits can fill a date placeholder, which keeps rolled files (`name.000001.jsonl`) from
// matching a template whose date sits right before the extension.
const TIME_PATTERNS: Readonly<Record<string, string>> = {
  date: '[0-9]{4}-[0-9]{2}-[0-9]{2}',
  yyyy: '[0-9]{4}',
  mm: '[0-9]{2}',
  dd: '[0-9]{2}',
  hh: '[0-9]{2}',
};

/** A compiled `path` config: absolute, split into literal text and placeholders. */
export class PathTemplate {
  /** The template made absolute against the working directory at compile time. */
  readonly template: string;
  /** Whether distinct partitions get distinct files, which is what makes several tasks safe. */
  readonly usesPartition: boolean;
  /** Whether the record timestamp picks the file; a file then depends on the hour at most. */
  readonly usesTime: boolean;
  /** The deepest directory of the template that holds no placeholder: where every file lives below. */
  readonly baseDir: string;
  readonly #parts: readonly Part[];

  /** Compiles `template`; throws `CONFIG_INVALID` for a placeholder the schema would reject. */
  constructor(template: string, cwd: string = process.cwd()) {
    this.template = path.resolve(cwd, template);
    this.#parts = parse(this.template);
    this.usesPartition = this.#parts.some((p) => typeof p !== 'string' && p.placeholder === 'partition');
    this.usesTime = this.#parts.some((p) => typeof p !== 'string' && TIME_PLACEHOLDERS.has(p.placeholder));
    const brace = this.template.indexOf('{');
    this.baseDir = brace < 0 ? path.dirname(this.template) : path.dirname(`${this.template.slice(0, brace)}x`);
  }

  /**
   * The file a record goes to. Throws `INVALID_ARGUMENT` when the filled-in path would leave the
   * template's directories (a topic named `..`) or the timestamp is not a time.
   */
  resolve(topic: string, partition: number, timestamp: number): string {
    let date: Date | undefined;
    if (this.usesTime) {
      date = new Date(timestamp);
      if (Number.isNaN(date.getTime())) {
        throw new SluiceError('INVALID_ARGUMENT', `record timestamp ${timestamp} cannot fill the date in ${this.template}`, {
          context: { topic, partition, value: timestamp },
        });
      }
    }
    let out = '';
    for (const part of this.#parts) {
      out += typeof part === 'string' ? part : fill(part.placeholder, topic, partition, date);
    }
    if (path.normalize(out) !== out) {
      throw new SluiceError('INVALID_ARGUMENT', `topic ${JSON.stringify(topic)} makes ${this.template} resolve outside its directory`, {
        context: { topic, partition, field: 'path', value: this.template },
      });
    }
    return out;
  }

  /**
   * A key equal for all records that {@link resolve} sends to the same file (one per partition and
   * hour at most), so a batch resolves each file once.
   */
  bucket(topic: string, partition: number, timestamp: number): string {
    return this.usesTime ? `${topic}\0${partition}\0${Math.floor(timestamp / HOUR_MS)}` : `${topic}\0${partition}`;
  }

  /**
   * The existing active files that records of this partition may have been appended to: the
   * template with `{topic}` and `{partition}` filled and any date left open. Rolled files do not
   * match. Directories that do not exist yield nothing.
   */
  async existing(topic: string, partition: number): Promise<string[]> {
    const segments: Array<string | RegExp> = [];
    // Segment-wise, so only directories that can hold a match are listed.
    for (const segment of splitSegments(this.#parts)) {
      let literal = '';
      let pattern = '';
      let open = false;
      for (const part of segment) {
        if (typeof part === 'string') {
          literal += part;
          pattern += escapeRegExp(part);
        } else if (TIME_PLACEHOLDERS.has(part.placeholder)) {
          open = true;
          pattern += TIME_PATTERNS[part.placeholder];
        } else {
          const value = fill(part.placeholder, topic, partition, undefined);
          literal += value;
          pattern += escapeRegExp(value);
        }
      }
      segments.push(open ? new RegExp(`^${pattern}$`) : literal);
    }
    let candidates = [path.parse(this.template).root];
    for (const [index, segment] of segments.entries()) {
      const last = index === segments.length - 1;
      if (typeof segment === 'string') {
        candidates = candidates.map((dir) => path.join(dir, segment));
        continue;
      }
      const next: string[] = [];
      for (const dir of candidates) {
        let entries;
        try {
          entries = await readdir(dir, { withFileTypes: true });
        } catch (err) {
          if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR')) continue;
          throw err;
        }
        for (const entry of entries) {
          if (segment.test(entry.name) && (last ? entry.isFile() : entry.isDirectory())) next.push(path.join(dir, entry.name));
        }
      }
      candidates = next;
    }
    if (typeof segments[segments.length - 1] === 'string') {
      const files: string[] = [];
      for (const candidate of candidates) {
        try {
          if ((await stat(candidate)).isFile()) files.push(candidate);
        } catch (err) {
          if (!isCode(err, 'ENOENT') && !isCode(err, 'ENOTDIR')) throw err;
        }
      }
      candidates = files;
    }
    return candidates.sort();
  }
}

/**
 * The name a file gets when it rolls: a sequence number, zero-padded to six digits, before its
 * extension. `clicks.jsonl` becomes `clicks.000001.jsonl`, `out/clicks` becomes `out/clicks.000001`.
 */
export function rolledName(active: string, sequence: number): string {
  const { dir, name, ext } = path.parse(active);
  return path.join(dir, `${name}.${String(sequence).padStart(6, '0')}${ext}`);
}

/** One more than the highest sequence among `active`'s rolled files, or 1. */
export async function nextSequence(active: string): Promise<number> {
  const { dir, name, ext } = path.parse(active);
  const pattern = new RegExp(`^${escapeRegExp(name)}\\.([0-9]{6,})${escapeRegExp(ext)}$`);
  let highest = 0;
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if (isCode(err, 'ENOENT')) return 1;
    throw err;
  }
  for (const entry of entries) {
    const match = pattern.exec(entry);
    if (match) highest = Math.max(highest, Number(match[1]));
  }
  return highest + 1;
}

/** Whether `err` is a Node system error with this `code`. */
export function isCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

function parse(template: string): Part[] {
  const parts: Part[] = [];
  const known: ReadonlySet<string> = new Set(PATH_PLACEHOLDERS);
  let last = 0;
  for (const match of template.matchAll(/\{([^{}]*)\}/g)) {
    const name = match[1]!;
    if (!known.has(name)) {
      throw new SluiceError('CONFIG_INVALID', `path ${JSON.stringify(template)} has an unknown placeholder {${name}}; known: ${PATH_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')}`, {
        context: { field: 'path', value: template },
      });
    }
    if (match.index > last) parts.push(template.slice(last, match.index));
    parts.push({ placeholder: name as Placeholder });
    last = match.index + match[0].length;
  }
  if (last < template.length) parts.push(template.slice(last));
  return parts;
}

/** Splits parts at path separators; separators live only in literal text. */
function splitSegments(parts: readonly Part[]): Part[][] {
  const segments: Part[][] = [[]];
  for (const part of parts) {
    if (typeof part !== 'string') {
      segments[segments.length - 1]!.push(part);
      continue;
    }
    const pieces = part.split(path.sep);
    for (const [i, piece] of pieces.entries()) {
      if (i > 0) segments.push([]);
      if (piece !== '') segments[segments.length - 1]!.push(piece);
    }
  }
  return segments.filter((segment) => segment.length > 0);
}

function fill(placeholder: Placeholder, topic: string, partition: number, date: Date | undefined): string {
  switch (placeholder) {
    case 'topic':
      return topic;
    case 'partition':
      return String(partition);
    case 'date':
      return `${String(date!.getUTCFullYear()).padStart(4, '0')}-${pad(date!.getUTCMonth() + 1)}-${pad(date!.getUTCDate())}`;
    case 'yyyy':
      return String(date!.getUTCFullYear()).padStart(4, '0');
    case 'mm':
      return pad(date!.getUTCMonth() + 1);
    case 'dd':
      return pad(date!.getUTCDate());
    case 'hh':
      return pad(date!.getUTCHours());
  }
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Glob patterns for `paths` and `exclude`, compiled to regular expressions over absolute paths, and
 * the directory walk that lists the files a set of patterns matches. chokidar 4 dropped glob
 * support, so matching lives here: `*`, `?`, `**`, `[...]`, `[!...]` and `{a,b}`.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { SluiceError } from '../../core/connector.ts';

/** A compiled pattern. */
export interface Glob {
  /** The pattern as configured. */
  readonly pattern: string;
  /** The longest leading directory without glob characters: where walking and watching start. */
  readonly base: string;
  /** Matches the absolute paths the pattern covers. */
  readonly regex: RegExp;
  /** One regex per path segment below `base`; null when the pattern holds `**`. */
  readonly segments: readonly RegExp[] | null;
  /** How many directory levels below `base` files can be: Infinity with `**`. */
  readonly depth: number;
}

const GLOB_CHARS = /[*?[\]{}]/;

/**
 * Compiles `pattern`, resolving a relative one against `cwd`. Throws `CONFIG_INVALID` naming
 * `field` for an unbalanced `[` or `{`.
 */
export function compileGlob(pattern: string, field: string, cwd: string = process.cwd()): Glob {
  const absolute = path.resolve(cwd, pattern);
  const parts = absolute.split(path.sep);
  let baseEnd = 0;
  while (baseEnd < parts.length - 1 && !GLOB_CHARS.test(parts[baseEnd]!)) baseEnd++;
  const base = parts.slice(0, baseEnd).join(path.sep) || path.sep;
  const rest = parts.slice(baseEnd);
  const fail = invalid(pattern, field);
  let body = '';
  rest.forEach((segment, i) => {
    const last = i === rest.length - 1;
    if (segment === '**') {
      // Zero or more whole directories; as the last segment, any file below.
      body += last ? '.*' : '(?:[^/]+/)*';
      return;
    }
    body += segmentSource(segment, fail) + (last ? '' : '/');
  });
  const prefix = base === path.sep ? '/' : `${escape(base)}/`;
  const recursive = rest.includes('**');
  return {
    pattern,
    base,
    regex: new RegExp(`^${prefix}${body}$`),
    segments: recursive ? null : rest.map((s) => new RegExp(`^${segmentSource(s, fail)}$`)),
    depth: recursive ? Infinity : rest.length - 1,
  };
}

/**
 * Compiles an `exclude` pattern. One without a `/` matches file names anywhere, as `.gitignore`
 * does; one with a `/` matches whole paths like `paths`.
 */
export function compileExclude(pattern: string, field: string, cwd: string = process.cwd()): (file: string) => boolean {
  if (!pattern.includes('/')) {
    const name = new RegExp(`^${segmentSource(pattern, invalid(pattern, field))}$`);
    return (file) => name.test(path.basename(file));
  }
  const glob = compileGlob(pattern, field, cwd);
  return (file) => glob.regex.test(file);
}

function invalid(pattern: string, field: string): (why: string) => never {
  return (why) => {
    throw new SluiceError('CONFIG_INVALID', `${field}: ${JSON.stringify(pattern)} is not a valid glob: ${why}`, { context: { field, value: pattern } });
  };
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** The regex source of one path segment without `**`. */
function segmentSource(segment: string, fail: (why: string) => never): string {
  let out = '';
  let braces = 0;
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') {
      out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close < 0) fail(`unbalanced [ at character ${i + 1} of ${JSON.stringify(segment)}`);
      let set = segment.slice(i + 1, close);
      const negate = set.startsWith('!') || set.startsWith('^');
      if (negate) set = set.slice(1);
      out += `[${negate ? '^/' : ''}${set.replace(/\\/g, '\\\\').replace(/\[/g, '\\[')}]`;
      i = close;
    } else if (c === '{') {
      braces++;
      out += '(?:';
    } else if (c === ',' && braces > 0) {
      out += '|';
    } else if (c === '}' && braces > 0) {
      braces--;
      out += ')';
    } else if (c === '\\' && i + 1 < segment.length) {
      out += escape(segment[++i]!);
    } else {
      out += escape(c);
    }
  }
  if (braces > 0) fail(`unbalanced { in ${JSON.stringify(segment)}`);
  return out;
}

/** A regular file a walk found, with the stat the walk took (following symlinks). */
export interface Found {
  readonly path: string;
  /** Decimal device and inode numbers (64-bit values do not fit a double). */
  readonly dev: string;
  readonly ino: string;
  readonly size: number;
  readonly mtimeMs: number;
}

/**
 * Lists the regular files that match any of `globs` and none of `excludes`, by walking each base
 * directory only as deep as its pattern reaches and only into directories a segment can match.
 * Missing and unreadable directories are skipped: a log directory may appear later.
 */
export async function walkGlobs(globs: readonly Glob[], excludes: ReadonlyArray<(file: string) => boolean>): Promise<Map<string, Found>> {
  const found = new Map<string, Found>();
  // Directories already walked for the current glob, by device and inode: symlinks may loop.
  let seen = new Set<string>();
  const visit = async (glob: Glob, dir: string, level: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    await Promise.all(
      entries.map(async (entry) => {
        const full = dir === path.sep ? `/${entry.name}` : `${dir}/${entry.name}`;
        const segment = glob.segments?.[level];
        if (segment && !segment.test(entry.name)) return;
        let isDir = entry.isDirectory();
        let isFile = entry.isFile();
        const wanted = (): boolean => glob.regex.test(full) && !found.has(full) && !excludes.some((x) => x(full));
        if (isFile && !wanted()) return;
        let stats;
        if (entry.isSymbolicLink() || isFile) {
          try {
            stats = await stat(full, { bigint: true });
          } catch {
            return;
          }
          isDir = stats.isDirectory();
          isFile = stats.isFile();
        }
        if (isDir && level < glob.depth) {
          if (stats) {
            const key = `${stats.dev}:${stats.ino}`;
            if (seen.has(key)) return;
            seen.add(key);
          }
          await visit(glob, full, level + 1);
        } else if (isFile && stats && wanted()) {
          found.set(full, { path: full, dev: String(stats.dev), ino: String(stats.ino), size: Number(stats.size), mtimeMs: Number(stats.mtimeMs) });
        }
      }),
    );
  };
  for (const glob of globs) {
    seen = new Set();
    await visit(glob, glob.base, 0);
  }
  return found;
}

/** A problem found in a spec file, and the one-line form `sluice validate` prints. */

export interface Problem {
  /** The file as the user named it. */
  file: string;
  /** 1-based line in the YAML source. */
  line: number;
  /** 1-based column in the YAML source. */
  col: number;
  /** JSON pointer into the spec, e.g. `/sources/0/config/rate`; empty for the document itself. */
  path: string;
  message: string;
}

/** `FILE:LINE:COL: /sources/0/config/rate: must be integer`; the path is left out when empty. */
export function formatProblem(problem: Problem): string {
  const where = `${problem.file}:${problem.line}:${problem.col}`;
  return problem.path ? `${where}: ${problem.path}: ${problem.message}` : `${where}: ${problem.message}`;
}

/** Orders problems by file (in the order given), then by position, and drops exact repeats. */
export function sortProblems(problems: readonly Problem[], files: readonly string[]): Problem[] {
  const fileOrder = new Map(files.map((file, i) => [file, i]));
  const seen = new Set<string>();
  return problems
    .filter((p) => {
      const key = formatProblem(p);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .map((p, i) => ({ p, i }))
    .sort(
      (a, b) =>
        (fileOrder.get(a.p.file) ?? 0) - (fileOrder.get(b.p.file) ?? 0) ||
        a.p.line - b.p.line ||
        a.p.col - b.p.col ||
        a.i - b.i,
    )
    .map(({ p }) => p);
}

/** Encodes path segments as a JSON pointer (RFC 6901). */
export function toPointer(segments: ReadonlyArray<string | number>): string {
  return segments.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/** Decodes a JSON pointer into its segments. */
export function fromPointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

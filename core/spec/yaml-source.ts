/**
 * The YAML text of a spec, parsed with node ranges, and the mapping from a JSON pointer back to a
 * line and column. Validation works on plain JS values; this is how its findings point into the
 * file the user wrote.
 */
import { LineCounter, isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { fromPointer, type Problem } from './problem.ts';

export interface YamlSource {
  readonly file: string;
  readonly text: string;
  readonly doc: Document;
  readonly lineCounter: LineCounter;
}

export interface Position {
  line: number;
  col: number;
}

/** Parses spec text. The first syntax error comes back as a problem, with its line and column. */
export function parseYamlSource(file: string, text: string): { source: YamlSource; problems: Problem[] } {
  const lineCounter = new LineCounter();
  // prettyErrors off: messages stay one line, and positions come from the line counter.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const source: YamlSource = { file, text, doc, lineCounter };
  // After the first syntax error the parser's further errors are mostly its own confusion.
  const problems = doc.errors.slice(0, 1).map((err) => ({
    file,
    ...positionAt(source, err.pos[0]),
    path: '',
    message: `YAML syntax error: ${err.message}`,
  }));
  return { source, problems };
}

/** The 1-based line and column of a character offset. */
export function positionAt(source: YamlSource, offset: number): Position {
  const { line, col } = source.lineCounter.linePos(Math.max(0, Math.min(offset, source.text.length)));
  return { line, col };
}

/**
 * Where the value at `pointer` is written. With `key`, where its key is written instead (for an
 * unknown property). A pointer that leaves the document, as a missing property does, resolves to
 * the deepest node on its way.
 */
export function locate(source: YamlSource, pointer: string, options: { key?: boolean } = {}): Position {
  const segments = fromPointer(pointer);
  let node: unknown = source.doc.contents;
  let position: Position = { line: 1, col: 1 };
  const setFrom = (n: unknown): void => {
    const range = (n as Node | null)?.range;
    if (range) position = positionAt(source, range[0]);
  };
  setFrom(node);
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (isAlias(node)) node = node.resolve(source.doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && keyString(p.key) === segment);
      if (!pair) break;
      const last = i === segments.length - 1;
      // An empty value (`config:`) has no useful range of its own, so its key stands in for it.
      const valueRange = (pair.value as Node | null)?.range;
      if ((last && options.key) || !valueRange || valueRange[0] === valueRange[1]) {
        setFrom(pair.key);
        if (last && options.key) break;
      } else {
        setFrom(pair.value);
      }
      node = pair.value;
    } else if (isSeq(node)) {
      const item = node.items[Number(segment)];
      if (item === undefined || !/^\d+$/.test(segment)) break;
      setFrom(item);
      node = item;
    } else {
      break;
    }
  }
  return position;
}

function keyString(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

/**
 * Dot paths into record values, split once at build time. Writes are copy-on-write: the containers
 * along the path are shallow-copied and everything else is shared, so the input is never mutated
 * and a change costs the path's depth, not the value's size.
 */

/** A dot path split into its segments, e.g. `user.email` → `['user', 'email']`. */
export type Path = readonly string[];

export function parsePath(text: string): Path {
  return text.split('.');
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value at `path`, or undefined when any segment is missing or crosses a non-object. */
export function getPath(root: unknown, path: Path): unknown {
  let current = root;
  for (const segment of path) {
    if (!isPlainObject(current) || !Object.hasOwn(current, segment)) return undefined;
    current = current[segment];
  }
  return current;
}

/** Thrown by {@link setPath} when a parent on the path exists but is not an object. */
export class PathConflictError extends Error {
  override readonly name = 'PathConflictError';
  constructor(
    readonly path: Path,
    readonly depth: number,
    readonly found: unknown,
  ) {
    super(`cannot set ${path.join('.')}: ${path.slice(0, depth + 1).join('.')} is ${describeType(found)}, not an object`);
  }
}

/**
 * `root` with `value` at `path`, creating missing parent objects. `root` must be an object; a
 * parent that exists but is not an object throws {@link PathConflictError}.
 */
export function setPath(root: Record<string, unknown>, path: Path, value: unknown): Record<string, unknown> {
  return setFrom(root, path, 0, value);
}

function setFrom(container: Record<string, unknown>, path: Path, depth: number, value: unknown): Record<string, unknown> {
  const segment = path[depth]!;
  const copy = { ...container };
  if (depth === path.length - 1) {
    assign(copy, segment, value);
    return copy;
  }
  const child = Object.hasOwn(container, segment) ? container[segment] : undefined;
  if (child === undefined) {
    assign(copy, segment, setFrom({}, path, depth + 1, value));
  } else if (isPlainObject(child)) {
    assign(copy, segment, setFrom(child, path, depth + 1, value));
  } else {
    throw new PathConflictError(path, depth, child);
  }
  return copy;
}

/** `root` without the field at `path`; `root` itself (the same reference) when there is no such field. */
export function deletePath<T>(root: T, path: Path): T {
  return deleteFrom(root, path, 0) as T;
}

function deleteFrom(container: unknown, path: Path, depth: number): unknown {
  const segment = path[depth]!;
  if (!isPlainObject(container) || !Object.hasOwn(container, segment)) return container;
  if (depth === path.length - 1) {
    const copy = { ...container };
    delete copy[segment];
    return copy;
  }
  const child = container[segment];
  const changed = deleteFrom(child, path, depth + 1);
  if (changed === child) return container;
  const copy = { ...container };
  assign(copy, segment, changed);
  return copy;
}

/** Sets an own data property; a plain `obj[key] = v` with key `__proto__` would replace the prototype instead. */
function assign(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  else target[key] = value;
}

export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : `a ${type}`;
}

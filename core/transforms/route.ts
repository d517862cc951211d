/**
 * The `route` transform: sets the record topic from a template such as `clicks.{value.country}`.
 * The template is parsed once; per record, filling it is a walk over its parts.
 */
import { EntryError, RecordError } from './failure.ts';
import { describeType, getPath, parsePath, type Path } from './paths.ts';
import type { Message, TransformFn } from './types.ts';

// Mirrors TOPIC_NAME_PATTERN in core/spec/schema.ts, kept local so the spec schema can import this folder without a cycle.
const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

type Part =
  | { kind: 'text'; text: string }
  | { kind: 'topic' | 'timestamp'; placeholder: string }
  | { kind: 'key' | 'value'; placeholder: string; path: Path }
  | { kind: 'header'; placeholder: string; name: string };

const PLACEHOLDER_HELP = '{topic}, {key}, {key.<path>}, {value}, {value.<path>}, {headers.<name>} or {timestamp}';

/** Splits a template into text and placeholders; braces and placeholder names are checked here. */
export function parseRouteTemplate(template: string): Part[] {
  const parts: Part[] = [];
  let text = '';
  for (let i = 0; i < template.length; i++) {
    const ch = template[i]!;
    if (ch === '}') throw new EntryError('/topic', `unbalanced '}' at character ${i + 1} of ${JSON.stringify(template)}`, { position: i + 1 });
    if (ch !== '{') {
      text += ch;
      continue;
    }
    const close = template.indexOf('}', i + 1);
    const nextOpen = template.indexOf('{', i + 1);
    if (close === -1 || (nextOpen !== -1 && nextOpen < close)) {
      throw new EntryError('/topic', `unbalanced '{' at character ${i + 1} of ${JSON.stringify(template)}`, { position: i + 1 });
    }
    if (text) parts.push({ kind: 'text', text });
    text = '';
    parts.push(parsePlaceholder(template.slice(i + 1, close), template, i + 1));
    i = close;
  }
  if (text) parts.push({ kind: 'text', text });
  return parts;
}

function parsePlaceholder(placeholder: string, template: string, position: number): Part {
  const dot = placeholder.indexOf('.');
  const root = dot === -1 ? placeholder : placeholder.slice(0, dot);
  const rest = dot === -1 ? '' : placeholder.slice(dot + 1);
  if ((root === 'topic' || root === 'timestamp') && dot === -1) return { kind: root, placeholder };
  if ((root === 'key' || root === 'value') && (dot === -1 || /^[^.]+(\.[^.]+)*$/.test(rest))) {
    return { kind: root, placeholder, path: dot === -1 ? [] : parsePath(rest) };
  }
  // Header names may hold dots, so everything after `headers.` is the name.
  if (root === 'headers' && rest !== '') return { kind: 'header', placeholder, name: rest };
  throw new EntryError('/topic', `unknown placeholder {${placeholder}} at character ${position} of ${JSON.stringify(template)}; use ${PLACEHOLDER_HELP}`, {
    placeholder,
    position,
  });
}

function resolve(part: Exclude<Part, { kind: 'text' }>, message: Message): unknown {
  switch (part.kind) {
    case 'topic':
      return message.topic;
    case 'timestamp':
      return message.timestamp;
    case 'key':
      return getPath(message.key, part.path);
    case 'value':
      return getPath(message.value, part.path);
    case 'header':
      return Object.hasOwn(message.headers, part.name) ? message.headers[part.name] : undefined;
  }
}

export function buildRoute(entry: { topic: string }): TransformFn {
  const template = entry.topic;
  const parts = parseRouteTemplate(template);
  return (message) => {
    let topic = '';
    for (const part of parts) {
      if (part.kind === 'text') {
        topic += part.text;
        continue;
      }
      const value = resolve(part, message);
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
        topic += String(value);
        continue;
      }
      const problem = value === undefined || value === null ? 'the record does not have it' : `the record has ${describeType(value)} there, not a string or number`;
      throw new RecordError(`route: topic template ${JSON.stringify(template)} needs {${part.placeholder}}, but ${problem}`, {
        template,
        placeholder: part.placeholder,
      });
    }
    if (!TOPIC_NAME.test(topic) || topic === '.' || topic === '..') {
      throw new RecordError(`route: topic template ${JSON.stringify(template)} gives the invalid topic name ${JSON.stringify(topic)}`, { template, topic });
    }
    return topic === message.topic ? message : { ...message, topic };
  };
}

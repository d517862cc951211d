/**
 * Topic templates such as `cdc.{schema}.{table}`: a source entry's `topic` with placeholders its
 * records fill through `topicVars`. A template without placeholders is a plain topic name.
 */
import { SluiceError } from '../errors.ts';

const PLACEHOLDER_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export type TopicTemplatePart = { text: string } | { placeholder: string };

export type ParsedTopicTemplate =
  | { ok: true; parts: TopicTemplatePart[]; placeholders: string[] }
  | { ok: false; error: string };

/** Splits a template into literal text and placeholders, or says what is wrong with its braces. */
export function parseTopicTemplate(template: string): ParsedTopicTemplate {
  const parts: TopicTemplatePart[] = [];
  const placeholders: string[] = [];
  let text = '';
  let i = 0;
  while (i < template.length) {
    const ch = template[i]!;
    if (ch === '}') return { ok: false, error: `unbalanced '}' at character ${i + 1}` };
    if (ch !== '{') {
      text += ch;
      i++;
      continue;
    }
    const close = template.indexOf('}', i + 1);
    const nextOpen = template.indexOf('{', i + 1);
    if (close === -1 || (nextOpen !== -1 && nextOpen < close)) {
      return { ok: false, error: `unbalanced '{' at character ${i + 1}` };
    }
    const name = template.slice(i + 1, close);
    if (!PLACEHOLDER_NAME.test(name)) {
      return { ok: false, error: name === '' ? `empty placeholder {} at character ${i + 1}` : `invalid placeholder {${name}}` };
    }
    if (text) parts.push({ text });
    text = '';
    parts.push({ placeholder: name });
    if (!placeholders.includes(name)) placeholders.push(name);
    i = close + 1;
  }
  if (text) parts.push({ text });
  return { ok: true, parts, placeholders };
}

/**
 * A regular expression matching every topic a template can produce, so validation can tell that a
 * sink reading `cdc.public.orders` reads what a source writing `cdc.{schema}.{table}` produces.
 */
export function topicTemplateRegExp(parts: readonly TopicTemplatePart[]): RegExp {
  const body = parts
    .map((part) => ('placeholder' in part ? '[A-Za-z0-9._-]+' : part.text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}$`);
}

/**
 * Fills a template from a record's `topicVars`. Throws `INVALID_ARGUMENT` when a placeholder has no
 * value or the result is not a valid topic name, so the runtime can treat the record as bad.
 */
export function fillTopicTemplate(template: string, vars: Readonly<Record<string, string>> = {}): string {
  // Sources fill one template for every record, so parses and plain (placeholder-free) names are
  // remembered; the set of templates in a run is small and fixed by its specs.
  const plain = plainTemplates.get(template);
  if (plain !== undefined) return plain;
  let parsed = parsedTemplates.get(template);
  if (parsed === undefined) {
    parsed = parseTopicTemplate(template);
    if (parsedTemplates.size < 1024) parsedTemplates.set(template, parsed);
  }
  if (!parsed.ok) throw new SluiceError('INVALID_ARGUMENT', `bad topic template ${JSON.stringify(template)}: ${parsed.error}`, { context: { template } });
  let topic = '';
  for (const part of parsed.parts) {
    if ('text' in part) {
      topic += part.text;
      continue;
    }
    const value = vars[part.placeholder];
    if (value === undefined) {
      throw new SluiceError('INVALID_ARGUMENT', `topic template ${JSON.stringify(template)} needs {${part.placeholder}}, which the record does not set`, {
        context: { template, placeholder: part.placeholder },
      });
    }
    topic += value;
  }
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(topic) || topic === '.' || topic === '..') {
    throw new SluiceError('INVALID_ARGUMENT', `topic template ${JSON.stringify(template)} gives the invalid topic name ${JSON.stringify(topic)}`, {
      context: { template, topic },
    });
  }
  if (parsed.parts.every((part) => 'text' in part) && plainTemplates.size < 1024) plainTemplates.set(template, topic);
  return topic;
}

const parsedTemplates = new Map<string, ParsedTopicTemplate>();
const plainTemplates = new Map<string, string>();

import { describe, expect, it } from 'vitest';
import { fillTopicTemplate, parseTopicTemplate, topicTemplateRegExp } from './topic-template.ts';

describe('topic templates', () => {
  // Pins how a template splits into text and placeholders.
  it('parses placeholders', () => {
    expect(parseTopicTemplate('cdc.{schema}.{table}')).toEqual({
      ok: true,
      parts: [{ text: 'cdc.' }, { placeholder: 'schema' }, { text: '.' }, { placeholder: 'table' }],
      placeholders: ['schema', 'table'],
    });
    expect(parseTopicTemplate('clicks')).toEqual({ ok: true, parts: [{ text: 'clicks' }], placeholders: [] });
  });

  // Pins the reason given for each kind of malformed braces.
  it.each([
    ['cdc.{schema', "unbalanced '{' at character 5"],
    ['cdc.{schema.{table}', "unbalanced '{' at character 5"],
    ['cdc.schema}', "unbalanced '}' at character 11"],
    ['cdc.{}', 'empty placeholder {} at character 5'],
    ['cdc.{a-b}', 'invalid placeholder {a-b}'],
  ])('rejects %j', (template, error) => {
    expect(parseTopicTemplate(template)).toEqual({ ok: false, error });
  });

  // Pins that a template's regular expression matches exactly the topics it can produce.
  it('matches produced topics', () => {
    const parsed = parseTopicTemplate('cdc.{schema}.{table}');
    if (!parsed.ok) throw new Error(parsed.error);
    const regex = topicTemplateRegExp(parsed.parts);
    expect(regex.test('cdc.public.orders')).toBe(true);
    expect(regex.test('cdcXpublic.orders')).toBe(false);
    expect(regex.test('cdc..orders')).toBe(false);
  });

  // Pins that filling needs every placeholder and must give a valid topic name.
  it('fills from record variables', () => {
    expect(fillTopicTemplate('cdc.{schema}.{table}', { schema: 'public', table: 'orders' })).toBe('cdc.public.orders');
    expect(() => fillTopicTemplate('cdc.{schema}.{table}', { schema: 'public' })).toThrow(
      'topic template "cdc.{schema}.{table}" needs {table}, which the record does not set',
    );
    expect(() => fillTopicTemplate('cdc.{table}', { table: 'a b' })).toThrow('gives the invalid topic name "cdc.a b"');
  });
});

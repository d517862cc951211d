import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { defineRegistry, defineSink, defineSource, type ConfigOf } from '../connector.ts';
import { isSluiceError } from '../errors.ts';
import {
  composeSpecSchema,
  formatProblem,
  loadSpec,
  redactSecrets,
  scrubSecrets,
  topicConfigOf,
  validateSpecFiles,
  validateSpecTexts,
  type Env,
  type Problem,
} from './index.ts';

// Test doubles: just enough of a schema to exercise validation. Spec tests never run tasks.
const notRun = (): never => {
  throw new Error('spec tests never create tasks');
};

const datagenSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    preset: { type: 'string', enum: ['clickstream', 'orders'], default: 'clickstream', description: 'What to generate.' },
    rate: { type: 'integer', minimum: 1, description: 'Records per second.' },
    seed: { type: 'integer', default: 0, description: 'Seed of the generator.' },
    token: { type: 'string', writeOnly: true, description: 'A secret, to test redaction.' },
  },
} as const;

const datagen = defineSource({
  kind: 'source',
  name: 'datagen',
  description: 'Synthetic records (test double).',
  configSchema: datagenSchema,
  createTask: notRun,
});

const cdc = defineSource({
  kind: 'source',
  name: 'cdc',
  description: 'Change data capture (test double).',
  configSchema: {
    type: 'object',
    required: ['slot'],
    additionalProperties: false,
    properties: { slot: { type: 'string', description: 'Replication slot.' } },
  } as const,
  topicVariables: ['schema', 'table'],
  createTask: notRun,
});

const webhook = defineSource({
  kind: 'source',
  name: 'webhook',
  description: 'HTTP ingest whose routes name their topics (test double).',
  configSchema: {
    type: 'object',
    required: ['routes'],
    additionalProperties: false,
    properties: {
      // A string too: the quickstart's raw YAML, which some tests validate uninterpolated, says ${env:WEBHOOK_PORT:-8080}.
      port: { type: ['integer', 'string'], description: 'TCP port.' },
      routes: {
        type: 'array',
        description: 'Paths and the topics they write.',
        items: {
          type: 'object',
          required: ['path', 'topic'],
          additionalProperties: false,
          properties: {
            path: { type: 'string', description: 'URL path.' },
            topic: { type: 'string', description: 'Topic.' },
            key_field: { type: 'string', description: 'Record key field.' },
          },
        },
      },
    },
  } as const,
  producedTopics: (config) => config.routes.map((route) => route.topic),
  createTask: notRun,
});

const file = defineSink({
  kind: 'sink',
  name: 'file',
  description: 'JSON lines files (test double).',
  configSchema: {
    type: 'object',
    required: ['path'],
    additionalProperties: false,
    properties: {
      path: { type: 'string', description: 'Output path.' },
      format: { type: 'string', enum: ['value', 'envelope'], default: 'value', description: 'What each line holds.' },
    },
  } as const,
  createTask: notRun,
});

const registry = defineRegistry([datagen, cdc, webhook, file]);

const QUICKSTART = fileURLToPath(new URL('../../pipelines/quickstart.yaml', import.meta.url));

const BASE = `name: shop
topics:
  - name: clicks
    partitions: 4
sources:
  - name: gen
    connector: datagen
    topic: clicks
    config:
      rate: 200
sinks:
  - name: out
    connector: file
    topics: [clicks]
    config:
      path: out.jsonl
`;

function check(text: string, env: Env = {}, file = 'bad.yaml'): string[] {
  return validateSpecTexts([{ file, text }], { registry, env }).problems.map(formatProblem);
}

function edit(from: string, to: string): string {
  if (!BASE.includes(from)) throw new Error(`the base spec has no ${JSON.stringify(from)}`);
  return BASE.replace(from, () => to);
}

const tmpDirs: string[] = [];
function tmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-spec-'));
  tmpDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('valid specs', () => {
  // Pins that pipelines/quickstart.yaml, exactly as the issue writes it, validates with datagen and file registered.
  it('accepts the quickstart as written', async () => {
    const { problems, specs } = await validateSpecFiles([QUICKSTART], { registry, env: {} });
    expect(problems).toEqual([]);
    expect(specs[0]!.spec.sources[0]!.config).toEqual({ preset: 'clickstream', rate: 200, seed: 42 });
    expect(topicConfigOf(specs[0]!.spec.topics[0]!)).toEqual({ partitions: 4, retentionMs: 7 * 24 * 3600 * 1000 });
  });

  // Pins that a loaded spec carries every default, the entry-level ones and the connector's own.
  it('fills defaults in', async () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'p.yaml'), BASE);
    const { spec } = await loadSpec(path.join(dir, 'p.yaml'), { registry, env: {} });
    expect(spec.log).toEqual({ backend: 'embedded' });
    expect(spec.sources[0]).toMatchObject({
      config: { rate: 200, preset: 'clickstream', seed: 0 },
      errors: { tolerance: 'none', dlq: true, retry_timeout: '5m', retry_backoff_max: '30s' },
      transforms: [],
      tasks: 1,
    });
    expect(spec.sinks[0]!.config).toEqual({ path: 'out.jsonl', format: 'value' });
  });

  // Pins that a missing config block still gets the connector's defaults.
  it('gives an omitted config its defaults', () => {
    const { problems, specs } = validateSpecTexts([{ file: 'p.yaml', text: edit('    config:\n      rate: 200\n', '') }], { registry, env: {} });
    expect(problems).toEqual([]);
    expect(specs[0]!.spec.sources[0]!.config).toEqual({ preset: 'clickstream', seed: 0 });
  });

  // Pins that a sink may read a topic that a source's template produces, a topic a connector names in its config, and a DLQ topic.
  it('resolves topics produced by templates, connector configs and DLQs', () => {
    const text = `name: shop
sources:
  - name: pg
    connector: cdc
    topic: cdc.{schema}.{table}
    config: { slot: s1 }
    errors: { tolerance: all }
  - name: hook
    connector: webhook
    config:
      routes: [{ path: /clicks, topic: web-clicks }]
sinks:
  - name: out
    connector: file
    topics: [cdc.public.orders, web-clicks, __dlq.shop.pg]
    config: { path: out.jsonl }
`;
    expect(check(text)).toEqual([]);
  });

  // Pins that topics flow across files validated together, and only then.
  it('checks topic references across the files given together', () => {
    const producer = { file: 'a.yaml', text: edit('sinks:\n  - name: out\n    connector: file\n    topics: [clicks]\n    config:\n      path: out.jsonl\n', '') };
    const consumer = {
      file: 'b.yaml',
      text: 'name: archive\nsinks:\n  - name: out\n    connector: file\n    topics: [clicks]\n    config: { path: out.jsonl }\n',
    };
    expect(validateSpecTexts([producer, consumer], { registry, env: {} }).problems).toEqual([]);
    expect(validateSpecTexts([consumer], { registry, env: {} }).problems.map(formatProblem)).toEqual([
      "b.yaml:5:14: /sinks/0/topics/0: topic 'clicks' is neither declared under topics nor written by a source",
    ]);
  });

  // Pins that config types derive from the schema: defaulted properties are required, others optional.
  it('derives config types from the schema', () => {
    expectTypeOf<ConfigOf<typeof datagenSchema>>().toEqualTypeOf<{
      preset: 'clickstream' | 'orders';
      rate?: number;
      seed: number;
      token?: string;
    }>();
  });
});

describe('invalid specs', () => {
  // Pins the exact FILE:LINE:COL: path: message line for every kind of spec error.
  it.each<[string, string, string[]]>([
    ['a wrong type', edit('rate: 200', 'rate: 2.5'), ['bad.yaml:10:13: /sources/0/config/rate: must be integer']],
    ['a value below its minimum', edit('rate: 200', 'rate: 0'), ['bad.yaml:10:13: /sources/0/config/rate: must be >= 1, got 0']],
    [
      'a value outside its enum',
      edit('rate: 200', 'rate: 200\n      preset: clickz'),
      ['bad.yaml:11:15: /sources/0/config/preset: must be one of clickstream, orders, got "clickz"'],
    ],
    ['a misspelt config property', edit('rate: 200', 'rat: 200'), ["bad.yaml:10:7: /sources/0/config/rat: unknown property (did you mean 'rate'?)"]],
    [
      'an unknown config property',
      edit('rate: 200', 'rate: 200\n      colour: red'),
      ['bad.yaml:11:7: /sources/0/config/colour: unknown property (allowed: preset, rate, seed, token)'],
    ],
    [
      'a misspelt top-level key',
      edit('name: shop\n', 'name: shop\ndescripton: demo\n'),
      ["bad.yaml:2:1: /descripton: unknown property (did you mean 'description'?)"],
    ],
    ['a missing required config property', edit('    config:\n      path: out.jsonl\n', ''), ["bad.yaml:12:5: /sinks/0/config: must have required property 'path'"]],
    ['a source without a topic', edit('    topic: clicks\n', ''), ["bad.yaml:6:5: /sources/0: must have required property 'topic'"]],
    ['a missing pipeline name', edit('name: shop\n', ''), ["bad.yaml:1:1: must have required property 'name'"]],
    [
      'a bad pipeline name',
      edit('name: shop', 'name: my shop'),
      [`bad.yaml:1:7: /name: must be letters, digits, '-' and '_', starting with a letter or digit, got "my shop"`],
    ],
    [
      'a bad topic name',
      edit('  - name: clicks', '  - name: click stream'),
      ['bad.yaml:3:11: /topics/0/name: must be 1-249 characters of A-Z a-z 0-9 . _ -, got "click stream"'],
    ],
    [
      'a bad duration',
      edit('    partitions: 4\n', '    partitions: 4\n    retention: { time: 7 days }\n'),
      ['bad.yaml:5:24: /topics/0/retention/time: must be a duration such as 12h or 7d, or none, got "7 days"'],
    ],
    [
      'a bad size',
      edit('    partitions: 4\n', '    partitions: 4\n    segment_bytes: 10 GiB\n'),
      ['bad.yaml:5:20: /topics/0/segment_bytes: must be a size such as 512, 64KiB or 10GiB, got "10 GiB"'],
    ],
    [
      'a bad error tolerance',
      edit('    topic: clicks\n', '    topic: clicks\n    errors: { tolerance: some }\n'),
      ['bad.yaml:9:26: /sources/0/errors/tolerance: must be one of none, all, got "some"'],
    ],
    ['a jetstream log without servers', `${BASE}log: { backend: jetstream }\n`, ["bad.yaml:17:6: /log: must have required property 'servers'"]],
    [
      'a misspelt connector',
      edit('connector: datagen', 'connector: datagne'),
      ["bad.yaml:7:16: /sources/0/connector: unknown source connector 'datagne' (did you mean 'datagen'?); known sources: cdc, datagen, webhook"],
    ],
    [
      'an unknown connector',
      edit('connector: datagen', 'connector: kafka'),
      ["bad.yaml:7:16: /sources/0/connector: unknown source connector 'kafka'; known sources: cdc, datagen, webhook"],
    ],
    [
      'a sink connector used as a source',
      edit('connector: datagen', 'connector: file'),
      ["bad.yaml:7:16: /sources/0/connector: 'file' is a sink connector, not a source; known sources: cdc, datagen, webhook"],
    ],
    [
      'a duplicate topic',
      edit('    partitions: 4\n', '    partitions: 4\n  - name: clicks\n'),
      ["bad.yaml:5:11: /topics/1/name: topic 'clicks' is already declared at /topics/0/name (line 3)"],
    ],
    [
      'a duplicate connector name',
      edit('  - name: out', '  - name: gen'),
      ["bad.yaml:12:11: /sinks/0/name: connector name 'gen' is already used at /sources/0/name (line 6)"],
    ],
    [
      'a sink reading a topic nothing declares or produces',
      edit('topics: [clicks]', 'topics: [clicks, views]'),
      ["bad.yaml:14:22: /sinks/0/topics/1: topic 'views' is neither declared under topics nor written by a source"],
    ],
    [
      'a sink reading a misspelt topic',
      edit('topics: [clicks]', 'topics: [click]'),
      ["bad.yaml:14:14: /sinks/0/topics/0: topic 'click' is neither declared under topics nor written by a source; did you mean 'clicks'?"],
    ],
    [
      'a topic template with an unbalanced brace',
      edit('topic: clicks', 'topic: cdc.{schema'),
      ["bad.yaml:8:12: /sources/0/topic: bad topic template 'cdc.{schema': unbalanced '{' at character 5"],
    ],
    [
      'a topic template placeholder the connector does not fill',
      edit('topic: clicks', 'topic: gen.{table}'),
      ["bad.yaml:8:12: /sources/0/topic: bad topic template 'gen.{table}': unknown placeholder {table}; datagen fills no placeholders"],
    ],
    [
      'a misspelt topic template placeholder',
      edit('connector: datagen\n    topic: clicks\n    config:\n      rate: 200', 'connector: cdc\n    topic: cdc.{schema}.{tabel}\n    config:\n      slot: s1'),
      [
        "bad.yaml:8:12: /sources/0/topic: bad topic template 'cdc.{schema}.{tabel}': unknown placeholder {tabel} (did you mean {table}?); cdc fills {schema}, {table}",
      ],
    ],
    ['a YAML syntax error', edit('rate: 200', 'rate: 200\n      rate: 300'), ['bad.yaml:11:7: YAML syntax error: Map keys must be unique']],
    [
      'a missing environment variable',
      edit('rate: 200', 'rate: ${env:SLUICE_TEST_RATE}'),
      ['bad.yaml:10:13: /sources/0/config/rate: environment variable SLUICE_TEST_RATE is not set (write ${env:SLUICE_TEST_RATE:-default} to give a default)'],
    ],
    [
      'an unknown kind of reference',
      edit('path: out.jsonl', 'path: ${vault:x}'),
      ['bad.yaml:16:13: /sinks/0/config/path: unknown reference ${vault:x}: use ${env:NAME}, ${env:NAME:-default} or ${file:PATH}'],
    ],
    [
      'an unterminated reference',
      edit('path: out.jsonl', 'path: out-${env:X.jsonl'),
      [`bad.yaml:16:17: /sinks/0/config/path: unterminated reference "\${env:X.jsonl": missing '}'`],
    ],
  ])('reports %s', (_name, text, expected) => {
    expect(check(text)).toEqual(expected);
  });

  // Pins that one run reports every problem, in file order, not just the first.
  it('reports all problems at once', () => {
    const text = BASE.replace('rate: 200', 'rate: 2.5\n      sed: 1')
      .replace('connector: file', 'connector: fil')
      .replace('    partitions: 4\n', '    partitions: 0\n');
    expect(check(text)).toEqual([
      'bad.yaml:4:17: /topics/0/partitions: must be >= 1, got 0',
      'bad.yaml:10:13: /sources/0/config/rate: must be integer',
      "bad.yaml:11:7: /sources/0/config/sed: unknown property (did you mean 'seed'?)",
      "bad.yaml:14:16: /sinks/0/connector: unknown sink connector 'fil' (did you mean 'file'?); known sinks: file",
    ]);
  });

  // Pins that a YAML syntax error carries the line and column where the parser stopped, and nothing after it.
  it('points at a YAML syntax error', () => {
    const problems = check(edit('    topics: [clicks]\n', '    topics: [clicks\n'));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^bad\.yaml:15:5: YAML syntax error: /);
  });

  // Pins that pipeline names are unique across the files run together.
  it('rejects a pipeline name used by two files', () => {
    const problems = validateSpecTexts(
      [
        { file: 'a.yaml', text: BASE },
        { file: 'b.yaml', text: BASE.replace('  - name: gen', '  - name: gen2').replace('  - name: out', '  - name: out2') },
      ],
      { registry, env: {} },
    ).problems.map(formatProblem);
    expect(problems).toEqual(["b.yaml:1:7: /name: pipeline name 'shop' is already used at a.yaml:1:7"]);
  });

  // Pins that loading an invalid spec throws SPEC_INVALID carrying the problems and their printed lines.
  it('throws SPEC_INVALID from loadSpec', async () => {
    const dir = tmpDir();
    const specFile = path.join(dir, 'bad.yaml');
    fs.writeFileSync(specFile, edit('rate: 200', 'rate: 2.5'));
    const error = await loadSpec(specFile, { registry, env: {} }).catch((err: unknown) => err);
    expect(isSluiceError(error, 'SPEC_INVALID')).toBe(true);
    expect((error as Error).message).toBe(`${specFile}:10:13: /sources/0/config/rate: must be integer`);
    expect(((error as { context: { problems: Problem[] } }).context.problems)[0]).toMatchObject({ line: 10, col: 13, path: '/sources/0/config/rate' });
  });

  // Pins that an unreadable file is a problem of its own, not an exception.
  it('reports a file that cannot be read', async () => {
    const missing = path.join(tmpDir(), 'missing.yaml');
    const { problems } = await validateSpecFiles([missing], { registry, env: {} });
    expect(problems.map(formatProblem)).toEqual([`${missing}:1:1: cannot read the file: ENOENT`]);
  });
});

describe('interpolation', () => {
  // Pins that ${env:NAME} resolves and becomes an integer where the schema wants one, and stays a string elsewhere.
  it('resolves environment variables with the schema type', () => {
    const text = edit('rate: 200', 'rate: ${env:RATE}').replace('path: out.jsonl', 'path: "${env:DIR}/007"');
    const { problems, specs } = validateSpecTexts([{ file: 'p.yaml', text }], { registry, env: { RATE: '250', DIR: 'out' } });
    expect(problems).toEqual([]);
    expect(specs[0]!.spec.sources[0]!.config.rate).toBe(250);
    expect(specs[0]!.spec.sinks[0]!.config.path).toBe('out/007');
  });

  // Pins that a resolved value that is not of the schema type is reported like a literal one.
  it('reports a resolved value of the wrong type', () => {
    expect(check(edit('rate: 200', 'rate: ${env:RATE}'), { RATE: 'fast' })).toEqual(['bad.yaml:10:13: /sources/0/config/rate: must be integer']);
  });

  // Pins that ${env:NAME:-default} uses the default when NAME is unset or empty, and NAME otherwise.
  it.each<[Env, number]>([
    [{}, 100],
    [{ RATE: '' }, 100],
    [{ RATE: '7' }, 7],
  ])('applies defaults with env %j', (env, rate) => {
    const text = edit('rate: 200', 'rate: ${env:RATE:-100}');
    expect(validateSpecTexts([{ file: 'p.yaml', text }], { registry, env }).specs[0]!.spec.sources[0]!.config.rate).toBe(rate);
  });

  // Pins that ${file:PATH} reads a file relative to the spec, without its trailing newline, and that a missing file is a positioned problem.
  it('reads files relative to the spec', async () => {
    const dir = tmpDir();
    fs.mkdirSync(path.join(dir, 'secrets'));
    fs.writeFileSync(path.join(dir, 'secrets', 'token'), 's3cr3t-token\n');
    fs.writeFileSync(path.join(dir, 'good.yaml'), edit('rate: 200', 'rate: 200\n      token: ${file:secrets/token}'));
    fs.writeFileSync(path.join(dir, 'bad.yaml'), edit('rate: 200', 'rate: 200\n      token: ${file:secrets/nope}'));
    const { spec } = await loadSpec(path.join(dir, 'good.yaml'), { registry, env: {} });
    expect(spec.sources[0]!.config.token).toBe('s3cr3t-token');
    const { problems } = await validateSpecFiles([path.join(dir, 'bad.yaml')], { registry, env: {} });
    expect(problems.map(formatProblem)).toEqual([
      `${path.join(dir, 'bad.yaml')}:11:14: /sources/0/config/token: cannot read "secrets/nope" for \${file:...}: ENOENT`,
    ]);
  });

  // Pins that $${ writes a literal ${ and is not a reference.
  it('escapes $${', () => {
    const text = edit('path: out.jsonl', 'path: "$${env:HOME}.jsonl"');
    const { specs } = validateSpecTexts([{ file: 'p.yaml', text }], { registry, env: { HOME: '/root' } });
    expect(specs[0]!.spec.sinks[0]!.config.path).toBe('${env:HOME}.jsonl');
    expect([...specs[0]!.secrets.paths]).toEqual([]);
  });

  // Pins that interpolated values and writeOnly fields are tracked, so they can be redacted by path and scrubbed from text.
  it('tracks secrets', () => {
    const text = edit('rate: 200', 'rate: 200\n      token: literal-token').replace('path: out.jsonl', 'path: "/data/${env:USER_DIR}/out.jsonl"');
    const { specs } = validateSpecTexts([{ file: 'p.yaml', text }], { registry, env: { USER_DIR: 'alice-home' } });
    const { spec, secrets } = specs[0]!;
    expect([...secrets.paths].sort()).toEqual(['/sinks/0/config/path', '/sources/0/config/token']);
    expect([...secrets.values].sort()).toEqual(['/data/alice-home/out.jsonl', 'alice-home', 'literal-token']);
    const redacted = redactSecrets(spec, secrets);
    expect(redacted.sources[0]!.config.token).toBe('[REDACTED]');
    expect(redacted.sinks[0]!.config.path).toBe('[REDACTED]');
    expect(spec.sources[0]!.config.token).toBe('literal-token');
    expect(scrubSecrets('connect failed for literal-token at alice-home', secrets)).toBe('connect failed for [REDACTED] at [REDACTED]');
  });

  // Pins that a secret is never echoed in a validation message.
  it('keeps secret values out of problems', () => {
    const text = edit('rate: 200', 'rate: ${env:RATE}');
    expect(check(text, { RATE: '-5' })).toEqual(['bad.yaml:10:13: /sources/0/config/rate: must be >= 1']);
  });
});

describe('composed schema', () => {
  // Pins that the schema `sluice schema` prints is plain JSON that an independent draft-07 validator accepts, and that it validates the quickstart and connector configs.
  it('validates the quickstart on its own', () => {
    const schema = composeSpecSchema(registry);
    const printed = JSON.parse(JSON.stringify(schema)) as object;
    expect(printed).toEqual(schema);
    const validate = new Ajv({ allErrors: true, strict: false }).compile(printed);
    const quickstart = parseYaml(fs.readFileSync(QUICKSTART, 'utf8')) as { sources: Array<{ config: Record<string, unknown> }> };
    expect(validate(quickstart)).toBe(true);
    quickstart.sources[0]!.config.rate = 2.5;
    expect(validate(quickstart)).toBe(false);
    expect(validate.errors?.map((e) => `${e.instancePath}: ${e.message}`)).toContain('/sources/0/config/rate: must be integer');
  });

  // Pins that the editor schema also describes transforms, so completion works inside `transforms:` too, and still accepts valid specs.
  it('carries the transform schema for editors', () => {
    const schema = composeSpecSchema(registry, { forEditors: true }) as { properties: { sinks: { items: { properties: { transforms: { items: { oneOf: unknown[] } } } } } } };
    expect(schema.properties.sinks.items.properties.transforms.items.oneOf.length).toBeGreaterThanOrEqual(10);
    const validate = new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(JSON.stringify(schema)) as object);
    const spec = parseYaml(fs.readFileSync(QUICKSTART, 'utf8')) as { sinks: Array<Record<string, unknown>> };
    spec.sinks[0]!['transforms'] = [{ type: 'drop_fields', fields: ['user_agent'] }];
    expect(validate(spec)).toBe(true);
    spec.sinks[0]!['transforms'] = [{ type: 'drop_fields' }];
    expect(validate(spec)).toBe(false);
  });

  // Pins that a registry with only sources (or only sinks) still gives a valid schema.
  it('works with a registry that has no sinks', () => {
    const { problems } = validateSpecTexts([{ file: 'a.yaml', text: 'name: p\nsources: []\nsinks: []\n' }], { registry: defineRegistry([datagen]), env: {} });
    expect(problems).toEqual([]);
  });

  // Pins that editors can complete connector names: the composed schema lists them.
  it('lists connector names', () => {
    const schema = composeSpecSchema(registry) as { properties: { sources: { items: { properties: { connector: { enum: string[] } } } } } };
    expect(schema.properties.sources.items.properties.connector.enum).toEqual(['datagen', 'cdc', 'webhook']);
  });

  // Pins that a connector with a broken schema is named when the registry is first used.
  it('names a connector whose schema is invalid', () => {
    const broken = defineSink({
      kind: 'sink',
      name: 'broken',
      description: 'x',
      configSchema: { type: 'object', properties: { n: { type: 'integr' } } } as never,
      createTask: notRun,
    });
    expect(() => validateSpecTexts([{ file: 'p.yaml', text: BASE }], { registry: defineRegistry([datagen, file, broken]), env: {} })).toThrow(
      /the config schema of the sink connector broken is invalid/,
    );
  });
});

/**
 * End to end: `sluice validate` and the validation `sluice run` does first, through the real CLI.
 * Every kind of spec error gets its exact `FILE:LINE:COL: /path: message` line and exit code 1, and
 * a run on a bad spec prints the same lines and starts nothing.
 */
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { registry } from '../connectors/index.ts';
import { ROOT, cleanUp, sluice, tempDir } from './e2e-helpers.ts';

// The tests run concurrently and every child runs to completion (or is killed at its timeout), so
// the temp dirs are removed once, after all of them.
afterAll(cleanUp);

// Connectors are added over time; the messages list the registered ones, sorted.
const KNOWN_SOURCES = [...registry.sources.keys()].sort().join(', ');
const KNOWN_SINKS = [...registry.sinks.keys()].sort().join(', ');

interface BadSpec {
  /** What is wrong, also the test's name. */
  what: string;
  yaml: string;
  /** The exact lines `sluice validate` prints, the file being `spec.yaml`. */
  lines: string[];
}

const SINK = `sinks:
  - name: out
    connector: file
    topics: [clicks]
    config: { path: out.jsonl }
`;

const BAD: BadSpec[] = [
  {
    what: 'a value of the wrong type',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
    topic: clicks
    config: { preset: clickstream, rate: "fast" }
${SINK}`,
    lines: ['spec.yaml:6:42: /sources/0/config/rate: must be integer'],
  },
  {
    what: 'unknown connectors, with a did-you-mean and the known ones',
    yaml: `name: p
sources:
  - name: gen
    connector: datagne
    topic: clicks
sinks:
  - name: out
    connector: fil
    topics: [clicks]
    config: { path: out.jsonl }
`,
    lines: [
      `spec.yaml:4:16: /sources/0/connector: unknown source connector 'datagne' (did you mean 'datagen'?); known sources: ${KNOWN_SOURCES}`,
      `spec.yaml:8:16: /sinks/0/connector: unknown sink connector 'fil' (did you mean 'file'?); known sinks: ${KNOWN_SINKS}`,
    ],
  },
  {
    what: 'a sink connector used as a source',
    yaml: `name: p
sources:
  - name: gen
    connector: file
    topic: clicks
`,
    lines: [`spec.yaml:4:16: /sources/0/connector: 'file' is a sink connector, not a source; known sources: ${KNOWN_SOURCES}`],
  },
  {
    what: 'a missing required field',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
    topic: clicks
sinks:
  - name: out
    connector: file
    topics: [clicks]
    config: { format: value }
`,
    lines: ["spec.yaml:10:13: /sinks/0/config: must have required property 'path'"],
  },
  {
    what: 'a sink reading a topic nothing declares or produces',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
    topic: clicks
sinks:
  - name: out
    connector: file
    topics: [clickz]
    config: { path: out.jsonl }
`,
    lines: ["spec.yaml:9:14: /sinks/0/topics/0: topic 'clickz' is neither declared under topics nor written by a source; did you mean 'clicks'?"],
  },
  {
    what: 'duplicate connector names',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
    topic: clicks
sinks:
  - name: gen
    connector: file
    topics: [clicks]
    config: { path: out.jsonl }
`,
    lines: ["spec.yaml:7:11: /sinks/0/name: connector name 'gen' is already used at /sources/0/name (line 3)"],
  },
  {
    what: 'duplicate topic names',
    yaml: `name: p
topics:
  - name: clicks
  - name: clicks
    partitions: 2
sources:
  - name: gen
    connector: datagen
    topic: clicks
`,
    lines: ["spec.yaml:4:11: /topics/1/name: topic 'clicks' is already declared at /topics/0/name (line 3)"],
  },
  {
    what: 'bad topic templates: a placeholder the connector does not fill, and an unbalanced brace',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
    topic: clicks.{table}
  - name: gen2
    connector: datagen
    topic: "clicks.{oops"
`,
    lines: [
      "spec.yaml:5:12: /sources/0/topic: bad topic template 'clicks.{table}': unknown placeholder {table}; datagen fills no placeholders",
      "spec.yaml:8:12: /sources/1/topic: bad topic template 'clicks.{oops': unbalanced '{' at character 8",
    ],
  },
  {
    what: 'a YAML syntax error, with its line and column',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
   topic: clicks
`,
    lines: ['spec.yaml:5:1: YAML syntax error: Sequence item without - indicator'],
  },
  {
    what: 'an unknown property, with a did-you-mean',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
    topic: clicks
    config: { preset: clickstream, rtae: 5 }
`,
    lines: ["spec.yaml:6:36: /sources/0/config/rtae: unknown property (did you mean 'rate'?)"],
  },
  {
    what: 'an unset ${env:...} variable',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
    topic: clicks
sinks:
  - name: out
    connector: http
    topics: [clicks]
    config:
      url: http://127.0.0.1:9/x
      auth: { type: bearer, token: "\${env:SLUICE_E2E_UNSET_TOKEN}" }
`,
    lines: [
      'spec.yaml:12:37: /sinks/0/config/auth/token: environment variable SLUICE_E2E_UNSET_TOKEN is not set (write ${env:SLUICE_E2E_UNSET_TOKEN:-default} to give a default)',
    ],
  },
  {
    what: 'bad transform entries: a missing setting, an unknown type, a JSONata syntax error',
    yaml: `name: p
sources:
  - name: gen
    connector: datagen
    topic: clicks
sinks:
  - name: out
    connector: file
    topics: [clicks]
    config: { path: out.jsonl }
    transforms:
      - type: filter
      - type: drop_field
        fields: [user_agent]
      - type: set
        fields: { x: "(" }
`,
    lines: [
      "spec.yaml:12:9: /sinks/0/transforms/0: must have required property 'expr'",
      'spec.yaml:13:15: /sinks/0/transforms/1/type: unknown transform type "drop_field" (did you mean drop_fields?); known: filter, set, map, drop_fields, rename_fields, mask_fields, route, timestamp, unwrap_cdc, js',
      'spec.yaml:16:22: /sinks/0/transforms/2/fields/x: JSONata syntax error at character 1: Expected ")" before end of expression in "("',
    ],
  },
  {
    what: 'a bad retention duration',
    yaml: `name: p
topics:
  - name: clicks
    retention: { time: 7 days }
sources:
  - name: gen
    connector: datagen
    topic: clicks
`,
    lines: ['spec.yaml:4:24: /topics/0/retention/time: must be a duration such as 12h or 7d, or none, got "7 days"'],
  },
  {
    what: 'several problems in one file, all reported, in file order',
    yaml: `name: bad name
sources:
  - name: gen
    connector: datagen
    topic: clicks
    config: { preset: clicks, rate: -1, batch_size: 0 }
`,
    lines: [
      `spec.yaml:1:7: /name: must be letters, digits, '-' and '_', starting with a letter or digit, got "bad name"`,
      'spec.yaml:6:23: /sources/0/config/preset: must be one of clickstream, orders, got "clicks"',
      'spec.yaml:6:37: /sources/0/config/rate: must be >= 0, got -1',
      'spec.yaml:6:53: /sources/0/config/batch_size: must be >= 1, got 0',
    ],
  },
];

/** Writes `files` (name → text) into a fresh temp dir and returns the dir. */
async function specDir(files: Record<string, string>): Promise<string> {
  const dir = await tempDir('validate');
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return dir;
}

describe.concurrent('sluice validate', () => {
  // Each kind of spec error gets its exact FILE:LINE:COL line, and exit code 1.
  it.each(BAD)('reports $what', async ({ yaml, lines }) => {
    const cwd = await specDir({ 'spec.yaml': yaml });
    const result = await sluice(['validate', 'spec.yaml'], { cwd });
    expect(result.stdout).toBe(lines.join('\n') + '\n');
    expect(result.code).toBe(1);
  });

  // `sluice run` on a bad spec prints the same lines, exits 1, and creates no data directory.
  it.each(BAD)('refuses to run a spec with $what', async ({ yaml, lines }) => {
    const cwd = await specDir({ 'spec.yaml': yaml });
    const result = await sluice(['run', 'spec.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0'], { cwd });
    const problems = `${lines.length} problem${lines.length === 1 ? '' : 's'}`;
    expect(result.stderr).toBe(`${lines.join('\n')}\nsluice: ${problems}; nothing was started\n`);
    expect(result.stdout).toBe('');
    expect(result.code).toBe(1);
    expect(existsSync(path.join(cwd, 'data'))).toBe(false);
  });

  // A valid spec prints ok and exits 0; ${env:...} references resolve from the environment.
  it('accepts a valid spec, with an environment variable set', async () => {
    const cwd = await specDir({
      'spec.yaml': `name: good
topics:
  - name: clicks
    partitions: 2
    retention: { time: 7d, bytes: 1GiB }
sources:
  - name: gen
    connector: datagen
    topic: clicks
    config: { preset: orders, rate: "\${env:SLUICE_E2E_RATE}", seed: 1 }
sinks:
  - name: out
    connector: file
    topics: [clicks]
    config: { path: "out/{topic}/{date}.jsonl", format: envelope }
    transforms:
      - { type: filter, expr: 'status = "paid"' }
      - { type: mask_fields, fields: [customer_id], mode: hash, salt: pepper-pepper }
    errors: { tolerance: all, retry_timeout: 10s }
  - name: hook
    connector: http
    topics: [clicks]
    config:
      url: http://127.0.0.1:9/x
      auth: { type: bearer, token: "\${env:SLUICE_E2E_TOKEN:-fallback-token}" }
`,
    });
    const result = await sluice(['validate', 'spec.yaml'], { cwd, env: { SLUICE_E2E_RATE: '50' } });
    expect(result).toMatchObject({ code: 0, stdout: 'ok\n', stderr: '' });
  });

  // Files validated together may cross-reference topics; alone, the reader's topic is unknown.
  it('checks topic references across the files given together', async () => {
    const cwd = await specDir({
      'a.yaml': `name: a
sources:
  - name: gen
    connector: datagen
    topic: shared
`,
      'b.yaml': `name: b
sinks:
  - name: out
    connector: file
    topics: [shared]
    config: { path: out.jsonl }
`,
    });
    expect(await sluice(['validate', 'a.yaml', 'b.yaml'], { cwd })).toMatchObject({ code: 0, stdout: 'ok\n' });
    const alone = await sluice(['validate', 'b.yaml'], { cwd });
    expect(alone.stdout).toBe("b.yaml:5:14: /sinks/0/topics/0: topic 'shared' is neither declared under topics nor written by a source\n");
    expect(alone.code).toBe(1);
  });

  // Every example spec shipped in pipelines/ validates.
  it('accepts every spec in pipelines/', async () => {
    const specs = (await readdir(path.join(ROOT, 'pipelines'))).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join('pipelines', f));
    expect(specs.length).toBeGreaterThan(0);
    const result = await sluice(['validate', ...specs], { cwd: ROOT });
    expect(result).toMatchObject({ code: 0, stdout: 'ok\n', stderr: '' });
    for (const spec of specs) expect(await sluice(['validate', spec], { cwd: ROOT }), spec).toMatchObject({ code: 0, stdout: 'ok\n' });
  });
});

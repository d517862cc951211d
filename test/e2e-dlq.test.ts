/**
 * End to end: record errors under `errors: { tolerance: all }` go to the dead-letter queue with the
 * headers that say what failed and where the record came from, `sluice dlq list/show` report them,
 * and `sluice dlq redrive` re-injects them, once, after the cause is fixed.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanUp, request, seqs, sluiceOk, start, tempDir, waitFor } from './e2e-helpers.ts';

afterEach(cleanUp);

const COUNT = 200;
const isBad = (seq: number): boolean => seq % 10 === 3;
const BAD = Array.from({ length: COUNT }, (_, i) => i).filter(isBad);

const SPEC = `name: shop
topics:
  - name: orders
    partitions: 2
sources:
  - name: gen
    connector: datagen
    topic: orders
    config: { preset: orders, count: ${COUNT}, seed: 3, rate: 0, batch_size: 50 }
sinks:
  - name: archive
    connector: file
    topics: [orders]
    config: { path: out/orders.jsonl }
    transforms:
      - { type: js, module: ./unlucky.mjs }
    errors: { tolerance: all }
`;

const THROWING = `export default function unlucky(message) {
  if (message.value.seq % 10 === 3) throw new Error(\`unlucky order \${message.value.seq}\`);
  return message;
}
`;
const FIXED = `export default (message) => message;
`;

interface DeadLetterLine {
  error: string;
  error_code: string | null;
  stage: string;
  original: { topic: string; partition: number; offset: string };
  attempts: number;
  key: string;
  value: { seq: number };
}

interface ConsumedRecord {
  partition: number;
  offset: number;
  key: string;
  value: { seq: number };
}

function jsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as T);
}

describe('dead-letter queue', () => {
  // A transform that throws on some records sends exactly those to the DLQ with the right headers, and redrive works.
  it('dead-letters exactly the records a transform throws on, and redrive delivers them after the fix', { timeout: 90_000 }, async () => {
    const cwd = await tempDir('dlq');
    await writeFile(path.join(cwd, 'spec.yaml'), SPEC);
    await writeFile(path.join(cwd, 'unlucky.mjs'), THROWING);
    const output = path.join(cwd, 'out/orders.jsonl');
    const opts = { cwd };
    const dataDir = ['--data-dir', 'data'];

    const first = start(['run', 'spec.yaml', ...dataDir, '--api', '127.0.0.1:0', '--status-interval', '0'], opts);
    const api = await first.apiUrl();
    await waitFor(() => seqs(output).length >= COUNT - BAD.length, { what: `${COUNT - BAD.length} good records in the output` });
    await waitFor(async () => (await request(`${api}/connectors/archive/status`)).json().dlq_records === BAD.length, { what: `${BAD.length} dead letters in the status` });
    const status = (await request(`${api}/connectors/archive/status`)).json();
    expect(status.connector.state).toBe('RUNNING');

    // The good records went through, each once; none of the bad ones did.
    const delivered = seqs(output);
    expect(delivered.length).toBe(COUNT - BAD.length);
    expect(new Set(delivered)).toEqual(new Set(Array.from({ length: COUNT }, (_, i) => i).filter((s) => !isBad(s))));

    // dlq list and show read the data directory while the run holds it.
    const list = await sluiceOk(['dlq', 'list', ...dataDir], opts);
    expect(list.stdout).toMatch(new RegExp(`^shop\\s+archive\\s+${BAD.length}\\s+__dlq\\.shop\\.archive$`, 'm'));

    const show = await sluiceOk(['dlq', 'show', 'shop', 'archive', ...dataDir], opts);
    const letters = jsonLines<DeadLetterLine>(show.stdout);
    expect(letters.map((l) => l.value.seq).sort((a, b) => a - b)).toEqual(BAD);
    expect(first.running).toBe(true);
    expect(await first.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    // Each letter names the error, the stage and attempts, and points at its original record.
    const consumed = jsonLines<ConsumedRecord>((await sluiceOk(['consume', 'orders', '--from-beginning', ...dataDir], opts)).stdout);
    const bySeq = new Map(consumed.map((r) => [r.value.seq, r]));
    for (const letter of letters) {
      const seq = letter.value.seq;
      expect(letter.error).toBe(`transform 0 (js) threw: unlucky order ${seq}`);
      expect(letter.error_code).toBe('TRANSFORM_FAILED');
      expect(letter.stage).toBe('transform');
      expect(letter.attempts).toBe(1);
      const original = bySeq.get(seq)!;
      expect(letter.original).toEqual({ topic: 'orders', partition: original.partition, offset: String(original.offset) });
      expect(letter.key).toBe(original.key);
      expect(letter.value).toEqual(original.value);
    }

    // Fix the transform, redrive, and run again: the sink reads the re-injected records.
    await writeFile(path.join(cwd, 'unlucky.mjs'), FIXED);
    const redrive = await sluiceOk(['dlq', 'redrive', 'shop', 'archive', ...dataDir], opts);
    expect(redrive.stdout).toBe(`re-injected ${BAD.length} records into orders\n`);

    const second = start(['run', 'spec.yaml', ...dataDir, '--api', '127.0.0.1:0', '--status-interval', '0'], opts);
    await waitFor(() => new Set(seqs(output)).size === COUNT, { what: `all ${COUNT} seq values in the output` });
    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    // Graceful stops commit everything, so nothing was written twice.
    const all = seqs(output);
    expect(all.length).toBe(COUNT);
    expect(all.slice(COUNT - BAD.length).sort((a, b) => a - b)).toEqual(BAD);

    // Redrive keeps its progress: a second one re-injects nothing.
    const again = await sluiceOk(['dlq', 'redrive', 'shop', 'archive', ...dataDir], opts);
    expect(again.stdout).toBe('nothing to redrive for shop/archive: every dead letter was re-injected already\n');
  });

  // A source transform error dead-letters the record with the topic it was headed for, and redrive appends it there unchanged.
  it('dead-letters records a source transform fails on, and redrive appends them to their topic', { timeout: 60_000 }, async () => {
    const cwd = await tempDir('dlq-source');
    await writeFile(
      path.join(cwd, 'spec.yaml'),
      `name: shop
sources:
  - name: gen
    connector: datagen
    topic: orders
    config: { preset: orders, count: ${COUNT}, seed: 3, rate: 0, batch_size: 50 }
    transforms:
      - { type: set, fields: { checked: "seq % 10 = 3 ? $error('unlucky order ' & seq) : true" } }
    errors: { tolerance: all }
sinks:
  - name: archive
    connector: file
    topics: [orders]
    config: { path: out/orders.jsonl }
`,
    );
    const output = path.join(cwd, 'out/orders.jsonl');
    const opts = { cwd };
    const dataDir = ['--data-dir', 'data'];

    const first = start(['run', 'spec.yaml', ...dataDir, '--api', '127.0.0.1:0', '--status-interval', '0'], opts);
    const api = await first.apiUrl();
    await waitFor(() => seqs(output).length >= COUNT - BAD.length, { what: `${COUNT - BAD.length} good records in the output` });
    await waitFor(async () => (await request(`${api}/connectors/gen/status`)).json().dlq_records === BAD.length, { what: `${BAD.length} dead letters in the status` });
    expect(await first.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(new Set(seqs(output))).toEqual(new Set(Array.from({ length: COUNT }, (_, i) => i).filter((s) => !isBad(s))));

    const letters = jsonLines<DeadLetterLine & { value: { seq: number; checked?: boolean } }>((await sluiceOk(['dlq', 'show', 'shop', 'gen', ...dataDir], opts)).stdout);
    expect(letters.map((l) => l.value.seq).sort((a, b) => a - b)).toEqual(BAD);
    for (const letter of letters) {
      expect(letter.error).toContain(`unlucky order ${letter.value.seq}`);
      expect(letter.stage).toBe('transform');
      expect(letter.attempts).toBe(1);
      // Not yet in a topic: no partition or offset, and the value as the source produced it.
      expect(letter.original).toEqual({ topic: 'orders', partition: null, offset: null });
      expect(letter.value.checked).toBeUndefined();
    }

    const redrive = await sluiceOk(['dlq', 'redrive', 'shop', 'gen', ...dataDir], opts);
    expect(redrive.stdout).toBe(`re-injected ${BAD.length} records into orders\n`);
    const second = start(['run', 'spec.yaml', ...dataDir, '--api', '127.0.0.1:0', '--status-interval', '0'], opts);
    await waitFor(() => seqs(output).length >= COUNT, { what: `all ${COUNT} records in the output` });
    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const all = seqs(output);
    expect(all.length).toBe(COUNT);
    expect(new Set(all).size).toBe(COUNT);
  });
});

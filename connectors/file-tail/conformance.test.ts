/**
 * The file-tail source against the connector conformance suite: its examples and docs, a restart
 * mid-stream, and a timely stop, in a real runtime on a real log, tailing a file that a worker
 * thread appends to while the runtime runs, stops and starts again.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describeSourceConformance } from '../../test/conformance/suite.ts';
import { fileTail } from './index.ts';

const COUNT = 3000;
const BATCH = 100;
const id = (n: number): string => `conformance-line-${String(n).padStart(6, '0')}`;

// The writer runs in a worker thread, so its timers are not counted as handles the connector left open.
const WRITER = `
const { appendFileSync } = require('node:fs');
const { workerData: { file, count, perTick, tickMs } } = require('node:worker_threads');
let n = 0;
const tick = () => {
  let text = '';
  for (let i = 0; i < perTick && n < count; i++, n++) text += 'conformance-line-' + String(n).padStart(6, '0') + '\\n';
  appendFileSync(file, text);
  if (n < count) setTimeout(tick, tickMs);
};
tick();
`;

interface Fixture {
  file: string;
  writer: Worker | null;
}

describeSourceConformance<Parameters<typeof fileTail.createTask>[0], Fixture>(fileTail, {
  setup: ({ dir }) => {
    mkdirSync(path.join(dir, 'logs'));
    return { file: path.join(dir, 'logs', 'app.log'), writer: null };
  },
  teardown: async ({ fixture }) => {
    await fixture.writer?.terminate();
  },
  configFor: ({ dir }) => ({ paths: [path.join(dir, 'logs', '*.log')], poll_interval: '100ms', batch_records: BATCH }),
  // 3000 lines, 50 every 30 ms: about 1.8 s of writing, started once and running through the restart.
  feed: async ({ fixture }, run) => {
    if (run !== 1) return;
    fixture.writer = new Worker(WRITER, { eval: true, workerData: { file: fixture.file, count: COUNT, perTick: 50, tickMs: 30 } });
  },
  expected: () => Array.from({ length: COUNT }, (_, n) => id(n)),
  recordId: (record) => record.value!.toString('utf8'),
  maxDuplicates: BATCH,
});

/**
 * The file sink against the connector conformance suite: its examples and docs, a restart
 * mid-stream, and a timely stop, in a real runtime on a real log, writing into the test's directory.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describeSinkConformance } from '../../test/conformance/suite.ts';
import { file } from './index.ts';

describeSinkConformance(file, {
  configFor: ({ dir }) => ({ path: path.join(dir, 'out', '{topic}', 'part-{partition}.jsonl') }),
  // Every line of every file under out/, rolled files included.
  readBack: async ({ dir }) => {
    const out = path.join(dir, 'out');
    let names: string[];
    try {
      names = (await fs.readdir(out, { recursive: true })).map(String);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const lines: string[] = [];
    for (const name of names.sort()) {
      const full = path.join(out, name);
      if (!(await fs.stat(full)).isFile()) continue;
      lines.push(...(await fs.readFile(full, 'utf8')).split('\n').filter((line) => line !== ''));
    }
    return lines;
  },
});

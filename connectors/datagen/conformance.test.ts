/**
 * The datagen source against the connector conformance suite: its examples and docs, a restart
 * mid-stream, and a timely stop, in a real runtime on a real log.
 */
import { describeSourceConformance } from '../../test/conformance/suite.ts';
import { datagen } from './index.ts';

const COUNT = 3000;

describeSourceConformance(datagen, {
  // 3000 events at 2000/s in polls of at most 100: a stream of about 1.5 s, long enough to stop mid-way.
  configFor: () => ({ preset: 'clickstream', count: COUNT, rate: 2000, seed: 42, batch_size: 100 }),
  // Event i carries seq i, so the ids are exactly 0..count-1.
  expected: () => Array.from({ length: COUNT }, (_, i) => String(i)),
  recordId: (record) => String((JSON.parse(record.value!.toString('utf8')) as { seq: number }).seq),
  maxDuplicates: 100,
});

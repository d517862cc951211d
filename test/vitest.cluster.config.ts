import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { CLUSTER_TESTS } from './vitest.config.ts';

/**
 * The worker-group and replicated-log tests, run after the rest of the suite and one file at a
 * time: each starts its own 3-node NATS cluster and measures takeover times, which must not depend
 * on what other test files happen to load the machine with.
 */
export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: CLUSTER_TESTS,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});

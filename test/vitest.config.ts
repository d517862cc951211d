import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/** Tests that run 3-node NATS clusters and assert failover times. */
export const CLUSTER_TESTS = ['core/cluster/**/*.test.ts', 'core/log/jetstream/**/*.test.ts', 'test/e2e-cluster.test.ts'];

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: ['core/**/*.test.ts', 'connectors/**/*.test.ts', 'test/**/*.test.ts'],
    // The worker-group and replicated-log tests run afterwards, one file at a time (see
    // vitest.cluster.config.ts): they time failovers, which other files' load would distort.
    exclude: [...CLUSTER_TESTS, '**/node_modules/**'],
    // Crash and recovery tests spawn real child processes and fsync real files.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});

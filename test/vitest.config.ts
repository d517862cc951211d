import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: ['core/**/*.test.ts', 'connectors/**/*.test.ts', 'test/**/*.test.ts'],
    // Crash and recovery tests spawn real child processes and fsync real files.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});

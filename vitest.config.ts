import { defineConfig } from 'vitest/config';

// test/unit/: pure functions, workflow code on the time-skipping test server with stub activities,
// and replays (`npm run test:unit`, under a minute). test/*.test.ts: integration tests that start
// real servers (Temporal, S3, the RunPod endpoint, Python workers), one file at a time on the
// 2-core CI machine. The workflow code is bundled once for the whole run.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/bundle-workflows.ts'],
    setupFiles: ['test/setup/runtime.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});

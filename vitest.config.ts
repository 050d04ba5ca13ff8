import { defineConfig } from 'vitest/config';

// Integration tests start real servers (Temporal, S3, the RunPod endpoint, Python workers):
// run files one at a time on the 2-core CI machine and give them room.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});

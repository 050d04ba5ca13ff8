// Vitest setup, once per test file (each runs in its own process): Temporal's runtime logs only
// warnings and errors, and serves the worker metrics on a free port (LORAFLOW_TEST_METRICS_URL),
// as worker.ts does with LORAFLOW_METRICS_ADDRESS.
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { freePort } from '../../testkit/services.js';

const port = await freePort();
process.env.LORAFLOW_TEST_METRICS_URL = `http://127.0.0.1:${port}/metrics`;
Runtime.install({
  logger: new DefaultLogger('WARN'),
  telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${port}`, countersTotalSuffix: true } } },
});

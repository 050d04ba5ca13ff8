// tsx runpod-local/cli.ts --port P --api-key K [--endpoint-id ID] [--workers N] -- <worker command...>
// Runs runpod-local in the foreground until Ctrl-C / SIGTERM, which stops every worker process.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { FaultConfig } from './faults.js';
import { startRunpodLocal } from './index.js';

const USAGE = `Usage: tsx runpod-local/cli.ts --port P --api-key K [options] -- <worker command...>

A local RunPod-serverless-compatible endpoint. It runs the worker command (an unmodified
runpod SDK worker, e.g. "python handler.py") as GPU worker processes and serves RunPod's
client API at http://HOST:PORT/v2/ENDPOINT_ID/{run,runsync,status,status-sync,stream,cancel,
retry,purge-queue,health}. Several endpoints on one server: use the library (endpoints option).

Options:
  --port P            port to listen on; 0 picks a free one (default: $RUNPOD_LOCAL_PORT or 8300)
  --host H            address to listen on (default 127.0.0.1)
  --api-key K         API key clients must send as "Authorization: Bearer K"
                      (default: $RUNPOD_API_KEY)
  --endpoint-id ID    endpoint id in the URLs (default: local)
  --workers N         a fixed number of worker processes (default 1)
  --min-workers N     workers kept even when idle (with --max-workers: autoscaling; default 0)
  --max-workers N     most workers started for queued jobs
  --idle-timeout-ms MS  an idle worker above --min-workers is stopped after this (default 5000)
  --concurrency N     jobs one worker is given at once (default 1)
  --execution-timeout-ms MS  endpoint execution timeout; 0 for none (default 600000)
  --job-retries N     requeues of a job whose worker died before it fails
                      (default: unlimited until the job's TTL, the costlier reading of the service)
  --heartbeat-timeout-ms MS  a worker without a ping this long is dead (default 30000; 0 never)
  --no-rate-limits    do not answer 429 beyond the service's per-endpoint rate and
                      concurrent-request limits
  --faults JSON       fault injection, e.g. '{"api":{"throttleRate":0.1}}' (see README; off by default)
  --result-ttl-ms MS  how long finished results stay readable (default 1800000)
  --cancel-grace-ms MS  how long a worker may keep a cancelled job before it is killed (default 5000)
  --cwd DIR           working directory of the workers
  -h, --help          show this help

Worker environment: RUNPOD_WEBHOOK_GET_JOB, RUNPOD_WEBHOOK_POST_OUTPUT, RUNPOD_WEBHOOK_POST_STREAM,
RUNPOD_WEBHOOK_PING, RUNPOD_POD_ID, RUNPOD_AI_API_KEY, RUNPOD_PING_INTERVAL=10000,
RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true, RUNPOD_SKIP_GPU_CHECK=true (other RUNPOD_* variables of
this process are not passed on).
`;

function fail(message: string): never {
  process.stderr.write(`runpod-local: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function int(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) fail(`--${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const dash = argv.indexOf('--');
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  const workerCommand = dash >= 0 ? argv.slice(dash + 1) : [];

  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'api-key': { type: 'string' },
        'endpoint-id': { type: 'string' },
        workers: { type: 'string' },
        'min-workers': { type: 'string' },
        'max-workers': { type: 'string' },
        'idle-timeout-ms': { type: 'string' },
        concurrency: { type: 'string' },
        'execution-timeout-ms': { type: 'string' },
        'job-retries': { type: 'string' },
        'heartbeat-timeout-ms': { type: 'string' },
        'no-rate-limits': { type: 'boolean' },
        faults: { type: 'string' },
        'result-ttl-ms': { type: 'string' },
        'cancel-grace-ms': { type: 'string' },
        cwd: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }

  const apiKey = values['api-key'] ?? process.env.RUNPOD_API_KEY;
  if (!apiKey) fail('an API key is required (--api-key or $RUNPOD_API_KEY)');
  const scaling = values['min-workers'] !== undefined || values['max-workers'] !== undefined;
  if (scaling && values.workers !== undefined) fail('--workers cannot be combined with --min-workers / --max-workers');
  const workers = int('workers', values.workers, 1);
  const minWorkers = int('min-workers', values['min-workers'], 0);
  const maxWorkers = int('max-workers', values['max-workers'], Math.max(minWorkers, 1));
  if (minWorkers > maxWorkers) fail('--min-workers must not exceed --max-workers');
  if ((scaling ? maxWorkers : workers) > 0 && workerCommand.length === 0) fail('a worker command is required after "--"');
  let faults: FaultConfig | undefined;
  if (values.faults !== undefined) {
    try {
      faults = FaultConfig.parse(JSON.parse(values.faults));
    } catch (err) {
      fail(`--faults: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const optional = (name: string, key: keyof typeof values) =>
    values[key] !== undefined ? int(name, values[key] as string, 0) : undefined;
  const tuning = Object.fromEntries(
    Object.entries({
      idleTimeoutMs: optional('idle-timeout-ms', 'idle-timeout-ms'),
      concurrency: optional('concurrency', 'concurrency'),
      executionTimeoutMs: optional('execution-timeout-ms', 'execution-timeout-ms'),
      jobRetries: optional('job-retries', 'job-retries'),
      heartbeatTimeoutMs: optional('heartbeat-timeout-ms', 'heartbeat-timeout-ms'),
    }).filter(([, v]) => v !== undefined),
  );

  // Logs go to stderr; stdout carries only the URL.
  const logger = pino({ name: 'runpod-local', level: process.env.LOG_LEVEL ?? 'info' }, pino.destination(2));
  const local = await startRunpodLocal({
    port: int('port', values.port ?? process.env.RUNPOD_LOCAL_PORT, 8300),
    ...(values.host !== undefined ? { host: values.host } : {}),
    apiKey,
    ...(values['endpoint-id'] !== undefined ? { endpointId: values['endpoint-id'] } : {}),
    workerCommand,
    ...(values.cwd !== undefined ? { workerCwd: values.cwd } : {}),
    ...(scaling ? { minWorkers, maxWorkers } : { workers }),
    ...tuning,
    ...(values['no-rate-limits'] ? { rateLimits: false as const } : {}),
    ...(faults ? { faults } : {}),
    resultTtlMs: int('result-ttl-ms', values['result-ttl-ms'], 30 * 60_000),
    cancelGraceMs: int('cancel-grace-ms', values['cancel-grace-ms'], 5_000),
    logger,
  }).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
  process.stdout.write(`${local.url}\n`);

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return; // already stopping; stop() SIGKILLs workers after its grace period
    stopping = true;
    logger.info(`${signal}: stopping`);
    local.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`runpod-local: stop failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

await main();

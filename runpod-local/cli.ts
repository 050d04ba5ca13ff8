// tsx runpod-local/cli.ts --port P --api-key K [--endpoint-id ID] [--workers N] -- <worker command...>
// Runs runpod-local in the foreground until Ctrl-C / SIGTERM, which stops every worker process.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { startRunpodLocal } from './index.js';

const USAGE = `Usage: tsx runpod-local/cli.ts --port P --api-key K [options] -- <worker command...>

A local RunPod-serverless-compatible endpoint. It runs the worker command (an unmodified
runpod SDK worker, e.g. "python handler.py") as GPU worker processes and serves RunPod's
client API at http://HOST:PORT/v2/ENDPOINT_ID/{run,status,cancel,health}.

Options:
  --port P            port to listen on; 0 picks a free one (default: $RUNPOD_LOCAL_PORT or 8300)
  --host H            address to listen on (default 127.0.0.1)
  --api-key K         API key clients must send as "Authorization: Bearer K"
                      (default: $RUNPOD_API_KEY)
  --endpoint-id ID    endpoint id in the URLs (default: local)
  --workers N         worker processes to keep running (default 1)
  --result-ttl-ms MS  how long finished results stay readable (default 1800000)
  --cancel-grace-ms MS  how long a worker may keep a cancelled job before it is killed (default 5000)
  --cwd DIR           working directory of the workers
  -h, --help          show this help

Worker environment: RUNPOD_WEBHOOK_GET_JOB, RUNPOD_WEBHOOK_POST_OUTPUT, RUNPOD_WEBHOOK_POST_STREAM,
RUNPOD_WEBHOOK_PING, RUNPOD_POD_ID, RUNPOD_AI_API_KEY, RUNPOD_PING_INTERVAL=1000,
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
  const workers = int('workers', values.workers, 1);
  if (workers > 0 && workerCommand.length === 0) fail('a worker command is required after "--"');

  // Logs go to stderr; stdout carries only the URL.
  const logger = pino({ name: 'runpod-local', level: process.env.LOG_LEVEL ?? 'info' }, pino.destination(2));
  const local = await startRunpodLocal({
    port: int('port', values.port ?? process.env.RUNPOD_LOCAL_PORT, 8300),
    ...(values.host !== undefined ? { host: values.host } : {}),
    apiKey,
    ...(values['endpoint-id'] !== undefined ? { endpointId: values['endpoint-id'] } : {}),
    workerCommand,
    ...(values.cwd !== undefined ? { workerCwd: values.cwd } : {}),
    workers,
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

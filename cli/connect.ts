// A Temporal client for the CLI, with the error a user can act on when the stack is down.
import { Client, Connection } from '@temporalio/client';
import { dataConverterFor } from '../lib/codec.js';
import type { Config } from '../lib/config.js';
import { temporalConnectionOptions } from '../lib/temporal-connection.js';

export async function connect(config: Config): Promise<Client> {
  const options = temporalConnectionOptions(config); // a bad TLS file is named, not taken for a stack that is down
  try {
    const connection = await Connection.connect({ ...options, connectTimeout: 3_000 });
    return new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: dataConverterFor(config) });
  } catch {
    throw new CliError(`cannot reach Temporal at ${config.TEMPORAL_ADDRESS}: is the stack running? Start it with \`make dev\` (or set TEMPORAL_ADDRESS)`);
  }
}

/** An error whose message is the whole story: printed without a stack trace, exit code 1. Its
 * `reason` lets the HTTP API answer 404, 409 or 400 for the same failure. */
export class CliError extends Error {
  constructor(message: string, readonly reason: 'not-found' | 'conflict' | 'invalid' = 'invalid') {
    super(message);
  }
}

export const webUiLink = (config: Config, workflowId: string) =>
  `http://127.0.0.1:${config.TEMPORAL_UI_PORT}/namespaces/${config.TEMPORAL_NAMESPACE}/workflows/${encodeURIComponent(workflowId)}`;

// How loraflow connects to Temporal: in the clear on the local stack (127.0.0.1); for a team's
// server over TLS, with a client certificate (mTLS, a self-hosted server) and/or an API key
// (Temporal Cloud, or a self-hosted server whose authorizer reads the Authorization header).
// The worker and the CLI both take their options from here.
import { readFileSync } from 'node:fs';
import type { Config } from './config.js';

type TemporalConfig = Pick<Config, 'TEMPORAL_ADDRESS' | 'TEMPORAL_TLS' | 'TEMPORAL_TLS_CERT' | 'TEMPORAL_TLS_KEY' | 'TEMPORAL_TLS_CA' | 'TEMPORAL_TLS_SERVER_NAME' | 'TEMPORAL_API_KEY'>;

export interface TemporalConnectionOptions {
  address: string;
  tls?: { clientCertPair?: { crt: Buffer; key: Buffer }; serverRootCACertificate?: Buffer; serverNameOverride?: string };
  apiKey?: string;
}

/** Options for Connection.connect and NativeConnection.connect; a file that cannot be read is named. */
export function temporalConnectionOptions(config: TemporalConfig): TemporalConnectionOptions {
  const read = (variable: keyof TemporalConfig) => {
    const file = config[variable] as string;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`config: ${variable}=${file} cannot be read: ${(err as Error).message}`);
    }
  };
  if (!!config.TEMPORAL_TLS_CERT !== !!config.TEMPORAL_TLS_KEY) throw new Error('config: TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (the client certificate and its key)');
  const tlsOn = config.TEMPORAL_TLS || !!config.TEMPORAL_TLS_CERT || !!config.TEMPORAL_TLS_CA || !!config.TEMPORAL_API_KEY;
  if (!tlsOn) return { address: config.TEMPORAL_ADDRESS };
  return {
    address: config.TEMPORAL_ADDRESS,
    tls: {
      ...(config.TEMPORAL_TLS_CERT ? { clientCertPair: { crt: read('TEMPORAL_TLS_CERT'), key: read('TEMPORAL_TLS_KEY') } } : {}),
      ...(config.TEMPORAL_TLS_CA ? { serverRootCACertificate: read('TEMPORAL_TLS_CA') } : {}),
      ...(config.TEMPORAL_TLS_SERVER_NAME ? { serverNameOverride: config.TEMPORAL_TLS_SERVER_NAME } : {}),
    },
    ...(config.TEMPORAL_API_KEY ? { apiKey: config.TEMPORAL_API_KEY } : {}),
  };
}

/**
 * Connects, waiting while the server does not answer yet (a worker started with its server, or
 * while the server restarts): a worker that exits instead leaves every pipeline stalled until
 * someone starts it again. Each refused attempt is reported; the wait grows to 10 s.
 */
export async function connectPatiently<T>(connect: () => Promise<T>, onRetry: (err: unknown, attempt: number) => void, sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect();
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('config:')) throw err;
      onRetry(err, attempt);
      await sleep(Math.min(10_000, 250 * 2 ** Math.min(attempt, 6)));
    }
  }
}

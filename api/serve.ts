// `loraflow serve`: the API server in the foreground until Ctrl-C, against the configured Temporal
// and S3 (the same settings as the CLI and the worker).
import { connect } from '../cli/connect.js';
import { loadConfig } from '../lib/config.js';
import { parseTokenHashes } from './auth.js';
import { startApiServer } from './server.js';

export async function runServe(opts: { host?: string; port?: number; json?: boolean }): Promise<void> {
  const config = loadConfig();
  const tokenHashes = parseTokenHashes(config.LORAFLOW_API_TOKENS);
  const client = await connect(config);
  const server = await startApiServer({ client, config, tokenHashes, ...(opts.host ? { host: opts.host } : {}), ...(opts.port !== undefined ? { port: opts.port } : {}) });
  console.error(`loraflow api on ${server.url} (OpenAPI: ${server.url}/openapi.json, RunPod gateway: ${server.url}/v2); ${tokenHashes.length} token(s) accepted`);
  if (opts.json) console.log(JSON.stringify({ url: server.url, openapi: `${server.url}/openapi.json`, gateway: `${server.url}/v2` }));
  const stop = async () => {
    await server.close();
    await client.connection.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  await new Promise(() => {});
}

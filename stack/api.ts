// The local stack's `loraflow serve`: in-process, on LORAFLOW_API_PORT, accepting `local-dev-token`
// unless LORAFLOW_API_TOKENS names tokens (and saying so, since that token is public).
import { LOCAL_DEV_TOKEN, parseTokenHashes, tokenHash } from '../api/auth.js';
import { startApiServer } from '../api/server.js';
import { connect } from '../cli/connect.js';
import type { Config } from '../lib/config.js';

export async function startStackApi(config: Config, say: (msg: string) => void) {
  const tokenHashes = config.LORAFLOW_API_TOKENS ? parseTokenHashes(config.LORAFLOW_API_TOKENS) : [tokenHash(LOCAL_DEV_TOKEN)];
  say(`starting the loraflow API on ${config.LORAFLOW_API_HOST}:${config.LORAFLOW_API_PORT}${config.LORAFLOW_API_TOKENS ? '' : ` (bearer token "${LOCAL_DEV_TOKEN}": local development only)`}`);
  const client = await connect(config);
  const server = await startApiServer({ client, config, tokenHashes });
  return {
    url: server.url,
    /** The token the local stack accepts, when LORAFLOW_API_TOKENS does not name others. */
    token: config.LORAFLOW_API_TOKENS ? undefined : LOCAL_DEV_TOKEN,
    async stop() {
      await server.close();
      await client.connection.close();
    },
  };
}

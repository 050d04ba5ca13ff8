// `loraflow serve`: the HTTP API (/v1), the RunPod-shaped gateway (/v2) and /openapi.json on one
// Hono app. Every route needs a bearer token; bodies are size-capped before they are read.
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Client } from '@temporalio/client';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Config } from '../lib/config.js';
import { makeStorage } from '../lib/s3.js';
import { bearerAuth } from './auth.js';
import type { ApiDeps } from './context.js';
import { errorResponse } from './errors.js';
import { gatewayRoutes, GATEWAY_LIMITS } from './gateway/routes.js';
import { openApiDocument } from './openapi.js';
import { trainingRoutes } from './routes/trainings.js';
import { generationRoutes } from './routes/generations.js';
import { loraRoutes } from './routes/loras.js';
import { scheduleRoutes } from './routes/schedules.js';
import { uploadRoutes } from './routes/uploads.js';

const tooLarge = (max: number) => bodyLimit({ maxSize: max, onError: (c) => c.json({ error: { code: 'payload_too_large', message: `request body over ${max} bytes` } }, 413) });

export function createApp(deps: ApiDeps, tokenHashes: string[]): Hono {
  const app = new Hono();
  app.onError(errorResponse);
  app.notFound((c) => c.json({ error: { code: 'not_found', message: `no route ${c.req.method} ${c.req.path}` } }, 404));
  app.use('*', bearerAuth(tokenHashes));
  app.use('/v1/*', tooLarge(deps.config.LORAFLOW_API_MAX_BODY_BYTES));
  // RunPod's own payload limits: /run 10 MB, /runsync 20 MB.
  app.use('/v2/:endpointId/run', tooLarge(GATEWAY_LIMITS.run));
  app.use('/v2/:endpointId/runsync', tooLarge(GATEWAY_LIMITS.runsync));
  app.get('/openapi.json', (c) => c.json(openApiDocument()));
  app.route('/v1/uploads', uploadRoutes(deps));
  app.route('/v1/trainings', trainingRoutes(deps));
  app.route('/v1/schedules', scheduleRoutes(deps));
  app.route('/v1/loras', loraRoutes(deps));
  app.route('/v1/generations', generationRoutes(deps));
  app.route('/v2', gatewayRoutes(deps));
  return app;
}

export interface ApiServer {
  url: string;
  close(): Promise<void>;
}

export async function startApiServer(opts: { client: Client; config: Config; tokenHashes: string[]; host?: string; port?: number }): Promise<ApiServer> {
  const deps: ApiDeps = { client: opts.client, config: opts.config, storage: makeStorage(opts.config) };
  const app = createApp(deps, opts.tokenHashes);
  const host = opts.host ?? opts.config.LORAFLOW_API_HOST;
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: opts.port ?? opts.config.LORAFLOW_API_PORT }, () => resolve(s));
    s.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () => new Promise((resolve) => {
      // SSE streams stay open: close them too, or close() waits for runs to finish.
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

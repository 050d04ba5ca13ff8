// versitygw on a local directory: a real S3 API that checks SigV4 signatures, presigned URLs included.
import { mkdirSync } from 'node:fs';
import { ensureBucket, makeStorage, type Storage } from '../lib/s3.js';
import type { Config } from '../lib/config.js';
import { toolchain } from '../lib/toolchain.js';
import { type Service, spawnService, stopService, waitUntilReady } from './services.js';

export async function startS3Server(opts: { port: number; dir: string; logDir: string; config: Config; env?: NodeJS.ProcessEnv }): Promise<{ service: Service; storage: Storage; endpoint: string }> {
  mkdirSync(opts.dir, { recursive: true });
  const { config } = opts;
  const service = spawnService('s3', toolchain.versitygw(), ['--port', `127.0.0.1:${opts.port}`, '--quiet', 'posix', opts.dir], {
    logDir: opts.logDir,
    env: { ...(opts.env ?? process.env), ROOT_ACCESS_KEY: config.AWS_ACCESS_KEY_ID, ROOT_SECRET_KEY: config.AWS_SECRET_ACCESS_KEY },
  });
  const endpoint = `http://127.0.0.1:${opts.port}`;
  const storage = makeStorage({ ...config, LORAFLOW_S3_ENDPOINT: endpoint });
  await waitUntilReady(service, async () => (await ensureBucket(storage), true)).catch(async (err: unknown) => {
    await stopService(service);
    throw err;
  });
  return { service, storage, endpoint };
}

// /v1/loras: published LoRAs and their versions, read from S3 (loras/<name>/<version>/), each file
// as a short-lived presigned URL.
import { Hono } from 'hono';
import { LoraName, type LatestPublished, type LoraMetadata } from '../../contract/pipeline.js';
import { latestKey, METADATA_KEY } from '../../lib/keys.js';
import { getBytesIfExists, getJson, listKeys, presignGet } from '../../lib/s3.js';
import { type ApiDeps, expiresAt } from '../context.js';
import { ApiError, parse } from '../errors.js';

export function loraRoutes({ storage, config }: ApiDeps): Hono {
  const seconds = config.LORAFLOW_API_URL_SECONDS;
  const presigned = async (name: string, key: string) => ({ name, url: await presignGet(storage, key, seconds), expiresAt: expiresAt(seconds) });
  return new Hono()
    .get('/', async (c) => {
      const latest = (await listKeys(storage, 'loras/')).filter((k) => /^loras\/[^/]+\/latest\.json$/.test(k));
      const loras = await Promise.all(latest.map(async (k) => getJson<LatestPublished>(storage, k)));
      return c.json({ loras: loras.map((l) => ({ name: l.name, latestVersion: l.version })) });
    })
    .get('/:name/versions', async (c) => {
      const name = parse(LoraName, c.req.param('name'), 'name');
      if (!(await getBytesIfExists(storage, latestKey(name)))) throw new ApiError(404, 'not_found', `no published LoRA named ${name}`);
      const keys = (await listKeys(storage, `loras/${name}/`)).filter((k) => METADATA_KEY.exec(k)?.[1] === name);
      const versions = await Promise.all(
        keys.map(async (k) => {
          const m = await getJson<LoraMetadata>(storage, k);
          const prefix = k.replace(/metadata\.json$/, '');
          return { version: m.version, sha256: m.lora.sha256, bytes: m.lora.bytes, steps: m.metrics.steps, files: [await presigned('lora.safetensors', `${prefix}lora.safetensors`), await presigned('metadata.json', k)] };
        }),
      );
      return c.json({ name, versions: versions.sort((a, b) => b.version.localeCompare(a.version)) });
    });
}

// Files generated from one source must match it: the GPU contract's JSON Schemas (from the zod
// contract), the API's OpenAPI document (from its zod schemas) and docs/configuration.md (from the
// config schema). Regenerate with `make contract`.
import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { OPENAPI_FILE, renderOpenApi } from '../../api/openapi.js';
import { renderSchemas } from '../../contract/generate-schema.js';
import { loadConfig } from '../../lib/config.js';
import { CONFIGURATION_DOC, renderConfigurationDoc } from '../../scripts/generate-docs.js';

describe('generated files', () => {
  it('contract/schema/*.json match the zod contract', () => {
    for (const [file, text] of Object.entries(renderSchemas())) {
      expect(readFileSync(new URL(`../../contract/schema/${file}`, import.meta.url), 'utf8'), `contract/schema/${file} is stale: run make contract`).toBe(text);
    }
  });
  it('api/openapi.json matches the API\'s zod schemas and is a valid OpenAPI 3.1 document', async () => {
    const text = readFileSync(OPENAPI_FILE, 'utf8');
    expect(text, 'api/openapi.json is stale: run make contract').toBe(renderOpenApi());
    const validator = new Validator();
    const result = await validator.validate(JSON.parse(text));
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1'); // checked against the 3.1 schema, not an older one
  });
  it('docs/configuration.md matches lib/config.ts', () => {
    expect(readFileSync(CONFIGURATION_DOC, 'utf8'), 'docs/configuration.md is stale: run make contract').toBe(renderConfigurationDoc());
  });
});

describe('config', () => {
  it('names the bad variable and never prints a secret', () => {
    expect(() => loadConfig({ LORAFLOW_POLL_MS: 'soon' })).toThrow(/^config: LORAFLOW_POLL_MS="soon": /);
    expect(() => loadConfig({ HF_TOKEN: 'not-a-token' })).toThrow(/^config: HF_TOKEN=<redacted>: a Hugging Face access token starts with "hf_"/);
    expect(() => loadConfig({ LORAFLOW_S3_ENDPOINT: 'http://user:pw@' })).toThrow(/LORAFLOW_S3_ENDPOINT/);
  });
});

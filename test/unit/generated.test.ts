// Files generated from one source must match it: the GPU contract's JSON Schemas (from the zod
// contract) and docs/configuration.md (from the config schema). Regenerate with `make contract`.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderSchemas } from '../../contract/generate-schema.js';
import { loadConfig } from '../../lib/config.js';
import { CONFIGURATION_DOC, renderConfigurationDoc } from '../../scripts/generate-docs.js';

describe('generated files', () => {
  it('contract/schema/*.json match the zod contract', () => {
    for (const [file, text] of Object.entries(renderSchemas())) {
      expect(readFileSync(new URL(`../../contract/schema/${file}`, import.meta.url), 'utf8'), `contract/schema/${file} is stale: run make contract`).toBe(text);
    }
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

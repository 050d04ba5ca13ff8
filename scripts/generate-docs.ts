// Writes docs/configuration.md from the config schema (lib/config.ts), the one place each setting
// and its default are written. With --check it only compares (test/unit/generated.test.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeConfig } from '../lib/config.js';

export const CONFIGURATION_DOC = new URL('../docs/configuration.md', import.meta.url);

export function renderConfigurationDoc(): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const rows = describeConfig().map((v) => `| \`${v.name}\` | ${v.default === undefined ? 'unset' : v.secret ? '(local stack only)' : v.default === '' ? 'empty' : `\`${cell(v.default)}\``} | ${cell(v.description)} |`);
  return [
    '# Configuration',
    '',
    '<!-- Generated from lib/config.ts by `npm run docs`; a test fails when this file is stale. -->',
    '',
    'Every setting is an environment variable, read and checked in one place (`lib/config.ts`): a bad',
    'value stops the process with the variable\'s name (secrets are not printed). The defaults run the',
    'local stack; production points the same variables at Temporal, RunPod and any S3.',
    '',
    '| variable | default | what |',
    '| --- | --- | --- |',
    ...rows,
    '',
    'The GPU worker (Python) reads its own few variables in `gpu-worker/settings.py`;',
    '`LORAFLOW_CAPTIONER` is read by both sides. `make setup`\'s tool paths can be overridden with',
    '`LORAFLOW_TEMPORAL_BIN`, `LORAFLOW_TEMPORAL_TEST_SERVER`, `LORAFLOW_VERSITYGW_BIN`, `LORAFLOW_PYTHON`',
    'and `LORAFLOW_MODEL_DIR` (`lib/toolchain.ts`), and its cache directory with `LORAFLOW_CACHE`.',
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = renderConfigurationDoc();
  if (!process.argv.includes('--check')) writeFileSync(CONFIGURATION_DOC, text);
  else if (readFileSync(CONFIGURATION_DOC, 'utf8') !== text) {
    console.error('docs/configuration.md is stale: run npm run docs');
    process.exit(1);
  }
}

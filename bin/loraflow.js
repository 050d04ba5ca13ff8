#!/usr/bin/env node
// `npx loraflow …`: runs client.ts through tsx, so the CLI needs no build step.
import { register } from 'tsx/esm/api';

register();
await import('../client.ts');

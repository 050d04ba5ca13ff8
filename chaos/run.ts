// `make chaos` (full) or `make chaos QUICK=1`: prints the table, writes data/chaos-report.json,
// exits 1 when a target is missed.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatReport } from './audit.js';
import { FULL, QUICK, runChaos } from './suite.js';

const quick = process.argv.includes('--quick') || process.env.QUICK === '1';
const report = await runChaos({ ...(quick ? QUICK : FULL), say: (line) => console.error(line) });
console.log(formatReport(report));
mkdirSync('data', { recursive: true });
writeFileSync(path.join('data', 'chaos-report.json'), JSON.stringify(report, null, 2));
process.exit(report.ok ? 0 : 1);

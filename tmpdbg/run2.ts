import { runChaos, QUICK } from '../chaos/suite.js';
import { formatReport } from '../chaos/audit.js';
const r = await runChaos({ ...QUICK, timeoutMs: 100_000, say: (l) => console.log(new Date().toISOString().slice(11,19), l) });
console.log(formatReport(r));

import { proxyActivities, sleep } from '@temporalio/workflow';
const { flaky } = proxyActivities<{ flaky(): Promise<string> }>({ startToCloseTimeout: '1 minute', retry: { initialInterval: '30 seconds', maximumAttempts: 4 } });
export async function sleeper(): Promise<string> { await sleep('1 hour'); return 'slept'; }
export async function retrier(): Promise<string> { return flaky(); }

// The keep-alive pace of waiting GPU stages (lib/keep-alive.ts): every 2 s while few wait, about
// 100 a second in all for many, never past 10 s (a third of the 30 s heartbeat timeout).
import { describe, expect, it } from 'vitest';
import { KeepAlivePacer, keepAliveEveryMs } from '../../lib/keep-alive.js';

describe('keep-alive pace', () => {
  it('spreads many waiting stages to about 100 heartbeats a second, within 2–10 s each', () => {
    expect([0, 1, 200, 500, 1_000, 10_000].map((n) => keepAliveEveryMs(n))).toEqual([2_000, 2_000, 2_000, 5_000, 10_000, 10_000]);
  });

  it('counts the stages waiting now, each leaving once', () => {
    const pacer = new KeepAlivePacer({ minMs: 1, maxMs: 10_000, perSecond: 1 });
    const [a, b] = [pacer.enter(), pacer.enter()];
    expect(pacer.everyMs()).toBe(2_000);
    a();
    a(); // a second call does not count another stage out
    expect(pacer.everyMs()).toBe(1_000);
    b();
    expect(pacer.everyMs()).toBe(1);
  });
});

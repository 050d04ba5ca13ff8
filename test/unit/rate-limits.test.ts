// runpod-local's limiter (runpod-local/faults.ts) on a clock of its own: RunPod's documented
// per-endpoint defaults (2,000 status requests per 10 s, 400 at once, a held /status-sync
// counting as one) bite exactly at the limit, and its counts say what it admitted and refused.
import { describe, expect, it } from 'vitest';
import { RateLimiter, RUNPOD_RATE_LIMITS } from '../../runpod-local/faults.js';

describe('runpod-local RateLimiter with the service’s limits', () => {
  it('admits 2,000 status requests per sliding 10 s window and refuses the next', () => {
    const l = new RateLimiter(RUNPOD_RATE_LIMITS);
    const t0 = 1_000_000;
    for (let i = 0; i < 2_000; i++) l.admit(i % 2 ? 'status' : 'status-sync', t0 + i)!();
    expect(l.admit('status', t0 + 5_000)).toBeUndefined();
    expect(l.admit('status-sync', t0 + 9_999)).toBeUndefined();
    // The first request leaves the window 10 s after it came.
    expect(l.admit('status', t0 + 10_000)).toBeTypeOf('function');
    expect(l.stats('status')).toMatchObject({ admitted: 2_001, refusedRate: 2, refusedConcurrency: 0, maxPerWindow: 2_000, limitPerWindow: 2_000, limitConcurrent: 400 });
    expect(l.stats('status').maxPerSecond).toBe(1_000); // t0 .. t0+999 fall in at most two clock seconds
    expect(l.admit('run', t0 + 10_001)).toBeTypeOf('function'); // other operations have their own
  });

  it('counts a held long-poll as a concurrent status request: the 401st is refused until one returns', () => {
    const l = new RateLimiter(RUNPOD_RATE_LIMITS);
    const held = Array.from({ length: 400 }, (_, i) => l.admit('status-sync', i * 20)!);
    expect(l.open('status')).toBe(400);
    expect(l.admit('status', 9_000)).toBeUndefined();
    held[0]!();
    expect(l.admit('status', 9_001)).toBeTypeOf('function');
    expect(l.stats('status-sync')).toMatchObject({ maxInFlight: 400, refusedConcurrency: 1 });
    l.resetStats();
    expect(l.stats('status')).toMatchObject({ admitted: 0, refusedConcurrency: 0, maxInFlight: 400 });
  });
});

// Which addresses a dataset URL may not point at (the fetch itself is tested in test/activities.test.ts).
import { describe, expect, it } from 'vitest';
import { isInternalAddress } from '../../lib/url-guard.js';

describe('isInternalAddress', () => {
  it('refuses loopback, private, link-local and mapped internal addresses; allows public ones', () => {
    for (const address of ['10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '127.0.0.1', '::1', 'fd00::1', '::ffff:127.0.0.1']) expect(isInternalAddress(address), address).toBe(true);
    for (const address of ['8.8.8.8', '2606:4700::1111']) expect(isInternalAddress(address), address).toBe(false);
  });
});

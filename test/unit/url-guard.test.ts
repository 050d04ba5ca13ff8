// Which addresses a dataset URL may not point at (the fetch itself is tested in
// test/dataset-sources.test.ts): fixed cases, and a property over every IPv6 form that carries an
// IPv4 address (mapped, compatible, NAT64, 6to4), written in hex as a URL parser normalises it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isInternalAddress, resolveFetchable } from '../../lib/url-guard.js';

const hex = (a: number, b: number) => ((a << 8) | b).toString(16);
const forms = ([a, b, c, d]: number[]) => [
  `::ffff:${a}.${b}.${c}.${d}`,
  `::ffff:${hex(a!, b!)}:${hex(c!, d!)}`,
  `64:ff9b::${hex(a!, b!)}:${hex(c!, d!)}`,
  `64:ff9b::${a}.${b}.${c}.${d}`,
  `2002:${hex(a!, b!)}:${hex(c!, d!)}::1`,
];
const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet);
/** An address inside one of the internal IPv4 ranges. */
const internalV4 = fc.oneof(
  fc.tuple(fc.constant(127), octet, octet, octet),
  fc.tuple(fc.constant(10), octet, octet, octet),
  fc.tuple(fc.constant(172), fc.integer({ min: 16, max: 31 }), octet, octet),
  fc.tuple(fc.constant(192), fc.constant(168), octet, octet),
  fc.tuple(fc.constant(169), fc.constant(254), octet, octet),
  fc.tuple(fc.constant(100), fc.integer({ min: 64, max: 127 }), octet, octet),
  fc.tuple(fc.constant(0), octet, octet, octet),
);

describe('isInternalAddress', () => {
  it('refuses loopback, private, link-local and mapped internal addresses; allows public ones', () => {
    for (const address of ['10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '127.0.0.1', '::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '64:ff9b::7f00:1', '64:ff9b:1::1', '2002:a9fe:a9fe::', '2001::1', '::']) {
      expect(isInternalAddress(address), address).toBe(true);
    }
    for (const address of ['8.8.8.8', '2606:4700::1111', '64:ff9b::808:808']) expect(isInternalAddress(address), address).toBe(false);
  });

  it('sees an internal IPv4 address through every IPv6 form that carries one', () => {
    fc.assert(
      fc.property(internalV4, (v4) => {
        expect(isInternalAddress(v4.join('.'))).toBe(true);
        for (const form of forms(v4)) expect(isInternalAddress(form), form).toBe(true);
      }),
      { numRuns: 2000 },
    );
    // ... and judges a public one the same way whichever form it takes.
    fc.assert(
      fc.property(ipv4, (v4) => {
        const verdict = isInternalAddress(v4.join('.'));
        for (const form of forms(v4)) expect(isInternalAddress(form), form).toBe(verdict);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('resolveFetchable', () => {
  const resolveTo = (address: string) => async () => [{ address, family: (address.includes(':') ? 6 : 4) as 4 | 6 }];
  it('returns the address it checked, and allows http only on loopback where internal addresses are', async () => {
    expect(await resolveFetchable(new URL('https://example.test/a.zip'), { allowInternal: false, resolve: resolveTo('93.184.216.34') })).toEqual({ address: '93.184.216.34', family: 4 });
    await expect(resolveFetchable(new URL('https://example.test/a.zip'), { allowInternal: false, resolve: resolveTo('10.0.0.1') })).rejects.toThrow(/internal address \(10\.0\.0\.1\)/);
    await expect(resolveFetchable(new URL('http://example.test/a.zip'), { allowInternal: true, resolve: resolveTo('93.184.216.34') })).rejects.toThrow(/plain http/);
    expect(await resolveFetchable(new URL('http://localhost:9/a.zip'), { allowInternal: true, resolve: resolveTo('127.0.0.1') })).toMatchObject({ address: '127.0.0.1' });
    await expect(resolveFetchable(new URL('ftp://example.test/a.zip'), { allowInternal: true })).rejects.toThrow(/ftp: URLs are not supported/);
    await expect(resolveFetchable(new URL('https://u:p@example.test/a.zip'), { allowInternal: false, resolve: resolveTo('93.184.216.34') })).rejects.toThrow(/credentials in the URL/);
  });
});

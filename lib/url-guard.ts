// Dataset URLs are fetched by the worker, inside the operator's network: refuse loopback,
// private, link-local and other internal addresses (also when written inside an IPv6 address:
// mapped, NAT64, 6to4) unless local development explicitly allows them. The host is resolved once
// here, and the download connects to the address that was checked (lib/pinned-download.ts): a
// name that resolves elsewhere the second time (DNS rebinding) is never asked again.
import { lookup } from 'node:dns/promises';
import net from 'node:net';

const internalV4 = new net.BlockList();
for (const [address, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) internalV4.addSubnet(address, prefix, 'ipv4');

const internalV6 = new net.BlockList();
for (const [address, prefix] of [
  ['::', 128], ['::1', 128], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 32], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const) internalV6.addSubnet(address, prefix, 'ipv6');

/** The 16 bytes of an IPv6 address (a trailing dotted quad allowed), or undefined when it is not one. */
function ipv6Bytes(address: string): number[] | undefined {
  if (!net.isIPv6(address)) return undefined;
  let text = address.replace(/%.*$/, '');
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) text = text.slice(0, quad.index) + [((+quad[1]! << 8) | +quad[2]!).toString(16), ((+quad[3]! << 8) | +quad[4]!).toString(16)].join(':');
  const [head = '', tail] = text.split('::') as [string, string | undefined];
  const groups = (s: string) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

/** The IPv4 address an IPv6 one carries by a standard translation (mapped, compatible, NAT64, 6to4). */
function embeddedIpv4(b: number[]): string | undefined {
  const zeros = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  const v4 = (at: number) => b.slice(at, at + 4).join('.');
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12); // ::ffff:a.b.c.d
  if (zeros(0, 12) && !zeros(12, 15)) return v4(12); // ::a.b.c.d (deprecated "compatible")
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return v4(12); // 64:ff9b::/96
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2); // 2002::/16
  return undefined;
}

export function isInternalAddress(address: string): boolean {
  if (net.isIPv4(address)) return internalV4.check(address, 'ipv4');
  const bytes = ipv6Bytes(address);
  if (!bytes) return true; // not an address at all: nothing to connect to safely
  const v4 = embeddedIpv4(bytes);
  if (v4) return internalV4.check(v4, 'ipv4');
  return internalV6.check(address.replace(/%.*$/, ''), 'ipv6');
}

const isLoopback = (address: string) => /^127\./.test(address) || address === '::1' || /^::ffff:127\./i.test(address);

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}
/** Name → addresses; the system resolver unless a test supplies one. */
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;
export const systemResolver: Resolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

/**
 * The one address a dataset URL may be fetched from: https only (plain http only on loopback, and
 * only where LORAFLOW_ALLOW_PRIVATE_URLS allows internal addresses), and every address the host
 * resolves to public unless internal ones are allowed. Throws an Error that says what to change.
 */
export async function resolveFetchable(url: URL, opts: { allowInternal: boolean; resolve?: Resolver }): Promise<ResolvedAddress> {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`${url.protocol} URLs are not supported: use https://`);
  if (url.username || url.password) throw new Error('credentials in the URL are not supported: use a presigned URL');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses: ResolvedAddress[] = net.isIP(host) ? [{ address: host, family: net.isIPv6(host) ? 6 : 4 }] : await (opts.resolve ?? systemResolver)(host);
  if (!addresses.length) throw new Error(`${url.host} does not resolve to any address`);
  const blocked = addresses.filter((a) => isInternalAddress(a.address));
  if (blocked.length && !opts.allowInternal) {
    throw new Error(`${url.host} resolves to an internal address (${blocked.map((a) => a.address).join(', ')}); set LORAFLOW_ALLOW_PRIVATE_URLS=true to allow it for local development`);
  }
  const chosen = addresses[0]!;
  if (url.protocol === 'http:' && !(opts.allowInternal && isLoopback(chosen.address))) {
    throw new Error('plain http:// is refused (anyone on the path could change the dataset): use https:// (http is allowed only on loopback with LORAFLOW_ALLOW_PRIVATE_URLS=true)');
  }
  return chosen;
}

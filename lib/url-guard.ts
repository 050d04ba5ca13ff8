// Dataset URLs are fetched by the worker, inside the operator's network: refuse loopback,
// private, link-local and other internal addresses unless local development explicitly allows it.
import { lookup } from 'node:dns/promises';
import net from 'node:net';

const internal = new net.BlockList();
for (const [address, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) internal.addSubnet(address, prefix, 'ipv4');
for (const [address, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) internal.addSubnet(address, prefix, 'ipv6');

export function isInternalAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return isInternalAddress(mapped);
  return internal.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
}

/** Throws unless every address the URL's host resolves to is public (or internal ones are allowed). */
export async function assertFetchable(url: URL, allowInternal: boolean): Promise<void> {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`${url.protocol} URLs are not supported: use https://`);
  if (allowInternal) return;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses = net.isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
  const blocked = addresses.filter(isInternalAddress);
  if (blocked.length) {
    throw new Error(`${url.host} resolves to an internal address (${blocked.join(', ')}); set LORAFLOW_ALLOW_PRIVATE_URLS=true to allow it for local development`);
  }
}

/**
 * Which addresses a server-side fetch may reach. Everything that is not plain global
 * unicast is refused: loopback, unspecified, private, link-local (the cloud metadata
 * address 169.254.169.254 among them), CGNAT, multicast, broadcast, reserved and
 * benchmarking ranges, IPv6 unique-local and site-local, and IPv6 forms that embed an IPv4
 * address (IPv4-mapped, -compatible, NAT64, 6to4, Teredo) unless the embedded address is
 * itself allowed. An operator can open chosen networks with KLEIN_ALLOW_NETWORKS.
 */
import ipaddr from 'ipaddr.js';

export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

export class AllowListError extends Error {}

/** Parses `127.0.0.0/8, ::1/128` (commas or spaces). A bare address means a single host. */
export function parseAllowNetworks(list: string): Cidr[] {
  const out: Cidr[] = [];
  for (const item of list.split(/[\s,]+/).filter(Boolean)) {
    try {
      if (item.includes('/')) out.push(ipaddr.parseCIDR(item));
      else {
        const a = ipaddr.parse(item);
        out.push([a, a.kind() === 'ipv4' ? 32 : 128]);
      }
    } catch {
      throw new AllowListError(`KLEIN_ALLOW_NETWORKS: "${item}" is not an address or CIDR (e.g. 127.0.0.0/8)`);
    }
  }
  return out;
}

function inAllowList(a: ipaddr.IPv4 | ipaddr.IPv6, allow: Cidr[]): boolean {
  return allow.some(([net, bits]) => net.kind() === a.kind() && a.match([net, bits] as never));
}

/** Normalises an IPv6 address that embeds IPv4 (mapped, compatible) to the IPv4 address. */
function embeddedV4(a: ipaddr.IPv6): ipaddr.IPv4 | null {
  if (a.isIPv4MappedAddress()) return a.toIPv4Address();
  const p = a.parts;
  // ::a.b.c.d (IPv4-compatible, deprecated)
  if (p.slice(0, 6).every((x) => x === 0) && (p[6] !== 0 || (p[7] ?? 0) > 1)) {
    return ipaddr.fromByteArray(a.toByteArray().slice(12)) as ipaddr.IPv4;
  }
  return null;
}

/** Returns null when the address may be reached, or the reason it may not. */
export function addressBlockReason(address: string, allow: Cidr[]): string | null {
  let a: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    a = ipaddr.parse(address);
  } catch {
    return 'not an IP address';
  }
  if (a.kind() === 'ipv6') {
    const v4 = embeddedV4(a as ipaddr.IPv6);
    if (v4) return addressBlockReason(v4.toString(), allow);
  }
  if (inAllowList(a, allow)) return null;
  const range = a.range();
  return range === 'unicast' ? null : range;
}

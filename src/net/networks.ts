/**
 * Which addresses a server-side fetch (reference images, webhooks) may reach. Refused:
 *
 * 1. Everything ipaddr.js does not class as plain global unicast: loopback, unspecified,
 *    private, link-local, CGNAT, multicast, broadcast, reserved and benchmarking ranges,
 *    IPv6 unique-local and site-local. This is the OWASP SSRF Prevention Cheat Sheet's rule
 *    for URLs a user may point anywhere: the address must be a public one
 *    (https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html).
 * 2. The cloud platform and metadata networks in PLATFORM_NETWORKS, by name. Three of them
 *    are public address space that rule 1 lets through (Azure's WireServer, IBM Cloud's
 *    service network and private endpoints); the rest lie in ranges rule 1 refuses, and are
 *    named so that the refusal says what was aimed at. Host names such as
 *    metadata.google.internal or metadata.tencentyun.com are caught by the address they
 *    resolve to.
 * 3. IPv6 forms that carry an IPv4 address. IPv4-mapped and -compatible addresses are judged
 *    as the IPv4 address they carry. NAT64 (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16)
 *    and Teredo (2001::/32) addresses are refused whatever they carry (rule 1); for the
 *    well-known NAT64 prefix, 6to4 and Teredo the reason names the carried address when that
 *    one is refused too.
 *
 * An operator opens chosen networks with KLEIN_ALLOW_NETWORKS; an entry there wins over
 * rules 1 and 2.
 */
import ipaddr from 'ipaddr.js';

export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

export class AllowListError extends Error {}

/**
 * Cloud platform and metadata endpoints, with what each is. Sources (the provider's own page
 * unless said otherwise):
 * - Azure: learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16 (a
 *   "virtual public IP address" for the VM agent, DNS, DHCP and load-balancer probes);
 *   learn.microsoft.com/azure/virtual-machines/instance-metadata-service (169.254.169.254).
 * - IBM Cloud: cloud.ibm.com/docs/vpc?topic=vpc-service-endpoints-for-vpc (infrastructure
 *   services "resolve to 161.26.0.0/16 addresses"; metadata at 169.254.169.254);
 *   cloud.ibm.com/docs/power-iaas?topic=power-iaas-nsg ("166.8.0.0/14 to identify IBM Cloud
 *   PaaS private endpoints").
 * - AWS: docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html (IMDS,
 *   169.254.169.254 and fd00:ec2::254); .../UserGuide/configure-ec2-ntp.html (Time Sync,
 *   169.254.169.123 and fd00:ec2::123); docs.aws.amazon.com/vpc/latest/userguide/AmazonDNS-concepts.html
 *   (Route 53 Resolver, 169.254.169.253 and fd00:ec2::253);
 *   docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html (Pod Identity,
 *   fd00:ec2::23); the AWS SDK container credential provider (docs.rs/aws-config, module
 *   ecs) for ECS 169.254.170.2 and Pod Identity 169.254.170.23.
 * - GCP: cloud.google.com/nodejs/docs/reference/gcp-metadata (169.254.169.254, and
 *   metadata.google.internal); cloud.google.com/compute/docs/metadata/querying-metadata (the
 *   metadata server of IPv6-only instances, fd20:ce::254). Oracle: docs.oracle.com/iaas/Content/Compute/Tasks/gettingmetadata.htm
 *   (169.254.169.254, and fd00:c1::a9fe:a9fe for IPv6, the address Oracle's own OKE node
 *   scripts fall back to); docs.oracle.com/en/cloud/cloud-at-customer/occ-get-started/retrieve-predefined-instance-metadata.html
 *   (192.0.0.192). DigitalOcean: docs.digitalocean.com/products/droplets/how-to/access-metadata/.
 *   Hetzner: the metadata client of its hcloud-go library (169.254.169.254/hetzner/v1/metadata).
 *   OpenStack: docs.openstack.org/nova/latest/admin/metadata-service.html (169.254.169.254,
 *   fe80::a9fe:a9fe). Alibaba Cloud: alibabacloud.com/help/doc-detail/141788.htm and
 *   cloud-init's AliYun datasource (100.100.100.200). Tencent Cloud:
 *   tencentcloud.com/document/product/213/4934 names metadata.tencentyun.com; its address
 *   169.254.0.23 is from the Datadog agent's Tencent client.
 */
const PLATFORM_NETWORKS: ReadonlyArray<{ cidr: string; what: string }> = [
  // Public address space: nothing but this list refuses these.
  { cidr: '168.63.129.16/32', what: 'Azure platform address (WireServer)' },
  { cidr: '161.26.0.0/16', what: 'IBM Cloud service network (DNS, NTP, mirrors, Object Storage)' },
  { cidr: '166.8.0.0/14', what: 'IBM Cloud private service endpoints' },
  // Link-local, unique-local, CGNAT or reserved: refused by range as well.
  { cidr: '169.254.169.254/32', what: 'cloud instance metadata (AWS, Azure, GCP, Oracle, IBM, DigitalOcean, Hetzner, OpenStack)' },
  { cidr: 'fd00:ec2::254/128', what: 'AWS instance metadata (IPv6)' },
  { cidr: '169.254.169.123/32', what: 'AWS Time Sync Service' },
  { cidr: 'fd00:ec2::123/128', what: 'AWS Time Sync Service (IPv6)' },
  { cidr: '169.254.169.253/32', what: 'AWS DNS (Route 53 Resolver)' },
  { cidr: 'fd00:ec2::253/128', what: 'AWS DNS (Route 53 Resolver, IPv6)' },
  { cidr: '169.254.170.2/32', what: 'AWS ECS task metadata and credentials' },
  { cidr: '169.254.170.23/32', what: 'AWS EKS Pod Identity credentials' },
  { cidr: 'fd00:ec2::23/128', what: 'AWS EKS Pod Identity credentials (IPv6)' },
  { cidr: 'fe80::a9fe:a9fe/128', what: 'OpenStack instance metadata (IPv6)' },
  { cidr: 'fd20:ce::254/128', what: 'GCP instance metadata (IPv6)' },
  { cidr: 'fd00:c1::a9fe:a9fe/128', what: 'Oracle Cloud instance metadata (IPv6)' },
  { cidr: '100.100.100.200/32', what: 'Alibaba Cloud instance metadata' },
  { cidr: '192.0.0.192/32', what: 'Oracle Cloud instance metadata (Cloud@Customer, Classic)' },
  { cidr: '169.254.0.23/32', what: 'Tencent Cloud instance metadata' },
];

const platformNetworks = PLATFORM_NETWORKS.map((p) => ({ net: ipaddr.parseCIDR(p.cidr), what: p.what }));

function inNetwork(a: ipaddr.IPv4 | ipaddr.IPv6, [net, bits]: Cidr): boolean {
  return net.kind() === a.kind() && a.match([net, bits] as never);
}

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

const NAT64 = ipaddr.parseCIDR('64:ff9b::/96');
const SIX_TO_FOUR = ipaddr.parseCIDR('2002::/16');
const TEREDO = ipaddr.parseCIDR('2001::/32');

/** The IPv4 address a NAT64, 6to4 or Teredo address carries, with the form's name. */
function tunnelledV4(a: ipaddr.IPv6): { form: string; v4: ipaddr.IPv4 } | null {
  const b = a.toByteArray();
  const v4 = (bytes: number[]) => ipaddr.fromByteArray(bytes) as ipaddr.IPv4;
  // RFC 6052 §2.2: with the /96 well-known prefix the last 32 bits are the address.
  if (inNetwork(a, NAT64)) return { form: 'NAT64', v4: v4(b.slice(12)) };
  // RFC 3056 §2: 2002:V4ADDR::/48.
  if (inNetwork(a, SIX_TO_FOUR)) return { form: '6to4', v4: v4(b.slice(2, 6)) };
  // RFC 4380 §4: the client's public address, every bit inverted, in the last 32 bits.
  if (inNetwork(a, TEREDO)) return { form: 'Teredo', v4: v4(b.slice(12).map((x) => x ^ 0xff)) };
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
  if (allow.some((net) => inNetwork(a, net))) return null;
  const platform = platformNetworks.find((p) => inNetwork(a, p.net));
  if (platform) return platform.what;
  const range = a.range();
  if (range === 'unicast') return null;
  const tunnel = a.kind() === 'ipv6' ? tunnelledV4(a as ipaddr.IPv6) : null;
  const carried = tunnel && addressBlockReason(tunnel.v4.toString(), []);
  return tunnel && carried ? `${tunnel.form} form of ${tunnel.v4.toString()}: ${carried}` : range;
}

/**
 * The address policy: cloud platform and metadata addresses are refused by name, in every
 * IPv6 form that carries them, and an operator's allow entry still opens each one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressBlockReason, parseAllowNetworks } from './networks.js';

/** [address, what the refusal must name]. */
const PLATFORM: Array<[string, RegExp]> = [
  ['168.63.129.16', /^Azure platform address \(WireServer\)$/],
  ['161.26.0.10', /^IBM Cloud service network/], // its DNS resolver
  ['161.26.0.6', /^IBM Cloud service network/], // its APT mirror and NTP server
  ['166.9.228.73', /^IBM Cloud private service endpoints$/], // a private API endpoint in Dallas
  ['169.254.169.254', /^cloud instance metadata \(AWS, Azure, GCP, Oracle, IBM, DigitalOcean, Hetzner, OpenStack\)$/],
  ['fd00:ec2::254', /^AWS instance metadata \(IPv6\)$/],
  ['169.254.169.123', /^AWS Time Sync Service$/],
  ['fd00:ec2::123', /^AWS Time Sync Service \(IPv6\)$/],
  ['169.254.169.253', /^AWS DNS \(Route 53 Resolver\)$/],
  ['fd00:ec2::253', /^AWS DNS \(Route 53 Resolver, IPv6\)$/],
  ['169.254.170.2', /^AWS ECS task metadata and credentials$/],
  ['169.254.170.23', /^AWS EKS Pod Identity credentials$/],
  ['fd00:ec2::23', /^AWS EKS Pod Identity credentials \(IPv6\)$/],
  ['fe80::a9fe:a9fe', /^OpenStack instance metadata \(IPv6\)$/],
  ['fd20:ce::254', /^GCP instance metadata \(IPv6\)$/],
  ['fd00:c1::a9fe:a9fe', /^Oracle Cloud instance metadata \(IPv6\)$/],
  ['100.100.100.200', /^Alibaba Cloud instance metadata$/],
  ['192.0.0.192', /^Oracle Cloud instance metadata/],
  ['169.254.0.23', /^Tencent Cloud instance metadata$/],
];

/**
 * IPv6 spellings of the public platform addresses, worked out by hand: 168.63.129.16 is
 * a8 3f 81 10; Teredo stores the client address with every bit inverted (57c0:7eef).
 */
const CARRIED: Array<[string, RegExp]> = [
  ['::ffff:168.63.129.16', /^Azure platform address \(WireServer\)$/],
  ['::ffff:a83f:8110', /^Azure platform address \(WireServer\)$/],
  ['::a83f:8110', /^Azure platform address \(WireServer\)$/], // IPv4-compatible
  ['64:ff9b::a83f:8110', /^NAT64 form of 168\.63\.129\.16: Azure platform address \(WireServer\)$/],
  ['2002:a83f:8110::', /^6to4 form of 168\.63\.129\.16: Azure platform address \(WireServer\)$/],
  ['2002:a83f:8110:1::42', /^6to4 form of 168\.63\.129\.16: Azure/],
  ['2001:0:4136:e378:8000:63bf:57c0:7eef', /^Teredo form of 168\.63\.129\.16: Azure platform address \(WireServer\)$/],
  ['::ffff:161.26.0.10', /^IBM Cloud service network/],
  ['64:ff9b::a11a:a', /^NAT64 form of 161\.26\.0\.10: IBM Cloud service network/],
  ['2002:a11a:a::', /^6to4 form of 161\.26\.0\.10: IBM Cloud service network/],
  ['::ffff:166.9.228.73', /^IBM Cloud private service endpoints$/],
  ['64:ff9b::a609:e449', /^NAT64 form of 166\.9\.228\.73: IBM Cloud private service endpoints$/],
  ['::ffff:100.100.100.200', /^Alibaba Cloud instance metadata$/],
  ['64:ff9b::6464:64c8', /^NAT64 form of 100\.100\.100\.200: Alibaba Cloud instance metadata$/],
  ['64:ff9b::a9fe:a9fe', /^NAT64 form of 169\.254\.169\.254: cloud instance metadata/],
  ['2002:a9fe:a9fe::', /^6to4 form of 169\.254\.169\.254: cloud instance metadata/],
];

describe('addressBlockReason', () => {
  for (const [address, name] of PLATFORM) {
    it(`refuses ${address} by name, unless KLEIN_ALLOW_NETWORKS opens it`, () => {
      assert.match(addressBlockReason(address, []) ?? 'allowed', name);
      assert.equal(addressBlockReason(address, parseAllowNetworks(address)), null);
    });
  }

  for (const [address, name] of CARRIED) {
    it(`refuses ${address}, naming the IPv4 address it carries`, () => {
      assert.match(addressBlockReason(address, []) ?? 'allowed', name);
    });
  }

  it('opens a mapped platform address through its IPv4 allow entry, not a tunnelled one', () => {
    const allow = parseAllowNetworks('168.63.129.16');
    assert.equal(addressBlockReason('::ffff:168.63.129.16', allow), null);
    // A NAT64 or 6to4 address is a different destination (a translator, a relay): it needs
    // its own entry, as before.
    assert.match(addressBlockReason('64:ff9b::a83f:8110', allow) ?? 'allowed', /^NAT64 form of 168\.63\.129\.16/);
    assert.equal(addressBlockReason('64:ff9b::a83f:8110', parseAllowNetworks('64:ff9b::/96')), null);
  });

  it('refuses exactly the listed networks: their edges are refused, their neighbours and ordinary public addresses pass', () => {
    for (const edge of ['161.26.0.0', '161.26.255.255', '166.8.0.0', '166.11.255.255']) {
      assert.notEqual(addressBlockReason(edge, []), null, edge);
    }
    const pass = [
      '168.63.129.15', '168.63.129.17', '161.25.255.255', '161.27.0.0', '166.7.255.255', '166.12.0.0',
      '93.184.216.34', '8.8.8.8', '1.1.1.1', '140.82.112.3', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e',
      '::ffff:93.184.216.34',
    ];
    for (const address of pass) assert.equal(addressBlockReason(address, []), null, address);
    // NAT64 of a public address stays refused, by its range rather than by a name.
    assert.equal(addressBlockReason('64:ff9b::5db8:d822', []), 'rfc6052');
  });
});

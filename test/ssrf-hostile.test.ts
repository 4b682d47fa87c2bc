/**
 * SSRF: hostile reference URLs are all refused, and no connection is made. A loopback
 * listener counts every connection it accepts; the guard must refuse before connecting.
 * Cloud platform and metadata endpoints are refused as url_blocked, the answer naming them.
 * Private, CGNAT, link-local, unique-local, multicast, broadcast and unspecified addresses are
 * refused as url_blocked too, naming the field and the range, by the guard and over HTTP (a
 * reference in image_urls on v1, webhook_url on v2): url_blocked is only ever raised before a
 * connection is tried, so no packet is sent towards them (a tried connection would fail as
 * image_fetch_failed, or wait for its timeout).
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ApiError } from '../src/contract/errors.js';
import { parseAllowNetworks } from '../src/net/networks.js';
import { resolveChecked, safeFetch } from '../src/net/safe-fetch.js';
import { loadReferenceImages } from '../src/images/references.js';
import { openDatabase } from '../src/store/db.js';
import { ledgerProblems } from './support/ledger-invariant.js';
import { startTestServer, type TestServer } from './e2e/harness.js';

/**
 * [URL host, what it is, the range ipaddr.js names]: every address class the guard refuses
 * by range rather than by name, and a private address in IPv4-mapped IPv6 form.
 */
const PRIVATE_HOSTS: Array<[string, string, string]> = [
  ['10.0.0.1', 'private 10/8', 'private'],
  ['172.16.0.1', 'private 172.16/12', 'private'],
  ['192.168.1.1', 'private 192.168/16', 'private'],
  ['100.64.0.1', 'CGNAT 100.64/10', 'carrierGradeNat'],
  ['0.0.0.0', 'unspecified', 'unspecified'],
  ['[fc00::1]', 'IPv6 unique-local', 'uniqueLocal'],
  ['[fe80::1]', 'IPv6 link-local', 'linkLocal'],
  ['224.0.0.1', 'multicast', 'multicast'],
  ['255.255.255.255', 'broadcast', 'broadcast'],
  ['[::ffff:10.0.0.1]', 'IPv4-mapped private 10/8', 'private'],
  ['[::ffff:c0a8:101]', 'IPv4-mapped private 192.168/16, hex', 'private'],
];

describe('SSRF guard', () => {
  let trap: TcpServer;
  let connections = 0;
  let port = 0;
  let allowedHost: Server;
  let allowedPort = 0;
  let imageHost: Server;
  let imagePort = 0;
  let png: Buffer;

  before(async () => {
    png = await sharp({ create: { width: 80, height: 64, channels: 3, background: '#336699' } }).png().toBuffer();
    // The trap listens on every loopback address a hostile URL could reach.
    trap = createTcpServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => trap.listen(0, '::', r));
    port = (trap.address() as AddressInfo).port;
    // An allowed host (127.0.0.2/32) that redirects to loopback 127.0.0.1.
    allowedHost = createHttpServer((req, res) => {
      if (req.url === '/redirect-to-loopback') {
        res.writeHead(302, { location: `http://127.0.0.1:${port}/secret` });
        res.end();
      } else if (req.url === '/redirect-to-metadata') {
        res.writeHead(301, { location: 'http://169.254.169.254/latest/meta-data/' });
        res.end();
      } else if (req.url === '/redirect-to-wireserver') {
        res.writeHead(302, { location: 'http://168.63.129.16/machine?comp=goalstate' });
        res.end();
      } else if (req.url?.startsWith('/loop')) {
        const n = Number(req.url.slice(5) || 0);
        res.writeHead(302, { location: `/loop${n + 1}` });
        res.end();
      } else {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(png);
      }
    });
    await new Promise<void>((r) => allowedHost.listen(0, '127.0.0.2', r));
    allowedPort = (allowedHost.address() as AddressInfo).port;
    imageHost = createHttpServer((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(Buffer.alloc(2_000_000));
      } else if (req.url === '/hang') {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.write(png.subarray(0, 10)); // never ends
      } else if (req.url === '/404') {
        res.writeHead(404);
        res.end();
      } else {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(png);
      }
    });
    await new Promise<void>((r) => imageHost.listen(0, '127.0.0.3', r));
    imagePort = (imageHost.address() as AddressInfo).port;
  });

  after(() => {
    trap.close();
    allowedHost.close();
    imageHost.close();
  });

  const allow = () => parseAllowNetworks('127.0.0.2/32');
  const loopbackLookup = async () => [{ address: '127.0.0.1', family: 4 }];

  const HOSTILE = (): Array<[string, string]> => [
    [`http://127.0.0.1:${port}/`, 'loopback'],
    [`http://2130706433:${port}/`, 'decimal IPv4'],
    [`http://0177.0.0.1:${port}/`, 'octal IPv4'],
    [`http://0x7f.0.0.1:${port}/`, 'hex IPv4'],
    [`http://0x7f000001:${port}/`, 'hex IPv4, one number'],
    [`http://127.1:${port}/`, 'short IPv4'],
    [`http://[::1]:${port}/`, 'IPv6 loopback'],
    [`http://[::ffff:127.0.0.1]:${port}/`, 'IPv4-mapped loopback'],
    [`http://[::ffff:7f00:1]:${port}/`, 'IPv4-mapped loopback, hex'],
    [`http://[::127.0.0.1]:${port}/`, 'IPv4-compatible loopback'],
    [`http://localhost:${port}/`, 'localhost'],
    [`http://localhost.:${port}/`, 'localhost with a trailing dot'],
    [`http://api.localhost:${port}/`, 'a .localhost name'],
    ['http://169.254.169.254/latest/meta-data/', 'cloud metadata'],
    ['http://2852039166/latest/meta-data/', 'cloud metadata, decimal'],
    ['http://[fd00:ec2::254]/', 'IPv6 metadata (unique-local)'],
    ['http://0.0.0.0/', 'unspecified'],
    ['http://10.0.0.1/', 'private 10/8'],
    ['http://172.16.5.4/', 'private 172.16/12'],
    ['http://192.168.1.1/', 'private 192.168/16'],
    ['http://100.64.0.1/', 'CGNAT'],
    ['http://[fc00::1]/', 'IPv6 unique-local'],
    ['http://[fe80::1]/', 'IPv6 link-local'],
    ['http://224.0.0.1/', 'multicast'],
    ['http://255.255.255.255/', 'broadcast'],
    ['http://[64:ff9b::7f00:1]/', 'NAT64 of loopback'],
    ['file:///etc/passwd', 'file scheme'],
    ['ftp://example.com/x.png', 'ftp scheme'],
    ['gopher://example.com/', 'gopher scheme'],
    [`http://user:pass@127.0.0.2:${allowedPort}/`, 'credentials in the URL'],
    [`http://127.0.0.2:${allowedPort}/redirect-to-loopback`, 'redirect from an allowed host to loopback'],
    [`http://127.0.0.2:${allowedPort}/redirect-to-metadata`, 'redirect from an allowed host to the metadata address'],
  ];

  it('refuses every hostile URL with 400 and makes no connection', async () => {
    const cases = HOSTILE();
    assert.ok(cases.length >= 20);
    for (const [url, what] of cases) {
      await assert.rejects(
        safeFetch(url, { allow: allow(), maxBytes: 1_000_000, timeoutMs: 3000, field: 'image_urls[0]' }),
        (err: unknown) => {
          assert.ok(err instanceof ApiError, `${what}: ${String(err)}`);
          assert.equal(err.status, 400, what);
          assert.ok(['url_blocked', 'image_fetch_failed'].includes(err.code), `${what}: ${err.code}`);
          return true;
        },
        what,
      );
    }
    assert.equal(connections, 0, 'no connection reached the loopback trap');
  });

  it('refuses private, CGNAT, link-local, unique-local, multicast, broadcast and unspecified addresses as url_blocked, naming the field and the range', async () => {
    for (const [host, what, range] of PRIVATE_HOSTS) {
      await assert.rejects(
        safeFetch(`http://${host}/x.png`, { allow: allow(), maxBytes: 1_000_000, timeoutMs: 3000, field: 'image_urls[2]' }),
        (err: unknown) => {
          assert.ok(err instanceof ApiError, `${what}: ${String(err)}`);
          assert.equal(err.status, 400, what);
          assert.equal(err.code, 'url_blocked', `${what}: ${err.code} ${err.message}`);
          assert.deepEqual(err.details, [{ field: 'image_urls[2]', message: `points at a blocked address (${range})` }], what);
          return true;
        },
        what,
      );
    }
  });

  /** [URL, what it is, what the refusal must name]. Names resolve through platformLookup. */
  const PLATFORM = (): Array<[string, string, RegExp]> => [
    ['http://168.63.129.16/machine?comp=goalstate', 'Azure WireServer', /\(Azure platform address \(WireServer\)\)$/],
    ['http://2822734096/', 'Azure WireServer, decimal', /Azure platform address/],
    ['http://0xa83f8110/', 'Azure WireServer, hex', /Azure platform address/],
    ['http://[::ffff:168.63.129.16]/', 'Azure WireServer, IPv4-mapped', /Azure platform address/],
    ['http://[::a83f:8110]/', 'Azure WireServer, IPv4-compatible', /Azure platform address/],
    ['http://[64:ff9b::a83f:8110]/', 'Azure WireServer, NAT64', /NAT64 form of 168\.63\.129\.16: Azure platform address/],
    ['http://[2002:a83f:8110::1]/', 'Azure WireServer, 6to4', /6to4 form of 168\.63\.129\.16: Azure platform address/],
    ['http://[2001:0:4136:e378:8000:63bf:57c0:7eef]/', 'Azure WireServer, Teredo', /Teredo form of 168\.63\.129\.16: Azure platform address/],
    ['https://161.26.0.10/', 'IBM Cloud DNS resolver', /IBM Cloud service network/],
    ['http://[64:ff9b::a11a:6]/', 'IBM Cloud mirror, NAT64', /NAT64 form of 161\.26\.0\.6: IBM Cloud service network/],
    ['https://166.9.228.73/', 'IBM Cloud private endpoint', /IBM Cloud private service endpoints/],
    ['http://169.254.169.254/latest/meta-data/', 'instance metadata', /cloud instance metadata \(AWS, Azure, GCP/],
    ['http://[fd00:ec2::254]/latest/meta-data/', 'AWS IMDS, IPv6', /AWS instance metadata \(IPv6\)/],
    ['http://169.254.169.123/', 'AWS Time Sync', /AWS Time Sync Service\)$/],
    ['http://[fd00:ec2::123]/', 'AWS Time Sync, IPv6', /AWS Time Sync Service \(IPv6\)/],
    ['http://169.254.169.253/', 'AWS DNS', /AWS DNS \(Route 53 Resolver\)/],
    ['http://[fd00:ec2::253]/', 'AWS DNS, IPv6', /AWS DNS \(Route 53 Resolver, IPv6\)/],
    ['http://169.254.170.2/v2/credentials/x', 'AWS ECS credentials', /AWS ECS task metadata and credentials/],
    ['http://169.254.170.23/v1/credentials', 'AWS EKS Pod Identity', /AWS EKS Pod Identity credentials\)$/],
    ['http://[fd00:ec2::23]/v1/credentials', 'AWS EKS Pod Identity, IPv6', /AWS EKS Pod Identity credentials \(IPv6\)/],
    ['http://[fe80::a9fe:a9fe]/openstack/latest/meta_data.json', 'OpenStack metadata, IPv6', /OpenStack instance metadata \(IPv6\)/],
    ['http://[fd20:ce::254]/computeMetadata/v1/', 'GCP metadata, IPv6', /GCP instance metadata \(IPv6\)/],
    ['http://[fd00:c1::a9fe:a9fe]/opc/v2/instance/', 'Oracle Cloud metadata, IPv6', /Oracle Cloud instance metadata \(IPv6\)/],
    ['http://100.100.100.200/latest/meta-data/', 'Alibaba Cloud metadata', /Alibaba Cloud instance metadata/],
    ['http://[64:ff9b::6464:64c8]/latest/meta-data/', 'Alibaba Cloud metadata, NAT64', /NAT64 form of 100\.100\.100\.200: Alibaba/],
    ['http://192.0.0.192/latest/meta-data/', 'Oracle Cloud@Customer metadata', /Oracle Cloud instance metadata/],
    ['http://169.254.0.23/latest/meta-data/', 'Tencent Cloud metadata', /Tencent Cloud instance metadata/],
    ['http://metadata.google.internal/computeMetadata/v1/', 'GCP metadata by name', /cloud instance metadata \(AWS, Azure, GCP/],
    ['http://metadata.tencentyun.com/latest/meta-data/', 'Tencent Cloud metadata by name', /Tencent Cloud instance metadata/],
    ['http://api.metadata.cloud.ibm.com/metadata/v1/instance', 'IBM Cloud metadata by name', /cloud instance metadata/],
    ['http://wireserver.example/', 'a public name that resolves to WireServer', /Azure platform address/],
    [`http://127.0.0.2:${allowedPort}/redirect-to-wireserver`, 'redirect from an allowed host to WireServer', /Azure platform address/],
  ];
  const platformNames: Record<string, string> = {
    'metadata.google.internal': '169.254.169.254',
    'metadata.tencentyun.com': '169.254.0.23',
    'api.metadata.cloud.ibm.com': '169.254.169.254',
    'wireserver.example': '168.63.129.16',
  };
  const platformLookup = async (host: string) => {
    const address = platformNames[host];
    if (!address) throw new Error(`unexpected lookup of ${host}`);
    return [{ address, family: 4 }];
  };

  it('refuses cloud platform and metadata endpoints with 400 url_blocked, naming them', async () => {
    const cases = PLATFORM();
    assert.ok(cases.length >= 25);
    for (const [url, what, name] of cases) {
      await assert.rejects(
        safeFetch(url, { allow: allow(), maxBytes: 1_000_000, timeoutMs: 1000, field: 'image_urls[0]', lookup: platformLookup }),
        (err: unknown) => {
          assert.ok(err instanceof ApiError, `${what}: ${String(err)}`);
          assert.equal(err.status, 400, what);
          assert.equal(err.code, 'url_blocked', `${what}: ${err.message}`);
          assert.match(err.details?.[0]?.message ?? '', name, what);
          return true;
        },
        what,
      );
    }
    assert.equal(connections, 0);
  });

  it('lets KLEIN_ALLOW_NETWORKS open a platform address again', async () => {
    // Checked without fetching: opened, the address is handed on to connect to.
    const u = new URL('http://wireserver.example/');
    await assert.rejects(resolveChecked(u, { allow: [], field: 'f', lookup: platformLookup }), (e: unknown) => e instanceof ApiError && e.code === 'url_blocked');
    const opened = await resolveChecked(u, { allow: parseAllowNetworks('168.63.129.16/32'), field: 'f', lookup: platformLookup });
    assert.equal(opened.address, '168.63.129.16');
  });

  it('refuses a name that resolves to loopback, and one with any blocked address', async () => {
    await assert.rejects(
      safeFetch(`http://rebind.example:${port}/`, { allow: [], maxBytes: 1000, timeoutMs: 2000, field: 'f', lookup: loopbackLookup }),
      (e: unknown) => e instanceof ApiError && e.code === 'url_blocked',
    );
    const mixed = async () => [{ address: '93.184.216.34', family: 4 }, { address: '10.1.2.3', family: 4 }];
    await assert.rejects(
      safeFetch('http://mixed.example/', { allow: [], maxBytes: 1000, timeoutMs: 2000, field: 'f', lookup: mixed }),
      (e: unknown) => e instanceof ApiError && e.code === 'url_blocked',
    );
    assert.equal(connections, 0);
  });

  it('pins the connection to the checked address (a later DNS answer cannot redirect it)', async () => {
    let calls = 0;
    const flipping = async () => {
      calls++;
      return [{ address: calls === 1 ? '127.0.0.3' : '127.0.0.1', family: 4 }];
    };
    const r = await safeFetch(`http://images.example:${imagePort}/ok.png`, {
      allow: parseAllowNetworks('127.0.0.3/32'),
      maxBytes: 1_000_000,
      timeoutMs: 3000,
      field: 'f',
      lookup: flipping,
    });
    assert.ok(r.bytes.equals(png));
    assert.equal(calls, 1, 'resolved once');
    assert.equal(connections, 0);
  });

  it('follows allowed redirects, caps their number, size and time', async () => {
    const opts = { allow: parseAllowNetworks('127.0.0.2/32, 127.0.0.3/32'), maxBytes: 1_000_000, timeoutMs: 1500, field: 'image_urls[1]' };
    const ok = await safeFetch(`http://127.0.0.2:${allowedPort}/loop1`, { ...opts, maxRedirects: 3 }).catch((e) => e);
    assert.ok(ok instanceof ApiError && ok.code === 'image_fetch_failed' && /redirects/.test(ok.message));
    const big = await safeFetch(`http://127.0.0.3:${imagePort}/big`, opts).catch((e) => e);
    assert.ok(big instanceof ApiError && big.code === 'image_too_large');
    const hang = await safeFetch(`http://127.0.0.3:${imagePort}/hang`, opts).catch((e) => e);
    assert.ok(hang instanceof ApiError && hang.code === 'image_fetch_failed' && /timed out/.test(hang.message), String(hang));
    const missing = await safeFetch(`http://127.0.0.3:${imagePort}/404`, opts).catch((e) => e);
    assert.ok(missing instanceof ApiError && /404/.test(missing.message));
    const good = await loadReferenceImages([`http://127.0.0.3:${imagePort}/ok.png`], { allowNetworks: '127.0.0.3/32', maxBytes: 1e6, maxPixels: 1e7, timeoutMs: 2000 });
    assert.deepEqual([good[0]?.image.width, good[0]?.image.height], [80, 64]);
  });

  it('names the bad entry of KLEIN_ALLOW_NETWORKS', () => {
    assert.throws(() => parseAllowNetworks('127.0.0.0/8, banana'), /"banana"/);
  });
});

describe('SSRF guard over HTTP: private addresses as references and as webhooks', () => {
  let s: TestServer;
  let key: string;
  before(async () => {
    // No KLEIN_ALLOW_NETWORKS: the default policy.
    s = await startTestServer({ KLEIN_MODEL: 'simulated:5' });
    key = s.createKey({ credits: '10' }).key;
  });
  after(async () => s?.close());

  async function refused(path: string, body: unknown, field: string, range: string, what: string): Promise<void> {
    const r = await fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(body) });
    const text = await r.text();
    assert.equal(r.status, 400, `${what}: ${text}`);
    const j = JSON.parse(text) as { code: string; request_id: string; details?: Array<{ field: string; message: string }> };
    assert.equal(j.code, 'url_blocked', `${what}: ${text}`);
    assert.deepEqual(j.details, [{ field, message: `points at a blocked address (${range})` }], `${what}: ${text}`);
    assert.equal(j.request_id, r.headers.get('x-request-id'));
  }

  it('a private reference in image_urls on v1: 400 url_blocked naming image_urls[0] and the range', async () => {
    for (const [host, what, range] of PRIVATE_HOSTS) {
      const body = { prompt: 'ssrf', width: 64, height: 64, steps: 1, cfg: 1, image_urls: [`http://${host}/ref.png`] };
      await refused('/v1/flux-2-klein-4b', body, 'image_urls[0]', range, `v1 ${what}`);
    }
  });

  it('a private webhook_url on v2: 400 url_blocked naming webhook_url and the range, nothing queued', async () => {
    for (const [host, what, range] of PRIVATE_HOSTS) {
      const body = { prompt: 'ssrf', width: 64, height: 64, steps: 1, cfg: 1, webhook_url: `http://${host}/hook` };
      await refused('/v2/flux-2-klein-4b', body, 'webhook_url', range, `v2 ${what}`);
    }
    const db = openDatabase({ dataDir: s.dataDir });
    try {
      assert.equal((await db.selectFrom('requests').select('id').execute()).length, 0, 'no refused request was queued');
      assert.deepEqual(await ledgerProblems(db), []);
    } finally {
      await db.destroy();
    }
  });
});

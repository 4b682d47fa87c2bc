/**
 * SSRF: hostile reference URLs are all refused, and no connection is made. A loopback
 * listener counts every connection it accepts; the guard must refuse before connecting.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ApiError } from '../src/gateway/errors.js';
import { parseAllowNetworks } from '../src/images/networks.js';
import { safeFetch } from '../src/images/safe-fetch.js';
import { loadReferenceImages } from '../src/images/references.js';

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

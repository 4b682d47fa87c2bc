/**
 * The links of a request (contract §9): the output's signed link on local disk and the
 * presigned one on S3, the events link with its own lifetime, both over the path alone,
 * and the 403 codes a presented link gets.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ApiError } from '../contract/errors.js';
import { LinkSigner } from './signed-links.js';
import { eventsPath, outputPath, presentsLink, RequestLinks } from './request-links.js';

const signer = new LinkSigner(['k'.repeat(32)]);
const ttl = { linkTtlS: 3600, eventsLinkTtlS: 900 };
const localDisk = { directUrl: async () => null };
const NOW = 1_800_000_000_000;
const params = (url: string) => Object.fromEntries(new URL(url).searchParams) as { expires?: string; sig?: string };

it('signs the output path under the base (KLEIN_LINK_TTL), and the events path for KLEIN_EVENTS_LINK_TTL', async () => {
  const links = new RequestLinks(signer, localDisk, ttl);
  const out = await links.output('https://img.example/', 'req_1', 'outputs/req_1.png', NOW);
  assert.match(out, /^https:\/\/img\.example\/v2\/requests\/req_1\/output\?expires=\d+&sig=[\w-]{43}$/);
  assert.equal(Number(params(out).expires), NOW / 1000 + 3600);
  assert.equal(links.check(outputPath('req_1'), params(out), NOW), 'valid');
  const ev = links.events('http://127.0.0.1:8080', 'req_1', NOW);
  assert.match(ev, /^http:\/\/127\.0\.0\.1:8080\/v2\/requests\/req_1\/events\?expires=\d+&sig=/);
  assert.equal(Number(params(ev).expires), NOW / 1000 + 900);
  assert.equal(links.check(eventsPath('req_1'), params(ev), NOW), 'valid');
  // One link does not open the other route, nor another request.
  assert.equal(links.check(eventsPath('req_1'), params(out), NOW), 'invalid');
  assert.equal(links.check(outputPath('req_2'), params(out), NOW), 'invalid');
});

it('hands out the storage\'s presigned URL where it has one, with the same lifetime', async () => {
  const asked: Array<[string, number]> = [];
  const s3 = { directUrl: async (key: string, s: number) => (asked.push([key, s]), `https://bucket.example/${key}?X-Amz-Expires=${s}`) };
  const url = await new RequestLinks(signer, s3, ttl).output('http://gw', 'req_1', 'outputs/req_1.png', NOW);
  assert.equal(url, 'https://bucket.example/outputs/req_1.png?X-Amz-Expires=3600');
  assert.deepEqual(asked, [['outputs/req_1.png', 3600]]);
});

it('refuses a tampered or moved link as invalid_link and an old one as link_expired (both 403)', async () => {
  const links = new RequestLinks(signer, localDisk, ttl);
  const p = params(await links.output('http://gw', 'req_1', 'outputs/req_1.png', NOW));
  const code = (f: () => void) => {
    try {
      f();
      return 'none';
    } catch (err) {
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 403);
      return err.code;
    }
  };
  assert.equal(code(() => links.require(outputPath('req_1'), p, NOW)), 'none');
  assert.equal(code(() => links.require(outputPath('req_1'), { ...p, sig: `${p.sig!.slice(0, -1)}${p.sig!.endsWith('A') ? 'B' : 'A'}` }, NOW)), 'invalid_link');
  assert.equal(code(() => links.require(outputPath('req_1'), { ...p, expires: String(Number(p.expires) + 3600) }, NOW)), 'invalid_link');
  assert.equal(code(() => links.require(outputPath('req_1'), { sig: p.sig }, NOW)), 'invalid_link');
  assert.equal(code(() => links.require(outputPath('req_1'), { ...p, sig: [p.sig, p.sig] }, NOW)), 'invalid_link');
  assert.equal(code(() => links.require(outputPath('req_1'), p, NOW + 3600_000)), 'link_expired');
  assert.ok(presentsLink({ sig: 'x' }) && presentsLink({ expires: '1' }));
  assert.ok(!presentsLink({ preview: 'true' }) && !presentsLink(undefined));
});

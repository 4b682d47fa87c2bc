/**
 * The playground in a real browser (Debian's Chromium driven by playwright-core) against the
 * real server with the real `tiny` engine and real keys: the form comes from /openapi.json,
 * a generation shows live progress and previews and then the image with its facts, reuse
 * seed, history across a reload, references from the file picker, each error status in
 * words (field errors beside their field), and a phone-width layout without horizontal
 * scrolling. The finished page is saved to test-artifacts/playground.png.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext, type Page } from 'playwright-core';
import sharp from 'sharp';
import { startTestServer, type TestServer } from '../e2e/harness.js';
import { buildWebScript } from './build-web.js';
import { ARTIFACTS, chromiumOptions, openBrowser } from './chromium.js';
import { awayFromMinuteEdge } from '../support/minute-window.js';

const PHONE = { width: 390, height: 844 };
/** Every parameter of contract §1 that the form must offer (the page builds them from the schema). */
const PARAMS = ['negative_prompt', 'seed', 'cfg', 'sampler', 'steps', 'aspect_ratio', 'go_fast', 'image_format', 'quality', 'width', 'height'];

type Json = Record<string, any>;

describe('playground (Chromium, tiny engine)', () => {
  let s: TestServer;
  let browser: Awaited<ReturnType<typeof openBrowser>>;
  let context: BrowserContext;
  let schema: Json;

  before(async () => {
    chromiumOptions(); // fails here, before a server is started, when Chromium is missing
    buildWebScript();
    s = await startTestServer({ KLEIN_ENGINE_FAULTS: '1' });
    browser = await openBrowser();
    context = browser.context;
    schema = ((await (await fetch(`${s.url}/openapi.json`)).json()) as Json).components.schemas.AsyncBody.properties;
  });

  after(async () => {
    await browser?.close();
    await s?.close();
  });

  /** A fresh page (empty localStorage) with the form built; uncaught errors and CSP refusals fail the test. */
  async function openPage(viewport = { width: 1280, height: 900 }): Promise<{ page: Page; problems: string[] }> {
    const page = await context.newPage();
    await page.setViewportSize(viewport);
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (/Content.Security.Policy|Uncaught/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    await page.goto(`${s.url}/`);
    await page.evaluate(() => localStorage.clear());
    await page.reload();
    await page.locator('#f-steps').waitFor();
    return { page, problems };
  }

  const text = (page: Page, sel: string) => page.locator(sel).innerText();

  async function get(key: string, path: string): Promise<Json> {
    const r = await fetch(`${s.url}${path}`, { headers: { 'x-api-key': key } });
    assert.equal(r.status, 200, `${path}: ${r.status}`);
    return (await r.json()) as Json;
  }

  async function waitForResult(page: Page): Promise<void> {
    await page.waitForFunction(
      () => {
        const img = document.getElementById('result-image');
        return !document.getElementById('result')?.hidden && img instanceof HTMLImageElement && img.complete && img.naturalWidth > 0;
      },
      null,
      { timeout: 120_000 },
    );
  }

  /** The event-stream requests the page makes (EventSource's resource type), as they go out. */
  function eventStreams(page: Page): Array<{ url: string; headers: Record<string, string> }> {
    const seen: Array<{ url: string; headers: Record<string, string> }> = [];
    page.on('request', (r) => {
      if (r.resourceType() !== 'eventsource') return;
      const entry = { url: r.url(), headers: r.headers() };
      seen.push(entry);
      // headers() leaves out what the network stack adds (Last-Event-ID among them).
      void r.allHeaders().then((h) => (entry.headers = h));
    });
    return seen;
  }

  async function fillFast(page: Page, key: string, prompt: string): Promise<void> {
    await page.fill('#api-key', key);
    await page.fill('#f-prompt', prompt);
    await page.fill('#f-width', '64');
    await page.fill('#f-height', '64');
    await page.fill('#f-steps', '3');
    await page.fill('#f-cfg', '1');
  }

  it('builds every control from /openapi.json with the schema defaults, ranges and choices', { timeout: 60_000 }, async () => {
    const { page, problems } = await openPage();
    for (const name of PARAMS) assert.equal(await page.locator(`#f-${name}`).count(), 1, `no control for ${name}`);
    // One served model (KLEIN_MODEL alone): the picker holds it, chosen, with what the document says of it.
    assert.deepEqual(await page.locator('#model option').allInnerTexts(), ['flux-2-klein-4b']);
    assert.equal(await page.locator('#model').inputValue(), 'flux-2-klein-4b');
    assert.equal(await text(page, '#model-about'), `distilled; defaults: ${schema.steps.default} steps, cfg ${schema.cfg.default}`);
    for (const name of ['seed', 'cfg', 'steps', 'quality', 'width', 'height']) {
      const p = schema[name];
      const input = page.locator(`#f-${name}`);
      assert.equal(await input.inputValue(), p.default === undefined ? '' : String(p.default), `${name} default`);
      assert.equal(await input.getAttribute('min'), String(p.minimum), `${name} min`);
      assert.equal(await input.getAttribute('max'), String(p.maximum), `${name} max`);
    }
    assert.equal(await page.locator('#f-width').getAttribute('step'), String(schema.width.multipleOf));
    for (const name of ['sampler', 'aspect_ratio', 'image_format']) {
      const options = await page.locator(`#f-${name} option`).evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
      assert.deepEqual(options, schema[name].anyOf.map((c: Json) => c.const), `${name} choices`);
      assert.equal(await page.locator(`#f-${name}`).inputValue(), schema[name].default);
    }
    assert.ok((await page.locator('#f-aspect_ratio option').allInnerTexts()).includes('match_input_image'));
    assert.equal(await page.locator('#f-go_fast').isChecked(), schema.go_fast.default);
    assert.equal(await page.locator('#f-negative_prompt').inputValue(), schema.negative_prompt.default);
    assert.match(await text(page, '#ref-count'), new RegExp(`^0 / ${schema.image_urls.maxItems}$`));
    // The random-seed button puts the schema's "random" value in the seed field.
    await page.click('#seed-random');
    assert.equal(await page.locator('#f-seed').inputValue(), String(schema.seed.minimum));
    assert.equal(await page.locator('#placeholder').isVisible(), true);
    assert.equal(await page.locator('#cancel').isVisible(), false);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('generates with live progress and previews, shows the image and its facts, reuses the seed, keeps history across a reload', { timeout: 180_000 }, async () => {
    const key = s.createKey({ credits: '100' });
    const { page, problems } = await openPage();
    // [[fault:sleep:150]] (active with KLEIN_ENGINE_FAULTS=1) makes each tiny step take
    // 150 ms, so the stream has progress to show; the page is not told about it.
    await fillFast(page, key.key, 'a lighthouse at dusk, oil painting [[fault:sleep:150]]');
    await page.click('#seed-random');
    // Record every progress text and preview the page shows while it runs.
    await page.evaluate(() => {
      const seen = { texts: [] as string[], previews: [] as Array<{ src: string; size: string }> };
      (window as unknown as { seen: typeof seen }).seen = seen;
      const label = document.getElementById('progress-text')!;
      const preview = document.getElementById('preview') as HTMLImageElement;
      new MutationObserver(() => seen.texts.push(label.textContent ?? '')).observe(label, { childList: true, characterData: true, subtree: true });
      new MutationObserver(() => seen.previews.push({ src: preview.src, size: preview.dataset.size ?? '' })).observe(preview, { attributes: true, attributeFilter: ['src'] });
    });
    const streams = eventStreams(page);
    const started = Date.now();
    await page.click('#generate');
    await waitForResult(page);
    const took = Date.now() - started;
    // The browser's own EventSource followed the signed events_url: its token, not the key.
    assert.equal(streams.length, 1, JSON.stringify(streams));
    assert.match(streams[0]!.url, /\/v2\/requests\/[^/]+\/events\?expires=\d+&sig=[\w-]{43}&preview=true$/);
    assert.equal(streams[0]!.headers['x-api-key'], undefined);
    assert.equal(streams[0]!.headers.accept, 'text/event-stream');

    const seen = await page.evaluate(() => (window as unknown as { seen: { texts: string[]; previews: Array<{ src: string; size: string }> } }).seen);
    const steps = seen.texts.filter((t) => t.startsWith('Step '));
    assert.deepEqual(steps, ['Step 1 / 3', 'Step 2 / 3', 'Step 3 / 3'], `progress texts: ${JSON.stringify(seen.texts)}`);
    assert.equal(await page.locator('#progress').evaluate((p) => [(p as HTMLProgressElement).value, (p as HTMLProgressElement).max].join('/')), '3/3');
    assert.equal(seen.previews.length, 3, 'one preview per step');
    for (const pv of seen.previews) {
      assert.match(pv.src, /^data:image\/png;base64,/);
      const decoded = await page.evaluate(async (src) => {
        const im = new Image();
        im.src = src;
        await im.decode();
        return `${im.naturalWidth}x${im.naturalHeight}`;
      }, pv.src);
      assert.equal(decoded, pv.size, 'the preview decodes at the size the event gave');
    }

    const size = await page.locator('#result-image').evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]);
    assert.deepEqual(size, [64, 64]);
    const id = await text(page, '#info-request');
    const record = await get(key.key, `/v2/requests/${id}`);
    assert.equal(record.status, 'COMPLETED');
    const seed = String(record.input.seed);
    assert.notEqual(seed, '-1', 'the reported seed is the one used');
    assert.equal(await text(page, '#info-seed'), seed);
    assert.equal(await text(page, '#info-size'), '64 × 64 png');
    assert.equal(await text(page, '#info-time'), `${record.metrics.inference_time.toFixed(2)} s`);
    assert.ok(record.metrics.cost > 0);
    assert.equal(await text(page, '#info-cost'), `${record.metrics.cost} credits`);
    const balance = (await get(key.key, '/v1/get-user-credits')).credits;
    assert.equal(await text(page, '#info-credits'), String(balance));
    assert.equal(await text(page, '#credits'), `${balance} credits left`);

    // The download link saves exactly the server's output, named for its seed.
    assert.match((await page.locator('#download').getAttribute('href')) ?? '', /^blob:/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    assert.equal(download.suggestedFilename(), `klein-${seed}.png`);
    const saved = readFileSync(await download.path());
    const served = Buffer.from(await (await fetch(`${s.url}/v2/requests/${id}/output`, { headers: { 'x-api-key': key.key } })).arrayBuffer());
    assert.ok(saved.equals(served), 'the downloaded file is the server output');

    await page.fill('#f-seed', '7');
    await page.click('#reuse-seed');
    assert.equal(await page.locator('#f-seed').inputValue(), seed);

    await page.screenshot({ path: join(ARTIFACTS, 'playground.png'), fullPage: true });
    // With the result shown, the phone width still has no horizontal scrolling.
    await page.setViewportSize(PHONE);
    assert.deepEqual(await overflow(page), { scroll: PHONE.width, inner: PHONE.width });
    await page.screenshot({ path: join(ARTIFACTS, 'playground-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });

    // History survives a reload, stays small, and a click shows the entry again.
    await page.reload();
    const items = page.locator('#history li button');
    await items.first().waitFor();
    assert.equal(await items.count(), 1);
    assert.equal(await items.first().getAttribute('data-request-id'), id);
    const stored = await page.evaluate(() => localStorage.getItem('klein-playground.history') ?? '');
    assert.ok(stored.length < 8_000, `history entry is ${stored.length} characters`);
    const thumb = await page.locator('#history img').evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]);
    assert.ok(thumb[0]! > 0 && thumb[0]! <= 96 && thumb[1]! <= 96, `thumbnail ${thumb}`);
    assert.equal(await page.locator('#result').isHidden(), true);
    assert.equal(await page.locator('#placeholder').isVisible(), true);
    await items.first().click();
    await waitForResult(page);
    assert.equal(await page.locator('#placeholder').isVisible(), false);
    assert.equal(await text(page, '#info-seed'), seed);
    assert.deepEqual(await page.locator('#result-image').evaluate((i) => (i as HTMLImageElement).naturalWidth), 64);
    assert.deepEqual(problems, []);
    console.log(`# generation in the browser took ${took} ms (3 steps of 64×64 with 150 ms per step)`);
    await page.close();
  });

  for (const refuse of [false, true]) {
    const what = refuse
      ? 'its reconnect refused as an expired link would be, the page renews the link from the record and resumes with last_event_id'
      : 'EventSource reconnects by itself (Last-Event-ID) and the server goes on after step 1';
    it(`resumes a stream cut after step 1: ${what}; each step shown once`, { timeout: 120_000 }, async () => {
      const key = s.createKey({ credits: '100' });
      const { page, problems } = await openPage();
      await fillFast(page, key.key, 'resumed [[fault:sleep:150]]');
      const streams = eventStreams(page);
      // The first stream is the server's own bytes up to its first step, then the end of
      // the connection; the reconnect is refused (403 link_expired) or reaches the server.
      let cutAt = '';
      let n = 0;
      await page.route(/\/v2\/requests\/[^/]+\/events\?/, async (route) => {
        n++;
        if (n === 1) {
          const full = await (await route.fetch()).text();
          const blocks = full.split('\n\n');
          const upTo = blocks.findIndex((b) => b.includes('event: progress'));
          cutAt = /^id: (\d+)$/m.exec(blocks[upTo]!)![1]!;
          return route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }, body: `${blocks.slice(0, upTo + 1).join('\n\n')}\n\n` });
        }
        if (n === 2 && refuse) {
          return route.fulfill({ status: 403, contentType: 'application/json', body: JSON.stringify({ error: 'The link has expired', code: 'link_expired', request_id: 'x' }) });
        }
        return route.continue();
      });
      const texts: string[] = [];
      await page.exposeFunction('sawText', (t: string) => texts.push(t));
      await page.evaluate(() => {
        const label = document.getElementById('progress-text')!;
        new MutationObserver(() => (window as unknown as { sawText: (t: string) => void }).sawText(label.textContent ?? '')).observe(label, { childList: true, characterData: true, subtree: true });
      });
      await page.click('#generate');
      await waitForResult(page);
      // Step 1 from the cut stream, 2 and 3 from the resumed one: no gap, no repeat.
      assert.deepEqual(texts.filter((t) => t.startsWith('Step ')), ['Step 1 / 3', 'Step 2 / 3', 'Step 3 / 3'], `each step once: ${JSON.stringify(texts)}`);
      assert.equal(streams.length, refuse ? 3 : 2, JSON.stringify(streams.map((x) => x.url)));
      // EventSource's own reconnect: the same URL (the header it sends is not shown to
      // playwright's interception; the server's answer above shows it was sent).
      assert.equal(streams[1]!.url, streams[0]!.url);
      if (refuse) {
        const renewed = new URL(streams[2]!.url);
        assert.equal(renewed.searchParams.get('last_event_id'), cutAt);
        assert.match(renewed.searchParams.get('sig') ?? '', /^[\w-]{43}$/);
        assert.equal(streams[2]!.headers['x-api-key'], undefined);
      }
      const id = await text(page, '#info-request');
      assert.equal((await get(key.key, `/v2/requests/${id}`)).status, 'COMPLETED');
      assert.deepEqual(problems, []);
      await page.close();
    });
  }

  it('sends a reference image from the file picker as a data: URI and refuses a non-image', { timeout: 120_000 }, async () => {
    const key = s.createKey({ credits: '100' });
    const { page, problems } = await openPage();
    await fillFast(page, key.key, 'the same scene, in green');
    await page.setInputFiles('#ref-files', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') });
    // The file is read asynchronously: wait for the message rather than reading it at once.
    const refused = /notes\.txt: text\/plain is not an image type the server accepts/;
    await page.locator('#ref-problem', { hasText: refused }).waitFor({ timeout: 30_000 });
    assert.match(await text(page, '#ref-problem'), refused);
    assert.equal(await text(page, '#ref-count'), `0 / ${schema.image_urls.maxItems}`);
    const png = await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 200, g: 40, b: 40 } } }).png().toBuffer();
    await page.setInputFiles('#ref-files', { name: 'ref.png', mimeType: 'image/png', buffer: png });
    await page.locator('#ref-list li').first().waitFor();
    assert.equal(await text(page, '#ref-count'), `1 / ${schema.image_urls.maxItems}`);
    const sent = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/v2/flux-2-klein-4b'));
    await page.click('#generate');
    const body = (await sent).postDataJSON() as Json;
    assert.equal(body.image_urls.length, 1);
    assert.equal(body.image_urls[0], `data:image/png;base64,${png.toString('base64')}`);
    await waitForResult(page);
    const record = await get(key.key, `/v2/requests/${await text(page, '#info-request')}`);
    assert.equal(record.status, 'COMPLETED');
    assert.match(record.input.image_urls[0], /^data:;sha256=/);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('Cancel stops a running generation, which is not charged', { timeout: 60_000 }, async () => {
    const key = s.createKey({ credits: '100' });
    const { page, problems } = await openPage();
    await fillFast(page, key.key, 'a slow cat [[fault:sleep:1000]]');
    await page.click('#generate');
    await page.waitForFunction(() => document.getElementById('progress-text')?.textContent === 'Step 1 / 3', null, { timeout: 30_000 });
    assert.equal(await page.locator('#generate').isDisabled(), true);
    await page.click('#cancel');
    await page.waitForFunction(() => document.getElementById('message')?.textContent === 'Cancelled. Nothing was charged.', null, { timeout: 30_000 });
    assert.equal(await page.locator('#cancel').isVisible(), false);
    assert.equal(await page.locator('#generate').isDisabled(), false);
    assert.equal((await get(key.key, '/v1/get-user-credits')).credits, 100);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('a bad key gets a clear 401 message beside the key field', { timeout: 60_000 }, async () => {
    const { page, problems } = await openPage();
    await page.fill('#api-key', 'sk-not-a-key');
    await page.fill('#f-prompt', 'anything');
    await page.click('#generate');
    await page.locator('#message.error').waitFor();
    assert.match(await text(page, '#message'), /API key was refused \(401\)/);
    await page.locator('#err-api-key').waitFor();
    assert.match(await text(page, '#err-api-key'), /401/);
    assert.equal(await page.locator('#api-key').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.locator('#result').isHidden(), true);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it("an out-of-range value gets the server's own field message beside that field", { timeout: 60_000 }, async () => {
    const key = s.createKey({ credits: '100' });
    const { page, problems } = await openPage();
    await page.fill('#api-key', key.key);
    await page.fill('#f-prompt', 'a cat');
    await page.fill('#f-steps', '500'); // past the input's max: the browser lets it through (novalidate), the server refuses it
    await page.fill('#f-width', '64'); // without height
    await page.click('#generate');
    await page.locator('#err-steps').waitFor();
    // What the server says about the same two fields.
    const r = await fetch(`${s.url}/v2/flux-2-klein-4b`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key.key },
      body: JSON.stringify({ prompt: 'a cat', steps: 500, width: 64 }),
    });
    assert.equal(r.status, 400);
    const details = ((await r.json()) as Json).details as Array<{ field: string; message: string }>;
    const said = (field: string) => details.find((d) => d.field === field)!.message;
    assert.equal(await text(page, '#err-steps'), said('steps'));
    assert.match(said('steps'), /100/);
    assert.equal(await text(page, '#err-height'), said('height'));
    assert.equal(await page.locator('#f-steps').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'f-steps');
    assert.match(await text(page, '#message'), /\(400\).*steps/);
    assert.equal(await page.locator('#err-cfg').isHidden(), true);
    // Fixing the fields clears the marks on the next try.
    await page.fill('#f-steps', '2');
    await page.fill('#f-height', '64');
    await page.fill('#f-cfg', '1');
    await page.click('#generate');
    await waitForResult(page);
    assert.equal(await page.locator('#err-steps').isHidden(), true);
    assert.equal(await page.locator('#f-steps').getAttribute('aria-invalid'), null);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it("406 shows the server's price and balance; 429 says when to retry", { timeout: 60_000 }, async () => {
    const poor = s.createKey({ credits: '0' });
    const { page, problems } = await openPage();
    await page.fill('#api-key', poor.key);
    await page.fill('#f-prompt', 'a cat');
    await page.click('#generate');
    await page.locator('#message.error').waitFor();
    const r = await fetch(`${s.url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': poor.key }, body: JSON.stringify({ prompt: 'a cat' }) });
    assert.equal(r.status, 406);
    const serverMessage = ((await r.json()) as Json).error as string;
    assert.match(serverMessage, /costs .* balance is 0/);
    assert.ok((await text(page, '#message')).startsWith(`Not enough credits (406): ${serverMessage}`), await text(page, '#message'));

    const limited = s.createKey({ credits: '100', rpm: 1 });
    await awayFromMinuteEdge(20_000); // both clicks in one minute's window
    await page.fill('#api-key', limited.key);
    await page.fill('#f-steps', '500'); // the first call is refused as invalid (and counts)
    await page.click('#generate');
    await page.locator('#err-steps').waitFor();
    await page.click('#generate');
    await page.waitForFunction(() => /429/.test(document.getElementById('message')?.textContent ?? ''));
    assert.match(await text(page, '#message'), /^Too many requests for this key \(429\): Rate limit of 1 requests per minute .* Try again in \d+ seconds?\.$/);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('a generation the engine fails is reported, and not charged', { timeout: 60_000 }, async () => {
    const key = s.createKey({ credits: '100' });
    const { page, problems } = await openPage();
    await fillFast(page, key.key, 'a cat [[fault:internal]]');
    await page.click('#generate');
    await page.locator('#message.error').waitFor({ timeout: 30_000 });
    assert.match(await text(page, '#message'), /^Generation failed: .+ \(engine_failed\)\. Nothing was charged\.$/);
    assert.equal((await get(key.key, '/v1/get-user-credits')).credits, 100);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('fits a 390 px phone screen: no horizontal scrolling, every control inside the screen and tall enough to tap', { timeout: 60_000 }, async () => {
    const key = s.createKey({ credits: '100' });
    const { page, problems } = await openPage(PHONE);
    await page.fill('#api-key', key.key);
    await page.fill('#f-prompt', 'a cat');
    await page.fill('#f-steps', '500');
    await page.click('#generate');
    await page.locator('#err-steps').waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'playground-phone-errors.png'), fullPage: true });
    assert.deepEqual(await overflow(page), { scroll: PHONE.width, inner: PHONE.width });
    const boxes = await page.evaluate(() =>
      [...document.querySelectorAll('input:not([type=file]), select, textarea, button, a.button')]
        .filter((e) => (e as HTMLElement).offsetParent !== null)
        .map((e) => {
          const r = e.getBoundingClientRect();
          return { id: e.id || e.textContent, left: r.left, right: r.right, height: r.height, checkbox: (e as HTMLInputElement).type === 'checkbox' };
        }),
    );
    assert.ok(boxes.length >= 15, `${boxes.length} controls`);
    for (const b of boxes) {
      assert.ok(b.left >= 0 && b.right <= PHONE.width, `${b.id} sticks out: ${b.left}…${b.right}`);
      assert.ok(b.height >= (b.checkbox ? 18 : 24), `${b.id} is ${b.height} px tall`);
    }
    assert.deepEqual(problems, []);
    await page.close();
  });
});

async function overflow(page: Page): Promise<{ scroll: number; inner: number }> {
  return page.evaluate(() => ({ scroll: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth), inner: window.innerWidth }));
}

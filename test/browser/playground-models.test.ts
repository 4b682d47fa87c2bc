/**
 * The playground's model picker (contract §6, issue 17) in Chromium against a real server
 * serving two models, `tiny` (distilled) and `tiny-base` (base, its own defaults): the
 * picker lists every served model from /openapi.json, the first served one chosen; choosing
 * the base model shows its defaults in the form, keeps what the user had typed, and the
 * generation goes to that model's route and runs with those defaults; the choice survives a
 * reload as the key does. The page is saved to test-artifacts/playground-models.png.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext } from 'playwright-core';
import { startTestServer, type TestServer } from '../e2e/harness.js';
import { buildWebScript } from './build-web.js';
import { ARTIFACTS, chromiumOptions, openBrowser } from './chromium.js';

const MODELS = 'flux-2-klein-4b=tiny,flux-2-klein-4b-base=tiny-base';
const SLUGS = ['flux-2-klein-4b', 'flux-2-klein-4b-base'];

type Json = Record<string, any>;

describe('playground model picker (Chromium, tiny and tiny-base engines)', () => {
  let s: TestServer;
  let browser: Awaited<ReturnType<typeof openBrowser>>;
  let context: BrowserContext;
  let doc: Json;

  before(async () => {
    chromiumOptions(); // fails here, before a server is started, when Chromium is missing
    buildWebScript();
    // tiny-base builds its miniature on first use: startTestServer waits for READY.
    s = await startTestServer({ KLEIN_MODELS: MODELS });
    browser = await openBrowser();
    context = browser.context;
    doc = (await (await fetch(`${s.url}/openapi.json`)).json()) as Json;
  });

  after(async () => {
    await browser?.close();
    await s?.close();
  });

  /** The defaults the document gives a model's body (its submit route's schema, $ref followed). */
  function bodyOf(slug: string): Json {
    const ref: string = doc.paths[`/v2/${slug}`].post.requestBody.content['application/json'].schema.$ref;
    return doc.components.schemas[ref.replace('#/components/schemas/', '')].properties;
  }

  it('lists each served model, shows the chosen one\'s defaults, submits to its route and remembers it', { timeout: 120_000 }, async () => {
    const key = s.createKey({ credits: '100' });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (/Content.Security.Policy|Uncaught/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    await page.goto(`${s.url}/`);
    await page.evaluate(() => localStorage.clear());
    await page.reload();
    await page.locator('#f-steps').waitFor();

    // The picker: both served models, the first one chosen; the form shows its defaults.
    const options = await page.locator('#model option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    assert.deepEqual(options, SLUGS);
    assert.equal(await page.locator('#model').inputValue(), 'flux-2-klein-4b');
    const distilled = bodyOf('flux-2-klein-4b');
    const base = bodyOf('flux-2-klein-4b-base');
    assert.deepEqual([distilled.steps.default, distilled.cfg.default, base.steps.default, base.cfg.default], [20, 5, 50, 4], 'the document\'s defaults');
    assert.equal(await page.locator('#f-steps').inputValue(), '20');
    assert.equal(await page.locator('#f-cfg').inputValue(), '5');
    assert.match(await page.locator('#model-about').innerText(), /^distilled; defaults: 20 steps, cfg 5$/);
    assert.match(await page.locator('[data-field=steps] small').innerText(), /default 20$/);

    // What the user typed stays; the untouched fields take the base model's defaults.
    await page.fill('#api-key', key.key);
    await page.fill('#f-prompt', 'a base model lighthouse');
    await page.fill('#f-width', '64');
    await page.fill('#f-height', '64');
    await page.fill('#f-seed', '11');
    await page.selectOption('#model', 'flux-2-klein-4b-base');
    await page.waitForFunction(() => (document.getElementById('f-steps') as HTMLInputElement | null)?.value === '50');
    assert.equal(await page.locator('#f-cfg').inputValue(), '4');
    assert.equal(await page.locator('#f-steps').getAttribute('min'), String(base.steps.minimum));
    assert.equal(await page.locator('#f-steps').getAttribute('max'), String(base.steps.maximum));
    assert.match(await page.locator('[data-field=steps] small').innerText(), /default 50$/);
    assert.match(await page.locator('[data-field=cfg] small').innerText(), /default 4$/);
    assert.match(await page.locator('#model-about').innerText(), /^base; defaults: 50 steps, cfg 4$/);
    assert.deepEqual(
      await Promise.all(['#f-prompt', '#f-width', '#f-height', '#f-seed'].map((sel) => page.locator(sel).inputValue())),
      ['a base model lighthouse', '64', '64', '11'],
    );
    // "reset to defaults" is the chosen model's.
    await page.fill('#f-steps', '7');
    await page.click('#reset');
    assert.equal(await page.locator('#f-steps').inputValue(), '50');
    await page.fill('#f-width', '64');
    await page.fill('#f-height', '64');

    // Generate: the body goes to the base model's route and runs with its 50 steps.
    const sent = page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname.startsWith('/v2/flux-2-klein-4b'));
    await page.click('#generate');
    const request = await sent;
    assert.equal(new URL(request.url()).pathname, '/v2/flux-2-klein-4b-base');
    assert.deepEqual([request.postDataJSON().steps, request.postDataJSON().cfg], [50, 4]);
    await page.waitForFunction(
      () => {
        const img = document.getElementById('result-image');
        return !document.getElementById('result')?.hidden && img instanceof HTMLImageElement && img.complete && img.naturalWidth > 0;
      },
      null,
      { timeout: 90_000 },
    );
    const id = await page.locator('#info-request').innerText();
    const record = (await (await fetch(`${s.url}/v2/requests/${id}`, { headers: { 'x-api-key': key.key } })).json()) as Json;
    assert.equal(record.status, 'COMPLETED');
    assert.deepEqual([record.input.steps, record.input.cfg, record.input.width, record.input.height], [50, 4, 64, 64]);
    assert.equal(await page.locator('#progress-text').innerText(), 'Done');
    await page.screenshot({ path: join(ARTIFACTS, 'playground-models.png'), fullPage: true });

    // The choice is remembered in this browser, as the key is.
    await page.reload();
    await page.locator('#f-steps').waitFor();
    assert.equal(await page.locator('#model').inputValue(), 'flux-2-klein-4b-base');
    assert.equal(await page.locator('#f-steps').inputValue(), '50');
    // A remembered model the server no longer serves falls back to the first served one.
    await page.evaluate(() => localStorage.setItem('klein-playground.model', 'flux-2-klein-gone'));
    await page.reload();
    await page.locator('#f-steps').waitFor();
    assert.equal(await page.locator('#model').inputValue(), 'flux-2-klein-4b');
    assert.equal(await page.locator('#f-steps').inputValue(), '20');
    assert.deepEqual(problems, []);
    await page.close();
  });
});

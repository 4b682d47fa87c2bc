/**
 * The playground's LoRA rows (contract §7) in a real browser (Debian's Chromium through
 * playwright-core) against the real server with the `tiny` engine: rows added and removed
 * within the schema's limit, a LoRA served on loopback (a seeded adapter of
 * test/clients/make_loras.py; KLEIN_ALLOW_NETWORKS lets the server fetch it) sent as
 * `loras` and kept in the request record, and the server's invalid_lora message shown
 * beside the row it names.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext, type Page } from 'playwright-core';
import type { FileServer } from '../support/safetensors-files.js';
import { makeTestLoras } from '../support/test-loras.js';
import { startTestServer, type TestServer } from '../e2e/harness.js';
import { buildWebScript } from './build-web.js';
import { ARTIFACTS, chromiumOptions, openBrowser } from './chromium.js';

const PHONE = { width: 390, height: 844 };
type Json = Record<string, any>;

describe('playground LoRA rows (Chromium, tiny engine)', { timeout: 300_000 }, () => {
  let s: TestServer;
  let files: FileServer;
  let browser: Awaited<ReturnType<typeof openBrowser>>;
  let context: BrowserContext;
  let url: string;
  let schema: Json;

  before(async () => {
    chromiumOptions(); // fails here, before a server is started, when Chromium is missing
    buildWebScript();
    files = await makeTestLoras().serve({ 'fox.safetensors': 'fox' });
    url = `${files.base}/fox.safetensors`;
    s = await startTestServer({ KLEIN_ALLOW_NETWORKS: '127.0.0.0/8' });
    browser = await openBrowser();
    context = browser.context;
    schema = ((await (await fetch(`${s.url}/openapi.json`)).json()) as Json).components.schemas.AsyncBody.properties.loras;
  });

  after(async () => {
    await browser?.close();
    await s?.close();
    await files?.close();
  });

  /** A fresh page with the form built; uncaught errors and CSP refusals fail the test. */
  async function openPage(key: string, prompt: string): Promise<{ page: Page; problems: string[] }> {
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (/Content.Security.Policy|Uncaught/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    await page.goto(`${s.url}/`);
    await page.locator('#f-steps').waitFor();
    await page.fill('#api-key', key);
    await page.fill('#f-prompt', prompt);
    await page.fill('#f-width', '64');
    await page.fill('#f-height', '64');
    await page.fill('#f-steps', '2');
    await page.fill('#f-cfg', '1');
    return { page, problems };
  }

  const rows = (page: Page) => page.locator('#lora-list li');

  it('adds rows up to the schema limit, renumbers on removal, and sends a LoRA from a URL', async () => {
    const key = s.createKey({ credits: '100' }).key;
    const { page, problems } = await openPage(key, 'a red fox');
    const scale = schema.items.properties.scale;
    assert.equal(await page.locator('#lora-count').innerText(), `0 / ${schema.maxItems}`);
    assert.equal(await page.locator('#lora-hint').innerText(), `scale ${scale.minimum} to ${scale.maximum}, default ${scale.default}`);
    for (let i = 0; i < schema.maxItems; i++) await page.click('#lora-add');
    assert.equal(await rows(page).count(), schema.maxItems);
    assert.equal(await page.locator('#lora-add').isDisabled(), true);
    assert.equal(await page.locator('#lora-count').innerText(), `${schema.maxItems} / ${schema.maxItems}`);
    const box = page.locator('#lora-scale-2');
    assert.deepEqual(
      [await box.inputValue(), await box.getAttribute('min'), await box.getAttribute('max'), await box.getAttribute('step')],
      [String(scale.default), String(scale.minimum), String(scale.maximum), '0.05'],
    );
    // Removing the first row moves the others up, under the indexes the server will use.
    await page.fill('#lora-path-1', 'second');
    await page.click('[aria-label="remove LoRA 1"]');
    assert.equal(await rows(page).count(), schema.maxItems - 1);
    assert.equal(await page.locator('#lora-path-0').inputValue(), 'second');
    assert.equal(await page.locator('#lora-add').isDisabled(), false);
    await page.click('[aria-label="remove LoRA 2"]');
    assert.equal(await rows(page).count(), 1);

    await page.fill('#lora-path-0', url);
    await page.fill('#lora-scale-0', '0.75');
    // With a row on the page, a phone screen still has no horizontal scrolling.
    await page.setViewportSize(PHONE);
    assert.deepEqual(await page.evaluate(() => ({ scroll: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth), inner: window.innerWidth })), { scroll: PHONE.width, inner: PHONE.width });
    await page.screenshot({ path: join(ARTIFACTS, 'playground-loras-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });

    await page.click('#generate');
    await page.locator('#message.ok').waitFor({ timeout: 120_000 });
    const id = await page.locator('#info-request').innerText();
    const record = (await (await fetch(`${s.url}/v2/requests/${id}`, { headers: { 'x-api-key': key } })).json()) as Json;
    assert.equal(record.status, 'COMPLETED');
    assert.deepEqual(record.input.loras, [{ path: url, scale: 0.75 }]);
    assert.ok((files.requests.get('/fox.safetensors') ?? 0) > 0, 'the server fetched the file');
    assert.deepEqual(problems, []);
    await page.close();
  });

  it("shows the server's invalid_lora message beside the row it names, and an empty row before sending", async () => {
    const key = s.createKey({ credits: '100' }).key;
    const { page, problems } = await openPage(key, 'a bad path');
    const submits: string[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname.startsWith('/v2/')) submits.push(r.postData() ?? '');
    });
    await page.click('#lora-add');
    await page.click('#generate');
    await page.locator('#lora-path-error-0').waitFor();
    assert.match(await page.locator('#lora-path-error-0').innerText(), /enter a URL, a repo id or a file name, or remove this adapter/);
    assert.equal(await page.locator('#lora-path-0').getAttribute('aria-invalid'), 'true');
    assert.deepEqual(submits, [], 'nothing sent with an empty row');

    await page.fill('#lora-path-0', url);
    await page.click('#lora-add');
    await page.fill('#lora-path-1', '../x.safetensors');
    await page.click('#generate');
    await page.locator('#lora-path-error-1').waitFor({ timeout: 60_000 });
    // What the server says of that body, asked directly.
    const sent = JSON.parse(submits.at(-1)!) as Json;
    assert.deepEqual(sent.loras, [{ path: url, scale: 1 }, { path: '../x.safetensors', scale: 1 }]);
    const direct = await fetch(`${s.url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(sent) });
    const answer = (await direct.json()) as Json;
    assert.equal(direct.status, 400);
    assert.equal(answer.code, 'invalid_lora');
    assert.equal(answer.details[0].field, 'loras[1].path');
    assert.equal(await page.locator('#lora-path-error-1').innerText(), answer.details[0].message);
    assert.equal(await page.locator('#lora-path-1').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.locator('#lora-path-error-0').isHidden(), true, 'not beside the good row');
    assert.equal(await page.locator('#lora-path-0').getAttribute('aria-invalid'), null);
    assert.match(await page.locator('#message.error').innerText(), /\S/);
    // Removing the row above renumbers the rows: the message, shown against the old index, goes.
    await page.click('[aria-label="remove LoRA 1"]');
    assert.equal(await page.locator('#lora-path-0').inputValue(), '../x.safetensors');
    assert.equal(await page.locator('#lora-path-error-0').isHidden(), true);
    assert.equal(await page.locator('#lora-path-0').getAttribute('aria-invalid'), null);
    assert.deepEqual(problems, []);
    await page.close();
  });
});

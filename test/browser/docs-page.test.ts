/**
 * The API reference at /docs (Swagger UI, served from @fastify/swagger-ui's own files) in a
 * real browser (Debian's Chromium driven by playwright-core) against the real server: a key
 * entered under Authorize is sent as x-api-key by Try it out, which gets a 200 from an
 * authenticated route, and the key survives a reload (persistAuthorization). The page and
 * its assets name no other host, and loading and using it requests nothing from one; its
 * Content-Security-Policy is not violated. The page is saved to test-artifacts/docs.png.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestServer, type KeyInfo, type TestServer } from '../e2e/harness.js';
import { ARTIFACTS, chromiumOptions } from './chromium.js';


describe('the /docs reference page', () => {
  let s: TestServer;
  let key: KeyInfo;
  let browser: Browser;

  before(async () => {
    const browserOptions = chromiumOptions();
    // No generation here: the simulated engine is enough and starts at once.
    s = await startTestServer({ KLEIN_MODEL: 'simulated' });
    key = s.createKey({ credits: '12.5' });
    browser = await chromium.launch(browserOptions);
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  it('names no other host in the page, its styles or its start-up script', async () => {
    const page = await fetch(`${s.url}/docs`);
    assert.equal(page.status, 200);
    const html = await page.text();
    const links = [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
    assert.ok(links.length >= 4, html);
    for (const link of links) assert.match(link, /^\/docs\/static\/[\w./-]+$/, `${link} is not one of this server's files`);
    for (const link of links.filter((l) => l.endsWith('.css'))) {
      const css = await (await fetch(`${s.url}${link}`)).text();
      // data: URLs may carry an SVG namespace (http://www.w3.org/2000/svg), which is no request.
      for (const [, url] of css.matchAll(/url\(\s*["']?([^"')]*)/g)) assert.match(url!, /^(data:|[\w./-]+$)/, `${link}: url(${url!.slice(0, 80)})`);
      assert.doesNotMatch(css, /@import/, link);
    }
    const init = await (await fetch(`${s.url}/docs/static/swagger-initializer.js`)).text();
    // A URL in a string (a comment of the plugin's cites stackoverflow.com, which loads nothing).
    assert.doesNotMatch(init, /["'`]https?:\/\//, 'the start-up script names a host');
    assert.match(init, /validatorUrl: null/, 'the validator badge (validator.swagger.io) is off');
  });

  it('authorizes with a key, runs Try it out on GET /v1/get-user-credits, and keeps the key', { timeout: 120_000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const origin = new URL(s.url).origin;
    const requested: string[] = [];
    context.on('request', (r) => requested.push(r.url()));
    // Generous: the machine may be busy with other suites, and the bundle is 1.7 MB of script.
    context.setDefaultTimeout(60_000);
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || /Content.Security.Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
    });

    await page.goto(`${s.url}/docs`);
    await page.locator('.swagger-ui .info .title', { hasText: 'klein-serve' }).waitFor();

    // Authorize: the ApiKey scheme (x-api-key).
    await page.locator('.scheme-container button.authorize').click();
    const apiKey = page.locator('.modal-ux .auth-container', { hasText: 'x-api-key' });
    await apiKey.locator('input').fill(key.key);
    await apiKey.locator('button.authorize').click();
    await page.locator('.modal-ux button.btn-done').first().click();

    await tryCredits(page);
    await page.screenshot({ path: join(ARTIFACTS, 'docs.png'), fullPage: false });

    // persistAuthorization: loaded again, the page still has the key and still sends it.
    await page.goto(`${s.url}/docs`);
    await page.locator('.swagger-ui .info .title', { hasText: 'klein-serve' }).waitFor();
    await tryCredits(page);

    assert.deepEqual(problems, []);
    assert.deepEqual(
      requested.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:')),
      [],
      'requests to another host',
    );
    assert.ok(requested.includes(`${origin}/docs/json`), 'the page reads the document from this server');
    await context.close();
  });

  /** Opens getUserCredits, runs Try it out, and checks the request carried the key and got a 200. */
  async function tryCredits(page: Page): Promise<void> {
    // Opened from a fresh load (no #fragment for deep linking to restore), so it starts closed.
    const op = page.locator('#operations-account-getUserCredits');
    await op.locator('.opblock-summary-control').click();
    await op.locator('button.try-out__btn', { hasText: 'Try it out' }).click();
    const sent = page.waitForRequest((r) => r.url().endsWith('/v1/get-user-credits'));
    await op.locator('button.execute').click();
    assert.equal((await sent).headers()['x-api-key'], key.key, 'Try it out sends the key as x-api-key');
    const status = op.locator('.live-responses-table .response .response-col_status').first();
    await status.waitFor();
    assert.equal((await status.innerText()).trim(), '200');
    const body = await op.locator('.live-responses-table .response-col_description pre').first().innerText();
    assert.equal((JSON.parse(body) as { account_id: string }).account_id, key.account_id);
  }
});

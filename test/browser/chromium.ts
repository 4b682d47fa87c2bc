/**
 * The Chromium the browser tests drive (Debian's, through playwright-core), its flags, and
 * where they leave screenshots. `chromiumOptions()` fails, rather than skips, when it is
 * missing: `npm test` installs it (scripts/setup-test-services.mjs).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { root } from './build-web.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Where screenshots go (made on first use). */
export const ARTIFACTS = join(root, 'test-artifacts');

/** playwright-core's launch options for Debian's Chromium, headless; throws when it is not installed. */
export function chromiumOptions(): { executablePath: string; args: string[]; headless: true } {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y --no-install-recommends chromium), as npm test does`);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  return { executablePath: CHROMIUM, args: ARGS, headless: true };
}

/** A desktop-sized Chromium with a profile of its own (its own localStorage), removed on close. */
export async function openBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const options = chromiumOptions();
  const profile = mkdtempSync(join(tmpdir(), 'klein-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { ...options, viewport: { width: 1280, height: 900 } });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

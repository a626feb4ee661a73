/**
 * Renders a report.html in headless Debian Chromium and saves a PNG screenshot.
 * Usage: node dist/scripts/screenshot-report.js <report.html> <out.png> [width] [height] [--detail]
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [html, out, w = '1280', h = '900', flag] = process.argv.slice(2);
if (!html || !out) {
  process.stderr.write('usage: screenshot-report <report.html> <out.png> [width] [height] [--detail]\n');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.MUSC_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: Number(w), height: Number(h) } });
  await page.goto(pathToFileURL(resolve(html)).href);
  if (flag === '--detail') {
    await page.locator('[data-testid="card"]').first().click();
    await page.waitForSelector('[data-testid="detail"]', { state: 'visible' });
  }
  await page.screenshot({ path: out, fullPage: false });
} finally {
  await browser.close();
}

/**
 * The dashboard browser tests' shared steps (Chromium through playwright-core):
 * log in with a daemon's token and wait for the event stream, or open a new
 * page that does so and collects the page's own errors.
 */
import type { Browser, Page } from 'playwright-core';
import type { Serve } from './api-helpers.js';

export async function login(page: Page, node: Serve): Promise<void> {
  page.setDefaultTimeout(30_000);
  await page.goto(node.url.endsWith('/') ? node.url : `${node.url}/`);
  await page.locator('#token-input').fill(node.token);
  await page.locator('#token-form button[type=submit]').click();
  await page.locator('#conn[data-state="open"]').waitFor();
}

/** A logged-in page; uncaught page errors go to `problems`. */
export async function openPage(browser: Browser, node: Serve, problems: string[]): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  await login(page, node);
  return page;
}

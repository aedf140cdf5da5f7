// Drives wsproxy-web's page in a real headless Firefox (Debian's firefox-esr, through
// puppeteer-core and WebDriver BiDi; Puppeteer downloads no browser) for
// tests/web/test_firefox_page.py. One scenario, in steps the test interleaves with its own
// WebSocket client:
//
//   node firefox_ui.mjs '{"url": UI_URL_WITH_TOKEN, "firefox": PATH, "prefs": {...},
//                         "original": TEXT, "edited": TEXT, "path": "/chat"}'
//
// 1. opens the page, waits until it is live, adds the breakpoint rule "~b secret" (from the
//    client), saves it and prints {"event":"ready"};
// 2. waits for a line "sent" on stdin (the test's client has sent `original`), waits for the
//    paused message, checks the editor holds `original`, replaces it with `edited`, clicks
//    "Forward edited" and prints {"event":"forwarded"};
// 3. opens the connection whose path is `path` in the Traffic view, waits for the edited
//    message marked "modified", and prints {"event":"done","errors":[...]}, `errors` being
//    what the page threw or logged as an error.
// Any failure prints {"event":"error","error":...} and exits with status 2; Firefox is closed
// on every path.

import puppeteer from 'puppeteer-core';
import { createInterface } from 'node:readline';

const cfg = JSON.parse(process.argv[2]);
const STEP_MS = 20000;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function waitForLine(expected) {
  const { value, done } = await lines.next();
  if (done || value.trim() !== expected) {
    throw new Error(`expected "${expected}" on stdin, got ${value}`);
  }
}

async function textIs(page, selector, pattern) {
  await page.waitForFunction(
    (sel, source) => new RegExp(source).test(document.querySelector(sel)?.textContent ?? ''),
    { timeout: STEP_MS },
    selector,
    pattern,
  );
}

async function run(page, errors) {
  page.on('pageerror', (error) => errors.push(`threw: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  await page.goto(cfg.url);
  await textIs(page, '#link-status', '^live$');

  await page.locator('#tab-breakpoints').click();
  await page.locator('#add-rule').click();
  await page.locator('[aria-label="Rule 1 filter"]').fill('~b secret');
  await page.select('[aria-label="Rule 1 direction"]', 'client');
  await page.locator('#save-rules').click();
  await textIs(page, '#rules-status', 'Saved: 1 rule');
  out({ event: 'ready' });

  await waitForLine('sent');
  await textIs(page, '#paused-count', '^1$');
  await page.waitForFunction(
    (text) => document.querySelector('#pause-body')?.value === text,
    { timeout: STEP_MS },
    cfg.original,
  );
  await page.locator('#pause-body').fill(cfg.edited);
  await page.locator('button::-p-text(Forward edited)').click();
  await textIs(page, '#paused-count', '^0$');
  out({ event: 'forwarded' });

  await page.locator('#tab-traffic').click();
  const connection = `#conn-list [role="option"][aria-label*="${cfg.path}"]`;
  await page.locator(connection).click();
  await page.waitForFunction(
    (edited) => {
      const list = document.querySelector('[role="listbox"][aria-label="Messages"]');
      const options = [...(list?.querySelectorAll('[role="option"]') ?? [])];
      const text = options.map((o) => o.textContent);
      return text.some((t) => t.includes(edited) && t.includes('modified'));
    },
    { timeout: STEP_MS },
    cfg.edited,
  );
}

const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: cfg.firefox,
  headless: true,
  extraPrefsFirefox: cfg.prefs ?? {},
});
let status = 0;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  const errors = [];
  await run(page, errors);
  out({ event: 'done', errors });
} catch (error) {
  out({ event: 'error', error: String(error && error.stack ? error.message : error) });
  status = 2;
} finally {
  await browser.close();
}
process.exit(status);

// The admin console in real Chromium against the real binary: the page opens with its token,
// pusher-js traffic appears in its live log and channel list, the log filters by channel and
// event name and pauses, and the page's form publishes an event that pusher-js receives.
//
// With CONSOLE_SCREENSHOT=path.png the test also saves screenshots of the page: the live view
// there, and the filtered log after a publish from the form beside it as path-publish.png (the
// README's docs/console.png and docs/console-publish.png are made so).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, connected, subscribed, nextEvent, WAIT_MS } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';
import { launchChromium } from '../lib/browser.mjs';

const T = { timeout: 60_000 };
const TOKEN = 'console-browser-token';
const METRICS_LINE = /ferrocast metrics on (\S+):(\d+)/;

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

/** The admin listener's base URL, from the server's `ferrocast metrics on` line. */
async function adminUrl(server) {
  const start = Date.now();
  for (;;) {
    const match = METRICS_LINE.exec(server.output());
    if (match) return `http://${match[1]}:${match[2]}`;
    if (Date.now() - start > WAIT_MS) throw new Error(`no metrics line in:\n${server.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The log rows of the page matching `kind`, `channel` and `event` (when given). */
function rows(page, { kind, channel, event } = {}) {
  let selector = '#log tbody tr';
  if (kind) selector += `[data-kind="${kind}"]`;
  if (channel) selector += `[data-channel="${channel}"]`;
  if (event) selector += `[data-event="${event}"]`;
  return page.locator(selector);
}

test('the console shows live traffic, filters, pauses and publishes', T, async (t) => {
  const world = await setup(t, {
    metrics: { port: 0 },
    admin: { token: TOKEN },
    apps: [app(), app({ id: 'second', key: 'second-key', secret: 'second-secret' })],
  });
  const base = await adminUrl(world.server);

  // Without the token the console is refused.
  const refused = await fetch(`${base}/console`);
  assert.equal(refused.status, 401);

  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  t.after(() => page.close().catch(() => {}));
  await page.setViewportSize({ width: 1280, height: 760 });
  await page.goto(`${base}/console?token=${TOKEN}`);
  await page.locator('#status.live').waitFor();
  assert.equal(await page.locator('#app').inputValue(), 'app-id');

  // Traffic from pusher-js in Node: it appears in the log and the channel list.
  const alice = world.client();
  const bob = world.client();
  await connected(alice);
  await connected(bob);
  const { channel: news } = await subscribed(alice, 'news');
  await subscribed(bob, 'news');
  await subscribed(bob, 'sports');
  await subscribed(alice, 'presence-lobby').catch(() => {}); // refused: no user given
  await rows(page, { kind: 'connected' }).nth(1).waitFor();
  await rows(page, { kind: 'subscribed', channel: 'sports' }).waitFor();
  await world.sdk.trigger('news', 'headline', { title: 'Rust 2027 released' });
  await world.sdk.trigger('sports', 'score', { home: 2, away: 1 });
  await rows(page, { kind: 'api_publish', channel: 'news', event: 'headline' }).waitFor();
  await rows(page, { kind: 'api_publish', channel: 'sports', event: 'score' }).waitFor();
  assert.match(
    await rows(page, { event: 'headline' }).locator('td.data').innerText(),
    /Rust 2027 released/,
  );
  await page.locator('#channels tr[data-channel="news"]').waitFor();
  await page.waitForFunction(() => document.getElementById('connections').textContent === '2');
  const newsRow = page.locator('#channels tr[data-channel="news"] td');
  assert.equal(await newsRow.nth(1).innerText(), '2', 'two subscribers of news');

  if (process.env.CONSOLE_SCREENSHOT) {
    await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT });
  }

  // Filter by channel: only news rows remain; then by event name.
  await page.fill('#channel-filter', 'news');
  await page.waitForFunction(
    () => [...document.querySelectorAll('#log tbody tr')].every((r) => r.dataset.channel.includes('news')),
  );
  assert.equal(await rows(page, { channel: 'sports' }).count(), 0);
  assert.ok((await rows(page, { channel: 'news' }).count()) >= 3);
  await page.fill('#event-filter', 'headline');
  await page.waitForFunction(() => document.querySelectorAll('#log tbody tr').length === 1);
  await page.fill('#event-filter', '');

  // Paused, new events are held, not shown; resumed, they appear.
  await page.click('#pause');
  await world.sdk.trigger('news', 'while-paused', {});
  await page.waitForFunction(() => document.getElementById('pending').textContent.includes('1 new'));
  assert.equal(await rows(page, { event: 'while-paused' }).count(), 0);
  await page.click('#pause');
  await rows(page, { event: 'while-paused' }).waitFor();
  await page.fill('#channel-filter', '');

  // The form publishes; pusher-js receives it, and the log shows it.
  const received = nextEvent(news, 'from-console');
  await page.fill('#pub-channel', 'news');
  await page.fill('#pub-event', 'from-console');
  await page.fill('#pub-data', '{"hello":"browser"}');
  await page.click('#pub-send');
  const { data } = await received;
  assert.deepEqual(data, { hello: 'browser' });
  await page.locator('#pub-result.ok').waitFor();
  await rows(page, { kind: 'api_publish', event: 'from-console' }).waitFor();
  if (process.env.CONSOLE_SCREENSHOT) {
    await page.fill('#channel-filter', 'news');
    await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT.replace(/\.png$/, '-publish.png') });
    await page.fill('#channel-filter', '');
  }

  // A refused publish says why in the page.
  await page.fill('#pub-channel', '');
  await page.evaluate(() => document.getElementById('pub-channel').removeAttribute('required'));
  await page.click('#pub-send');
  await page.locator('#pub-result.err').waitFor();

  // The second app has its own view: nothing of the first app's traffic.
  await page.selectOption('#app', 'second');
  await page.waitForFunction(() => document.getElementById('connections').textContent === '0');
  assert.equal(await rows(page).count(), 0);

  assert.deepEqual(errors, [], 'no error in the page');
});

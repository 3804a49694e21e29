// An app's allowed_origins and require_origin, seen by real clients.
//
// pusher-js under Node connects through a WebSocket library that sends no Origin header (as
// any server-side client), so the browser's part is played by raw `ws` sockets with an
// `origin`, and pusher-js shows what a client without one is told.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, connected, record, sleep, subscribed, nextEvent } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';

const T = { timeout: 30_000 };
const SHOP = ['https://shop.example.com', 'https://*.shop.example.com'];

function pusherErrorCode(err) {
  return err?.error?.data?.code ?? err?.data?.code;
}

test('a page of a listed origin connects, subscribes and receives a publish', T, async (t) => {
  const h = await setup(t, { apps: [app({ allowed_origins: SHOP })] });
  for (const origin of ['https://shop.example.com', 'https://eu.shop.example.com']) {
    const page = h.raw(h.url(), { origin });
    await page.established();
    page.send({ event: 'pusher:subscribe', data: { channel: 'news' } });
    await page.event('pusher_internal:subscription_succeeded');
    await h.sdk.trigger('news', 'sale', { from: origin });
    const sale = await page.event('sale');
    assert.deepEqual(sale.data, { from: origin });
  }
});

test('another site\'s page gets pusher:error 4009, then a close with 4009', T, async (t) => {
  const h = await setup(t, { apps: [app({ allowed_origins: SHOP })] });
  for (const origin of ['https://evil.test', 'https://shop.example.com.evil.test', 'https://example.com', 'null']) {
    const page = h.raw(h.url(), { origin });
    const error = await page.event('pusher:error');
    assert.equal(error.data.code, 4009, origin);
    assert.match(error.data.message, /origin/i);
    const { code } = await page.closed();
    assert.equal(code, 4009, origin);
    assert.equal(page.messages.some((m) => m.event === 'pusher:connection_established'), false);
  }
});

test('pusher-js without an Origin is let in unless the app requires one', T, async (t) => {
  const h = await setup(t, { apps: [app({ allowed_origins: SHOP })] });
  const pusher = h.client();
  await connected(pusher);
  await subscribed(pusher, 'news');
  const got = nextEvent(pusher.channel('news'), 'sale');
  await h.sdk.trigger('news', 'sale', { n: 1 });
  assert.deepEqual((await got).data, { n: 1 });
});

test('require_origin: pusher-js is refused with 4009 and does not reconnect', T, async (t) => {
  const h = await setup(t, { apps: [app({ allowed_origins: SHOP, require_origin: true })] });
  const pusher = h.client();
  const errors = record(pusher.connection, 'error');
  const states = record(pusher.connection, 'state_change');
  const error = await errors.until((e) => pusherErrorCode(e.data) === 4009, {
    what: 'a connection error with code 4009',
  });
  assert.equal(pusherErrorCode(error.data), 4009);
  await states.until(({ data }) => data.current === 'disconnected', { what: 'state disconnected' });
  const before = states.items.length;
  await sleep(2_500);
  assert.deepEqual(states.items.slice(before).map(({ data }) => data.current), []);
  // A listed page still connects.
  const page = h.raw(h.url(), { origin: 'https://shop.example.com' });
  await page.established();
});

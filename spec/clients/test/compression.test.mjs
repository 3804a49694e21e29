// permessage-deflate with Node's `ws`, which offers it by default as browsers do: negotiated,
// large events arrive compressed (far fewer bytes read than the message holds), and a large
// compressed client message is understood.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup } from '../lib/clients.mjs';

const T = { timeout: 30_000 };

/** `count` order records as an app would publish them. */
function orders(count) {
  return Array.from({ length: count }, (_, i) => ({
    id: i,
    user: `user-${(i * 7919) % 1000}`,
    price: 100 + ((i * 37) % 900) / 100,
    status: ['open', 'filled', 'cancelled'][i % 3],
  }));
}

test('ws negotiates permessage-deflate and gets a large event compressed', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  await raw.established();
  assert.match(raw.ws.extensions, /^permessage-deflate/);
  raw.send({ event: 'pusher:subscribe', data: { channel: 'market' } });
  await raw.event('pusher_internal:subscription_succeeded');

  const data = orders(100);
  const text = JSON.stringify(data);
  assert.ok(text.length > 5_000);
  const before = raw.ws._socket.bytesRead;
  const res = await h.sdk.trigger('market', 'orders', data);
  assert.equal(res.status, 200);
  const event = await raw.event('orders');
  assert.deepEqual(event.data, data);
  const read = raw.ws._socket.bytesRead - before;
  assert.ok(read < text.length / 2, `${read} bytes read for a ${text.length}-byte event`);
});

test('a large compressed client message is inflated and answered', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  await raw.established();
  // `ws` compresses messages of 1 KiB or more.
  const padding = 'p'.repeat(4_000);
  const from = raw.mark();
  raw.send({ event: 'pusher:ping', data: { padding } });
  await raw.until((m) => m.event === 'pusher:pong', { from, what: 'pusher:pong' });
});

test('a client that does not offer it gets no extension', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw(h.url(), { perMessageDeflate: false });
  await raw.established();
  assert.equal(raw.ws.extensions, '');
});

// Channel kinds beyond the basics: encrypted, cache, subscription counts, presence limits,
// a path prefix and protocol versions.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import PusherServer from 'pusher';
import { setup, connected, record, subscribed, roundTrip } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';

const T = { timeout: 30_000 };

test('private-encrypted: pusher-js decrypts what the SDK encrypted; client events refused', T, async (t) => {
  const h = await setup(t);
  const encrypting = new PusherServer({
    appId: 'app-id',
    key: 'app-key',
    secret: 'app-secret',
    host: h.server.host,
    port: String(h.server.port),
    useTLS: false,
    timeout: 5_000,
    encryptionMasterKeyBase64: randomBytes(32).toString('base64'),
  });
  const pusher = h.client({ signer: encrypting });
  await connected(pusher);
  const { channel } = await subscribed(pusher, 'private-encrypted-vault');
  const secrets = record(channel, 'secret');
  const res = await encrypting.trigger('private-encrypted-vault', 'secret', { pin: '1234' });
  assert.equal(res.status, 200);
  const got = await secrets.until(() => true, { what: 'the decrypted event' });
  assert.deepEqual(got.data, { pin: '1234' });

  // The server only relays ciphertext; a raw subscriber sees nonce and ciphertext, not the data.
  const raw = h.raw();
  const socketId = await raw.established();
  raw.send({
    event: 'pusher:subscribe',
    data: { channel: 'private-encrypted-vault', auth: encrypting.authorizeChannel(socketId, 'private-encrypted-vault').auth },
  });
  await raw.event('pusher_internal:subscription_succeeded');
  await encrypting.trigger('private-encrypted-vault', 'secret', { pin: '5678' });
  const cipher = await raw.event('secret');
  assert.deepEqual(Object.keys(cipher.data).sort(), ['ciphertext', 'nonce']);
  assert.ok(!JSON.stringify(cipher).includes('5678'));

  const from = raw.mark();
  raw.send({ event: 'client-leak', channel: 'private-encrypted-vault', data: { x: 1 } });
  await raw.until((m) => m.event === 'pusher:error', { from, what: 'pusher:error for a client event on an encrypted channel' });
  const leaks = record(channel, 'client-leak');
  await roundTrip(pusher);
  assert.equal(leaks.items.length, 0);
});

test('cache channels: the last event is replayed on subscribe, else pusher:cache_miss', T, async (t) => {
  const h = await setup(t);
  const res = await h.sdk.trigger('cache-weather', 'forecast', { sky: 'clear' });
  assert.equal(res.status, 200);
  const pusher = h.client();
  await connected(pusher);
  const weather = pusher.subscribe('cache-weather');
  const forecasts = record(weather, 'forecast');
  const missesOnWeather = record(weather, 'pusher:cache_miss');
  const replay = await forecasts.until(() => true, { what: 'the cached forecast' });
  assert.deepEqual(replay.data, { sky: 'clear' });

  const empty = pusher.subscribe('cache-nothing-yet');
  const misses = record(empty, 'pusher:cache_miss');
  await misses.until(() => true, { what: 'pusher:cache_miss on an empty cache channel' });
  await roundTrip(pusher);
  assert.equal(missesOnWeather.items.length, 0);
  assert.equal(forecasts.items.length, 1);
});

test('private cache channels need a valid signature', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  await raw.established();
  const forged = h.sdkFor({ id: 'app-id', key: 'app-key', secret: 'guess' }).authorizeChannel(
    raw.messages[0].data.socket_id,
    'private-cache-x',
  );
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-cache-x', auth: forged.auth } });
  const error = await raw.event('pusher:subscription_error');
  assert.equal(error.data.status, 401);
  assert.ok(!raw.messages.some((m) => m.event === 'pusher_internal:subscription_succeeded'));
});

test('subscription_count events when the app enables them', T, async (t) => {
  const h = await setup(t, { apps: [app({ subscription_count_events: true })] });
  const [a, b] = [h.client(), h.client()];
  await Promise.all([connected(a), connected(b)]);
  const chanA = a.subscribe('counted');
  const countsA = record(chanA, 'pusher:subscription_count');
  await countsA.until(({ data }) => data.subscription_count === 1, { what: 'subscription_count 1' });
  await subscribed(b, 'counted');
  await countsA.until(({ data }) => data.subscription_count === 2, { what: 'subscription_count 2 at a' });
  assert.equal(chanA.subscriptionCount, 2);
  b.unsubscribe('counted');
  await countsA.until(({ data }) => data.subscription_count === 1 && countsA.items.length >= 3, {
    what: 'subscription_count back to 1',
  });
});

test('presence: a full channel refuses a new user but not another tab of a member', T, async (t) => {
  const h = await setup(t, { apps: [app({ max_presence_members: 1 })] });
  const alice = h.client({ user: { id: 'alice' } });
  const aliceTab = h.client({ user: { id: 'alice' } });
  const bob = h.client({ user: { id: 'bob' } });
  await Promise.all([alice, aliceTab, bob].map((p) => connected(p)));
  await subscribed(alice, 'presence-tiny');
  await subscribed(aliceTab, 'presence-tiny');
  const channel = bob.subscribe('presence-tiny');
  const errors = record(channel, 'pusher:subscription_error');
  const { data } = await errors.until(() => true, { what: 'subscription_error for a full channel' });
  assert.equal(data.status, 403);
});

test('path_prefix: pusher-js connects under the prefix, the bare path is 4005', T, async (t) => {
  const h = await setup(t, { path_prefix: '/ws', apps: [app()] });
  const pusher = h.client({ options: { wsPath: '/ws' } });
  await connected(pusher);
  await subscribed(pusher, 'prefixed');
  const raw = h.raw();
  const error = await raw.event('pusher:error');
  assert.equal(error.data.code, 4005);
  assert.equal((await raw.closed()).code, 4005);
});

test('protocol versions: 7 and none are accepted, 8 is 4007, junk is 4006', T, async (t) => {
  const h = await setup(t);
  await h.raw(h.url('app-key', '')).established();
  const cases = [
    ['protocol=8', 4007],
    ['protocol=seven', 4006],
  ];
  for (const [query, code] of cases) {
    const raw = h.raw(h.url('app-key', query));
    const error = await raw.event('pusher:error');
    assert.equal(error.data.code, code, query);
    assert.equal((await raw.closed()).code, code, query);
  }
});

// The signed HTTP API, driven by the `pusher` Node SDK, observed by pusher-js subscribers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, connected, record, subscribed, roundTrip, sleep, WAIT_MS } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';

const T = { timeout: 30_000 };

/** Awaits an SDK call expected to fail; returns its HTTP status and parsed body. */
async function refusal(promise) {
  try {
    const res = await promise;
    assert.fail(`expected an HTTP error, got ${res.status} ${await res.text()}`);
  } catch (err) {
    if (err.status === undefined) throw err;
    let body;
    try {
      body = JSON.parse(err.body);
    } catch {
      body = err.body;
    }
    return { status: err.status, body };
  }
}

async function json(promise) {
  const res = await promise;
  assert.equal(res.status, 200);
  return res.json();
}

/** Waits until the server reports `pred(info)` for GET /channels/{name}. */
async function channelState(sdk, name, params, pred, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const info = await json(sdk.get({ path: `/channels/${encodeURIComponent(name)}`, params }));
    if (pred(info)) return info;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(info)}`);
    await sleep(50);
  }
}

test('trigger: subscribers of every named channel receive the event, answer {}', T, async (t) => {
  const h = await setup(t);
  const [a, b] = [h.client(), h.client()];
  await Promise.all([connected(a), connected(b)]);
  const { channel: news } = await subscribed(a, 'news');
  const { channel: sport } = await subscribed(b, 'private-sport');
  const atNews = record(news, 'breaking');
  const atSport = record(sport, 'breaking');
  const body = await json(h.sdk.trigger(['news', 'private-sport'], 'breaking', { headline: 'Rust 2.0' }));
  assert.deepEqual(body, {});
  const [n, s] = await Promise.all([
    atNews.until(() => true, { what: 'breaking on news' }),
    atSport.until(() => true, { what: 'breaking on private-sport' }),
  ]);
  assert.deepEqual(n.data, { headline: 'Rust 2.0' });
  assert.deepEqual(s.data, { headline: 'Rust 2.0' });
});

test('trigger with socket_id excludes that connection', T, async (t) => {
  const h = await setup(t);
  const [a, b] = [h.client(), h.client()];
  await Promise.all([connected(a), connected(b)]);
  const { channel: ca } = await subscribed(a, 'room');
  const { channel: cb } = await subscribed(b, 'room');
  const atA = record(ca, 'said');
  const atB = record(cb, 'said');
  await json(h.sdk.trigger('room', 'said', 'plain text', { socket_id: a.connection.socket_id }));
  const got = await atB.until(() => true, { what: 'said at b' });
  assert.equal(got.data, 'plain text');
  await roundTrip(a);
  assert.equal(atA.items.length, 0, 'the excluded socket must not receive the event');
});

test('triggerBatch delivers every event; info asks for counts', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client({ user: { id: 'alice' } });
  await connected(pusher);
  const { channel: one } = await subscribed(pusher, 'one');
  const { channel: room } = await subscribed(pusher, 'presence-room');
  const atOne = record(one, 'e1');
  const atRoom = record(room, 'e2');
  const body = await json(
    h.sdk.triggerBatch([
      { channel: 'one', name: 'e1', data: JSON.stringify({ k: 1 }), info: 'subscription_count' },
      { channel: 'presence-room', name: 'e2', data: 'two', info: 'user_count' },
    ]),
  );
  assert.deepEqual(body, { batch: [{ subscription_count: 1 }, { user_count: 1 }] });
  assert.deepEqual((await atOne.until(() => true, { what: 'e1' })).data, { k: 1 });
  assert.equal((await atRoom.until(() => true, { what: 'e2' })).data, 'two');
});

test('channel queries: list, info with counts, presence users', T, async (t) => {
  const h = await setup(t);
  const alice = h.client({ user: { id: 'alice' } });
  const bob = h.client({ user: { id: 'bob' } });
  const alice2 = h.client({ user: { id: 'alice' } });
  await Promise.all([connected(alice), connected(bob), connected(alice2)]);
  await subscribed(alice, 'presence-room');
  await subscribed(bob, 'presence-room');
  await subscribed(alice2, 'presence-room');
  await subscribed(bob, 'public-a');

  const all = await json(h.sdk.get({ path: '/channels' }));
  assert.deepEqual(Object.keys(all.channels).sort(), ['presence-room', 'public-a']);

  const presence = await json(
    h.sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }),
  );
  assert.deepEqual(presence, { channels: { 'presence-room': { user_count: 2 } } });

  const info = await json(h.sdk.get({ path: '/channels/presence-room', params: { info: 'user_count' } }));
  assert.equal(info.occupied, true);
  assert.equal(info.user_count, 2);

  const counted = await json(h.sdk.get({ path: '/channels/public-a', params: { info: 'subscription_count' } }));
  assert.deepEqual(counted, { occupied: true, subscription_count: 1 });

  const empty = await json(h.sdk.get({ path: '/channels/nobody-here' }));
  assert.deepEqual(empty, { occupied: false });

  const users = await json(h.sdk.get({ path: '/channels/presence-room/users' }));
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);

  const notPresence = await refusal(h.sdk.get({ path: '/channels/public-a/users' }));
  assert.equal(notPresence.status, 400);

  // The roster follows disconnects.
  bob.disconnect();
  await channelState(
    h.sdk,
    'presence-room',
    { info: 'user_count' },
    (i) => i.user_count === 1,
    'user_count 1 after bob left',
  );
});

test('sendToUser reaches the signed-in user through #server-to-user-{id}', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client({ user: { id: 'alice' } });
  const other = h.client({ user: { id: 'bob' } });
  await Promise.all([connected(pusher), connected(other)]);
  pusher.signin();
  other.signin();
  const deadline = Date.now() + WAIT_MS;
  while (!(pusher.user.serverToUserChannel?.subscribed && other.user.serverToUserChannel?.subscribed)) {
    if (Date.now() > deadline) throw new Error('timed out waiting for both #server-to-user channels');
    await sleep(20);
  }
  const atAlice = record(pusher.user, 'notice');
  const atBob = record(other.user, 'notice');
  await json(h.sdk.sendToUser('alice', 'notice', { text: 'for alice' }));
  const got = await atAlice.until(() => true, { what: 'notice at alice' });
  assert.deepEqual(got.data, { text: 'for alice' });
  await roundTrip(other);
  assert.equal(atBob.items.length, 0);
});

test('terminateUserConnections closes every connection of that user with 4009', T, async (t) => {
  const h = await setup(t);
  const tabs = [h.client({ user: { id: 'alice' } }), h.client({ user: { id: 'alice' } })];
  const bystander = h.client({ user: { id: 'bob' } });
  await Promise.all([...tabs, bystander].map((p) => connected(p)));
  for (const p of [...tabs, bystander]) p.signin();
  const deadline = Date.now() + WAIT_MS;
  while (![...tabs, bystander].every((p) => p.user.user_data)) {
    if (Date.now() > deadline) throw new Error('timed out waiting for sign-in');
    await sleep(20);
  }
  const errors = tabs.map((p) => record(p.connection, 'error'));
  await json(h.sdk.terminateUserConnections('alice'));
  for (const [i, log] of errors.entries()) {
    const e = await log.until(({ data }) => (data.data?.code ?? data.error?.data?.code) === 4009, {
      what: `error 4009 on alice's tab ${i + 1}`,
    });
    assert.ok(e);
  }
  for (const p of tabs) {
    const states = record(p.connection, 'state_change');
    if (p.connection.state !== 'disconnected') {
      await states.until(({ data }) => data.current === 'disconnected', { what: 'disconnected after 4009' });
    }
    states.stop();
  }
  await roundTrip(bystander);
  assert.equal(bystander.connection.state, 'connected');
});

test('requests signed wrongly, for another app, or too large are refused with real status codes', T, async (t) => {
  const other = app({ id: 'other-id', key: 'other-key', secret: 'other-secret' });
  const h = await setup(t, { apps: [app(), other] });

  const wrongSecret = h.sdkFor({ id: 'app-id', key: 'app-key', secret: 'bad-secret' });
  assert.equal((await refusal(wrongSecret.trigger('c', 'e', {}))).status, 401);

  // App B's credentials on app A's path.
  const crossApp = h.sdkFor({ id: 'app-id', key: 'other-key', secret: 'other-secret' });
  assert.equal((await refusal(crossApp.trigger('c', 'e', {}))).status, 401);

  const unknownApp = h.sdkFor({ id: 'no-such-app', key: 'app-key', secret: 'app-secret' });
  assert.equal((await refusal(unknownApp.trigger('c', 'e', {}))).status, 404);

  const tooBig = await refusal(h.sdk.trigger('c', 'e', 'x'.repeat(20 * 1024)));
  assert.equal(tooBig.status, 413);
  assert.equal(typeof tooBig.body.error, 'string');

  // The other app's own credentials work on its own path.
  assert.deepEqual(await json(h.sdkFor(other).trigger('c', 'e', {})), {});
});

// User sign-in with pusher-js (`pusher.signin()`, signed by the SDK's authenticateUser),
// watchlists and the `#server-to-user-{id}` channel.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import PusherServer from 'pusher';
import { setup, connected, record, sleep, WAIT_MS } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';

const T = { timeout: 30_000 };

/** Waits (bounded) for `pred()` to hold, polling. */
async function eventually(pred, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Signs a pusher-js client in and waits until pusher-js accepted `pusher:signin_success`. */
async function signIn(pusher, id) {
  pusher.signin();
  await eventually(() => pusher.user.user_data !== null, `pusher:signin_success for ${id}`);
  // pusher-js resolves this promise on success (and on failure, which user_data rules out).
  await pusher.user.signinDonePromise;
  assert.equal(pusher.user.user_data.id, id);
}

test('sign-in: pusher:signin_success, then the #server-to-user channel is joined', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client({ user: { id: 'alice', info: { name: 'Alice' } } });
  await connected(pusher);
  const messages = record(pusher.connection, 'message');
  await signIn(pusher, 'alice');
  const success = await messages.until(({ data }) => data.event === 'pusher:signin_success');
  const expected = h.sdk.authenticateUser(pusher.connection.socket_id, { id: 'alice', user_info: { name: 'Alice' } });
  assert.equal(success.data.data.user_data, expected.user_data, 'user_data is echoed byte for byte');
  assert.deepEqual(pusher.user.user_data, { id: 'alice', user_info: { name: 'Alice' } });
  await eventually(
    () => pusher.user.serverToUserChannel?.subscribed === true,
    'pusher-js to join #server-to-user-alice after sign-in',
  );
});

test('sign-in with a wrong signature is refused with pusher:error', T, async (t) => {
  const h = await setup(t);
  const wrong = new PusherServer({ appId: 'app-id', key: 'app-key', secret: 'wrong-secret', host: h.server.host, port: String(h.server.port), useTLS: false });
  const pusher = h.client({ user: { id: 'alice' }, signer: wrong });
  await connected(pusher);
  const errors = record(pusher.connection, 'error');
  pusher.signin();
  await errors.until(({ data }) => data.type === 'PusherError', { what: 'pusher:error for a bad sign-in' });
  await sleep(200);
  assert.equal(pusher.user.user_data, null);
  assert.equal(pusher.connection.state, 'connected', 'sign-in is optional here, so no close');
});

test('watchlist: two users watching each other see online and offline', T, async (t) => {
  const h = await setup(t);
  const alice = h.client({ user: { id: 'alice', watchlist: ['bob'] } });
  const aliceOnline = record(alice.user.watchlist, 'online');
  const aliceOffline = record(alice.user.watchlist, 'offline');
  await connected(alice);
  await signIn(alice, 'alice');
  // Bob is not signed in yet: alice is told he is offline.
  const initial = await aliceOffline.until(() => true, { what: 'watchlist offline [bob] on sign-in' });
  assert.deepEqual(initial.data, { name: 'offline', user_ids: ['bob'] });
  assert.equal(aliceOnline.items.length, 0);

  const bob = h.client({ user: { id: 'bob', watchlist: ['alice'] } });
  const bobOnline = record(bob.user.watchlist, 'online');
  const bobOffline = record(bob.user.watchlist, 'offline');
  await connected(bob);
  await signIn(bob, 'bob');
  const bobSees = await bobOnline.until(() => true, { what: 'watchlist online [alice] at bob' });
  assert.deepEqual(bobSees.data, { name: 'online', user_ids: ['alice'] });
  const aliceSees = await aliceOnline.until(() => true, { what: 'watchlist online [bob] at alice' });
  assert.deepEqual(aliceSees.data, { name: 'online', user_ids: ['bob'] });
  assert.equal(bobOffline.items.length, 0);

  bob.disconnect();
  const gone = await aliceOffline.until((e) => e !== initial, { what: 'watchlist offline [bob] after he left' });
  assert.deepEqual(gone.data, { name: 'offline', user_ids: ['bob'] });
});

test('watchlist: a user is offline only when the last signed-in connection leaves', T, async (t) => {
  const h = await setup(t);
  const watcher = h.client({ user: { id: 'w', watchlist: ['bob'] } });
  const offline = record(watcher.user.watchlist, 'offline');
  const online = record(watcher.user.watchlist, 'online');
  await connected(watcher);
  await signIn(watcher, 'w');
  await offline.until(() => true, { what: 'initial offline report' });
  const [bob1, bob2] = [h.client({ user: { id: 'bob' } }), h.client({ user: { id: 'bob' } })];
  await Promise.all([connected(bob1), connected(bob2)]);
  await signIn(bob1, 'bob');
  await signIn(bob2, 'bob');
  await online.until(() => true, { what: 'online [bob]' });
  bob1.disconnect();
  await sleep(500);
  assert.equal(offline.items.length, 1, 'bob still has a connection, so no offline yet');
  assert.equal(online.items.length, 1, 'a second connection of bob is not a new online');
  bob2.disconnect();
  const first = offline.items[0];
  const last = await offline.until((e) => e !== first, { what: 'offline [bob] after the last connection' });
  assert.deepEqual(last.data, { name: 'offline', user_ids: ['bob'] });
});

test('#server-to-user-{id} is refused to a connection signed in as someone else', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client({ user: { id: 'alice' } });
  await connected(pusher);
  await signIn(pusher, 'alice');
  const messages = record(pusher.connection, 'message');
  // pusher-js will not create '#' channels itself; send the subscribe frame directly.
  pusher.connection.send_event('pusher:subscribe', { channel: '#server-to-user-bob' });
  const refusal = await messages.until(
    ({ data }) => data.channel === '#server-to-user-bob' && data.event.startsWith('pusher'),
    { what: 'an answer to subscribing #server-to-user-bob' },
  );
  assert.equal(refusal.data.event, 'pusher:subscription_error');
  assert.equal(refusal.data.data.status, 403);

  // Without any sign-in the channel is refused too.
  const raw = h.raw();
  await raw.established();
  raw.send({ event: 'pusher:subscribe', data: { channel: '#server-to-user-alice' } });
  const error = await raw.until((m) => m.channel === '#server-to-user-alice');
  assert.equal(error.event, 'pusher:subscription_error');
});

test('sign-in required: a connection that never signs in is closed with 4009', T, async (t) => {
  const h = await setup(t, { apps: [app({ user_auth_required: true, user_auth_timeout_secs: 1 })] });
  const raw = h.raw();
  await raw.established();
  const error = await raw.event('pusher:error', (m) => m.data?.code === 4009, { timeout: 5_000 });
  assert.equal(error.data.code, 4009);
  assert.equal((await raw.closed()).code, 4009);

  // One that signs in in time stays.
  const pusher = h.client({ user: { id: 'alice' } });
  await connected(pusher);
  await signIn(pusher, 'alice');
  await sleep(1_500);
  assert.equal(pusher.connection.state, 'connected');
});

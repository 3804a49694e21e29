// Subscribing to public, private and presence channels with pusher-js, signed by the `pusher` SDK.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import PusherServer from 'pusher';
import { setup, connected, record, subscribed, roundTrip, sleep, WAIT_MS } from '../lib/clients.mjs';

const T = { timeout: 30_000 };

test('public channel: pusher:subscription_succeeded', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client();
  await connected(pusher);
  const { channel, data } = await subscribed(pusher, 'news');
  assert.equal(channel.subscribed, true);
  assert.deepEqual(data, {});
});

test('private channel: subscription succeeds with an SDK signature', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client();
  await connected(pusher);
  const { channel, data } = await subscribed(pusher, 'private-orders');
  assert.equal(channel.subscribed, true);
  assert.deepEqual(data, {});
});

test('private channel with a wrong signature: pusher:subscription_error, never succeeded', T, async (t) => {
  const h = await setup(t);
  const wrongSecret = new PusherServer({
    appId: 'app-id',
    key: 'app-key',
    secret: 'not-the-app-secret',
    host: h.server.host,
    port: String(h.server.port),
    useTLS: false,
  });
  const pusher = h.client({ signer: wrongSecret });
  await connected(pusher);
  const channel = pusher.subscribe('private-orders');
  const succeeded = record(channel, 'pusher:subscription_succeeded');
  const errors = record(channel, 'pusher:subscription_error');
  const { data } = await errors.until(() => true, { what: 'pusher:subscription_error' });
  assert.equal(data.type, 'AuthError');
  assert.equal(data.status, 401);
  assert.equal(typeof data.error, 'string');
  await roundTrip(pusher);
  assert.equal(succeeded.items.length, 0, 'a refused subscription must not also succeed');
  assert.equal(channel.subscribed, false);
});

test('a signature made for another socket id is refused', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client();
  await connected(pusher);
  const raw = h.raw();
  await raw.established();
  // Sign for the pusher-js socket, present it on the raw socket.
  const stolen = h.sdk.authorizeChannel(pusher.connection.socket_id, 'private-orders');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-orders', auth: stolen.auth } });
  const error = await raw.event('pusher:subscription_error');
  assert.equal(error.channel, 'private-orders');
  assert.equal(error.data.status, 401);
  assert.ok(!raw.messages.some((m) => m.event === 'pusher_internal:subscription_succeeded'));
});

test('presence: one member per user, counted once however many tabs', T, async (t) => {
  const h = await setup(t);
  const alice = { id: 'alice', info: { name: 'Alice' } };
  const bob = { id: 'bob', info: { name: 'Bob' } };
  const room = 'presence-room';

  // Alice's first tab.
  const a1 = h.client({ user: alice });
  await connected(a1);
  const { channel: a1Room, data: a1Members } = await subscribed(a1, room);
  assert.equal(a1Members.count, 1);
  assert.equal(a1Members.me.id, 'alice');
  assert.deepEqual(a1Members.me.info, { name: 'Alice' });
  const a1Added = record(a1Room, 'pusher:member_added');
  const a1Removed = record(a1Room, 'pusher:member_removed');

  // Bob joins: Alice's tab hears of him once.
  const b = h.client({ user: bob });
  await connected(b);
  const { channel: bRoom, data: bMembers } = await subscribed(b, room);
  assert.equal(bMembers.count, 2);
  assert.equal(bMembers.me.id, 'bob');
  assert.deepEqual(bMembers.get('alice')?.info, { name: 'Alice' });
  const bAdded = record(bRoom, 'pusher:member_added');
  const bRemoved = record(bRoom, 'pusher:member_removed');
  const added = await a1Added.until(() => true, { what: 'member_added for bob on alice tab 1' });
  assert.deepEqual(added.data, { id: 'bob', info: { name: 'Bob' } });

  // Alice's second tab: nobody is told of a new member; the roster still counts two.
  const a2 = h.client({ user: alice });
  await connected(a2);
  const { channel: a2Room, data: a2Members } = await subscribed(a2, room);
  assert.equal(a2Members.count, 2);
  assert.equal(a2Members.me.id, 'alice');
  assert.deepEqual(Object.keys(a2Members.members).sort(), ['alice', 'bob']);
  await Promise.all([roundTrip(b), roundTrip(a1)]);
  assert.equal(bAdded.items.length, 0, `bob was told of alice's second tab: ${JSON.stringify(bAdded.items)}`);
  assert.equal(a1Added.items.length, 1, 'alice tab 1 must hear of bob exactly once');
  assert.equal(bRoom.members.count, 2);

  // Alice closes her first tab: she is still present through the second.
  a1.disconnect();
  await sleep(500);
  await roundTrip(b);
  assert.equal(bRemoved.items.length, 0, `bob was told alice left while a tab remains: ${JSON.stringify(bRemoved.items)}`);
  assert.equal(bRoom.members.count, 2);

  // Her last tab closes: now she leaves, once.
  const a2Removed = record(a2Room, 'pusher:member_removed');
  a2.disconnect();
  const removed = await bRemoved.until(() => true, { what: 'member_removed for alice after her last tab' });
  assert.equal(removed.data.id, 'alice');
  await roundTrip(b);
  assert.equal(bRemoved.items.length, 1);
  assert.equal(bRoom.members.count, 1);
  assert.equal(bRoom.members.me.id, 'bob');
  assert.equal(a2Removed.items.length, 0);
  assert.equal(a1Removed.items.length, 0);
});

test('presence: unsubscribing the last tab removes the member', T, async (t) => {
  const h = await setup(t);
  const a = h.client({ user: { id: 'alice', info: {} } });
  const b = h.client({ user: { id: 'bob' } });
  await Promise.all([connected(a), connected(b)]);
  await subscribed(a, 'presence-lobby');
  const { channel: bRoom } = await subscribed(b, 'presence-lobby');
  assert.equal(bRoom.members.count, 2);
  const bRemoved = record(bRoom, 'pusher:member_removed');
  a.unsubscribe('presence-lobby');
  const removed = await bRemoved.until(() => true, { what: 'member_removed after unsubscribe', timeout: WAIT_MS });
  assert.equal(removed.data.id, 'alice');
  assert.equal(bRoom.members.count, 1);
});

test('presence: the exact subscription payload, with a numeric user id as a string', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  const socketId = await raw.established();
  const signed = h.sdk.authorizeChannel(socketId, 'presence-numbers', { user_id: 42, user_info: { n: 1 } });
  raw.send({
    event: 'pusher:subscribe',
    data: { channel: 'presence-numbers', auth: signed.auth, channel_data: signed.channel_data },
  });
  const ok = await raw.event('pusher_internal:subscription_succeeded');
  assert.equal(ok.channel, 'presence-numbers');
  assert.deepEqual(ok.data, { presence: { ids: ['42'], hash: { 42: { n: 1 } }, count: 1 } });

  const pusher = h.client({ user: { id: 42, info: { n: 2 } } });
  await connected(pusher);
  const { data: members } = await subscribed(pusher, 'presence-numbers');
  assert.equal(members.count, 1, 'the same user id on a second socket is one member');
  assert.deepEqual(Object.keys(members.members), ['42']);
});

test('presence: subscribe without channel_data is refused, the connection lives on', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  const socketId = await raw.established();
  const signed = h.sdk.authorizeChannel(socketId, 'presence-room');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'presence-room', auth: signed.auth } });
  const error = await raw.event('pusher:subscription_error');
  assert.equal(error.channel, 'presence-room');
  assert.equal(typeof error.data.status, 'number');
  await raw.roundTrip();
  assert.ok(raw.isOpen);
});

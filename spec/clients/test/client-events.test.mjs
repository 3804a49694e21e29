// Client events: relayed to the other subscribers, never echoed, refused where not allowed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, connected, record, subscribed, roundTrip, sleep } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';

const T = { timeout: 30_000 };

test('private channel: a client event reaches the other subscriber, not the sender', T, async (t) => {
  const h = await setup(t);
  const [a, b] = [h.client(), h.client()];
  await Promise.all([connected(a), connected(b)]);
  const { channel: aChan } = await subscribed(a, 'private-chat');
  const { channel: bChan } = await subscribed(b, 'private-chat');
  const atA = record(aChan, 'client-message');
  const atB = record(bChan, 'client-message');

  assert.equal(aChan.trigger('client-message', { text: 'hello', n: 1 }), true);
  const got = await atB.until(() => true, { what: 'client-message at the other subscriber' });
  assert.deepEqual(got.data, { text: 'hello', n: 1 });
  assert.equal(got.meta?.user_id, undefined, 'no user_id on a private channel');

  await roundTrip(a);
  assert.equal(atA.items.length, 0, 'the sender must not get its own client event back');
  assert.equal(atB.items.length, 1);
});

test('presence channel: client events carry the sender user_id from its signed channel_data', T, async (t) => {
  const h = await setup(t);
  const a = h.client({ user: { id: 'alice', info: { name: 'Alice' } } });
  const b = h.client({ user: { id: 'bob' } });
  await Promise.all([connected(a), connected(b)]);
  const { channel: aChan } = await subscribed(a, 'presence-chat');
  const { channel: bChan } = await subscribed(b, 'presence-chat');
  const atB = record(bChan, 'client-typing');
  aChan.trigger('client-typing', { typing: true });
  const got = await atB.until(() => true, { what: 'client-typing at bob' });
  assert.deepEqual(got.data, { typing: true });
  assert.equal(got.meta.user_id, 'alice');

  // A raw subscriber sees the top-level user_id on the wire.
  const raw = h.raw();
  const socketId = await raw.established();
  const signed = h.sdk.authorizeChannel(socketId, 'presence-chat', { user_id: 'carol' });
  raw.send({ event: 'pusher:subscribe', data: { channel: 'presence-chat', ...signed } });
  await raw.event('pusher_internal:subscription_succeeded');
  const atA = record(aChan, 'client-wave');
  // A client cannot forge user_id: the server takes it from channel_data.
  raw.send({ event: 'client-wave', channel: 'presence-chat', data: { hi: 1 }, user_id: 'mallory' });
  const wave = await atA.until(() => true, { what: 'client-wave at alice' });
  assert.equal(wave.meta.user_id, 'carol');
  assert.deepEqual(wave.data, { hi: 1 });

  aChan.trigger('client-echo', { x: 'y' });
  const echo = await raw.event('client-echo');
  assert.equal(echo.channel, 'presence-chat');
  assert.equal(echo.user_id, 'alice');
  assert.deepEqual(echo.data, { x: 'y' });
});

test('a client event on a public channel is refused with pusher:error and not relayed', T, async (t) => {
  const h = await setup(t);
  const [a, b] = [h.client(), h.client()];
  await Promise.all([connected(a), connected(b)]);
  await subscribed(a, 'lobby');
  const { channel: bChan } = await subscribed(b, 'lobby');
  const atB = record(bChan, 'client-shout');
  const errors = record(a.connection, 'error');
  // pusher-js refuses this client-side for public channels, so send the frame directly.
  assert.equal(a.connection.send_event('client-shout', { loud: true }, 'lobby'), true);
  const error = await errors.until(({ data }) => data.type === 'PusherError', {
    what: 'pusher:error for a client event on a public channel',
  });
  assert.equal(typeof error.data.data.message, 'string');
  await roundTrip(b);
  assert.equal(atB.items.length, 0, 'a public channel client event must not be relayed');
  assert.equal(a.connection.state, 'connected', 'the refusal must not close the connection');
});

test('a client event on a channel the sender has not joined is refused', T, async (t) => {
  const h = await setup(t);
  const b = h.client();
  await connected(b);
  const { channel: bChan } = await subscribed(b, 'private-room');
  const atB = record(bChan, 'client-sneak');
  const raw = h.raw();
  await raw.established();
  raw.send({ event: 'client-sneak', channel: 'private-room', data: {} });
  await raw.event('pusher:error');
  await roundTrip(b);
  assert.equal(atB.items.length, 0);
  assert.ok(raw.isOpen);
});

test('client events over the rate limit get pusher:error 4301, the rest are delivered', T, async (t) => {
  const h = await setup(t, { apps: [app({ client_event_rate_per_sec: 1, client_event_burst: 3 })] });
  const receiver = h.client();
  await connected(receiver);
  const { channel } = await subscribed(receiver, 'private-rate');
  const delivered = record(channel, 'client-tick');

  const raw = h.raw();
  const socketId = await raw.established();
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-rate', ...h.sdk.authorizeChannel(socketId, 'private-rate') } });
  await raw.event('pusher_internal:subscription_succeeded');
  const sent = 10;
  for (let i = 0; i < sent; i++) {
    raw.send({ event: 'client-tick', channel: 'private-rate', data: { i } });
  }
  const limited = await raw.event('pusher:error', (m) => m.data?.code === 4301);
  assert.equal(limited.data.code, 4301);
  assert.equal(typeof limited.data.message, 'string');
  await raw.roundTrip();
  await roundTrip(receiver);
  const refusals = raw.messages.filter((m) => m.event === 'pusher:error' && m.data?.code === 4301).length;
  assert.ok(delivered.items.length >= 3, `the burst of 3 must be delivered, got ${delivered.items.length}`);
  assert.equal(delivered.items.length + refusals, sent, 'every client event is either delivered or refused with 4301');
  // 4301 does not close the connection.
  assert.ok(raw.isOpen);
  await sleep(1_200);
  const from = raw.mark();
  raw.send({ event: 'client-tick', channel: 'private-rate', data: { i: 'after' } });
  await delivered.until(({ data }) => data.i === 'after', { what: 'a client event after the bucket refilled' });
  assert.ok(!raw.messages.slice(from).some((m) => m.event === 'pusher:error'));
});

test('client events disabled for the app are refused', T, async (t) => {
  const h = await setup(t, { apps: [app({ client_events: false })] });
  const [a, b] = [h.client(), h.client()];
  await Promise.all([connected(a), connected(b)]);
  const { channel: aChan } = await subscribed(a, 'private-quiet');
  const { channel: bChan } = await subscribed(b, 'private-quiet');
  const atB = record(bChan, 'client-psst');
  const errors = record(a.connection, 'error');
  aChan.trigger('client-psst', {});
  await errors.until(({ data }) => data.type === 'PusherError', { what: 'pusher:error' });
  await roundTrip(b);
  assert.equal(atB.items.length, 0);
});

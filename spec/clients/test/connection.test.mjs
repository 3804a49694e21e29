// Connecting: the welcome frame, refusals by app state, liveness, and malformed input.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, connected, record, nextEvent, sleep, roundTrip } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';

const T = { timeout: 30_000 };
const SOCKET_ID = /^\d+\.\d+$/;

/** Waits for a pusher-js client's error event carrying Pusher code `code`. */
function pusherErrorCode(err) {
  // During the handshake pusher-js wraps the server's pusher:error as WebSocketError → PusherError.
  return err?.error?.data?.code ?? err?.data?.code;
}

test('pusher-js connects and gets a socket id of two integers', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client();
  const socketId = await connected(pusher);
  assert.match(socketId, SOCKET_ID);
});

test('the welcome frame carries socket_id and a positive activity_timeout', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  const welcome = await raw.event('pusher:connection_established');
  assert.match(welcome.data.socket_id, SOCKET_ID);
  assert.equal(welcome.data.activity_timeout, 120);
  assert.equal(typeof welcome.data.activity_timeout, 'number');
});

test('two connections get different socket ids', T, async (t) => {
  const h = await setup(t);
  const [a, b] = [h.client(), h.client()];
  const [idA, idB] = await Promise.all([connected(a), connected(b)]);
  assert.notEqual(idA, idB);
});

test('unknown app key: pusher-js gets error 4001 and does not reconnect', T, async (t) => {
  const h = await setup(t);
  const pusher = h.client({ key: 'no-such-key' });
  const errors = record(pusher.connection, 'error');
  const states = record(pusher.connection, 'state_change');
  const error = await errors.until((e) => pusherErrorCode(e.data) === 4001, {
    what: 'a connection error with code 4001',
  });
  assert.equal(pusherErrorCode(error.data), 4001);
  // pusher-js treats 4000-4099 as "refused": it disconnects and stays disconnected.
  await states.until(({ data }) => data.current === 'disconnected', { what: 'state disconnected' });
  const before = states.items.length;
  await sleep(2_500);
  const later = states.items.slice(before).map(({ data }) => data.current);
  assert.deepEqual(later, [], `pusher-js changed state after the refusal: ${later}`);
  assert.equal(pusher.connection.state, 'disconnected');
});

test('unknown app key on a raw socket: pusher:error 4001 then close 4001', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw(h.url('no-such-key'));
  const error = await raw.event('pusher:error');
  assert.equal(error.data.code, 4001);
  assert.equal(typeof error.data.message, 'string');
  const close = await raw.closed();
  assert.equal(close.code, 4001);
});

test('disabled app: error 4003 and close 4003', T, async (t) => {
  const h = await setup(t, { apps: [app({ enabled: false })] });
  const raw = h.raw();
  const error = await raw.event('pusher:error');
  assert.equal(error.data.code, 4003);
  assert.equal((await raw.closed()).code, 4003);

  const pusher = h.client();
  const failure = await nextEvent(pusher.connection, 'error', {
    filter: ({ data }) => pusherErrorCode(data) !== undefined,
    what: 'a pusher-js connection error with a code',
  });
  assert.equal(pusherErrorCode(failure.data), 4003);
});

test('over the connection quota: 4004, and a freed slot is usable again', T, async (t) => {
  const h = await setup(t, { apps: [app({ max_connections: 1 })] });
  const first = h.raw();
  await first.established();

  const second = h.raw();
  const error = await second.event('pusher:error');
  assert.equal(error.data.code, 4004);
  assert.equal((await second.closed()).code, 4004);
  assert.ok(first.isOpen, 'the connection within quota must stay open');

  await first.close();
  // The slot is released when the server sees the close; allow it a moment.
  let third;
  for (let attempt = 0; attempt < 20; attempt++) {
    third = h.raw();
    const outcome = await third.until(
      (m) => m.event === 'pusher:connection_established' || m.event === 'pusher:error',
    );
    if (outcome.event === 'pusher:connection_established') break;
    await sleep(100);
  }
  assert.ok(
    third.messages.some((m) => m.event === 'pusher:connection_established'),
    'a connection after the first closed must be accepted',
  );
});

test('pusher:ping is answered with pusher:pong', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  await raw.established();
  const from = raw.mark();
  raw.send({ event: 'pusher:ping', data: {} });
  const pong = await raw.until((m) => m.event === 'pusher:pong', { from, what: 'pusher:pong' });
  assert.deepEqual(Object.keys(pong).sort(), ['data', 'event']);
});

test('pusher-js pings after activity_timeout and stays connected', T, async (t) => {
  const h = await setup(t, { activity_timeout_secs: 1, pong_timeout_secs: 2, apps: [app()] });
  const pusher = h.client();
  const messages = record(pusher.connection, 'message');
  const socketId = await connected(pusher);
  // pusher-js takes min(its own 120 s, the server's activity_timeout) and pings on silence.
  await messages.until(({ data }) => data.event === 'pusher:pong', {
    timeout: 5_000,
    what: 'pusher:pong answering the pusher-js activity ping',
  });
  await sleep(4_000);
  assert.equal(pusher.connection.state, 'connected');
  assert.equal(pusher.connection.socket_id, socketId, 'the connection must not have been replaced');
});

test('server pings a silent client, then closes it with 4201', T, async (t) => {
  const h = await setup(t, { activity_timeout_secs: 1, pong_timeout_secs: 1, apps: [app()] });
  const raw = h.raw();
  await raw.established();
  const ping = await raw.event('pusher:ping', () => true, { timeout: 4_000 });
  assert.ok(ping);
  const error = await raw.event('pusher:error', (m) => m.data?.code === 4201, { timeout: 4_000 });
  assert.equal(error.data.code, 4201);
  assert.equal((await raw.closed({ timeout: 4_000 })).code, 4201);
});

test('a client answering pusher:ping with pusher:pong is kept', T, async (t) => {
  const h = await setup(t, { activity_timeout_secs: 1, pong_timeout_secs: 1, apps: [app()] });
  const raw = h.raw();
  await raw.established();
  const answered = new Set();
  const deadline = Date.now() + 4_500;
  while (Date.now() < deadline) {
    raw.messages.forEach((m, i) => {
      if (m.event === 'pusher:ping' && !answered.has(i)) {
        answered.add(i);
        raw.send({ event: 'pusher:pong', data: {} });
      }
    });
    await sleep(50);
  }
  assert.ok(answered.size >= 1, 'the server must have pinged the quiet client');
  assert.ok(raw.isOpen, `the socket was closed: ${JSON.stringify(raw.messages)}`);
});

test('a message over max_message_bytes closes the connection with 1009', T, async (t) => {
  const h = await setup(t, { apps: [app({ max_message_bytes: 1024 })] });
  const raw = h.raw();
  await raw.established();
  // Under the limit is fine.
  await raw.roundTrip();
  const big = JSON.stringify({ event: 'client-big', channel: 'private-x', data: 'x'.repeat(4096) });
  raw.sendRaw(big);
  const close = await raw.closed();
  assert.equal(close.code, 1009);
});

test('a binary frame gets pusher:error and the connection stays usable', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  await raw.established();
  const from = raw.mark();
  raw.sendRaw(Buffer.from(JSON.stringify({ event: 'pusher:ping', data: {} })), { binary: true });
  const error = await raw.until((m) => m.event === 'pusher:error', { from, what: 'pusher:error' });
  assert.equal(typeof error.data.message, 'string');
  assert.ok(!raw.messages.slice(from).some((m) => m.event === 'pusher:pong'), 'a binary ping must not be answered');
  await raw.roundTrip();
  assert.ok(raw.isOpen);
});

test('invalid JSON gets pusher:error without closing', T, async (t) => {
  const h = await setup(t);
  const raw = h.raw();
  await raw.established();
  const from = raw.mark();
  raw.sendRaw('{"event": "pusher:ping", ');
  const error = await raw.until((m) => m.event === 'pusher:error', { from, what: 'pusher:error' });
  assert.equal(typeof error.data.message, 'string');
  assert.ok('code' in error.data, 'pusher:error data carries a code (null or a number)');
  await raw.roundTrip();
  assert.ok(raw.isOpen);
  // pusher-js on the same server is unaffected.
  const pusher = h.client();
  await connected(pusher);
  await roundTrip(pusher);
});

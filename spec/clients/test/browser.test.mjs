// pusher-js and Laravel Echo in real Chromium pages against the real binary: connecting, the
// three channel kinds fed by the HTTP API, presence members across two pages, Echo's channel,
// private, presence and whisper API, an encrypted channel decrypted in the page, sign-in from a
// page, and a page of a foreign origin refused.
//
// One Chromium runs for the whole file; each test gets its own server, page server and pages.
// The server only lets in pages of the page server's origin (`allowed_origins`), so every
// connection here also passes the Origin check with the header a browser really sends.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import PusherServer from 'pusher';
import { startServer, app, DEFAULT_APP } from '../lib/server.mjs';
import { launchChromium, startPageServer, openPage, seen, recorded } from '../lib/browser.mjs';

const T = { timeout: 45_000 };

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

/**
 * One test's world: a page server whose auth endpoint signs with the SDK (holding an encryption
 * master key, which the server never needs), and the server letting in that origin only.
 */
async function setup(t) {
  const masterKey = randomBytes(32).toString('base64');
  // The SDK is made before the server exists (the page server's origin goes into the server's
  // config); its host and port are filled in below.
  const sdkOptions = {
    appId: DEFAULT_APP.id,
    key: DEFAULT_APP.key,
    secret: DEFAULT_APP.secret,
    useTLS: false,
    timeout: 5_000,
  };
  const signer = new PusherServer({ ...sdkOptions, encryptionMasterKeyBase64: masterKey });
  const pages = await startPageServer(signer);
  const server = await startServer({ apps: [app({ allowed_origins: [pages.origin] })] });
  const sdk = new PusherServer({
    ...sdkOptions,
    host: server.host,
    port: String(server.port),
    encryptionMasterKeyBase64: masterKey,
  });
  const opened = [];
  t.after(async () => {
    await Promise.all(opened.map((p) => p.close().catch(() => {})));
    await pages.close();
    await server.stop();
  });
  return {
    server,
    sdk,
    pages,
    /** Options for `new Pusher(key, options)` in a page, as a web app would write them. */
    pusherOptions(user) {
      return {
        wsHost: '127.0.0.1',
        wsPort: server.port,
        forceTLS: false,
        enabledTransports: ['ws'],
        cluster: 'mt1',
        disableStats: true,
        channelAuthorization: {
          endpoint: '/auth',
          transport: 'ajax',
          params: user ? { user_id: user.id, user_name: user.name } : {},
        },
        userAuthentication: {
          endpoint: '/user-auth',
          transport: 'ajax',
          params: user ? { user_id: user.id, user_name: user.name } : {},
        },
      };
    },
    /** Options for `new Echo(options)`: Echo hands them to `window.Pusher`. */
    echoOptions(user) {
      return {
        broadcaster: 'pusher',
        key: DEFAULT_APP.key,
        wsHost: '127.0.0.1',
        wsPort: server.port,
        forceTLS: false,
        enabledTransports: ['ws'],
        cluster: 'mt1',
        disableStats: true,
        authEndpoint: '/auth',
        auth: { headers: {}, params: { user_id: user.id, user_name: user.name } },
      };
    },
    async open(...bundles) {
      const p = await openPage(browser.context, pages.pageUrl(...bundles));
      opened.push(p);
      return p;
    },
  };
}

/**
 * In the page: connects pusher-js as `window.pusher` and records `connected`, every
 * subscription's outcome, presence member changes and every `events` event on `channels`.
 */
function connectInPage(p, key, options, channels, events) {
  return p.evaluate(
    ({ key, options, channels, events }) => {
      const pusher = new Pusher(key, options);
      window.pusher = pusher;
      pusher.connection.bind('connected', () => note('connected', { socket_id: pusher.connection.socket_id }));
      pusher.connection.bind('state_change', ({ current }) => note('state', { state: current }));
      // Frames as they arrive, before a channel decrypts them.
      pusher.connection.bind('message', (m) => {
        if (events.includes(m.event)) note('frame', { channel: m.channel, event: m.event, data: m.data });
      });
      for (const name of channels) {
        const channel = pusher.subscribe(name);
        channel.bind('pusher:subscription_succeeded', (data) => {
          const fields = { channel: name };
          if (name.startsWith('presence-')) {
            const ids = [];
            data.each((m) => ids.push(m.id));
            Object.assign(fields, { me: data.me.id, count: data.count, ids: ids.sort() });
          }
          note('subscribed', fields);
        });
        channel.bind('pusher:subscription_error', (e) => note('subscription_error', { channel: name, status: e.status }));
        channel.bind('pusher:member_added', (m) => note('member_added', { channel: name, id: m.id, info: m.info }));
        channel.bind('pusher:member_removed', (m) => note('member_removed', { channel: name, id: m.id, info: m.info }));
        for (const event of events) {
          channel.bind(event, (data) => note('event', { channel: name, event, data }));
        }
      }
    },
    { key, options, channels, events },
  );
}

test('pusher-js in Chromium: connects and receives HTTP API events on public, private and presence channels', T, async (t) => {
  const h = await setup(t);
  const p = await h.open('pusher.js');
  const channels = ['news', 'private-desk', 'presence-room'];
  await connectInPage(p, DEFAULT_APP.key, h.pusherOptions({ id: 'alice', name: 'Alice' }), channels, ['headline']);
  const { socket_id: socketId } = await seen(p, { kind: 'connected' }, { what: 'pusher-js to connect' });
  assert.match(socketId, /^\d+\.\d+$/);
  for (const channel of channels) await seen(p, { kind: 'subscribed', channel });
  const presence = await seen(p, { kind: 'subscribed', channel: 'presence-room' });
  assert.deepEqual([presence.me, presence.count, presence.ids], ['alice', 1, ['alice']]);
  // The page's auth requests reached the page server with pusher-js's socket id.
  const authed = h.pages.authRequests.map((r) => [r.channel_name, r.socket_id]).sort();
  assert.deepEqual(authed, [['presence-room', socketId], ['private-desk', socketId]]);

  const res = await h.sdk.trigger(channels, 'headline', { text: 'ferrocast in a browser' });
  assert.equal(res.status, 200);
  for (const channel of channels) {
    const got = await seen(p, { kind: 'event', channel, event: 'headline' });
    assert.deepEqual(got.data, { text: 'ferrocast in a browser' });
  }
  // The server saw the browser's member: the HTTP API lists alice in the presence channel.
  const users = await (await h.sdk.get({ path: '/channels/presence-room/users' })).json();
  assert.deepEqual(users, { users: [{ id: 'alice' }] });
  assert.deepEqual(await recorded(p, 'subscription_error'), []);
});

test('presence in two pages: both see the members, member_added, and member_removed when a page closes', T, async (t) => {
  const h = await setup(t);
  const [alice, bob] = [await h.open('pusher.js'), await h.open('pusher.js')];
  await connectInPage(alice, DEFAULT_APP.key, h.pusherOptions({ id: 'alice', name: 'Alice' }), ['presence-lobby'], []);
  const first = await seen(alice, { kind: 'subscribed', channel: 'presence-lobby' });
  assert.deepEqual([first.me, first.ids], ['alice', ['alice']]);

  await connectInPage(bob, DEFAULT_APP.key, h.pusherOptions({ id: 'bob', name: 'Bob' }), ['presence-lobby'], []);
  const second = await seen(bob, { kind: 'subscribed', channel: 'presence-lobby' });
  assert.deepEqual([second.me, second.count, second.ids], ['bob', 2, ['alice', 'bob']]);
  const added = await seen(alice, { kind: 'member_added', id: 'bob' });
  assert.deepEqual(added.info, { name: 'Bob' });
  // Alice's roster holds bob with his info, as pusher-js keeps it.
  const roster = await alice.evaluate(() => {
    const members = window.pusher.channel('presence-lobby').members;
    return { count: members.count, bob: members.get('bob')?.info };
  });
  assert.deepEqual(roster, { count: 2, bob: { name: 'Bob' } });

  await bob.close();
  const removed = await seen(alice, { kind: 'member_removed', id: 'bob' }, { what: "member_removed for bob's closed page" });
  assert.deepEqual(removed.info, { name: 'Bob' });
  const after = await alice.evaluate(() => window.pusher.channel('presence-lobby').members.count);
  assert.equal(after, 1);
  assert.deepEqual((await recorded(alice, 'member_added')).map((m) => m.id), ['bob']);
});

/** In the page: makes `window.echo` (Laravel Echo over pusher-js) and records what it hears. */
function echoInPage(p, options) {
  return p.evaluate((options) => {
    const echo = new Echo.default(options);
    window.echo = echo;
    echo.connector.pusher.connection.bind('connected', () => note('connected', { socket_id: echo.socketId() }));
    // The default namespace App.Events: `OrderShipped` is the event `App\Events\OrderShipped`.
    echo.channel('orders').listen('OrderShipped', (e) => note('order', { data: e }));
    // A leading dot names the event as it is, without the namespace.
    echo
      .private('orders.7')
      .subscribed(() => note('subscribed', { channel: 'private-orders.7' }))
      .listen('.status.updated', (e) => note('status', { data: e }));
    echo
      .join('room')
      .here((users) => note('here', { names: users.map((u) => u.name).sort() }))
      .joining((user) => note('joining', { name: user.name }))
      .leaving((user) => note('leaving', { name: user.name }))
      .listenForWhisper('typing', (e, meta) => note('whisper', { data: e, user_id: meta?.user_id }));
  }, options);
}

test('Laravel Echo in two pages: channel().listen, private(), join() here/joining/leaving, and a whisper', T, async (t) => {
  const h = await setup(t);
  const [alice, bob] = [await h.open('pusher.js', 'echo.js'), await h.open('pusher.js', 'echo.js')];
  await echoInPage(alice, h.echoOptions({ id: 'alice', name: 'Alice' }));
  await seen(alice, { kind: 'connected' }, { what: 'Echo to connect' });
  await seen(alice, { kind: 'here', names: ['Alice'] }, { what: "here() with alice alone" });
  await seen(alice, { kind: 'subscribed', channel: 'private-orders.7' });

  await echoInPage(bob, h.echoOptions({ id: 'bob', name: 'Bob' }));
  await seen(bob, { kind: 'here', names: ['Alice', 'Bob'] }, { what: 'here() with both' });
  await seen(alice, { kind: 'joining', name: 'Bob' }, { what: 'joining(bob) at alice' });
  await seen(bob, { kind: 'subscribed', channel: 'private-orders.7' });

  // Events a Laravel app would broadcast, through the HTTP API.
  assert.equal((await h.sdk.trigger('orders', 'App\\Events\\OrderShipped', { id: 7 })).status, 200);
  assert.equal((await h.sdk.trigger('private-orders.7', 'status.updated', { status: 'shipped' })).status, 200);
  for (const p of [alice, bob]) {
    assert.deepEqual((await seen(p, { kind: 'order' })).data, { id: 7 });
    assert.deepEqual((await seen(p, { kind: 'status' })).data, { status: 'shipped' });
  }

  // A whisper is a client event (`client-typing`) relayed to the other members, with the
  // whisperer's user_id added by the server on a presence channel, and not echoed back.
  await bob.evaluate(() => window.echo.join('room').whisper('typing', { typing: true }));
  const whisper = await seen(alice, { kind: 'whisper' }, { what: "bob's whisper at alice" });
  assert.deepEqual([whisper.data, whisper.user_id], [{ typing: true }, 'bob']);
  await alice.evaluate(() => window.echo.join('room').whisper('typing', { typing: false }));
  const back = await seen(bob, { kind: 'whisper' }, { what: "alice's whisper at bob" });
  assert.deepEqual([back.data, back.user_id], [{ typing: false }, 'alice']);
  // Each page heard exactly the other's whisper, never its own.
  assert.deepEqual((await recorded(alice, 'whisper')).map((w) => w.user_id), ['bob']);
  assert.deepEqual((await recorded(bob, 'whisper')).map((w) => w.user_id), ['alice']);

  // Bob leaves the room through Echo: alice's leaving() fires; then his page closes altogether.
  await bob.evaluate(() => window.echo.leave('room'));
  await seen(alice, { kind: 'leaving', name: 'Bob' }, { what: 'leaving(bob) at alice' });
  const users = await (await h.sdk.get({ path: '/channels/presence-room/users' })).json();
  assert.deepEqual(users, { users: [{ id: 'alice' }] });
});

test('private-encrypted in Chromium: pusher-js and Echo decrypt what the SDK encrypted', T, async (t) => {
  const h = await setup(t);
  const [plain, echo] = [
    await h.open('pusher-with-encryption.js'),
    await h.open('pusher-with-encryption.js', 'echo.js'),
  ];
  await connectInPage(plain, DEFAULT_APP.key, h.pusherOptions(), ['private-encrypted-vault'], ['secret']);
  await seen(plain, { kind: 'subscribed', channel: 'private-encrypted-vault' });
  await echo.evaluate((options) => {
    window.echo = new Echo.default(options);
    window.echo
      .encryptedPrivate('vault')
      .subscribed(() => note('subscribed', { channel: 'private-encrypted-vault' }))
      .listen('.secret', (e) => note('event', { channel: 'private-encrypted-vault', event: 'secret', data: e }));
  }, h.echoOptions({ id: 'carol', name: 'Carol' }));
  await seen(echo, { kind: 'subscribed', channel: 'private-encrypted-vault' });
  // The auth endpoint handed each page the channel's shared secret, derived from the master key.
  const vaultAuths = h.pages.authRequests.filter((r) => r.channel_name === 'private-encrypted-vault');
  assert.equal(vaultAuths.length, 2);

  assert.equal((await h.sdk.trigger('private-encrypted-vault', 'secret', { pin: '1234' })).status, 200);
  for (const p of [plain, echo]) {
    const got = await seen(p, { kind: 'event', channel: 'private-encrypted-vault', event: 'secret' });
    assert.deepEqual(got.data, { pin: '1234' });
  }

  // What crossed the wire was ciphertext: the frame as pusher-js's connection received it,
  // before the channel decrypted it, holds a nonce and a ciphertext and not the pin.
  const frame = await seen(plain, { kind: 'frame', channel: 'private-encrypted-vault', event: 'secret' });
  const wire = typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
  assert.deepEqual(Object.keys(wire).sort(), ['ciphertext', 'nonce']);
  assert.ok(!JSON.stringify(wire).includes('1234'));
});

test('sign-in from a page: the SDK reaches the user through sendToUser, and terminates the page', T, async (t) => {
  const h = await setup(t);
  const p = await h.open('pusher.js');
  await p.evaluate((options) => {
    const pusher = new Pusher('app-key', options);
    window.pusher = pusher;
    pusher.connection.bind('message', (m) => {
      if (m.event === 'pusher:signin_success') note('signin_success');
    });
    pusher.connection.bind('error', (e) => note('error', { code: e.error?.data?.code ?? e.data?.code ?? null }));
    pusher.user.bind('notice', (data) => note('notice', { data }));
    pusher.signin();
  }, h.pusherOptions({ id: 'dana', name: 'Dana' }));
  await seen(p, { kind: 'signin_success' }, { what: 'pusher:signin_success' });
  assert.ok(h.pages.authRequests.some((r) => r.user_id === 'dana' && !r.channel_name));

  assert.equal((await h.sdk.sendToUser('dana', 'notice', { text: 'hello Dana' })).status, 200);
  assert.deepEqual((await seen(p, { kind: 'notice' })).data, { text: 'hello Dana' });

  // Terminating the user's connections closes the page's socket with 4009.
  await h.sdk.terminateUserConnections('dana');
  await seen(p, { kind: 'error', code: 4009 }, { what: 'the 4009 close of a terminated user' });
});

test('a page of another origin is refused with 4009 and pusher-js does not reconnect', T, async (t) => {
  const h = await setup(t);
  // Same page server, other origin: `localhost` is not the `127.0.0.1` the server lets in.
  const foreign = h.pages.origin.replace('127.0.0.1', 'localhost');
  const p = await openPage(browser.context, `${foreign}/page.html?js=pusher.js`);
  t.after(() => p.close().catch(() => {}));
  await p.evaluate((options) => {
    // Count the page's WebSocket handshakes: a reconnect would open another.
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        note('socket', { origin: location.origin });
      }
    };
    const pusher = new Pusher('app-key', options);
    window.pusher = pusher;
    pusher.connection.bind('state_change', ({ current }) => note('state', { state: current }));
    pusher.connection.bind('error', (e) => note('error', { code: e.error?.data?.code ?? e.data?.code ?? null }));
  }, h.pusherOptions());
  await seen(p, { kind: 'error', code: 4009 }, { what: 'pusher:error 4009 for a foreign origin' });
  await seen(p, { kind: 'state', state: 'disconnected' }, { what: 'pusher-js to stop' });
  // pusher-js takes 4000–4099 as "do not retry"; a reconnect would come within a second or two.
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  const sockets = await recorded(p, 'socket');
  assert.deepEqual(sockets, [{ kind: 'socket', origin: foreign }]);
  assert.equal(await p.evaluate(() => window.pusher.connection.state), 'disconnected');
});

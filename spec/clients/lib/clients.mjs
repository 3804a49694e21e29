// Real clients for the end-to-end tests: pusher-js (signing with the `pusher` Node SDK) and a
// raw `ws` socket for frames pusher-js refuses to send. Every wait is bounded.

import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import WebSocket from 'ws';
import { startServer, DEFAULT_APP } from './server.mjs';

/** Default bound on waiting for something the server must send. */
export const WAIT_MS = 5_000;

/** Pauses for `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves with the first item of `items` (now or later, as `push` adds them) matching `pred`,
 * or rejects after `timeout` ms with a message naming `what` and the items seen.
 */
function waitIn(log, pred, { timeout = WAIT_MS, what = 'a matching event', from = 0 } = {}) {
  for (let i = from; i < log.items.length; i++) {
    if (pred(log.items[i])) return Promise.resolve(log.items[i]);
  }
  return new Promise((resolve, reject) => {
    const waiter = {
      pred,
      resolve: (item) => {
        clearTimeout(timer);
        resolve(item);
      },
    };
    const timer = setTimeout(() => {
      log.waiters.delete(waiter);
      const seen = log.items.map((item) => JSON.stringify(item)).join('\n  ');
      reject(new Error(`timed out after ${timeout} ms waiting for ${what}; seen:\n  ${seen || '(nothing)'}`));
    }, timeout);
    log.waiters.add(waiter);
  });
}

function newLog() {
  return {
    items: [],
    waiters: new Set(),
    push(item) {
      this.items.push(item);
      for (const waiter of [...this.waiters]) {
        if (waiter.pred(item)) {
          this.waiters.delete(waiter);
          waiter.resolve(item);
        }
      }
    },
  };
}

/**
 * Records every `event` a pusher-js dispatcher (channel, connection, user, watchlist) emits.
 * `until(pred)` waits for one (already seen or future); `items` holds `{ data, meta }`.
 */
export function record(target, event) {
  const log = newLog();
  const callback = (data, meta) => log.push({ data, meta });
  target.bind(event, callback);
  return {
    get items() {
      return log.items;
    },
    until: (pred = () => true, opts = {}) =>
      waitIn(log, pred, { what: `${event}`, ...opts }),
    stop: () => target.unbind(event, callback),
  };
}

/** Waits for the next `event` on a pusher-js dispatcher, bounded. */
export function nextEvent(target, event, opts = {}) {
  const recorder = record(target, event);
  return recorder.until(opts.filter ?? (() => true), opts).finally(() => recorder.stop());
}

/** Resolves once a pusher-js client is connected; rejects if it gives up or times out. */
export async function connected(pusher, timeout = WAIT_MS) {
  if (pusher.connection.state === 'connected') return pusher.connection.socket_id;
  const states = record(pusher.connection, 'state_change');
  try {
    const change = await states.until(
      ({ data }) => ['connected', 'failed', 'disconnected', 'unavailable'].includes(data.current),
      { timeout, what: 'the connection to become connected' },
    );
    if (change.data.current !== 'connected') {
      throw new Error(`connection went ${change.data.current} instead of connected`);
    }
    return pusher.connection.socket_id;
  } finally {
    states.stop();
  }
}

/** Waits until every frame the server queued for `pusher` before now has arrived. */
export async function roundTrip(pusher, timeout = WAIT_MS) {
  const pong = nextEvent(pusher.connection, 'message', {
    filter: ({ data }) => data.event === 'pusher:pong',
    timeout,
    what: 'pusher:pong (round trip)',
  });
  pusher.connection.send_event('pusher:ping', {});
  await pong;
}

/** A raw WebSocket speaking the Pusher protocol by hand; every text frame is logged parsed. */
export class RawClient {
  /** `options` go to `ws` (e.g. `{ origin }` to send an Origin header as a browser page would). */
  constructor(url, options = {}) {
    this.url = url;
    this.log = newLog();
    this.closeLog = newLog();
    this.ws = new WebSocket(url, options);
    this.ws.on('message', (data, isBinary) => {
      const text = data.toString();
      let parsed;
      try {
        parsed = JSON.parse(text);
        if (typeof parsed.data === 'string') {
          try {
            parsed.data = JSON.parse(parsed.data);
          } catch {
            // Some payloads are plain strings.
          }
        }
      } catch {
        parsed = { unparsable: text, binary: isBinary };
      }
      this.log.push(parsed);
    });
    this.ws.on('close', (code, reason) => this.closeLog.push({ code, reason: reason.toString() }));
    this.ws.on('error', (err) => this.log.push({ socketError: String(err) }));
  }

  /** Every message received so far (with string `data` JSON-decoded when possible). */
  get messages() {
    return this.log.items;
  }

  /** The count of messages so far, to wait only for later ones. */
  mark() {
    return this.log.items.length;
  }

  /** Waits for a message matching `pred`, from index `from` on. */
  until(pred, opts = {}) {
    return waitIn(this.log, pred, opts);
  }

  /** Waits for the message named `event` (optionally matching `pred`). */
  event(event, pred = () => true, opts = {}) {
    return this.until((m) => m.event === event && pred(m), { what: event, ...opts });
  }

  /** Resolves with `{ code, reason }` once the server closes the socket. */
  closed(opts = {}) {
    return waitIn(this.closeLog, () => true, { what: 'the socket to close', ...opts });
  }

  /** Whether the socket is still open. */
  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Waits for `pusher:connection_established` and returns its socket id. */
  async established(opts = {}) {
    const message = await this.event('pusher:connection_established', () => true, opts);
    return message.data.socket_id;
  }

  /** Sends one Pusher message as a JSON text frame. */
  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  /** Sends raw bytes: a text frame by default, a binary frame with `{ binary: true }`. */
  sendRaw(data, { binary = false } = {}) {
    this.ws.send(data, { binary });
  }

  /** Sends `pusher:ping` and waits for the `pusher:pong` after it. */
  async roundTrip(timeout = WAIT_MS) {
    const from = this.mark();
    this.send({ event: 'pusher:ping', data: {} });
    await this.until((m) => m.event === 'pusher:pong', { from, timeout, what: 'pusher:pong (round trip)' });
  }

  /** Closes the socket; resolves once it is closed (bounded). */
  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.closed({ timeout: 2_000 }).catch(() => this.ws.terminate());
  }
}

/**
 * Per-test world: a running server, the `pusher` SDK for its app, and factories for clients.
 * Everything is torn down by `t.after`.
 *
 * `config` (optional) is the server config object (see `server.mjs`); `appCreds` names the app
 * the SDK signs for (the default app unless given).
 */
export async function setup(t, config, appCreds = config?.apps?.[0] ?? DEFAULT_APP) {
  const server = await startServer(config);
  const pushers = [];
  const raws = [];
  t.after(async () => {
    for (const p of pushers) p.disconnect();
    await Promise.all(raws.map((r) => r.close()));
    await server.stop();
  });

  const sdkFor = (creds) =>
    new PusherServer({
      appId: creds.id,
      key: creds.key,
      secret: creds.secret,
      host: server.host,
      port: String(server.port),
      useTLS: false,
      timeout: WAIT_MS,
    });
  const sdk = sdkFor(appCreds);

  return {
    server,
    sdk,
    sdkFor,
    /** `ws://HOST:PORT/app/{key}?protocol=7&client=js&version=8.6.0&flash=false` */
    url(key = appCreds.key, query = 'protocol=7&client=js&version=8.6.0&flash=false') {
      return `ws://${server.host}:${server.port}/app/${key}${query ? `?${query}` : ''}`;
    },

    /**
     * A pusher-js client. `user: { id, info, watchlist }` is used for presence channel_data and
     * sign-in; `signer` replaces the SDK used to sign (e.g. one with a wrong secret).
     */
    client({ key = appCreds.key, user, signer = sdk, options = {} } = {}) {
      const pusher = new Pusher(key, {
        cluster: 'x',
        wsHost: server.host,
        wsPort: server.port,
        forceTLS: false,
        enabledTransports: ['ws'],
        disableStats: true,
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, callback) => {
            try {
              const presence = channelName.startsWith('presence-')
                ? { user_id: user?.id, user_info: user?.info }
                : undefined;
              callback(null, signer.authorizeChannel(socketId, channelName, presence));
            } catch (err) {
              callback(err, null);
            }
          },
        },
        userAuthentication: {
          customHandler: ({ socketId }, callback) => {
            try {
              const userData = { id: user.id };
              if (user.info !== undefined) userData.user_info = user.info;
              if (user.watchlist !== undefined) userData.watchlist = user.watchlist;
              callback(null, signer.authenticateUser(socketId, userData));
            } catch (err) {
              callback(err, null);
            }
          },
        },
        ...options,
      });
      pushers.push(pusher);
      return pusher;
    },

    /** A raw WebSocket to `url` (the app's endpoint by default), with `ws` options. */
    raw(url = this.url(), options = {}) {
      const raw = new RawClient(url, options);
      raws.push(raw);
      return raw;
    },
  };
}

/** Subscribes a pusher-js client and waits for `pusher:subscription_succeeded` (an error rejects). */
export function subscribed(pusher, channelName, timeout = WAIT_MS) {
  const channel = pusher.subscribe(channelName);
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      channel.unbind('pusher:subscription_succeeded', ok);
      channel.unbind('pusher:subscription_error', failed);
    };
    const ok = (data) => {
      done();
      resolve({ channel, data });
    };
    const failed = (data) => {
      done();
      reject(new Error(`subscription to ${channelName} failed: ${JSON.stringify(data)}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeout} ms waiting for pusher:subscription_succeeded on ${channelName}`));
    }, timeout);
    channel.bind('pusher:subscription_succeeded', ok);
    channel.bind('pusher:subscription_error', failed);
  });
}

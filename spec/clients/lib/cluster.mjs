// A cluster of real ferrocast nodes over a real redis-server, for the end-to-end tests: Redis on
// a free loopback port, a TCP proxy in front of it (so a test can cut the link), nodes started
// with short heartbeat and node-timeout values, and per-node factories for pusher-js clients,
// raw sockets and the `pusher` SDK. Every wait is bounded.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import { RawClient, sleep, WAIT_MS } from './clients.mjs';
import { startServer, app, DEFAULT_APP } from './server.mjs';

/** How often the test nodes say they are alive. */
export const HEARTBEAT_MS = 200;
/** How long a silent test node lives on in the others' eyes. */
export const NODE_TIMEOUT_MS = 1_500;
/** A second app every node serves unless told otherwise. */
export const OTHER_APP = Object.freeze({ id: 'other-id', key: 'other-key', secret: 'other-secret' });

/** A free loopback port (bound and released at once). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Waits (bounded) for `check()` to resolve truthy, polling; returns its last value. */
export async function eventually(check, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await sleep(50);
  }
}

/** redis-server on a free loopback port in a temp dir, persisting nothing. */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'ferrocast-cluster-redis-'));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await new Promise((resolve, reject) => {
    child.on('error', (err) =>
      reject(new Error(`cannot run redis-server (${err.message}): install it (test.sh does) to run the cluster tests`)),
    );
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000);
    const poll = setInterval(() => {
      if (/ready to accept connections/i.test(output)) {
        clearTimeout(timer);
        clearInterval(poll);
        resolve();
      }
    }, 20);
    exited.then(() => {
      clearTimeout(timer);
      clearInterval(poll);
      reject(new Error(`redis-server exited:\n${output}`));
    });
  });
  return {
    port,
    async stop() {
      child.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP proxy in front of Redis. `cut()` drops every connection and refuses new ones (they are
 * accepted and closed at once, as a dead network path would look to a reconnecting client);
 * `restore()` lets connections through again.
 */
export async function startProxy(targetPort) {
  const sockets = new Set();
  let up = true;
  const server = net.createServer((client) => {
    if (!up) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    cut() {
      up = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      up = true;
    },
    async stop() {
      this.cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Everything made for one node: the process, the SDK for each app, client factories. */
function nodeHandle(server, name) {
  const clients = [];
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
  const sdk = sdkFor(DEFAULT_APP);
  return {
    name,
    server,
    sdk,
    sdkFor,
    url(key = DEFAULT_APP.key) {
      return `ws://${server.host}:${server.port}/app/${key}?protocol=7&client=js&version=8.6.0&flash=false`;
    },
    /**
     * A pusher-js client of this node; `user: { id, info, watchlist }` is used for presence
     * channel data and sign-in.
     */
    client({ user, key = DEFAULT_APP.key } = {}) {
      const pusher = new Pusher(key, {
        cluster: 'x',
        wsHost: server.host,
        wsPort: server.port,
        forceTLS: false,
        enabledTransports: ['ws'],
        disableStats: true,
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, callback) => {
            const presence = channelName.startsWith('presence-')
              ? { user_id: user?.id, user_info: user?.info ?? {} }
              : undefined;
            callback(null, sdk.authorizeChannel(socketId, channelName, presence));
          },
        },
        userAuthentication: {
          customHandler: ({ socketId }, callback) => {
            const userData = { id: user.id };
            if (user.watchlist !== undefined) userData.watchlist = user.watchlist;
            callback(null, sdk.authenticateUser(socketId, userData));
          },
        },
      });
      clients.push({ close: async () => pusher.disconnect() });
      return pusher;
    },
    /** A raw WebSocket client of this node. */
    raw(key = DEFAULT_APP.key) {
      const raw = new RawClient(this.url(key));
      clients.push(raw);
      return raw;
    },
    /** The JSON of a signed GET on this node's HTTP API. */
    async get(apiPath, params = {}, creds = DEFAULT_APP) {
      const response = await sdkFor(creds).get({ path: apiPath, params });
      return response.json();
    },
    async closeClients() {
      await Promise.all(clients.splice(0).map((c) => c.close()));
    },
  };
}

/**
 * Starts one ferrocast node of the cluster behind `redisPort`. `apps` replaces the default
 * apps (the default app with client events, and `OTHER_APP`); `extra` adds top-level settings
 * (`webhook_batch_ms`, ...) and `server` settings.
 */
export async function startNode(
  name,
  redisPort,
  { prefix = 'e2e', workers = 2, apps = [app({ client_events: true }), app(OTHER_APP)], extra = {}, server = {} } = {},
) {
  const started = await startServer({
    ...extra,
    server: { workers, ...server },
    cluster: {
      redis_url: `redis://127.0.0.1:${redisPort}/0`,
      prefix,
      heartbeat_ms: HEARTBEAT_MS,
      node_timeout_ms: NODE_TIMEOUT_MS,
    },
    apps,
  });
  return nodeHandle(started, name);
}

/**
 * Redis, its proxy and nodes `A`, `B`, `C` (`C` runs the engine inline, with one worker; the
 * others on its own thread), resolved once every node counts every other's subscriber.
 * `options(name)` gives each node's `startNode` options. `stop()` tears it all down.
 */
export async function startCluster(options = () => ({})) {
  const redis = await startRedis();
  const proxy = await startProxy(redis.port);
  const nodes = {};
  const stop = async () => {
    for (const node of Object.values(nodes)) {
      await node.closeClients();
      await node.server.stop();
    }
    await proxy.stop();
    await redis.stop();
  };
  try {
    const started = await Promise.all(
      ['A', 'B', 'C'].map((name) =>
        startNode(name, proxy.port, { ...(name === 'C' ? { workers: 1 } : {}), ...options(name) }),
      ),
    );
    [nodes.A, nodes.B, nodes.C] = started;
    const probes = await Promise.all(Object.values(nodes).map((n) => rawSubscribed(n, `probe-${n.name}`)));
    await eventually(async () => {
      for (const node of Object.values(nodes)) {
        const { channels } = await node.get('/channels', { filter_by_prefix: 'probe-' });
        if (Object.keys(channels).length !== 3) return false;
      }
      return true;
    }, 'every node to see the probes of all three');
    await Promise.all(probes.map((p) => p.close()));
  } catch (err) {
    await stop();
    throw err;
  }
  return { redis, proxy, nodes, stop };
}

/** A raw client subscribed to a public or private channel, the subscription confirmed. */
export async function rawSubscribed(node, channel, key = DEFAULT_APP.key) {
  const raw = node.raw(key);
  const socketId = await raw.established();
  const data = { channel };
  if (channel.startsWith('private-')) data.auth = node.sdk.authorizeChannel(socketId, channel).auth;
  raw.send({ event: 'pusher:subscribe', data });
  await raw.event('pusher_internal:subscription_succeeded', (m) => m.channel === channel);
  raw.socketId = socketId;
  return raw;
}

/** A raw client joined to presence `channel` as `userId`; returns it with its roster. */
export async function rawMember(node, channel, userId) {
  const raw = node.raw();
  const socketId = await raw.established();
  const auth = node.sdk.authorizeChannel(socketId, channel, { user_id: userId, user_info: { name: userId } });
  raw.send({ event: 'pusher:subscribe', data: { channel, auth: auth.auth, channel_data: auth.channel_data } });
  const ok = await raw.event('pusher_internal:subscription_succeeded', (m) => m.channel === channel);
  raw.socketId = socketId;
  return { raw, presence: ok.data.presence };
}

/** The events named `event` on `channel` a raw client has received. */
export const named = (raw, channel, event) => raw.messages.filter((m) => m.channel === channel && m.event === event);

/** The user ids `member_added`/`member_removed` told a raw client about on `channel`. */
export const memberEvents = (raw, channel, kind) =>
  named(raw, channel, `pusher_internal:member_${kind}`).map((m) => m.data.user_id);

/** The ids GET /channels/{ch}/users answers on `node`, sorted. */
export async function usersOn(node, channel) {
  const body = await node.get(`/channels/${channel}/users`);
  return body.users.map((u) => u.id).sort();
}

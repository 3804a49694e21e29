// A cluster of three ferrocast nodes over a real redis-server, driven by pusher-js and the
// `pusher` SDK: fan-out across nodes, one presence roster, cluster-wide queries, users, cache
// channels, a node killed with SIGKILL and restarted, a Redis outage made by a TCP proxy, and
// clusters that share one Redis without mixing. (Webhooks once per cluster: cluster-webhooks.test.mjs.)
//
// Every node reaches Redis through a small proxy (lib/cluster.mjs), so the outage test can cut
// and restore the link without touching redis-server. Timings are short (heartbeat 200 ms, node
// timeout 1.5 s) so that the whole file runs in well under two minutes.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connected, record, subscribed, roundTrip, sleep } from '../lib/clients.mjs';
import {
  NODE_TIMEOUT_MS,
  OTHER_APP,
  eventually,
  startCluster,
  startNode,
  rawSubscribed,
  rawMember,
  named,
  memberEvents,
  usersOn,
} from '../lib/cluster.mjs';

const T = { timeout: 30_000 };

describe('a cluster of three nodes over Redis', { timeout: 110_000 }, () => {
  let cluster;
  let proxy;
  /** The nodes by name; `C` runs the engine inline (one worker), the others on its own thread. */
  let nodes = {};

  before(async () => {
    cluster = await startCluster();
    ({ proxy, nodes } = cluster);
  });

  // Bounded, so that a teardown that cannot finish fails the file instead of hanging the run.
  after(async () => {
    await cluster?.stop();
  }, { timeout: 30_000 });

  /** Waits until `node` counts `count` subscriptions on `channel` cluster-wide. */
  const seesSubscriptions = (node, channel, count) =>
    eventually(async () => {
      const body = await node.get(`/channels/${channel}`, { info: 'subscription_count' });
      return body.subscription_count === count;
    }, `${node.name} to count ${count} subscriptions on ${channel}`);

  test('an HTTP publish to A reaches subscribers on A, B and C exactly once and in order', T, async () => {
    const channel = 'orders';
    const clients = {};
    const logs = {};
    for (const name of ['A', 'B', 'C']) {
      clients[name] = nodes[name].client();
      await connected(clients[name]);
      const { channel: sub } = await subscribed(clients[name], channel);
      logs[name] = record(sub, 'placed');
    }
    await seesSubscriptions(nodes.A, channel, 3);
    const sent = Array.from({ length: 30 }, (_, n) => n);
    for (const n of sent) await nodes.A.sdk.trigger(channel, 'placed', { n });
    for (const name of ['A', 'B', 'C']) {
      await logs[name].until(({ data }) => data.n === sent.at(-1), { what: `the last event at ${name}` });
    }
    await sleep(300);
    for (const name of ['A', 'B', 'C']) {
      await roundTrip(clients[name]);
      assert.deepEqual(logs[name].items.map(({ data }) => data.n), sent, `events at ${name}`);
    }
  });

  test('socket_id exclusion works for a socket on another node', T, async () => {
    const channel = 'exclusion';
    const onA = await rawSubscribed(nodes.A, channel);
    const onC = await rawSubscribed(nodes.C, channel);
    await seesSubscriptions(nodes.A, channel, 2);
    await nodes.A.sdk.trigger(channel, 'first', { n: 1 }, { socket_id: onC.socketId });
    await nodes.A.sdk.trigger(channel, 'second', { n: 2 });
    await onC.event('second');
    await onA.event('second');
    assert.equal(named(onC, channel, 'first').length, 0, 'the excluded socket on C got the event');
    assert.equal(named(onA, channel, 'first').length, 1);
  });

  test('client events reach the other nodes once, never the sender', T, async () => {
    const channel = 'private-chat';
    const members = await Promise.all(['A', 'B', 'C'].map((n) => rawSubscribed(nodes[n], channel)));
    const [onA, onB, onC] = members;
    await seesSubscriptions(nodes.B, channel, 3);
    onB.send({ event: 'client-typing', channel, data: { who: 'b' } });
    await onA.event('client-typing');
    await onC.event('client-typing');
    await sleep(300);
    await Promise.all(members.map((m) => m.roundTrip()));
    assert.equal(named(onA, channel, 'client-typing').length, 1);
    assert.equal(named(onC, channel, 'client-typing').length, 1);
    assert.equal(named(onB, channel, 'client-typing').length, 0, 'the sender got its own event');
  });

  test('presence: one roster across nodes, member events once per user', T, async () => {
    const channel = 'presence-room';
    const u1a = await rawMember(nodes.A, channel, 'u1');
    await eventually(async () => (await usersOn(nodes.C, channel)).join() === 'u1', 'C to see u1');
    const u2c = await rawMember(nodes.C, channel, 'u2');
    assert.deepEqual([...u2c.presence.ids].sort(), ['u1', 'u2'], 'subscription_succeeded on C lists A');
    await u1a.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'u2');
    await eventually(async () => (await usersOn(nodes.B, channel)).join() === 'u1,u2', 'B to see u1 and u2');

    // A second tab of u1, on B: u1 is still one member, and nobody is told of it again.
    const u1b = await rawMember(nodes.B, channel, 'u1');
    assert.deepEqual([...u1b.presence.ids].sort(), ['u1', 'u2']);
    assert.equal(u1b.presence.count, 2);
    const u3a = await rawMember(nodes.A, channel, 'u3');
    assert.equal(u3a.presence.count, 3);
    await u2c.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'u3');
    await u1b.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'u3');
    for (const node of ['A', 'B', 'C']) {
      assert.deepEqual(await usersOn(nodes[node], channel), ['u1', 'u2', 'u3'], `users on ${node}`);
    }
    const { channels } = await nodes.B.get('/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
    assert.equal(channels[channel].user_count, 3);

    // u1 closes the tab on A: its tab on B keeps it a member.
    await u1a.raw.close();
    await sleep(500);
    assert.deepEqual(memberEvents(u2c.raw, channel, 'removed'), [], 'u1 still has a tab on B');
    // The last tab goes: member_removed once, everywhere.
    await u1b.raw.close();
    await u2c.raw.event('pusher_internal:member_removed', (m) => m.data.user_id === 'u1');
    await u3a.raw.event('pusher_internal:member_removed', (m) => m.data.user_id === 'u1');
    await sleep(500);
    for (const member of [u2c, u3a]) {
      assert.deepEqual(memberEvents(member.raw, channel, 'removed'), ['u1']);
    }
    assert.deepEqual(memberEvents(u2c.raw, channel, 'added'), ['u3'], 'u1 was added to C once, at its join');
    assert.deepEqual(memberEvents(u3a.raw, channel, 'added'), []);
    await u2c.raw.close();
    await u3a.raw.close();
  });

  test('channel queries on any node answer for the cluster', T, async () => {
    const onA = await rawSubscribed(nodes.A, 'query-news');
    await rawSubscribed(nodes.A, 'query-news');
    await rawSubscribed(nodes.B, 'query-news');
    await rawSubscribed(nodes.B, 'private-query');
    await rawMember(nodes.C, 'presence-query', 'q1');
    await rawMember(nodes.A, 'presence-query', 'q2');
    for (const node of ['A', 'B', 'C']) {
      await eventually(async () => {
        const { channels } = await nodes[node].get('/channels', { filter_by_prefix: 'query-' });
        return Object.keys(channels).join() === 'query-news';
      }, `${node} to list query-news`);
      // Answers lag the other nodes' changes by one bus delay, hence the polling.
      await eventually(async () => {
        const presence = await nodes[node].get('/channels', { filter_by_prefix: 'presence-query', info: 'user_count' });
        return JSON.stringify(presence.channels) === JSON.stringify({ 'presence-query': { user_count: 2 } });
      }, `${node} to list presence-query with 2 users`);
      await seesSubscriptions(nodes[node], 'query-news', 3);
      const news = await nodes[node].get('/channels/query-news', { info: 'subscription_count' });
      assert.equal(news.occupied, true);
      const priv = await nodes[node].get('/channels/private-query', { info: 'subscription_count' });
      assert.equal(priv.occupied, true, `private-query on ${node}`);
      const room = await nodes[node].get('/channels/presence-query', { info: 'user_count' });
      assert.equal(room.user_count, 2);
      assert.deepEqual(await usersOn(nodes[node], 'presence-query'), ['q1', 'q2']);
    }
    assert.ok(onA.isOpen);
    await nodes.A.closeClients();
    await nodes.B.closeClients();
    await nodes.C.closeClients();
    for (const node of ['A', 'B', 'C']) {
      await eventually(async () => {
        const body = await nodes[node].get('/channels/query-news');
        return body.occupied === false;
      }, `${node} to see query-news vacated`);
    }
  });

  test('send-to-user and terminate_connections reach users on other nodes', T, async () => {
    const user = nodes.B.client({ user: { id: 'u-send' } });
    await connected(user);
    user.signin();
    await eventually(() => user.user.user_data !== null, 'sign-in on B');
    await user.user.signinDonePromise;
    const pings = record(user.user, 'nudge');
    // A raw second connection of the same user, on C.
    const raw = nodes.C.raw();
    const socketId = await raw.established();
    const signin = nodes.C.sdk.authenticateUser(socketId, { id: 'u-send' });
    raw.send({ event: 'pusher:signin', data: signin });
    await raw.event('pusher:signin_success');
    raw.send({ event: 'pusher:subscribe', data: { channel: '#server-to-user-u-send' } });
    await raw.event('pusher_internal:subscription_succeeded', (m) => m.channel === '#server-to-user-u-send');
    await sleep(300);
    await nodes.A.sdk.sendToUser('u-send', 'nudge', { n: 1 });
    const got = await pings.until(() => true, { what: 'nudge on B' });
    assert.deepEqual(got.data, { n: 1 });
    await raw.event('nudge');

    await nodes.A.sdk.terminateUserConnections('u-send');
    const closed = await raw.closed();
    assert.equal(closed.code, 4009);
    await eventually(() => user.connection.state !== 'connected', 'the pusher-js client on B to be disconnected');
    user.disconnect();
  });

  test('a cache channel subscriber on C gets the last event published through A', T, async () => {
    const channel = 'cache-prices';
    await nodes.A.sdk.trigger(channel, 'price', { v: 1 });
    await nodes.A.sdk.trigger(channel, 'price', { v: 2 });
    await sleep(300);
    const raw = nodes.C.raw();
    await raw.established();
    raw.send({ event: 'pusher:subscribe', data: { channel } });
    const last = await raw.event('price');
    assert.deepEqual(last.data, { v: 2 });
    assert.equal(named(raw, channel, 'pusher:cache_miss').length, 0);
  });

  test('two apps on one cluster and two clusters on one Redis never mix', T, async () => {
    const channel = 'shared-name';
    const app1OnB = await rawSubscribed(nodes.B, channel);
    const app2OnB = await rawSubscribed(nodes.B, channel, OTHER_APP.key);
    await nodes.A.sdkFor(OTHER_APP).trigger(channel, 'for-app2', {});
    await app2OnB.event('for-app2');
    const other = await startNode('D', proxy.port, { prefix: 'another-cluster' });
    try {
      const onD = await rawSubscribed(other, channel);
      await other.sdk.trigger(channel, 'from-other-cluster', {});
      await onD.event('from-other-cluster');
      await nodes.A.sdk.trigger(channel, 'from-this-cluster', {});
      await app1OnB.event('from-this-cluster');
      await sleep(300);
      assert.equal(named(app1OnB, channel, 'for-app2').length, 0, 'app 1 got app 2 event');
      assert.equal(named(app1OnB, channel, 'from-other-cluster').length, 0, 'the other cluster leaked in');
      assert.equal(named(onD, channel, 'from-this-cluster').length, 0, 'this cluster leaked out');
      assert.equal(named(app2OnB, channel, 'from-this-cluster').length, 0);
      const fromD = await other.get(`/channels/${channel}`, { info: 'subscription_count' });
      assert.equal(fromD.subscription_count, 1, 'the other cluster counts only its own subscriber');
      const app2 = await nodes.C.get(`/channels/${channel}`, { info: 'subscription_count' }, OTHER_APP);
      assert.equal(app2.subscription_count, 1, 'app 2 counts only its own subscriber');
    } finally {
      await other.closeClients();
      await other.server.stop();
    }
  });

  test('kill -9 of a node: its members are dropped once in time; a restarted node rejoins', T, async () => {
    const channel = 'presence-crash';
    const watcherA = await rawMember(nodes.A, channel, 'wa');
    const watcherB = await rawMember(nodes.B, channel, 'wb');
    await rawMember(nodes.C, channel, 'victim');
    await watcherA.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'victim');
    await watcherB.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'victim');
    await rawSubscribed(nodes.A, 'after-crash');

    const killedAt = Date.now();
    await nodes.C.server.kill();
    await nodes.C.closeClients();
    for (const watcher of [watcherA, watcherB]) {
      await watcher.raw.event('pusher_internal:member_removed', (m) => m.data.user_id === 'victim', {
        timeout: NODE_TIMEOUT_MS + 2_000,
      });
    }
    assert.ok(Date.now() - killedAt <= NODE_TIMEOUT_MS + 2_000, 'dropped within node_timeout + 2 s');
    await sleep(2 * NODE_TIMEOUT_MS);
    for (const watcher of [watcherA, watcherB]) {
      assert.deepEqual(memberEvents(watcher.raw, channel, 'removed'), ['victim'], 'member_removed once');
      assert.equal(memberEvents(watcher.raw, channel, 'added').filter((id) => id === 'victim').length, 1, 'no ghost');
    }
    for (const node of ['A', 'B']) assert.deepEqual(await usersOn(nodes[node], channel), ['wa', 'wb']);

    // A new process in C's place joins and is given the cluster's state.
    nodes.C = await startNode('C', proxy.port, { workers: 1 });
    await eventually(async () => (await usersOn(nodes.C, channel)).join() === 'wa,wb', 'the new C to learn the roster');
    const back = await rawMember(nodes.C, channel, 'returned');
    assert.deepEqual([...back.presence.ids].sort(), ['returned', 'wa', 'wb']);
    await watcherA.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'returned');
    const onNewC = await rawSubscribed(nodes.C, 'after-crash');
    await seesSubscriptions(nodes.A, 'after-crash', 2);
    await nodes.A.sdk.trigger('after-crash', 'hello', {});
    await onNewC.event('hello');
    await watcherA.raw.close();
    await watcherB.raw.close();
    await back.raw.close();
  });

  test('a Redis outage: each node serves its own clients, then the cluster heals within 5 s', T, async () => {
    const channel = 'presence-outage';
    const news = 'outage-news';
    const leaver = await rawMember(nodes.A, channel, 'o-leaver');
    // A applies its own join in bus order too: until it has, a second joiner on A is not given
    // o-leaver in its roster but told of it by a member_added, which the counts below exclude.
    await eventually(async () => (await usersOn(nodes.A, channel)).join() === 'o-leaver', 'A to apply o-leaver');
    const watcherA = await rawMember(nodes.A, channel, 'o-watch-a');
    // C joins once it knows A's members, so that its own roster is the whole one.
    await eventually(async () => (await usersOn(nodes.C, channel)).length === 2, 'C to see A\'s members');
    const watcherC = await rawMember(nodes.C, channel, 'o-watch-c');
    assert.deepEqual([...watcherC.presence.ids].sort(), ['o-leaver', 'o-watch-a', 'o-watch-c']);
    const newsA = await rawSubscribed(nodes.A, news);
    const newsC = await rawSubscribed(nodes.C, news);
    await watcherA.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'o-watch-c');
    await seesSubscriptions(nodes.A, news, 2);
    for (const node of ['A', 'C']) {
      await eventually(async () => (await usersOn(nodes[node], channel)).length === 3, `${node} to see 3 members`);
    }

    proxy.cut();
    await sleep(500);
    // Local fan-out goes on: A's subscriber hears A's publish, C's cannot.
    await nodes.A.sdk.trigger(news, 'during', { n: 1 });
    await newsA.event('during');
    // Local presence goes on: a join on C is told on C, a leave on A is told on A.
    const joiner = await rawMember(nodes.C, channel, 'o-joiner');
    await watcherC.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'o-joiner');
    await leaver.raw.close();
    await watcherA.raw.event('pusher_internal:member_removed', (m) => m.data.user_id === 'o-leaver');
    await sleep(300);
    assert.equal(named(newsC, news, 'during').length, 0, 'C heard A during the outage');

    proxy.restore();
    const restoredAt = Date.now();
    // Whole again: A's join news reaches C and the rosters agree everywhere.
    await watcherA.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'o-joiner', { timeout: 5_000 });
    await watcherC.raw.event('pusher_internal:member_removed', (m) => m.data.user_id === 'o-leaver', {
      timeout: 5_000 - (Date.now() - restoredAt),
    });
    await eventually(async () => {
      const rosters = await Promise.all(['A', 'B', 'C'].map((n) => usersOn(nodes[n], channel)));
      return rosters.every((r) => r.join() === 'o-joiner,o-watch-a,o-watch-c');
    }, 'equal rosters on every node', Math.max(0, 5_000 - (Date.now() - restoredAt)));
    await seesSubscriptions(nodes.A, news, 2);
    await nodes.A.sdk.trigger(news, 'after', { n: 2 });
    await newsC.event('after', () => true, { timeout: Math.max(500, 5_000 - (Date.now() - restoredAt)) });
    assert.ok(Date.now() - restoredAt <= 5_000, 'healed within 5 s of Redis coming back');

    await sleep(1_000);
    // Each client was told each difference exactly once, and nothing was delivered twice.
    assert.deepEqual(memberEvents(watcherA.raw, channel, 'added'), ['o-watch-c', 'o-joiner']);
    assert.deepEqual(memberEvents(watcherA.raw, channel, 'removed'), ['o-leaver']);
    assert.deepEqual(memberEvents(watcherC.raw, channel, 'added'), ['o-joiner']);
    assert.deepEqual(memberEvents(watcherC.raw, channel, 'removed'), ['o-leaver']);
    assert.deepEqual(memberEvents(joiner.raw, channel, 'removed'), ['o-leaver']);
    assert.equal(named(newsA, news, 'after').length, 1);
    assert.equal(named(newsC, news, 'after').length, 1);
    assert.equal(named(newsA, news, 'during').length, 1);
  });
});

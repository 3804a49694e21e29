// Webhooks once per cluster, and the other cluster-wide rules a backend sees: three ferrocast
// nodes over a real redis-server (lib/cluster.mjs), all pointing their app's webhooks at one real
// receiver (lib/webhooks.mjs, every request checked with the `pusher` SDK), clients spread over
// the nodes. Also watchlist online/offline across nodes, a node killed with SIGKILL, and the
// per-app `max_connections` held for the whole cluster.
//
// Each node posts to its own path under the receiver (`…/A`, `…/B`, `…/C`), so a test can say
// which node sent what. A case that must show something was NOT sent waits for a sentinel on
// every live node (the `channel_occupied` of a fresh channel subscribed on that node, which that
// node reports): each node has one delivery worker, so its batches arrive in the order it made
// them, and once every node's sentinel is in, anything decided before is in too.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connected, record, sleep } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';
import {
  HEARTBEAT_MS,
  NODE_TIMEOUT_MS,
  eventually,
  startCluster,
  rawSubscribed,
  rawMember,
  named,
  usersOn,
} from '../lib/cluster.mjs';
import { receiver, assertAllValid, PATH } from '../lib/webhooks.mjs';

const T = { timeout: 30_000 };
/** The nodes' `webhook_batch_ms`. */
const BATCH_MS = 100;
/** The server's default `webhook_leave_delay_secs`, in ms. */
const LEAVE_DELAY_MS = 3_000;
/** Earliest acceptable arrival of a delayed leave event, measured from the leave. */
const LEAVE_EARLIEST_MS = 2_500;
/** Latest acceptable arrival of a delayed leave event: delay + batch + slack for a loaded box. */
const LEAVE_LATEST_MS = LEAVE_DELAY_MS + BATCH_MS + 2_400;
/** An app of its own for the connection quota, so the other cases' sockets do not count. */
const CAPPED = Object.freeze({ id: 'capped-id', key: 'capped-key', secret: 'capped-secret' });
const MAX_CONNECTIONS = 4;

/** The node (A, B or C) that posted the request carrying webhook event `e`. */
const sender = (e) => e.request.url.slice(PATH.length + 1);

describe('webhooks and limits of a three-node cluster', { timeout: 80_000 }, () => {
  let cluster;
  let nodes;
  let hook;
  /** The nodes still running. */
  let live = ['A', 'B', 'C'];

  before(async () => {
    hook = await receiver(null);
    cluster = await startCluster((name) => ({
      extra: { webhook_batch_ms: BATCH_MS },
      server: { webhook_workers: 1 },
      apps: [
        app({ client_events: true, webhooks: [{ url: `${hook.url}/${name}` }] }),
        app({ ...CAPPED, max_connections: MAX_CONNECTIONS }),
      ],
    }));
    ({ nodes } = cluster);
  });

  // Bounded, so that a teardown that cannot finish fails the file instead of hanging the run.
  after(async () => {
    await cluster?.stop();
    await hook?.close();
  }, { timeout: 30_000 });

  let sentinels = 0;
  /** Waits until every live node's sentinel is delivered (see the top of the file). */
  async function flushed() {
    const round = ++sentinels;
    await Promise.all(
      live.map(async (name) => {
        const channel = `sentinel-${round}-${name}`;
        const raw = await rawSubscribed(nodes[name], channel);
        const occupied = await hook.first('channel_occupied', { channel });
        assert.equal(sender(occupied), name, `the occupancy caused on ${name} is reported by ${name}`);
        await raw.close();
      }),
    );
  }

  /** The webhook events about `channel`, as `name[ user_id]` strings, in arrival order. */
  const about = (channel) =>
    hook
      .events()
      .filter((e) => e.channel === channel)
      .map((e) => [e.name, e.user_id].filter((x) => x !== undefined).join(' '));

  /** Asserts `e` arrived between the earliest and latest bounds after `since`. */
  function assertDelayed(e, since, latest = LEAVE_LATEST_MS) {
    const after = e.at - since;
    assert.ok(after >= LEAVE_EARLIEST_MS, `${e.name} came ${after} ms after the leave; expected ~${LEAVE_DELAY_MS} ms`);
    assert.ok(after <= latest, `${e.name} came ${after} ms after the leave; expected at most ${latest} ms`);
  }

  describe('sent once per cluster', { concurrency: true }, () => {
    test('channel_occupied once for the first subscribers anywhere; channel_vacated only when the last anywhere leaves', T, async () => {
      const channel = 'hooks-room';
      // First subscribers on the three nodes at once: the cluster becomes occupied once.
      const [onA, onB, onC] = await Promise.all(['A', 'B', 'C'].map((n) => rawSubscribed(nodes[n], channel)));
      await hook.first('channel_occupied', { channel });
      const secondOnA = await rawSubscribed(nodes.A, channel);
      await flushed();
      assert.deepEqual(about(channel), ['channel_occupied'], hook.describeAll());

      // A's and C's subscribers all leave; the one on B keeps the channel occupied.
      await Promise.all([onA.close(), secondOnA.close(), onC.close()]);
      await sleep(LEAVE_DELAY_MS + 700);
      await flushed();
      assert.deepEqual(about(channel), ['channel_occupied'], 'vacated while B still had a subscriber');

      // The last subscriber anywhere leaves: vacated once, after the delay, by B.
      const left = Date.now();
      await onB.close();
      const vacated = await hook.first('channel_vacated', { channel }, LEAVE_LATEST_MS + 1_000);
      assertDelayed(vacated, left);
      assert.equal(sender(vacated), 'B', 'the node whose leave emptied the cluster reports it');
      await flushed();
      assert.deepEqual(about(channel), ['channel_occupied', 'channel_vacated']);
    });

    test('member_added and member_removed once per user whose tabs are on two nodes', T, async () => {
      const channel = 'presence-hooks-tabs';
      const [aliceA, aliceB] = await Promise.all([
        rawMember(nodes.A, channel, 'alice'),
        rawMember(nodes.B, channel, 'alice'),
      ]);
      await rawMember(nodes.C, channel, 'bob');
      await hook.until(
        () => hook.named('member_added', { channel, user_id: 'alice' }).length > 0 && hook.named('member_added', { channel, user_id: 'bob' }).length > 0,
        'member_added for alice and bob',
      );
      assert.equal(sender(hook.named('member_added', { channel, user_id: 'bob' })[0]), 'C', 'bob joined through C');
      await flushed();
      // Several nodes post, so only each node's own batches are in order: compare sorted.
      assert.deepEqual(about(channel).sort(), ['channel_occupied', 'member_added alice', 'member_added bob'], hook.describeAll());

      // Alice's tab on A closes; her tab on B keeps her a member.
      await aliceA.raw.close();
      await sleep(LEAVE_DELAY_MS + 700);
      await flushed();
      assert.equal(hook.named('member_removed', { channel }).length, 0, 'alice still has a tab on B');

      // Her last tab, on B, closes: member_removed once, after the delay, by B.
      const left = Date.now();
      await aliceB.raw.close();
      const removed = await hook.first('member_removed', { channel, user_id: 'alice' }, LEAVE_LATEST_MS + 1_000);
      assertDelayed(removed, left);
      assert.equal(sender(removed), 'B');
      await flushed();
      assert.deepEqual(about(channel).sort(), ['channel_occupied', 'member_added alice', 'member_added bob', 'member_removed alice']);
    });

    test('the leave delay is cluster-wide: leave on A, back on B within 3 s, and nothing is sent', T, async () => {
      const channel = 'presence-hooks-return';
      // Carol is the channel's only member, so her leave empties it too.
      const onA = await rawMember(nodes.A, channel, 'carol');
      await hook.until(
        () => about(channel).length === 2,
        'channel_occupied and member_added carol',
      );
      const left = Date.now();
      await onA.raw.close();
      await sleep(300);
      const onB = await rawMember(nodes.B, channel, 'carol');
      const back = Date.now() - left;
      assert.ok(back < 1_500, `the return took ${back} ms; the case needs it well inside the delay`);
      await sleep(LEAVE_DELAY_MS + 700 - (Date.now() - left));
      await flushed();
      assert.deepEqual(about(channel).sort(), ['channel_occupied', 'member_added carol'], hook.describeAll());

      // The cancelled leave left every node's ledger intact: a real leave through B is reported once.
      const gone = Date.now();
      await onB.raw.close();
      await hook.until(() => about(channel).length === 4, 'member_removed and channel_vacated', LEAVE_LATEST_MS + 1_000);
      for (const e of [...hook.named('member_removed', { channel }), ...hook.named('channel_vacated', { channel })]) {
        assertDelayed(e, gone);
        assert.equal(sender(e), 'B');
      }
      await flushed();
      assert.deepEqual(about(channel).sort(), ['channel_occupied', 'channel_vacated', 'member_added carol', 'member_removed carol']);
    });

    test('client_event once, by the node the client sent it to', T, async () => {
      const channel = 'private-hooks-chat';
      const [onA, onB, onC] = await Promise.all(['A', 'B', 'C'].map((n) => rawSubscribed(nodes[n], channel)));
      await eventually(async () => {
        const body = await nodes.B.get(`/channels/${channel}`, { info: 'subscription_count' });
        return body.subscription_count === 3;
      }, 'B to count the three subscribers');
      onB.send({ event: 'client-typing', channel, data: { who: 'b' } });
      await Promise.all([onA.event('client-typing'), onC.event('client-typing')]);
      const e = await hook.first('client_event', { channel });
      assert.equal(sender(e), 'B');
      assert.equal(e.event, 'client-typing');
      assert.equal(e.socket_id, onB.socketId);
      assert.deepEqual(JSON.parse(e.data), { who: 'b' });

      // On a presence channel the webhook names the user.
      const room = 'presence-hooks-talk';
      const dan = await rawMember(nodes.A, room, 'dan');
      const eve = await rawMember(nodes.C, room, 'eve');
      await dan.raw.event('pusher_internal:member_added', (m) => m.data.user_id === 'eve');
      eve.raw.send({ event: 'client-wave', channel: room, data: {} });
      await dan.raw.event('client-wave');
      const wave = await hook.first('client_event', { channel: room });
      assert.equal(sender(wave), 'C');
      assert.equal(wave.user_id, 'eve');
      await flushed();
      assert.equal(hook.named('client_event', { channel }).length, 1, hook.describeAll());
      assert.equal(hook.named('client_event', { channel: room }).length, 1, hook.describeAll());
    });

    test('cache_miss once, by the subscriber\'s node; none once the cache holds an event', T, async () => {
      const channel = 'cache-hooks-empty';
      const onB = await rawSubscribed(nodes.B, channel);
      await onB.event('pusher:cache_miss');
      const miss = await hook.first('cache_miss', { channel });
      assert.equal(sender(miss), 'B');
      await nodes.A.sdk.trigger(channel, 'update', { v: 1 });
      await onB.event('update');
      const onC = nodes.C.raw();
      await onC.established();
      onC.send({ event: 'pusher:subscribe', data: { channel } });
      assert.deepEqual((await onC.event('update')).data, { v: 1 }, 'C replays what was published through A');
      await flushed();
      assert.equal(hook.named('cache_miss', { channel }).length, 1, hook.describeAll());
      assert.equal(named(onC, channel, 'pusher:cache_miss').length, 0);
    });

    test('watchlist: online when the watched user signs in on another node, offline when the last connection anywhere closes', T, async () => {
      const signIn = async (pusher, id) => {
        await connected(pusher);
        pusher.signin();
        await eventually(() => pusher.user.user_data !== null, `pusher:signin_success for ${id}`);
        await pusher.user.signinDonePromise;
      };
      const watcher = nodes.A.client({ user: { id: 'w-watcher', watchlist: ['w-star'] } });
      const online = record(watcher.user.watchlist, 'online');
      const offline = record(watcher.user.watchlist, 'offline');
      await signIn(watcher, 'w-watcher');
      const initial = await offline.until(() => true, { what: 'offline [w-star] on sign-in' });
      assert.deepEqual(initial.data.user_ids, ['w-star']);

      const starB = nodes.B.client({ user: { id: 'w-star' } });
      await signIn(starB, 'w-star');
      const seen = await online.until(() => true, { what: 'online [w-star] at the watcher on A' });
      assert.deepEqual(seen.data, { name: 'online', user_ids: ['w-star'] });

      // A second connection of the star, on C, is not a second `online`; and a watcher signing
      // in on C is told at once that the star (signed in on B) is online.
      const starC = nodes.C.client({ user: { id: 'w-star' } });
      await signIn(starC, 'w-star');
      const late = nodes.C.client({ user: { id: 'w-late', watchlist: ['w-star'] } });
      const lateOnline = record(late.user.watchlist, 'online');
      const lateOffline = record(late.user.watchlist, 'offline');
      await signIn(late, 'w-late');
      const told = await lateOnline.until(() => true, { what: 'online [w-star] at the watcher on C' });
      assert.deepEqual(told.data.user_ids, ['w-star']);

      starB.disconnect();
      await sleep(600);
      assert.equal(offline.items.length, 1, 'w-star still has a connection on C');
      assert.equal(online.items.length, 1, 'a second connection is not a new online');
      assert.equal(lateOffline.items.length, 0);
      starC.disconnect();
      const gone = await offline.until((e) => e !== initial, { what: 'offline [w-star] at A after the last connection' });
      assert.deepEqual(gone.data, { name: 'offline', user_ids: ['w-star'] });
      await lateOffline.until(() => true, { what: 'offline [w-star] at C' });
      await sleep(300);
      assert.equal(offline.items.length, 2);
      assert.equal(lateOffline.items.length, 1);
    });

    test('max_connections holds for the cluster: the next connection on any node is refused with 4004', T, async () => {
      // Each node admits against its own count plus the counts the others last announced (each
      // node announces its count on the bus as it changes). So a connection admitted elsewhere
      // less than one bus delay ago is not yet counted: simultaneous admissions on k nodes can
      // each take the last free slot, and the cluster can overshoot by what the other nodes admit
      // within one bus delay (about a millisecond on a LAN; at worst, nodes starting from zero at
      // the same instant, nodes × max). Here connections are made one after another, and the
      // checks wait one bus delay first, so no overshoot is allowed.
      const attempt = async (node) => {
        const raw = node.raw(CAPPED.key);
        const outcome = await raw.until(
          (m) => m.event === 'pusher:connection_established' || m.event === 'pusher:error',
          { what: `an answer to connecting to ${node.name}` },
        );
        return { raw, outcome };
      };
      const held = [];
      for (const name of ['A', 'A', 'B', 'C']) {
        const { raw, outcome } = await attempt(nodes[name]);
        assert.equal(outcome.event, 'pusher:connection_established', `connection on ${name} within the quota`);
        held.push(raw);
      }
      const allowBusDelay = () => sleep(HEARTBEAT_MS + 100);
      await allowBusDelay();
      for (const name of ['A', 'B', 'C']) {
        const { raw, outcome } = await attempt(nodes[name]);
        assert.equal(outcome.event, 'pusher:error', `a fifth connection on ${name} was admitted`);
        assert.equal(outcome.data.code, 4004);
        assert.equal((await raw.closed()).code, 4004);
      }
      assert.ok(held.every((raw) => raw.isOpen), 'the connections within the quota stay open');

      // A slot freed on B is usable on C, and then the cluster is full again.
      await held[2].close();
      await allowBusDelay();
      const { outcome: onC } = await attempt(nodes.C);
      assert.equal(onC.event, 'pusher:connection_established', 'the slot freed on B is usable on C');
      await allowBusDelay();
      const { outcome: again } = await attempt(nodes.A);
      assert.equal(again.event, 'pusher:error');
      assert.equal(again.data.code, 4004);
    });
  });

  test('kill -9 of a node: its members\' member_removed and channel_vacated are sent once, by a survivor', T, async () => {
    const shared = 'presence-hooks-crash';
    const solo = 'presence-hooks-crash-solo';
    const plain = 'hooks-crash-plain';
    await rawMember(nodes.A, shared, 'k-watch');
    await rawMember(nodes.C, shared, 'k-victim');
    await rawMember(nodes.C, solo, 'k-victim');
    await rawSubscribed(nodes.C, plain);
    await hook.until(
      () =>
        hook.named('member_added', { channel: shared, user_id: 'k-victim' }).length === 1 &&
        hook.named('member_added', { channel: solo }).length === 1 &&
        hook.named('channel_occupied', { channel: plain }).length === 1,
      'the victim\'s joins reported',
    );
    await eventually(async () => (await usersOn(nodes.A, shared)).join() === 'k-victim,k-watch', 'A to see the victim');

    const killedAt = Date.now();
    await nodes.C.server.kill();
    await nodes.C.closeClients();
    live = ['A', 'B'];
    // Noticed after node_timeout (plus up to one heartbeat), then held for the leave delay, then batched.
    const bound = NODE_TIMEOUT_MS + HEARTBEAT_MS + LEAVE_DELAY_MS + BATCH_MS + 1_500;
    const expected = [
      ['member_removed', shared],
      ['member_removed', solo],
      ['channel_vacated', solo],
      ['channel_vacated', plain],
    ];
    await hook.until(
      () => expected.every(([name, channel]) => hook.named(name, { channel }).length > 0),
      'the dead node\'s leaves',
      bound + 1_000,
    );
    const reports = expected.map(([name, channel]) => hook.named(name, { channel })[0]);
    for (const e of reports) {
      assert.ok(e.at - killedAt <= bound, `${e.name} ${e.channel} came ${e.at - killedAt} ms after the kill; bound ${bound} ms`);
      assert.ok(e.at - killedAt >= LEAVE_EARLIEST_MS, `${e.name} ${e.channel} came before the leave delay`);
      assert.ok(live.includes(sender(e)), `${e.name} sent by ${sender(e)}`);
    }
    assert.equal(new Set(reports.map(sender)).size, 1, 'one survivor (the lowest live node) reports the death');
    assert.equal(hook.named('member_removed', { channel: shared })[0].user_id, 'k-victim');

    await flushed();
    for (const [name, channel] of expected) {
      assert.equal(hook.named(name, { channel }).length, 1, `${name} ${channel} once:\n  ${hook.describeAll()}`);
    }
    assert.equal(hook.named('channel_vacated', { channel: shared }).length, 0, 'k-watch is still in the channel');
    for (const name of live) assert.deepEqual(await usersOn(nodes[name], shared), ['k-watch'], `no ghost on ${name}`);
    assertAllValid(hook, ['A', 'B', 'C'].map((n) => `${PATH}/${n}`));
  });
});

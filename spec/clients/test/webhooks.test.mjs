// Webhooks: the binary POSTs signed batches to each endpoint of an app. A real HTTP receiver on
// 127.0.0.1 (lib/webhooks.mjs) checks every request with the `pusher` SDK's own webhook
// validation (`pusher.webhook({ headers, rawBody })` → `isValid()`, `getEvents()`, `getTime()`).
//
// The leave delay (3 s by default) dominates, so the cases run concurrently, each with its own
// server and receivers. A case that must show something was NOT sent waits for a "sentinel"
// (the `channel_occupied` of a fresh channel, joined after the leave delay has run out): with a
// single delivery worker, batches arrive in the order the server made them, so once the
// sentinel is in, anything the server decided before it would be in too.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, connected, subscribed, record, sleep } from '../lib/clients.mjs';
import { app, DEFAULT_APP } from '../lib/server.mjs';
import { receiver, assertAllValid, checker } from '../lib/webhooks.mjs';

const T = { timeout: 30_000 };
/** The server's default `webhook_leave_delay_secs`, in ms. */
const LEAVE_DELAY_MS = 3_000;
/** Earliest acceptable arrival of a delayed leave event, measured from the leave. */
const LEAVE_EARLIEST_MS = 2_500;
/** Latest acceptable arrival (delay + default 250 ms batch + slack for a loaded machine). */
const LEAVE_LATEST_MS = 6_500;

/** The events of `hook` reduced to comparable strings, e.g. `channel_occupied news`. */
const summary = (hook) =>
  hook.events().map((e) => [e.name, e.channel, e.user_id, e.subscription_count].filter((x) => x !== undefined).join(' '));

/** Server config: one app (the default credentials) whose webhooks are `hooks`; one worker. */
function config(hooks, extra = {}) {
  return {
    ...extra,
    server: { webhook_workers: 1, ...(extra.server ?? {}) },
    apps: [app({ webhooks: hooks.map((h) => (Array.isArray(h) ? { url: h[0].url, event_types: h[1] } : { url: h.url })) })],
  };
}

let sentinels = 0;
/**
 * Joins a fresh channel and waits until every receiver in `hooks` has the resulting event
 * (`channel_occupied`, or `cache_miss` for receivers that only want that): everything the
 * server decided before is then delivered.
 */
async function flushed(h, hooks, { cache = false } = {}) {
  const name = `${cache ? 'cache-' : ''}sentinel-${++sentinels}`;
  const pusher = h.client();
  await connected(pusher);
  await subscribed(pusher, name);
  await Promise.all(
    hooks.map((hook) =>
      hook.until((events) => events.some((e) => e.channel === name), `the sentinel ${name}`),
    ),
  );
  return name;
}

/** `hook`'s events other than those about sentinel channels. */
const withoutSentinels = (hook) => summary(hook).filter((s) => !/ (cache-)?sentinel-\d+/.test(s));

describe('webhooks', { concurrency: true }, () => {
  test('channel_occupied when a pusher-js client subscribes; not again for a second subscriber', T, async (t) => {
    const hook = await receiver(t);
    const h = await setup(t, config([hook]));
    const a = h.client();
    await connected(a);
    const joined = Date.now();
    await subscribed(a, 'news');
    const occupied = await hook.first('channel_occupied', { channel: 'news' });
    assert.ok(occupied.at - joined < 3_000, `channel_occupied took ${occupied.at - joined} ms`);
    assert.deepEqual(
      Object.keys(occupied).filter((k) => !['at', 'request'].includes(k)).sort(),
      ['channel', 'name'],
      `channel_occupied carries only name and channel: ${occupied.request.rawBody}`,
    );
    const b = h.client();
    await connected(b);
    await subscribed(b, 'news');
    await flushed(h, [hook]);
    assert.deepEqual(withoutSentinels(hook), ['channel_occupied news']);
    assertAllValid(hook);
  });

  test('channel_vacated ~3 s after the last subscriber leaves, not before', T, async (t) => {
    const hook = await receiver(t);
    // Default batch window and leave delay.
    const h = await setup(t, config([hook]));
    const [a, b] = [h.client(), h.client()];
    await Promise.all([connected(a), connected(b)]);
    await subscribed(a, 'room');
    await subscribed(b, 'room');
    await hook.first('channel_occupied', { channel: 'room' });
    a.unsubscribe('room');
    await sleep(200);
    const left = Date.now();
    b.disconnect();
    const vacated = await hook.first('channel_vacated', { channel: 'room' }, LEAVE_LATEST_MS + 1_000);
    const after = vacated.at - left;
    assert.ok(after >= LEAVE_EARLIEST_MS, `channel_vacated came ${after} ms after the last leave; expected ~${LEAVE_DELAY_MS} ms`);
    assert.ok(after <= LEAVE_LATEST_MS, `channel_vacated came ${after} ms after the last leave; expected ~${LEAVE_DELAY_MS} ms`);
    assert.deepEqual(summary(hook), ['channel_occupied room', 'channel_vacated room']);
    assertAllValid(hook);
  });

  test('a page reload (leave and come back within 1 s) sends no vacated/occupied or member events', T, async (t) => {
    const hook = await receiver(t);
    const h = await setup(t, config([hook]));
    const alice = { id: 'alice', info: { name: 'Alice' } };
    const page = h.client({ user: alice });
    await connected(page);
    await subscribed(page, 'reload');
    await subscribed(page, 'presence-reload');
    await hook.until(
      () => hook.named('channel_occupied').length === 2 && hook.named('member_added').length === 1,
      'channel_occupied twice and member_added',
    );

    const left = Date.now();
    page.disconnect();
    await sleep(200);
    const reloaded = h.client({ user: alice });
    await connected(reloaded);
    await Promise.all([subscribed(reloaded, 'reload'), subscribed(reloaded, 'presence-reload')]);
    const back = Date.now() - left;
    assert.ok(back < 1_000, `the reload took ${back} ms; the case needs it under 1 s`);

    // Past the leave delay, then a sentinel: any vacated/removed/occupied/added would be in.
    await sleep(LEAVE_DELAY_MS + 600 - (Date.now() - left));
    await flushed(h, [hook]);
    assert.deepEqual(withoutSentinels(hook).sort(), [
      'channel_occupied presence-reload',
      'channel_occupied reload',
      'member_added presence-reload alice',
    ]);

    // The cancelled leave left the bookkeeping intact: a real leave is still reported.
    const gone = Date.now();
    reloaded.disconnect();
    await hook.until(
      () => hook.named('channel_vacated').length === 2 && hook.named('member_removed').length === 1,
      'channel_vacated twice and member_removed after the real leave',
      LEAVE_LATEST_MS + 1_000,
    );
    for (const e of [...hook.named('channel_vacated'), ...hook.named('member_removed')]) {
      assert.ok(e.at - gone >= LEAVE_EARLIEST_MS, `${e.name} came ${e.at - gone} ms after the leave`);
    }
    assert.deepEqual(hook.named('member_removed').map((e) => e.user_id), ['alice']);
    assertAllValid(hook);
  });

  test('presence: member_added once per user, member_removed delayed and cancelled by a return', T, async (t) => {
    const hook = await receiver(t);
    const h = await setup(t, config([hook]));
    const alice = { id: 'alice', info: { name: 'Alice' } };
    const bob = { id: 'bob' };
    const tab1 = h.client({ user: alice });
    const tab2 = h.client({ user: alice });
    const bob1 = h.client({ user: bob });
    await Promise.all([connected(tab1), connected(tab2), connected(bob1)]);

    await subscribed(tab1, 'presence-members');
    const added = await hook.first('member_added', { channel: 'presence-members', user_id: 'alice' });
    assert.deepEqual(
      Object.keys(added).filter((k) => !['at', 'request'].includes(k)).sort(),
      ['channel', 'name', 'user_id'],
      added.request.rawBody,
    );
    await subscribed(tab2, 'presence-members'); // a second tab of the same user
    await subscribed(bob1, 'presence-members');
    await hook.first('member_added', { channel: 'presence-members', user_id: 'bob' });

    // Alice closes one tab of two: still a member, nothing to report.
    tab1.disconnect();
    // Bob reloads: gone and back within 1 s.
    const bobLeft = Date.now();
    bob1.disconnect();
    await sleep(200);
    const bob2 = h.client({ user: bob });
    await connected(bob2);
    await subscribed(bob2, 'presence-members');
    assert.ok(Date.now() - bobLeft < 1_000, `bob's return took ${Date.now() - bobLeft} ms`);
    // Alice closes her last tab: member_removed after the leave delay.
    const aliceLeft = Date.now();
    tab2.disconnect();

    const removed = await hook.first('member_removed', { channel: 'presence-members', user_id: 'alice' }, LEAVE_LATEST_MS + 1_000);
    const after = removed.at - aliceLeft;
    assert.ok(after >= LEAVE_EARLIEST_MS, `member_removed came ${after} ms after the leave; expected ~${LEAVE_DELAY_MS} ms`);
    assert.ok(after <= LEAVE_LATEST_MS, `member_removed came ${after} ms after the leave; expected ~${LEAVE_DELAY_MS} ms`);
    // Bob's cancelled removal was due before Alice's: a sentinel makes sure nothing else is on its way.
    await flushed(h, [hook]);
    assert.deepEqual(withoutSentinels(hook), [
      'channel_occupied presence-members',
      'member_added presence-members alice',
      'member_added presence-members bob',
      'member_removed presence-members alice',
    ]);
    assertAllValid(hook);
  });

  test('a reload sends no second member_added to an endpoint that asked only for member_added', T, async (t) => {
    // Like channel_occupied (kept back while either occupied or vacated is wanted), the
    // member_added of a quick return must be suppressed whichever event types are asked for.
    const hook = await receiver(t);
    const h = await setup(t, config([[hook, ['member_added', 'channel_occupied']]]));
    const alice = { id: 'alice' };
    const page = h.client({ user: alice });
    await connected(page);
    await subscribed(page, 'presence-only-added');
    await hook.first('member_added', { user_id: 'alice' });
    const left = Date.now();
    page.disconnect();
    await sleep(200);
    const reloaded = h.client({ user: alice });
    await connected(reloaded);
    await subscribed(reloaded, 'presence-only-added');
    assert.ok(Date.now() - left < 1_000, `the reload took ${Date.now() - left} ms`);
    await sleep(LEAVE_DELAY_MS + 600 - (Date.now() - left));
    await flushed(h, [hook]);
    assert.deepEqual(withoutSentinels(hook), ['channel_occupied presence-only-added', 'member_added presence-only-added alice']);
    assertAllValid(hook);
  });

  test('client_event: event, data, socket_id, and user_id on presence channels only', T, async (t) => {
    const hook = await receiver(t);
    const h = await setup(t, config([[hook, ['client_event']]], { webhook_batch_ms: 50 }));
    const a = h.client({ user: { id: 'alice' } });
    const b = h.client({ user: { id: 'bob' } });
    const [aliceSocket] = await Promise.all([connected(a), connected(b)]);
    const { channel: presence } = await subscribed(a, 'presence-talk');
    await subscribed(b, 'presence-talk');
    const { channel: priv } = await subscribed(a, 'private-talk');
    await subscribed(b, 'private-talk');
    const atBob = record(b.channel('presence-talk'), 'client-hello');

    presence.trigger('client-hello', { hi: true, text: 'ünïcødé "quoted"' });
    const e = await hook.first('client_event', { channel: 'presence-talk' });
    assert.equal(e.event, 'client-hello');
    assert.equal(typeof e.data, 'string', 'data is the JSON-encoded string the client sent');
    assert.deepEqual(JSON.parse(e.data), { hi: true, text: 'ünïcødé "quoted"' });
    assert.equal(e.socket_id, aliceSocket);
    assert.equal(e.user_id, 'alice');
    await atBob.until(() => true, { what: 'client-hello at bob' });

    priv.trigger('client-ping', { n: 1 });
    const p = await hook.first('client_event', { channel: 'private-talk' });
    assert.equal(p.event, 'client-ping');
    assert.deepEqual(JSON.parse(p.data), { n: 1 });
    assert.equal(p.socket_id, aliceSocket);
    assert.equal('user_id' in p, false, `no user_id on a private channel: ${p.request.rawBody}`);

    assert.deepEqual([...new Set(hook.events().map((ev) => ev.name))], ['client_event'], 'only the asked-for event type');
    assertAllValid(hook);
  });

  test('cache_miss when subscribing to an empty cache channel, not once it holds an event', T, async (t) => {
    const hook = await receiver(t);
    const h = await setup(t, config([hook], { webhook_batch_ms: 50 }));
    const a = h.client();
    await connected(a);
    const { channel } = await subscribed(a, 'cache-empty');
    await hook.first('cache_miss', { channel: 'cache-empty' });
    const missed = hook.named('cache_miss', { channel: 'cache-empty' })[0];
    assert.deepEqual(
      Object.keys(missed).filter((k) => !['at', 'request'].includes(k)).sort(),
      ['channel', 'name'],
      missed.request.rawBody,
    );
    const updates = record(channel, 'update');
    assert.equal((await h.sdk.trigger('cache-empty', 'update', { v: 1 })).status, 200);
    await updates.until(() => true, { what: 'update on cache-empty' });

    // A later subscriber gets the cached event, and the backend hears of no miss.
    const b = h.client();
    await connected(b);
    const replay = record(b.subscribe('cache-empty'), 'update');
    await replay.until(() => true, { what: 'the cached update replayed' });
    await flushed(h, [hook]);
    assert.equal(hook.named('cache_miss', { channel: 'cache-empty' }).length, 1, hook.describeAll());
    assertAllValid(hook);
  });

  test('event_types: each endpoint gets only what it asked for, subscription_count only by name', T, async (t) => {
    const occupiedOnly = await receiver(t);
    const everything = await receiver(t); // empty event_types: all but subscription_count
    const counts = await receiver(t);
    const h = await setup(
      t,
      config([[occupiedOnly, ['channel_occupied']], everything, [counts, ['subscription_count', 'cache_miss']]], {
        webhook_batch_ms: 50,
      }),
    );
    const [a, b] = [h.client({ user: { id: 'alice' } }), h.client()];
    await Promise.all([connected(a), connected(b)]);
    await subscribed(a, 'presence-filter');
    await subscribed(a, 'cache-filter');
    await everything.first('cache_miss', { channel: 'cache-filter' });
    await subscribed(b, 'cache-filter');
    await counts.first('subscription_count', { channel: 'cache-filter', subscription_count: 2 });
    // `cache-` sentinels reach all three endpoints (occupied, cache_miss, subscription_count).
    await flushed(h, [occupiedOnly, everything, counts], { cache: true });

    assert.deepEqual(withoutSentinels(occupiedOnly).sort(), ['channel_occupied cache-filter', 'channel_occupied presence-filter']);
    assert.deepEqual(withoutSentinels(everything).sort(), [
      'cache_miss cache-filter',
      'cache_miss cache-filter',
      'channel_occupied cache-filter',
      'channel_occupied presence-filter',
      'member_added presence-filter alice',
    ]);
    assert.deepEqual(withoutSentinels(counts), [
      'cache_miss cache-filter',
      'subscription_count cache-filter 1',
      'cache_miss cache-filter',
      'subscription_count cache-filter 2',
    ]);
    for (const hook of [occupiedOnly, everything, counts]) assertAllValid(hook);
  });

  test('a delivery answered 500 is retried ~1 s later with the same signed body', T, async (t) => {
    const hook = await receiver(t, { statuses: [500] });
    const h = await setup(t, config([hook], { webhook_batch_ms: 50 }));
    const a = h.client();
    await connected(a);
    await subscribed(a, 'flaky');
    await hook.until(() => hook.requests.length >= 2, 'a second POST after the 500');
    const [first, second] = hook.requests;
    assert.equal(first.status, 500);
    assert.equal(second.status, 200);
    assert.equal(second.rawBody, first.rawBody, 'a retry resends the same body');
    assert.equal(second.headers['x-pusher-signature'], first.headers['x-pusher-signature']);
    const gap = second.at - first.at;
    assert.ok(gap >= 800 && gap <= 3_000, `the retry came ${gap} ms after the 500; expected ~1 s`);
    assert.deepEqual(second.events, [{ name: 'channel_occupied', channel: 'flaky' }]);
    // Delivered now: no further attempt (the next back-off step would be 2 s).
    await sleep(2_500);
    assert.equal(hook.requests.length, 2, hook.describeAll());
    assertAllValid(hook);
  });

  test('an unanswered delivery times out (webhook_timeout_secs) and is retried', T, async (t) => {
    const hook = await receiver(t, { statuses: ['hang'] });
    const h = await setup(t, config([hook], { webhook_batch_ms: 50, server: { webhook_timeout_secs: 1 } }));
    const a = h.client();
    await connected(a);
    await subscribed(a, 'slow');
    await hook.until(() => hook.requests.length >= 2, 'a second POST after the unanswered one');
    const [first, second] = hook.requests;
    assert.equal(second.rawBody, first.rawBody, 'a retry resends the same body');
    const gap = second.at - first.at;
    // 1 s timeout, then the 1 s back-off.
    assert.ok(gap >= 1_700 && gap <= 4_000, `the retry came ${gap} ms after the unanswered POST; expected ~2 s`);
    assertAllValid(hook);
  });

  test('a delivery refused for the whole retry window is given up (webhook_retry_window_secs)', T, async (t) => {
    const hook = await receiver(t, { statuses: [503, 503, 503, 503, 503] });
    const h = await setup(t, config([hook], { webhook_batch_ms: 50, server: { webhook_retry_window_secs: 2 } }));
    const a = h.client();
    await connected(a);
    await subscribed(a, 'refused');
    await hook.until(() => hook.requests.length >= 2, 'the first retry');
    // Attempts at 0 s and 1 s; the next (at 3 s) would start after the 2 s window.
    await sleep(hook.requests[0].at + 4_000 - Date.now());
    assert.equal(hook.requests.length, 2, hook.describeAll());
    assert.ok(h.server.alive(), 'the server still runs');
    assertAllValid(hook);
  });

  test('the signature is real: another secret, another key or a changed body fails the SDK check', T, async (t) => {
    const hook = await receiver(t);
    const h = await setup(t, config([hook], { webhook_batch_ms: 50 }));
    const a = h.client();
    await connected(a);
    await subscribed(a, 'signed');
    await hook.first('channel_occupied', { channel: 'signed' });
    assertAllValid(hook);
    const [r] = hook.requests;
    const wrongSecret = checker({ ...DEFAULT_APP, secret: 'not-the-secret' });
    assert.equal(wrongSecret.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), false, 'another secret');
    const wrongKey = checker({ ...DEFAULT_APP, key: 'other-key' });
    assert.equal(wrongKey.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), false, 'another key');
    const tampered = r.rawBody.replace('"signed"', '"signes"');
    assert.notEqual(tampered, r.rawBody);
    assert.equal(checker(DEFAULT_APP).webhook({ headers: r.headers, rawBody: tampered }).isValid(), false, 'a changed body');
    // The right secret given as an extra token (key rotation) still validates.
    assert.equal(wrongSecret.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid([DEFAULT_APP]), true);
  });

  test('two apps: each endpoint hears only its own app, signed with that app\'s secret', T, async (t) => {
    const one = { id: 'app-one', key: 'key-one', secret: 'secret-one' };
    const two = { id: 'app-two', key: 'key-two', secret: 'secret-two' };
    const hookOne = await receiver(t, { creds: one });
    const hookTwo = await receiver(t, { creds: two });
    const h = await setup(t, {
      webhook_batch_ms: 50,
      server: { webhook_workers: 1 },
      apps: [app({ ...one, webhooks: [{ url: hookOne.url }] }), app({ ...two, webhooks: [{ url: hookTwo.url }] })],
    });
    const a = h.client({ key: one.key, signer: h.sdkFor(one) });
    const b = h.client({ key: two.key, signer: h.sdkFor(two) });
    await Promise.all([connected(a), connected(b)]);
    await subscribed(a, 'shared-name');
    await subscribed(b, 'only-two');
    await hookOne.first('channel_occupied', { channel: 'shared-name' });
    await hookTwo.first('channel_occupied', { channel: 'only-two' });
    await subscribed(b, 'shared-name');
    await hookTwo.first('channel_occupied', { channel: 'shared-name' });
    await sleep(300);
    assert.deepEqual(summary(hookOne), ['channel_occupied shared-name']);
    assert.deepEqual(summary(hookTwo).sort(), ['channel_occupied only-two', 'channel_occupied shared-name']);
    assertAllValid(hookOne);
    assertAllValid(hookTwo);
  });
});

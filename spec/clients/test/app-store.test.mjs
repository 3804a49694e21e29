// Apps read from a real database, with pusher-js, raw sockets and the `pusher` SDK: for each
// driver (PostgreSQL, and MariaDB for `mysql`), a server with `[app_store]` and no `[[apps]]`
// serves an app that exists only in a table of soketi's layout, refuses keys the table does not
// have with 4001, picks up rows inserted, changed (secret, enabled) and deleted while it runs,
// keeps known apps served while the database is unreachable and looks up again once it is back,
// and makes one query for a thousand connections waiting for the same key.
//
// The database runs for the whole file (lib/databases.mjs); each test starts its own ferrocast,
// so every cache starts empty. Ferrocast reaches the database through a TCP proxy
// (lib/cluster.mjs) that the outage tests cut and restore; the test's own statements go to the
// database directly. PostgreSQL's NOTIFY trigger (packaging/sql/postgres.sql) makes changes
// apply at once: its tests use a cache TTL far longer than the bound they assert, so only the
// notification can explain the change. MariaDB has no such channel: its changes are asserted
// within the cache TTL.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, connected, record, subscribed, sleep } from '../lib/clients.mjs';
import { eventually, startProxy } from '../lib/cluster.mjs';
import { startDatabase, insertApp, column, literal } from '../lib/databases.mjs';

const T = { timeout: 60_000 };
/** The short cache TTL most servers here run with. */
const TTL_SECS = 2;
/** A cache TTL no test waits out: a change seen sooner came from a notification. */
const LONG_TTL_SECS = 60;
/** How much later than the cache TTL a change may show (the re-read itself, polling). */
const TTL_MARGIN_MS = 3_000;
/** How soon a change PostgreSQL announces must show, far below LONG_TTL_SECS. */
const NOTIFY_WITHIN_MS = 10_000;
/** Connections opened at once for one key not yet cached. */
const BURST = 1_000;

/** The Pusher error code in a pusher-js connection `error` event, whichever way it is wrapped. */
function pusherErrorCode(err) {
  // During the handshake pusher-js wraps the server's pusher:error as WebSocketError → PusherError.
  return err?.error?.data?.code ?? err?.data?.code;
}

/** Resolves with the SDK's HTTP status for a trigger: 200 when accepted, else the error's. */
async function triggerStatus(sdk, channel, event, data) {
  try {
    const response = await sdk.trigger(channel, event, data);
    return response.status;
  } catch (err) {
    if (err.status === undefined) throw err;
    return err.status;
  }
}

const DRIVERS = [
  { driver: 'postgres', name: 'PostgreSQL', notifies: true },
  { driver: 'mysql', name: 'MariaDB (driver mysql)', notifies: false },
];

for (const { driver, name, notifies } of DRIVERS) {
  describe(`apps from ${name}`, { timeout: 600_000 }, () => {
    let db;
    let proxy;
    let serial = 0;

    before(async () => {
      db = await startDatabase(driver);
      proxy = await startProxy(db.port);
    }, { timeout: 90_000 });

    after(async () => {
      await proxy?.stop();
      await db?.stop();
    }, { timeout: 30_000 });

    /** Credentials no other test uses. */
    const fresh = () => {
      serial += 1;
      return { id: `${driver}-app-${serial}`, key: `${driver}-key-${serial}`, secret: `${driver}-secret-${serial}` };
    };

    /** Inserts a row for `creds` (plus any other columns) and returns the credentials. */
    const insert = async (creds, columns = {}) => {
      await db.sql(insertApp(driver, { id: creds.id, key: creds.key, secret: creds.secret, ...columns }));
      return creds;
    };

    /** Sets `columns` on the row of app `id`. */
    const update = (id, columns) => {
      const sets = Object.entries(columns).map(([k, v]) => `${column(driver, k)} = ${literal(v)}`);
      return db.sql(`UPDATE apps SET ${sets.join(', ')} WHERE ${column(driver, 'id')} = ${literal(id)}`);
    };

    /** The store's URL: the database's, through the proxy. */
    const storeUrl = () => db.url.replace(`@127.0.0.1:${db.port}/`, `@127.0.0.1:${proxy.port}/`);

    /** A ferrocast for this test reading apps from the database only; `sdk` signs for `creds`. */
    const serve = (t, creds, storeSettings = {}, extra = {}) =>
      setup(
        t,
        {
          ...extra,
          app_store: {
            driver,
            url: storeUrl(),
            cache_ttl_secs: TTL_SECS,
            missing_ttl_secs: 1,
            lookup_timeout_ms: 2_000,
            ...storeSettings,
          },
        },
        creds,
      );

    /**
     * Starts recording a pusher-js client's connection errors; `code(timeout)` waits for the
     * first that carries a Pusher code. Recording starts before the change that causes it,
     * since the server may close the connection before the statement's client has exited.
     */
    const refusals = (pusher, what) => {
      const errors = record(pusher.connection, 'error');
      return {
        async code(timeout) {
          try {
            const error = await errors.until((e) => pusherErrorCode(e.data) !== undefined, { what, timeout });
            return pusherErrorCode(error.data);
          } finally {
            errors.stop();
          }
        },
      };
    };

    /**
     * Opens a raw socket to `key` and resolves with how the server answers it: `established`,
     * or the code of its `pusher:error`.
     */
    const answer = async (h, key) => {
      const raw = h.raw(h.url(key));
      const first = await raw.until(
        (m) => m.event === 'pusher:connection_established' || m.event === 'pusher:error' || m.socketError,
        { what: `an answer to a connection for ${key}` },
      );
      await raw.close();
      if (first.event === 'pusher:connection_established') return 'established';
      return first.data?.code ?? first.socketError;
    };

    /** Connects pusher-js to `creds.key`, subscribes to `channel`, and sees an SDK event arrive. */
    const roundTripThroughApp = async (h, creds, channel) => {
      const pusher = h.client({ key: creds.key, signer: h.sdkFor(creds) });
      await connected(pusher);
      const { channel: sub } = await subscribed(pusher, channel);
      const events = record(sub, 'news');
      const marker = `${channel}-${Date.now()}`;
      await h.sdkFor(creds).trigger(channel, 'news', { marker });
      const got = await events.until(({ data }) => data.marker === marker, { what: `the event on ${channel}` });
      assert.equal(got.data.marker, marker);
      return pusher;
    };

    test('the database side: the schema is loaded, a row inserted is read, selectCount counts the read', T, async () => {
      const creds = await insert(fresh());
      const before = await db.selectCount('apps');
      const row = await db.sql(
        `SELECT ${column(driver, 'key')}, secret, ${column(driver, 'enabled')}, max_connections FROM apps WHERE id = ${literal(creds.id)}`,
      );
      assert.deepEqual(row.split(/[|\t]/), [creds.key, creds.secret, '1', '-1']);
      assert.equal((await db.selectCount('apps')) - before, 1);
    });

    test('an app only in the database: pusher-js connects, subscribes and receives an SDK event', T, async (t) => {
      const creds = await insert(fresh());
      const h = await serve(t, creds);
      await roundTripThroughApp(h, creds, 'orders');
      // A private channel: the subscription is signed with the secret read from the database.
      const pusher = h.client({ key: creds.key });
      await connected(pusher);
      await subscribed(pusher, 'private-orders');
    });

    test('a key the database does not have: pusher-js gets error 4001', T, async (t) => {
      const creds = fresh();
      const h = await serve(t, creds);
      const pusher = h.client({ key: 'no-such-key' });
      assert.equal(await refusals(pusher, 'a refusal').code(), 4001);
      // A raw socket sees the same, frame and close code.
      const raw = h.raw(h.url('no-such-key-either'));
      assert.equal((await raw.event('pusher:error')).data.code, 4001);
      assert.equal((await raw.closed()).code, 4001);
    });

    test('an app inserted while the server runs is served', T, async (t) => {
      const creds = fresh();
      const h = await serve(t, creds);
      assert.equal(await answer(h, creds.key), 4001, 'before the insert');
      await insert(creds);
      // The "missing" answer is remembered for missing_ttl_secs (1 s here), then asked again.
      await eventually(async () => (await answer(h, creds.key)) === 'established', 'the new app to be served', 10_000);
      await roundTripThroughApp(h, creds, 'inserted');
    });

    test('a changed secret: the old signature is refused with 401, the new one accepted', T, async (t) => {
      const creds = await insert(fresh());
      const ttl = notifies ? LONG_TTL_SECS : TTL_SECS;
      const h = await serve(t, creds, { cache_ttl_secs: ttl });
      // An open connection keeps the app in use, so that it is re-read when its TTL runs out.
      const pusher = await roundTripThroughApp(h, creds, 'secrets');
      const oldSdk = h.sdkFor(creds);
      const renewed = { ...creds, secret: `${creds.secret}-renewed` };
      const newSdk = h.sdkFor(renewed);
      assert.equal(await triggerStatus(newSdk, 'secrets', 'news', {}), 401, 'the new secret before the change');

      const changedAt = Date.now();
      await update(creds.id, { secret: renewed.secret });
      const bound = notifies ? NOTIFY_WITHIN_MS : ttl * 1000 + TTL_MARGIN_MS;
      await eventually(
        async () => (await triggerStatus(oldSdk, 'secrets', 'news', {})) === 401,
        `the old secret to be refused within ${bound} ms`,
        bound,
      );
      const took = Date.now() - changedAt;
      t.diagnostic(`old secret refused ${took} ms after the UPDATE (cache TTL ${ttl} s)`);
      assert.equal(await triggerStatus(newSdk, 'secrets', 'news', {}), 200, 'the new secret after the change');
      assert.equal(await triggerStatus(oldSdk, 'secrets', 'news', {}), 401, 'the old secret, again');
      // The open connection was not disturbed, and private channels are signed with the new secret.
      assert.equal(pusher.connection.state, 'connected');
      const signedAnew = h.client({ key: creds.key, signer: newSdk });
      await connected(signedAnew);
      await subscribed(signedAnew, 'private-after-change');
    });

    test('enabled set to false: the open pusher-js connection is closed with 4003', T, async (t) => {
      const creds = await insert(fresh());
      const ttl = notifies ? LONG_TTL_SECS : TTL_SECS;
      const h = await serve(t, creds, { cache_ttl_secs: ttl });
      const pusher = await roundTripThroughApp(h, creds, 'to-disable');
      const other = await insert(fresh());
      const bystander = await roundTripThroughApp(h, other, 'bystander');

      const closed = refusals(pusher, 'the connection to be closed');
      const changedAt = Date.now();
      await update(creds.id, { enabled: 0 });
      const bound = notifies ? NOTIFY_WITHIN_MS : ttl * 1000 + TTL_MARGIN_MS;
      const code = await closed.code(bound);
      t.diagnostic(`closed ${Date.now() - changedAt} ms after the UPDATE (cache TTL ${ttl} s)`);
      assert.equal(code, 4003);
      assert.equal(await answer(h, creds.key), 4003, 'a new connection to the disabled app');
      // Another app from the same table is untouched.
      assert.equal(bystander.connection.state, 'connected');
      assert.equal(await triggerStatus(h.sdkFor(other), 'bystander', 'news', {}), 200);
    });

    test('a deleted app: its open connection is closed with 4001, new ones refused with 4001', T, async (t) => {
      const creds = await insert(fresh());
      const ttl = notifies ? LONG_TTL_SECS : TTL_SECS;
      const h = await serve(t, creds, { cache_ttl_secs: ttl });
      const pusher = await roundTripThroughApp(h, creds, 'to-delete');

      const closed = refusals(pusher, 'the connection to be closed');
      const changedAt = Date.now();
      await db.sql(`DELETE FROM apps WHERE ${column(driver, 'id')} = ${literal(creds.id)}`);
      const bound = notifies ? NOTIFY_WITHIN_MS : ttl * 1000 + TTL_MARGIN_MS;
      const code = await closed.code(bound);
      t.diagnostic(`closed ${Date.now() - changedAt} ms after the DELETE (cache TTL ${ttl} s)`);
      assert.equal(code, 4001);
      assert.equal(await answer(h, creds.key), 4001, 'a new connection to the deleted app');
      assert.equal(await triggerStatus(h.sdkFor(creds), 'to-delete', 'news', {}), 404, 'a publish to the deleted app');
    });

    if (notifies) {
      test('a key refused as missing is served as soon as its row is inserted (NOTIFY)', T, async (t) => {
        const creds = fresh();
        // A "missing" remembered far longer than the bound below: only the notification helps.
        const h = await serve(t, creds, { cache_ttl_secs: LONG_TTL_SECS, missing_ttl_secs: LONG_TTL_SECS });
        assert.equal(await answer(h, creds.key), 4001, 'before the insert');
        const insertedAt = Date.now();
        await insert(creds);
        await eventually(
          async () => (await answer(h, creds.key)) === 'established',
          'the inserted app to be served',
          NOTIFY_WITHIN_MS,
        );
        t.diagnostic(`served ${Date.now() - insertedAt} ms after the INSERT`);
      });
    }

    test('the database unreachable: a known app is still served, an unknown key gets 4100; back, new apps are served', T, async (t) => {
      const known = await insert(fresh());
      const h = await serve(t, known);
      const first = await roundTripThroughApp(h, known, 'before-outage');
      const firstEvents = record(first.channel('before-outage'), 'news');

      proxy.cut();
      t.after(() => proxy.restore());
      // Beyond the cache TTL: the app is due to be read again and cannot be; it is kept.
      await sleep(TTL_SECS * 1000 + 500);
      await roundTripThroughApp(h, known, 'during-outage');
      await h.sdkFor(known).trigger('before-outage', 'news', { marker: 'still-there' });
      await firstEvents.until(({ data }) => data.marker === 'still-there', { what: 'the event on the first connection' });
      assert.equal(first.connection.state, 'connected');

      // An app that is in the table but cannot be read: unavailable, not missing.
      const added = await insert(fresh());
      const pusher = h.client({ key: added.key, signer: h.sdkFor(added) });
      const code = await refusals(pusher, 'a refusal during the outage').code();
      assert.ok(code >= 4100 && code < 4200, `a 4100-range error during the outage, got ${code}`);
      pusher.disconnect();
      assert.equal(await triggerStatus(h.sdkFor(added), 'during-outage', 'news', {}), 503, 'a publish to it');

      proxy.restore();
      const restoredAt = Date.now();
      await eventually(async () => (await answer(h, added.key)) === 'established', 'the app added meanwhile to be served', 20_000);
      t.diagnostic(`looked up ${Date.now() - restoredAt} ms after the link came back`);
      await roundTripThroughApp(h, added, 'after-outage');
      await roundTripThroughApp(h, known, 'after-outage-known');
    });

    if (notifies) {
      test('after the database comes back, changes are heard at once again (LISTEN renewed)', T, async (t) => {
        const creds = await insert(fresh());
        const h = await serve(t, creds, { cache_ttl_secs: LONG_TTL_SECS });
        const pusher = await roundTripThroughApp(h, creds, 'relisten');
        proxy.cut();
        t.after(() => proxy.restore());
        await sleep(1_000);
        proxy.restore();
        // Once an unknown key can be looked up again the store is connected; then a change.
        const probe = await insert(fresh());
        await eventually(async () => (await answer(h, probe.key)) === 'established', 'a lookup after the outage', 20_000);
        const closed = refusals(pusher, 'the connection to be closed');
        const changedAt = Date.now();
        await update(creds.id, { enabled: 0 });
        const code = await closed.code(5_000);
        t.diagnostic(`closed ${Date.now() - changedAt} ms after the UPDATE`);
        assert.equal(code, 4003);
      });
    }

    test(`${BURST} connections at once for a key not yet cached make one query and are all established`, T, async (t) => {
      const creds = await insert(fresh());
      // A TTL the test cannot outlive, so no refresh adds a query; no per-address limit on
      // connection attempts, since they all come from 127.0.0.1.
      const h = await serve(t, creds, { cache_ttl_secs: LONG_TTL_SECS }, { rate_limit: { enabled: false } });
      // The store has answered once (and connected) before counting starts.
      assert.equal(await answer(h, 'burst-probe-missing'), 4001);
      const before = await db.selectCount('apps');
      const startedAt = Date.now();
      const raws = Array.from({ length: BURST }, () => h.raw(h.url(creds.key)));
      const ids = await Promise.all(raws.map((raw) => raw.established({ timeout: 30_000 })));
      const took = Date.now() - startedAt;
      const after = await db.selectCount('apps');
      t.diagnostic(`${BURST} connections established in ${took} ms; reads of apps: ${after - before}`);
      assert.equal(new Set(ids).size, BURST, 'distinct socket ids');
      assert.equal(after - before, 1, 'reads of the apps table for the burst');
      await Promise.all(raws.map((raw) => raw.close()));
    });
  });
}

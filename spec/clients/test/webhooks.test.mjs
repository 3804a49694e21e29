// Webhooks: the binary POSTs signed batches to an app's endpoint; checked with the `pusher`
// SDK's own webhook validation against a local receiver.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { setup, connected, subscribed } from '../lib/clients.mjs';
import { app } from '../lib/server.mjs';

const T = { timeout: 30_000 };
const DELIVERY_WAIT_MS = 8_000;

/**
 * A local webhook endpoint on 127.0.0.1. `statuses` answers the first requests in turn
 * (then 200). Every request is kept as `{ headers, rawBody, json }`.
 */
async function receiver(t, statuses = []) {
  const requests = [];
  const waiters = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString();
      let json = null;
      try {
        json = JSON.parse(rawBody);
      } catch {
        // Kept raw; the test will say so.
      }
      const status = statuses[requests.length] ?? 200;
      requests.push({ method: req.method, url: req.url, headers: req.headers, rawBody, json, status });
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
      for (const w of [...waiters]) w();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  );
  return {
    url: `http://127.0.0.1:${server.address().port}/pusher/webhooks`,
    requests,
    /** Every event delivered so far, flattened: `{ event, request }`. */
    events: () => requests.flatMap((r) => (r.json?.events ?? []).map((event) => ({ event, request: r }))),
    /** Waits until `pred(events())` holds. */
    async until(pred, what, timeout = DELIVERY_WAIT_MS) {
      const deadline = Date.now() + timeout;
      while (!pred(this.events())) {
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(`timed out after ${timeout} ms waiting for ${what}; received:\n  ${requests.map((r) => `${r.status} ${r.rawBody}`).join('\n  ') || '(nothing)'}`);
        }
        await new Promise((resolve) => {
          const w = () => {
            waiters.delete(w);
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(w, Math.min(left, 100));
          waiters.add(w);
        });
      }
      return this.events();
    },
  };
}

const has = (name, fields = {}) => (events) =>
  events.some(({ event }) => event.name === name && Object.entries(fields).every(([k, v]) => event[k] === v));

test('webhooks: channel_occupied and member_added, signed for the SDK to verify', T, async (t) => {
  const hook = await receiver(t);
  const h = await setup(t, { webhook_batch_ms: 50, apps: [app({ webhooks: [{ url: hook.url }] })] });
  const pusher = h.client({ user: { id: 'alice', info: { name: 'Alice' } } });
  await connected(pusher);
  await subscribed(pusher, 'presence-hooks');
  await hook.until(has('channel_occupied', { channel: 'presence-hooks' }), 'channel_occupied');
  await hook.until(has('member_added', { channel: 'presence-hooks', user_id: 'alice' }), 'member_added');
  for (const r of hook.requests) {
    assert.equal(r.method, 'POST');
    assert.equal(r.headers['x-pusher-key'], 'app-key');
    const webhook = h.sdk.webhook({ headers: r.headers, rawBody: r.rawBody });
    assert.ok(webhook.isValid(), `the SDK must accept the signature of ${r.rawBody}`);
    assert.equal(typeof r.json.time_ms, 'number');
  }
});

test('webhooks: client_event carries the event, data, socket_id and user_id', T, async (t) => {
  const hook = await receiver(t);
  const h = await setup(t, { webhook_batch_ms: 50, apps: [app({ webhooks: [{ url: hook.url, event_types: ['client_event'] }] })] });
  const a = h.client({ user: { id: 'alice' } });
  const b = h.client({ user: { id: 'bob' } });
  await Promise.all([connected(a), connected(b)]);
  const { channel } = await subscribed(a, 'presence-talk');
  await subscribed(b, 'presence-talk');
  channel.trigger('client-hello', { hi: true });
  const events = await hook.until(has('client_event', { channel: 'presence-talk' }), 'client_event');
  const { event } = events.find(({ event: e }) => e.name === 'client_event');
  assert.equal(event.event, 'client-hello');
  assert.deepEqual(JSON.parse(event.data), { hi: true });
  assert.equal(event.socket_id, a.connection.socket_id);
  assert.equal(event.user_id, 'alice');
  assert.ok(hook.events().every(({ event: e }) => e.name === 'client_event'), 'only the asked-for event type');
});

test('webhooks: channel_vacated is delayed, and a failed delivery is retried', T, async (t) => {
  const hook = await receiver(t, [500]);
  const h = await setup(t, {
    webhook_batch_ms: 50,
    webhook_leave_delay_secs: 1,
    apps: [app({ webhooks: [{ url: hook.url, event_types: ['channel_occupied', 'channel_vacated'] }] })],
  });
  const pusher = h.client();
  await connected(pusher);
  await subscribed(pusher, 'brief');
  // The first delivery is answered 500: the same body must come again.
  await hook.until(() => hook.requests.length >= 2, 'a retry after a 500');
  assert.equal(hook.requests[0].status, 500);
  assert.equal(hook.requests[1].rawBody, hook.requests[0].rawBody, 'a retry resends the same signed body');
  const left = Date.now();
  pusher.unsubscribe('brief');
  await hook.until(has('channel_vacated', { channel: 'brief' }), 'channel_vacated');
  assert.ok(Date.now() - left >= 900, `channel_vacated came ${Date.now() - left} ms after leaving; expected the ~1 s delay`);
});

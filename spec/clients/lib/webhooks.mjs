// A real webhook receiver on 127.0.0.1 for the end-to-end tests: it checks every request with
// the `pusher` SDK's own webhook validation (`pusher.webhook({ headers, rawBody })` →
// `isValid()`, `getEvents()`, `getTime()`) and keeps everything it got. Every wait is bounded.

import assert from 'node:assert/strict';
import http from 'node:http';
import PusherServer from 'pusher';
import { DEFAULT_APP } from './server.mjs';

/** Bound on waiting for a delivery that must come. */
export const DELIVERY_WAIT_MS = 8_000;
/** The path of the receiver's URL. */
export const PATH = '/pusher/webhooks';

/** The `pusher` SDK for `creds`, used only to check webhooks (it never connects anywhere). */
export const checker = (creds) => new PusherServer({ appId: creds.id, key: creds.key, secret: creds.secret });

/**
 * A webhook endpoint on 127.0.0.1:0, closed by `t.after` when `t` is given, else by `close()`.
 * `statuses` answers the first requests in turn (then 200); a status of `'hang'` never answers
 * that request. Every request is kept as
 * `{ at, method, url, headers, rawBody, status, valid, events, time }`, where `valid`, `events`
 * and `time` come from the SDK's webhook checker for `creds`. Requests to any path under `url`
 * are accepted (e.g. `${url}/A`, to tell senders apart); `url` keeps the request's path.
 */
export async function receiver(t, { creds = DEFAULT_APP, statuses = [] } = {}) {
  const sdk = checker(creds);
  const requests = [];
  const waiters = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const webhook = sdk.webhook({ headers: req.headers, rawBody });
      const valid = webhook.isValid();
      const status = statuses[requests.length] ?? 200;
      requests.push({
        at: Date.now(),
        method: req.method,
        url: req.url,
        headers: req.headers,
        rawBody,
        status,
        valid,
        events: valid ? webhook.getEvents() : [],
        time: valid ? webhook.getTime() : null,
      });
      // 'hang' leaves the request unanswered (until the receiver is closed).
      if (status !== 'hang') res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
      for (const w of [...waiters]) w();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise((resolve) => {
      server.close(resolve);
      server.closeAllConnections();
    });
  t?.after(close);
  const describeAll = () =>
    requests.map((r) => `${r.status}${r.valid ? '' : ' INVALID'} +${r.at} ${r.url} ${r.rawBody}`).join('\n  ') || '(nothing)';
  return {
    url: `http://127.0.0.1:${server.address().port}${PATH}`,
    creds,
    requests,
    describeAll,
    close,
    /** Every event of every validly signed request so far: `{ ...event, at, request }`. */
    events: () => requests.flatMap((r) => r.events.map((e) => ({ ...e, at: r.at, request: r }))),
    /** Events named `name` (and matching `fields`) so far. */
    named(name, fields = {}) {
      return this.events().filter((e) => e.name === name && Object.entries(fields).every(([k, v]) => e[k] === v));
    },
    /**
     * Waits until `pred(events())` holds; fails at once on a request the SDK rejects, and after
     * `timeout` ms with everything received.
     */
    async until(pred, what, timeout = DELIVERY_WAIT_MS) {
      const deadline = Date.now() + timeout;
      for (;;) {
        const bad = requests.find((r) => !r.valid);
        if (bad) throw new Error(`the SDK rejected a webhook while waiting for ${what}:\n  ${describeAll()}`);
        if (pred(this.events())) return this.events();
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out after ${timeout} ms waiting for ${what}; received:\n  ${describeAll()}`);
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
    },
    /** Waits for the first event named `name` matching `fields`; returns it. */
    async first(name, fields = {}, timeout = DELIVERY_WAIT_MS) {
      await this.until(() => this.named(name, fields).length > 0, `${name} ${JSON.stringify(fields)}`, timeout);
      return this.named(name, fields)[0];
    },
  };
}

/**
 * Every request `hook` got is a well-formed POST to one of `paths` that the SDK validates for
 * its app.
 */
export function assertAllValid(hook, paths = [PATH]) {
  assert.ok(hook.requests.length > 0, 'the receiver got no request at all');
  for (const r of hook.requests) {
    const body = r.rawBody;
    assert.equal(r.method, 'POST', body);
    assert.ok(paths.includes(r.url), `posted to ${r.url}, not one of ${paths.join(', ')}: ${body}`);
    assert.equal(r.headers['content-type'], 'application/json', body);
    assert.equal(r.headers['x-pusher-key'], hook.creds.key, body);
    assert.match(r.headers['x-pusher-signature'] ?? '', /^[0-9a-f]{64}$/, body);
    assert.ok(r.valid, `the SDK must accept the signature of ${body}`);
    const json = JSON.parse(body);
    assert.ok(Number.isInteger(json.time_ms), `time_ms must be an integer: ${body}`);
    assert.ok(Array.isArray(json.events) && json.events.length > 0, `events must be a non-empty list: ${body}`);
    assert.deepEqual(r.events, json.events);
    assert.ok(Math.abs(r.time.getTime() - r.at) < 30_000, `getTime() ${r.time.toISOString()} is far from the arrival`);
  }
}

// TLS end to end: pusher-js with `forceTLS: true` and the `pusher` SDK with `useTLS: true`
// against the binary serving a certificate this test makes, and `require_tls` refusing a
// plain `ws://` connection with 4000.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, app } from '../lib/server.mjs';
import { RawClient } from '../lib/clients.mjs';
import { makeCertificates, runTrustingClients } from '../lib/tls.mjs';

const T = { timeout: 40_000 };

async function tlsServer(t, apps) {
  const certs = makeCertificates();
  t.after(() => certs.remove());
  const server = await startServer({
    server: { tls: { cert_file: certs.cert, key_file: certs.key } },
    apps,
  });
  t.after(() => server.stop());
  return { server, certs };
}

test('pusher-js over wss:// receives an event the pusher SDK publishes over https://', T, async (t) => {
  const creds = app();
  const { server, certs } = await tlsServer(t, [creds]);

  const report = await runTrustingClients(certs.ca, {
    host: server.host,
    port: server.port,
    app: creds,
    channel: 'news',
    data: { over: 'tls' },
  });

  assert.match(report.socketId, /^\d+\.\d+$/);
  assert.ok(report.socketUrl?.startsWith(`wss://127.0.0.1:${server.port}/app/app-key?`), report.socketUrl);
  assert.equal(report.triggerStatus, 200);
  assert.deepEqual(report.event, { over: 'tls' });
  assert.deepEqual(report.channelInfo, { occupied: true, subscription_count: 1 });
});

test('an app with require_tls serves pusher-js over wss://', T, async (t) => {
  const creds = app({ require_tls: true });
  const { server, certs } = await tlsServer(t, [creds]);

  const report = await runTrustingClients(certs.ca, {
    host: server.host,
    port: server.port,
    app: creds,
    channel: 'secure-only',
    data: 'hello',
  });

  assert.equal(report.event, 'hello');
});

test('an app with require_tls refuses plain ws:// with pusher:error 4000 and close 4000', T, async (t) => {
  const server = await startServer({ apps: [app({ require_tls: true })] });
  t.after(() => server.stop());
  const raw = new RawClient(`ws://${server.host}:${server.port}/app/app-key?protocol=7&client=js&version=8.6.0`);
  t.after(() => raw.close());

  const error = await raw.event('pusher:error');
  const { code } = await raw.closed();

  assert.equal(error.data.code, 4000);
  assert.equal(code, 4000);
});

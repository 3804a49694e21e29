// Child process of `tls.mjs`: the real clients over TLS, trusting the test CA through
// `NODE_EXTRA_CA_CERTS`. pusher-js connects with `forceTLS: true` to `wss://HOST:wssPort`,
// subscribes, and receives an event that the `pusher` SDK publishes with `useTLS: true`
// (https). Prints one JSON report on stdout; any failure exits non-zero with the reason.

import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import { connected, subscribed, nextEvent, WAIT_MS } from './clients.mjs';

const { host, port, app, channel, data } = JSON.parse(process.argv[2]);

const pusher = new Pusher(app.key, {
  cluster: 'x',
  wsHost: host,
  wssPort: port,
  forceTLS: true,
  enabledTransports: ['ws'],
  disableStats: true,
});
const sdk = new PusherServer({
  appId: app.id,
  key: app.key,
  secret: app.secret,
  host,
  port: String(port),
  useTLS: true,
  timeout: WAIT_MS,
});

try {
  const socketId = await connected(pusher);
  const { channel: subscription } = await subscribed(pusher, channel);
  const received = nextEvent(subscription, 'greeting', { what: 'the event published over https' });
  const response = await sdk.trigger(channel, 'greeting', data);
  const event = await received;
  const info = await sdk.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } });
  const report = {
    socketId,
    // The URL pusher-js opened its socket with (its transport connection's faye client).
    socketUrl: pusher.connection.connection?.transport?.socket?.url ?? null,
    triggerStatus: response.status,
    event: event.data,
    channelInfo: await info.json(),
  };
  process.stdout.write(JSON.stringify(report));
  pusher.disconnect();
  process.exit(0);
} catch (err) {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
}

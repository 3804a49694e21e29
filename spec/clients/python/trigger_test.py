"""End-to-end: the official Python server SDK (`pusher` 3.x from PyPI) against the real binary.

Starts `target/release/ferrocast` (or `$FERROCAST_BIN`) on 127.0.0.1 with a generated config
whose app id is numeric (the Python SDK refuses any other), connects raw WebSocket clients
(`websocket-client`) and drives the HTTP API with `pusher.Pusher`: trigger, trigger_batch,
send_to_user, channels_info, channel_info, users_info, error statuses, and a webhook checked with
the SDK's `validate_webhook`. Every wait is bounded; the server is killed at the end.

Run: `.venv/bin/python trigger_test.py`; the last line is `N passed, N failed`.
"""

import hashlib
import hmac
import http.server
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import pusher
import pusher.errors
import websocket

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BIN = os.path.abspath(os.environ.get("FERROCAST_BIN") or os.path.join(REPO_ROOT, "target", "release", "ferrocast"))

APP_ID = "12345"
APP_KEY = "py-key"
APP_SECRET = "py-secret"
OTHER_APP = {"id": "67890", "key": "py-other-key", "secret": "py-other-secret"}

STARTUP_TIMEOUT = 15.0
WAIT = 5.0
LISTENING = re.compile(r"ferrocast listening on (\S+):(\d+)")


class Server:
    """The binary on an ephemeral port; output is kept for failure messages."""

    def __init__(self, config_text):
        if not os.path.exists(BIN):
            raise RuntimeError(f"the ferrocast binary is missing at {BIN}: run `cargo build --release`")
        self.dir = tempfile.TemporaryDirectory(prefix="ferrocast-py-")
        path = os.path.join(self.dir.name, "ferrocast.toml")
        with open(path, "w") as f:
            f.write(config_text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERROCAST_")}
        self.proc = subprocess.Popen(
            [BIN, "--host", "127.0.0.1", "--port", "0", "--config", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        self.output = []
        lines = queue.Queue()

        def pump():
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace")
                self.output.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError(f"no listening line within {STARTUP_TIMEOUT} s:\n{self.log()}")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.stop()
                raise RuntimeError(f"ferrocast exited before listening:\n{self.log()}")
            match = LISTENING.search(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return

    def log(self):
        return "".join(self.output)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
        self.dir.cleanup()


class Receiver:
    """A webhook endpoint on 127.0.0.1:0 keeping every request as (headers, body)."""

    def __init__(self):
        self.requests = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.arrived:
                    outer.requests.append((dict(self.headers.items()), body))
                    outer.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhooks"

    def wait_for(self, pred, what, timeout=WAIT + 3):
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for request in self.requests:
                    if pred(request):
                        return request
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; got {self.requests!r}")
                self.arrived.wait(left)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Ws:
    """A raw Pusher protocol client; frames are kept parsed (string `data` decoded when JSON)."""

    def __init__(self, key=APP_KEY):
        url = f"ws://{SERVER.host}:{SERVER.port}/app/{key}?protocol=7&client=python-e2e&version=1.0&flash=false"
        self.ws = websocket.create_connection(url, timeout=WAIT)
        self.frames = []
        self.socket_id = self.expect("pusher:connection_established")["data"]["socket_id"]
        OPEN_SOCKETS.append(self)

    def send(self, event, data, channel=None):
        message = {"event": event, "data": data}
        if channel is not None:
            message["channel"] = channel
        self.ws.send(json.dumps(message))

    def _read(self, timeout):
        self.ws.settimeout(timeout)
        text = self.ws.recv()
        frame = json.loads(text)
        frame["raw_data"] = frame.get("data")
        if isinstance(frame.get("data"), str):
            try:
                frame["data"] = json.loads(frame["data"])
            except ValueError:
                pass
        self.frames.append(frame)
        return frame

    def until(self, pred, what, timeout=WAIT):
        """Returns the first frame (already read or arriving within `timeout` s) matching `pred`."""
        for frame in self.frames:
            if pred(frame):
                return frame
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; frames: {self.frames!r}")
            try:
                frame = self._read(left)
            except websocket.WebSocketTimeoutException:
                continue
            if pred(frame):
                return frame

    def expect(self, event, channel=None, timeout=WAIT):
        return self.until(
            lambda f: f.get("event") == event and (channel is None or f.get("channel") == channel),
            f"{event} on {channel}",
            timeout,
        )

    def subscribe(self, channel, auth=None):
        data = {"channel": channel}
        if auth:
            data.update(auth)
        self.send("pusher:subscribe", data)
        frame = self.until(
            lambda f: f.get("channel") == channel
            and f.get("event") in ("pusher_internal:subscription_succeeded", "pusher:subscription_error", "pusher:error"),
            f"the answer to subscribing to {channel}",
        )
        if frame["event"] != "pusher_internal:subscription_succeeded":
            raise AssertionError(f"subscribing to {channel} failed: {frame!r}")
        return frame

    def round_trip(self):
        """Sends pusher:ping and reads up to its pong: everything queued before is then in."""
        mark = len(self.frames)
        self.send("pusher:ping", {})
        self.until(lambda f: f.get("event") == "pusher:pong" and self.frames.index(f) >= mark, "pusher:pong")

    def events(self, name, channel=None):
        return [f for f in self.frames if f.get("event") == name and (channel is None or f.get("channel") == channel)]

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


def sdk(app_id=APP_ID, key=APP_KEY, secret=APP_SECRET):
    return pusher.Pusher(
        app_id=app_id, key=key, secret=secret, host=SERVER.host, port=SERVER.port, ssl=False, timeout=WAIT
    )


SERVER = None
RECEIVER = None
OPEN_SOCKETS = []


def setUpModule():
    global SERVER, RECEIVER
    RECEIVER = Receiver()
    config = f"""
webhook_batch_ms = 50

[server]
webhook_workers = 1

[[apps]]
id = "{APP_ID}"
key = "{APP_KEY}"
secret = "{APP_SECRET}"

[[apps.webhooks]]
url = "{RECEIVER.url}"
event_types = ["channel_occupied"]

[[apps]]
id = "{OTHER_APP['id']}"
key = "{OTHER_APP['key']}"
secret = "{OTHER_APP['secret']}"
"""
    SERVER = Server(config)


def tearDownModule():
    for ws in OPEN_SOCKETS:
        ws.close()
    if SERVER is not None:
        SERVER.stop()
    if RECEIVER is not None:
        RECEIVER.close()


class Trigger(unittest.TestCase):
    def test_trigger_reaches_the_subscriber(self):
        ws = Ws()
        ws.subscribe("py-news")
        answer = sdk().trigger("py-news", "breaking", {"headline": "Rust 2.0", "text": "ünïcødé"})
        self.assertEqual(answer, {})
        frame = ws.expect("breaking", "py-news")
        self.assertIsInstance(frame["raw_data"], str, "data arrives as a JSON-encoded string")
        self.assertEqual(frame["data"], {"headline": "Rust 2.0", "text": "ünïcødé"})

    def test_trigger_string_data_is_relayed_verbatim(self):
        ws = Ws()
        ws.subscribe("py-plain")
        sdk().trigger("py-plain", "note", "just text, not JSON")
        self.assertEqual(ws.expect("note", "py-plain")["raw_data"], "just text, not JSON")

    def test_trigger_to_several_channels(self):
        a, b = Ws(), Ws()
        a.subscribe("py-multi-a")
        b.subscribe("private-py-multi-b", sdk().authenticate("private-py-multi-b", b.socket_id))
        self.assertEqual(sdk().trigger(["py-multi-a", "private-py-multi-b"], "both", {"n": 1}), {})
        self.assertEqual(a.expect("both", "py-multi-a")["data"], {"n": 1})
        self.assertEqual(b.expect("both", "private-py-multi-b")["data"], {"n": 1})

    def test_trigger_with_socket_id_skips_that_connection(self):
        a, b = Ws(), Ws()
        a.subscribe("py-except")
        b.subscribe("py-except")
        sdk().trigger("py-except", "skip-a", {"x": 1}, socket_id=a.socket_id)
        b.expect("skip-a", "py-except")
        a.round_trip()
        self.assertEqual(a.events("skip-a"), [], "the excluded connection got the event")

    def test_trigger_batch(self):
        a, b = Ws(), Ws()
        a.subscribe("py-batch-a")
        b.subscribe("py-batch-b")
        answer = sdk().trigger_batch(
            [
                {"channel": "py-batch-a", "name": "one", "data": {"i": 1}},
                {"channel": "py-batch-b", "name": "two", "data": "plain"},
                {"channel": "py-batch-a", "name": "three", "data": {"i": 3}},
            ]
        )
        self.assertIn(answer, ({}, {"batch": [{}, {}, {}]}))
        a.expect("three", "py-batch-a")
        got = [(f["event"], f["data"]) for f in a.frames if f.get("channel") == "py-batch-a" and not f["event"].startswith("pusher")]
        self.assertEqual(got, [("one", {"i": 1}), ("three", {"i": 3})], "in order, nothing else")
        self.assertEqual(b.expect("two", "py-batch-b")["raw_data"], "plain")

    def test_send_to_user(self):
        ws = Ws()
        signin = sdk().authenticate_user(ws.socket_id, {"id": "py-alice", "user_info": {"name": "Alice"}})
        ws.send("pusher:signin", signin)
        ws.expect("pusher:signin_success")
        ws.subscribe("#server-to-user-py-alice")
        self.assertEqual(sdk().send_to_user("py-alice", "note", {"hello": "alice"}), {})
        self.assertEqual(ws.expect("note", "#server-to-user-py-alice")["data"], {"hello": "alice"})

    def test_terminate_user_connections(self):
        ws, bystander = Ws(), Ws()
        signin = sdk().authenticate_user(ws.socket_id, {"id": "py-terminated"})
        ws.send("pusher:signin", signin)
        ws.expect("pusher:signin_success")
        # The SDK posts to /users/{id}/terminate_connections, without the /apps/{id} prefix.
        sdk().terminate_user_connections("py-terminated")
        self.assertEqual(ws.expect("pusher:error")["data"]["code"], 4009)
        bystander.round_trip()


class Queries(unittest.TestCase):
    def test_channel_info_and_channels_info(self):
        client = sdk()
        a, b = Ws(), Ws()
        a.subscribe("py-info")
        b.subscribe("py-info")
        presence = {"user_id": "py-bob", "user_info": {"name": "Bob"}}
        c = Ws()
        frame = c.subscribe("presence-py-room", client.authenticate("presence-py-room", c.socket_id, presence))
        self.assertEqual(frame["data"]["presence"]["ids"], ["py-bob"])
        self.assertEqual(frame["data"]["presence"]["hash"], {"py-bob": {"name": "Bob"}})

        self.assertEqual(client.channel_info("py-info"), {"occupied": True})
        self.assertEqual(
            client.channel_info("py-info", ["subscription_count"]), {"occupied": True, "subscription_count": 2}
        )
        self.assertEqual(client.channel_info("py-nobody-here"), {"occupied": False})
        self.assertEqual(
            client.channel_info("presence-py-room", ["user_count"]), {"occupied": True, "user_count": 1}
        )
        everything = client.channels_info()
        self.assertIn("py-info", everything["channels"])
        self.assertIn("presence-py-room", everything["channels"])
        self.assertEqual(
            client.channels_info(prefix_filter="presence-py-", attributes=["user_count"]),
            {"channels": {"presence-py-room": {"user_count": 1}}},
        )
        self.assertEqual(client.users_info("presence-py-room"), {"users": [{"id": "py-bob"}]})

        # Once everyone has left, the channel is no longer listed.
        a.close()
        b.close()
        deadline = time.monotonic() + WAIT
        while client.channel_info("py-info")["occupied"]:
            self.assertLess(time.monotonic(), deadline, "py-info still occupied after its subscribers left")
            time.sleep(0.05)
        self.assertNotIn("py-info", client.channels_info()["channels"])

    def test_apps_are_isolated(self):
        other = sdk(OTHER_APP["id"], OTHER_APP["key"], OTHER_APP["secret"])
        ws = Ws()
        ws.subscribe("py-isolated")
        self.assertTrue(sdk().channel_info("py-isolated")["occupied"])
        self.assertFalse(other.channel_info("py-isolated")["occupied"])
        self.assertNotIn("py-isolated", other.channels_info()["channels"])


class Refusals(unittest.TestCase):
    def assertRaisesStatus(self, error_class, call, status_text=None):
        with self.assertRaises(error_class) as caught:
            call()
        if status_text is not None:
            self.assertIn(status_text, str(caught.exception))
        return caught.exception

    def test_bad_secret_is_401(self):
        bad = sdk(secret="not-the-secret")
        ws = Ws()
        ws.subscribe("py-guarded")
        self.assertRaisesStatus(pusher.errors.PusherBadAuth, lambda: bad.trigger("py-guarded", "nope", {}))
        self.assertRaisesStatus(pusher.errors.PusherBadAuth, lambda: bad.channels_info())
        self.assertRaisesStatus(pusher.errors.PusherBadAuth, lambda: bad.channel_info("py-guarded"))
        ws.round_trip()
        self.assertEqual(ws.events("nope"), [], "a refused trigger must not be delivered")

    def test_unknown_key_is_401(self):
        unknown = sdk(key="no-such-key")
        self.assertRaisesStatus(pusher.errors.PusherBadAuth, lambda: unknown.trigger("py-x", "e", {}))

    def test_another_apps_key_is_refused_on_this_app(self):
        # Signed correctly by the other app, but sent to /apps/12345/...: cross-app isolation.
        crossed = sdk(APP_ID, OTHER_APP["key"], OTHER_APP["secret"])
        with self.assertRaises(pusher.errors.PusherError) as caught:
            crossed.trigger("py-x", "e", {})
        self.assertNotIsInstance(caught.exception, pusher.errors.PusherBadRequest)

    def test_too_large_data_is_413(self):
        # The SDK lets up to ~30 KB through; the server's default limit is 10 KB.
        self.assertRaisesStatus(
            pusher.errors.PusherBadStatus, lambda: sdk().trigger("py-big", "big", "x" * 20_000), "413"
        )

    def test_too_many_batch_events_is_400(self):
        batch = [{"channel": "py-b", "name": f"e{i}", "data": "{}"} for i in range(11)]
        self.assertRaisesStatus(pusher.errors.PusherBadRequest, lambda: sdk().trigger_batch(batch))

    def test_users_of_a_non_presence_channel_is_400(self):
        self.assertRaisesStatus(pusher.errors.PusherBadRequest, lambda: sdk().users_info("py-public"))


class Webhooks(unittest.TestCase):
    def test_webhook_validates_with_the_python_sdk(self):
        ws = Ws()
        ws.subscribe("py-hooked")
        headers, body = RECEIVER.wait_for(
            lambda r: b'"py-hooked"' in r[1], "the channel_occupied webhook of py-hooked"
        )
        headers = {k.lower(): v for k, v in headers.items()}
        self.assertEqual(headers["x-pusher-key"], APP_KEY)
        data = sdk().validate_webhook(headers["x-pusher-key"], headers["x-pusher-signature"], body.decode())
        self.assertIsNotNone(data, "the SDK must accept the webhook's signature")
        self.assertIn({"name": "channel_occupied", "channel": "py-hooked"}, data["events"])
        self.assertLess(abs(data["time_ms"] / 1000 - time.time()), 60)
        expected = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        self.assertEqual(headers["x-pusher-signature"], expected)
        wrong = sdk(secret="not-the-secret")
        self.assertIsNone(
            wrong.validate_webhook(headers["x-pusher-key"], headers["x-pusher-signature"], body.decode()),
            "another secret must not validate",
        )


def main():
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    if failed and SERVER is not None:
        print("---- ferrocast output ----\n" + SERVER.log()[-4000:])
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

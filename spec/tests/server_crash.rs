//! A server that goes away mid-run is reported as a crash at the vector it died in, and the
//! vectors after it as not run, not as failures.
//!
//! The server under test is a small Pusher-ish WebSocket server written here: it sends
//! `pusher:connection_established`, answers `pusher:ping`, subscribes to named channels and
//! answers anything else with `pusher:error` — except a `pusher:subscribe` whose `data` has no
//! `channel`, on which it goes away, as one real server does. Against `--url` it runs in this
//! process and stops listening; against `--server-bin` this test binary is started as the
//! server (it sees `--config` among its arguments) and exits the whole process.
//!
//! `harness = false` so the binary can be that server; the checks run from `main`.

use ferrocast_spec::{vector, vectors_dir};
use serde_json::{json, Value};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The vector during which the fake server goes away.
const CRASH_VECTOR: &str = "bad-input/subscribe-without-channel";
/// Only this group runs: it reaches the crash quickly and has vectors after it.
const FILTER: &str = "bad-input/";
/// Longest a whole conformance run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What the fake server does when it receives the message that brings it down.
#[derive(Clone, Copy)]
enum Death {
    /// Exit the whole process (the `--server-bin` case).
    ExitProcess,
    /// Close the listening socket, so the port refuses connections (the `--url` case).
    StopListening,
}

/// The listening socket, taken out (closed) when the server dies.
type Listener = Arc<Mutex<Option<TcpListener>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--config") {
        serve_as_server_bin();
        return;
    }
    let checks: [(&str, fn()); 2] = [
        ("a_url_server_that_stops_listening_is_a_crash", url_crash),
        ("a_server_bin_that_exits_is_a_crash", server_bin_crash),
    ];
    for (name, check) in checks {
        print!("test {name} ... ");
        check();
        println!("ok");
    }
}

/// Started by the runner as `--host 127.0.0.1 --port 0 --config FILE …`: listen, say where as
/// ferrocast does, and serve until the fatal message.
fn serve_as_server_bin() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    println!("ferrocast listening on {addr}");
    accept_loop(Arc::new(Mutex::new(Some(listener))), Death::ExitProcess);
}

/// Accepts until the listener has been taken out, one thread per connection.
fn accept_loop(listener: Listener, death: Death) {
    if let Some(l) = listener.lock().expect("lock").as_ref() {
        l.set_nonblocking(true).expect("nonblocking listener");
    }
    loop {
        let accepted = {
            let guard = listener.lock().expect("lock");
            let Some(l) = guard.as_ref() else { return };
            l.accept()
        };
        match accepted {
            Ok((stream, _)) => {
                let listener = listener.clone();
                std::thread::spawn(move || serve_connection(stream, &listener, death));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return,
        }
    }
}

fn serve_connection(stream: TcpStream, listener: &Listener, death: Death) {
    stream.set_nonblocking(false).expect("blocking stream");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    // The runner's reachability probe connects and closes without a handshake.
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    let established = json!({
        "event": "pusher:connection_established",
        "data": json!({"socket_id": "1234.5678", "activity_timeout": 120}).to_string(),
    });
    if ws.send(Message::text(established.to_string())).is_err() {
        return;
    }
    loop {
        let text = match ws.read() {
            Ok(Message::Text(text)) => text.as_str().to_owned(),
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        let reply = match answer(&text) {
            Some(reply) => reply,
            None => {
                match death {
                    Death::ExitProcess => std::process::exit(70),
                    // Close the port before this connection, so the runner sees it refused.
                    Death::StopListening => drop(listener.lock().expect("lock").take()),
                }
                return;
            }
        };
        if ws.send(Message::text(reply.to_string())).is_err() {
            return;
        }
    }
}

/// The reply to one text frame; `None` for the message that brings the server down.
fn answer(text: &str) -> Option<Value> {
    let error = |message: &str| json!({"event": "pusher:error", "data": {"code": null, "message": message}});
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return Some(error("not a JSON object"));
    };
    match message.get("event").and_then(Value::as_str) {
        Some("pusher:ping") => Some(json!({"event": "pusher:pong", "data": {}})),
        Some("pusher:subscribe") => match message.get("data") {
            Some(Value::Object(data)) => match data.get("channel") {
                None => None,
                Some(Value::String(channel)) => Some(json!({
                    "event": "pusher_internal:subscription_succeeded",
                    "channel": channel,
                    "data": "{}",
                })),
                Some(_) => Some(error("channel is not a string")),
            },
            _ => Some(error("pusher:subscribe needs data")),
        },
        _ => Some(error("unsupported event")),
    }
}

/// Runs the conformance binary with `args` (bounded) and returns its exit code and stdout.
fn run_conformance(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocast-conformance"))
        .args(args)
        .args([
            "--filter",
            FILTER,
            "--timeout-ms",
            "1000",
            "--quiet-ms",
            "50",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ferrocast-conformance");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the runner") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the conformance run took longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().expect("stdout reader"))
}

/// The crash is named once with its vector, every later vector is `not-run` and none is a
/// failure, the counts say so, and the exit code is the crash's.
fn assert_reported_as_crash(code: Option<i32>, out: &str) {
    let ids: Vec<String> = vector::load_dir(&vectors_dir())
        .expect("vectors load")
        .into_iter()
        .map(|v| v.id)
        .filter(|id| id.contains(FILTER))
        .collect();
    let at = ids
        .iter()
        .position(|id| id == CRASH_VECTOR)
        .expect("the crash vector exists");
    let after = &ids[at + 1..];
    assert!(!after.is_empty(), "the crash vector must not be the last");
    assert!(
        out.contains(&format!("server crashed at vector {CRASH_VECTOR}\n")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("CRASH {CRASH_VECTOR}: "))),
        "{out}"
    );
    for id in after {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("not-run {id}: "))),
            "{id} is not marked not-run:\n{out}"
        );
    }
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(failures.is_empty(), "{failures:?}\n{out}");
    let closing = out.lines().last().unwrap_or_default();
    assert!(
        closing.contains(" 1 failed,") && closing.ends_with(&format!(", {} not run", after.len())),
        "closing line {closing:?}\n{out}"
    );
    let score = out
        .lines()
        .find(|l| l.starts_with("score: "))
        .expect("a score line");
    assert!(score.contains(" not run)"), "{score}");
    assert_eq!(code, Some(3), "{out}");
}

fn url_crash() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!("ws://{}", listener.local_addr().expect("local addr"));
    let listener: Listener = Arc::new(Mutex::new(Some(listener)));
    std::thread::spawn(move || accept_loop(listener, Death::StopListening));
    let (code, out) = run_conformance(&["--url", &url]);
    assert_reported_as_crash(code, &out);
}

fn server_bin_crash() {
    let me = std::env::current_exe().expect("this test binary");
    let me = me.to_str().expect("a UTF-8 path");
    let (code, out) = run_conformance(&["--server-bin", me]);
    assert_reported_as_crash(code, &out);
}

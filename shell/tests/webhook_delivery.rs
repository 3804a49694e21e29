//! Webhook delivery against a real HTTP receiver on loopback: retries after a refusal,
//! drops counted when the queue is full, giving up after the retry window, and what the
//! binary sends and says about webhooks when it shuts down.
#![cfg(not(loom))]
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use ferrocast::WebhookSink;
use ferrocast::{webhook_pool, RetryPolicy, WebhookSender};
use ferrocast_engine::WebhookDelivery;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request as the receiver saw it.
struct Seen {
    headers: Vec<String>,
    body: Vec<u8>,
}

/// Serves `statuses` in turn (then 200 forever), reporting each request; `stall` delays answers.
fn receiver(statuses: Vec<u16>, stall: Duration) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let (seen_tx, seen_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                headers.push(line.trim_end().to_owned());
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = seen_tx.send(Seen { headers, body });
            std::thread::sleep(stall);
            let status = statuses.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, seen_rx)
}

fn delivery(url: &str, body: &str) -> WebhookDelivery {
    WebhookDelivery {
        url: url.into(),
        body: body.as_bytes().into(),
        headers: vec![
            ("X-Pusher-Key".into(), "app-key".into()),
            ("X-Pusher-Signature".into(), "abc".into()),
        ],
    }
}

fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        give_up_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(2),
    }
}

/// The pool's workers on plain threads, as a sender and the threads to stop.
fn start(
    workers: usize,
    capacity: usize,
    policy: RetryPolicy,
) -> (WebhookSender, Vec<JoinHandle<()>>) {
    let (sender, workers) = webhook_pool(workers, capacity, policy);
    (sender, workers.spawn().unwrap())
}

/// Closes the queue and waits (a bounded time) for the workers to finish it.
fn stop(sender: WebhookSender, threads: Vec<JoinHandle<()>>) {
    sender.close();
    wait_until("the workers to stop", || {
        threads.iter().all(|t| t.is_finished())
    });
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_refused_delivery_is_retried_with_the_same_body_and_headers() {
    let (url, seen) = receiver(vec![500], Duration::ZERO);
    let (mut sender, workers) = start(1, 16, quick_policy());

    sender.deliver(delivery(&url, r#"{"time_ms":1,"events":[]}"#));

    wait_until("delivery", || {
        sender.stats().delivered.load(Ordering::Relaxed) == 1
    });
    let first = seen.recv_timeout(Duration::from_secs(1)).unwrap();
    let second = seen.recv_timeout(Duration::from_secs(1)).unwrap();
    assert_eq!(first.body, br#"{"time_ms":1,"events":[]}"#);
    assert_eq!(first.body, second.body);
    assert!(
        second
            .headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("x-pusher-key: app-key")),
        "{:?}",
        second.headers
    );
    assert_eq!(sender.stats().retried.load(Ordering::Relaxed), 1);
    stop(sender, workers);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let (url, seen) = receiver(vec![], Duration::from_millis(500));
    let (mut sender, workers) = start(1, 1, quick_policy());
    sender.deliver(delivery(&url, "in flight"));
    seen.recv_timeout(Duration::from_secs(5))
        .expect("the worker is busy with the first");

    let started = Instant::now();
    sender.deliver(delivery(&url, "queued"));
    sender.deliver(delivery(&url, "dropped"));
    let submit_time = started.elapsed();

    assert_eq!(sender.stats().dropped_queue_full.load(Ordering::Relaxed), 1);
    assert!(
        submit_time < Duration::from_millis(400),
        "submit blocked for {submit_time:?}"
    );
    wait_until("both kept deliveries", || {
        sender.stats().delivered.load(Ordering::Relaxed) == 2
    });
    stop(sender, workers);
}

#[test]
fn deliveries_are_given_up_after_the_retry_window() {
    let (url, _seen) = receiver(vec![500; 50], Duration::ZERO);
    let policy = RetryPolicy {
        give_up_after: Duration::from_millis(300),
        ..quick_policy()
    };
    let (mut sender, workers) = start(1, 4, policy);

    sender.deliver(delivery(&url, "never accepted"));

    wait_until("giving up", || {
        sender.stats().given_up.load(Ordering::Relaxed) == 1
    });
    assert!(sender.stats().retried.load(Ordering::Relaxed) >= 2);
    assert_eq!(sender.stats().delivered.load(Ordering::Relaxed), 0);
    stop(sender, workers);
}

/// A server whose app posts every webhook kind to `url`, holding leaves back for a minute.
fn server_posting_to(url: &str, extra: &str) -> support::Server {
    let config = format!(
        "webhook_leave_delay_secs = 60\n[server]\nclose_linger_ms = 500\n{extra}\n\
         [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n\
         [[apps.webhooks]]\nurl = \"{url}\"\nevent_types = []\n"
    );
    support::Server::start_with(1, Some(&config), &[], &[])
}

fn sigterm(server: &support::Server) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

fn event_names(seen: &Seen) -> String {
    String::from_utf8_lossy(&seen.body).into_owned()
}

/// At shutdown the leave delay is not waited out: the channel_vacated of the connection the
/// shutdown closed reaches the backend before the process exits.
#[test]
fn shutdown_delivers_the_leaves_it_causes_before_exiting() {
    let (url, seen) = receiver(Vec::new(), Duration::ZERO);
    let mut server = server_posting_to(&url, "");
    let mut ws = server.ws("/app/app-key?protocol=7");
    support::next_json(&mut ws);
    support::subscribe_public(&mut ws, "news");
    let occupied = seen.recv_timeout(support::WAIT).unwrap();
    assert!(event_names(&occupied).contains("channel_occupied"));

    sigterm(&server);

    assert!(server.wait_exit().success(), "{}", server.stderr());
    let vacated = seen.recv_timeout(Duration::from_secs(1)).unwrap();
    assert!(
        event_names(&vacated).contains("channel_vacated"),
        "{}",
        event_names(&vacated)
    );
    assert!(!server.stderr().contains("unsent"), "{}", server.stderr());
}

/// A backend too slow to take the last webhooks within the grace period: the server still
/// exits, and says how many deliveries it left unsent.
#[test]
fn shutdown_says_how_many_webhooks_it_could_not_send() {
    let (url, seen) = receiver(Vec::new(), Duration::from_secs(30));
    let mut server = server_posting_to(&url, "webhook_workers = 1");
    let mut ws = server.ws("/app/app-key?protocol=7");
    support::next_json(&mut ws);
    support::subscribe_public(&mut ws, "news");
    // The occupied POST now hangs in the receiver; the vacated one waits behind it.
    seen.recv_timeout(support::WAIT).unwrap();

    sigterm(&server);

    assert!(server.wait_exit().success(), "{}", server.stderr());
    let stderr = server.stderr();
    assert!(
        stderr.contains("unsent=2") && stderr.contains("grace period"),
        "{stderr}"
    );
}

/// What soketi users keep in their webhook settings works from the TOML file: extra headers
/// on each POST, a filter by channel name, and `webhook_batch_ms = 0` for a POST per event.
#[test]
fn file_webhooks_carry_headers_filter_channels_and_post_each_event_alone() {
    let (url, seen) = receiver(Vec::new(), Duration::ZERO);
    let config = format!(
        "webhook_batch_ms = 0\n\
         [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n\
         [[apps.webhooks]]\nurl = \"{url}\"\nevent_types = [\"channel_occupied\"]\n\
         headers = {{ Authorization = \"Bearer hook-token\" }}\n\
         filter = {{ channel_name_ends_with = \"-room\" }}\n"
    );
    let server = support::Server::start_with(1, Some(&config), &[], &[]);
    let mut ws = server.ws("/app/app-key?protocol=7");
    support::next_json(&mut ws);
    for channel in ["a-room", "news", "b-room"] {
        support::subscribe_public(&mut ws, channel);
    }

    // Two delivery threads: the two POSTs may arrive in either order.
    let mut posts: Vec<Seen> = (0..2)
        .map(|_| seen.recv_timeout(support::WAIT).unwrap())
        .collect();
    posts.sort_by_key(|post| event_names(post).contains("b-room"));
    for (channel, post) in ["a-room", "b-room"].into_iter().zip(posts) {
        let body = event_names(&post);
        assert_eq!(
            body.matches("\"name\":").count(),
            1,
            "one event per POST: {body}"
        );
        assert!(
            body.contains(&format!("\"channel\":\"{channel}\"")),
            "{body}"
        );
        assert!(
            post.headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case("authorization: Bearer hook-token")),
            "{:?}",
            post.headers
        );
    }
    assert!(
        seen.recv_timeout(Duration::from_millis(300)).is_err(),
        "news is filtered out"
    );
}

//! A real Prometheus (Debian's `prometheus` package) scrapes the real binary's metrics
//! listener every second; after known traffic, queries through Prometheus' HTTP API must
//! return the exact counts. The test fails (never skips) when `prometheus` is missing:
//! test.sh installs it.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]
// The test reads Prometheus' JSON answers (shell/clippy.toml bans JSON in the shell itself).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[macro_use]
mod support;

use std::fs;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{next_json, publish, read_response, subscribe_public, Server};

/// How long Prometheus may take to start, and then to have scraped what a query expects.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(60);

/// A running `prometheus`, killed and its data removed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `target` every second.
    fn start(target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("ferrocast-prometheus-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: ferrocast\n    static_configs:\n\
                 \x20     - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = fs::File::create(dir.join("prometheus.log")).unwrap();
        let spawned = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "prometheus is not on PATH: this test needs a real Prometheus \
                 (test.sh installs Debian's prometheus package; or run \
                 `apt-get install -y prometheus`)"
            ),
            Err(e) => panic!("cannot run prometheus: {e}"),
        };
        let mut prometheus = Prometheus { child, addr, dir };
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        while prometheus.get("/-/ready").0 != 200 {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", prometheus.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// One GET; status 0 when nothing answers yet.
    fn get(&self, path: &str) -> (u16, String) {
        let Ok(stream) = TcpStream::connect(self.addr) else {
            return (0, String::new());
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n");
        if (&stream).write_all(request.as_bytes()).is_err() {
            return (0, String::new());
        }
        let response = read_response(&mut BufReader::new(stream));
        (response.status(), String::from_utf8(response.body).unwrap())
    }

    /// The value of an instant query that must return one sample (`None` for none yet).
    fn query(&self, promql: &str) -> Option<f64> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", percent_encode(promql)));
        assert_eq!(status, 200, "{promql}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["status"], "success", "{promql}: {body}");
        let result = answer["data"]["result"].as_array().unwrap();
        assert!(result.len() <= 1, "{promql} gave several series: {body}");
        let value = result.first()?["value"][1].as_str().unwrap();
        Some(value.parse().unwrap())
    }

    /// Waits until `promql` evaluates to `expected` (the scrape after the traffic).
    fn wait_for(&self, promql: &str, expected: f64) {
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        loop {
            let got = self.query(promql);
            if got == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} is {got:?}, not {expected}; targets: {}\nlog:\n{}",
                self.get("/api/v1/targets").1,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A query string value, percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_exact_counts_after_known_traffic() {
    let server = Server::start_with(2, None, &["--metrics", "true", "--metrics-port", "0"], &[]);
    let prometheus = Prometheus::start(server.metrics_addr());
    prometheus.wait_for(r#"up{job="ferrocast"}"#, 1.0);

    let mut alice = server.ws("/app/app-key?protocol=7");
    let mut bob = server.ws("/app/app-key?protocol=7");
    next_json(&mut alice);
    next_json(&mut bob);
    subscribe_public(&mut alice, "news");
    subscribe_public(&mut bob, "news");
    for n in 0..3 {
        publish(&server, "news", "update", &n.to_string());
        assert_eq!(next_json(&mut alice)["event"], "update");
        assert_eq!(next_json(&mut bob)["event"], "update");
    }
    bob.close(None).unwrap();
    while bob.read().is_ok() {}

    let app = r#"{job="ferrocast",app_id="app-id"}"#;
    // Bob's leaving is the last thing the engine learns: once a scrape shows it, every
    // count before it is in the same scrape.
    prometheus.wait_for(&format!("ferrocast_connected{app}"), 1.0);
    let exact = [
        (format!("ferrocast_new_connections_total{app}"), 2.0),
        (format!("ferrocast_disconnections_total{app}"), 1.0),
        (format!("ferrocast_ws_messages_received_total{app}"), 2.0),
        // Each: welcome, subscribed, three updates.
        (format!("ferrocast_ws_messages_sent_total{app}"), 10.0),
        (format!("ferrocast_http_calls_received_total{app}"), 3.0),
        (
            r#"ferrocast_subscriptions{app_id="app-id",kind="public"}"#.into(),
            1.0,
        ),
        (
            r#"ferrocast_channels{app_id="app-id",kind="public"}"#.into(),
            1.0,
        ),
        // Alice, Bob and the three publishes.
        ("ferrocast_accepted_sockets_total".into(), 5.0),
        ("ferrocast_http_requests_total".into(), 3.0),
    ];
    for (promql, expected) in exact {
        assert_eq!(prometheus.query(&promql), Some(expected), "{promql}");
    }
    // The histogram is a real one: its buckets add up to its count.
    let batches = prometheus
        .query("ferrocast_engine_batch_duration_seconds_count")
        .unwrap();
    assert!(batches > 0.0, "{batches}");
    assert_eq!(
        prometheus.query(r#"ferrocast_engine_batch_duration_seconds_bucket{le="+Inf"}"#),
        Some(batches)
    );
    // What dashboards do with it works too.
    let p99 = prometheus
        .query("histogram_quantile(0.99, ferrocast_engine_batch_duration_seconds_bucket)")
        .unwrap();
    assert!(p99 > 0.0 && p99 <= 0.25, "{p99}");
}

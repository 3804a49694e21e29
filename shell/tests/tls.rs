//! TLS on the listening port: `wss://` and `https://` with a certificate made here by rcgen,
//! plain requests refused, the handshake deadline, close_notify, and SIGHUP reloading the
//! certificate of the real binary while its connections stay up.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{next_json, publish_request, Server, WAIT};
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A CA the clients trust, and server certificates for 127.0.0.1 it signs.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// One server certificate as PEM texts, and its DER to recognise it by.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ferrocast test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = std::env::temp_dir().join(format!("ferrocast-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Pki { ca, dir }
    }

    fn leaf(&self, common_name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Puts `leaf` where the server reads its certificate and key from.
    fn install(&self, leaf: &Leaf) {
        write_replacing(&self.cert_path(), &leaf.cert_pem);
        write_replacing(&self.key_path(), &leaf.key_pem);
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Starts the binary serving TLS with the installed files.
    fn server(&self, workers: usize, config: Option<&str>, args: &[&str]) -> Server {
        let cert = self.cert_path();
        let key = self.key_path();
        let mut all = vec![
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        Server::start_with(workers, config, &all, &[("RUST_LOG", "ferrocast=info")])
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a file the way deployments replace certificates: a new file renamed over the old.
fn write_replacing(path: &Path, text: &str) {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, text).unwrap();
    std::fs::rename(&fresh, path).unwrap();
}

/// A TLS connection to the server, its handshake completed.
fn tls_connect(server: &Server, config: &Arc<ClientConfig>) -> TlsStream {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut stream = StreamOwned::new(conn, server.tcp());
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    stream
}

/// The certificate the server presented.
fn presented(stream: &TlsStream) -> CertificateDer<'static> {
    stream.conn.peer_certificates().expect("a certificate")[0].clone()
}

/// A `wss://` WebSocket to the default app.
fn wss(stream: TlsStream, server: &Server) -> WebSocket<TlsStream> {
    let url = format!("wss://{}/app/app-key?protocol=7", server.addr);
    let (mut ws, _) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
    assert_eq!(next_json(&mut ws)["event"], "pusher:connection_established");
    ws
}

fn subscribe(ws: &mut WebSocket<TlsStream>, channel: &str) {
    let subscribe = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
    ws.send(Message::text(subscribe)).unwrap();
    assert_eq!(
        next_json(ws)["event"],
        "pusher_internal:subscription_succeeded"
    );
}

/// Publishes over `https://` on a connection of its own, closed by the server after the
/// answer; returns the whole response. Reading to the end succeeds only if the server ended
/// the TLS stream with close_notify (rustls reports a bare TCP close as an error).
fn https_publish(server: &Server, config: &Arc<ClientConfig>, channel: &str, data: &str) -> String {
    let mut stream = tls_connect(server, config);
    let request = publish_request(channel, "greeting", data, "close");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("the response, then close_notify");
    String::from_utf8(response).unwrap()
}

fn event_data(ws: &mut WebSocket<TlsStream>) -> String {
    let event = next_json(ws);
    assert_eq!(event["event"], "greeting", "{event}");
    event["data"].as_str().unwrap().to_owned()
}

/// Reads until the server closes (or resets) the socket; what it sent, and when it ended.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < WAIT,
            "the server never closed the socket"
        );
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading: {e}"),
        }
    }
    (received, Instant::now())
}

/// Waits (bounded) until the server logged `text`.
fn wait_for_log(server: &Server, text: &str) {
    let started = Instant::now();
    while !server.stderr().contains(text) {
        assert!(
            started.elapsed() < WAIT,
            "no {text:?} in the log:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sighup(server: &Server) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

fn wss_subscribes_and_receives_an_event_published_over_https(workers: usize) {
    let pki = Pki::new(&format!("events-{workers}"));
    let leaf = pki.leaf("first");
    pki.install(&leaf);
    let server = pki.server(workers, None, &[]);
    let config = pki.client_config();

    let stream = tls_connect(&server, &config);
    assert_eq!(presented(&stream), leaf.der);
    let mut ws = wss(stream, &server);
    subscribe(&mut ws, "news");
    let response = https_publish(&server, &config, "news", "over tls");

    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(event_data(&mut ws), "over tls");
}

per_workers!(wss_subscribes_and_receives_an_event_published_over_https);

#[test]
fn a_large_burst_goes_out_whole_over_tls() {
    let pki = Pki::new("burst");
    pki.install(&pki.leaf("burst"));
    let server = pki.server(1, None, &[]);
    let config = pki.client_config();
    let mut ws = wss(tls_connect(&server, &config), &server);
    subscribe(&mut ws, "burst");

    // More than one rustls buffer (64 KiB) in one loop turn: sealing must resume after the
    // socket took the first records, without losing or reordering a byte.
    let data: String = "x".repeat(9000);
    for i in 0..12 {
        let response = https_publish(&server, &config, "burst", &format!("{i}{data}"));
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    for i in 0..12 {
        assert_eq!(event_data(&mut ws), format!("{i}{data}"));
    }
}

#[test]
fn plain_http_to_the_tls_port_is_refused_with_an_alert_and_nothing_logged_loudly() {
    let pki = Pki::new("plain");
    pki.install(&pki.leaf("plain"));
    let server = pki.server(1, None, &[]);
    let mut alerts_seen = 0;

    for _ in 0..20 {
        let mut plain = server.tcp();
        let sent = Instant::now();
        plain
            .write_all(b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (received, closed) = read_until_closed(&mut plain);

        // Closed at once, not at the request deadline (10 s here).
        assert!(
            closed - sent < Duration::from_secs(3),
            "{:?}",
            closed - sent
        );
        assert!(!received.starts_with(b"HTTP"), "{received:?}");
        if let Some(&content_type) = received.first() {
            assert_eq!(content_type, 0x15, "a TLS alert record: {received:?}");
        }
        alerts_seen += usize::from(!received.is_empty());
    }

    println!("{alerts_seen} of 20 refusals arrived with their alert (the rest were reset)");
    // The server is unharmed, and said nothing above debug about the refusals.
    let config = pki.client_config();
    let response = https_publish(&server, &config, "any", "still serving");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let log = server.stderr();
    let loud: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .filter(|line| !line.contains("default example credentials"))
        .collect();
    assert!(loud.is_empty(), "{log}");
    let alerts = log.matches("InvalidContentType").count();
    assert_eq!(alerts, 20, "one debug line per refusal:\n{log}");
}

#[test]
fn a_handshake_not_finished_by_the_deadline_is_dropped() {
    let pki = Pki::new("deadline");
    pki.install(&pki.leaf("deadline"));
    let server = pki.server(1, None, &["--request-timeout-secs", "1"]);
    // A real ClientHello, of which one client sends half.
    let mut hello = Vec::new();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut client = ClientConnection::new(pki.client_config(), name).unwrap();
    client.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100, "{}", hello.len());

    let connected = Instant::now();
    let mut silent = server.tcp();
    let mut half = server.tcp();
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    let (from_silent, silent_closed) = read_until_closed(&mut silent);
    let (from_half, half_closed) = read_until_closed(&mut half);

    for closed in [silent_closed, half_closed] {
        let waited = closed - connected;
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }
    assert!(from_silent.is_empty(), "{from_silent:?}");
    assert!(from_half.is_empty(), "{from_half:?}");
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_and_keeps_the_old_ones() {
    let pki = Pki::new("reload");
    let first = pki.leaf("first");
    pki.install(&first);
    let server = pki.server(2, None, &[]);
    let config = pki.client_config();
    let old = tls_connect(&server, &config);
    assert_eq!(presented(&old), first.der);
    let mut old = wss(old, &server);
    subscribe(&mut old, "news");

    let second = pki.leaf("second");
    pki.install(&second);
    sighup(&server);
    wait_for_log(&server, "TLS certificate reloaded");

    let new = tls_connect(&server, &config);
    assert_eq!(presented(&new), second.der);
    let mut new = wss(new, &server);
    subscribe(&mut new, "news");
    https_publish(&server, &config, "news", "after reload");
    assert_eq!(event_data(&mut old), "after reload");
    assert_eq!(event_data(&mut new), "after reload");

    // A broken file is refused; the certificate in use stays.
    write_replacing(&pki.key_path(), "not a key\n");
    sighup(&server);
    wait_for_log(&server, "keeping the certificate already loaded");
    assert_eq!(presented(&tls_connect(&server, &config)), second.der);
    https_publish(&server, &config, "news", "still up");
    assert_eq!(event_data(&mut old), "still up");
}

#[test]
fn sighup_without_tls_changes_nothing_and_stops_nothing() {
    let server = Server::start_with(1, None, &[], &[("RUST_LOG", "ferrocast=info")]);
    let mut ws = server.ws("/app/app-key?protocol=7");
    assert_eq!(next_json(&mut ws)["event"], "pusher:connection_established");

    sighup(&server);
    wait_for_log(
        &server,
        "no configuration file and no TLS certificate; nothing to reload",
    );

    ws.send(Message::text(r#"{"event":"pusher:ping","data":{}}"#))
        .unwrap();
    assert_eq!(next_json(&mut ws)["event"], "pusher:pong");
}

#[test]
fn an_app_requiring_tls_serves_wss_and_refuses_plain_ws_with_4000() {
    let pki = Pki::new("require");
    pki.install(&pki.leaf("require"));
    let config = "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n\
                  require_tls = true\n";
    let tls_server = pki.server(1, Some(config), &[]);
    let mut ws = wss(tls_connect(&tls_server, &pki.client_config()), &tls_server);
    ws.send(Message::text(r#"{"event":"pusher:ping","data":{}}"#))
        .unwrap();
    assert_eq!(next_json(&mut ws)["event"], "pusher:pong");

    let plain_server = Server::start_with(1, Some(config), &[], &[]);
    let mut plain = plain_server.ws("/app/app-key?protocol=7");
    let error = next_json(&mut plain);
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4000);
    assert_eq!(support::close_code(&mut plain), 4000);
}

#[test]
fn a_missing_or_mismatched_certificate_stops_the_start_with_a_clear_error() {
    let pki = Pki::new("startup");
    let (status, stderr) = support::run_to_exit(
        &[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("cannot read certificate file /nonexistent/cert.pem"),
        "{stderr}"
    );

    let one = pki.leaf("one");
    let other = pki.leaf("other");
    std::fs::write(pki.cert_path(), &one.cert_pem).unwrap();
    std::fs::write(pki.key_path(), &other.key_pem).unwrap();
    let cert = pki.cert_path();
    let key = pki.key_path();
    let (status, stderr) = support::run_to_exit(
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("does not fit the certificate"), "{stderr}");

    let (status, stderr) = support::run_to_exit(&["--tls-cert", cert.to_str().unwrap()], &[]);
    assert!(!status.success());
    assert!(stderr.contains("TLS needs both"), "{stderr}");
}

//! `rediss://`: the cluster bus over TLS to a real `redis-server`, its certificate verified
//! against the trusted roots. Its own test binary, because trusting the test's CA means setting
//! `SSL_CERT_FILE` for the whole process.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use ferrocast::{BusConfig, BusEvent, RedisLink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;
use support::redis_server::RedisServer;

const WAIT: Duration = Duration::from_secs(5);

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the `openssl` tool.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make() -> Certificates {
        let dir = std::env::temp_dir().join(format!("ferrocast-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
        )
        .unwrap();
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &dir,
            &[
                &["req", "-x509"],
                &key[..],
                &["-keyout", "ca.key", "-out", "ca.pem"],
                &["-days", "2", "-subj", "/CN=ferrocast test CA"],
            ]
            .concat(),
        );
        openssl(
            &dir,
            &[
                &["req"],
                &key[..],
                &["-keyout", "server.key", "-out", "server.csr"],
                &["-subj", "/CN=127.0.0.1"],
            ]
            .concat(),
        );
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        Certificates { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (test.sh installs it): {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_rediss_url_links_over_verified_tls() {
    let certificates = Certificates::make();
    let redis = RedisServer::start_tls(&[
        "--tls-cert-file",
        &certificates.path("server.pem"),
        "--tls-key-file",
        &certificates.path("server.key"),
        "--tls-ca-cert-file",
        &certificates.path("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let start = || {
        let (sink, events) = mpsc::channel();
        let link = RedisLink::start(BusConfig::new(&url, "tls").unwrap(), sink).unwrap();
        (link, events)
    };

    // Before the test's CA is trusted the certificate is refused: TLS is really verified.
    let (untrusted, events) = start();
    assert!(events.recv_timeout(Duration::from_millis(700)).is_err());
    assert!(untrusted.stats().snapshot().connect_failures >= 1);
    untrusted.stop();

    // The roots are read from SSL_CERT_FILE when set; only this test runs in this process.
    std::env::set_var("SSL_CERT_FILE", certificates.path("ca.pem"));
    let (link, events) = start();
    assert_eq!(events.recv_timeout(WAIT), Ok(BusEvent::Up));
    link.sender().send(b"over tls".to_vec());
    assert_eq!(
        events.recv_timeout(WAIT),
        Ok(BusEvent::Received(b"over tls".to_vec()))
    );
    link.stop();
}

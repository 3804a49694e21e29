//! TLS for `--tls`: a self-signed certificate for 127.0.0.1 made with rcgen, the rustls
//! configurations of the clients (trusting that certificate) and of the TLS floor (serving it
//! exactly as the server does), and the transports both ends read and write through: the bare
//! socket, or a rustls session over it.

use mio::net::TcpStream;
use rustls::client::Resumption;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate and its key in a temporary directory, removed when dropped.
pub(crate) struct TlsFiles {
    dir: PathBuf,
    /// The PEM certificate (self-signed, for `127.0.0.1` and `localhost`).
    pub cert: PathBuf,
    /// The PEM private key (ECDSA P-256, rcgen's default).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Makes a fresh self-signed certificate and writes it with its key to a new directory.
    pub(crate) fn generate() -> Result<TlsFiles, String> {
        Self::generate_in("run")
    }

    /// Like [`TlsFiles::generate`], in a directory named after `name` and this process.
    pub(crate) fn generate_in(name: &str) -> Result<TlsFiles, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| format!("TLS key: {e}"))?;
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .map_err(|e| format!("TLS certificate: {e}"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ferrocast loadgen");
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("TLS certificate: {e}"))?;
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-loadgen-tls-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        for (path, text) in [(&files.cert, cert.pem()), (&files.key, key.serialize_pem())] {
            std::fs::write(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(files)
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&read_pem(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

/// The clients' configuration: trusts the certificates in `ca_file`, and never resumes a
/// session, so that every connection is the full handshake a new visitor makes.
pub(crate) fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots
            .add(cert)
            .map_err(|e| format!("cannot trust {}: {e}", ca_file.display()))?;
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The TLS floor's configuration, built as the server builds its own (`shell/src/tls.rs`): the
/// `ring` provider, the safe default protocol versions, no client authentication.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let key = PrivateKeyDer::from_pem_slice(&read_pem(key)?)
        .map_err(|e| format!("no private key in {}: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certificates(cert)?, key)
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(Arc::new(config))
}

/// What a connection's bytes travel over, on either end: the socket itself or a rustls session.
pub(crate) enum Transport<C> {
    /// Plain TCP.
    Plain,
    /// TLS, `C` being a rustls client or server connection.
    Tls(Box<C>),
}

/// A client's transport.
pub(crate) type ClientTransport = Transport<ClientConnection>;
/// A floor connection's transport.
pub(crate) type ServerTransport = Transport<ServerConnection>;

impl ClientTransport {
    /// A transport for a connection to `host`: TLS when `tls` is given.
    pub(crate) fn client(
        tls: Option<&Arc<ClientConfig>>,
        host: &str,
    ) -> io::Result<ClientTransport> {
        let Some(config) = tls else {
            return Ok(Transport::Plain);
        };
        // The Host header may carry a port; the certificate names the host alone.
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        Ok(Transport::Tls(Box::new(conn)))
    }
}

impl ServerTransport {
    /// A transport for an accepted connection: TLS when `tls` is given.
    pub(crate) fn server(tls: Option<&Arc<ServerConfig>>) -> io::Result<ServerTransport> {
        match tls {
            None => Ok(Transport::Plain),
            Some(config) => Ok(Transport::Tls(Box::new(
                ServerConnection::new(config.clone()).map_err(io::Error::other)?,
            ))),
        }
    }
}

/// What one read of everything available found.
pub(crate) struct ReadOutcome {
    /// Bytes read off the socket (TLS records included).
    pub wire: u64,
    /// False once the peer closed (end of stream or close_notify).
    pub open: bool,
}

impl<C, D> Transport<C>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
    D: rustls::SideData,
{
    /// The negotiated cipher suite, once the handshake is done (`None` for plain TCP).
    pub(crate) fn suite(&self) -> Option<String> {
        match self {
            Transport::Plain => None,
            Transport::Tls(conn) => conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
        }
    }

    /// Reads everything the socket has, appending the plaintext to `into` (at most `limit`
    /// bytes in it). Any TLS handshake answer is written before returning.
    pub(crate) fn read(
        &mut self,
        stream: &mut TcpStream,
        scratch: &mut [u8],
        into: &mut Vec<u8>,
        limit: usize,
    ) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome {
            wire: 0,
            open: true,
        };
        match self {
            Transport::Plain => loop {
                match stream.read(scratch) {
                    Ok(0) => {
                        outcome.open = false;
                        return Ok(outcome);
                    }
                    Ok(n) => {
                        outcome.wire += n as u64;
                        into.extend_from_slice(&scratch[..n]);
                        if into.len() > limit {
                            return Err(io::Error::other("peer sent too much unread data"));
                        }
                        // A short read emptied the socket; data arriving later raises a new
                        // edge, so the extra read that would only say WouldBlock is skipped.
                        if n < scratch.len() {
                            return Ok(outcome);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(outcome),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Transport::Tls(conn) => {
                loop {
                    match conn.read_tls(stream) {
                        Ok(0) => outcome.open = false,
                        Ok(n) => outcome.wire += n as u64,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                    let state = match conn.process_new_packets() {
                        Ok(state) => state,
                        Err(error) => {
                            // Send the alert that says why before the caller drops us.
                            let _ = conn.write_tls(stream);
                            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                        }
                    };
                    let available = state.plaintext_bytes_to_read();
                    let peer_closed = state.peer_has_closed();
                    if available > 0 {
                        let start = into.len();
                        into.resize(start + available, 0);
                        conn.reader().read_exact(&mut into[start..])?;
                        if into.len() > limit {
                            return Err(io::Error::other("peer sent too much unread data"));
                        }
                    }
                    if peer_closed {
                        outcome.open = false;
                    }
                    if !outcome.open {
                        break;
                    }
                }
                flush_records(conn, stream)?;
                Ok(outcome)
            }
        }
    }

    /// Writes as much of `pending` (plaintext) as the socket takes, removing what went; with
    /// TLS, sealed records the socket refused stay in rustls for the next call.
    pub(crate) fn write(
        &mut self,
        stream: &mut TcpStream,
        pending: &mut Vec<u8>,
    ) -> io::Result<()> {
        match self {
            Transport::Plain => {
                let mut written = 0;
                while written < pending.len() {
                    match stream.write(&pending[written..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                pending.drain(..written);
                Ok(())
            }
            Transport::Tls(conn) => loop {
                let mut taken = 0;
                while taken < pending.len() {
                    // Zero once rustls holds as much as its buffer limit allows.
                    match conn.writer().write(&pending[taken..])? {
                        0 => break,
                        n => taken += n,
                    }
                }
                pending.drain(..taken);
                if !flush_records(conn, stream)? || pending.is_empty() || taken == 0 {
                    return Ok(());
                }
            },
        }
    }

    /// Whether sealed bytes wait for the socket (never for plain TCP, which keeps nothing).
    pub(crate) fn has_sealed(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(conn) => conn.wants_write(),
        }
    }
}

/// Writes the sealed records; `Ok(false)` when the socket would block first.
fn flush_records<D>(
    conn: &mut rustls::ConnectionCommon<D>,
    stream: &mut TcpStream,
) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpListener;

    /// Moves bytes both ways between a TLS client and a TLS server transport until `done`.
    fn pump(
        client: &mut (TcpStream, ClientTransport, Vec<u8>),
        server: &mut (TcpStream, ServerTransport, Vec<u8>),
        done: impl Fn(&[u8], &[u8]) -> bool,
    ) {
        let mut scratch = vec![0u8; 4096];
        let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            client.1.write(&mut client.0, &mut client.2).unwrap();
            server.1.write(&mut server.0, &mut server.2).unwrap();
            let c = client
                .1
                .read(&mut client.0, &mut scratch, &mut at_client, 1 << 20);
            let s = server
                .1
                .read(&mut server.0, &mut scratch, &mut at_server, 1 << 20);
            assert!(c.unwrap().open && s.unwrap().open);
            if done(&at_client, &at_server) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("no exchange: client got {at_client:?}, server got {at_server:?}");
    }

    #[test]
    fn a_client_and_a_floor_connection_talk_through_rustls_with_the_generated_certificate() {
        let files = TlsFiles::generate().unwrap();
        let client_tls = client_config(&files.cert).unwrap();
        let server_tls = server_config(&files.cert, &files.key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client_stream = TcpStream::connect(addr).unwrap();
        let mut accepted = None;
        for _ in 0..1000 {
            if let Ok((stream, _)) = listener.accept() {
                accepted = Some(stream);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let client = ClientTransport::client(Some(&client_tls), "127.0.0.1:1234").unwrap();
        let server = ServerTransport::server(Some(&server_tls)).unwrap();
        let mut client = (client_stream, client, b"GET / HTTP/1.1\r\n\r\n".to_vec());
        let mut server = (accepted.unwrap(), server, b"HTTP/1.1 101\r\n\r\n".to_vec());
        pump(&mut client, &mut server, |at_client, at_server| {
            at_client == b"HTTP/1.1 101\r\n\r\n" && at_server == b"GET / HTTP/1.1\r\n\r\n"
        });
        let suite = client.1.suite().unwrap();
        assert_eq!(Some(suite.clone()), server.1.suite());
        assert!(suite.starts_with("TLS13_"), "{suite}");
        assert!(ClientTransport::client(None, "h")
            .unwrap()
            .suite()
            .is_none());

        // A client that trusts another certificate refuses this one.
        let other = TlsFiles::generate_in("other").unwrap();
        let stranger = client_config(&other.cert).unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut refused = ClientTransport::client(Some(&stranger), "127.0.0.1").unwrap();
        let mut accepted = None;
        for _ in 0..1000 {
            if let Ok((s, _)) = listener.accept() {
                accepted = Some(s);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let (mut server_stream, mut floor) = (
            accepted.unwrap(),
            ServerTransport::server(Some(&server_tls)).unwrap(),
        );
        let mut scratch = vec![0u8; 4096];
        let mut failed = false;
        for _ in 0..2000 {
            let _ = refused.write(&mut stream, &mut Vec::new());
            let _ = floor.read(&mut server_stream, &mut scratch, &mut Vec::new(), 1 << 20);
            if refused
                .read(&mut stream, &mut scratch, &mut Vec::new(), 1 << 20)
                .is_err()
            {
                failed = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(failed, "a certificate nobody trusts was accepted");
    }
}

//! The server's TLS identity: the certificate chain and private key named by `[server.tls]`,
//! loaded into a rustls [`ServerConfig`], and reloaded in place on SIGHUP.
//!
//! Workers read the current configuration once per accepted socket, so a reload takes effect
//! at the next handshake while established connections keep the session they negotiated. A
//! reload that fails (a missing file, a key that does not match) is logged and changes
//! nothing: the server keeps serving the certificate it had.

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Where the certificate chain and its private key are read from (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// Reads both files and builds the rustls configuration connections are served with.
    pub fn load(&self) -> Result<Arc<ServerConfig>, String> {
        let certs = read_certificates(&self.cert_file)?;
        let key = read_private_key(&self.key_file)?;
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "TLS: the key in {} does not fit the certificate in {}: {e}",
                    self.key_file.display(),
                    self.cert_file.display()
                )
            })?;
        Ok(Arc::new(config))
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path, "certificate")?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS: bad PEM in certificate file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS: no CERTIFICATE block in certificate file {}",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path, "key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        format!(
            "TLS: no usable private key in key file {}: {e}",
            path.display()
        )
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("TLS: cannot read {what} file {}: {e}", path.display()))
}

/// The configuration new TLS connections are accepted with, shared by every worker and
/// replaced whole by a reload.
#[derive(Debug)]
pub(crate) struct TlsIdentity {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsIdentity {
    /// Loads the files once; an error here is a startup error.
    pub(crate) fn load(files: TlsFiles) -> Result<TlsIdentity, String> {
        let config = files.load()?;
        Ok(TlsIdentity {
            files,
            current: RwLock::new(config),
        })
    }

    /// The configuration a handshake starting now uses.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        // A poisoned lock still holds a whole `Arc` (it is only ever swapped in one store).
        match self.current.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the files: new handshakes use them, or, when they are bad, the old ones stay.
    pub(crate) fn reload(&self) {
        match self.files.load() {
            Ok(config) => {
                match self.current.write() {
                    Ok(mut current) => *current = config,
                    Err(poisoned) => *poisoned.into_inner() = config,
                }
                tracing::info!(
                    cert_file = %self.files.cert_file.display(),
                    "TLS certificate reloaded; new connections use it"
                );
            }
            Err(error) => {
                tracing::error!("{error}; keeping the certificate already loaded");
            }
        }
    }
}

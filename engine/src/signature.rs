//! HMAC-SHA256 signatures as Pusher uses them, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 key made ready once (the key's two hashed pads), so that checking a
/// signature costs the message's compressions only, not the key set-up again.
#[derive(Clone)]
pub struct Signer(HmacSha256);

impl Signer {
    /// The key `secret`, prepared.
    pub fn new(secret: &str) -> Self {
        Signer(HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length"))
    }

    /// Whether `hex_signature` is the HMAC of `message`, compared in constant time.
    pub fn verify_hex(&self, message: &[u8], hex_signature: &str) -> bool {
        let Some(claimed) = from_hex(hex_signature) else {
            return false;
        };
        let mut mac = self.0.clone();
        mac.update(message);
        mac.verify_slice(&claimed).is_ok()
    }
}

impl std::fmt::Debug for Signer {
    /// Says nothing of the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

/// Lower-case hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    to_hex(&mac.finalize().into_bytes())
}

/// Whether `hex_signature` is the HMAC of `message`, compared in constant time.
pub fn verify_hex(secret: &str, message: &[u8], hex_signature: &str) -> bool {
    Signer::new(secret).verify_hex(message, hex_signature)
}

/// Checks a client `auth` value `"{app_key}:{hex}"` for `app_key` over `message`.
pub fn verify_client_auth(app_key: &str, secret: &str, message: &[u8], auth: &str) -> bool {
    match auth.split_once(':') {
        Some((key, hex)) => key == app_key && verify_hex(secret, message, hex),
        None => false,
    }
}

/// The `auth` value a backend would give a client for `message`.
pub fn client_auth(app_key: &str, secret: &str, message: &[u8]) -> String {
    format!("{app_key}:{}", sign_hex(secret, message))
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xF) as usize] as char);
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_vector_from_the_sdk() {
        let auth = client_auth("app-key", "app-secret", b"1234.5678:private-foo");
        assert_eq!(
            auth,
            "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"
        );
        assert!(verify_client_auth(
            "app-key",
            "app-secret",
            b"1234.5678:private-foo",
            &auth
        ));
    }

    #[test]
    fn wrong_key_secret_message_or_hex_is_refused() {
        let good = client_auth("app-key", "app-secret", b"m");
        assert!(!verify_client_auth("other", "app-secret", b"m", &good));
        assert!(!verify_client_auth("app-key", "other", b"m", &good));
        assert!(!verify_client_auth("app-key", "app-secret", b"n", &good));
        assert!(!verify_client_auth(
            "app-key",
            "app-secret",
            b"m",
            "app-key:zz"
        ));
        assert!(!verify_client_auth(
            "app-key",
            "app-secret",
            b"m",
            "app-key"
        ));
        assert!(!verify_client_auth(
            "app-key",
            "app-secret",
            b"m",
            &good.to_uppercase()[..good.len() - 1]
        ));
    }
}

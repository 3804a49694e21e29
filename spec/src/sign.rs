//! The signatures a Pusher app backend and the Pusher HTTP API use, computed independently of
//! the engine so the vectors check the server against the protocol, not against itself.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// Lower-case hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(message);
    hex(&mac.finalize().into_bytes())
}

/// Lower-case hex MD5 of `body` (the HTTP API's `body_md5`).
pub fn md5_hex(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `auth` value a backend hands a client: `"{key}:{hmac(secret, message)}"`.
pub fn client_auth(key: &str, secret: &str, message: &str) -> String {
    format!("{key}:{}", hmac_hex(secret, message.as_bytes()))
}

/// The string a private or encrypted channel signature covers.
pub fn private_string(socket_id: &str, channel: &str) -> String {
    format!("{socket_id}:{channel}")
}

/// The string a presence channel signature covers.
pub fn presence_string(socket_id: &str, channel: &str, channel_data: &str) -> String {
    format!("{socket_id}:{channel}:{channel_data}")
}

/// The string a user sign-in signature covers.
pub fn signin_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// The HTTP API query string to sign: keys lower-cased, sorted, `k=v` joined by `&`, not encoded.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The HTTP API `auth_signature` of a request.
pub fn http_signature(
    secret: &str,
    method: &str,
    path: &str,
    params: &[(String, String)],
) -> String {
    let to_sign = format!("{method}\n{path}\n{}", canonical_query(params));
    hmac_hex(secret, to_sign.as_bytes())
}

#[cfg(test)]
mod tests {
    //! The official SDK's vectors from `shared/signature-vectors.json` pin this module.
    use super::*;

    #[test]
    fn private_presence_and_signin_match_the_sdk() {
        assert_eq!(
            client_auth(
                "app-key",
                "app-secret",
                &private_string("1234.5678", "private-foo")
            ),
            "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"
        );
        let channel_data = r#"{"user_id":"u1","user_info":{"name":"Alice"}}"#;
        assert_eq!(
            client_auth(
                "app-key",
                "app-secret",
                &presence_string("1234.5678", "presence-room", channel_data)
            ),
            "app-key:8da8a274fe7cf8f5bde5e8c764fe1c4e1df1e323b9e8ea3687d0055ef7502f6e"
        );
        assert_eq!(
            client_auth(
                "app-key",
                "app-secret",
                &private_string("1234.5678", "private-encrypted-foo")
            ),
            "app-key:d64478e9038bf061f1be2049fb8cf5796048b43a0a3d8c4e1361481beddd866b"
        );
        let user_data = r#"{"id":"u1","user_info":{"name":"Alice"},"watchlist":["u2"]}"#;
        assert_eq!(
            client_auth(
                "app-key",
                "app-secret",
                &signin_string("1234.5678", user_data)
            ),
            "app-key:93349634acd9f9f290f7aa6c4154876adf7a2f6b34086aa3dcfac389e7692b3f"
        );
    }

    #[test]
    fn http_api_worked_example() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let md5 = md5_hex(body.as_bytes());
        assert_eq!(md5, "ec365a775a4cd0599faeb73354201b6f");
        let params: Vec<(String, String)> = [
            ("auth_version", "1.0"),
            ("auth_key", "278d425bdf160c739803"),
            ("body_md5", md5.as_str()),
            ("auth_timestamp", "1353088179"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            canonical_query(&params),
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            http_signature("7ad3773142a6692b25b8", "POST", "/apps/3/events", &params),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn webhook_signature_matches_the_sdk() {
        let body = r#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
        assert_eq!(
            hmac_hex("app-secret", body.as_bytes()),
            "07febe80396240f7536142fd6a6d0aa0abcb249bc80f47e9d499a6b8f3b61511"
        );
    }
}

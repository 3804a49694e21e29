//! Pusher's HTTP API request signatures: parsing the query, checking and making signatures.
//!
//! The string to sign is `METHOD\nPATH\nQUERY`, where QUERY is every parameter but
//! `auth_signature`, keys lower-cased and sorted, `key=value` joined by `&`, values decoded.

use crate::signature::{sign_hex, to_hex, Signer};
use md5::{Digest, Md5};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// How far `auth_timestamp` may be from the server's clock, in seconds (Pusher's window).
pub const TIMESTAMP_WINDOW_SECS: u64 = 600;

/// Query parameters with decoded values, keyed by their lower-cased names (the signature is
/// over lower-cased keys), so [`Query::get`] takes a lower-case name. Keys and values borrow
/// from the raw query unless decoding or lower-casing changed them: a signed publish's
/// query (ids, hex digests, timestamps) is parsed without allocating per parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query<'a> {
    /// Sorted by key, one entry per key (the last given).
    params: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Query<'a> {
    /// Parses `a=1&b=x%20y`; a repeated key keeps its last value; keys are lower-cased.
    pub fn parse(raw: &'a str) -> Self {
        let mut params: Vec<(Cow<'a, str>, Cow<'a, str>)> = raw
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let mut key = decoded(key);
                if key.bytes().any(|b| b.is_ascii_uppercase()) {
                    key.to_mut().make_ascii_lowercase();
                }
                (key, decoded(value))
            })
            .collect();
        // Stable, so equal keys keep their order and the last of each run is the one given last.
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(params.len());
        for param in params {
            match unique.last_mut() {
                Some(last) if last.0 == param.0 => *last = param,
                _ => unique.push(param),
            }
        }
        Query { params: unique }
    }

    /// The same parameters, owning their text.
    pub fn into_owned(self) -> Query<'static> {
        Query {
            params: self
                .params
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        }
    }

    /// The decoded value of `key` (lower-case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.params[i].1.as_ref())
    }

    /// The canonical string of every parameter but `auth_signature`.
    pub fn canonical_without_signature(&self) -> String {
        let mut out = String::new();
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical string of every parameter but `auth_signature` to `out`.
    fn write_canonical(&self, out: &mut String) {
        let mut first = true;
        for (key, value) in self.params.iter().filter(|(k, _)| k != "auth_signature") {
            if !first {
                out.push('&');
            }
            first = false;
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
    }
}

/// `text` with its escapes decoded, borrowed when there are none.
fn decoded(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b == b'%' || b == b'+') {
        Cow::Owned(percent_decode(text))
    } else {
        Cow::Borrowed(text)
    }
}

/// Why a signed request was refused (all answered with 401).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// A required `auth_*` parameter is missing.
    Missing(&'static str),
    /// `auth_version` is not `1.0`.
    BadVersion,
    /// `auth_timestamp` is not a number or too far from now.
    Timestamp,
    /// The body's MD5 does not match `body_md5`, or a body came without one.
    BodyMd5,
    /// The HMAC does not match.
    Signature,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Missing(param) => write!(f, "missing {param} query parameter"),
            SignatureError::BadVersion => f.write_str("auth_version must be 1.0"),
            SignatureError::Timestamp => {
                write!(f, "auth_timestamp is not within {TIMESTAMP_WINDOW_SECS} seconds of the server's time")
            }
            SignatureError::BodyMd5 => f.write_str("body_md5 does not match the body"),
            SignatureError::Signature => f.write_str("invalid auth_signature"),
        }
    }
}

/// Checks a request already matched to its app by `auth_key`.
pub fn verify_request(
    secret: &str,
    method: &str,
    path: &str,
    query: &Query<'_>,
    body: &[u8],
    now_unix_secs: u64,
) -> Result<(), SignatureError> {
    verify_request_with(
        &Signer::new(secret),
        method,
        path,
        query,
        body,
        now_unix_secs,
    )
}

/// [`verify_request`] with the app's key prepared once ([`Signer`]).
pub fn verify_request_with(
    signer: &Signer,
    method: &str,
    path: &str,
    query: &Query<'_>,
    body: &[u8],
    now_unix_secs: u64,
) -> Result<(), SignatureError> {
    let signature = query
        .get("auth_signature")
        .ok_or(SignatureError::Missing("auth_signature"))?;
    let timestamp = query
        .get("auth_timestamp")
        .ok_or(SignatureError::Missing("auth_timestamp"))?;
    if query.get("auth_version").is_some_and(|v| v != "1.0") {
        return Err(SignatureError::BadVersion);
    }
    let timestamp: u64 = timestamp.parse().map_err(|_| SignatureError::Timestamp)?;
    if timestamp.abs_diff(now_unix_secs) > TIMESTAMP_WINDOW_SECS {
        return Err(SignatureError::Timestamp);
    }
    match query.get("body_md5") {
        Some(md5) if !md5.eq_ignore_ascii_case(&body_md5(body)) => {
            return Err(SignatureError::BodyMd5)
        }
        None if !body.is_empty() => return Err(SignatureError::BodyMd5),
        _ => {}
    }
    let mut to_sign = String::with_capacity(method.len() + path.len() + 2 + 160);
    to_sign.push_str(method);
    to_sign.push('\n');
    to_sign.push_str(path);
    to_sign.push('\n');
    query.write_canonical(&mut to_sign);
    if signer.verify_hex(to_sign.as_bytes(), signature) {
        Ok(())
    } else {
        Err(SignatureError::Signature)
    }
}

/// Hex MD5 of a request body.
pub fn body_md5(body: &[u8]) -> String {
    to_hex(&Md5::digest(body))
}

/// Builds the full signed query string a backend SDK would send (for tests and the load tools).
pub fn signed_query(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &[u8],
    unix_secs: u64,
) -> String {
    let mut sorted: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in params {
        sorted.insert(k.to_ascii_lowercase(), (*v).to_owned());
    }
    sorted.insert("auth_key".into(), key.into());
    sorted.insert("auth_timestamp".into(), unix_secs.to_string());
    sorted.insert("auth_version".into(), "1.0".into());
    if !body.is_empty() {
        sorted.insert("body_md5".into(), body_md5(body));
    }
    let query = Query {
        params: sorted
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
            .collect(),
    };
    let canonical = query.canonical_without_signature();
    let signature = sign_hex(secret, format!("{method}\n{path}\n{canonical}").as_bytes());
    let encoded: Vec<String> = query
        .params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("{}&auth_signature={signature}", encoded.join("&"))
}

/// Decodes `%XX` escapes and `+` (as a space); malformed escapes are kept literally.
pub fn percent_decode(text: &str) -> String {
    // Most keys and values (ids, hex digests, timestamps) have nothing to decode.
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const BODY: &[u8] = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const TS: u64 = 1_353_088_179;

    fn docs_query() -> Query<'static> {
        Query::parse(&format!(
            "auth_key={KEY}&auth_timestamp={TS}&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        ))
        .into_owned()
    }

    #[test]
    fn the_pusher_docs_worked_example_verifies() {
        assert_eq!(body_md5(BODY), "ec365a775a4cd0599faeb73354201b6f");
        assert_eq!(
            docs_query().canonical_without_signature(),
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            verify_request(SECRET, "POST", "/apps/3/events", &docs_query(), BODY, TS),
            Ok(())
        );
    }

    #[test]
    fn the_timestamp_window_is_600_seconds_either_way() {
        let verify =
            |now| verify_request(SECRET, "POST", "/apps/3/events", &docs_query(), BODY, now);
        assert_eq!(verify(TS + 599), Ok(()));
        assert_eq!(verify(TS - 599), Ok(()));
        assert_eq!(verify(TS + 600), Ok(()));
        assert_eq!(verify(TS + 601), Err(SignatureError::Timestamp));
        assert_eq!(verify(TS - 601), Err(SignatureError::Timestamp));
    }

    #[test]
    fn body_path_method_and_secret_are_all_signed() {
        let verify = |secret, method, path, body| {
            verify_request(secret, method, path, &docs_query(), body, TS)
        };
        assert_eq!(
            verify(SECRET, "POST", "/apps/3/events", b"{}".as_slice()),
            Err(SignatureError::BodyMd5)
        );
        assert_eq!(
            verify(SECRET, "POST", "/apps/4/events", BODY),
            Err(SignatureError::Signature)
        );
        assert_eq!(
            verify(SECRET, "GET", "/apps/3/events", BODY),
            Err(SignatureError::Signature)
        );
        assert_eq!(
            verify("other", "POST", "/apps/3/events", BODY),
            Err(SignatureError::Signature)
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_and_keys_sort() {
        let query = Query::parse("b=2&a=1&B=3&c=x%20y&&a");
        assert_eq!(query.get("a"), Some(""));
        assert_eq!(query.get("b"), Some("3"));
        assert_eq!(query.get("c"), Some("x y"));
        assert_eq!(query.get("d"), None);
        assert_eq!(query.canonical_without_signature(), "a=&b=3&c=x y");
        assert_eq!(query.clone().into_owned(), query);
    }

    #[test]
    fn upper_case_keys_are_lower_cased_before_signing() {
        let raw = format!(
            "AUTH_KEY={KEY}&Auth_Timestamp={TS}&auth_version=1.0&BODY_MD5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        let query = Query::parse(&raw);
        assert_eq!(
            verify_request(SECRET, "POST", "/apps/3/events", &query, BODY, TS),
            Ok(())
        );
    }

    #[test]
    fn a_body_needs_body_md5_and_missing_parameters_are_named() {
        let signed = signed_query(KEY, SECRET, "POST", "/apps/3/events", &[], BODY, TS);
        let without_md5: String = signed
            .split('&')
            .filter(|p| !p.starts_with("body_md5"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            verify_request(
                SECRET,
                "POST",
                "/apps/3/events",
                &Query::parse(&without_md5),
                BODY,
                TS
            ),
            Err(SignatureError::BodyMd5)
        );
        assert_eq!(
            verify_request(
                SECRET,
                "GET",
                "/x",
                &Query::parse("auth_timestamp=1"),
                b"",
                1
            ),
            Err(SignatureError::Missing("auth_signature"))
        );
    }

    #[test]
    fn signed_query_round_trips_with_encoded_values() {
        let query = signed_query(
            "k",
            "s",
            "GET",
            "/apps/1/channels",
            &[
                ("filter_by_prefix", "presence-"),
                ("info", "user_count,x y"),
            ],
            b"",
            50,
        );
        assert!(query.contains("info=user_count%2Cx%20y"));
        assert_eq!(
            verify_request(
                "s",
                "GET",
                "/apps/1/channels",
                &Query::parse(&query),
                b"",
                50
            ),
            Ok(())
        );
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%2Cb+c%zz%4"), "a,b c%zz%4");
    }
}

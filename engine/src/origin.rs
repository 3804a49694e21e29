//! Which web pages may connect to an app: the handshake's `Origin` header against the app's
//! `allowed_origins` patterns.
//!
//! A browser always sends `Origin` on a WebSocket handshake, and a page cannot forge it, so
//! the list stops other sites' pages from connecting with an app's public key. Server-side
//! clients send none; they are let in unless the app sets `require_origin`.
//!
//! A pattern is `*` (any origin) or `scheme://host[:port]`:
//! - scheme and host compare case-insensitively (browsers send them lowercase anyway);
//! - a port, when the pattern gives one, must be the origin's (a scheme's default port counts
//!   as given: `https://a.test:443` and `https://a.test` are one origin); a pattern without a
//!   port allows any port of that host;
//! - a host `*.example.com` allows every host one or more labels below `example.com`
//!   (`a.example.com`, `a.b.example.com`) but not `example.com` itself: list both to allow both.
//!
//! The opaque origin `null` (sandboxed frames, `file:` pages) and anything that is not
//! `scheme://host[:port]` match only `*`.

use std::fmt;

/// One entry of an app's `allowed_origins`, parsed once at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: every origin, `null` included.
    Any,
    /// `scheme://host[:port]`, the host possibly `*.`-prefixed.
    Site {
        /// Lowercase scheme, e.g. `https`.
        scheme: String,
        /// Which hosts it allows.
        host: HostPattern,
        /// The port, when the pattern names one; `None` allows any port.
        port: Option<u16>,
    },
}

/// The host part of an [`OriginPattern::Site`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lowercase).
    Exact(String),
    /// Any host ending in `.{domain}` with at least one label before it (lowercase domain).
    Below(String),
}

/// Why a pattern cannot be used, for the configuration error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPattern(pub String);

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `Origin` header split into its parts, lowercase, with the port made explicit.
struct SiteOrigin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl OriginPattern {
    /// Parses one `allowed_origins` entry.
    pub fn parse(text: &str) -> Result<Self, BadPattern> {
        let bad = |why: &str| Err(BadPattern(why.to_owned()));
        if text == "*" {
            return Ok(OriginPattern::Any);
        }
        let Some((scheme, authority)) = text.split_once("://") else {
            return bad("an origin pattern is \"*\" or scheme://host[:port]");
        };
        if !valid_scheme(scheme) {
            return bad("the scheme must be a letter then letters, digits, '+', '-' or '.'");
        }
        if authority.contains(['/', '?', '#']) {
            return bad("an origin has no path, query or fragment (not even a trailing '/')");
        }
        if authority.contains('@') {
            return bad("an origin has no user name or password");
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_port(authority).map_err(BadPattern)?;
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(domain) => {
                check_host(domain).map_err(BadPattern)?;
                if domain.starts_with('[') {
                    return bad("\"*.\" goes before a domain name, not an IP address");
                }
                HostPattern::Below(domain.to_owned())
            }
            None if host.contains('*') => {
                return bad(
                    "'*' is allowed only as the whole pattern or as a leading \"*.\" label",
                );
            }
            None => {
                check_host(&host).map_err(BadPattern)?;
                HostPattern::Exact(host)
            }
        };
        Ok(OriginPattern::Site { scheme, host, port })
    }

    /// Whether the `Origin` header value `origin` is allowed by this pattern.
    pub fn allows(&self, origin: &str) -> bool {
        let (scheme, host, port) = match self {
            OriginPattern::Any => return true,
            OriginPattern::Site { scheme, host, port } => (scheme, host, port),
        };
        let Some(site) = SiteOrigin::parse(origin) else {
            return false;
        };
        let host_allowed = match host {
            HostPattern::Exact(exact) => site.host == *exact,
            HostPattern::Below(domain) => site
                .host
                .strip_suffix(domain.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|labels| !labels.is_empty() && !labels.ends_with('.')),
        };
        site.scheme == *scheme && host_allowed && port.is_none_or(|p| site.port == Some(p))
    }
}

/// An app's rule for the `Origin` of its handshakes, built from its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPolicy {
    /// `None`: any origin (the list is empty).
    allowed: Option<Vec<OriginPattern>>,
    /// Whether a handshake without an `Origin` is refused.
    required: bool,
}

impl OriginPolicy {
    /// The policy of `allowed_origins` and `require_origin`. A pattern that does not parse
    /// allows nothing (configuration validation refuses it before an engine is built; a
    /// typo must never widen the list to "any origin").
    pub fn new(allowed_origins: &[String], require_origin: bool) -> Self {
        let allowed = (!allowed_origins.is_empty()).then(|| {
            allowed_origins
                .iter()
                .filter_map(|text| OriginPattern::parse(text).ok())
                .collect()
        });
        OriginPolicy {
            allowed,
            required: require_origin,
        }
    }

    /// `Ok` when a handshake with this `Origin` (or none) may connect, else why not.
    pub fn check(&self, origin: Option<&str>) -> Result<(), String> {
        match (origin, &self.allowed) {
            (None, _) if self.required => {
                Err("this app requires an Origin header on the handshake".into())
            }
            (None, _) | (Some(_), None) => Ok(()),
            (Some(origin), Some(patterns)) => {
                if patterns.iter().any(|p| p.allows(origin)) {
                    Ok(())
                } else {
                    Err(format!(
                        "origin {:?} is not allowed to connect to this app",
                        shortened(origin)
                    ))
                }
            }
        }
    }
}

/// At most 200 characters of a client-sent value, for an error message.
fn shortened(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

impl SiteOrigin {
    /// `scheme://host[:port]` as browsers send it; `None` for `null` or anything else.
    fn parse(origin: &str) -> Option<SiteOrigin> {
        let (scheme, authority) = origin.split_once("://")?;
        if !valid_scheme(scheme) || authority.contains(['/', '?', '#', '@', '*']) {
            return None;
        }
        let (host, port) = split_port(authority).ok()?;
        check_host(host).ok()?;
        let scheme = scheme.to_ascii_lowercase();
        let port = port.or_else(|| default_port(&scheme));
        Some(SiteOrigin {
            host: host.to_ascii_lowercase(),
            scheme,
            port,
        })
    }
}

fn valid_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (the host possibly a bracketed IPv6 address) and checks the port.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => {
                let (host, rest) = authority.split_at(end + 1);
                match rest {
                    "" => (host, None),
                    _ => match rest.strip_prefix(':') {
                        Some(port) => (host, Some(port)),
                        None => return Err("text after the IPv6 address is not a port".into()),
                    },
                }
            }
            None => return Err("an IPv6 address is not closed with ']'".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err(format!("port {digits:?} is not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

/// A host name of dot-separated labels (letters, digits, `-`, `_`) or a bracketed IPv6 address.
fn check_host(host: &str) -> Result<(), String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return if !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            Ok(())
        } else {
            Err(format!("{host:?} is not an IPv6 address"))
        };
    }
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "host {host:?} must be labels of letters, digits, '-' or '_' joined by single dots"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, origin: &str) -> bool {
        OriginPattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .allows(origin)
    }

    #[test]
    fn an_exact_pattern_allows_its_origin_in_any_case() {
        let p = "https://app.example.com";
        assert!(allows(p, "https://app.example.com"));
        assert!(allows(p, "HTTPS://App.Example.COM"));
        assert!(allows("HTTPS://APP.example.com", "https://app.example.com"));
        assert!(!allows(p, "http://app.example.com"), "the scheme counts");
        assert!(!allows(p, "https://app.example.org"));
        assert!(!allows(p, "https://app.example.com.evil.test"));
        assert!(!allows(p, "https://evilapp.example.com"));
        assert!(!allows(p, "https://example.com"));
    }

    #[test]
    fn a_port_counts_when_the_pattern_gives_one() {
        let p = "http://localhost:3000";
        assert!(allows(p, "http://localhost:3000"));
        assert!(!allows(p, "http://localhost:3001"));
        assert!(!allows(p, "http://localhost"), "no port is port 80");
        assert!(allows("http://localhost", "http://localhost:3001"));
        assert!(allows("http://localhost", "http://localhost"));
        // A scheme's default port is the same origin written both ways.
        assert!(allows("https://a.test:443", "https://a.test"));
        assert!(allows("https://a.test:443", "https://a.test:443"));
        assert!(!allows("https://a.test:443", "https://a.test:8443"));
        assert!(allows("http://[::1]:8080", "http://[::1]:8080"));
        assert!(!allows("http://[::1]:8080", "http://[::1]:8081"));
        assert!(allows("http://[::1]", "http://[::1]:9"));
    }

    #[test]
    fn a_wildcard_label_allows_subdomains_but_not_the_bare_domain() {
        let p = "https://*.example.com";
        assert!(allows(p, "https://app.example.com"));
        assert!(allows(p, "https://a.b.example.com"));
        assert!(
            allows(p, "https://APP.Example.com:8443"),
            "no port in the pattern"
        );
        assert!(
            !allows(p, "https://example.com"),
            "the bare domain is not below itself"
        );
        assert!(!allows(p, "https://badexample.com"));
        assert!(!allows(p, "https://.example.com"));
        assert!(!allows(p, "https://a..example.com"));
        assert!(!allows(p, "http://app.example.com"));
        assert!(!allows(p, "https://app.example.com.evil.test"));
        assert!(allows(
            "https://*.example.com:8443",
            "https://x.example.com:8443"
        ));
        assert!(!allows(
            "https://*.example.com:8443",
            "https://x.example.com"
        ));
    }

    #[test]
    fn a_star_allows_everything_and_nothing_else_allows_odd_origins() {
        for origin in [
            "null",
            "https://a.test",
            "",
            "garbage",
            "chrome-extension://abc",
        ] {
            assert!(allows("*", origin), "{origin}");
        }
        let p = "https://a.test";
        for origin in [
            "null",
            "",
            "a.test",
            "https://",
            "https://a.test/",
            "https://a.test/path",
            "https://user@a.test",
            "https://a.test:0",
            "https://a.test:99999",
            "https://a.test:",
            "https://a.test:+443",
            "https://*.test",
            "https://a.test a",
        ] {
            assert!(!allows(p, origin), "{origin:?}");
        }
        assert!(allows("capacitor://localhost", "capacitor://localhost"));
        assert!(allows("capacitor://localhost", "capacitor://localhost:1"));
        assert!(!allows("capacitor://localhost:1", "capacitor://localhost"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for pattern in [
            "",
            "example.com",
            "*.example.com",
            "https://",
            "https://a.test/",
            "https://a.test/path",
            "https://a.test?x",
            "https://u@a.test",
            "https://a.test:0",
            "https://a.test:65536",
            "https://a.test:x",
            "https://a.test:",
            "https://a*.test",
            "https://*",
            "https://*.",
            "https://*.*.test",
            "https://a..test",
            "https://a.test.",
            "https://a test",
            "1https://a.test",
            "://a.test",
            "https://[::1",
            "https://[::1]x",
            "https://*.[::1]",
            "**",
        ] {
            let error = OriginPattern::parse(pattern).expect_err(pattern);
            assert!(!error.0.is_empty(), "{pattern:?} says why");
        }
    }

    #[test]
    fn the_policy_admits_by_list_and_absence() {
        let list = [
            "https://app.example.com".to_owned(),
            "https://*.example.com".to_owned(),
        ];
        let open = OriginPolicy::new(&[], false);
        assert_eq!(open.check(None), Ok(()));
        assert_eq!(open.check(Some("https://anything.test")), Ok(()));
        assert!(OriginPolicy::new(&[], true).check(None).is_err());
        assert_eq!(OriginPolicy::new(&[], true).check(Some("null")), Ok(()));

        let listed = OriginPolicy::new(&list, false);
        assert_eq!(listed.check(Some("https://app.example.com")), Ok(()));
        assert_eq!(listed.check(Some("https://x.y.example.com")), Ok(()));
        assert_eq!(
            listed.check(None),
            Ok(()),
            "server-side clients send no Origin"
        );
        let refused = listed.check(Some("https://evil.test")).unwrap_err();
        assert!(refused.contains("https://evil.test"), "{refused}");
        assert!(OriginPolicy::new(&list, true).check(None).is_err());

        let long = format!("https://{}.test", "a".repeat(5000));
        assert!(listed.check(Some(&long)).unwrap_err().chars().count() < 300);
    }

    #[test]
    fn a_list_of_only_bad_patterns_allows_no_origin() {
        let policy = OriginPolicy::new(&["example.com".to_owned()], false);
        assert!(policy.check(Some("https://example.com")).is_err());
        assert_eq!(policy.check(None), Ok(()));
    }
}

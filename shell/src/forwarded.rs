//! Who the client is when the server sits behind proxies: the address every per-client limit
//! counts, and whether the client's own connection was TLS.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are anybody's to send, so they are believed only
//! from a peer listed in `trusted_proxies`. Each trusted proxy appends the address it was
//! connected from, so the list is read from the right: the socket peer is hop one, each entry
//! to its left one more, and the client is the first address not known to be a proxy, at most
//! `trust_hops` entries in.

use ipnet::IpNet;
use std::net::IpAddr;

/// The proxies whose forwarding headers are believed, and how many of them stand in a row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    hops: usize,
}

/// The client as the limits see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client's address: the socket peer's, or the one trusted proxies forwarded.
    pub ip: IpAddr,
    /// A trusted proxy said the client connected to it over TLS (`X-Forwarded-Proto: https`).
    pub forwarded_https: bool,
}

impl TrustedProxies {
    /// Parses `entries`, each an address (`10.0.0.1`) or a network (`10.0.0.0/8`); `hops` is
    /// how many proxies may stand between the client and this server.
    pub fn new(entries: &[String], hops: usize) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("server.trusted_proxies: {entry:?} is not an address or a network")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets, hops })
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` (every such header
    /// joined with commas) and `X-Forwarded-Proto`.
    pub fn resolve(
        &self,
        peer: IpAddr,
        forwarded_for: Option<&str>,
        forwarded_proto: Option<&str>,
    ) -> ClientAddress {
        let peer = canonical(peer);
        if self.hops == 0 || !self.trusts(peer) {
            return ClientAddress {
                ip: peer,
                forwarded_https: false,
            };
        }
        let forwarded_https = forwarded_proto
            .and_then(|protos| protos.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        let mut client = peer;
        let entries = forwarded_for.unwrap_or_default().rsplit(',');
        for (hop, entry) in entries.enumerate() {
            // `client` is a trusted proxy here; the entry is whom it was connected from.
            let Some(ip) = parse_entry(entry) else {
                break;
            };
            client = ip;
            if hop + 1 >= self.hops || !self.trusts(ip) {
                break;
            }
        }
        ClientAddress {
            ip: client,
            forwarded_https,
        }
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let unbracketed = entry
        .strip_prefix('[')
        .and_then(|rest| rest.split(']').next());
    let host = unbracketed.or_else(|| entry.rsplit_once(':').map(|(host, _)| host))?;
    host.parse::<IpAddr>().ok().map(canonical)
}

/// An IPv4 address mapped into IPv6 (`::ffff:1.2.3.4`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(entries: &[&str], hops: usize) -> TrustedProxies {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        TrustedProxies::new(&entries, hops).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies(&["10.0.0.0/8"], 1);
        let client = trusted.resolve(ip("203.0.113.9"), Some("1.1.1.1"), Some("https"));
        assert_eq!(client.ip, ip("203.0.113.9"));
        assert!(!client.forwarded_https);
        let nobody = proxies(&[], 1);
        assert_eq!(
            nobody.resolve(ip("127.0.0.1"), Some("1.1.1.1"), None).ip,
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_its_scheme() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"], 1);
        let client = trusted.resolve(ip("10.1.2.3"), Some("198.51.100.7"), Some("https"));
        assert_eq!(client.ip, ip("198.51.100.7"));
        assert!(client.forwarded_https);
        let plain = trusted.resolve(ip("127.0.0.1"), Some("198.51.100.7:4711"), Some("http"));
        assert_eq!(plain.ip, ip("198.51.100.7"));
        assert!(!plain.forwarded_https);
    }

    #[test]
    fn hops_are_counted_from_the_right_and_stop_at_an_untrusted_entry() {
        let two = proxies(&["10.0.0.0/8"], 2);
        // client, spoofed entry, the inner proxy appended by the outer one.
        let header = "6.6.6.6, 198.51.100.7, 10.0.0.5";
        assert_eq!(
            two.resolve(ip("10.0.0.1"), Some(header), None).ip,
            ip("198.51.100.7")
        );
        // One hop trusted: the rightmost entry is the client, whatever it is.
        let one = proxies(&["10.0.0.0/8"], 1);
        assert_eq!(
            one.resolve(ip("10.0.0.1"), Some(header), None).ip,
            ip("10.0.0.5")
        );
        // An untrusted entry ends the walk even when more hops are allowed.
        let many = proxies(&["10.0.0.0/8"], 5);
        assert_eq!(
            many.resolve(ip("10.0.0.1"), Some(header), None).ip,
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_and_absent_headers_leave_the_proxy_as_the_client() {
        let trusted = proxies(&["::1", "127.0.0.1"], 1);
        assert_eq!(trusted.resolve(ip("::1"), None, None).ip, ip("::1"));
        assert_eq!(
            trusted.resolve(ip("::1"), Some("unknown"), None).ip,
            ip("::1")
        );
        assert_eq!(
            trusted
                .resolve(ip("::ffff:127.0.0.1"), Some("[2001:db8::1]:443"), None)
                .ip,
            ip("2001:db8::1")
        );
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        let error = TrustedProxies::new(&["10.0.0.0/33".to_string()], 1).unwrap_err();
        assert!(error.contains("10.0.0.0/33"), "{error}");
        assert!(TrustedProxies::new(&["proxy.local".to_string()], 1).is_err());
    }
}

//! WebSocket extension negotiation: which `Sec-WebSocket-Extensions` offer the server takes.
//!
//! Only permessage-deflate (RFC 7692) is known. The server always answers with both
//! `server_no_context_takeover` and `client_no_context_takeover` (RFC 7692 §7.1.1.1 and
//! §7.1.1.2 let it add them unasked): each message is then compressed on its own, so a
//! broadcast frame is compressed once and the same bytes go to every recipient, and one
//! compressor and one decompressor per worker thread serve all of its connections, where
//! context takeover would keep a ~300 KB zlib state per connection.
//!
//! A header that does not parse, or offers nothing acceptable, means no extension: the
//! handshake still succeeds, uncompressed (RFC 6455 §9.1 lets a server ignore offers).

/// The answer when a permessage-deflate offer is accepted, without `server_max_window_bits`.
const DEFLATE_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// One extension offered: its name and its parameters, values unquoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Offer {
    /// The extension token, as sent.
    pub name: String,
    /// Each `name[=value]` parameter in order; a quoted value is given without its quotes.
    pub params: Vec<(String, Option<String>)>,
}

/// The `Sec-WebSocket-Extensions` answer to `header` (every such header, joined with commas),
/// or `None` to negotiate nothing.
pub(crate) fn negotiate(header: Option<&str>) -> Option<String> {
    parse_offers(header?)?
        .iter()
        .filter(|offer| offer.name.eq_ignore_ascii_case("permessage-deflate"))
        .find_map(accept_deflate)
}

/// The answer to one permessage-deflate offer, or `None` when the server cannot honour it.
fn accept_deflate(offer: &Offer) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut server_window = false;
    for (name, value) in &offer.params {
        let name = name.as_str();
        // RFC 7692 §7: an offer naming a parameter twice is declined.
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return None;
        }
        seen.push(name);
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" if value.is_none() => {}
            // The client limits its own window; the inflater takes any window, so the answer
            // leaves it out (§7.1.2.2).
            "client_max_window_bits"
                if value.as_deref().is_none_or(|v| window_bits(v).is_some()) => {}
            // A smaller server window would need a compression per window size, where one
            // shared compressed frame per broadcast is the point: only 15 is honoured, and the
            // offer (often followed by a plain fallback offer) is declined otherwise.
            "server_max_window_bits" => match value.as_deref().and_then(window_bits) {
                Some(15) => server_window = true,
                _ => return None,
            },
            _ => return None,
        }
    }
    Some(if server_window {
        format!("{DEFLATE_ANSWER}; server_max_window_bits=15")
    } else {
        DEFLATE_ANSWER.to_owned()
    })
}

/// A window size parameter: 8 to 15, decimal, no leading zero (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// Parses `1#extension`, `extension = token *( ";" token [ "=" ( token | quoted-string ) ] )`
/// (RFC 6455 §9.1, with optional whitespace around separators and empty list elements
/// skipped); `None` when anything does not fit.
pub(crate) fn parse_offers(header: &str) -> Option<Vec<Offer>> {
    let mut cursor = Cursor {
        rest: header.as_bytes(),
    };
    let mut offers = Vec::new();
    loop {
        cursor.skip_space();
        match cursor.peek() {
            None => break,
            Some(b',') => {
                cursor.bump();
                continue;
            }
            Some(_) => {}
        }
        let name = cursor.token()?;
        let mut params = Vec::new();
        loop {
            cursor.skip_space();
            match cursor.peek() {
                None | Some(b',') => break,
                Some(b';') => cursor.bump(),
                Some(_) => return None,
            }
            cursor.skip_space();
            let param = cursor.token()?;
            cursor.skip_space();
            let value = if cursor.peek() == Some(b'=') {
                cursor.bump();
                cursor.skip_space();
                let value = if cursor.peek() == Some(b'"') {
                    cursor.quoted()?
                } else {
                    cursor.token()?
                };
                // RFC 6455 §9.1: a quoted value must still be a token once unquoted.
                if value.is_empty() || !value.bytes().all(is_tchar) {
                    return None;
                }
                Some(value)
            } else {
                None
            };
            params.push((param, value));
        }
        offers.push(Offer { name, params });
    }
    (!offers.is_empty()).then_some(offers)
}

/// Whether `b` may appear in an HTTP token (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The unread part of a header value.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn bump(&mut self) {
        self.rest = &self.rest[1..];
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
    }

    /// One or more token characters.
    fn token(&mut self) -> Option<String> {
        let len = self.rest.iter().take_while(|&&b| is_tchar(b)).count();
        if len == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(len);
        self.rest = rest;
        // Token characters are ASCII.
        Some(String::from_utf8_lossy(token).into_owned())
    }

    /// A quoted string, at its opening quote; backslash escapes one character.
    fn quoted(&mut self) -> Option<String> {
        self.bump();
        let mut value = Vec::new();
        loop {
            let b = self.peek()?;
            self.bump();
            match b {
                b'"' => return String::from_utf8(value).ok(),
                b'\\' => {
                    value.push(self.peek()?);
                    self.bump();
                }
                _ => value.push(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(name: &str, params: &[(&str, Option<&str>)]) -> Offer {
        Offer {
            name: name.into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_owned)))
                .collect(),
        }
    }

    #[test]
    fn offers_with_parameters_and_quoted_values_parse() {
        let header = "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame ,\
                      permessage-deflate;server_max_window_bits=\"15\" ; client_no_context_takeover,,";
        assert_eq!(
            parse_offers(header),
            Some(vec![
                offer("permessage-deflate", &[("client_max_window_bits", None)]),
                offer("x-webkit-deflate-frame", &[]),
                offer(
                    "permessage-deflate",
                    &[
                        ("server_max_window_bits", Some("15")),
                        ("client_no_context_takeover", None)
                    ]
                ),
            ])
        );
        assert_eq!(
            parse_offers("foo; a=\"b\\c\""),
            Some(vec![offer("foo", &[("a", Some("bc"))])])
        );
    }

    #[test]
    fn malformed_headers_parse_to_nothing() {
        for header in [
            "",
            " , ",
            "permessage-deflate;",
            "permessage-deflate; =15",
            "permessage-deflate; a=",
            "permessage-deflate; a=\"unterminated",
            "permessage-deflate; a=\"not a token\"",
            "permessage-deflate x",
            "per message",
            "permessage-deflate; a=b=c",
            "\"quoted\"",
        ] {
            assert_eq!(parse_offers(header), None, "{header:?}");
            assert_eq!(negotiate(Some(header)), None, "{header:?}");
        }
    }

    #[test]
    fn what_browsers_offer_is_accepted_with_both_no_context_takeovers() {
        let answer = Some(DEFLATE_ANSWER.to_owned());
        // Chrome, Firefox and the `ws` package.
        assert_eq!(
            negotiate(Some("permessage-deflate; client_max_window_bits")),
            answer
        );
        assert_eq!(negotiate(Some("permessage-deflate")), answer);
        assert_eq!(
            negotiate(Some(
                "PerMessage-Deflate; Client_No_Context_Takeover; server_no_context_takeover; client_max_window_bits=10"
            )),
            answer
        );
        assert_eq!(negotiate(None), None);
        assert_eq!(negotiate(Some("x-webkit-deflate-frame")), None);
    }

    #[test]
    fn offers_the_server_cannot_honour_are_declined_for_the_next_one() {
        // A smaller server window, then the usual fallback offer.
        assert_eq!(
            negotiate(Some(
                "permessage-deflate; server_max_window_bits=10, permessage-deflate"
            )),
            Some(DEFLATE_ANSWER.to_owned())
        );
        for declined in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown_parameter",
        ] {
            assert_eq!(negotiate(Some(declined)), None, "{declined}");
        }
        assert_eq!(
            negotiate(Some("permessage-deflate; server_max_window_bits=\"15\"")),
            Some(format!("{DEFLATE_ANSWER}; server_max_window_bits=15"))
        );
    }
}

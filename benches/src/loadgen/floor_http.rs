//! The HTTP publish floor: a server that reads the same keep-alive Pusher HTTP API requests,
//! computes the same MD5 of the body and HMAC-SHA256 over the same string to sign, and
//! writes a fixed `200 {}` answer. No JSON, no channels, no deliveries: what a publish costs
//! before it does anything a publish is for.

use ferrocast_engine::http_auth::body_md5;
use ferrocast_engine::signature::sign_hex;
use std::io::{self, BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};

const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

/// Serves connections one after another until stdin closes or says `Exit`.
pub(crate) fn run(host: &str, secret: &str) -> Result<(), String> {
    let listener = TcpListener::bind((host, 0)).map_err(|e| format!("cannot listen: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let mut out = io::stdout();
    writeln!(out, "floor listening on {local}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    // Any line (the coordinator only ever sends `Exit`) or the end of stdin ends the floor.
    std::thread::spawn(|| {
        let _ = io::stdin().lock().read_line(&mut String::new());
        std::process::exit(0);
    });
    loop {
        let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        serve(stream, secret);
    }
}

/// Answers every request of one keep-alive connection until it closes or sends garbage.
fn serve(mut stream: TcpStream, secret: &str) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        match request_len(&buf, secret) {
            Some(Ok(len)) => {
                buf.drain(..len);
                if stream.write_all(ANSWER).is_err() {
                    return;
                }
                continue;
            }
            Some(Err(())) => return,
            None => {}
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// When `buf` holds a whole request: does the signature work and returns its length.
fn request_len(buf: &[u8], secret: &str) -> Option<Result<usize, ()>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Err(())),
    };
    let length = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    if buf.len() < head + length {
        return None;
    }
    let body = &buf[head..head + length];
    let (method, target) = (request.method.unwrap_or(""), request.path.unwrap_or(""));
    std::hint::black_box(sign(secret, method, target, body));
    Some(Ok(head + length))
}

/// The string to sign (`METHOD\nPATH\n` and the sorted parameters but `auth_signature`),
/// its HMAC-SHA256 and the body's MD5, as the server computes them.
fn sign(secret: &str, method: &str, target: &str, body: &[u8]) -> (String, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("auth_signature="))
        .collect();
    params.sort_unstable();
    let mut to_sign = String::with_capacity(target.len() + method.len() + 2);
    to_sign.push_str(method);
    to_sign.push('\n');
    to_sign.push_str(path);
    to_sign.push('\n');
    for (i, param) in params.iter().enumerate() {
        if i > 0 {
            to_sign.push('&');
        }
        to_sign.push_str(param);
    }
    (body_md5(body), sign_hex(secret, to_sign.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_engine::http_auth::signed_query;

    #[test]
    fn the_floor_signs_what_the_publisher_signed() {
        let body = br#"{"name":"e","channel":"c","data":"x"}"#;
        let query = signed_query("k", "s", "POST", "/apps/1/events", &[], body, 7);
        let target = format!("/apps/1/events?{query}");
        let (md5, signature) = sign("s", "POST", &target, body);
        assert!(query.contains(&format!("body_md5={md5}")));
        assert!(query.ends_with(&format!("auth_signature={signature}")));
    }

    #[test]
    fn a_request_is_complete_with_its_body() {
        let request = b"POST /apps/1/events?auth_key=k HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(request_len(request, "s"), Some(Ok(request.len())));
        assert_eq!(request_len(&request[..request.len() - 1], "s"), None);
        assert_eq!(
            request_len(b"\x00\x01 nonsense\r\n\r\n", "s"),
            Some(Err(()))
        );
    }
}

//! `--health-addr`: plain HTTP/1.1 `GET` on a port of its own, for load
//! balancers and operators (PROTOCOL.md 10.1).
//!
//! Answers come from the node's status (atomics and a cached list of
//! nodes), never from the chat or the database, so each is ready within
//! the second whatever the chat load. Requests are parsed by `httparse`;
//! this module bounds what it reads (8 KiB per line, 5 s for a request, a
//! fixed number of health connections at once) and closes every connection
//! after one answer.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::core::Core;

/// The longest request line or header line.
const MAX_LINE: usize = 8 * 1024;
/// The longest request head in all.
const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in a request; more are answered 400.
const MAX_HEADERS: usize = 256;
/// How long a request may take to arrive whole.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Health connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long writing an answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `/health` on `listener` until the process ends, on a thread of
/// its own.
///
/// # Errors
/// When the thread cannot start.
pub fn spawn(listener: TcpListener, core: Arc<Core>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name("health".into()).spawn(move || {
        let open = Arc::new(AtomicUsize::new(0));
        for stream in listener.incoming() {
            let Ok(stream) = stream else {
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let (core, open) = (Arc::clone(&core), Arc::clone(&open));
            let spawned = thread::Builder::new()
                .name("health-conn".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    answer(stream, &core);
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                log::warn!("cannot start a health thread");
            }
        }
    })
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET` of this path (without a query).
    Get(String),
    /// Another method.
    OtherMethod,
    /// Not HTTP, a line over [`MAX_LINE`], or a head that did not arrive
    /// whole in time.
    Bad,
}

/// Reads one request and answers it.
fn answer(stream: TcpStream, core: &Core) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let response = match read_request(&stream) {
        Ok(Request::Get(path)) => respond(&path, core),
        Ok(Request::OtherMethod) => plain(405, "method not allowed"),
        Ok(Request::Bad) => plain(400, "bad request"),
        // Silent or gone: closed without an answer.
        Err(_) => return,
    };
    let _ = (&stream).write_all(&response);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Reads a request head, bounded in size and time.
fn read_request(mut stream: &TcpStream) -> io::Result<Request> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(request) = parse(&buf)? {
            return Ok(request);
        }
        // Late: a request begun and not finished in time is answered 400;
        // a connection that sent nothing is just closed.
        let late = || {
            if buf.is_empty() {
                Err(io::Error::from(io::ErrorKind::TimedOut))
            } else {
                Ok(Request::Bad)
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return late();
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return late(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses what has arrived: `Ok(None)` while the head is incomplete.
fn parse(buf: &[u8]) -> io::Result<Option<Request>> {
    // A line's length is its bytes without its CRLF (or bare LF).
    let over = |line: &[u8]| line.strip_suffix(b"\r").unwrap_or(line).len() > MAX_LINE;
    if buf.split(|&b| b == b'\n').any(over) || buf.len() > MAX_HEAD {
        return Ok(Some(Request::Bad));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(path)) = (request.method, request.path) else {
                return Ok(Some(Request::Bad));
            };
            if method != "GET" {
                return Ok(Some(Request::OtherMethod));
            }
            let path = path.split('?').next().unwrap_or("");
            Ok(Some(Request::Get(path.to_string())))
        }
        Err(_) => Ok(Some(Request::Bad)),
    }
}

/// The answer to `GET path`.
fn respond(path: &str, core: &Core) -> Vec<u8> {
    match path {
        "/health" => {
            let status = &core.status;
            let draining = core.shutdown.is_triggered();
            let db_ok = status.db_ok();
            let ok = db_ok && !draining;
            let body = format!(
                "{{\"status\":\"{}\",\"node\":{},\"db\":\"{}\",\"draining\":{draining},\"sessions\":{},\"last_id\":{}}}",
                if ok { "ok" } else { "unavailable" },
                json_string(&core.config.node),
                if db_ok { "ok" } else { "down" },
                core.registry.session_count(),
                status.last_id(),
            );
            response(if ok { 200 } else { 503 }, "application/json", &body)
        }
        "/health/nodes" => {
            let nodes = core.status.nodes().unwrap_or_else(|| {
                vec![crate::store::NodeRow {
                    name: core.config.node.clone(),
                    sessions: core.registry.session_count() as u64,
                    seen_ms_ago: 0,
                }]
            });
            let items: Vec<String> = nodes
                .iter()
                .map(|n| {
                    format!(
                        "{{\"node\":{},\"sessions\":{},\"seen_ms_ago\":{}}}",
                        json_string(&n.name),
                        n.sessions,
                        n.seen_ms_ago
                    )
                })
                .collect();
            response(200, "application/json", &format!("[{}]", items.join(",")))
        }
        "/health/ping" => plain(200, "pong"),
        _ => plain(404, "not found"),
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `text/plain` response.
fn plain(status: u16, body: &str) -> Vec<u8> {
    response(status, "text/plain", body)
}

/// A complete HTTP/1.1 response that closes the connection.
fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_whole_and_bounded() {
        assert_eq!(parse(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap(), None);
        assert_eq!(
            parse(b"GET /health?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            Some(Request::Get("/health".into()))
        );
        assert_eq!(
            parse(b"POST /health HTTP/1.1\r\n\r\n").unwrap(),
            Some(Request::OtherMethod)
        );
        assert_eq!(parse(b"\x16\x03\x01 hello\r\n\r\n").unwrap(), Some(Request::Bad));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_LINE));
        assert_eq!(parse(long.as_bytes()).unwrap(), Some(Request::Bad));
        let header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(MAX_LINE));
        assert_eq!(parse(header.as_bytes()).unwrap(), Some(Request::Bad));
        // The limit is the line's own bytes, CRLF or LF apart.
        let full = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(MAX_LINE - 3));
        assert_eq!(parse(full.as_bytes()).unwrap(), Some(Request::Get("/".into())));
        let bare = format!("GET / HTTP/1.1\nX: {}\n\n", "b".repeat(MAX_LINE - 3));
        assert_eq!(parse(bare.as_bytes()).unwrap(), Some(Request::Get("/".into())));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("node-1"), "\"node-1\"");
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}

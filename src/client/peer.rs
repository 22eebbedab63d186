//! The byte protocol between two clients, directly or through the
//! server's relay (docs/PROTOCOL.md 11.3 and 11.4): the fetcher's
//! `GET FILEID TICKET`, the owner's `OK SIZE SHA256` or `ERR CODE TEXT`,
//! the relay's bare `OK`, and the one bounded, deadline-bound way both
//! sides read a line.
//!
//! Pure apart from [`read_line`], which reads one line from a socket a
//! byte at a time (so nothing after the line is consumed: the file's bytes
//! follow it) and never holds more than [`MAX_LINE`] bytes. Owns no file
//! and no offer; [`super::share`] and [`super::download`] use it.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

/// The longest line either side accepts, newline excluded. A `GET` line is
/// at most ~200 bytes; an `ERR` line's text is short English.
pub const MAX_LINE: usize = 1024;

/// How long a fetcher has to send its `GET` line once connected
/// (docs/PROTOCOL.md 11.3: `bad-request` after 10 s).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How long either side may wait for the other to accept or send bytes
/// before the transfer counts as stalled (the relay's own stall limit).
pub const STALL: Duration = Duration::from_secs(30);

/// The codes an owner answers a `GET` with (docs/PROTOCOL.md 11.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a `GET FILEID TICKET` line, or none within 10 s.
    BadRequest,
    /// Not offered by this client now.
    NoSuchFile,
    /// Not sealed for this file with this session's key.
    BadTicket,
    /// Past its expiry (with this client's grace).
    Expired,
    /// Already used once.
    Used,
    /// This client serves too many transfers at once.
    LimitReached,
    /// The file cannot be read, or it changed since it was shared.
    Internal,
}

impl Refusal {
    /// The code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad-request",
            Refusal::NoSuchFile => "no-such-file",
            Refusal::BadTicket => "bad-ticket",
            Refusal::Expired => "expired",
            Refusal::Used => "used",
            Refusal::LimitReached => "limit-reached",
            Refusal::Internal => "internal",
        }
    }

    /// The whole `ERR CODE TEXT` line, newline included, with `text` as the
    /// English explanation.
    pub fn line(self, text: &str) -> String {
        format!("ERR {} {text}\n", self.code())
    }
}

/// A fetcher's request: `GET FILEID TICKET`, the id and ticket in the
/// shared specification's alphabets (PROTOCOL.md 11).
///
/// # Errors
/// [`Refusal::BadRequest`] for anything else.
pub fn parse_get(line: &str) -> Result<(&str, &str), Refusal> {
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("GET"), Some(file), Some(ticket), None) if is_id(file, 64) && is_id(ticket, 128) => Ok((file, ticket)),
        _ => Err(Refusal::BadRequest),
    }
}

/// Whether `word` is 1 to `max` characters of `[A-Za-z0-9_-]`.
fn is_id(word: &str, max: usize) -> bool {
    (1..=max).contains(&word.len())
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a fetcher reads first from the other side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    /// A bare `OK`: the relay paired this fetcher with the owner; the
    /// owner's own header follows.
    Paired,
    /// `OK SIZE SHA256`: exactly `size` bytes follow.
    File {
        /// The byte count announced.
        size: u64,
        /// The SHA-256 announced (the offer's, from the server's index, is
        /// what counts).
        sha256: String,
    },
    /// `ERR CODE TEXT`: the owner (or the relay) refused.
    Refused {
        /// The code, as sent.
        code: String,
        /// The English explanation, as sent.
        text: String,
    },
}

/// Reads a header line.
///
/// # Errors
/// `None` for a line that is none of [`Header`]'s shapes.
pub fn parse_header(line: &str) -> Option<Header> {
    if line == "OK" {
        return Some(Header::Paired);
    }
    if let Some(rest) = line.strip_prefix("OK ") {
        let (size, sha256) = rest.split_once(' ')?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let size = size.parse().ok()?;
        crate::core::files::sha256_hex(sha256).ok()?;
        return Some(Header::File {
            size,
            sha256: sha256.to_string(),
        });
    }
    let rest = line.strip_prefix("ERR ")?;
    let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.is_empty() {
        return None;
    }
    Some(Header::Refused {
        code: code.to_string(),
        text: text.to_string(),
    })
}

/// Reads one line (without its `\n`, or a `\r` before it) within `limit`,
/// a byte at a time, so that nothing after it is consumed.
///
/// # Errors
/// `TimedOut` past the deadline, `UnexpectedEof` when the other side
/// closes first, `InvalidData` for a line longer than [`MAX_LINE`] or not
/// UTF-8, and the socket's own errors.
pub fn read_line(stream: &TcpStream, limit: Duration) -> io::Result<String> {
    crate::proto::frame::read_one_line(stream, limit, MAX_LINE)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn get_lines_are_checked_word_by_word() {
        assert_eq!(parse_get("GET f01 abc_-9"), Ok(("f01", "abc_-9")));
        for bad in [
            "",
            "GET",
            "GET f01",
            "GET f01 t x",
            "get f01 t",
            "GET  f01 t",
            "GET f/1 t",
            "PUT f01 t",
            &format!("GET {} t", "f".repeat(65)),
            &format!("GET f {}", "t".repeat(129)),
        ] {
            assert_eq!(parse_get(bad), Err(Refusal::BadRequest), "{bad:?}");
        }
        assert_eq!(
            Refusal::Used.line("the ticket was already used"),
            "ERR used the ticket was already used\n"
        );
    }

    #[test]
    fn headers_of_the_owner_and_the_relay() {
        assert_eq!(parse_header("OK"), Some(Header::Paired));
        assert_eq!(
            parse_header(&format!("OK 8388608 {SHA}")),
            Some(Header::File {
                size: 8_388_608,
                sha256: SHA.into()
            })
        );
        assert_eq!(
            parse_header("ERR used the ticket was already used"),
            Some(Header::Refused {
                code: "used".into(),
                text: "the ticket was already used".into()
            })
        );
        assert_eq!(
            parse_header("ERR busy"),
            Some(Header::Refused {
                code: "busy".into(),
                text: String::new()
            })
        );
        for bad in [
            "",
            "OK ",
            "OK 12",
            &format!("OK -1 {SHA}"),
            &format!("OK 1 {}", SHA.to_uppercase()),
            &format!("OK 99999999999999999999999 {SHA}"),
            &format!("OK 1 {SHA} extra"),
            "ERR ",
            "HELLO",
        ] {
            assert_eq!(parse_header(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_line_is_read_without_what_follows_and_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"OK 3 x\r\nabc").unwrap();
            stream.write_all(&vec![b'y'; MAX_LINE + 10]).unwrap();
            stream.write_all(b"\n").unwrap();
        });
        let stream = TcpStream::connect(addr).unwrap();
        assert_eq!(read_line(&stream, Duration::from_secs(5)).unwrap(), "OK 3 x");
        let mut three = [0u8; 3];
        (&stream).read_exact(&mut three).unwrap();
        assert_eq!(&three, b"abc");
        let long = read_line(&stream, Duration::from_secs(5)).unwrap_err();
        assert_eq!(long.kind(), io::ErrorKind::InvalidData);
        writer.join().unwrap();
    }

    #[test]
    fn a_silent_peer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _held = listener.accept().unwrap();
        let error = read_line(&stream, Duration::from_millis(100)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}

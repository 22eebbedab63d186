//! The PROXY protocol header (versions 1 and 2) a load balancer puts in
//! front of each connection it forwards (PROTOCOL.md 10.2), so per-address
//! limits and logs see the client's address, not the balancer's.
//!
//! Parsing is `ppp`'s; this module only reads exactly the header's bytes,
//! never past them (what follows is the client's first line), within a
//! deadline, so a balancer that stalls cannot hold a connection slot.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ppp::{v1, v2};
use thiserror::Error;

/// How long a trusted peer has to send the whole header.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// The longest version 1 header, `\r\n` included (the specification's).
const V1_MAX: usize = 107;
/// The first bytes of a version 2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a version 2 header, up to and including its length.
const V2_FIXED: usize = 16;

/// Why a trusted connection has no usable header: it is closed without a
/// word.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// The header did not arrive whole within [`HEADER_DEADLINE`], or the
    /// connection ended first.
    #[error("no complete PROXY header in time: {0}")]
    Incomplete(#[from] io::Error),
    /// What arrived is not a PROXY header.
    #[error("not a PROXY header: {0}")]
    Malformed(String),
}

/// Reads the PROXY header at the start of `stream` and returns the client's
/// address it carries; `None` when it carries none (a balancer's own
/// health check, `LOCAL`, `UNKNOWN`, a Unix socket): the connection's own
/// peer then stands for the client.
///
/// # Errors
/// [`ProxyError`] when the header is missing, malformed or late.
pub fn read_header(stream: &TcpStream) -> Result<Option<SocketAddr>, ProxyError> {
    let deadline = Instant::now() + HEADER_DEADLINE;
    let mut start = [0u8; 6];
    read_exact_by(stream, &mut start, deadline)?;
    let result = if start == *b"PROXY " {
        read_v1(stream, start, deadline)
    } else if start == V2_SIGNATURE[..6] {
        read_v2(stream, start, deadline)
    } else {
        Err(ProxyError::Malformed("it starts with neither signature".into()))
    };
    let _ = stream.set_read_timeout(None);
    result
}

/// Version 1: text up to `\r\n`, read one byte at a time so nothing after
/// it is consumed.
fn read_v1(stream: &TcpStream, start: [u8; 6], deadline: Instant) -> Result<Option<SocketAddr>, ProxyError> {
    let mut header = start.to_vec();
    while !header.ends_with(b"\r\n") {
        if header.len() >= V1_MAX {
            return Err(ProxyError::Malformed("a version 1 header longer than 107 bytes".into()));
        }
        let mut byte = [0u8; 1];
        read_exact_by(stream, &mut byte, deadline)?;
        header.push(byte[0]);
    }
    let parsed = v1::Header::try_from(header.as_slice()).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    Ok(match parsed.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
        v1::Addresses::Unknown => None,
    })
}

/// Version 2: a fixed part that gives the length of the rest.
fn read_v2(stream: &TcpStream, start: [u8; 6], deadline: Instant) -> Result<Option<SocketAddr>, ProxyError> {
    let mut header = vec![0u8; V2_FIXED];
    header[..6].copy_from_slice(&start);
    read_exact_by(stream, &mut header[6..], deadline)?;
    if header[..12] != V2_SIGNATURE {
        return Err(ProxyError::Malformed("a broken version 2 signature".into()));
    }
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    header.resize(V2_FIXED + length, 0);
    read_exact_by(stream, &mut header[V2_FIXED..], deadline)?;
    let parsed = v2::Header::try_from(header.as_slice()).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    if parsed.command == v2::Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        v2::Addresses::IPv6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    })
}

/// Fills `buf` from `stream`, failing once `deadline` passes.
fn read_exact_by(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    /// Sends `bytes` then `after` through a loopback connection and reads
    /// the header on the other side; returns the result and what is left.
    fn through(bytes: &[u8], after: &[u8]) -> (Result<Option<SocketAddr>, ProxyError>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(bytes).unwrap();
        client.write_all(after).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let (server, _) = listener.accept().unwrap();
        let result = read_header(&server);
        let mut rest = Vec::new();
        let _ = (&server).read_to_end(&mut rest);
        (result, rest)
    }

    #[test]
    fn version_1_gives_the_source_and_leaves_the_rest() {
        let (got, rest) = through(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 8000\r\n", b"LOGIN ana x\n");
        assert_eq!(got.unwrap(), Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(rest, b"LOGIN ana x\n");
        let (got, _) = through(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 8000\r\n", b"");
        assert_eq!(got.unwrap(), Some("[2001:db8::1]:4000".parse().unwrap()));
        let (got, _) = through(b"PROXY UNKNOWN\r\n", b"");
        assert_eq!(got.unwrap(), None);
    }

    #[test]
    fn version_2_gives_the_source_and_leaves_the_rest() {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "198.51.100.9:40000".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:8000".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let (got, rest) = through(&header, b"PING\n");
        assert_eq!(got.unwrap(), Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(rest, b"PING\n");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b"LOGIN ana x\n"[..],
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
            b"\r\n\r\n\0\r\nQUIT\nxx",
            b"PROXY",
        ] {
            let (got, _) = through(bad, b"");
            assert!(got.is_err(), "{:?} was accepted", String::from_utf8_lossy(bad));
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(through(long.as_bytes(), b"").0, Err(ProxyError::Malformed(_))));
    }
}

//! What a node offers the load balancer in front of it (PROTOCOL.md 10.1
//! and 10.2), on a single server with SQLite: `/health` and its bounds, and
//! the PROXY protocol from trusted and untrusted addresses.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{TestServer, http_get, registered, wait_until};

/// A server with health checks and `127.0.0.1` as a trusted proxy.
fn behind_a_proxy(extra: &[&str]) -> TestServer {
    let mut args = vec!["--health-addr", "127.0.0.1:0", "--trusted-proxy", "127.0.0.1"];
    args.extend_from_slice(extra);
    TestServer::start_with(&args)
}

/// Connects to `addr` from the loopback address `from` (127.0.0.0/8 is all
/// loopback, and only 127.0.0.1 is trusted).
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind a loopback source address");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Everything the server sends until it closes, within 10 s.
fn until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /health`, or `None` when the server is gone or going.
fn try_health(addr: SocketAddr) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Reads one line.
fn line(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).expect("a line") == 1 && byte[0] != b'\n' {
        out.push(byte[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn health_on_sqlite_answers_every_path_and_bounds_requests() {
    let mut server = TestServer::start_with(&["--health-addr", "127.0.0.1:0", "--node", "aula-3"]);
    let health = server.health.expect("a health address");
    let mut ana = registered(&server, "ana");
    let (id, _) = ana.say("hola");
    let (status, body) = http_get(health, "/health");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!(
            "{{\"status\":\"ok\",\"node\":\"aula-3\",\"db\":\"ok\",\"draining\":false,\"sessions\":1,\"last_id\":{id}}}"
        )
    );
    assert_eq!(
        http_get(health, "/health/nodes"),
        (
            200,
            "[{\"node\":\"aula-3\",\"sessions\":1,\"seen_ms_ago\":0}]".to_string()
        )
    );
    assert_eq!(http_get(health, "/health/ping"), (200, "pong".to_string()));
    assert_eq!(http_get(health, "/").0, 404);
    // Other methods, long lines, garbage.
    let raw = |request: &[u8]| {
        let mut stream = TcpStream::connect(health).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let _ = stream.write_all(request);
        until_closed(&mut stream)
    };
    assert!(raw(b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 405 "));
    let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    assert!(raw(long_line.as_bytes()).starts_with("HTTP/1.1 400 "));
    let long_header = format!("GET /health HTTP/1.1\r\nX-A: {}\r\n\r\n", "b".repeat(9000));
    assert!(raw(long_header.as_bytes()).starts_with("HTTP/1.1 400 "));
    assert!(raw(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    // 8 KiB is the most a line may hold, its CRLF apart; many headers are
    // fine.
    let at_limit = format!("GET /health/ping HTTP/1.1\r\nX-A: {}\r\n\r\n", "b".repeat(8192 - 5));
    assert!(raw(at_limit.as_bytes()).starts_with("HTTP/1.1 200 "));
    let over = format!("GET /health/ping HTTP/1.1\r\nX-A: {}\r\n\r\n", "b".repeat(8192 - 4));
    assert!(raw(over.as_bytes()).starts_with("HTTP/1.1 400 "));
    let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
    let many = format!("GET /health/ping HTTP/1.1\r\n{many}\r\n");
    assert!(raw(many.as_bytes()).starts_with("HTTP/1.1 200 "));
    // A request that never completes is answered 400 and closed within
    // 5 s (and a second later at most), while other checks keep being
    // answered at once; a connection that sends nothing is just closed.
    let mut slow = TcpStream::connect(health).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x")
        .expect("half a request");
    let mut silent = TcpStream::connect(health).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let started = Instant::now();
    let quick = Instant::now();
    assert_eq!(http_get(health, "/health/ping").0, 200);
    assert!(quick.elapsed() < Duration::from_secs(1));
    assert!(until_closed(&mut slow).starts_with("HTTP/1.1 400 "));
    assert!(started.elapsed() < Duration::from_secs(7), "{:?}", started.elapsed());
    assert_eq!(until_closed(&mut silent), "");
    // SIGTERM: 503 and draining from the moment it arrives, until the
    // process is gone. A session that does not read keeps the server
    // draining for a while (it waits for its output to go), and a prober
    // asks all the while.
    let mut lento = registered(&server, "lento");
    ana.expect("JOIN lento");
    let big = "x".repeat(2000);
    let lines: String = (0..250).map(|_| format!("SAY {big}\n")).collect();
    ana.send_raw(lines.as_bytes());
    for _ in 0..250 {
        ana.expect_prefix("OK SAY ");
    }
    // Megabytes of replies it does not read: far more than the sockets
    // hold, so its outbox still has them when the server stops.
    lento.send_raw("HISTORY 1000\n".repeat(10).as_bytes());
    lento.set_timeout(Duration::from_secs(30));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let unavailable = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let prober = {
        let (stop, answered, unavailable) = (
            std::sync::Arc::clone(&stop),
            std::sync::Arc::clone(&answered),
            std::sync::Arc::clone(&unavailable),
        );
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                if let Some(answer) = try_health(health) {
                    if answer.0 == 503 {
                        unavailable.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    }
                    answers.push(answer);
                    answered.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
            }
            answers
        })
    };
    assert!(wait_until(Duration::from_secs(5), || answered
        .load(std::sync::atomic::Ordering::Acquire)
        > 0));
    server.signal("TERM");
    ana.expect("BYE shutting-down server is shutting down");
    assert!(wait_until(Duration::from_secs(5), || {
        unavailable.load(std::sync::atomic::Ordering::Acquire) > 0
    }));
    drop(lento);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    stop.store(true, std::sync::atomic::Ordering::Release);
    let answers = prober.join().expect("the prober");
    let first_503 = answers
        .iter()
        .position(|(status, _)| *status == 503)
        .unwrap_or_else(|| panic!("no 503 seen while stopping: {answers:?}"));
    assert!(first_503 > 0, "200 before the signal");
    for (status, body) in &answers[first_503..] {
        assert_eq!(*status, 503, "{body}");
        assert!(
            body.contains("\"status\":\"unavailable\"") && body.contains("\"draining\":true"),
            "{body}"
        );
    }
}

#[test]
fn a_trusted_proxy_gives_the_clients_address_to_limits_and_logs() {
    let server = behind_a_proxy(&["--max-connections-per-address", "1", "--limit-loopback"]);
    // Version 1, then the protocol as usual.
    let mut first = connect_from([127, 0, 0, 1], server.addr);
    first
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8000\r\nPING\n")
        .expect("send");
    assert!(line(&mut first).starts_with("HELLO charla 1 "));
    assert_eq!(line(&mut first), "OK PING");
    // A second connection of the same client address is over its limit
    // (counted on the address the header carries, not the proxy's)...
    let mut second = connect_from([127, 0, 0, 1], server.addr);
    second
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51001 8000\r\n")
        .expect("send");
    assert_eq!(until_closed(&mut second), "BYE server-full too many connections\n");
    // ...while another client behind the same proxy is not (version 2).
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "198.51.100.9:40000".parse::<SocketAddr>().expect("an address"),
            "127.0.0.1:8000".parse::<SocketAddr>().expect("an address"),
        ),
    )
    .build()
    .expect("a v2 header");
    let mut third = connect_from([127, 0, 0, 1], server.addr);
    third.write_all(&header).expect("send");
    third.write_all(b"PING\n").expect("send");
    assert!(line(&mut third).starts_with("HELLO charla 1 "));
    assert_eq!(line(&mut third), "OK PING");
    assert!(wait_until(Duration::from_secs(2), || server
        .log()
        .contains("from 203.0.113.7:51000")));
    assert!(server.log().contains("from 198.51.100.9:40000"));
}

#[test]
fn a_trusted_connection_without_a_header_is_closed_without_a_word() {
    let server = behind_a_proxy(&[]);
    let mut no_header = connect_from([127, 0, 0, 1], server.addr);
    no_header.write_all(b"LOGIN ana secreto123\n").expect("send");
    assert_eq!(until_closed(&mut no_header), "");
    let mut broken = connect_from([127, 0, 0, 1], server.addr);
    broken.write_all(b"PROXY TCP4 not an address\r\n").expect("send");
    assert_eq!(until_closed(&mut broken), "");
    // Silent: closed within 5 s, still without HELLO.
    let mut silent = connect_from([127, 0, 0, 1], server.addr);
    let started = Instant::now();
    assert_eq!(until_closed(&mut silent), "");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[test]
fn an_untrusted_peer_is_direct_and_a_proxy_header_from_it_is_a_bad_line() {
    let server = behind_a_proxy(&[]);
    let mut direct = connect_from([127, 0, 0, 2], server.addr);
    assert!(line(&mut direct).starts_with("HELLO charla 1 "));
    direct
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8000\r\nPING\n")
        .expect("send");
    assert_eq!(line(&mut direct), "ERR - bad-request malformed command");
    assert_eq!(line(&mut direct), "OK PING");
    assert!(wait_until(Duration::from_secs(2), || server
        .log()
        .contains("from 127.0.0.2:")));
    assert!(!server.log().contains("203.0.113.7"));
}

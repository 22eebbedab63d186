//! Hostile input and abuse against the real server: garbage bytes, broken
//! UTF-8, endless lines, idle and half-closed sockets, readers that never
//! read, terminal escapes. In every case the server must answer what
//! PROTOCOL.md says (or nothing), keep its memory bounded, and leave every
//! other session alone: each test keeps two well-behaved logged-in sessions
//! ([`Bystanders`]) beside the hostile one and checks at the end that they
//! still talk, receive, and get `PING` answered promptly.
//!
//! Random input comes from a seeded generator, so a failure replays exactly.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use charla::core::validate;
use common::{Client, LINE_TIMEOUT, Msg, TestServer, ok_say, proc_status, registered, wait_for_log};

/// The server's default line limit (PROTOCOL.md 1).
const MAX_LINE: usize = 4096;
/// How long a bystander's `PING` may take to be answered while another
/// connection misbehaves. Generous for a debug build on two busy cores; an
/// unbounded queue or a blocked thread shows up as seconds, or never.
const PROMPT: Duration = Duration::from_secs(2);

/// Two well-behaved, logged-in sessions that watch over a hostile one: a
/// talker whose messages must still be stored and a listener that must
/// still receive them.
struct Bystanders {
    /// Logged in as `hablante`; sends the probes.
    talker: Client,
    /// Logged in as `oyente`; receives the probes and everything else.
    listener: Client,
    /// Probes sent so far, to tell them apart.
    probes: u32,
}

impl Bystanders {
    /// Registers both and waits until each knows of the other.
    fn join(server: &TestServer) -> Bystanders {
        let mut listener = registered(server, "oyente");
        let talker = registered(server, "hablante");
        // Presence comes through the journal, not in line with PING replies.
        listener.expect("JOIN hablante");
        Bystanders {
            talker,
            listener,
            probes: 0,
        }
    }

    /// Checks that both still work: the talker's `SAY` is acknowledged, the
    /// listener receives it, and both answer `PING` within [`PROMPT`].
    /// Returns every other line the listener received before the probe
    /// (presence, messages of the hostile session), for the test to judge;
    /// the talker must have received the very same lines.
    fn check(&mut self) -> Vec<String> {
        self.probes += 1;
        let probe = format!("sonda {}", self.probes);
        let tag = format!("@probe{} ", self.probes);
        self.talker.send(&format!("{tag}SAY {probe}"));
        let mut talker_saw = Vec::new();
        let id = loop {
            let line = self.talker.line();
            assert_clean(&line);
            match line.strip_prefix(&tag) {
                Some(reply) => break ok_say(reply).0,
                None => talker_saw.push(line),
            }
        };
        let mut others = Vec::new();
        loop {
            let line = self.listener.line();
            assert_clean(&line);
            match Msg::parse(&line) {
                Some(msg) if msg.id == id => {
                    assert_eq!((msg.user.as_str(), msg.text.as_str()), ("hablante", probe.as_str()));
                    break;
                }
                _ => others.push(line),
            }
        }
        // Events of the probe's own batch may follow its OK SAY.
        talker_saw.extend(timed_sync(&mut self.talker, "t"));
        assert_eq!(talker_saw, others, "the bystanders saw different events");
        let after = timed_sync(&mut self.listener, "l");
        assert!(after.is_empty(), "the listener got {after:?} after the probe");
        others
    }
}

/// `PING token` on `client`, asserting the answer comes within [`PROMPT`];
/// returns the lines queued before it.
fn timed_sync(client: &mut Client, token: &str) -> Vec<String> {
    let started = Instant::now();
    let before = client.sync(token);
    let took = started.elapsed();
    assert!(took < PROMPT, "PING took {took:?}");
    before
}

/// Asserts a server line holds no character PROTOCOL.md 5.2 refuses (a
/// TAB is allowed only inside a stored text, which these tests never use).
fn assert_clean(line: &str) {
    assert!(
        !line.chars().any(|c| c == '\t' || validate::is_refused(c)),
        "control character in a server line: {line:?}"
    );
}

/// SplitMix64: a tiny seeded generator, so random input replays exactly.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `len` bytes, each masked with `mask` (0xff: any byte, 0x7f: ASCII).
    fn bytes(&mut self, len: usize, mask: u8) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0] & mask).collect()
    }
}

/// How many replies the server owes for the complete lines of `data`: one
/// per line that is too long or not blank after dropping one CR
/// (PROTOCOL.md 1). Bytes after the last `\n` are not a line yet.
fn replies_owed(data: &[u8]) -> usize {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    lines.pop();
    lines
        .into_iter()
        .filter(|line| {
            if line.len() >= MAX_LINE {
                return true;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            !line.iter().all(|&b| b == b' ' || b == b'\t')
        })
        .count()
}

/// Sends `data` (ending in `\n`) and checks that exactly the owed replies
/// come back, each an untagged or tagged `ERR` with one of `codes`.
fn assert_garbage_refused(hostile: &mut Client, data: &[u8], codes: &[&str]) {
    assert_eq!(data.last(), Some(&b'\n'));
    let owed = replies_owed(data);
    hostile.send_raw(data);
    for _ in 0..owed {
        let line = hostile.line();
        assert_clean(&line);
        let body = match line.strip_prefix('@') {
            Some(tagged) => tagged.split_once(' ').map_or("", |(_, body)| body),
            None => &line,
        };
        let code = body.strip_prefix("ERR - ").and_then(|rest| rest.split(' ').next());
        assert!(
            code.is_some_and(|code| codes.contains(&code)),
            "unexpected reply to garbage: {line:?}"
        );
    }
    // Nothing more was owed: the PING's answer comes next.
    assert_eq!(hostile.sync("fin"), Vec::<String>::new());
}

#[test]
fn random_bytes_including_nul_get_one_error_per_line_and_harm_no_one() {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = server.connect();
    for seed in [1, 2, 3, 0x5eed] {
        let mut data = SplitMix64(seed).bytes(64 * 1024, 0xff);
        assert!(data.contains(&0), "seed {seed}: the input must hold NUL bytes");
        data.push(b'\n');
        assert_garbage_refused(&mut hostile, &data, &["bad-encoding", "bad-request", "line-too-long"]);
    }
    assert_eq!(others.check(), Vec::<String>::new());
}

#[test]
fn random_ascii_with_controls_gets_bad_request_per_line() {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = registered(&server, "malo");
    for seed in [7, 8, 9] {
        let mut data = SplitMix64(seed).bytes(64 * 1024, 0x7f);
        data.push(b'\n');
        assert_garbage_refused(&mut hostile, &data, &["bad-request", "line-too-long"]);
    }
    assert_eq!(hostile.history("10"), Vec::<Msg>::new(), "garbage was stored");
    assert_eq!(others.check(), ["JOIN malo"]);
}

#[test]
fn lone_cr_and_cr_without_lf_do_not_end_lines() {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = registered(&server, "malo");
    // A lone CR is an empty line: ignored.
    hostile.send_raw(b"\r\n");
    assert_eq!(hostile.sync("a"), Vec::<String>::new());
    // Only one CR is dropped; the other is a byte of the line.
    hostile.send_raw(b"\r\r\n");
    hostile.expect_prefix("ERR - bad-request ");
    hostile.send_raw(b"PING a\r\r\n");
    hostile.expect_prefix("ERR PING bad-request ");
    hostile.send_raw(b"\rPING b\n");
    hostile.expect_prefix("ERR - bad-request ");
    hostile.send_raw(b"PI\rNG\n");
    hostile.expect_prefix("ERR - bad-request ");
    // A CR that no LF follows ends nothing: this is one line.
    hostile.send_raw(b"PING c\r");
    thread::sleep(Duration::from_millis(50));
    hostile.send_raw(b"PING d\n");
    hostile.expect_prefix("ERR PING bad-request ");
    // A CRLF split across two sends is still one line end.
    hostile.send_raw(b"PING e\r");
    thread::sleep(Duration::from_millis(50));
    hostile.send_raw(b"\n");
    hostile.expect("OK PING e");
    // In a text a CR is a refused control character.
    hostile.send_raw(b"@t1 SAY hola\rmundo\n");
    hostile.expect_prefix("@t1 ERR SAY invalid-text ");
    hostile.send_raw(b"@t2 SAY hola\r\r\n");
    hostile.expect_prefix("@t2 ERR SAY invalid-text ");
    hostile.send_raw(b"@t3 SAY hola\r\n");
    let (id, _) = ok_say(&hostile.expect_prefix("@t3 OK SAY "));
    let stored = hostile.history("10");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!((stored[0].id, stored[0].text.as_str()), (id, "hola"));
    let seen = others.check();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], "JOIN malo");
    assert_eq!(
        Msg::parse(&seen[1]).map(|m| (m.id, m.text)),
        Some((id, "hola".to_string()))
    );
}

/// Sends each of `lines` (with `\n`) on a logged-in session and expects
/// `ERR - bad-encoding` for each, with no tag whatever the line says; then
/// checks nothing was stored and nobody received anything.
fn assert_bad_encoding(lines: &[&[u8]]) {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = registered(&server, "malo");
    for line in lines {
        for framed in [
            [*line, b"\n"].concat(),
            [b"@e1 SAY a", *line, b"b\n"].concat(),
            [b"PING ", *line, b"\n"].concat(),
        ] {
            hostile.send_raw(&framed);
            let reply = hostile.line();
            assert!(reply.starts_with("ERR - bad-encoding "), "{framed:x?} got {reply:?}");
            assert_clean(&reply);
        }
    }
    assert_eq!(
        hostile.history("10"),
        Vec::<Msg>::new(),
        "a badly encoded line was stored"
    );
    assert_eq!(others.check(), ["JOIN malo"]);
}

#[test]
fn invalid_utf8_is_bad_encoding_and_never_stored() {
    assert_bad_encoding(&[
        b"\xff",
        b"\xfe\xff",
        b"\x80",
        b"caf\xe9",              // Latin-1
        b"\xc3\x28",             // a lead byte without its continuation
        b"\xe2\x28\xa1",         // a bad second byte
        b"\xe2\x82",             // truncated at the end of the line
        b"\xf0\x28\x8c\xbc",     // a bad second byte of four
        b"\xf8\x88\x80\x80\x80", // five-byte form
        b"\xf4\x90\x80\x80",     // above U+10FFFF
        b"\x9b",                 // a raw C1 CSI byte
    ]);
}

#[test]
fn overlong_utf8_encodings_are_bad_encoding() {
    assert_bad_encoding(&[
        b"\xc0\xaf",         // '/' in two bytes
        b"\xc1\xbf",         // DEL in two bytes
        b"\xc0\x80",         // NUL in two bytes ("modified UTF-8")
        b"\xe0\x80\xaf",     // '/' in three bytes
        b"\xe0\x9f\xbf",     // U+07FF in three bytes
        b"\xf0\x80\x80\xaf", // '/' in four bytes
        b"\xf0\x8f\xbf\xbf", // U+FFFF in four bytes
    ]);
}

#[test]
fn utf8_encoded_surrogates_are_bad_encoding() {
    assert_bad_encoding(&[
        b"\xed\xa0\x80",             // U+D800
        b"\xed\xbf\xbf",             // U+DFFF
        b"\xed\xa0\xbd\xed\xb8\x80", // CESU-8 pair for U+1F600
    ]);
}

#[test]
fn a_one_mib_line_without_newline_is_refused_once_and_not_stored() {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = registered(&server, "malo");
    let mut line = b"@big SAY ".to_vec();
    line.resize(1 << 20, b'x');
    hostile.send_raw(&line);
    hostile.send_raw(b"\n");
    // Over-long: no tag, no verb, and only once.
    hostile.expect_prefix("ERR - line-too-long ");
    assert_eq!(hostile.sync("despues"), Vec::<String>::new());
    assert_eq!(hostile.history("10"), Vec::<Msg>::new());
    assert_eq!(others.check(), ["JOIN malo"]);
}

/// A 100 MiB line without a newline must cost the server its line buffer,
/// not 100 MiB: its resident memory is sampled after every MiB sent and
/// may not grow by more than [`RSS_MARGIN_KIB`].
#[test]
fn a_hundred_mib_line_keeps_the_servers_memory_flat() {
    const RSS_MARGIN_KIB: u64 = 8 * 1024;
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = server.connect();
    assert_eq!(hostile.sync("antes"), Vec::<String>::new());
    let baseline = proc_status(server.pid(), "VmRSS");
    let chunk = vec![b'y'; 1 << 20];
    let mut peak = baseline;
    let started = Instant::now();
    for _ in 0..100 {
        hostile.send_raw(&chunk);
        peak = peak.max(proc_status(server.pid(), "VmRSS"));
    }
    hostile.send_raw(b"\nPING fin\n");
    hostile.expect_prefix("ERR - line-too-long ");
    hostile.expect("OK PING fin");
    let after = proc_status(server.pid(), "VmRSS");
    eprintln!(
        "100 MiB line in {:?}: server VmRSS baseline {baseline} KiB, peak {peak} KiB, after {after} KiB",
        started.elapsed()
    );
    assert!(
        peak.max(after) < baseline + RSS_MARGIN_KIB,
        "server memory grew from {baseline} KiB to {peak} KiB (after: {after} KiB)"
    );
    assert_eq!(others.check(), Vec::<String>::new());
}

#[test]
fn thousands_of_empty_lines_get_no_reply() {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = server.connect();
    let mut blank = Vec::new();
    for i in 0..10_000 {
        blank.extend_from_slice(match i % 4 {
            0 => &b"\n"[..],
            1 => b"\r\n",
            2 => b"   \n",
            _ => b"\t \t\r\n",
        });
    }
    hostile.send_raw(&blank);
    // The PING's answer is the first line: nothing was said to the blanks.
    assert_eq!(hostile.sync("vacio"), Vec::<String>::new());
    assert_eq!(others.check(), Vec::<String>::new());
}

/// The usernames a `WHO` lists, checking its count.
fn who(client: &mut Client) -> Vec<String> {
    client.send("WHO");
    let mut users = Vec::new();
    loop {
        let line = client.line_skipping_presence();
        if let Some(count) = line.strip_prefix("OK WHO ") {
            assert_eq!(count, users.len().to_string());
            return users;
        }
        let user = line.strip_prefix("USER ").and_then(|rest| rest.split(' ').next());
        users.push(user.unwrap_or_else(|| panic!("WHO line {line:?}")).to_string());
    }
}

/// Drops `client` after `bytes` and waits until the server has logged the
/// connection closed.
fn send_and_vanish(server: &TestServer, mut client: Client, bytes: &[u8]) {
    let peer = client.socket().local_addr().expect("local address");
    client.send_raw(bytes);
    drop(client);
    wait_for_log(server, &format!("from {peer} closed"));
}

#[test]
fn a_partial_line_then_disconnect_before_login_has_no_effect() {
    let server = TestServer::start_with_env(&[], &[("RUST_LOG", "info")]);
    let mut others = Bystanders::join(&server);
    send_and_vanish(&server, server.connect(), b"LOGIN oyente secreto12");
    send_and_vanish(&server, server.connect(), b"REGISTER nadie secreto123 Nadie");
    // No LEAVE (nobody was logged in), no JOIN, no account.
    assert_eq!(others.check(), Vec::<String>::new());
    assert_eq!(who(&mut others.talker), ["hablante", "oyente"]);
}

#[test]
fn a_partial_line_then_disconnect_after_login_stores_nothing_and_leaves_once() {
    let server = TestServer::start_with_env(&[], &[("RUST_LOG", "info")]);
    let mut others = Bystanders::join(&server);
    let hostile = registered(&server, "parcial");
    send_and_vanish(&server, hostile, b"SAY nunca termina");
    assert_eq!(others.check(), ["JOIN parcial", "LEAVE parcial"]);
    let stored = others.talker.history("10");
    assert!(stored.iter().all(|m| m.user != "parcial"), "{stored:?}");
}

/// Reads from `client` until the server closes; expects exactly one line,
/// `BYE login-timeout`, about `timeout` after `connected`.
fn assert_login_timeout(client: &mut Client, connected: Instant, timeout: Duration) {
    let (lines, partial) = client.read_to_close(LINE_TIMEOUT);
    let took = connected.elapsed();
    let byes: Vec<&String> = lines.iter().filter(|l| l.starts_with("BYE ")).collect();
    assert_eq!(byes.len(), 1, "{lines:?}");
    assert!(byes[0].starts_with("BYE login-timeout "), "{lines:?}");
    assert_eq!(lines.last(), Some(byes[0]), "nothing may follow the BYE");
    assert!(partial.is_empty(), "{partial:?}");
    assert!(
        took >= timeout - Duration::from_millis(100) && took < timeout + Duration::from_secs(2),
        "closed after {took:?} for a {timeout:?} login timeout"
    );
}

#[test]
fn a_connection_that_sends_nothing_is_told_login_timeout() {
    let server = TestServer::start_with(&["--login-timeout", "1"]);
    let mut others = Bystanders::join(&server);
    let connected = Instant::now();
    let mut silent = server.connect();
    assert_login_timeout(&mut silent, connected, Duration::from_secs(1));
    // The bystanders, connected for longer than the timeout, are logged in
    // and unaffected.
    assert_eq!(others.check(), Vec::<String>::new());
}

#[test]
fn a_connection_that_trickles_a_line_is_still_told_login_timeout() {
    let server = TestServer::start_with(&["--login-timeout", "1"]);
    let mut others = Bystanders::join(&server);
    let connected = Instant::now();
    let mut trickler = server.connect();
    let mut writer = trickler.socket().try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = Arc::clone(&stop);
    // One byte of a never-ending line every 50 ms, for at most 5 s.
    let dripping = thread::spawn(move || {
        for _ in 0..100 {
            if stop_writer.load(Ordering::Relaxed) || writer.write_all(b"P").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    assert_login_timeout(&mut trickler, connected, Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    dripping.join().expect("the dripping thread");
    assert_eq!(others.check(), Vec::<String>::new());
}

#[test]
fn a_connection_that_only_pings_is_still_told_login_timeout() {
    let server = TestServer::start_with(&["--login-timeout", "1"]);
    let mut others = Bystanders::join(&server);
    let connected = Instant::now();
    let mut pinger = server.connect();
    let mut answered = 0;
    while connected.elapsed() < Duration::from_millis(700) {
        pinger.send("PING");
        pinger.expect("OK PING");
        answered += 1;
        thread::sleep(Duration::from_millis(50));
    }
    assert!(answered > 5);
    assert_login_timeout(&mut pinger, connected, Duration::from_secs(1));
    assert_eq!(others.check(), Vec::<String>::new());
}

/// Reads one line from a bare socket (one file descriptor per connection,
/// where a [`Client`] takes two), byte by byte: it is short.
fn read_line_from(mut stream: &TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0];
    while line.last() != Some(&b'\n') {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("no line from an idle connection: {other:?} after {line:?}"),
        }
    }
    String::from_utf8(line).expect("UTF-8")
}

/// Opens `count` connections that only read `HELLO`, checks the bystanders
/// and one idle connection still get prompt answers, then closes them all
/// and checks again.
fn idle_connections(server: &TestServer, count: usize) {
    let mut others = Bystanders::join(server);
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..count)
        .map(|_| {
            let stream = TcpStream::connect(server.addr).expect("connect");
            stream.set_read_timeout(Some(LINE_TIMEOUT)).expect("read timeout");
            assert!(read_line_from(&stream).starts_with("HELLO charla 1 "));
            stream
        })
        .collect();
    eprintln!(
        "{count} idle connections open in {:?}; server: {} threads, VmRSS {} KiB",
        started.elapsed(),
        proc_status(server.pid(), "Threads"),
        proc_status(server.pid(), "VmRSS")
    );
    assert_eq!(others.check(), Vec::<String>::new());
    let mut last = idle.last().expect("at least one");
    let pinged = Instant::now();
    last.write_all(b"PING aqui\n").expect("send PING");
    assert_eq!(read_line_from(last), "OK PING aqui\n");
    assert!(pinged.elapsed() < PROMPT, "PING took {:?}", pinged.elapsed());
    drop(idle);
    assert_eq!(others.check(), Vec::<String>::new());
}

#[test]
fn five_hundred_idle_connections_do_not_slow_anyone() {
    let server = TestServer::start();
    idle_connections(&server, 500);
}

/// The soak variant: 10,000 idle connections (the default connection limit)
/// besides the bystanders. The test and the server each hold 10,000
/// sockets, so both need an open-file limit above that (the usual default
/// is 1024; the server inherits the test's):
///
/// ```text
/// ulimit -n 20000 && cargo test --release --test hostile -- --ignored ten_thousand
/// ```
#[test]
#[ignore = "soak: needs `ulimit -n 20000`; see the doc comment"]
fn ten_thousand_idle_connections_soak() {
    let server = TestServer::start_with(&["--max-clients", "10010"]);
    idle_connections(&server, 10_000);
}

#[test]
fn a_half_closed_socket_gets_its_say_acknowledged_and_stored() {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut half = registered(&server, "medio");
    half.send("@h1 SAY adiós a medias");
    half.shutdown_write();
    let (lines, partial) = half.read_to_close(LINE_TIMEOUT);
    assert!(partial.is_empty(), "{partial:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (id, _) = ok_say(lines[0].strip_prefix("@h1 ").expect("the tagged reply"));
    let seen = others.check();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], "JOIN medio");
    let msg = Msg::parse(&seen[1]).expect("the half-closed session's MSG");
    assert_eq!(
        (msg.id, msg.user.as_str(), msg.text.as_str()),
        (id, "medio", "adiós a medias")
    );
    assert_eq!(seen[2], "LEAVE medio");
    let stored = others.talker.history("10");
    assert_eq!(
        stored
            .iter()
            .filter(|m| m.id == id && m.text == "adiós a medias")
            .count(),
        1
    );
}

/// What one talker of the slow-consumer test saw.
struct TalkerReport {
    /// Its own messages, acknowledged.
    acked: usize,
    /// Messages of the other talkers it received, all in id order.
    received: usize,
    /// The connection, still open.
    client: Client,
}

/// Sends `count` big messages pipelined (at most `window` unacknowledged)
/// and reads everything meanwhile, until every own message is acknowledged
/// and every other talker's message received.
fn talk(mut client: Client, count: usize, expected: usize, window: usize, padding: &str) -> TalkerReport {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut sent, mut acked, mut received, mut last_id) = (0, 0, 0, 0);
    while acked < count || received < expected {
        assert!(
            Instant::now() < deadline,
            "talker stuck: {acked} acked, {received} received"
        );
        while sent < count && sent - acked < window {
            client.send(&format!("SAY {} {padding}", common::now_ms()));
            sent += 1;
        }
        let line = client.line();
        if line.starts_with("OK SAY ") {
            acked += 1;
        } else if let Some(msg) = Msg::parse(&line) {
            assert!(msg.id > last_id, "out of order: {} after {last_id}", msg.id);
            last_id = msg.id;
            received += 1;
        } else {
            assert!(
                line.starts_with("JOIN ") || line.starts_with("LEAVE "),
                "talker got {line:?}"
            );
        }
    }
    TalkerReport {
        acked,
        received,
        client,
    }
}

/// A session that never reads while six others send big messages at full
/// speed: the others' messages all arrive, in order and quickly; the slow
/// one is cut off (the server logs it), having received a gapless prefix of
/// the messages; it leaves, and nobody waited for it.
///
/// Volume: the slow one can hold its outbox (1 MiB) plus the kernel's
/// socket buffers (up to `net.ipv4.tcp_wmem`'s 4 MiB on the server's side):
/// 6 × 180 messages of about 8 KB (2,000 four-byte characters, hence
/// `--max-line 16384`) is 8.6 MB, well past that, while each talker stays
/// within the message burst of PROTOCOL.md 5.5.
#[test]
fn a_slow_consumer_is_cut_off_and_the_others_keep_up() {
    const TALKERS: usize = 6;
    const EACH: usize = 180;
    let server = TestServer::start_with_env(&["--max-line", "16384"], &[("RUST_LOG", "info")]);
    let mut slow = registered(&server, "lento");
    let mut listener = registered(&server, "oyente");
    let talkers: Vec<Client> = (0..TALKERS).map(|i| registered(&server, &format!("t{i}"))).collect();
    // The listener knows everyone before the storm.
    for i in 0..TALKERS {
        listener.expect(&format!("JOIN t{i}"));
    }
    let padding = "😀".repeat(1980);

    let (done, latencies) = mpsc::channel();
    let listening = thread::spawn(move || {
        let mut ids = Vec::new();
        let mut worst = Duration::ZERO;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut left_slow = false;
        while ids.len() < TALKERS * EACH || !left_slow {
            assert!(Instant::now() < deadline, "listener stuck at {} messages", ids.len());
            let line = listener.line();
            if let Some(msg) = Msg::parse(&line) {
                let sent: i64 = msg
                    .text
                    .split(' ')
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .expect("a send time");
                worst = worst.max(Duration::from_millis(
                    u64::try_from(common::now_ms() - sent).unwrap_or(0),
                ));
                assert!(ids.last().is_none_or(|&last| msg.id > last), "out of order");
                ids.push(msg.id);
            } else if line == "LEAVE lento" {
                left_slow = true;
            } else {
                panic!("listener got {line:?}");
            }
        }
        let _ = done.send(worst);
        (listener, ids)
    });
    let started = Instant::now();
    let talking: Vec<_> = talkers
        .into_iter()
        .map(|client| {
            let padding = padding.clone();
            thread::spawn(move || talk(client, EACH, (TALKERS - 1) * EACH, 16, &padding))
        })
        .collect();
    let mut still_here = Vec::new();
    for talker in talking {
        let report = talker.join().expect("a talker");
        assert_eq!((report.acked, report.received), (EACH, (TALKERS - 1) * EACH));
        still_here.push(report.client);
    }
    let (mut listener, ids) = listening.join().expect("the listener");
    let worst = latencies.recv().expect("the listener's worst latency");
    eprintln!(
        "{} messages of {} bytes to {TALKERS} talkers and a listener in {:?}; worst delivery latency {worst:?}",
        TALKERS * EACH,
        padding.len() + 14,
        started.elapsed()
    );
    assert!(worst < Duration::from_secs(2), "delivery took up to {worst:?}");

    let log = wait_for_log(&server, "slow consumer");
    assert!(log.contains("cut off as a slow consumer"), "{log}");
    // What the slow one got before the cut: a gapless prefix, then at most
    // a BYE slow-consumer, then the end.
    let (lines, _partial) = slow.read_to_close(LINE_TIMEOUT);
    let got: Vec<i64> = lines.iter().filter_map(|l| Msg::parse(l)).map(|m| m.id).collect();
    assert!(
        !got.is_empty() && got.len() < ids.len(),
        "slow got {} of {}",
        got.len(),
        ids.len()
    );
    assert_eq!(got, ids[..got.len()], "the slow consumer's messages have a gap");
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        assert!(
            line.starts_with("MSG ") || line.starts_with("JOIN ") || (last && line.starts_with("BYE slow-consumer ")),
            "slow consumer got {line:?}"
        );
    }
    assert_eq!(who(&mut listener), ["oyente", "t0", "t1", "t2", "t3", "t4", "t5"]);
    drop(still_here);
}

/// Texts that would move the cursor, clear the screen, ring, rewrite or
/// reorder what a terminal shows.
const ESCAPES: &[&str] = &[
    "\u{1b}[2Jborrado",
    "campana\u{7}",
    "atrás\u{8}\u{8}\u{8}",
    "\u{9b}31mrojo",
    "\u{202e}odnum",
    "línea\u{2028}nueva",
    "nulo\u{0}",
    "borrar\u{7f}",
    "\u{2066}aislado\u{2069}",
    "\u{1b}]0;título\u{7}",
];

#[test]
fn escape_sequences_in_say_are_refused_and_reach_no_one() {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = registered(&server, "malo");
    for (i, text) in ESCAPES.iter().enumerate() {
        hostile.send(&format!("@e{i} SAY {text}"));
        let reply = hostile.line();
        assert!(
            reply.starts_with(&format!("@e{i} ERR SAY invalid-text ")),
            "{text:?}: {reply:?}"
        );
        assert_clean(&reply);
    }
    // And the same with a valid tag reused afterwards: the refusals did not
    // use it up.
    hostile.send("@e0 SAY limpio");
    ok_say(&hostile.expect_prefix("@e0 OK SAY "));
    let stored = hostile.history("10");
    assert_eq!(stored.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["limpio"]);
    let seen = others.check();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], "JOIN malo");
    assert_eq!(Msg::parse(&seen[1]).map(|m| m.text), Some("limpio".to_string()));
}

#[test]
fn escape_sequences_in_full_names_are_refused_and_reach_no_one() {
    let server = TestServer::start();
    let mut others = Bystanders::join(&server);
    let mut hostile = server.connect();
    for (i, name) in ESCAPES.iter().enumerate() {
        hostile.send(&format!("@n{i} REGISTER malo{i} secreto123 Ana {name}"));
        let reply = hostile.line();
        assert!(
            reply.starts_with(&format!("@n{i} ERR REGISTER invalid-name ")),
            "{name:?}: {reply:?}"
        );
        assert_clean(&reply);
    }
    // No account was created: the names are free, and nobody joined.
    hostile.register("malo0", "secreto123", "Ana Limpia");
    assert_eq!(others.check(), ["JOIN malo0"]);
}

/// The client is the second line of defence: a hostile or broken server
/// (played by a script) sends a message full of escapes, and the `charla`
/// binary must print the text without any of them.
#[test]
fn the_client_strips_escapes_a_server_sends() {
    let evil = "\u{1b}[2Jhola\u{7}\u{9b}31m\u{202e}mundo\u{1b}]0;x\u{7}";
    let addr = common::scripted_server(move |line| {
        let (tag, command) = line.split_once(' ')?;
        let verb = command.split(' ').next()?;
        let reply = match verb {
            "LOGIN" => format!("{tag} OK LOGIN ana Ana\n"),
            // A real server never sends this, least of all unasked.
            "HISTORY" => format!("{tag} OK HISTORY 0\nMSG 1 1 evil {evil}\n"),
            "QUIT" => format!("{tag} OK QUIT\n"),
            _ => format!("{tag} ERR {verb} bad-request malformed command\n"),
        };
        Some(reply.into_bytes())
    });
    let mut charla = Command::new(env!("CARGO_BIN_EXE_charla"))
        .args(["--server", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("charla starts");
    let mut stdin = charla.stdin.take().expect("piped stdin");
    let output = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = charla.stdout.take().expect("piped stdout");
    let sink = Arc::clone(&output);
    let reading = thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock().expect("output").extend_from_slice(&buf[..n]);
        }
    });
    stdin.write_all(b"1\nana\nsecreto123\n").expect("type the login");
    // Stdin stays open until the message is shown.
    let shown = common::wait_until(LINE_TIMEOUT, || {
        String::from_utf8_lossy(&output.lock().expect("output")).contains("mundo")
    });
    stdin.write_all(b"salir\n").expect("type salir");
    drop(stdin);
    let exited = common::wait_until(LINE_TIMEOUT, || charla.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = charla.kill();
    }
    let _ = charla.wait();
    reading.join().expect("the stdout reader");
    let mut stderr = String::new();
    if let Some(mut err) = charla.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let out = output.lock().expect("output").clone();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        shown && exited,
        "charla did not show the message and exit: {text:?} {stderr:?}"
    );
    assert!(text.contains("hola"), "{text:?}");
    assert!(!out.contains(&0x1b), "an ESC reached the terminal: {text:?}");
    assert!(!out.contains(&0x07), "a BEL reached the terminal: {text:?}");
    for refused in ["\u{9b}", "\u{202e}"] {
        assert!(!text.contains(refused), "{refused:?} reached the terminal: {text:?}");
    }
}

//! The abuse limits of PROTOCOL.md 5.5 against the real binary: message
//! rate, login failures per name and per address, registrations and
//! connections per address, and the loopback exemption.

mod common;

use std::time::Duration;

use common::{TestServer, registered};

#[test]
fn a_burst_of_200_never_trips_the_default_message_limit() {
    // The harness turns the limit off unless a test names it: name the default.
    let server = TestServer::start_with(&["--msg-rate", "20", "--msg-burst", "200"]);
    let mut ana = registered(&server, "ana");
    let burst: String = (0..200).map(|i| format!("SAY burst {i}\n")).collect();
    ana.send_raw(burst.as_bytes());
    for i in 0..200 {
        let line = ana.line();
        assert!(line.starts_with("OK SAY "), "message {i}: {line}");
    }
}

#[test]
fn messages_over_the_rate_are_refused_unstored_and_keep_their_tag() {
    let server = TestServer::start_with(&["--msg-rate", "2", "--msg-burst", "3"]);
    let mut ana = registered(&server, "ana");
    for i in 0..3 {
        ana.send(&format!("@m{i} SAY hola {i}"));
        ana.expect_prefix(&format!("@m{i} OK SAY "));
    }
    ana.send("@late SAY too fast");
    ana.expect("@late ERR SAY rate-limited too many attempts, retry later");
    ana.send("PING");
    ana.expect("OK PING");
    // Half a second refills one message at 2 per second.
    std::thread::sleep(Duration::from_millis(600));
    ana.send("@late SAY too fast");
    ana.expect_prefix("@late OK SAY ");
    ana.send("HISTORY 10");
    let mut bodies = Vec::new();
    loop {
        let line = ana.line();
        if line.starts_with("OK HISTORY") {
            assert_eq!(line, "OK HISTORY 4");
            break;
        }
        bodies.push(line.splitn(5, ' ').nth(4).unwrap_or_default().to_string());
    }
    assert_eq!(bodies, ["hola 0", "hola 1", "hola 2", "too fast"]);
}

#[test]
fn a_zero_message_rate_means_no_limit() {
    let server = TestServer::start_with(&["--msg-rate", "0", "--msg-burst", "1"]);
    let mut ana = registered(&server, "ana");
    let many: String = (0..300).map(|i| format!("SAY m{i}\n")).collect();
    ana.send_raw(many.as_bytes());
    for _ in 0..300 {
        ana.expect_prefix("OK SAY ");
    }
}

#[test]
fn failed_logins_throttle_the_name_even_for_the_right_password() {
    let server = TestServer::start_with(&["--login-failures-per-account", "3"]);
    drop(registered(&server, "ana"));
    let mut c = server.connect();
    for _ in 0..3 {
        c.send("LOGIN ana wrong-password");
        c.expect("ERR LOGIN bad-credentials wrong username or password");
    }
    c.send("LOGIN ANA secreto123");
    c.expect("ERR LOGIN rate-limited too many attempts, retry later");
    // Unknown names are counted the same way, so the throttle does not
    // tell which accounts exist.
    for _ in 0..3 {
        c.send("LOGIN nadie wrong-password");
        c.expect("ERR LOGIN bad-credentials wrong username or password");
    }
    c.send("LOGIN nadie wrong-password");
    c.expect("ERR LOGIN rate-limited too many attempts, retry later");
    // Another name is not affected.
    drop(registered(&server, "juan"));
    c.login("juan", "secreto123");
    assert!(server.log().contains("login rate-limited"));
}

#[test]
fn failed_logins_throttle_a_limited_address_across_names() {
    let server = TestServer::start_with(&["--limit-loopback", "--login-failures-per-address", "2"]);
    let mut c = server.connect();
    c.send("LOGIN uno wrong-password");
    c.expect_prefix("ERR LOGIN bad-credentials");
    c.send("LOGIN dos wrong-password");
    c.expect_prefix("ERR LOGIN bad-credentials");
    c.send("LOGIN tres wrong-password");
    c.expect("ERR LOGIN rate-limited too many attempts, retry later");
}

#[test]
fn registrations_per_address_are_limited_when_loopback_is_limited() {
    let server = TestServer::start_with(&["--limit-loopback", "--registrations-per-address", "2"]);
    drop(registered(&server, "uno"));
    drop(registered(&server, "dos"));
    let mut c = server.connect();
    c.send("REGISTER tres secreto123 Tres");
    c.expect("ERR REGISTER rate-limited too many attempts, retry later");
    // Value errors come before the limit (PROTOCOL.md 2's order).
    c.send("REGISTER tres short Tres");
    c.expect_prefix("ERR REGISTER invalid-password");
}

#[test]
fn connections_per_address_are_limited_when_loopback_is_limited() {
    let server = TestServer::start_with(&["--limit-loopback", "--max-connections-per-address", "2"]);
    let first = server.connect();
    let _second = server.connect();
    let mut third = server.connect_raw();
    third.expect("BYE server-full too many connections");
    third.expect_eof();
    drop(first);
    // The slot is given back once the first session has ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = server.connect_raw();
        let line = again.line();
        if line.starts_with("HELLO ") {
            break;
        }
        assert_eq!(line, "BYE server-full too many connections");
        assert!(std::time::Instant::now() < deadline, "the slot was never given back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn loopback_is_exempt_from_per_address_limits_by_default() {
    let server = TestServer::start_with(&[
        "--max-connections-per-address",
        "2",
        "--registrations-per-address",
        "1",
        "--login-failures-per-address",
        "1",
    ]);
    let clients: Vec<_> = (0..6).map(|i| registered(&server, &format!("u{i}"))).collect();
    assert_eq!(clients.len(), 6);
    let mut c = server.connect();
    for name in ["a1", "a2", "a3"] {
        c.send(&format!("LOGIN {name} wrong-password"));
        c.expect_prefix("ERR LOGIN bad-credentials");
    }
}

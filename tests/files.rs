//! Sharing files (PROTOCOL.md 11) against the real server with raw
//! sessions: the rules of `SHARE`, `FILES`, `UNSHARE`, `FETCH` and
//! `ENDPOINT`, offers ending with their session, the relay piping a
//! multi-megabyte file between two raw peers with its tickets and limits,
//! and `FETCH FILEID RELAY` sending a direct offer through it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Client, TestServer, registered, wait_until};

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A listing's body and final line.
fn listing(client: &mut Client, line: &str) -> (Vec<String>, String) {
    client.send(line);
    let mut body = Vec::new();
    loop {
        let got = client.line();
        if got.starts_with("JOIN ") || got.starts_with("LEAVE ") {
            continue;
        }
        if got.starts_with("OK ") || got.starts_with("ERR ") || got.starts_with('@') {
            return (body, got);
        }
        body.push(got);
    }
}

/// `SHARE`, expecting `OK SHARE FILEID` exactly; returns the id.
fn share(client: &mut Client, size: u64, name: &str) -> String {
    client.send(&format!("SHARE {size} {SHA} {name}"));
    let reply = client.line_skipping_presence();
    let words: Vec<&str> = reply.split(' ').collect();
    assert!(reply.starts_with("OK SHARE ") && words.len() == 3, "{reply}");
    let id = words[2].to_string();
    assert!(
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{reply}"
    );
    id
}

/// `FETCH`, expecting `OK FETCH FILEID TICKET HOST:PORT`; returns the ticket
/// and address.
fn fetch(client: &mut Client, id: &str) -> (String, String) {
    fetch_with(client, id, &format!("FETCH {id}"))
}

/// `line` (a `FETCH` of `id`, perhaps with `RELAY`), expecting `OK FETCH
/// FILEID TICKET HOST:PORT`; returns the ticket and address.
fn fetch_with(client: &mut Client, id: &str, line: &str) -> (String, String) {
    client.send(line);
    // Fetching one's own relayed offer invites oneself to the relay: that
    // RELAY event may come before the reply.
    let reply = loop {
        let line = client.line_skipping_presence();
        if !line.starts_with("RELAY ") {
            break line;
        }
    };
    let words: Vec<&str> = reply.split(' ').collect();
    assert!(
        reply.starts_with(&format!("OK FETCH {id} ")) && words.len() == 5,
        "{reply}"
    );
    (words[3].to_string(), words[4].to_string())
}

/// Connects to the relay and says `line`.
fn relay_peer(addr: &str, line: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to the relay");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    stream.write_all(format!("{line}\n").as_bytes()).expect("send");
    stream
}

/// Both sides of a relayed transfer of file `id` with `ticket`: the
/// fetcher first when `fetcher_first`, else the owner; the owner sends
/// its header and `content` and ends. Returns what the fetcher received
/// after the header, which must name the content's size and [`SHA`].
fn pipe_through_relay(relay: &str, id: &str, ticket: &str, content: &[u8], fetcher_first: bool) -> Vec<u8> {
    let (mut getter, mut putter) = if fetcher_first {
        let getter = relay_peer(relay, &format!("GET {id} {ticket}"));
        (getter, relay_peer(relay, &format!("PUT {id} {ticket}")))
    } else {
        let putter = relay_peer(relay, &format!("PUT {id} {ticket}"));
        (relay_peer(relay, &format!("GET {id} {ticket}")), putter)
    };
    assert_eq!(raw_line(&mut putter), "OK");
    assert_eq!(raw_line(&mut getter), "OK");
    let sending = {
        let content = content.to_vec();
        std::thread::spawn(move || {
            putter
                .write_all(format!("OK {} {SHA}\n", content.len()).as_bytes())
                .expect("header");
            putter.write_all(&content).expect("the file");
            putter.shutdown(std::net::Shutdown::Write).expect("end");
        })
    };
    assert_eq!(raw_line(&mut getter), format!("OK {} {SHA}", content.len()));
    let mut received = Vec::new();
    getter.read_to_end(&mut received).expect("the file through the relay");
    sending.join().expect("the sender");
    received
}

/// Reads one line from a raw stream.
fn raw_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[test]
fn share_checks_its_values_in_order() {
    let server = TestServer::start_with(&["--max-file-size", "1000"]);
    let mut ana = registered(&server, "ana");
    for (line, code) in [
        ("SHARE", "bad-request"),
        ("SHARE 10", "bad-request"),
        (&format!("SHARE 10 {SHA}") as &str, "bad-request"),
        (&format!("SHARE x10 {SHA} a.txt"), "bad-request"),
        (&format!("SHARE -1 {SHA} a.txt"), "bad-request"),
        (&format!("SHARE 1001 {SHA} a.txt"), "invalid-file"),
        (&format!("SHARE 99999999999999999999999 {SHA} a.txt"), "invalid-file"),
        ("SHARE 10 ABC a.txt", "invalid-file"),
        (&format!("SHARE 10 {} a.txt", SHA.to_uppercase()), "invalid-file"),
        (&format!("SHARE 10 {SHA} "), "invalid-file"),
        (&format!("SHARE 10 {SHA} ."), "invalid-file"),
        (&format!("SHARE 10 {SHA} .."), "invalid-file"),
        (&format!("SHARE 10 {SHA} dir/a.txt"), "invalid-file"),
        (&format!("SHARE 10 {SHA} dir\\a.txt"), "invalid-file"),
        (&format!("SHARE 10 {SHA} a\tb"), "invalid-file"),
        (&format!("SHARE 10 {SHA} {}", "n".repeat(256)), "invalid-file"),
    ] {
        ana.send(line);
        let reply = ana.line_skipping_presence();
        assert!(reply.starts_with(&format!("ERR SHARE {code} ")), "{line:?}: {reply}");
    }
    // The limits themselves are fine, and the same file twice is two offers.
    let first = share(&mut ana, 1000, "  apuntes de clase.pdf ");
    let second = share(&mut ana, 0, "apuntes de clase.pdf");
    assert_ne!(first, second);
    let (body, ok) = listing(&mut ana, "FILES apuntes");
    assert_eq!(ok, "OK FILES 2");
    assert!(
        body.contains(&format!("FILE {first} 1000 {SHA} ana apuntes de clase.pdf")),
        "{body:?}"
    );
    let mut guest = server.connect();
    guest.send(&format!("SHARE 1 {SHA} a"));
    guest.expect_prefix("ERR SHARE not-logged-in ");
}

#[test]
fn files_lists_every_live_offer_sorted_and_filtered() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    share(&mut ana, 1, "Tema 2.pdf");
    share(&mut bea, 2, "tema 1.pdf");
    share(&mut ana, 3, "datos.CSV");
    let (body, ok) = listing(&mut bea, "FILES");
    assert_eq!(ok, "OK FILES 3");
    let names: Vec<&str> = body.iter().map(|l| l.splitn(6, ' ').nth(5).unwrap_or("")).collect();
    assert_eq!(names, ["datos.CSV", "tema 1.pdf", "Tema 2.pdf"]);
    let (body, _) = listing(&mut bea, "@q FILES TEMA");
    assert_eq!(body.len(), 2);
    let (body, ok) = listing(&mut bea, "FILES csv");
    assert_eq!((body.len(), ok.as_str()), (1, "OK FILES 1"));
    let (_, ok) = listing(&mut bea, "FILES nada de esto");
    assert_eq!(ok, "OK FILES 0");
    // At most 100.
    for i in 0..120 {
        share(&mut bea, i, &format!("lote {i:03}.bin"));
    }
    let (body, ok) = listing(&mut ana, "FILES lote");
    assert_eq!((body.len(), ok.as_str()), (100, "OK FILES 100"));
    assert!(body[0].ends_with(" lote 000.bin"));
}

#[test]
fn unshare_is_the_owners_and_offers_end_with_their_session() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut ana2 = server.connect();
    ana2.login("ana", "secreto123");
    let mut bea = registered(&server, "bea");
    let id = share(&mut ana, 10, "a.txt");
    bea.send(&format!("UNSHARE {id}"));
    bea.expect_prefix("ERR UNSHARE forbidden ");
    bea.send("UNSHARE fnada");
    bea.expect_prefix("ERR UNSHARE no-such-file ");
    bea.send("FETCH fnada");
    bea.expect_prefix("ERR FETCH no-such-file ");
    // Any session of the owning account may withdraw it.
    ana2.send(&format!("UNSHARE {id}"));
    assert_eq!(ana2.line_skipping_presence(), format!("OK UNSHARE {id}"));
    bea.send(&format!("FETCH {id}"));
    bea.expect_prefix("ERR FETCH no-such-file ");
    // An offer goes with its session, however it ends.
    let gone = share(&mut ana2, 10, "b.txt");
    let ended = Instant::now();
    drop(ana2);
    assert!(wait_until(Duration::from_secs(5), || {
        let (_, ok) = listing(&mut bea, "FILES b.txt");
        ok == "OK FILES 0"
    }));
    assert!(ended.elapsed() < Duration::from_secs(5));
    bea.send(&format!("FETCH {gone}"));
    bea.expect_prefix("ERR FETCH no-such-file ");
}

#[test]
fn fetch_gives_a_ticket_for_the_owners_endpoint_or_the_relay() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    bea.send("ENDPOINT nada");
    bea.expect_prefix("ERR ENDPOINT bad-request ");
    bea.send("ENDPOINT 127.0.0.1:45678");
    let reply = bea.line_skipping_presence();
    let key = reply
        .strip_prefix("OK ENDPOINT 127.0.0.1:45678 ")
        .unwrap_or_else(|| panic!("{reply}"));
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{reply}");
    // The key is the session's: announcing again gives the same one.
    bea.send("ENDPOINT 127.0.0.1:45679");
    bea.expect(&format!("OK ENDPOINT 127.0.0.1:45679 {key}"));
    bea.send("ENDPOINT 127.0.0.1:45678");
    bea.expect(&format!("OK ENDPOINT 127.0.0.1:45678 {key}"));
    let direct = share(&mut bea, 5, "directo.txt");
    let (ticket, addr) = fetch(&mut ana, &direct);
    assert_eq!(addr, "127.0.0.1:45678");
    assert_eq!(ticket.len(), 80);
    // The owner's client checks the ticket with the key it was told, and
    // only for that file.
    let now = charla::core::journal::now_ms();
    assert!(charla::core::files::check(key, &direct, &ticket, now, 0).is_ok());
    assert!(charla::core::files::check(key, "fotro", &ticket, now, 0).is_err());
    // Without an endpoint: the relay, and the owner is invited there.
    bea.send("ENDPOINT NONE");
    bea.expect("OK ENDPOINT NONE");
    let relayed = share(&mut bea, 5, "por el relé.txt");
    let (ticket, relay) = fetch(&mut ana, &relayed);
    assert_ne!(relay, "127.0.0.1:45678");
    bea.expect(&format!("RELAY {relayed} {ticket} {relay}"));
    // Endpoints follow the session's offers: the first is now relayed too.
    let (_, relay_again) = fetch(&mut ana, &direct);
    assert_eq!(relay_again, relay);
    // Fetching one's own offer is allowed.
    let (_, own) = fetch(&mut bea, &relayed);
    assert_eq!(own, relay);
}

#[test]
fn the_relay_pipes_a_file_once_per_ticket_and_refuses_the_rest() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    // 8 MiB of varied bytes: several times the relay's buffer and the
    // sockets' windows.
    let content: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let id = share(&mut bea, content.len() as u64, "datos.bin");
    let (ticket, relay) = fetch(&mut ana, &id);
    bea.expect(&format!("RELAY {id} {ticket} {relay}"));
    // The fetcher arrives first and waits; the owner brings the file.
    let received = pipe_through_relay(&relay, &id, &ticket, &content, true);
    assert!(received == content, "the relay changed the bytes");
    // The ticket was used: neither side may use it again.
    let mut again = relay_peer(&relay, &format!("GET {id} {ticket}"));
    assert_eq!(raw_line(&mut again), "ERR used the ticket was already used");
    let mut again = relay_peer(&relay, &format!("PUT {id} {ticket}"));
    assert_eq!(raw_line(&mut again), "ERR used the ticket was already used");
    // Forged, for another file, malformed, unknown file.
    let mut forged = ticket.clone().into_bytes();
    forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex");
    for (line, answer) in [
        (
            format!("GET {id} {forged}"),
            "ERR bad-ticket not a ticket for this file",
        ),
        (
            format!("GET {id} nonsense"),
            "ERR bad-ticket not a ticket for this file",
        ),
        (
            format!("GET fnada {ticket}"),
            "ERR no-such-file no such file is offered through the relay",
        ),
        (
            "HELLO".to_string(),
            "ERR bad-request expected GET FILEID TICKET or PUT FILEID TICKET",
        ),
    ] {
        let mut peer = relay_peer(&relay, &line);
        assert_eq!(raw_line(&mut peer), answer, "{line}");
    }
}

#[test]
fn relayed_transfers_at_once_are_limited_per_fetching_account() {
    let server = TestServer::start_with(&["--relay-per-account", "1"]);
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    let id = share(&mut bea, 10, "x.bin");
    let (first, relay) = fetch(&mut ana, &id);
    bea.line_skipping_presence();
    let (second, _) = fetch(&mut ana, &id);
    bea.line_skipping_presence();
    let _waiting = relay_peer(&relay, &format!("GET {id} {first}"));
    std::thread::sleep(Duration::from_millis(200));
    let mut over = relay_peer(&relay, &format!("GET {id} {second}"));
    assert_eq!(
        raw_line(&mut over),
        "ERR limit-reached too many relayed transfers at once"
    );
}

#[test]
fn a_transfer_under_way_counts_against_the_limit_whichever_side_came_first() {
    let server = TestServer::start_with(&["--relay-per-account", "1"]);
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    let id = share(&mut bea, 10, "x.bin");
    let (first, relay) = fetch(&mut ana, &id);
    bea.line_skipping_presence();
    let (second, _) = fetch(&mut ana, &id);
    bea.line_skipping_presence();
    // The fetcher first, then the owner: paired, the transfer under way
    // (the owner has not sent the file yet).
    let mut getter = relay_peer(&relay, &format!("GET {id} {first}"));
    std::thread::sleep(Duration::from_millis(200));
    let mut putter = relay_peer(&relay, &format!("PUT {id} {first}"));
    assert_eq!(raw_line(&mut putter), "OK");
    assert_eq!(raw_line(&mut getter), "OK");
    let mut over = relay_peer(&relay, &format!("GET {id} {second}"));
    assert_eq!(
        raw_line(&mut over),
        "ERR limit-reached too many relayed transfers at once"
    );
}

#[test]
fn both_sides_arriving_at_the_relay_together_are_paired_every_time() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    for _ in 0..30 {
        let id = share(&mut bea, 2, "par.bin");
        let (ticket, relay) = fetch(&mut ana, &id);
        bea.expect(&format!("RELAY {id} {ticket} {relay}"));
        // Both connected first, then both lines at once: the relay's two
        // threads look for each other at the same moment.
        let mut peers: Vec<TcpStream> = (0..2)
            .map(|_| {
                let peer = TcpStream::connect(relay.as_str()).expect("the relay");
                peer.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
                peer
            })
            .collect();
        for (peer, side) in peers.iter_mut().zip(["GET", "PUT"]) {
            peer.write_all(format!("{side} {id} {ticket}\n").as_bytes())
                .expect("the line");
        }
        for peer in &mut peers {
            assert_eq!(raw_line(peer), "OK");
        }
        bea.send(&format!("UNSHARE {id}"));
        bea.expect(&format!("OK UNSHARE {id}"));
    }
}

#[test]
fn fetch_relay_sends_an_offer_with_an_endpoint_through_the_relay() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    bea.send("ENDPOINT 127.0.0.1:45678");
    bea.expect_prefix("OK ENDPOINT 127.0.0.1:45678 ");
    let content: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let id = share(&mut bea, content.len() as u64, "directo.bin");
    // Any other second word is a bad request, even for an unknown id.
    for line in [
        format!("FETCH {id} NONSENSE"),
        format!("FETCH {id} RELAY RELAY"),
        "FETCH fnada NONSENSE".to_string(),
    ] {
        ana.send(&line);
        let reply = ana.line_skipping_presence();
        assert!(reply.starts_with("ERR FETCH bad-request "), "{line}: {reply}");
    }
    ana.send("FETCH fnada RELAY");
    let reply = ana.line_skipping_presence();
    assert!(reply.starts_with("ERR FETCH no-such-file "), "{reply}");
    // Without RELAY: the endpoint, and the owner is not invited (the next
    // line bea reads is the invitation below).
    let (_, endpoint) = fetch(&mut ana, &id);
    assert_eq!(endpoint, "127.0.0.1:45678");
    // With it: the relay, and the owner is invited there although it
    // announced an endpoint.
    let (ticket, relay) = fetch_with(&mut ana, &id, &format!("FETCH {id} RELAY"));
    assert_ne!(relay, endpoint);
    assert_eq!(ticket.len(), 80);
    bea.expect(&format!("RELAY {id} {ticket} {relay}"));
    // In any case, like the verb; the same relay.
    let (lower, relay_again) = fetch_with(&mut ana, &id, &format!("fetch {id} relay"));
    assert_eq!(relay_again, relay);
    bea.expect(&format!("RELAY {id} {lower} {relay}"));
    // The relay serves such a ticket: the owner's bytes reach the fetcher.
    let received = pipe_through_relay(&relay, &id, &ticket, &content, false);
    assert!(received == content, "the relay changed the bytes");
    let mut again = relay_peer(&relay, &format!("GET {id} {ticket}"));
    assert_eq!(raw_line(&mut again), "ERR used the ticket was already used");
    // Once the offer is withdrawn the relay knows it no more.
    bea.send(&format!("UNSHARE {id}"));
    bea.expect(&format!("OK UNSHARE {id}"));
    let mut gone = relay_peer(&relay, &format!("GET {id} {lower}"));
    assert_eq!(
        raw_line(&mut gone),
        "ERR no-such-file no such file is offered through the relay"
    );
}

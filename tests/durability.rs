//! What survives the server going away (PROTOCOL.md 5.2, 5.3, 5.6):
//! `kill -9` and restarts on the same database, and the orderly stop on
//! SIGTERM/SIGINT.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Msg, TestServer, ok_say, registered};

const SENDERS: usize = 4;
const WINDOW: usize = 8;
/// Upper bound of messages per sender, so a server that never stops
/// cannot keep a test running.
const MAX_PER_SENDER: usize = 5_000;

/// What one sender saw before its connection ended.
struct Sent {
    /// `(i, id)` of every tagged SAY acknowledged.
    acked: Vec<(usize, i64)>,
    /// How many SAYs were written (acknowledged or not).
    written: usize,
    /// Every BYE line received.
    byes: Vec<String>,
    /// The connection, kept open until the test is done with it.
    _client: Client,
}

/// Sends `@k{s}-{i} SAY d{s}-{i}` in windows of [`WINDOW`], reporting each
/// acknowledged window on `progress`, until the connection ends.
fn send_until_gone(s: usize, mut client: Client, progress: mpsc::Sender<usize>) -> Sent {
    let mut acked = Vec::new();
    let mut byes = Vec::new();
    let mut written = 0;
    let mut open = true;
    while open && written < MAX_PER_SENDER {
        let window: String = (written..written + WINDOW)
            .map(|i| format!("@k{s}-{i} SAY d{s}-{i}\n"))
            .collect();
        if client.socket().write_all(window.as_bytes()).is_err() {
            break;
        }
        let first = written;
        written += WINDOW;
        let mut replies = 0;
        while replies < WINDOW {
            let Some(line) = client.next_line() else {
                open = false;
                break;
            };
            if line.starts_with("@k") {
                let i = first + replies;
                assert!(line.starts_with(&format!("@k{s}-{i} OK SAY ")), "sender {s}: {line:?}");
                acked.push((i, ok_say(&line).0));
                replies += 1;
            } else if line.starts_with("BYE ") {
                byes.push(line);
            } else {
                assert!(Msg::parse(&line).is_some() || line.starts_with("JOIN ") || line.starts_with("LEAVE "));
            }
        }
        let _ = progress.send(replies);
    }
    // Whatever is left until the server closes: late acknowledgements
    // may follow a BYE.
    while let Some(line) = client.next_line() {
        if line.starts_with("BYE ") {
            byes.push(line);
        } else if line.starts_with("@k") {
            let i = acked.last().map_or(0, |&(i, _)| i + 1);
            assert!(line.starts_with(&format!("@k{s}-{i} OK SAY ")), "sender {s}: {line:?}");
            acked.push((i, ok_say(&line).0));
        }
    }
    Sent {
        acked,
        written,
        byes,
        _client: client,
    }
}

/// Starts one sender thread per account `s0`... and returns their handles
/// after `min_acked` SAYs in all have been acknowledged.
fn senders_past(server: &TestServer, min_acked: usize) -> Vec<thread::JoinHandle<Sent>> {
    let clients: Vec<Client> = (0..SENDERS).map(|s| registered(server, &format!("s{s}"))).collect();
    let (progress, progressed) = mpsc::channel();
    let handles = clients
        .into_iter()
        .enumerate()
        .map(|(s, client)| {
            let progress = progress.clone();
            thread::spawn(move || send_until_gone(s, client, progress))
        })
        .collect();
    let mut total = 0;
    while total < min_acked {
        total += progressed
            .recv_timeout(Duration::from_secs(30))
            .expect("the senders make progress");
    }
    handles
}

/// Checks that every acknowledged SAY is stored exactly once, with its
/// author and text, and returns the stored messages by text.
fn check_stored(history: &[Msg], sent: &[Sent]) -> HashMap<String, Msg> {
    let mut by_text: HashMap<String, Msg> = HashMap::new();
    for m in history {
        assert!(
            by_text.insert(m.text.clone(), m.clone()).is_none(),
            "stored twice: {m:?}"
        );
    }
    for (s, sent) in sent.iter().enumerate() {
        for &(i, id) in &sent.acked {
            let text = format!("d{s}-{i}");
            let stored = by_text
                .get(&text)
                .unwrap_or_else(|| panic!("acknowledged {text} (id {id}) was lost"));
            assert_eq!((stored.id, stored.user.as_str()), (id, &*format!("s{s}")));
        }
    }
    by_text
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let mut server = TestServer::start();
    let handles = senders_past(&server, 300);
    server.kill9();
    let sent: Vec<Sent> = handles
        .into_iter()
        .map(|h| h.join().expect("a sender thread"))
        .collect();
    let total_acked: usize = sent.iter().map(|s| s.acked.len()).sum();
    assert!(total_acked >= 300);

    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &[]);
    let mut reader = server.connect();
    reader.login("s0", "secreto123");
    let history = reader.full_history();
    check_stored(&history, &sent);
    assert!(history.len() >= total_acked);

    // Every tag, acknowledged or not, sent again after the restart: the
    // acknowledged ones give back their original id, and each message ends
    // up stored exactly once.
    for (s, sent) in sent.iter().enumerate() {
        let mut client = server.connect();
        client.login(&format!("s{s}"), "secreto123");
        let lines: String = (0..sent.written).map(|i| format!("@k{s}-{i} SAY d{s}-{i}\n")).collect();
        client.send_raw(lines.as_bytes());
        let acked: HashMap<usize, i64> = sent.acked.iter().copied().collect();
        for i in 0..sent.written {
            let reply = client.line_skipping_presence();
            assert!(reply.starts_with(&format!("@k{s}-{i} OK SAY ")), "{reply:?}");
            if let Some(&id) = acked.get(&i) {
                assert_eq!(ok_say(&reply).0, id, "tag k{s}-{i} after the restart");
            }
        }
    }
    // A fresh session: the first one has been receiving the re-sent
    // messages that had not been stored before the kill.
    drop(reader);
    let mut reader = server.connect();
    reader.login("s0", "secreto123");
    let history = reader.full_history();
    let by_text = check_stored(&history, &sent);
    let written: usize = sent.iter().map(|s| s.written).sum();
    assert_eq!(by_text.len(), written);
}

#[test]
fn sigterm_stores_every_acknowledged_say() {
    let mut server = TestServer::start();
    let handles = senders_past(&server, 200);
    server.signal("TERM");
    let sent: Vec<Sent> = handles
        .into_iter()
        .map(|h| h.join().expect("a sender thread"))
        .collect();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    for (s, sent) in sent.iter().enumerate() {
        assert_eq!(sent.byes, ["BYE shutting-down server is shutting down"], "sender {s}");
    }

    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &[]);
    let mut reader = server.connect();
    reader.login("s0", "secreto123");
    let history = reader.full_history();
    let by_text = check_stored(&history, &sent);
    // Every SAY the server read before stopping was also acknowledged.
    let total_acked: usize = sent.iter().map(|s| s.acked.len()).sum();
    assert_eq!(
        by_text.len(),
        total_acked,
        "stored messages that were never acknowledged"
    );
}

#[test]
fn sigterm_says_bye_to_every_connection_and_exits_0() {
    let mut server = TestServer::start();
    let mut guest = server.connect();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    ana.expect("JOIN bea");
    // A command half-sent when the stop comes is simply dropped.
    bea.send_raw(b"SAY unfinished");
    server.signal("TERM");
    for client in [&mut guest, &mut ana, &mut bea] {
        let line = loop {
            let line = client.line();
            // Another session may close (and LEAVE) before this one's BYE.
            if !line.starts_with("LEAVE ") {
                break line;
            }
        };
        assert_eq!(line, "BYE shutting-down server is shutting down");
        client.expect_eof();
    }
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "still listening after the stop"
    );
}

#[test]
fn sigint_stops_the_server_too() {
    let mut server = TestServer::start();
    let mut guest = server.connect();
    server.signal("INT");
    guest.expect("BYE shutting-down server is shutting down");
    guest.expect_eof();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn the_stop_takes_under_10_seconds_even_with_a_client_that_never_reads() {
    let mut server = TestServer::start();
    let mut writer = registered(&server, "writer");
    // A thousand big messages, so one HISTORY reply is about 4 MB.
    let text = "é".repeat(2000);
    let all: String = (0..1000).map(|_| format!("SAY {text}\n")).collect();
    writer.send_raw(all.as_bytes());
    for _ in 0..1000 {
        writer.expect_prefix("OK SAY ");
    }
    // The hog asks for far more than its socket and its queue can hold and
    // never reads: its writer blocks and its reader waits for room.
    let mut hog = server.connect();
    hog.login("writer", "secreto123");
    hog.send_raw("HISTORY 1000\n".repeat(4).as_bytes());
    // Give the server a moment to fill the hog's socket (the assertion
    // below holds whether or not it has).
    thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    server.signal("TERM");
    writer.expect("BYE shutting-down server is shutting down");
    writer.expect_eof();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(stopping.elapsed() < Duration::from_secs(10));
    drop(hog);
}

#[test]
fn accounts_and_tags_outlive_a_graceful_restart() {
    let mut server = TestServer::start();
    let mut ana = server.connect();
    ana.register("Ana", "secreto123", "Ana Ríos");
    ana.send("@keep SAY guardado");
    let first = ana.expect_prefix("@keep OK SAY ");
    server.signal("TERM");
    ana.expect("BYE shutting-down server is shutting down");
    ana.expect_eof();
    assert!(server.wait_exit(Duration::from_secs(10)).success());

    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &[]);
    let mut ana = server.connect();
    ana.send("LOGIN ana secreto123");
    ana.expect("OK LOGIN Ana Ana Ríos");
    ana.send("@keep SAY guardado");
    ana.expect(&first);
    let mut other = server.connect();
    other.send("REGISTER ANA secreto123 Otra");
    other.expect_prefix("ERR REGISTER user-exists ");
    let (id, _) = ok_say(&first);
    let history = ana.history("");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].id, history[0].user.as_str(), history[0].text.as_str()),
        (id, "Ana", "guardado")
    );
    // New ids keep growing past the old ones.
    let (next, _) = ana.say("después");
    assert!(next > id);
}

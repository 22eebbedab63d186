//! Faults around the server: `kill -9` under load, a database that cannot
//! be written, a full disk, peers that vanish by the thousand, and SIGTERM
//! under load. Whatever happens, nothing acknowledged may be lost, nothing
//! may be stored twice or half, and the server must keep serving (or, when
//! told to stop, stop cleanly).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, LINE_TIMEOUT, Msg, TestServer, ok_say, proc_status, registered, wait_until};

/// How many SAYs a sender writes at once, and the pause after each burst
/// before it reads their answers: meanwhile the answers pile up unread, as
/// for a client busy elsewhere, so a fault finds some stored, acknowledged
/// and unseen. (Unpaced, the whole load is stored in a few milliseconds and
/// a fault can only come after it.)
const BURST: usize = 16;
/// See [`BURST`].
const PACE: Duration = Duration::from_millis(20);

/// What one pipelining sender did until the server went away or it was done.
struct Sent {
    /// The account it sent as.
    account: String,
    /// Tag numbers it wrote to the socket, in order (the write may not have
    /// reached the server).
    sent: Vec<usize>,
    /// Tag number to message id, for every `OK SAY` it read.
    acked: BTreeMap<usize, i64>,
    /// Whether it read `BYE shutting-down`.
    saw_bye: bool,
}

/// The tag of message `n` of `account`; the text carries it too, so a
/// stored message can be traced back to its tag.
fn tag(account: &str, n: usize) -> String {
    format!("{account}-{n}")
}

fn say_line(account: &str, n: usize) -> String {
    let tag = tag(account, n);
    format!("@{tag} SAY {tag} carga de prueba\n")
}

/// Parses `@TAG OK SAY ID TS` of `account` into `(n, (id, ts))`.
fn tagged_ack(account: &str, line: &str) -> Option<(usize, (i64, i64))> {
    let (tag, body) = line.strip_prefix('@')?.split_once(' ')?;
    let n = tag.strip_prefix(account)?.strip_prefix('-')?.parse().ok()?;
    body.starts_with("OK SAY ").then(|| (n, ok_say(body)))
}

/// Sends `count` tagged SAYs on `client` in bursts of [`BURST`], reading
/// their answers after a [`PACE`], until the connection ends (the fault
/// ends it: kill, or BYE and close) or nothing comes for [`LINE_TIMEOUT`].
/// Counts every `OK SAY` in `acks`. With `abandon`, the client gives up as
/// soon as it sees `fault` set, reading nothing more: it lost the
/// connection before seeing the answers to its last burst. Never panics on
/// a dead socket: that is the point of these tests.
fn pipeline(
    mut client: Client,
    account: &str,
    count: usize,
    acks: &AtomicUsize,
    fault: &AtomicBool,
    abandon: bool,
) -> Sent {
    let mut out = Sent {
        account: account.to_string(),
        sent: Vec::new(),
        acked: BTreeMap::new(),
        saw_bye: false,
    };
    let mut answered = 0;
    let mut writable = true;
    loop {
        while writable && !out.saw_bye && out.sent.len() < count && out.sent.len() - answered < BURST {
            let n = out.sent.len();
            out.sent.push(n);
            if client.socket().write_all(say_line(account, n).as_bytes()).is_err() {
                writable = false;
            }
        }
        thread::sleep(PACE);
        if abandon && fault.load(Ordering::SeqCst) {
            return out;
        }
        // Read the burst's answers; once there is nothing left to send,
        // read on until the connection ends.
        while answered < out.sent.len() || out.sent.len() == count || out.saw_bye || !writable {
            let Some(line) = client.next_line() else { return out };
            if let Some((n, (id, _))) = tagged_ack(account, &line) {
                assert!(out.acked.insert(n, id).is_none(), "{line:?} acknowledged twice");
                answered += 1;
                acks.fetch_add(1, Ordering::SeqCst);
            } else if line.starts_with('@') {
                panic!("{account} got {line:?}");
            } else if line.starts_with("BYE ") {
                assert!(line.starts_with("BYE shutting-down "), "{account} got {line:?}");
                assert!(!out.saw_bye, "two BYEs");
                out.saw_bye = true;
            }
            // MSG, JOIN and LEAVE of the other senders are not this
            // test's business.
        }
    }
}

/// Registers `senders` accounts `c0`.. and runs [`pipeline`] for each on
/// its own thread; calls `fault` once `threshold` SAYs are acknowledged in
/// all (telling the senders just before; with `abandon` they stop reading
/// then), and collects what every sender did.
fn load_with_fault(
    server: &mut TestServer,
    senders: usize,
    count: usize,
    threshold: usize,
    abandon: bool,
    fault: impl FnOnce(&mut TestServer),
) -> Vec<Sent> {
    let acks = Arc::new(AtomicUsize::new(0));
    let faulted = Arc::new(AtomicBool::new(false));
    let clients: Vec<Client> = (0..senders).map(|i| registered(server, &format!("c{i}"))).collect();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let acks = Arc::clone(&acks);
            let faulted = Arc::clone(&faulted);
            thread::spawn(move || pipeline(client, &format!("c{i}"), count, &acks, &faulted, abandon))
        })
        .collect();
    let reached = wait_until(LINE_TIMEOUT, || acks.load(Ordering::SeqCst) >= threshold);
    assert!(reached, "only {} SAYs acknowledged", acks.load(Ordering::SeqCst));
    faulted.store(true, Ordering::SeqCst);
    fault(server);
    threads
        .into_iter()
        .map(|t| t.join().expect("a sender thread"))
        .collect()
}

/// Every stored message as `tag text → (id, author)`, read on a fresh
/// session of `account`.
fn stored_by_text(server: &TestServer, account: &str) -> HashMap<String, Vec<(i64, String)>> {
    let mut reader = server.connect();
    reader.login(account, "secreto123");
    let mut by_text: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for msg in reader.full_history() {
        let key = msg.text.split(' ').next().unwrap_or("").to_string();
        by_text.entry(key).or_default().push((msg.id, msg.user));
    }
    by_text
}

/// `kill -9` while four clients pipeline tagged messages; after a restart
/// each resends what it did not see acknowledged (and some it did): every
/// acknowledged message is there exactly once with its id, every tag at
/// most once, resends get the original ids, and ids follow each sender's
/// order.
#[test]
fn kill_9_under_load_loses_no_acknowledged_message_and_duplicates_none() {
    const SENDERS: usize = 4;
    const COUNT: usize = 150;
    let mut server = TestServer::start();
    let first_run = load_with_fault(
        &mut server,
        SENDERS,
        COUNT,
        SENDERS * COUNT / 3,
        true,
        TestServer::kill9,
    );
    let killed_at = common::now_ms();
    let unacked: usize = first_run.iter().map(|s| s.sent.len() - s.acked.len()).sum();
    let unsent: usize = first_run.iter().map(|s| COUNT - s.sent.len()).sum();
    eprintln!("killed with {unacked} SAYs unanswered and {unsent} not yet sent");
    assert!(unsent > 0, "the kill came after the load: nothing was cut short");

    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &[]);
    let mut final_ids: Vec<BTreeMap<usize, i64>> = Vec::new();
    for sender in &first_run {
        let mut client = server.connect();
        client.login(&sender.account, "secreto123");
        let resend: Vec<usize> = sender
            .sent
            .iter()
            .copied()
            .filter(|n| !sender.acked.contains_key(n) || n % 10 == 0)
            .collect();
        for &n in &resend {
            client.send_raw(say_line(&sender.account, n).as_bytes());
        }
        let mut ids = sender.acked.clone();
        let mut stored_unanswered = 0;
        for &n in &resend {
            let line = next_reply(&mut client);
            let (got, (id, ts)) = tagged_ack(&sender.account, &line).unwrap_or_else(|| panic!("resend got {line:?}"));
            assert_eq!(got, n, "replies out of order");
            match sender.acked.get(&n) {
                Some(&original) => assert_eq!(id, original, "a resent {} got a new id", tag(&sender.account, n)),
                None => {
                    if ts <= killed_at {
                        stored_unanswered += 1;
                    }
                    ids.insert(n, id);
                }
            }
        }
        eprintln!(
            "{}: {} resent, {stored_unanswered} of them stored before the kill without an answer",
            sender.account,
            resend.len()
        );
        final_ids.push(ids);
    }

    let stored = stored_by_text(&server, "c0");
    let mut expected_total = 0;
    for (sender, ids) in first_run.iter().zip(&final_ids) {
        assert_eq!(ids.len(), sender.sent.len(), "every sent tag is now acknowledged");
        let mut last = 0;
        for (&n, &id) in ids {
            let copies = stored.get(&tag(&sender.account, n)).cloned().unwrap_or_default();
            assert_eq!(
                copies,
                [(id, sender.account.clone())],
                "{} stored as {copies:?}",
                tag(&sender.account, n)
            );
            assert!(
                id > last,
                "{}'s ids are out of order: {id} after {last}",
                sender.account
            );
            last = id;
        }
        expected_total += ids.len();
    }
    assert_eq!(
        stored.values().map(Vec::len).sum::<usize>(),
        expected_total,
        "unexpected messages stored"
    );
}

/// The next line that is not an event (MSG, JOIN, LEAVE).
fn next_reply(client: &mut Client) -> String {
    loop {
        let line = client.line();
        if !["MSG ", "JOIN ", "LEAVE "].iter().any(|event| line.starts_with(event)) {
            return line;
        }
    }
}

/// Opens the server's database from the test and takes SQLite's write
/// lock, as another program (or a stuck backup) might.
fn lock_database(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).expect("open the database from the test");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("take the write lock");
    conn
}

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).expect("a count")
}

/// A write lock held by someone else: after its busy timeout (5 s) the
/// server answers `db-error` to SAY and REGISTER, stores nothing, keeps the
/// session usable, logs the failure, and once the lock is gone the same
/// tagged SAY and the same REGISTER succeed.
#[test]
fn a_locked_database_gives_db_error_and_nothing_half_written() {
    let server = TestServer::start_with_env(&[], &[("RUST_LOG", "info")]);
    let mut ana = registered(&server, "ana");
    let mut bob = registered(&server, "bob");
    let mut newcomer = server.connect();
    ana.expect("JOIN bob");

    let lock = lock_database(&server.db);
    let started = Instant::now();
    ana.send("@x1 SAY bloqueado");
    newcomer.send("@r1 REGISTER nuevo secreto123 Nuevo Usuario");
    // The journal waits out its busy timeout for each, one after the other.
    ana.set_timeout(Duration::from_secs(20));
    newcomer.set_timeout(Duration::from_secs(20));
    ana.expect_prefix("@x1 ERR SAY db-error ");
    newcomer.expect_prefix("@r1 ERR REGISTER db-error ");
    eprintln!("both db-errors after {:?}", started.elapsed());
    ana.set_timeout(LINE_TIMEOUT);
    newcomer.set_timeout(LINE_TIMEOUT);

    // Nothing half-written, as the locker sees the file.
    assert_eq!(count(&lock, "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&lock, "SELECT count(*) FROM users WHERE username = 'nuevo'"), 0);
    // The sessions are still usable while the lock is held: reads work.
    assert_eq!(ana.sync("sigo"), Vec::<String>::new());
    assert_eq!(ana.history("10"), Vec::<Msg>::new());
    newcomer.send("PING");
    newcomer.expect("OK PING");

    lock.execute_batch("ROLLBACK").expect("release the lock");
    drop(lock);
    // The failed attempt did not use up its tag.
    ana.send("@x1 SAY bloqueado");
    let (id, _) = ok_say(&ana.expect_prefix("@x1 OK SAY "));
    newcomer.register("nuevo", "secreto123", "Nuevo Usuario");
    // The failed SAY never reached anyone: bob's first message is the
    // stored one.
    let msg = Msg::parse(&bob.line_skipping_presence()).expect("a MSG");
    assert_eq!((msg.id, msg.text.as_str()), (id, "bloqueado"));
    let stored = ana.history("10");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let log = server.log();
    assert!(log.contains("message(s) could not be stored"), "{log}");
    assert!(log.contains("registration could not be stored"), "{log}");
}

/// A tmpfs mounted for one test and unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` spells it) at `path`,
    /// or says why it cannot.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(path.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the file system says it is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("the filler file");
    let chunk = vec![0; 64 * 1024];
    for _ in 0..1024 {
        if file.write_all(&chunk).and_then(|()| file.sync_all()).is_err() {
            return;
        }
    }
    panic!("the file system never filled up");
}

/// A full disk (a small tmpfs under the database): SAY and REGISTER get
/// `db-error`, reads go on, and once there is room again the same tagged
/// SAY succeeds. Needs root to mount; elsewhere it says it skipped.
#[test]
fn a_full_disk_gives_db_error_until_there_is_room_again() {
    let outer = tempfile::tempdir().expect("a temporary directory");
    let mount_point = outer.path().join("fs");
    let _tmpfs = match Tmpfs::mount(&mount_point, "4m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_disk_gives_db_error_until_there_is_room_again: cannot mount a tmpfs here ({why})"
            );
            return;
        }
    };
    // The log stays on the real disk; only the database is on the tmpfs.
    let log_dir = tempfile::tempdir().expect("a temporary directory");
    let server = TestServer::launch(log_dir, Some(mount_point.join("chat.db")), &[], &[("RUST_LOG", "info")]);
    let mut ana = registered(&server, "ana");
    let (before, _) = ana.say("antes de llenar");
    let filler = mount_point.join("relleno");
    fill(&filler);

    let text = format!("lleno {}", "x".repeat(1500));
    ana.send(&format!("@f1 SAY {text}"));
    ana.expect_prefix("@f1 ERR SAY db-error ");
    let mut newcomer = server.connect();
    newcomer.send("@r1 REGISTER nuevo secreto123 Nuevo Usuario");
    newcomer.expect_prefix("@r1 ERR REGISTER db-error ");
    assert_eq!(ana.sync("sigo"), Vec::<String>::new());
    let stored = ana.history("10");
    assert_eq!(stored.iter().map(|m| m.id).collect::<Vec<_>>(), [before]);

    std::fs::remove_file(&filler).expect("free the space");
    ana.send(&format!("@f1 SAY {text}"));
    let (after, _) = ok_say(&ana.expect_prefix("@f1 OK SAY "));
    newcomer.register("nuevo", "secreto123", "Nuevo Usuario");
    let stored = ana.history("10");
    assert_eq!(stored.iter().map(|m| m.id).collect::<Vec<_>>(), [before, after]);
    assert_eq!(stored[1].text, text);
    let log = server.log();
    assert!(log.contains("database or disk is full"), "{log}");
    assert!(log.contains("message(s) could not be stored"), "{log}");
    assert!(log.contains("registration could not be stored"), "{log}");
}

/// How one connect/login/disconnect cycle ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `QUIT`, `OK QUIT`, the server closes.
    Quit,
    /// The client closes without a word (FIN).
    Abrupt,
    /// The client closes with a reply unread, so its kernel sends RST.
    UnreadReply,
    /// The client resets the connection outright (SO_LINGER 0).
    Reset,
}

fn cycle(server: &TestServer, account: &str, ending: Ending) {
    let mut client = server.connect();
    client.login(account, "secreto123");
    match ending {
        Ending::Quit => {
            client.send("QUIT");
            assert_eq!(client.line_skipping_presence(), "OK QUIT");
            let (lines, _) = client.read_to_close(LINE_TIMEOUT);
            assert!(
                lines.iter().all(|l| l.starts_with("JOIN ") || l.starts_with("LEAVE ")),
                "{lines:?}"
            );
        }
        Ending::Abrupt => drop(client),
        Ending::UnreadReply => {
            client.send("WHO");
            let mut byte = [0];
            client.socket().peek(&mut byte).expect("the WHO reply arrives");
            drop(client);
        }
        Ending::Reset => {
            socket2::SockRef::from(client.socket())
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER 0");
            drop(client);
        }
    }
}

/// Sends a SAY and a PING on `client` and returns every line that came
/// before their replies. A SAY goes through the journal, and the PING is
/// answered only after it is acknowledged, so every event queued before
/// (JOIN/LEAVE included, which the journal delivers) has arrived.
fn events_so_far(client: &mut Client) -> Vec<String> {
    client.send("@barrera SAY barrera");
    client
        .sync("barrera")
        .into_iter()
        .filter(|line| !line.starts_with("@barrera OK SAY "))
        .collect()
}

/// 1,000 connect/login/disconnect cycles on four threads, ending cleanly,
/// abruptly and with resets (so the server meets EPIPE and ECONNRESET
/// writing presence lines to dead sockets): afterwards the server's thread
/// count is back to what it was, WHO lists only who is really there, and
/// every account's presence alternates JOIN/LEAVE, ending offline.
#[test]
fn a_thousand_vanishing_clients_leave_no_thread_and_one_leave_each() {
    const THREADS: usize = 4;
    const CYCLES: usize = 250;
    let server = Arc::new(TestServer::start());
    for t in 0..THREADS {
        let mut setup = registered(&server, &format!("ciclo{t}"));
        setup.send("QUIT");
        assert_eq!(setup.line_skipping_presence(), "OK QUIT");
        setup.read_to_close(LINE_TIMEOUT);
    }
    let mut observer = registered(&server, "observador");
    // Writer threads end after a quiet second: let any from the setup go.
    thread::sleep(Duration::from_millis(1500));
    let baseline = proc_status(server.pid(), "Threads");

    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let server = Arc::clone(&server);
            thread::spawn(move || {
                let endings = [Ending::Quit, Ending::Abrupt, Ending::UnreadReply, Ending::Reset];
                for i in 0..CYCLES {
                    cycle(&server, &format!("ciclo{t}"), endings[(i + t) % endings.len()]);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a cycling thread");
    }
    let cycled = started.elapsed();
    let mut now = 0;
    let settled = wait_until(Duration::from_secs(10), || {
        now = proc_status(server.pid(), "Threads");
        now <= baseline
    });
    eprintln!(
        "{} cycles in {cycled:?}; server threads: {baseline} before, {now} after",
        THREADS * CYCLES
    );
    assert!(settled, "the server has {now} threads, {baseline} before the cycles");

    let events = events_so_far(&mut observer);
    let mut presence: HashMap<String, Vec<&str>> = HashMap::new();
    for line in &events {
        let (kind, user) = line.split_once(' ').unwrap_or((line, ""));
        assert!(kind == "JOIN" || kind == "LEAVE", "observer got {line:?}");
        presence.entry(user.to_string()).or_default().push(kind);
    }
    assert_eq!(presence.len(), THREADS, "{:?}", presence.keys());
    for (user, kinds) in &presence {
        let alternating = kinds
            .iter()
            .enumerate()
            .all(|(i, kind)| *kind == if i % 2 == 0 { "JOIN" } else { "LEAVE" });
        assert!(alternating && kinds.len() % 2 == 0, "{user}: {kinds:?}");
        eprintln!("{user}: {} JOIN/LEAVE pairs over {CYCLES} cycles", kinds.len() / 2);
    }
    observer.send("WHO");
    observer.expect("USER observador observador Apellido");
    observer.expect("OK WHO 1");
}

/// SIGTERM while four clients pipeline: every SAY acknowledged (before or
/// after the BYE) is in the database after a restart with its id, nothing
/// unacknowledged was stored, and the server exits 0 within 10 s.
#[test]
fn sigterm_under_load_keeps_every_acknowledged_message() {
    const SENDERS: usize = 4;
    const COUNT: usize = 180;
    let mut server = TestServer::start();
    let mut signalled = Instant::now();
    let mut status = None;
    let senders = load_with_fault(&mut server, SENDERS, COUNT, SENDERS * COUNT / 4, false, |server| {
        signalled = Instant::now();
        server.signal("TERM");
        status = Some(server.wait_exit(Duration::from_secs(10)));
    });
    let status = status.expect("the server exited");
    eprintln!("exited with {status} {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "{status}");
    for sender in &senders {
        assert!(sender.saw_bye, "{} saw no BYE shutting-down", sender.account);
    }
    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &[]);
    let stored = stored_by_text(&server, "c0");
    let mut acked_total = 0;
    for sender in &senders {
        for (&n, &id) in &sender.acked {
            let copies = stored.get(&tag(&sender.account, n)).cloned().unwrap_or_default();
            assert_eq!(
                copies,
                [(id, sender.account.clone())],
                "{} stored as {copies:?}",
                tag(&sender.account, n)
            );
        }
        acked_total += sender.acked.len();
    }
    eprintln!("{acked_total} acknowledged, {} stored", stored.len());
    assert_eq!(
        stored.values().map(Vec::len).sum::<usize>(),
        acked_total,
        "a message was stored but never acknowledged"
    );
}

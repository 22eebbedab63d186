//! Several connections at once (PROTOCOL.md 1, 4, 5.2 to 5.4): pipelining,
//! JOIN/LEAVE and multi-session accounts, who gets which MSG, idempotency
//! tokens, total order under concurrent senders, HISTORY paging, and slow
//! consumers.

mod common;

use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Msg, TestServer, ok_say, registered};

/// Reads lines until `count` replies starting with `prefix` have come,
/// returning them and every other line (events) seen in between.
fn collect_replies(client: &mut Client, prefix: &str, count: usize) -> (Vec<String>, Vec<String>) {
    let mut replies = Vec::with_capacity(count);
    let mut events = Vec::new();
    while replies.len() < count {
        let line = client.line();
        if line.starts_with(prefix) {
            replies.push(line);
        } else {
            events.push(line);
        }
    }
    (replies, events)
}

/// Reads until the `MSG` whose text is `last`; returns every `MSG` up to it
/// (included), skipping JOIN and LEAVE.
fn msgs_until(client: &mut Client, last: &str) -> Vec<Msg> {
    let mut msgs = Vec::new();
    loop {
        let line = client.line();
        if line.starts_with("JOIN ") || line.starts_with("LEAVE ") {
            continue;
        }
        let msg = Msg::parse(&line).unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let done = msg.text == last;
        msgs.push(msg);
        if done {
            return msgs;
        }
    }
}

/// `marker` says `text`; each of `observers` reads up to that MSG and gets
/// back the lines that came before it. Whatever was queued or handed to
/// the server for delivery before the SAY comes first, so this is a
/// barrier for events (MSG, JOIN, LEAVE) caused earlier.
fn barrier(marker: &mut Client, text: &str, observers: &mut [&mut Client]) -> Vec<Vec<String>> {
    marker.send(&format!("SAY {text}"));
    collect_replies(marker, "OK SAY ", 1);
    observers
        .iter_mut()
        .map(|client| {
            let mut before = Vec::new();
            loop {
                let line = client.line();
                if Msg::parse(&line).is_some_and(|m| m.text == text) {
                    return before;
                }
                before.push(line);
            }
        })
        .collect()
}

fn assert_increasing(msgs: &[Msg], who: &str) {
    for pair in msgs.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "{who}: ids out of order: {} then {}",
            pair[0].id,
            pair[1].id
        );
    }
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.send_raw(
        b"PING a\nSAY early\nREGISTER ana secreto123 Ana\n@s1 SAY uno\nSAY dos\nHISTORY 5\nFROB\n\n@w WHO\n@s3 SAY tres\nPING z\n",
    );
    c.expect("OK PING a");
    c.expect_prefix("ERR SAY not-logged-in ");
    c.expect("OK REGISTER ana Ana");
    let (id1, ts1) = ok_say(&c.expect_prefix("@s1 OK SAY "));
    let (id2, ts2) = ok_say(&c.expect_prefix("OK SAY "));
    // The HISTORY sent after the SAYs sees them.
    c.expect(&format!("MSG {id1} {ts1} ana uno"));
    c.expect(&format!("MSG {id2} {ts2} ana dos"));
    c.expect("OK HISTORY 2");
    c.expect_prefix("ERR - bad-request ");
    c.expect("USER ana Ana");
    c.expect("@w OK WHO 1");
    let (id3, _) = ok_say(&c.expect_prefix("@s3 OK SAY "));
    assert!(id1 < id2 && id2 < id3);
    c.expect("OK PING z");

    // Hundreds of mixed commands in one write.
    let mut batch = String::new();
    for i in 0..300 {
        match i % 3 {
            0 => batch.push_str(&format!("PING p{i}\n")),
            1 => batch.push_str(&format!("@t{i} SAY m{i}\n")),
            _ => batch.push_str(&format!("@h{i} HISTORY 1\n")),
        }
    }
    c.send_raw(batch.as_bytes());
    let mut last_id = id3;
    for i in 0..300 {
        match i % 3 {
            0 => c.expect(&format!("OK PING p{i}")),
            1 => {
                let (id, _) = ok_say(&c.expect_prefix(&format!("@t{i} OK SAY ")));
                assert!(id > last_id);
                last_id = id;
            }
            _ => {
                let msg = c.expect_msg();
                assert_eq!((msg.id, msg.text), (last_id, format!("m{}", i - 1)));
                c.expect(&format!("@h{i} OK HISTORY 1"));
            }
        }
    }

    // Nothing after QUIT is run.
    let mut watcher = registered(&server, "bea");
    c.expect("JOIN bea");
    c.send_raw(b"SAY antes\nQUIT\nSAY despues\n");
    c.expect_prefix("OK SAY ");
    c.expect("OK QUIT");
    c.expect_eof();
    assert_eq!(watcher.expect_msg().text, "antes");
    watcher.expect("LEAVE ana");
    let latest = watcher.history("1");
    assert_eq!(latest[0].text, "antes");
}

#[test]
fn presence_counts_accounts_not_sessions() {
    let server = TestServer::start();
    let mut mark = registered(&server, "mark");
    let mut obs = registered(&server, "obs");
    mark.expect("JOIN obs");
    let mut ana1 = registered(&server, "ana");
    obs.expect("JOIN ana");
    mark.expect("JOIN ana");
    let none: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    let mut ana2 = server.connect();
    ana2.login("ana", "secreto123");
    // A second session is not a JOIN, for anyone.
    let heard = barrier(&mut mark, "m1", &mut [&mut obs, &mut ana1, &mut ana2]);
    assert_eq!(heard, [Vec::<String>::new(), Vec::new(), Vec::new()]);
    for client in [&mut obs, &mut ana2] {
        client.send("WHO");
        client.expect("USER ana ana Apellido");
        client.expect("USER mark mark Apellido");
        client.expect("USER obs obs Apellido");
        client.expect("OK WHO 3");
    }
    // Leaving with one session left is not a LEAVE.
    ana1.send("QUIT");
    ana1.expect("OK QUIT");
    ana1.expect_eof();
    assert_eq!(barrier(&mut mark, "m2", &mut [&mut obs, &mut ana2]), none);
    obs.send("WHO");
    obs.expect("USER ana ana Apellido");
    obs.expect("USER mark mark Apellido");
    obs.expect("USER obs obs Apellido");
    obs.expect("OK WHO 3");
    // The last session going away, however it goes, is.
    drop(ana2);
    obs.expect("LEAVE ana");
    obs.send("WHO");
    obs.expect("USER mark mark Apellido");
    obs.expect("USER obs obs Apellido");
    obs.expect("OK WHO 2");
    // And the account can come back.
    mark.expect("LEAVE ana");
    let mut ana3 = server.connect();
    ana3.login("ANA", "secreto123");
    obs.expect("JOIN ana");
    mark.expect("JOIN ana");
    // A connection that never logged in causes neither.
    let guest = server.connect();
    drop(guest);
    let mut late = server.connect();
    late.send("QUIT");
    late.expect("OK QUIT");
    late.expect_eof();
    assert_eq!(barrier(&mut mark, "m3", &mut [&mut obs, &mut ana3]), none);
}

#[test]
fn the_sender_gets_ok_say_and_its_other_sessions_get_the_msg() {
    let server = TestServer::start();
    let mut ana1 = registered(&server, "ana");
    let mut ana2 = server.connect();
    ana2.login("ana", "secreto123");
    let mut bea = registered(&server, "bea");
    ana1.expect("JOIN bea");
    ana2.expect("JOIN bea");
    let (id, ts) = ana1.say("uno");
    ana2.expect(&format!("MSG {id} {ts} ana uno"));
    bea.expect(&format!("MSG {id} {ts} ana uno"));
    // bea's message is stored after ana's: if ana1 had been sent its own
    // MSG, it would come first.
    let (id2, ts2) = bea.say("dos");
    ana1.expect(&format!("MSG {id2} {ts2} bea dos"));
    ana2.expect(&format!("MSG {id2} {ts2} bea dos"));
    let (id3, _) = ana2.say("tres");
    assert_eq!(bea.expect_msg().id, id3, "bea was sent its own message");
}

#[test]
fn events_reach_a_session_only_after_its_login() {
    let server = TestServer::start();
    let mut guest = server.connect();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    ana.expect("JOIN bea");
    ana.say("x");
    ana.say("y");
    assert_eq!(bea.expect_msg().text, "x");
    assert_eq!(bea.expect_msg().text, "y");
    // Delivery of both is over; the guest got neither, nor the JOINs.
    assert_eq!(guest.sync("g"), Vec::<String>::new());

    // Under a steady stream of messages, the first line after LOGIN or
    // REGISTER is always its OK.
    let mut flooder = registered(&server, "flood");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let stop = std::sync::Arc::clone(&stop);
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 20_000 {
                let window: String = (0..10).map(|i| format!("SAY flood {sent} {i}\n")).collect();
                flooder.send_raw(window.as_bytes());
                collect_replies(&mut flooder, "OK SAY ", 10);
                sent += 10;
            }
            sent
        })
    };
    for round in 0..12 {
        let mut c = server.connect();
        if round % 2 == 0 {
            c.send("LOGIN ana secreto123");
            c.expect("OK LOGIN ana ana Apellido");
        } else {
            c.send(&format!("REGISTER user{round} secreto123 Nuevo"));
            c.expect(&format!("OK REGISTER user{round} Nuevo"));
        }
        // And messages do flow after it.
        let line = c.line_skipping_presence();
        assert!(line.starts_with("MSG ") && line.contains(" flood "), "{line:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flooding.join().expect("the flooding thread");
    assert!(sent > 0);
}

#[test]
fn end_of_input_ends_the_session_like_quit() {
    let server = TestServer::start();
    let mut obs = registered(&server, "obs");
    let mut ana = registered(&server, "ana");
    obs.expect("JOIN ana");
    // Half-close: commands already sent are answered, then the server
    // closes and the others see LEAVE.
    ana.send("PING last");
    ana.send("SAY adiós");
    ana.shutdown_write();
    ana.expect("OK PING last");
    let (id, ts) = ok_say(&ana.expect_prefix("OK SAY "));
    ana.expect_eof();
    obs.expect(&format!("MSG {id} {ts} ana adiós"));
    obs.expect("LEAVE ana");

    // A connection that is simply closed.
    let bea = registered(&server, "bea");
    obs.expect("JOIN bea");
    drop(bea);
    obs.expect("LEAVE bea");

    // A guest's half-close closes it quietly.
    let mut guest = server.connect();
    guest.shutdown_write();
    guest.expect_eof();
    assert_eq!(obs.sync("q"), Vec::<String>::new());
}

#[test]
fn tagged_says_are_stored_once() {
    let server = TestServer::start();
    let mut obs = registered(&server, "obs");
    let mut ana = registered(&server, "ana");
    obs.expect("JOIN ana");
    ana.send("@t SAY x");
    let first = ana.expect_prefix("@t OK SAY ");
    let (id, ts) = ok_say(&first);
    obs.expect(&format!("MSG {id} {ts} ana x"));
    // The client loses its connection and tries again on a new one.
    drop(ana);
    obs.expect("LEAVE ana");
    let mut ana = server.connect();
    ana.login("ana", "secreto123");
    obs.expect("JOIN ana");
    ana.send("@t SAY x");
    ana.expect(&first);
    // The original is what counts, whatever the text now.
    ana.send("@t SAY otro texto");
    ana.expect(&first);
    // No MSG went out for the repeats: the next one obs sees is the marker.
    let (marker, _) = ana.say("marker");
    assert_eq!(obs.expect_msg().id, marker);

    // Another account may use the same tag.
    let mut bea = registered(&server, "bea");
    obs.expect("JOIN bea");
    ana.expect("JOIN bea");
    bea.send("@t SAY de bea");
    let (bea_id, _) = ok_say(&bea.expect_prefix("@t OK SAY "));
    assert!(bea_id > marker);
    assert_eq!(obs.expect_msg().text, "de bea");
    assert_eq!(ana.expect_msg().text, "de bea");

    // A SAY that failed did not use its tag up.
    ana.send("@u SAY \u{1b}[2J");
    ana.expect_prefix("@u ERR SAY invalid-text ");
    ana.send("@u SAY ahora sí");
    let (u_id, _) = ok_say(&ana.expect_prefix("@u OK SAY "));
    assert_eq!(obs.expect_msg().text, "ahora sí");

    // The same tag twice in one write.
    ana.send_raw(b"@d SAY one\n@d SAY two\n");
    let once = ana.expect_prefix("@d OK SAY ");
    ana.expect(&once);
    assert_eq!(obs.expect_msg().text, "one");
    let (_, _) = ana.say("end");
    assert_eq!(obs.expect_msg().text, "end");

    let stored = obs.history("");
    let texts: Vec<&str> = stored.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["x", "marker", "de bea", "ahora sí", "one", "end"]);
    assert_eq!((stored[0].id, stored[3].id), (id, u_id));
}

#[test]
fn concurrent_senders_are_totally_ordered() {
    const SENDERS: usize = 4;
    const RECEIVERS: usize = 3;
    const PER_SENDER: usize = 200;
    const WINDOW: usize = 25;
    let server = TestServer::start();
    let mut receivers: Vec<Client> = (0..RECEIVERS).map(|r| registered(&server, &format!("r{r}"))).collect();
    let mut senders: Vec<Client> = (0..SENDERS).map(|s| registered(&server, &format!("s{s}"))).collect();
    let mut closer = registered(&server, "closer");
    let mut late = server.connect();
    // Every JOIN is queued by now; take them out of the way.
    for client in receivers.iter_mut().chain(senders.iter_mut()) {
        client.sync("ready");
    }
    let started = common::now_ms();

    let receiving: Vec<_> = receivers
        .into_iter()
        .map(|mut r| thread::spawn(move || (msgs_until(&mut r, "fin"), r)))
        .collect();
    let (progress, progressed) = std::sync::mpsc::channel::<usize>();
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut client)| {
            let progress = progress.clone();
            thread::spawn(move || {
                let mut acks = Vec::with_capacity(PER_SENDER);
                let mut events = Vec::new();
                for start in (0..PER_SENDER).step_by(WINDOW) {
                    let window: String = (start..start + WINDOW)
                        .map(|i| format!("@s{s}-{i} SAY m{s}-{i}\n"))
                        .collect();
                    client.send_raw(window.as_bytes());
                    let (replies, more) = collect_replies(&mut client, "@s", WINDOW);
                    events.extend(more);
                    for (i, reply) in (start..).zip(replies) {
                        assert!(reply.starts_with(&format!("@s{s}-{i} OK SAY ")), "{reply:?}");
                        acks.push(ok_say(&reply).0);
                    }
                    let _ = progress.send(s);
                }
                // Sent everything; the rest of the others' messages follow.
                let _ = progress.send(usize::MAX);
                let mut msgs = Vec::new();
                for line in events {
                    if !line.starts_with("JOIN ") && !line.starts_with("LEAVE ") {
                        msgs.push(Msg::parse(&line).unwrap_or_else(|| panic!("sender {s} got {line:?}")));
                    }
                }
                msgs.extend(msgs_until(&mut client, "fin"));
                // The client is handed back so that no LEAVE reaches the
                // closer before its HISTORY.
                (acks, msgs, client)
            })
        })
        .collect();
    drop(progress);
    // A session that logs in while the messages flow.
    let wait = Duration::from_secs(60);
    progressed.recv_timeout(wait).expect("a first window acknowledged");
    late.login("closer", "secreto123");
    let late_receiving = thread::spawn(move || (msgs_until(&mut late, "fin"), late));
    let mut finished = 0;
    while finished < SENDERS {
        if progressed.recv_timeout(wait).expect("the senders progress") == usize::MAX {
            finished += 1;
        }
    }
    // The closer got every MSG before this OK, so its HISTORY below is clean.
    closer.send("SAY fin");
    collect_replies(&mut closer, "OK SAY ", 1);

    let history = closer.full_history();
    assert_eq!(history.len(), SENDERS * PER_SENDER + 1);
    assert_increasing(&history, "history");
    let now = common::now_ms();
    for m in &history {
        assert!(
            m.ts >= started - 5_000 && m.ts <= now + 5_000,
            "implausible TS in {m:?}"
        );
    }
    let by_id: HashMap<i64, &Msg> = history.iter().map(|m| (m.id, m)).collect();
    for (r, handle) in receiving.into_iter().enumerate() {
        let (msgs, _client) = handle.join().expect("a receiver thread");
        assert_increasing(&msgs, &format!("receiver {r}"));
        assert_eq!(msgs, history, "receiver {r} did not get exactly the stored messages");
    }
    for (s, handle) in sending.into_iter().enumerate() {
        let (acks, msgs, _client) = handle.join().expect("a sender thread");
        assert_eq!(acks.len(), PER_SENDER);
        for (i, id) in acks.iter().enumerate() {
            let stored = by_id
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged id {id} not stored"));
            assert_eq!(
                (stored.user.as_str(), stored.text.as_str()),
                (&*format!("s{s}"), &*format!("m{s}-{i}"))
            );
        }
        assert!(acks.windows(2).all(|w| w[0] < w[1]), "sender {s}: acks out of order");
        let others: Vec<Msg> = history.iter().filter(|m| m.user != format!("s{s}")).cloned().collect();
        assert_eq!(msgs, others, "sender {s} did not get exactly the others' messages");
    }
    // No gap: from the first message it got, the late session got them all.
    let (late_msgs, _late) = late_receiving.join().expect("the late receiver");
    let first = late_msgs.first().expect("at least fin").id;
    let from = history.iter().position(|m| m.id == first).expect("a stored id");
    assert_eq!(late_msgs, history[from..], "the late session missed messages");
    // Each message once, everywhere.
    let unique: HashSet<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(unique.len(), history.len());
}

#[test]
fn history_pages_back_with_before() {
    let server = TestServer::start();
    let mut c = registered(&server, "ana");
    c.send("HISTORY");
    c.expect("OK HISTORY 0");
    let batch: String = (0..120).map(|i| format!("SAY h{i}\n")).collect();
    c.send_raw(batch.as_bytes());
    let ids: Vec<i64> = (0..120).map(|_| ok_say(&c.expect_prefix("OK SAY ")).0).collect();
    let texts = |msgs: &[Msg]| msgs.iter().map(|m| m.text.clone()).collect::<Vec<_>>();
    let range = |from: usize, to: usize| (from..to).map(|i| format!("h{i}")).collect::<Vec<_>>();

    assert_eq!(texts(&c.history("")), range(70, 120), "default is the latest 50");
    assert_eq!(texts(&c.history("1")), range(119, 120));
    assert_eq!(texts(&c.history("007")), range(113, 120));
    assert_eq!(texts(&c.history("1000")), range(0, 120));
    assert_eq!(texts(&c.history(&format!("30 {}", ids[70]))), range(40, 70));
    assert_eq!(texts(&c.history(&format!("50 {}", ids[10]))), range(0, 10));
    assert_eq!(texts(&c.history(&format!("5 {}", ids[0]))), range(0, 0));
    assert_eq!(texts(&c.history("5 1")), range(0, 0));
    assert_eq!(texts(&c.history(&format!("3 {}", ids[119] + 1000))), range(117, 120));
    let full = c.history("1000");
    assert_eq!(full.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    let now = common::now_ms();
    assert!(
        full.iter()
            .all(|m| m.user == "ana" && m.ts > now - 60_000 && m.ts <= now + 5_000)
    );

    // Paging back by the smallest id held walks everything exactly once.
    let mut seen: Vec<Msg> = Vec::new();
    let mut page = c.history("25");
    for _ in 0..10 {
        if page.is_empty() {
            break;
        }
        let before = page[0].id;
        page.append(&mut seen);
        seen = page;
        page = c.history(&format!("25 {before}"));
    }
    assert!(page.is_empty());
    assert_eq!(seen, full);
}

/// A text of exactly 2000 two-byte characters (4000 bytes), numbered.
fn big_text(i: usize) -> String {
    format!("{i:05}{}", "é".repeat(1995))
}

#[test]
fn a_slow_consumer_is_cut_off_without_slowing_anyone_else() {
    const WINDOW: usize = 16;
    const MAX_MESSAGES: usize = 4000;
    let server = TestServer::start_with(&["--sync", "normal"]);
    let slow = registered(&server, "slow");
    let mut reader = registered(&server, "reader");
    let mut sender = registered(&server, "sender");
    reader.sync("ready");
    let reading = thread::spawn(move || {
        let mut msgs = Vec::new();
        let mut left = Vec::new();
        loop {
            let line = reader.line();
            if line.starts_with("LEAVE ") {
                left.push(line);
                continue;
            }
            if line.starts_with("JOIN ") {
                continue;
            }
            let msg = Msg::parse(&line).unwrap_or_else(|| panic!("reader got {line:?}"));
            let done = msg.text == "fin";
            msgs.push(msg);
            if done {
                return (msgs, left);
            }
        }
    });

    // The slow session never reads. Send big messages in windows until the
    // server reports it gone, then some more.
    let mut acked: Vec<i64> = Vec::new();
    let mut slowest_window = Duration::ZERO;
    let mut windows_after_cut = None;
    let mut sender_events = Vec::new();
    let mut slow = Some(slow);
    let mut draining = None;
    while windows_after_cut != Some(0) {
        assert!(acked.len() < MAX_MESSAGES, "the slow consumer was never cut off");
        let window: String = (acked.len()..acked.len() + WINDOW)
            .map(|i| format!("SAY {}\n", big_text(i)))
            .collect();
        let sent_at = Instant::now();
        sender.send_raw(window.as_bytes());
        let (replies, events) = collect_replies(&mut sender, "OK SAY ", WINDOW);
        slowest_window = slowest_window.max(sent_at.elapsed());
        acked.extend(replies.iter().map(|r| ok_say(r).0));
        if events.iter().any(|e| e == "LEAVE slow") && windows_after_cut.is_none() {
            windows_after_cut = Some(4);
            // It starts reading now, slowly: whatever the server still
            // sends it must be whole lines.
            let mut slow = slow.take().expect("the slow client");
            draining = Some(thread::spawn(move || {
                slow.read_slowly_to_close(8192, Duration::from_millis(2), Duration::from_secs(30))
            }));
        }
        sender_events.extend(events);
        windows_after_cut = windows_after_cut.map(|n: usize| n.saturating_sub(1));
    }
    let (fin, _) = sender.say("fin");
    acked.push(fin);
    assert!(
        slowest_window < Duration::from_secs(3),
        "the sender was held up for {slowest_window:?}"
    );
    assert!(
        sender_events.iter().all(|e| !e.starts_with("MSG ")),
        "the sender got its own messages"
    );
    assert_eq!(
        sender_events
            .iter()
            .filter(|e| e.starts_with("LEAVE "))
            .collect::<Vec<_>>(),
        ["LEAVE slow"]
    );

    // The reader, which kept up, got every message, in order.
    let (msgs, left) = reading.join().expect("the reader thread");
    assert_eq!(msgs.iter().map(|m| m.id).collect::<Vec<_>>(), acked);
    for (i, m) in msgs.iter().enumerate().take(acked.len() - 1) {
        assert_eq!(m.text, big_text(i));
    }
    assert_eq!(left, ["LEAVE slow"]);

    // The slow one was disconnected. What it got is a prefix of the
    // messages, each line whole and exact, with nothing skipped, maybe
    // followed by BYE; only the very last line may be cut short.
    let bytes = draining
        .expect("the slow session was cut off")
        .join()
        .expect("the draining thread");
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |end| end + 1);
    let text = std::str::from_utf8(&bytes[..complete]).expect("whole lines of UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let mut got = 0;
    for (n, line) in lines.iter().enumerate() {
        if let Some(m) = Msg::parse(line) {
            let tail: String = line.chars().skip(line.chars().count().saturating_sub(60)).collect();
            assert!(
                m.id == acked[got] && m.text == big_text(got),
                "line {n} of the slow session is not message {got}: ...{tail:?}"
            );
            got += 1;
        } else if line.starts_with("BYE ") {
            assert_eq!(*line, "BYE slow-consumer you are not reading fast enough");
            assert_eq!((n, complete), (lines.len() - 1, bytes.len()), "BYE is the last line");
        } else {
            assert!(line.starts_with("JOIN ") && got == 0, "slow got {line:?}");
        }
    }
    assert!(got < acked.len());
    let log = server.log();
    assert!(
        log.contains("slow consumer"),
        "the server log does not mention it:\n{log}"
    );
}

#[test]
fn multi_line_replies_are_contiguous_under_traffic() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let old: String = (0..60).map(|i| format!("SAY old{i}\n")).collect();
    ana.send_raw(old.as_bytes());
    let ids: Vec<i64> = (0..60).map(|_| ok_say(&ana.expect_prefix("OK SAY ")).0).collect();
    let mut bea = registered(&server, "bea");
    let mut flooder = registered(&server, "flood");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let stop = std::sync::Arc::clone(&stop);
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 50_000 {
                let window: String = (0..10).map(|i| format!("SAY flood {sent} {i}\n")).collect();
                flooder.send_raw(window.as_bytes());
                collect_replies(&mut flooder, "OK SAY ", 10);
                sent += 10;
            }
        })
    };
    // Start once the stream reaches the reader, and go on until plenty of
    // it has arrived between the replies.
    while !bea.line().contains(" flood ") {}
    let mut live = 0;
    for round in 0..4000 {
        if round >= 40 && live >= 200 {
            break;
        }
        if round % 2 == 0 {
            // 50 old messages, which no live MSG can be mistaken for.
            bea.send(&format!("HISTORY 50 {}", ids[50]));
            let mut line = bea.line();
            while Msg::parse(&line).is_none_or(|m| m.id > ids[59]) {
                live += 1;
                line = bea.line();
            }
            for (n, &id) in ids[..50].iter().enumerate() {
                let m = Msg::parse(&line).unwrap_or_else(|| panic!("inside HISTORY: {line:?}"));
                assert_eq!((m.id, m.text), (id, format!("old{n}")), "inside HISTORY");
                line = bea.line();
            }
            assert_eq!(line, "OK HISTORY 50");
        } else {
            bea.send("WHO");
            let mut line = bea.line();
            while !line.starts_with("USER ") {
                live += 1;
                line = bea.line();
            }
            let mut users = 0;
            while line.starts_with("USER ") {
                users += 1;
                line = bea.line();
            }
            assert_eq!(line, format!("OK WHO {users}"), "inside WHO");
            assert_eq!(users, 3);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flooding.join().expect("the flooding thread");
    assert!(live >= 200, "too little traffic reached the reader during the test");
}

#[test]
fn join_and_leave_stay_consistent_under_churn() {
    let server = TestServer::start();
    let mut mark = registered(&server, "mark");
    let mut obs = registered(&server, "obs");
    mark.expect("JOIN obs");
    registered(&server, "ana").send("QUIT");
    let churning: Vec<_> = (0..2)
        .map(|_| {
            let addr = server.addr;
            thread::spawn(move || {
                for _ in 0..25 {
                    let mut c = Client::connect(addr);
                    c.expect_prefix("HELLO ");
                    c.login("ana", "secreto123");
                    c.send("QUIT");
                    c.line_skipping_presence();
                    c.expect_eof();
                }
            })
        })
        .collect();
    for handle in churning {
        handle.join().expect("a churning thread");
    }
    // Every session has ended (each saw EOF), so every event comes before
    // the marker.
    let events = barrier(&mut mark, "done", &mut [&mut obs]).remove(0);
    assert!(!events.is_empty());
    for (n, event) in events.iter().enumerate() {
        let expected = if n % 2 == 0 { "JOIN ana" } else { "LEAVE ana" };
        assert_eq!(event, expected, "event {n} of {events:?}");
    }
    assert_eq!(events.len() % 2, 0, "ana is still online: {events:?}");
    obs.send("WHO");
    obs.expect("USER mark mark Apellido");
    obs.expect("USER obs obs Apellido");
    obs.expect("OK WHO 2");
}

#[test]
fn own_replies_never_overflow_but_the_next_event_cuts_a_stalled_client() {
    let server = TestServer::start();
    let mut writer = registered(&server, "writer");
    let all: String = (0..300).map(|i| format!("SAY {}\n", big_text(i))).collect();
    writer.send_raw(all.as_bytes());
    for _ in 0..300 {
        writer.expect_prefix("OK SAY ");
    }
    // About 10 MB of replies asked for at once, far past the 1 MiB queue
    // and the socket buffers. The pause only makes sure the server has run
    // into the limit before the client starts reading.
    let mut hog = registered(&server, "hog");
    writer.expect("JOIN hog");
    hog.send_raw("HISTORY 300\n".repeat(8).as_bytes());
    thread::sleep(Duration::from_millis(300));
    for _ in 0..8 {
        let history: Vec<Msg> = (0..300).map(|_| hog.expect_msg()).collect();
        assert_eq!(history[299].text, big_text(299));
        hog.expect("OK HISTORY 300");
    }
    assert_eq!(hog.sync("intact"), Vec::<String>::new());

    // The same client stalled: an event that does not fit cuts it off,
    // and the sender of that event is not held up.
    hog.send_raw("HISTORY 300\n".repeat(8).as_bytes());
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    writer.say("¿sigues ahí?");
    writer.expect("LEAVE hog");
    assert!(started.elapsed() < Duration::from_secs(3));
    let (lines, _) = hog.read_to_close(Duration::from_secs(30));
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with("MSG ") || Msg::parse(l).is_some_and(|m| m.text != "¿sigues ahí?")),
        "the stalled client got the event that did not fit"
    );
}

#[test]
fn two_sessions_racing_on_the_same_tags_store_each_once() {
    const TAGS: usize = 100;
    let server = TestServer::start();
    let mut obs = registered(&server, "obs");
    let mut sessions = vec![registered(&server, "ana")];
    let mut second = server.connect();
    second.login("ana", "secreto123");
    sessions.push(second);
    obs.expect("JOIN ana");
    let racing: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(n, mut c)| {
            thread::spawn(move || {
                let lines: String = (0..TAGS).map(|i| format!("@c{i} SAY v{i} from {n}\n")).collect();
                c.send_raw(lines.as_bytes());
                let (replies, _) = collect_replies(&mut c, "@c", TAGS);
                let ids: Vec<i64> = replies
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        assert!(r.starts_with(&format!("@c{i} OK SAY ")), "{r:?}");
                        ok_say(r).0
                    })
                    .collect();
                (ids, c)
            })
        })
        .collect();
    let results: Vec<(Vec<i64>, Client)> = racing.into_iter().map(|h| h.join().expect("a racer")).collect();
    assert_eq!(
        results[0].0, results[1].0,
        "the two sessions got different ids for a tag"
    );
    let mut writer = results.into_iter().next().expect("a session").1;
    writer.send("SAY fin");
    collect_replies(&mut writer, "OK SAY ", 1);
    let received = msgs_until(&mut obs, "fin");
    assert_eq!(received.len(), TAGS + 1, "each tag broadcast once");
    for (i, m) in received.iter().take(TAGS).enumerate() {
        assert!(m.text.starts_with(&format!("v{i} from ")), "{m:?}");
    }
    assert_eq!(obs.history("1000").len(), TAGS + 1);
}

#[test]
fn presence_events_are_only_for_changes_after_ones_own_login() {
    const ROUNDS: usize = 20;
    let server = TestServer::start();
    let mut mark = registered(&server, "mark");
    for i in 0..ROUNDS {
        registered(&server, &format!("x{i}")).send("QUIT");
    }
    registered(&server, "y").send("QUIT");
    // Keep the server busy storing messages while accounts come and go.
    let mut flooder = registered(&server, "flood");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let stop = std::sync::Arc::clone(&stop);
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 50_000 {
                let window: String = (0..20).map(|i| format!("SAY flood {sent} {i}\n")).collect();
                flooder.send_raw(window.as_bytes());
                collect_replies(&mut flooder, "OK SAY ", 20);
                sent += 20;
            }
        })
    };
    let mut observers = Vec::new();
    for i in 0..ROUNDS {
        // x comes online, then y does: y must not hear that x came online,
        // nor, after x has gone, that x went offline.
        let mut x = server.connect();
        x.login(&format!("x{i}"), "secreto123");
        let mut y = server.connect();
        y.login("y", "secreto123");
        x.send("QUIT");
        collect_replies(&mut x, "OK QUIT", 1);
        // Events already due to x (messages stored meanwhile, y's JOIN, which
        // happened while x was logged in) may still follow the OK QUIT.
        let (after, _) = x.read_to_close(Duration::from_secs(10));
        let due = |l: &String| l.starts_with("MSG ") || l.as_str() == "JOIN y";
        assert!(after.iter().all(due), "after OK QUIT: {after:?}");
        let mut z = server.connect();
        z.login("y", "secreto123");
        observers.push((i, y, z));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flooding.join().expect("the flooding thread");
    for (i, mut y, mut z) in observers {
        let lines = barrier(&mut mark, &format!("end{i}"), &mut [&mut y, &mut z]);
        let join = format!("JOIN x{i}");
        let leave = format!("LEAVE x{i}");
        assert!(!lines[0].contains(&join), "y heard x{i} come online after y did");
        assert!(lines[0].contains(&leave), "y missed x{i} going offline");
        assert!(
            !lines[1].contains(&join) && !lines[1].contains(&leave),
            "a session heard of x{i} coming or going before it logged in"
        );
    }
}

#[test]
fn a_join_comes_before_anything_said_after_the_login_was_answered() {
    const ROUNDS: usize = 60;
    let server = TestServer::start();
    let mut listener = registered(&server, "oyente");
    let mut talker = registered(&server, "hablante");
    listener.expect("JOIN hablante");
    for i in 0..ROUNDS {
        registered(&server, &format!("x{i}")).send("QUIT");
        for client in [&mut listener, &mut talker] {
            client.expect(&format!("JOIN x{i}"));
            client.expect(&format!("LEAVE x{i}"));
        }
    }
    for i in 0..ROUNDS {
        let mut x = server.connect();
        x.login(&format!("x{i}"), "secreto123");
        // Told that x is in, the talker speaks: whoever hears the talker
        // must already have heard that x came online.
        talker.send(&format!("SAY after x{i}"));
        let (reply, mut talker_heard) = collect_replies(&mut talker, "OK SAY ", 1);
        let (id, _) = ok_say(&reply[0]);
        let mut heard = Vec::new();
        loop {
            let line = listener.line();
            if Msg::parse(&line).is_some_and(|m| m.id == id) {
                break;
            }
            heard.push(line);
        }
        assert_eq!(heard, [format!("JOIN x{i}")], "round {i}");
        drop(x);
        listener.expect(&format!("LEAVE x{i}"));
        while talker_heard.len() < 2 {
            talker_heard.push(talker.line());
        }
        assert_eq!(talker_heard, [format!("JOIN x{i}"), format!("LEAVE x{i}")]);
    }
}

//! Rooms and private messages (PROTOCOL.md 9, version 1.1) against the real
//! binary: every command, every event reaching exactly the sessions it
//! should and no other, the order of checks, the limits, persistence, and
//! the migration of a version 1 database.

mod common;

use std::time::Duration;

use common::{Client, TestServer, registered};

/// What `client` received before the answer to a `PING` sent now, without
/// presence lines (`JOIN`/`LEAVE`). Called after the sender of an event has
/// had a later reply, the fan-out of the event is complete, so this is
/// everything the event brought to `client`.
fn received(client: &mut Client) -> Vec<String> {
    client
        .sync("hecho")
        .into_iter()
        .filter(|l| !l.starts_with("JOIN ") && !l.starts_with("LEAVE "))
        .collect()
}

/// Whether `line` is a final reply (`OK`/`ERR`, tagged or not) rather
/// than an event or a body line.
fn is_reply(line: &str) -> bool {
    let untagged = match line.strip_prefix('@') {
        Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest),
        None => line,
    };
    untagged.starts_with("OK ") || untagged.starts_with("ERR ")
}

/// Sends a single-line command and returns its reply, skipping the events
/// that arrive before it (tests that care about events read them with
/// [`received`] first).
fn ask(client: &mut Client, line: &str) -> String {
    client.send(line);
    loop {
        let got = client.line();
        if is_reply(&got) {
            return got;
        }
    }
}

/// Sends `line`, expecting a reply that starts with `prefix`.
fn expect(client: &mut Client, line: &str, prefix: &str) -> String {
    let reply = ask(client, line);
    assert!(
        reply.starts_with(prefix),
        "sent {line:?}: expected {prefix:?}..., got {reply:?}"
    );
    reply
}

/// `SEND target text`, expecting `OK SEND`; returns the id. Its delivery is
/// complete when this returns.
fn send(client: &mut Client, target: &str, text: &str) -> i64 {
    let reply = expect(client, &format!("SEND {target} {text}"), "OK SEND ");
    let id = reply.split(' ').nth(2).and_then(|id| id.parse().ok()).expect("an id");
    client.sync("entregado");
    id
}

/// A multi-line reply's body and its `OK` line.
fn listing(client: &mut Client, line: &str) -> (Vec<String>, String) {
    client.send(line);
    let mut body = Vec::new();
    loop {
        let got = client.line();
        if got.starts_with("JOIN ") || got.starts_with("LEAVE ") {
            continue;
        }
        if is_reply(&got) {
            return (body, got);
        }
        body.push(got);
    }
}

#[test]
fn join_creates_a_room_and_tells_every_other_session_of_every_member() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut ana2 = server.connect();
    ana2.login("ana", "secreto123");
    let mut bea = registered(&server, "bea");
    let mut carla = registered(&server, "carla");
    expect(&mut ana, "JOIN #Clase", "OK JOIN #Clase");
    // The joiner's other session hears of it; a non-member does not.
    assert_eq!(received(&mut ana2), ["ENTER #Clase ana"]);
    assert_eq!(received(&mut carla), Vec::<String>::new());
    // The name matches regardless of case and keeps its creator's case.
    expect(&mut bea, "@j JOIN #CLASE", "@j OK JOIN #Clase");
    assert_eq!(received(&mut ana), ["ENTER #Clase bea"]);
    assert_eq!(received(&mut ana2), ["ENTER #Clase bea"]);
    assert_eq!(received(&mut bea), Vec::<String>::new());
    // Joining again, and joining the lobby: OK, and nobody is told.
    expect(&mut bea, "JOIN #clase", "OK JOIN #Clase");
    expect(&mut bea, "JOIN #General", "OK JOIN #general");
    assert_eq!(received(&mut ana), Vec::<String>::new());
    assert_eq!(received(&mut carla), Vec::<String>::new());
}

#[test]
fn room_names_are_checked() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let long = format!("#{}", "a".repeat(33));
    for bad in ["#", "sala", "#sa la", "#añá", "##", "#a/b", long.as_str()] {
        let reply = ask(&mut ana, &format!("JOIN {bad}"));
        let expected = if bad.contains(' ') {
            "ERR JOIN bad-request "
        } else {
            "ERR JOIN invalid-room "
        };
        assert!(reply.starts_with(expected), "JOIN {bad}: {reply}");
    }
    expect(&mut ana, "PART #a!", "ERR PART invalid-room ");
    expect(&mut ana, "SEND #a! hola", "ERR SEND invalid-room ");
    expect(&mut ana, "SEND @a! hola", "ERR SEND invalid-username ");
    expect(&mut ana, "SEND sala hola", "ERR SEND bad-request ");
    expect(&mut ana, "SEND #sala", "ERR SEND bad-request ");
    expect(&mut ana, "HISTORY sala", "ERR HISTORY bad-request ");
    expect(&mut ana, "HISTORY #a! 5", "ERR HISTORY invalid-room ");
    expect(&mut ana, "WHO sala", "ERR WHO bad-request ");
    expect(&mut ana, "WHO @ana", "ERR WHO bad-request ");
    expect(&mut ana, "WHO #a!", "ERR WHO invalid-room ");
    expect(&mut ana, "JOIN", "ERR JOIN bad-request ");
    expect(&mut ana, "ROOMS x", "ERR ROOMS bad-request ");
    let mut guest = server.connect();
    expect(&mut guest, "JOIN #sala", "ERR JOIN not-logged-in ");
    expect(&mut guest, "SYNC 0", "ERR SYNC not-logged-in ");
}

#[test]
fn a_room_message_reaches_every_session_of_every_member_but_the_senders() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut ana2 = server.connect();
    ana2.login("ana", "secreto123");
    let mut bea = registered(&server, "bea");
    let mut carla = registered(&server, "carla");
    expect(&mut ana, "JOIN #clase", "OK JOIN #clase");
    expect(&mut bea, "JOIN #clase", "OK JOIN #clase");
    received(&mut ana2);
    received(&mut ana);
    let id = send(&mut ana, "#Clase", "hola  sala");
    let post = |id: i64, ts: &str| format!("POST {id} {ts} #clase ana hola  sala");
    for client in [&mut ana2, &mut bea] {
        let got = received(client);
        assert_eq!(got.len(), 1, "{got:?}");
        let ts = got[0].split(' ').nth(2).unwrap().to_string();
        assert_eq!(got[0], post(id, &ts));
    }
    assert_eq!(received(&mut ana), Vec::<String>::new(), "the sender gets OK SEND only");
    assert_eq!(received(&mut carla), Vec::<String>::new(), "a non-member gets nothing");
    // Not a member, no room.
    expect(&mut carla, "SEND #clase hola", "ERR SEND not-member ");
    expect(&mut carla, "SEND #nadie hola", "ERR SEND no-such-room ");
    expect(&mut carla, "HISTORY #clase", "ERR HISTORY not-member ");
    expect(&mut carla, "WHO #clase", "ERR WHO not-member ");
    expect(&mut carla, "WHO #nadie", "ERR WHO no-such-room ");
    expect(&mut carla, "HISTORY #nadie", "ERR HISTORY no-such-room ");
}

#[test]
fn lobby_messages_stay_version_1_whichever_verb_sent_them() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    let id = send(&mut ana, "#GENERAL", "por SEND");
    let got = received(&mut bea);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(&format!("MSG {id} ")) && got[0].ends_with(" ana por SEND"),
        "{got:?}"
    );
    let history = bea.history("#general 5");
    assert_eq!(history.last().map(|m| m.id), Some(id));
    let (body, ok) = listing(&mut bea, "WHO #general");
    assert_eq!(ok, "OK WHO 2");
    assert_eq!(body, ["USER ana ana Apellido", "USER bea bea Apellido"]);
}

#[test]
fn a_private_message_reaches_both_accounts_and_nobody_else() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut ana2 = server.connect();
    ana2.login("ana", "secreto123");
    let mut bea = registered(&server, "Bea");
    let mut bea2 = server.connect();
    bea2.login("bea", "secreto123");
    let mut carla = registered(&server, "carla");
    let id = send(&mut ana, "@BEA", "hola Bea");
    for client in [&mut ana2, &mut bea, &mut bea2] {
        let got = received(client);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with(&format!("POST {id} ")), "{got:?}");
        assert!(got[0].ends_with(" @Bea ana hola Bea"), "{got:?}");
    }
    assert_eq!(received(&mut ana), Vec::<String>::new());
    assert_eq!(
        received(&mut carla),
        Vec::<String>::new(),
        "a third account gets nothing"
    );
    // The answer, and notes to oneself.
    let back = send(&mut bea, "@ana", "hola Ana");
    let note = send(&mut ana, "@ana", "nota");
    let got = received(&mut ana2);
    assert!(got[0].starts_with(&format!("POST {back} ")) && got[0].ends_with(" @ana Bea hola Ana"));
    assert!(got[1].starts_with(&format!("POST {note} ")) && got[1].ends_with(" @ana ana nota"));
    // Both accounts read the conversation; a third reads only its own.
    let (body, ok) = listing(&mut bea, "HISTORY @Ana");
    assert_eq!(ok, "OK HISTORY 2");
    assert!(
        body[0].ends_with(" @Bea ana hola Bea") && body[1].ends_with(" @ana Bea hola Ana"),
        "{body:?}"
    );
    let (body, ok) = listing(&mut carla, "HISTORY @ana");
    assert_eq!((body.len(), ok.as_str()), (0, "OK HISTORY 0"));
    received(&mut ana);
    let (body, _) = listing(&mut ana, "HISTORY @ana");
    assert_eq!(body.len(), 1, "notes to oneself: {body:?}");
    expect(&mut ana, "SEND @nadie hola", "ERR SEND no-such-user ");
    expect(&mut ana, "HISTORY @nadie", "ERR HISTORY no-such-user ");
    let (_, ok) = listing(&mut carla, "SYNC 0");
    assert_eq!(ok, "OK SYNC 0", "carla may read none of it");
}

#[test]
fn history_covers_the_whole_room_while_a_member_and_nothing_after_part() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    expect(&mut ana, "JOIN #sala", "OK JOIN #sala");
    let before = send(&mut ana, "#sala", "antes");
    expect(&mut bea, "JOIN #sala", "OK JOIN #sala");
    let (body, ok) = listing(&mut bea, "HISTORY #sala");
    assert_eq!(ok, "OK HISTORY 1");
    assert!(
        body[0].starts_with(&format!("POST {before} ")),
        "messages from before joining are read"
    );
    let after = send(&mut ana, "#sala", "despues");
    received(&mut bea);
    let (body, _) = listing(&mut bea, "HISTORY #sala 1");
    assert!(body[0].starts_with(&format!("POST {after} ")));
    let (body, _) = listing(&mut bea, &format!("HISTORY #sala 5 {after}"));
    assert_eq!(body.len(), 1, "paging back with BEFORE: {body:?}");
    received(&mut bea);
    expect(&mut bea, "PART #SALA", "OK PART #sala");
    assert_eq!(received(&mut ana), ["EXIT #sala bea"]);
    send(&mut ana, "#sala", "ya no");
    assert_eq!(received(&mut bea), Vec::<String>::new(), "nothing live after PART");
    expect(&mut bea, "HISTORY #sala", "ERR HISTORY not-member ");
    let (body, _) = listing(&mut bea, "SYNC 0");
    assert!(
        body.iter().all(|l| !l.contains("#sala")),
        "nothing of the room in SYNC: {body:?}"
    );
    expect(&mut bea, "PART #sala", "ERR PART not-member ");
    expect(&mut bea, "PART #nunca", "ERR PART not-member ");
    expect(&mut bea, "PART #general", "ERR PART forbidden ");
}

#[test]
fn part_tells_the_remaining_members_and_the_parting_accounts_other_sessions() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut ana2 = server.connect();
    ana2.login("ana", "secreto123");
    let mut bea = registered(&server, "bea");
    let mut carla = registered(&server, "carla");
    expect(&mut ana, "JOIN #sala", "OK JOIN #sala");
    expect(&mut bea, "JOIN #sala", "OK JOIN #sala");
    for c in [&mut ana, &mut ana2, &mut bea] {
        received(c);
    }
    expect(&mut ana, "PART #sala", "OK PART #sala");
    assert_eq!(received(&mut ana2), ["EXIT #sala ana"]);
    assert_eq!(received(&mut bea), ["EXIT #sala ana"]);
    assert_eq!(received(&mut ana), Vec::<String>::new());
    assert_eq!(received(&mut carla), Vec::<String>::new());
}

#[test]
fn a_room_ends_with_its_last_member_and_a_new_one_starts_empty() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    expect(&mut ana, "JOIN #Taller", "OK JOIN #Taller");
    send(&mut ana, "#taller", "viejo");
    expect(&mut ana, "PART #taller", "OK PART #Taller");
    expect(&mut bea, "SEND #taller hola", "ERR SEND no-such-room ");
    let (body, _) = listing(&mut bea, "ROOMS");
    assert_eq!(body, ["ROOM #general 2 *"]);
    expect(&mut bea, "JOIN #taller", "OK JOIN #taller");
    let (body, ok) = listing(&mut bea, "HISTORY #TALLER");
    assert_eq!((body.len(), ok.as_str()), (0, "OK HISTORY 0"), "{body:?}");
}

#[test]
fn rooms_lists_every_room_with_its_members_and_a_flag() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    let _carla = registered(&server, "carla");
    expect(&mut ana, "JOIN #zeta", "OK JOIN #zeta");
    expect(&mut ana, "JOIN #Alfa", "OK JOIN #Alfa");
    expect(&mut bea, "JOIN #alfa", "OK JOIN #Alfa");
    let (body, ok) = listing(&mut bea, "@r ROOMS");
    assert_eq!(ok, "@r OK ROOMS 3");
    assert_eq!(body, ["ROOM #Alfa 2 *", "ROOM #general 3 *", "ROOM #zeta 1 -"]);
    // Members count accounts, online or not.
    drop(ana);
    let (body, _) = listing(&mut bea, "ROOMS");
    assert_eq!(body[0], "ROOM #Alfa 2 *");
}

#[test]
fn who_of_a_room_lists_its_members_online_now() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    let _carla = registered(&server, "carla");
    expect(&mut ana, "JOIN #sala", "OK JOIN #sala");
    expect(&mut bea, "JOIN #sala", "OK JOIN #sala");
    received(&mut ana);
    let (body, ok) = listing(&mut ana, "WHO #SALA");
    assert_eq!(ok, "OK WHO 2");
    assert_eq!(body, ["USER ana ana Apellido", "USER bea bea Apellido"]);
    bea.send("QUIT");
    bea.expect_prefix("OK QUIT");
    let mut only_ana = Vec::new();
    for _ in 0..50 {
        let (body, _) = listing(&mut ana, "WHO #sala");
        only_ana = body;
        if only_ana.len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(only_ana, ["USER ana ana Apellido"]);
}

#[test]
fn sync_returns_everything_readable_in_id_order_and_pages() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    expect(&mut ana, "JOIN #sala", "OK JOIN #sala");
    let ids = [
        send(&mut ana, "#general", "uno"),
        send(&mut ana, "#sala", "dos"),
        send(&mut bea, "@ana", "tres"),
        send(&mut bea, "#general", "cuatro"),
    ];
    received(&mut ana);
    received(&mut bea);
    let (body, ok) = listing(&mut ana, "@s SYNC 0");
    assert_eq!(ok, "@s OK SYNC 4");
    let got: Vec<i64> = body
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, ids);
    assert!(body[0].starts_with("MSG ") && body[1].starts_with("POST ") && body[3].starts_with("MSG "));
    let (body, ok) = listing(&mut ana, &format!("SYNC {} 2", ids[0]));
    assert_eq!(ok, "OK SYNC 2");
    assert!(body[0].starts_with(&format!("POST {} ", ids[1])));
    let (body, _) = listing(&mut bea, "SYNC 0 1000");
    assert_eq!(body.len(), 3, "bea is not in #sala: {body:?}");
    for bad in ["SYNC", "SYNC x", "SYNC -1", "SYNC 0 0", "SYNC 0 1001", "SYNC 0 1 2"] {
        expect(&mut ana, bad, "ERR SYNC bad-request ");
    }
}

#[test]
fn a_resent_tag_gets_its_original_answer_whatever_its_target_is_now() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    expect(&mut ana, "JOIN #sala", "OK JOIN #sala");
    let first = expect(&mut ana, "@t1 SEND #sala hola", "@t1 OK SEND ");
    // One tag space for SAY and SEND.
    let again = expect(&mut ana, "@t1 SAY otra cosa", "@t1 OK SAY ");
    assert_eq!(
        first.split(' ').skip(3).collect::<Vec<_>>(),
        again.split(' ').skip(3).collect::<Vec<_>>()
    );
    expect(&mut ana, "PART #sala", "OK PART #sala");
    // The room is gone, but the tag was stored: the original answer.
    let resent = expect(&mut ana, "@t1 SEND #sala hola", "@t1 OK SEND ");
    assert_eq!(
        first.split(' ').skip(3).collect::<Vec<_>>(),
        resent.split(' ').skip(3).collect::<Vec<_>>()
    );
    // An unused tag gets the error, and is still free afterwards.
    expect(&mut ana, "@t2 SEND #sala hola", "@t2 ERR SEND no-such-room ");
    expect(&mut ana, "@t2 SEND @nadie hola", "@t2 ERR SEND no-such-user ");
    expect(&mut ana, "@t2 SAY ahora sí", "@t2 OK SAY ");
}

#[test]
fn room_limits_refuse_with_limit_reached() {
    let server = TestServer::start_with(&["--max-rooms-per-account", "2", "--rooms-created-per-hour", "3"]);
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    expect(&mut ana, "JOIN #a", "OK JOIN #a");
    expect(&mut ana, "JOIN #b", "OK JOIN #b");
    expect(&mut ana, "JOIN #c", "ERR JOIN limit-reached ");
    // Joining a room one is in is always OK; the lobby does not count.
    expect(&mut ana, "JOIN #a", "OK JOIN #a");
    expect(&mut ana, "JOIN #general", "OK JOIN #general");
    // Values are checked before the limit.
    expect(&mut ana, "JOIN #c!", "ERR JOIN invalid-room ");
    expect(&mut ana, "PART #b", "OK PART #b");
    expect(&mut ana, "JOIN #c", "OK JOIN #c");
    // Three creations in this hour: a fourth is refused, joining is not.
    expect(&mut ana, "PART #c", "OK PART #c");
    expect(&mut ana, "JOIN #d", "ERR JOIN limit-reached ");
    expect(&mut bea, "JOIN #e", "OK JOIN #e");
    expect(&mut ana, "JOIN #e", "OK JOIN #e");
}

#[test]
fn a_version_1_session_sees_exactly_version_1() {
    let server = TestServer::start();
    let mut old = registered(&server, "antiguo");
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    expect(&mut ana, "JOIN #sala", "OK JOIN #sala");
    expect(&mut bea, "JOIN #sala", "OK JOIN #sala");
    send(&mut ana, "#sala", "en la sala");
    send(&mut ana, "@bea", "privado");
    expect(&mut bea, "PART #sala", "OK PART #sala");
    let lobby = send(&mut ana, "#general", "para todos");
    let got = old.sync("fin");
    assert!(
        got.iter().all(|l| l.starts_with("JOIN ") || l.starts_with("MSG ")),
        "only version 1 lines: {got:?}"
    );
    assert!(got.iter().any(|l| l.starts_with(&format!("MSG {lobby} "))));
}

#[test]
fn every_session_gets_msg_and_post_lines_in_increasing_id_order() {
    let server = TestServer::start();
    let mut reader = registered(&server, "lector");
    expect(&mut reader, "JOIN #sala", "OK JOIN #sala");
    let mut writers: Vec<Client> = (0..3).map(|i| registered(&server, &format!("w{i}"))).collect();
    for w in writers.iter_mut() {
        expect(w, "JOIN #sala", "OK JOIN #sala");
    }
    let handles: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(i, mut w)| {
            std::thread::spawn(move || {
                let mut lines = String::new();
                for j in 0..50 {
                    let target = match j % 3 {
                        0 => "#general".to_string(),
                        1 => "#sala".to_string(),
                        _ => "@lector".to_string(),
                    };
                    lines.push_str(&format!("SEND {target} m{i}-{j}\n"));
                }
                w.send_raw(lines.as_bytes());
                let mut acknowledged = 0;
                while acknowledged < 50 {
                    let line = w.line();
                    assert!(!line.starts_with("ERR "), "{line}");
                    if line.starts_with("OK SEND ") {
                        acknowledged += 1;
                    }
                }
                w
            })
        })
        .collect();
    let writers: Vec<Client> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ids = Vec::new();
    while ids.len() < 150 {
        let line = reader.line();
        if line.starts_with("MSG ") || line.starts_with("POST ") {
            ids.push(line.split(' ').nth(1).unwrap().parse::<i64>().unwrap());
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids out of order: {ids:?}");
    drop(writers);
}

#[test]
fn membership_and_messages_survive_a_restart() {
    let mut server = TestServer::start();
    {
        let mut ana = registered(&server, "ana");
        let _bea = registered(&server, "bea");
        expect(&mut ana, "JOIN #Sala", "OK JOIN #Sala");
        send(&mut ana, "#sala", "guardado");
        send(&mut ana, "@bea", "privado");
    }
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &[]);
    let mut ana = server.connect();
    ana.login("ana", "secreto123");
    let (body, _) = listing(&mut ana, "ROOMS");
    assert_eq!(body, ["ROOM #general 2 *", "ROOM #Sala 1 *"]);
    let (body, _) = listing(&mut ana, "HISTORY #sala");
    assert!(body[0].ends_with(" #Sala ana guardado"), "{body:?}");
    let mut bea = server.connect();
    bea.login("bea", "secreto123");
    let (body, _) = listing(&mut bea, "HISTORY @ana");
    assert!(body[0].ends_with(" @bea ana privado"), "{body:?}");
    // Membership holds across restarts: ana still receives the room live.
    expect(&mut bea, "JOIN #sala", "OK JOIN #Sala");
    received(&mut ana);
    send(&mut bea, "#SALA", "de nuevo");
    let got = received(&mut ana);
    assert!(got.len() == 1 && got[0].ends_with(" #Sala bea de nuevo"), "{got:?}");
}

/// charla's schema before rooms, as a database made by that version holds
/// it (a copy of `chat.db.sql` at user_version 1).
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    full_name     TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id      INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    body    TEXT    NOT NULL,
    ts_ms   INTEGER NOT NULL,
    tag     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_user_tag
    ON messages(user_id, tag) WHERE tag IS NOT NULL;
PRAGMA application_id = 1667787873;
PRAGMA user_version = 1;
";

#[test]
fn a_version_1_database_opens_with_every_account_and_message_in_general() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("chat.db");
    {
        let conn = rusqlite::Connection::open(&db).expect("a v1 database");
        conn.execute_batch(SCHEMA_V1).expect("the v1 schema");
        let hash = bcrypt::hash("secreto123", 4).expect("bcrypt");
        conn.execute(
            "INSERT INTO users (username, full_name, password_hash, created_ms) VALUES ('Ana', 'Ana Ríos', ?1, 1)",
            [hash],
        )
        .expect("an account");
        conn.execute_batch(
            "INSERT INTO messages (user_id, body, ts_ms, tag) VALUES (1, 'de antes', 10, 'v1tag'), (1, 'también', 11, NULL);",
        )
        .expect("messages");
    }
    let server = TestServer::start_in(dir, db, &[]);
    let mut ana = server.connect();
    assert!(ana.login("ana", "secreto123").contains("Ana Ríos"));
    let history = ana.history("");
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["de antes", "también"]);
    let (body, _) = listing(&mut ana, "HISTORY #general 10");
    assert_eq!(body.len(), 2);
    let (body, _) = listing(&mut ana, "ROOMS");
    assert_eq!(body, ["ROOM #general 1 *"]);
    // The old tag still answers with its original id.
    expect(&mut ana, "@v1tag SAY de antes", "@v1tag OK SAY 1 10");
    expect(&mut ana, "JOIN #nueva", "OK JOIN #nueva");
}

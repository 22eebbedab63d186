//! Commands, replies, error codes, session states and tags (PROTOCOL.md 1
//! to 6), one connection at a time, against the real binary.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Client, TestServer, registered};

/// The password `common::registered` gives every account.
const PASSWORD: &str = "secreto123";

/// Sends `line` and checks that the reply starts with `prefix`; error
/// replies must also carry a non-empty text after the code.
fn ask(client: &mut Client, line: &str, prefix: &str) -> String {
    client.send(line);
    let reply = client.line();
    assert!(
        reply.starts_with(prefix),
        "sent {line:?}: expected {prefix:?}..., got {reply:?}"
    );
    if reply.contains("ERR ") {
        let words: Vec<&str> = reply.split(' ').collect();
        let at = words.iter().position(|w| *w == "ERR").expect("an ERR word");
        assert!(words.len() > at + 3, "ERR without a text: {reply:?}");
    }
    reply
}

/// Like [`ask`] with raw bytes (for lines that are not UTF-8 or hold
/// control characters).
fn ask_raw(client: &mut Client, bytes: &[u8], prefix: &str) -> String {
    client.send_raw(bytes);
    let reply = client.line();
    assert!(
        reply.starts_with(prefix),
        "sent {:?}: expected {prefix:?}..., got {reply:?}",
        String::from_utf8_lossy(bytes)
    );
    reply
}

#[test]
fn hello_ping_and_quit_work_before_login() {
    let server = TestServer::start();
    let mut client = server.connect_raw();
    client.expect("HELLO charla 1 node-1");
    client.send("PING");
    client.expect("OK PING");
    client.send("PING abc-_XYZ09");
    client.expect("OK PING abc-_XYZ09");
    let longest = "t".repeat(64);
    client.send(&format!("PING {longest}"));
    client.expect(&format!("OK PING {longest}"));
    client.send("QUIT");
    client.expect("OK QUIT");
    client.expect_eof();
}

#[test]
fn every_command_has_its_exact_success_reply() {
    let server = TestServer::start_with(&["--node", "nodo-7"]);
    let mut ana = server.connect_raw();
    ana.expect("HELLO charla 1 nodo-7");
    // Free text starts after the space that ends the password; the extra
    // spaces and tabs around the name are trimmed, inner ones kept.
    ana.send("REGISTER ana s3cret-pass  \tAna  María Ríos \t");
    ana.expect("OK REGISTER ana Ana  María Ríos");
    let before = common::now_ms();
    ana.send("SAY   hola a todos  ");
    let (id, ts) = common::ok_say(&ana.expect_prefix("OK SAY "));
    assert!(id > 0);
    assert!(
        ts >= before - 5_000 && ts <= common::now_ms() + 5_000,
        "TS {ts} is not now"
    );
    ana.send("HISTORY");
    ana.expect(&format!("MSG {id} {ts} ana hola a todos"));
    ana.expect("OK HISTORY 1");
    ana.send("WHO");
    ana.expect("USER ana Ana  María Ríos");
    ana.expect("OK WHO 1");
    ana.send("PING x");
    ana.expect("OK PING x");

    let mut again = server.connect();
    again.send("LOGIN ana s3cret-pass");
    again.expect("OK LOGIN ana Ana  María Ríos");
    again.send("PING");
    again.expect("OK PING");
    again.send("QUIT");
    again.expect("OK QUIT");
    again.expect_eof();
    ana.send("SALIR");
    ana.expect("OK QUIT");
    ana.expect_eof();
}

#[test]
fn commands_outside_their_state_are_refused() {
    let server = TestServer::start();
    let mut guest = server.connect();
    ask(&mut guest, "SAY hola", "ERR SAY not-logged-in ");
    ask(&mut guest, "HISTORY", "ERR HISTORY not-logged-in ");
    ask(&mut guest, "HISTORY 5 3", "ERR HISTORY not-logged-in ");
    ask(&mut guest, "WHO", "ERR WHO not-logged-in ");
    // The session stays usable and can still log in.
    guest.register("ana", PASSWORD, "Ana");
    ask(
        &mut guest,
        "REGISTER bea secreto123 Bea",
        "ERR REGISTER already-logged-in ",
    );
    ask(&mut guest, "LOGIN ana secreto123", "ERR LOGIN already-logged-in ");
    ask(&mut guest, "PING", "OK PING");
    // Neither refused REGISTER created an account.
    let mut other = server.connect();
    ask(&mut other, "LOGIN bea secreto123", "ERR LOGIN bad-credentials ");
}

#[test]
fn checks_run_in_the_protocol_order() {
    let server = TestServer::start();
    let mut guest = server.connect();
    // The state is checked before the arguments.
    ask(&mut guest, "SAY", "ERR SAY not-logged-in ");
    ask(&mut guest, "say", "ERR SAY not-logged-in ");
    ask(&mut guest, "HISTORY 0", "ERR HISTORY not-logged-in ");
    ask(&mut guest, "HISTORY x y z", "ERR HISTORY not-logged-in ");
    ask(&mut guest, "WHO extra", "ERR WHO not-logged-in ");
    ask(&mut guest, "SAY \u{1b}[31m", "ERR SAY not-logged-in ");
    // The line (tag, verb, encoding, length) is checked before the state.
    ask(&mut guest, "FROB", "ERR - bad-request ");
    ask(&mut guest, "@bad.tag SAY x", "ERR - bad-request ");
    ask_raw(&mut guest, b"SAY \xff\n", "ERR - bad-encoding ");
    ask(&mut guest, &format!("SAY {}", "x".repeat(5000)), "ERR - line-too-long ");
    // Syntax is checked before values: a missing full name is bad-request
    // even though the password is invalid too.
    ask(&mut guest, "REGISTER ana short", "ERR REGISTER bad-request ");
    ask(&mut guest, "REGISTER a/b short", "ERR REGISTER bad-request ");
    // Values are checked before the operation: a taken name with a bad
    // password is invalid-password, not user-exists.
    let _ana = registered(&server, "ana");
    ask(&mut guest, "REGISTER ana short Ana", "ERR REGISTER invalid-password ");
    ask(&mut guest, "REGISTER ANA secreto123 Ana", "ERR REGISTER user-exists ");

    let mut logged = registered(&server, "bea");
    ask(&mut logged, "REGISTER", "ERR REGISTER already-logged-in ");
    ask(&mut logged, "REGISTER a/b x", "ERR REGISTER already-logged-in ");
    ask(&mut logged, "LOGIN", "ERR LOGIN already-logged-in ");
    ask(
        &mut logged,
        "LOGIN bea secreto123 extra",
        "ERR LOGIN already-logged-in ",
    );
    // After login, arguments are checked again.
    ask(&mut logged, "SAY", "ERR SAY bad-request ");
    ask(&mut logged, "WHO extra", "ERR WHO bad-request ");
}

#[test]
fn malformed_lines_are_bad_requests() {
    let server = TestServer::start();
    let mut c = registered(&server, "ana");
    let untagged = [
        "FROB",
        "FROB secret-word",
        "SAY1 x",
        "S-AY x",
        "SÁY x",
        " SAY x",
        "SAY\tx",
        "@ PING",
        "@",
        "@bad.tag PING",
        "@tág PING",
        "@a+b PING",
        "@@t PING",
    ];
    for line in untagged {
        let reply = ask(&mut c, line, "ERR - bad-request ");
        assert!(
            !reply.contains("secret-word"),
            "the error text echoes the client: {reply:?}"
        );
    }
    let too_long_tag = format!("@{} PING", "t".repeat(65));
    ask(&mut c, &too_long_tag, "ERR - bad-request ");
    // A well-formed tag is echoed even when the verb is unknown or missing.
    ask(&mut c, "@t1 FROB", "@t1 ERR - bad-request ");
    ask(&mut c, "@t1", "@t1 ERR - bad-request ");
    let longest_tag = "T".repeat(64);
    ask(
        &mut c,
        &format!("@{longest_tag} PING"),
        &format!("@{longest_tag} OK PING"),
    );

    let with_verb = [
        ("SAY", "SAY"),
        ("WHO x", "WHO"),
        ("WHO ", "WHO"),
        ("PING a b", "PING"),
        ("PING a.b", "PING"),
        ("PING ", "PING"),
        ("PING  x", "PING"),
        ("HISTORY ", "HISTORY"),
        ("HISTORY 0", "HISTORY"),
        ("HISTORY 1001", "HISTORY"),
        ("HISTORY -1", "HISTORY"),
        ("HISTORY +5", "HISTORY"),
        ("HISTORY 5.0", "HISTORY"),
        ("HISTORY 0x10", "HISTORY"),
        ("HISTORY ５", "HISTORY"),
        ("HISTORY x", "HISTORY"),
        ("HISTORY 99999999999999999999999", "HISTORY"),
        ("HISTORY 5 0", "HISTORY"),
        ("HISTORY 5 -3", "HISTORY"),
        ("HISTORY 5 abc", "HISTORY"),
        ("HISTORY 5  7", "HISTORY"),
        ("HISTORY 5 7 ", "HISTORY"),
        ("HISTORY 5 7 9", "HISTORY"),
    ];
    for (line, verb) in with_verb {
        ask(&mut c, line, &format!("ERR {verb} bad-request "));
    }
    // Ids are decimal digits of any length: one past every stored id is no
    // limit (BEFORE), or nothing after it (AFTER).
    ask(&mut c, "HISTORY 5 99999999999999999999999", "OK HISTORY ");
    ask(&mut c, "SYNC 99999999999999999999999", "OK SYNC 0");
    let ping_too_long = format!("PING {}", "p".repeat(65));
    ask(&mut c, &ping_too_long, "ERR PING bad-request ");

    let mut guest = server.connect();
    for line in [
        "REGISTER",
        "REGISTER bea",
        "REGISTER bea secreto123",
        "REGISTER  bea secreto123 Bea",
        "REGISTER bea  secreto123 Bea",
    ] {
        ask(&mut guest, line, "ERR REGISTER bad-request ");
    }
    for line in [
        "LOGIN",
        "LOGIN ana",
        "LOGIN ana secreto123 extra",
        "LOGIN  ana secreto123",
        "LOGIN ana  secreto123",
        "LOGIN ana secreto123 ",
    ] {
        ask(&mut guest, line, "ERR LOGIN bad-request ");
    }
    // None of that logged anyone in.
    ask(&mut guest, "WHO", "ERR WHO not-logged-in ");
}

#[test]
fn verbs_are_case_insensitive_and_quit_ignores_its_text() {
    let server = TestServer::start();
    let mut c = server.connect();
    ask(&mut c, "ping a", "OK PING a");
    ask(&mut c, "Ping b", "OK PING b");
    ask(&mut c, "pInG c", "OK PING c");
    c.send("register ana secreto123 Ana");
    c.expect("OK REGISTER ana Ana");
    ask(&mut c, "sAy hola", "OK SAY ");
    ask(&mut c, "who", "USER ana Ana");
    c.expect("OK WHO 1");
    c.send("@q Salir adiós a todos, hasta mañana");
    c.expect("@q OK QUIT");
    c.expect_eof();

    for quit in ["salir", "SALIR", "quit", "Quit now please", "QUIT  two  spaces "] {
        let mut c = server.connect();
        c.send(quit);
        c.expect("OK QUIT");
        c.expect_eof();
    }
}

#[test]
fn tags_are_echoed_on_final_replies_only() {
    let server = TestServer::start();
    let mut c = server.connect();
    ask(&mut c, "@a1 SAY x", "@a1 ERR SAY not-logged-in ");
    ask(&mut c, "@a2 PING", "@a2 OK PING");
    ask(&mut c, "@a3 PING tok", "@a3 OK PING tok");
    ask(&mut c, "@a4 LOGIN ana secreto123", "@a4 ERR LOGIN bad-credentials ");
    ask(&mut c, "@a5 REGISTER ana secreto123", "@a5 ERR REGISTER bad-request ");
    ask(
        &mut c,
        "@a6 REGISTER ana 1234567 Ana",
        "@a6 ERR REGISTER invalid-password ",
    );
    c.send("@r-1_X REGISTER ana secreto123 Ana Ríos");
    c.expect("@r-1_X OK REGISTER ana Ana Ríos");
    let (id, ts) = common::ok_say(&ask(&mut c, "@s SAY hola", "@s OK SAY "));
    ask(&mut c, "@s2 SAY  ", "@s2 ERR SAY invalid-text ");
    ask(&mut c, "@h HISTORY 0", "@h ERR HISTORY bad-request ");
    c.send("@h HISTORY 10");
    c.expect(&format!("MSG {id} {ts} ana hola"));
    c.expect("@h OK HISTORY 1");
    c.send("@w WHO");
    c.expect("USER ana Ana Ríos");
    c.expect("@w OK WHO 1");
    ask(&mut c, "@l LOGIN ana secreto123", "@l ERR LOGIN already-logged-in ");

    let mut other = server.connect();
    other.send("@L LOGIN ANA secreto123");
    other.expect("@L OK LOGIN ana Ana Ríos");
    other.send("@bye QUIT");
    other.expect("@bye OK QUIT");
    other.expect_eof();
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
    let server = TestServer::start();
    let mut c = registered(&server, "ana");
    // 2000 two-byte characters: 4000 bytes of text, within the text limit.
    let text = "é".repeat(2000);
    let line = |padding: usize, end: &str| format!("SAY {text}{}{end}", " ".repeat(padding));
    let exact = line(4096 - 4 - 4000 - 1, "\n");
    assert_eq!(exact.len(), 4096);
    c.send_raw(exact.as_bytes());
    let (id, _) = common::ok_say(&c.expect_prefix("OK SAY "));
    c.send_raw(line(4096 - 4 - 4000 - 1 + 1, "\n").as_bytes());
    c.expect("ERR - line-too-long line too long");
    // The CR of a CRLF counts.
    let exact_crlf = line(4096 - 4 - 4000 - 2, "\r\n");
    assert_eq!(exact_crlf.len(), 4096);
    c.send_raw(exact_crlf.as_bytes());
    c.expect_prefix("OK SAY ");
    c.send_raw(line(4096 - 4 - 4000 - 1, "\r\n").as_bytes());
    c.expect("ERR - line-too-long line too long");
    // Tags are not echoed on an over-long line, and the session goes on.
    c.send_raw(format!("@t {}", line(4096 - 4 - 4000 - 1, "\n")).as_bytes());
    c.expect("ERR - line-too-long line too long");
    c.send("PING after");
    c.expect("OK PING after");
    let stored = c.history("5");
    assert_eq!(stored.len(), 2, "only the two lines within the limit were stored");
    assert_eq!(stored[0].id, id);
    assert!(stored.iter().all(|m| m.text == text));

    // 2000 characters of three bytes each do not fit in a line.
    c.send(&format!("SAY {}", "€".repeat(2000)));
    c.expect("ERR - line-too-long line too long");
    c.send(&format!("SAY {}", "€".repeat(1300)));
    c.expect_prefix("OK SAY ");
}

#[test]
fn max_line_is_configurable() {
    let server = TestServer::start_with(&["--max-line", "512"]);
    let mut c = registered(&server, "ana");
    let exact = format!("SAY {}\n", "a".repeat(512 - 5));
    assert_eq!(exact.len(), 512);
    c.send_raw(exact.as_bytes());
    c.expect_prefix("OK SAY ");
    c.send_raw(format!("SAY {}\n", "a".repeat(512 - 4)).as_bytes());
    c.expect("ERR - line-too-long line too long");
    c.send("PING ok");
    c.expect("OK PING ok");
    // The limit is on what clients send: the MSG line of that 507-byte
    // text is longer than 512 bytes and still comes back whole.
    let history = c.history("");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].text, "a".repeat(512 - 5));
}

#[test]
fn a_huge_line_is_refused_without_being_buffered() {
    let server = TestServer::start();
    let mut c = registered(&server, "ana");
    // 1 MiB with no newline yet: a server that buffered lines whole could
    // not answer before the newline arrives; this one must already know.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        c.send_raw(&chunk);
    }
    c.expect("ERR - line-too-long line too long");
    for _ in 0..16 {
        c.send_raw(&chunk);
    }
    c.send_raw(b"\nPING after\n");
    c.expect("OK PING after");
    // Reported once per line, and the connection is fully usable.
    c.send(&format!("SAY {}", "y".repeat(300_000)));
    c.expect("ERR - line-too-long line too long");
    ask(&mut c, "SAY still here", "OK SAY ");
    ask(&mut c, "PING end", "OK PING end");
}

#[test]
fn invalid_utf8_blank_lines_and_crlf() {
    let server = TestServer::start();
    let mut c = registered(&server, "ana");
    for bad in [
        &b"SAY \xff\xfe\n"[..],
        b"\xc3\n",
        b"SAY caf\xc3\n",
        b"SAY \xed\xa0\x80 surrogate\n",
        b"SAY \xc0\xaf overlong\n",
        b"@t SAY \x80\n",
        b"\xf5\x80\x80\x80\r\n",
    ] {
        ask_raw(&mut c, bad, "ERR - bad-encoding ");
    }
    // Blank lines are ignored without a reply: the next reply is the PING's.
    c.send_raw(b"\n \n\t\n \t \r\n\r\n   \t\n");
    c.send("PING after-blanks");
    c.expect("OK PING after-blanks");
    // CRLF works for every command, and the CR is not part of the text.
    c.send_raw(b"PING crlf\r\n");
    c.expect("OK PING crlf");
    c.send_raw(b"SAY con crlf\r\n");
    let (id, ts) = common::ok_say(&c.expect_prefix("OK SAY "));
    c.send_raw(b"HISTORY 1\r\n");
    c.expect(&format!("MSG {id} {ts} ana con crlf"));
    c.expect("OK HISTORY 1");
    // Only one CR is dropped: a second one is a control character.
    ask_raw(&mut c, b"SAY dos cr\r\r\n", "ERR SAY invalid-text ");
    let mut guest = server.connect();
    guest.send_raw(b"REGISTER bea secreto123 Bea Crlf\r\n");
    guest.expect("OK REGISTER bea Bea Crlf");
}

#[test]
fn usernames_passwords_and_names_are_validated() {
    let server = TestServer::start();
    let mut c = server.connect();
    let long_user = "u".repeat(33);
    for user in ["añá", "a/b", "a@b", "a:b", "ü", long_user.as_str(), "a\u{202e}b"] {
        ask(
            &mut c,
            &format!("REGISTER {user} secreto123 Name"),
            "ERR REGISTER invalid-username ",
        );
    }
    let long_pw = "p".repeat(73);
    for pw in ["1234567", "ñññ1", long_pw.as_str(), "tab\tinside"] {
        ask(
            &mut c,
            &format!("REGISTER pat {pw} Name"),
            "ERR REGISTER invalid-password ",
        );
    }
    let long_name = "é".repeat(101);
    for name in [
        "",
        "   ",
        " \t ",
        "Ana\tRíos",
        "Ana \u{1b}[31mRíos",
        "Ana\u{7}",
        "Ana\u{7f}",
        "Ana\u{9b}31m",
        "Ana\u{202e}soíR",
        "Ana\u{2066}x",
        "Ana\u{2028}Ríos",
        "Ana\u{2029}Ríos",
        "Ana\u{0}",
        long_name.as_str(),
    ] {
        ask(
            &mut c,
            &format!("REGISTER pat secreto123 {name}"),
            "ERR REGISTER invalid-name ",
        );
    }
    // The limits themselves are allowed; the password counts bytes and the
    // name counts characters.
    let user32 = "U".repeat(32);
    let name100 = "é".repeat(100);
    c.send(&format!("REGISTER {user32} ññññ {name100}"));
    c.expect(&format!("OK REGISTER {user32} {name100}"));
    let pw72 = "p".repeat(72);
    let mut other = server.connect();
    other.send(&format!("REGISTER J.Tique_2-x {pw72} Juan"));
    other.expect("OK REGISTER J.Tique_2-x Juan");
    let mut again = server.connect();
    again.send(&format!("LOGIN j.tique_2-X {pw72}"));
    again.expect("OK LOGIN J.Tique_2-x Juan");
    let mut pw8 = server.connect();
    pw8.send(&format!("LOGIN {} ññññ", user32.to_lowercase()));
    pw8.expect(&format!("OK LOGIN {user32} {name100}"));
}

#[test]
fn texts_are_validated_by_characters_and_trimmed() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bea = registered(&server, "bea");
    ana.expect("JOIN bea");
    let long_ascii = "a".repeat(2001);
    let long_two_byte = "é".repeat(2001);
    for text in [
        "",
        "    ",
        " \t \t",
        "\u{1b}[31mrojo",
        "\u{1b}]0;title\u{7}",
        "bell\u{7}",
        "nul\u{0}x",
        "del\u{7f}",
        "csi\u{9b}2J",
        "c1\u{85}",
        "cr\rinside",
        "vt\u{b}ff\u{c}",
        "gnirts\u{202e}",
        "lre\u{202a}",
        "isolate\u{2066}x\u{2069}",
        "line\u{2028}sep",
        "para\u{2029}sep",
        long_ascii.as_str(),
        long_two_byte.as_str(),
    ] {
        ask(&mut ana, &format!("SAY {text}"), "ERR SAY invalid-text ");
    }
    // 2000 two-byte characters are within the limit (it counts characters).
    let two_byte = "é".repeat(2000);
    let (id1, _) = common::ok_say(&ask(&mut ana, &format!("SAY {two_byte}"), "OK SAY "));
    let ascii = "z".repeat(2000);
    let (id2, _) = common::ok_say(&ask(&mut ana, &format!("SAY \t {ascii} \t"), "OK SAY "));
    // A TAB inside the text is kept and delivered; surrounding ones go.
    let (id3, ts3) = common::ok_say(&ask(&mut ana, "SAY \t uno\tdos  tres \t", "OK SAY "));
    let first = bea.expect_msg();
    assert_eq!((first.id, first.text.as_str()), (id1, two_byte.as_str()));
    let second = bea.expect_msg();
    assert_eq!((second.id, second.text.as_str()), (id2, ascii.as_str()));
    bea.expect(&format!("MSG {id3} {ts3} ana uno\tdos  tres"));
    // Nothing refused was stored.
    assert_eq!(bea.history("").len(), 3);
}

#[test]
fn usernames_are_unique_regardless_of_case() {
    let server = TestServer::start();
    let mut ana = server.connect();
    ana.register("Ana", PASSWORD, "Ana Mayúscula");
    let mut other = server.connect();
    for user in ["ana", "ANA", "aNa"] {
        ask(
            &mut other,
            &format!("REGISTER {user} otraclave99 Otra"),
            "ERR REGISTER user-exists ",
        );
    }
    // The failed REGISTERs left the connection logged out.
    ask(&mut other, "WHO", "ERR WHO not-logged-in ");
    // LOGIN matches regardless of case; the name keeps its registered case
    // in replies and events.
    other.send("LOGIN aNA secreto123");
    other.expect("OK LOGIN Ana Ana Mayúscula");
    let mut third = registered(&server, "bea");
    ana.expect("JOIN bea");
    other.expect("JOIN bea");
    let (id, ts) = ana.say("hola");
    other.expect(&format!("MSG {id} {ts} Ana hola"));
    third.expect(&format!("MSG {id} {ts} Ana hola"));
    third.send("WHO");
    third.expect("USER Ana Ana Mayúscula");
    third.expect("USER bea bea Apellido");
    third.expect("OK WHO 2");
}

#[test]
fn every_failed_login_gets_the_same_line() {
    let server = TestServer::start();
    let _ana = registered(&server, "ana");
    let mut c = server.connect();
    let attempts = [
        "LOGIN nadie secreto123".to_string(),
        "LOGIN ana secreto124".to_string(),
        "LOGIN ana SECRETO123".to_string(),
        "LOGIN ana short".to_string(),
        format!("LOGIN ana {}", "p".repeat(80)),
        "LOGIN añá secreto123".to_string(),
        format!("LOGIN {} secreto123", "u".repeat(40)),
        "LOGIN a/b x".to_string(),
    ];
    let mut replies = Vec::new();
    for attempt in &attempts {
        c.send(attempt);
        replies.push(c.line());
    }
    assert!(replies[0].starts_with("ERR LOGIN bad-credentials "), "{}", replies[0]);
    for (attempt, reply) in attempts.iter().zip(&replies) {
        assert_eq!(reply, &replies[0], "after {attempt:?}");
    }
    // After all that the right password still works on the same session.
    c.send("LOGIN ANA secreto123");
    c.expect("OK LOGIN ana ana Apellido");
}

#[test]
fn a_connection_that_does_not_log_in_in_time_is_closed() {
    let server = TestServer::start_with(&["--login-timeout", "1"]);
    let started = Instant::now();
    let mut idle = server.connect();
    let mut busy = server.connect();
    let mut quick = server.connect();
    quick.register("ana", PASSWORD, "Ana");
    // Activity does not extend the time to log in.
    busy.send("PING early");
    busy.expect("OK PING early");
    busy.send("LOGIN ana wrongpassword");
    busy.expect_prefix("ERR LOGIN bad-credentials ");
    for client in [&mut idle, &mut busy] {
        client.expect("BYE login-timeout no login within the time limit");
        client.expect_eof();
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(8),
        "login timeout after {waited:?}"
    );
    // The logged-in session is not affected, and sees no JOIN/LEAVE for the
    // ones that never logged in.
    quick.expect_silence(Duration::from_millis(300));
    quick.send("PING still");
    quick.expect("OK PING still");
}

#[test]
fn connections_over_the_limit_get_server_full() {
    let server = TestServer::start_with(&["--max-clients", "2"]);
    let mut first = server.connect();
    let _second = server.connect();
    for _ in 0..3 {
        let mut third = server.connect_raw();
        third.expect("BYE server-full too many connections");
        third.expect_eof();
    }
    // The two admitted connections keep working.
    first.send("PING");
    first.expect("OK PING");
    // Once one leaves, its place can be taken again (the count drops when
    // its thread has finished, so allow a moment for that).
    first.send("QUIT");
    first.expect("OK QUIT");
    first.expect_eof();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = server.connect_raw();
        let line = next.line();
        if line.starts_with("HELLO charla 1 ") {
            break;
        }
        assert!(line.starts_with("BYE server-full "), "{line:?}");
        assert!(Instant::now() < deadline, "the freed place was never given back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn passwords_never_reach_the_server_log() {
    let server = TestServer::start_with_env(&[], &[("RUST_LOG", "debug")]);
    let secrets = ["Zq8-first-secret", "Zq8-wrong-secret", "Zq8-second-secret", "Zq8short"];
    let mut c = server.connect();
    c.send(&format!("REGISTER ana {} Ana", secrets[0]));
    c.expect("OK REGISTER ana Ana");
    let mut d = server.connect();
    d.send(&format!("LOGIN ana {}", secrets[1]));
    d.expect_prefix("ERR LOGIN bad-credentials ");
    d.send(&format!("LOGIN nadie {}", secrets[0]));
    d.expect_prefix("ERR LOGIN bad-credentials ");
    d.send(&format!("LOGIN ana {}", secrets[0]));
    d.expect_prefix("OK LOGIN ana ");
    let mut e = server.connect();
    e.send(&format!("REGISTER bea {} Bea\u{1}", secrets[2]));
    e.expect_prefix("ERR REGISTER invalid-name ");
    e.send(&format!("REGISTER bea {}", secrets[2]));
    e.expect_prefix("ERR REGISTER bad-request ");
    e.send(&format!("LOGIN ana {}", secrets[3]));
    e.expect_prefix("ERR LOGIN bad-credentials ");
    // Closing the sessions flushes their log lines.
    for mut client in [c, d, e] {
        client.send("QUIT");
        client.expect("OK QUIT");
        client.expect_eof();
    }
    let log = server.log();
    assert!(
        log.contains("failed login"),
        "the log does not record failed logins:\n{log}"
    );
    for secret in secrets {
        assert!(!log.contains(secret), "a password appears in the log: {secret}");
        assert!(!log.contains("Zq8"), "part of a password appears in the log");
    }
}

#[test]
fn racing_registrations_of_one_name_create_one_account() {
    let server = TestServer::start();
    for round in 0..3 {
        let spellings = ["same", "Same", "SAME", "sAme", "saMe", "samE"];
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(spellings.len()));
        let racing: Vec<_> = spellings
            .iter()
            .map(|name| {
                let (addr, barrier) = (server.addr, std::sync::Arc::clone(&barrier));
                let line = format!("REGISTER {name}{round} secreto123 Nombre");
                thread_register(addr, barrier, line)
            })
            .collect();
        let replies: Vec<String> = racing.into_iter().map(|h| h.join().expect("a racer")).collect();
        let created = replies.iter().filter(|r| r.starts_with("OK REGISTER ")).count();
        assert_eq!(created, 1, "round {round}: {replies:?}");
        for reply in replies.iter().filter(|r| !r.starts_with("OK ")) {
            assert!(reply.starts_with("ERR REGISTER user-exists "), "{reply:?}");
        }
    }
}

fn thread_register(
    addr: std::net::SocketAddr,
    barrier: std::sync::Arc<std::sync::Barrier>,
    line: String,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.expect_prefix("HELLO ");
        barrier.wait();
        c.send(&line);
        c.line()
    })
}

#[test]
fn trickling_bytes_does_not_extend_the_time_to_log_in() {
    let server = TestServer::start_with(&["--login-timeout", "1"]);
    let mut slow = server.connect();
    let started = Instant::now();
    let mut trickle = slow.socket().try_clone().expect("a second handle on the socket");
    let reading = std::thread::spawn(move || {
        let line = slow.line();
        (line, started.elapsed())
    });
    // One byte every 200 ms and never a newline: every read gets data well
    // within any per-read timeout, but the login deadline still applies.
    while started.elapsed() < Duration::from_secs(4) && !reading.is_finished() {
        if trickle.write_all(b"x").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (line, after) = reading.join().expect("the reading thread");
    assert_eq!(line, "BYE login-timeout no login within the time limit");
    assert!(
        after < Duration::from_millis(2500),
        "BYE login-timeout came {after:?} after connecting, with a 1 s timeout"
    );
}

#[test]
fn rate_limits_come_after_value_checks_and_are_per_session() {
    // A rate so low that nothing refills during the test.
    let server = TestServer::start_with(&[
        "--msg-rate",
        "0.001",
        "--msg-burst",
        "2",
        "--limit-loopback",
        "--registrations-per-address",
        "2",
    ]);
    let mut ana = registered(&server, "ana");
    ana.say("uno");
    ana.say("dos");
    ask(&mut ana, "@x SAY tres", "@x ERR SAY rate-limited ");
    // Syntax and values are checked before the limit.
    ask(&mut ana, "SAY", "ERR SAY bad-request ");
    ask(&mut ana, "SAY \u{1b}[1mtres", "ERR SAY invalid-text ");
    ask(&mut ana, "SAY  \t ", "ERR SAY invalid-text ");
    // Other commands are not limited, and nothing refused was stored.
    ask(&mut ana, "PING", "OK PING");
    assert_eq!(ana.history("").len(), 2);
    // The message limit is per session: the same account elsewhere may talk.
    let mut ana2 = server.connect();
    ana2.login("ana", PASSWORD);
    let (id, _) = ana2.say("desde otra sesión");
    assert_eq!(ana.expect_msg().id, id);
    ask(&mut ana, "SAY cuatro", "ERR SAY rate-limited ");

    // Registrations: values first, then the limit, then the operation.
    let _bea = registered(&server, "bea");
    let mut guest = server.connect();
    ask(
        &mut guest,
        "REGISTER a/b secreto123 Name",
        "ERR REGISTER invalid-username ",
    );
    ask(
        &mut guest,
        "REGISTER carla 1234567 Name",
        "ERR REGISTER invalid-password ",
    );
    ask(&mut guest, "REGISTER ana secreto123 Name", "ERR REGISTER rate-limited ");
    ask(
        &mut guest,
        "REGISTER carla secreto123 Name",
        "ERR REGISTER rate-limited ",
    );
    // Logging in to an existing account is not a registration.
    guest.login("bea", PASSWORD);
}

#[test]
fn pipelined_refusals_never_overtake_replies_still_being_stored() {
    // Ten messages at once, then five a second: most of the fifty below are
    // refused while the first ten are still with the journal.
    let server = TestServer::start_with(&["--msg-rate", "5", "--msg-burst", "10"]);
    let mut ana = registered(&server, "ana");
    let mut lines = String::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let (line, code) = match i % 7 {
            3 => (format!("@r{i} SAY \u{1b}[1mnegrita"), Some("invalid-text")),
            5 => (format!("@r{i} SAY"), Some("bad-request")),
            6 => (format!("@r{i} SAY  \t "), Some("invalid-text")),
            _ => (format!("@r{i} SAY mensaje {i}"), None),
        };
        lines.push_str(&line);
        lines.push('\n');
        expected.push((format!("@r{i}"), code));
    }
    // One write: every command is read before the first commit is done.
    ana.send_raw(lines.as_bytes());
    let mut stored = 0;
    let mut limited = 0;
    for (tag, code) in &expected {
        let reply = ana.line();
        let words: Vec<&str> = reply.splitn(5, ' ').collect();
        assert_eq!(words[0], tag, "replies out of command order: got {reply:?} for {tag}");
        assert_eq!(words[2], "SAY", "{reply:?}");
        match (code, words[1], words[3]) {
            (Some(code), "ERR", got) => assert_eq!(&got, code, "{reply:?}"),
            (None, "OK", _) => stored += 1,
            (None, "ERR", "rate-limited") => limited += 1,
            _ => panic!("unexpected reply {reply:?} for {tag} (expected {code:?})"),
        }
    }
    assert!(stored >= 10, "the burst of ten was stored ({stored})");
    assert!(limited > 0, "some were rate-limited");
    // Nothing else was queued: the next reply is the PING's.
    ask(&mut ana, "@p PING", "@p OK PING");
    assert_eq!(ana.history("").len(), stored);
}

#[test]
fn pings_between_pipelined_says_keep_their_place_and_history_sees_every_say() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut lines = String::new();
    for i in 0..100 {
        lines.push_str(&format!("@s{i} SAY mensaje {i}\n@p{i} PING t{i}\n"));
    }
    // HISTORY reads what the SAYs before it stored.
    lines.push_str("@h HISTORY 100\n");
    ana.send_raw(lines.as_bytes());
    for i in 0..100 {
        ana.expect_prefix(&format!("@s{i} OK SAY "));
        ask_reply(&mut ana, &format!("@p{i} OK PING t{i}"));
    }
    for i in 0..100 {
        let line = ana.line();
        assert!(line.ends_with(&format!(" ana mensaje {i}")), "{line:?}");
    }
    ask_reply(&mut ana, "@h OK HISTORY 100");
}

/// The next line, which must be `expected`.
fn ask_reply(client: &mut Client, expected: &str) {
    let line = client.line();
    assert_eq!(line, expected);
}

#[test]
fn a_line_level_refusal_waits_for_the_says_before_it() {
    let server = TestServer::start();
    let mut ana = registered(&server, "ana");
    let mut bytes = Vec::new();
    for i in 0..20 {
        bytes.extend_from_slice(format!("@s{i} SAY uno {i}\n").as_bytes());
    }
    bytes.extend_from_slice(b"\xff\xfe\n");
    bytes.extend_from_slice(format!("{}\n", "x".repeat(5000)).as_bytes());
    bytes.extend_from_slice(b"@bad.tag PING\n");
    bytes.extend_from_slice(b"@u FROB\n");
    ana.send_raw(&bytes);
    for i in 0..20 {
        ana.expect_prefix(&format!("@s{i} OK SAY "));
    }
    ana.expect_prefix("ERR - bad-encoding ");
    ana.expect_prefix("ERR - line-too-long ");
    ana.expect_prefix("ERR - bad-request ");
    ana.expect_prefix("@u ERR - bad-request ");
}

#[test]
fn passwords_with_any_unicode_white_space_or_refused_character_are_invalid() {
    let server = TestServer::start();
    let mut c = server.connect();
    for c_point in [
        '\u{b}', '\u{c}', '\u{85}', '\u{a0}', '\u{1680}', '\u{2003}', '\u{200a}', '\u{2028}', '\u{202f}', '\u{205f}',
        '\u{3000}', '\u{1b}', '\u{7f}', '\u{9b}', '\u{202e}', '\u{2067}', '\u{1}',
    ] {
        ask(
            &mut c,
            &format!("REGISTER pat clave{c_point}1234 Pat"),
            "ERR REGISTER invalid-password ",
        );
    }
    // Not White_Space: a zero-width space is an ordinary character.
    c.send("REGISTER pat clave\u{200b}1234 Pat");
    c.expect("OK REGISTER pat Pat");
}

#[test]
fn accounts_made_under_the_older_password_rule_still_log_in() {
    // An account whose password holds a no-break space, as the rule before
    // White_Space allowed, written straight into the database.
    let server = TestServer::start();
    let db = server.db.clone();
    let password = "clave\u{a0}1234";
    let hash = bcrypt::hash(password, 4).expect("bcrypt");
    let conn = rusqlite::Connection::open(&db).expect("open the test database");
    conn.execute(
        "INSERT INTO users (username, full_name, password_hash, created_ms) VALUES ('vieja', 'Cuenta Vieja', ?1, 0)",
        [hash],
    )
    .expect("insert an old account");
    drop(conn);
    let mut c = server.connect();
    c.send(&format!("LOGIN vieja {password}"));
    c.expect("OK LOGIN vieja Cuenta Vieja");
    let mut wrong = server.connect();
    ask(&mut wrong, "LOGIN vieja clave\u{a0}1235", "ERR LOGIN bad-credentials ");
}

//! The IRC front end (PROTOCOL.md 13) against the real binary, with raw
//! sockets: registration (PASS, SASL PLAIN, failures), every numeric the
//! section names, rooms as channels, private messages both ways with
//! charla's own protocol, presence, CHATHISTORY, and the line limits.

mod common;

use common::{Client, TestServer, registered};

/// A server with the IRC front end on a free port, named `irc-1`.
fn server() -> TestServer {
    TestServer::start_with(&["--irc-addr", "127.0.0.1:0", "--node", "irc-1"])
}

/// One raw IRC connection.
struct Irc(Client);

impl Irc {
    /// Connects to the server's IRC address.
    fn connect(server: &TestServer) -> Irc {
        Irc(Client::connect(server.irc.expect("an IRC address")))
    }

    /// Sends one line with CRLF.
    fn send(&mut self, line: &str) {
        self.0.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Reads one line, without its CRLF.
    fn line(&mut self) -> String {
        let line = self.0.line();
        line.strip_suffix('\r').map(str::to_string).unwrap_or(line)
    }

    /// Reads one line and checks it exactly.
    fn expect(&mut self, exact: &str) {
        assert_eq!(self.line(), exact);
    }

    /// Reads lines until one satisfies `wanted`; returns it and those
    /// before it.
    fn until(&mut self, wanted: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let mut before = Vec::new();
        loop {
            let line = self.line();
            if wanted(&line) {
                return (line, before);
            }
            before.push(line);
        }
    }

    /// Reads lines up to and including the first whose command (after any
    /// tags and source) is `command`; returns it.
    fn until_command(&mut self, command: &str) -> String {
        self.until(|l| command_of(l) == command).0
    }

    /// Registers with PASS, NICK and USER, and reads the burst up to the
    /// end of the MOTD.
    fn register(server: &TestServer, nick: &str) -> Irc {
        let mut irc = Irc::connect(server);
        irc.send("PASS secreto123");
        irc.send(&format!("NICK {nick}"));
        irc.send("USER u 0 * :Real Name");
        irc.until_command("376");
        irc
    }

    /// Registers asking for `caps` first.
    fn register_with_caps(server: &TestServer, nick: &str, caps: &str) -> Irc {
        let mut irc = Irc::connect(server);
        irc.send("CAP LS 302");
        irc.send(&format!("CAP REQ :{caps}"));
        irc.send("PASS secreto123");
        irc.send(&format!("NICK {nick}"));
        irc.send("USER u 0 * :Real Name");
        irc.until(|l| l.contains(" CAP * ACK "));
        irc.send("CAP END");
        irc.until_command("376");
        irc
    }

    /// Reads the JOIN burst of `channels` (each JOIN, names, end).
    fn skip_joins(&mut self, channels: usize) {
        for _ in 0..channels {
            self.until_command("366");
        }
    }

    /// Sends `PING token` and reads up to its PONG: everything sent before
    /// has been answered.
    fn sync(&mut self, token: &str) -> Vec<String> {
        self.send(&format!("PING {token}"));
        self.until(|l| command_of(l) == "PONG" && l.ends_with(token)).1
    }

    /// Expects the server to close the connection next.
    fn expect_eof(&mut self) {
        self.0.expect_eof();
    }
}

/// The command of a line: the word after its tags and source.
fn command_of(line: &str) -> &str {
    let mut words = line.split(' ');
    let mut word = words.next().unwrap_or("");
    if word.starts_with('@') {
        word = words.next().unwrap_or("");
    }
    if word.starts_with(':') {
        word = words.next().unwrap_or("");
    }
    word
}

/// Makes account `user` (password `secreto123`) through charla's protocol
/// and leaves: it is offline when this returns.
fn account(server: &TestServer, user: &str) {
    let mut client = registered(server, user);
    client.send("QUIT");
    client.expect("OK QUIT");
    client.expect_eof();
}

/// Standard base64 with padding, for SASL payloads.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn the_listener_is_announced_and_pass_registration_welcomes_the_account_in_its_own_case() {
    let server = server();
    let mut ana = registered(&server, "ana");
    ana.send("JOIN #Clase");
    ana.expect("OK JOIN #Clase");
    let mut irc = Irc::connect(&server);
    irc.send("PASS secreto123");
    irc.send("NICK ANA");
    irc.send("USER ana 0 * :Ana");
    irc.expect(":ANA NICK ana");
    irc.expect(":irc-1 001 ana :Welcome to charla, ana");
    assert_eq!(command_of(&irc.line()), "002");
    assert_eq!(command_of(&irc.line()), "003");
    assert_eq!(command_of(&irc.line()), "004");
    let isupport = irc.line();
    for token in [
        "CHANTYPES=#",
        "CASEMAPPING=ascii",
        "NICKLEN=32",
        "CHANNELLEN=33",
        "CHATHISTORY=1000",
        "CLIENTTAGDENY=*",
    ] {
        assert!(isupport.split(' ').any(|w| w == token), "{token} missing: {isupport}");
    }
    assert!(isupport.starts_with(":irc-1 005 ana "));
    assert_eq!(command_of(&irc.line()), "375");
    let (_, motd) = irc.until(|l| command_of(l) == "376");
    assert!(motd.iter().all(|l| command_of(l) == "372"));
    irc.expect(":ana!ana@charla JOIN #general");
    irc.expect(":irc-1 353 ana = #general :ana");
    irc.expect(":irc-1 366 ana #general :End of /NAMES list");
    irc.expect(":ana!ana@charla JOIN #Clase");
    irc.expect(":irc-1 353 ana = #Clase :ana");
    irc.expect(":irc-1 366 ana #Clase :End of /NAMES list");
    irc.send("PING :tok en");
    irc.expect(":irc-1 PONG irc-1 :tok en");
}

#[test]
fn sasl_plain_logs_in_and_replaces_the_nick_sent_before() {
    let server = server();
    registered(&server, "Bea");
    let mut irc = Irc::connect(&server);
    irc.send("CAP LS 302");
    let ls = irc.line();
    assert!(ls.starts_with(":irc-1 CAP * LS :"), "{ls}");
    for cap in [
        "sasl=PLAIN",
        "server-time",
        "message-tags",
        "echo-message",
        "labeled-response",
        "batch",
        "draft/chathistory",
    ] {
        assert!(ls.contains(cap), "{cap} not offered: {ls}");
    }
    irc.send("NICK invitado");
    irc.send("USER x 0 * :x");
    irc.send("CAP REQ :sasl");
    irc.expect(":irc-1 CAP invitado ACK :sasl");
    irc.send("AUTHENTICATE PLAIN");
    irc.expect("AUTHENTICATE +");
    irc.send(&format!("AUTHENTICATE {}", base64(b"\0bea\0secreto123")));
    irc.expect(":irc-1 900 invitado Bea!Bea@charla Bea :You are now logged in as Bea");
    irc.expect(":irc-1 903 invitado :SASL authentication successful");
    // Registration waits for CAP END.
    irc.send("NICK otro");
    irc.send("CAP END");
    irc.expect(":otro NICK Bea");
    irc.expect(":irc-1 001 Bea :Welcome to charla, Bea");
    irc.until_command("376");
    irc.expect(":Bea!Bea@charla JOIN #general");
    // After registration AUTHENTICATE and PASS are refused.
    irc.until_command("366");
    irc.send("AUTHENTICATE PLAIN");
    irc.expect(":irc-1 907 Bea :You have already authenticated using SASL");
    irc.send("PASS x");
    irc.expect(":irc-1 462 Bea :You may not reregister");
    irc.send("USER a 0 * :b");
    irc.expect(":irc-1 462 Bea :You may not reregister");
}

#[test]
fn three_sasl_failures_end_the_connection_and_an_abort_is_not_one() {
    let server = server();
    registered(&server, "ana");
    let mut irc = Irc::connect(&server);
    irc.send("CAP REQ :sasl");
    irc.expect(":irc-1 CAP * ACK :sasl");
    // An unknown mechanism: the list, and a 904 that is not counted.
    irc.send("AUTHENTICATE SCRAM-SHA-256");
    irc.expect(":irc-1 908 * PLAIN :are available SASL mechanisms");
    irc.expect(":irc-1 904 * :SASL authentication failed");
    irc.send("AUTHENTICATE PLAIN");
    irc.expect("AUTHENTICATE +");
    irc.send("AUTHENTICATE *");
    irc.expect(":irc-1 906 * :SASL authentication aborted");
    // 1: a wrong password; 2: a malformed payload; 3: a wrong user.
    for payload in [
        base64(b"\0ana\0equivocada"),
        "no-es-base64!".to_string(),
        base64(b"\0nadie\0secreto123"),
    ] {
        irc.send("AUTHENTICATE PLAIN");
        irc.expect("AUTHENTICATE +");
        irc.send(&format!("AUTHENTICATE {payload}"));
        irc.expect(":irc-1 904 * :SASL authentication failed");
    }
    assert_eq!(command_of(&irc.line()), "ERROR");
    irc.expect_eof();
}

#[test]
fn a_wrong_pass_or_no_credentials_is_464_then_error_and_the_close() {
    let server = server();
    registered(&server, "ana");
    let mut wrong = Irc::connect(&server);
    wrong.send("PASS equivocada");
    wrong.send("NICK ana");
    wrong.send("USER a 0 * :a");
    wrong.expect(":irc-1 464 ana :Password incorrect");
    assert!(wrong.line().starts_with("ERROR :"));
    wrong.expect_eof();
    let mut none = Irc::connect(&server);
    none.send("CAP LS");
    none.until_command("CAP");
    none.send("NICK ana");
    none.send("USER a 0 * :a");
    none.send("CAP END");
    none.expect(":irc-1 464 ana :Password incorrect");
    assert!(none.line().starts_with("ERROR :"));
    none.expect_eof();
}

#[test]
fn before_registration_commands_get_451_ping_its_pong_notice_nothing_and_unknown_421() {
    let server = server();
    let mut irc = Irc::connect(&server);
    irc.send("PING abc");
    irc.expect(":irc-1 PONG irc-1 :abc");
    irc.send("PONG whatever");
    irc.send("NOTICE #general :hola");
    for command in [
        "PRIVMSG #general :hola",
        "JOIN #a",
        "LIST",
        "WHO #general",
        "CHATHISTORY LATEST #general * 5",
    ] {
        irc.send(command);
        irc.expect(":irc-1 451 * :You have not registered");
    }
    irc.send("FROBNICATE x");
    irc.expect(":irc-1 421 * FROBNICATE :Unknown command");
    irc.send("QUIT :adiós");
    assert!(irc.line().starts_with("ERROR :"));
    irc.expect_eof();
}

#[test]
fn after_registration_the_nick_stays_the_username() {
    let server = server();
    let _ana = registered(&server, "ana");
    let _bea = registered(&server, "bea");
    let mut irc = Irc::register(&server, "ana");
    irc.skip_joins(1);
    irc.send("NICK bea");
    irc.expect(":irc-1 433 ana bea :Nickname is already in use");
    irc.send("NICK nadie");
    irc.expect(":irc-1 432 ana nadie :Erroneous nickname: your nick is your username");
    irc.send("NICK ANA");
    irc.send("NICK");
    irc.expect(":irc-1 431 ana :No nickname given");
    irc.send("FROB");
    irc.expect(":irc-1 421 ana FROB :Unknown command");
}

#[test]
fn messages_travel_between_irc_and_charla_both_ways_stored_first() {
    let server = server();
    account(&server, "ana");
    let mut bea = registered(&server, "bea");
    bea.send("JOIN #Clase");
    bea.expect("OK JOIN #Clase");
    let mut irc = Irc::register_with_caps(&server, "ana", "server-time message-tags echo-message");
    irc.skip_joins(1);
    bea.expect("JOIN ana");
    // bea's JOIN to ana's session, then: IRC to the lobby, with formatting.
    irc.send("JOIN #clase");
    irc.expect(":ana!ana@charla JOIN #Clase");
    let names = irc.line();
    assert!(
        names == ":irc-1 353 ana = #Clase :ana bea" || names == ":irc-1 353 ana = #Clase :bea ana",
        "{names}"
    );
    irc.until_command("366");
    bea.expect("ENTER #Clase ana");
    irc.send("PRIVMSG #general :hola \u{2}a\u{2} \u{3}4,12todos\u{3}");
    let echo = irc.line();
    let msg = bea.line();
    assert!(msg.starts_with("MSG ") && msg.ends_with(" ana hola a todos"), "{msg}");
    let id = msg.split(' ').nth(1).unwrap().to_string();
    assert!(
        echo.starts_with("@time=") && echo.contains(&format!(";msgid={id} ")),
        "{echo}"
    );
    assert!(
        echo.ends_with(" :ana!ana@charla PRIVMSG #general :hola a todos"),
        "{echo}"
    );
    // An ACTION is stored as /me, and a /me from charla is an ACTION.
    irc.send("PRIVMSG #Clase :\u{1}ACTION saluda\u{1}");
    irc.line();
    assert!(bea.line().ends_with(" #Clase ana /me saluda"));
    bea.send("SEND #Clase /me responde");
    bea.expect_prefix("OK SEND ");
    let action = irc.line();
    assert!(
        action.ends_with(":bea!bea@charla PRIVMSG #Clase :\u{1}ACTION responde\u{1}"),
        "{action}"
    );
    // Private, both ways.
    irc.send("PRIVMSG bea :en privado");
    irc.line();
    assert!(bea.line().ends_with(" @bea ana en privado"));
    bea.send("SEND @ana respuesta");
    bea.expect_prefix("OK SEND ");
    assert!(irc.line().ends_with(":bea!bea@charla PRIVMSG ana :respuesta"));
    // NOTICE is stored and delivered like PRIVMSG; its failures are silent.
    irc.send("NOTICE #Clase :aviso");
    assert!(irc.line().ends_with(":ana!ana@charla PRIVMSG #Clase :aviso"));
    assert!(bea.line().ends_with(" #Clase ana aviso"));
    irc.send("NOTICE nadie :x");
    irc.send("NOTICE #general :\u{7}");
    // Refusals: unknown nick, unknown channel, not a member, a bad text.
    irc.send("PRIVMSG nadie :x");
    irc.expect(":irc-1 401 ana nadie :No such nick/channel");
    irc.send("PRIVMSG #nada :x");
    irc.expect(":irc-1 403 ana #nada :No such channel");
    bea.send("JOIN #privada");
    bea.expect("OK JOIN #privada");
    irc.send("PRIVMSG #privada :x");
    irc.expect(":irc-1 404 ana #privada :Cannot send to channel");
    irc.send("PRIVMSG #general :\u{2}\u{2}");
    let why = irc.line();
    assert!(
        why.starts_with(":irc-1 NOTICE ana :") && why.contains("not sent"),
        "{why}"
    );
    irc.send("PRIVMSG #general");
    irc.expect(":irc-1 412 ana :No text to send");
    irc.send("PRIVMSG");
    irc.expect(":irc-1 411 ana :No recipient given (PRIVMSG)");
    // Nothing of the refused or silent ones was stored.
    let history = bea.history("5");
    assert_eq!(history.last().map(|m| m.text.as_str()), Some("hola a todos"));
    irc.sync("fin");
}

#[test]
fn a_long_text_reaches_irc_split_into_lines_that_concatenate_to_it() {
    let server = server();
    account(&server, "ana");
    let mut bea = registered(&server, "bea");
    let mut irc = Irc::register(&server, "ana");
    irc.skip_joins(1);
    bea.expect("JOIN ana");
    let text: String = (0..1900).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    bea.say(&text);
    let mut joined = String::new();
    while joined.len() < text.len() {
        let line = irc.line();
        assert!(line.len() + 2 <= 512, "{} bytes", line.len());
        let piece = line
            .strip_prefix(":bea!bea@charla PRIVMSG #general :")
            .expect("a piece");
        joined.push_str(piece);
    }
    assert_eq!(joined, text);
}

#[test]
fn channels_are_rooms_with_names_who_list_topic_mode_and_away() {
    let server = server();
    account(&server, "ana");
    account(&server, "bea");
    let mut ana = Irc::register(&server, "ana");
    ana.skip_joins(1);
    let mut bea = Irc::register(&server, "bea");
    bea.skip_joins(1);
    ana.expect(":bea!bea@charla JOIN #general");
    ana.send("JOIN #Sala,#sala,bad");
    ana.expect(":ana!ana@charla JOIN #Sala");
    ana.expect(":irc-1 353 ana = #Sala :ana");
    ana.expect(":irc-1 366 ana #Sala :End of /NAMES list");
    ana.expect(":irc-1 403 ana bad :No such channel");
    ana.send("JOIN #mal!nombre");
    ana.expect(":irc-1 479 ana #mal!nombre :Illegal channel name");
    bea.send("JOIN #SALA");
    bea.expect(":bea!bea@charla JOIN #Sala");
    bea.until_command("366");
    ana.expect(":bea!bea@charla JOIN #Sala");
    ana.send("NAMES #sala");
    let names = ana.line();
    assert!(
        names == ":irc-1 353 ana = #Sala :ana bea" || names == ":irc-1 353 ana = #Sala :bea ana",
        "{names}"
    );
    ana.expect(":irc-1 366 ana #Sala :End of /NAMES list");
    ana.send("WHO #Sala");
    let (end, who) = ana.until(|l| command_of(l) == "315");
    assert_eq!(end, ":irc-1 315 ana #Sala :End of WHO list");
    assert_eq!(who.len(), 2);
    assert!(
        who.iter()
            .any(|l| l == ":irc-1 352 ana #Sala bea charla irc-1 bea H :0 bea Apellido"),
        "{who:?}"
    );
    ana.send("LIST");
    ana.expect(":irc-1 322 ana #general 2 :");
    ana.expect(":irc-1 322 ana #Sala 2 :");
    ana.expect(":irc-1 323 ana :End of /LIST");
    ana.send("TOPIC #sala");
    ana.expect(":irc-1 331 ana #Sala :No topic is set");
    ana.send("TOPIC #nada");
    ana.expect(":irc-1 403 ana #nada :No such channel");
    ana.send("MODE #Sala");
    ana.expect(":irc-1 324 ana #Sala +nt");
    ana.send("MODE #Sala +o bea");
    assert_eq!(command_of(&ana.line()), "482");
    ana.send("MODE ana");
    ana.expect(":irc-1 221 ana +");
    ana.send("AWAY :comiendo");
    ana.expect(":irc-1 306 ana :You have been marked as being away");
    ana.send("AWAY");
    ana.expect(":irc-1 305 ana :You are no longer marked as being away");
    // PART: the lobby cannot be left; a room can, once.
    ana.send("PART #general");
    let notice = ana.line();
    assert!(
        notice.starts_with(":irc-1 NOTICE ana :#general cannot be left"),
        "{notice}"
    );
    ana.send("PART #sala :me voy");
    ana.expect(":ana!ana@charla PART #Sala");
    bea.expect(":ana!ana@charla PART #Sala");
    ana.send("PART #Sala");
    ana.expect(":irc-1 442 ana #Sala :You're not on that channel");
    ana.send("PART #nada");
    ana.expect(":irc-1 403 ana #nada :No such channel");
}

/// irssi's and WeeChat's `/notify` poll with `ISON` (the server offers no
/// `MONITOR`); both showed `421` until it was answered.
#[test]
fn ison_and_userhost_name_the_accounts_online_in_their_own_case() {
    let server = server();
    account(&server, "Bea");
    let _carlos = registered(&server, "carlos");
    let _ana = registered(&server, "ana");
    let mut irc = Irc::register(&server, "ana");
    irc.skip_joins(1);
    irc.send("ISON :bea carlos nadie ANA");
    irc.expect(":irc-1 303 ana :carlos ana");
    irc.send("ISON carlos bea");
    irc.expect(":irc-1 303 ana :carlos");
    irc.send("ISON nadie");
    irc.expect(":irc-1 303 ana :");
    irc.send("ISON");
    irc.expect(":irc-1 461 ana ISON :Not enough parameters");
    irc.send("USERHOST CARLOS bea ana");
    irc.expect(":irc-1 302 ana :carlos=+carlos@charla ana=+ana@charla");
    irc.send("USERHOST");
    irc.expect(":irc-1 461 ana USERHOST :Not enough parameters");
    // Bea comes online: now she is on.
    let mut bea = server.connect();
    bea.login("Bea", "secreto123");
    irc.expect(":Bea!Bea@charla JOIN #general");
    irc.send("ISON bea");
    irc.expect(":irc-1 303 ana :Bea");
    // Before registration they wait for it, like the other queries.
    let mut early = Irc::connect(&server);
    early.send("ISON ana");
    early.expect(":irc-1 451 * :You have not registered");
    early.send("USERHOST ana");
    early.expect(":irc-1 451 * :You have not registered");
}

#[test]
fn presence_is_a_join_in_each_shared_room_and_a_quit() {
    let server = server();
    let mut bea = registered(&server, "bea");
    bea.send("JOIN #Sala");
    bea.expect("OK JOIN #Sala");
    bea.send("JOIN #otra");
    bea.expect("OK JOIN #otra");
    bea.send("QUIT");
    bea.expect("OK QUIT");
    let _ana = registered(&server, "ana");
    let mut irc = Irc::register(&server, "ana");
    irc.skip_joins(1);
    irc.send("JOIN #sala");
    irc.until_command("366");
    // bea comes online: #general, and #Sala which ana shares; not #otra.
    let mut again = server.connect();
    again.login("bea", "secreto123");
    irc.expect(":bea!bea@charla JOIN #general");
    irc.expect(":bea!bea@charla JOIN #Sala");
    again.send("QUIT");
    irc.expect(":bea!bea@charla QUIT :Quit");
    irc.sync("fin");
}

#[test]
fn chathistory_pages_a_conversation_in_a_batch_with_time_and_msgid() {
    let server = server();
    account(&server, "ana");
    let mut bea = registered(&server, "bea");
    let ids: Vec<i64> = (1..=5).map(|i| bea.say(&format!("m{i}")).0).collect();
    // `OK SAY` goes out once the batch is stored, a moment before it is
    // published to the sessions online; bea's next answer waits for the
    // publication. Without this, ana (registering meanwhile) could receive
    // m5 live, ahead of the first batch (seen under the full suite's load).
    bea.sync("published");
    let mut irc = Irc::register_with_caps(&server, "ana", "server-time message-tags batch draft/chathistory");
    irc.skip_joins(1);
    let read = |irc: &mut Irc, command: &str| -> Vec<String> {
        irc.send(command);
        let open = irc.line();
        assert!(
            open.starts_with(":irc-1 BATCH +") && open.ends_with(" chathistory #general"),
            "{open}"
        );
        let id = open.split(' ').nth(2).unwrap()[1..].to_string();
        let (close, lines) = irc.until(|l| l.starts_with(":irc-1 BATCH -"));
        assert_eq!(close, format!(":irc-1 BATCH -{id}"));
        lines
            .iter()
            .map(|l| {
                assert!(l.starts_with("@time=") && l.contains(&format!(";batch={id} ")), "{l}");
                l.rsplit(':').next().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(read(&mut irc, "CHATHISTORY LATEST #general * 2"), ["m4", "m5"]);
    assert_eq!(
        read(&mut irc, &format!("CHATHISTORY BEFORE #general msgid={} 2", ids[3])),
        ["m2", "m3"]
    );
    assert_eq!(
        read(&mut irc, &format!("CHATHISTORY AFTER #general msgid={} 2", ids[1])),
        ["m3", "m4"]
    );
    assert_eq!(
        read(&mut irc, &format!("CHATHISTORY AROUND #general msgid={} 3", ids[2])),
        ["m2", "m3", "m4"]
    );
    assert_eq!(
        read(
            &mut irc,
            &format!("CHATHISTORY BETWEEN #general msgid={} msgid={} 10", ids[0], ids[4])
        ),
        ["m2", "m3", "m4"]
    );
    assert_eq!(
        read(&mut irc, &format!("CHATHISTORY LATEST #general msgid={} 10", ids[2])),
        ["m4", "m5"]
    );
    assert_eq!(
        read(
            &mut irc,
            "CHATHISTORY BEFORE #general timestamp=2999-01-01T00:00:00.000Z 1"
        ),
        ["m5"]
    );
    irc.send("CHATHISTORY LATEST #nada * 5");
    irc.expect(":irc-1 FAIL CHATHISTORY INVALID_TARGET LATEST #nada :No such conversation for you");
    irc.send("CHATHISTORY BEFORE #general ayer 5");
    let fail = irc.line();
    assert!(fail.starts_with(":irc-1 FAIL CHATHISTORY INVALID_PARAMS "), "{fail}");
}

#[test]
fn labeled_responses_carry_the_label_an_ack_or_a_batch() {
    let server = server();
    let _ana = registered(&server, "ana");
    let mut irc = Irc::register_with_caps(&server, "ana", "labeled-response batch echo-message message-tags");
    irc.skip_joins(1);
    irc.send("@label=a1 PING x");
    irc.expect("@label=a1 :irc-1 PONG irc-1 :x");
    irc.send("@label=a2 PONG x");
    irc.expect("@label=a2 :irc-1 ACK");
    irc.send("@label=a3 AWAY");
    irc.expect("@label=a3 :irc-1 305 ana :You are no longer marked as being away");
    irc.send("@label=a4 PRIVMSG #general :hola");
    let echo = irc.line();
    assert!(echo.starts_with("@msgid=") && echo.contains(";label=a4 "), "{echo}");
    irc.send("@label=a5 JOIN #nueva");
    let open = irc.line();
    assert!(
        open.starts_with("@label=a5 :irc-1 BATCH +") && open.ends_with(" labeled-response"),
        "{open}"
    );
    irc.until(|l| l.starts_with(":irc-1 BATCH -"));
    irc.send("@label=a6 JOIN #nueva");
    irc.expect("@label=a6 :irc-1 ACK");
}

#[test]
fn lines_over_the_limits_get_417_and_bad_bytes_a_notice_and_the_connection_stays_usable() {
    let server = server();
    let _ana = registered(&server, "ana");
    let mut irc = Irc::register(&server, "ana");
    irc.skip_joins(1);
    // 510 bytes of body is the most; 511 is too long.
    let fits = format!("PING {}", "x".repeat(510 - 5));
    irc.send(&fits);
    assert_eq!(command_of(&irc.line()), "PONG");
    irc.send(&format!("PING {}", "x".repeat(511 - 5)));
    irc.expect(":irc-1 417 ana :Input line was too long");
    // 4096 bytes of tags (with @ and the space) fit; one more does not.
    let tags = |len: usize| format!("@+a={} ", "t".repeat(len - "@+a= ".len()));
    irc.send(&format!("{}PING ok", tags(4096)));
    assert_eq!(command_of(&irc.line()), "PONG");
    irc.send(&format!("{}PING ok", tags(4097)));
    irc.expect(":irc-1 417 ana :Input line was too long");
    // Far over both: read and thrown away while reading.
    irc.send(&"y".repeat(100_000));
    irc.expect(":irc-1 417 ana :Input line was too long");
    irc.0.send_raw(b"PRIVMSG #general :\xff\xfe\r\n");
    let notice = irc.line();
    assert!(
        notice.starts_with(":irc-1 NOTICE ana :") && notice.contains("UTF-8"),
        "{notice}"
    );
    irc.0.send_raw(b"PRIVMSG #general :a\0b\r\n");
    let notice = irc.line();
    assert!(
        notice.starts_with(":irc-1 NOTICE ana :") && notice.contains("NUL"),
        "{notice}"
    );
    // A NOTICE is never answered, not even to say it was dropped.
    irc.0.send_raw(b"NOTICE #general :\xff\xfe\r\n");
    irc.0.send_raw(b"@label=x notice #general :a\0b\r\n");
    let quiet = irc.sync("vivo");
    assert!(quiet.is_empty(), "{quiet:?}");
}

#[test]
fn after_a_sasl_login_events_wait_for_the_registration_burst() {
    let server = server();
    account(&server, "ana");
    let mut bea = registered(&server, "bea");
    let mut irc = Irc::connect(&server);
    irc.send("CAP LS 302");
    irc.send("NICK invitada");
    irc.send("USER u 0 * :x");
    irc.send("CAP REQ :sasl");
    irc.until(|l| l.contains(" ACK "));
    irc.send("AUTHENTICATE PLAIN");
    irc.expect("AUTHENTICATE +");
    irc.send(&format!("AUTHENTICATE {}", base64(b"ana\0ana\0secreto123")));
    irc.until_command("903");
    bea.expect("JOIN ana");
    bea.say("mientras te registras");
    // Answers before CAP END do not let the message out early.
    irc.send("PING antes");
    irc.expect(":irc-1 PONG irc-1 :antes");
    irc.send("CAP END");
    irc.expect(":invitada NICK ana");
    irc.expect(":irc-1 001 ana :Welcome to charla, ana");
    let (_, burst) = irc.until(|l| l.contains("PRIVMSG"));
    assert!(
        burst.iter().any(|l| l == ":irc-1 366 ana #general :End of /NAMES list"),
        "the message came before the burst ended: {burst:?}"
    );
}

#[test]
fn with_echo_message_a_sender_sees_every_message_in_id_order_its_own_included() {
    let server = server();
    account(&server, "ana");
    account(&server, "bea");
    let caps = "message-tags echo-message";
    let mut ana = Irc::register_with_caps(&server, "ana", caps);
    ana.skip_joins(1);
    let mut bea = Irc::register_with_caps(&server, "bea", caps);
    bea.skip_joins(1);
    ana.until(|l| l.ends_with(" JOIN #general"));
    const EACH: usize = 150;
    let sender = |mut irc: Irc, who: &'static str| {
        std::thread::spawn(move || {
            let lines: String = (0..EACH).map(|i| format!("PRIVMSG #general :{who} {i}\r\n")).collect();
            irc.0.send_raw(lines.as_bytes());
            let mut ids = Vec::new();
            while ids.len() < 2 * EACH {
                let line = irc.line();
                if let Some(id) = line.strip_prefix("@msgid=").and_then(|rest| rest.split(' ').next()) {
                    ids.push(id.parse::<i64>().expect("a decimal msgid"));
                }
            }
            ids
        })
    };
    let (from_ana, from_bea) = (sender(ana, "ana"), sender(bea, "bea"));
    for ids in [from_ana.join().expect("ana"), from_bea.join().expect("bea")] {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
    }
}

#[test]
fn a_join_is_answered_before_the_rooms_messages() {
    let server = server();
    account(&server, "ana");
    let mut carl = registered(&server, "carl");
    carl.send("JOIN #carrera");
    carl.expect("OK JOIN #carrera");
    let mut irc = Irc::register(&server, "ana");
    irc.skip_joins(1);
    carl.expect("JOIN ana");
    let flood: String = (0..300).map(|i| format!("SEND #carrera m{i}\n")).collect();
    carl.send_raw(flood.as_bytes());
    irc.send("JOIN #carrera");
    let (first, _) = irc.until(|l| l.contains("#carrera"));
    assert_eq!(first, ":ana!ana@charla JOIN #carrera");
}

#[test]
fn labelled_commands_with_nothing_to_say_get_an_ack() {
    let server = server();
    account(&server, "ana");
    let mut irc = Irc::register_with_caps(&server, "ana", "labeled-response message-tags");
    irc.skip_joins(1);
    for (label, command) in [
        ("t1", "TAGMSG #general"),
        ("t2", "NICK ANA"),
        ("t3", "NOTICE nadie :x"),
        ("t4", "CAP END"),
    ] {
        irc.send(&format!("@label={label};+typing=active {command}"));
        irc.expect(&format!("@label={label} :irc-1 ACK"));
    }
}

#[test]
fn odd_payloads_and_commands_are_refused_as_irc_says() {
    let server = server();
    account(&server, "ana");
    // An oversized SASL payload is a failure too: the third ends it.
    let mut irc = Irc::connect(&server);
    irc.send("USERHOST ana");
    irc.expect(":irc-1 451 * :You have not registered");
    irc.send("CAP REQ :sasl");
    irc.until(|l| l.contains(" ACK "));
    for _ in 0..3 {
        irc.send("AUTHENTICATE PLAIN");
        irc.expect("AUTHENTICATE +");
        for _ in 0..5 {
            irc.send(&format!("AUTHENTICATE {}", "A".repeat(400)));
        }
        irc.expect(":irc-1 905 * :SASL message too long");
    }
    assert!(irc.line().starts_with("ERROR :"));
    irc.expect_eof();
    // An empty ACTION is not stored as "/me"; a CR inside a line is told.
    let mut bea = registered(&server, "bea");
    let mut ana = Irc::register(&server, "ana");
    ana.skip_joins(1);
    bea.expect("JOIN ana");
    ana.send("PRIVMSG #general :\u{1}ACTION  \u{1}");
    let notice = ana.line();
    assert!(
        notice.starts_with(":irc-1 NOTICE ana :Message to #general not sent"),
        "{notice}"
    );
    ana.0.send_raw(b"PRIVMSG #general :a\rb\r\n");
    let notice = ana.line();
    assert!(
        notice.starts_with(":irc-1 NOTICE ana :") && notice.contains("carriage return"),
        "{notice}"
    );
    ana.send("USERHOST bea nadie");
    ana.expect(":irc-1 302 ana :bea=+bea@charla");
    ana.send("ISON nadie bea ana");
    ana.expect(":irc-1 303 ana :bea ana");
    ana.send("AUTHENTICATE PLAIN");
    ana.expect(":irc-1 462 ana :You may not reregister");
    // A room's members are shown only to its members.
    bea.send("JOIN #privada");
    bea.expect("OK JOIN #privada");
    ana.send("NAMES #privada");
    ana.expect(":irc-1 366 ana #privada :End of /NAMES list");
    ana.send("WHO #privada");
    ana.expect(":irc-1 315 ana #privada :End of WHO list");
    ana.sync("fin");
    let last = bea.history("1");
    assert_ne!(last.last().map(|m| m.text.as_str()), Some("/me"));
}

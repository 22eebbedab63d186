//! Rooms and private messages in the `charla` client (PROTOCOL.md 9): the
//! real binary, driven through piped stdin against the real server, with
//! raw protocol sessions playing the other people. What the person reads
//! is asserted word for word, in Spanish and in English; what was stored is
//! read back with a raw session.
//!
//! Every wait is bounded (see [`common::LINE_TIMEOUT`]).

mod common;

use std::sync::mpsc;

use common::{Charla, Client, TestServer, registered, run_piped};

const HINT_ES: &str =
    "Escribe un mensaje y pulsa Intro para enviarlo. /ayuda muestra los comandos; salir cierra la sesión.";
const HINT_EN: &str = "Type a message and press Enter to send it. /help lists the commands; /quit (or salir) logs out.";

/// Whether `line` is a final reply (`OK`/`ERR`, tagged or not).
fn is_reply(line: &str) -> bool {
    let untagged = match line.strip_prefix('@') {
        Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest),
        None => line,
    };
    untagged.starts_with("OK ") || untagged.starts_with("ERR ")
}

/// Sends a command on a raw session and returns its reply, skipping the
/// events that come first; the reply must start with `prefix`.
fn ask(client: &mut Client, line: &str, prefix: &str) -> String {
    client.send(line);
    loop {
        let got = client.line();
        if is_reply(&got) {
            assert!(got.starts_with(prefix), "{line:?}: expected {prefix:?}..., got {got:?}");
            return got;
        }
    }
}

/// A raw session quits.
fn quit(mut client: Client) {
    ask(&mut client, "QUIT", "OK QUIT");
}

/// What a raw session received up to now, without presence lines, with
/// the id and time of `MSG`/`POST` lines left out (`POST #Clase ana hola`).
/// Called after the sender's later reply, so the fan-out is complete.
fn received(client: &mut Client) -> Vec<String> {
    client
        .sync("hecho")
        .into_iter()
        .filter(|line| !line.starts_with("JOIN ") && !line.starts_with("LEAVE "))
        .map(|line| match line.split_once(' ') {
            Some((kind @ ("MSG" | "POST"), rest)) => {
                let rest = rest.splitn(3, ' ').nth(2).unwrap_or("");
                format!("{kind} {rest}")
            }
            _ => line,
        })
        .collect()
}

/// A message line with its time replaced by `HH:MM`: `[#sala HH:MM] ana:
/// hola`. Panics if the time is not `HH:MM` (these messages are today's).
fn untimed(line: &str) -> String {
    let Some((label, rest)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
        return line.to_string();
    };
    let (place, time) = label.rsplit_once(' ').unwrap_or(("", label));
    let (hours, minutes) = time.split_once(':').unwrap_or_else(|| panic!("no time in {line:?}"));
    assert!(
        hours.len() == 2 && minutes.len() == 2 && hours.parse::<u8>().is_ok_and(|h| h < 24),
        "{line:?}"
    );
    assert!(minutes.parse::<u8>().is_ok_and(|m| m < 60), "{line:?}");
    if place.is_empty() {
        format!("[HH:MM] {rest}")
    } else {
        format!("[{place} HH:MM] {rest}")
    }
}

#[test]
fn join_write_switch_list_whisper_and_part_in_spanish() {
    let server = TestServer::start();
    let mut bea = registered(&server, "bea");
    ask(&mut bea, "JOIN #Clase", "OK JOIN #Clase");
    let mut juan = registered(&server, "juan");
    ask(&mut juan, "JOIN #Ajena", "OK JOIN #Ajena");

    let (status, out, err) = run_piped(
        &server.addr.to_string(),
        &[],
        &[
            "2",
            "Ana Ríos",
            "ana",
            "secreto123",
            "/join #clase",
            "hola clase",
            "/who",
            "/rooms",
            "/cambiar #general",
            "hola lobby",
            "/cambiar #Ajena",
            "/switch #CLASE",
            "/msg bea psst",
            "/historial",
            "/historial @bea 5",
            "/part",
            "de vuelta",
            "/unirse",
            "salir",
        ],
    );
    let out: Vec<String> = out.iter().map(|line| untimed(line)).collect();
    assert_eq!(
        out[4..],
        [
            "Registro exitoso. Bienvenido Ana Ríos!",
            "Tus salas: #general.",
            HINT_ES,
            "Te uniste a #Clase; lo que escribas irá a #Clase.",
            "Conectados ahora en #Clase (2):",
            "  ana (Ana Ríos)",
            "  bea (bea Apellido)",
            "3 salas (* = estás en ellas):",
            "    #Ajena (1 miembro)",
            "  * #Clase (2 miembros)",
            "  * #general (3 miembros)",
            "Ahora escribes en #general.",
            "No estás en #Ajena; únete con /join #Ajena.",
            "Ahora escribes en #Clase.",
            "Último mensaje:",
            "[#Clase HH:MM] ana: hola clase",
            "Último mensaje:",
            "[privado → bea HH:MM] ana: psst",
            "Saliste de #Clase.",
            "Ahora escribes en #general.",
            "Uso: /join #sala",
            "Usuario ana se ha desconectado.",
        ],
        "stderr: {err}"
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");

    // Each line went where it was written, and nowhere else.
    assert_eq!(
        received(&mut bea),
        [
            "ENTER #Clase ana",
            "POST #Clase ana hola clase",
            "MSG ana hola lobby",
            "POST @bea ana psst",
            "EXIT #Clase ana",
            "MSG ana de vuelta",
        ]
    );
    assert_eq!(received(&mut juan), ["MSG ana hola lobby", "MSG ana de vuelta"]);
}

#[test]
fn incoming_room_and_private_lines_show_where_they_belong() {
    let server = TestServer::start();
    let mut bea = registered(&server, "bea");
    ask(&mut bea, "JOIN #Clase", "OK JOIN #Clase");
    quit(registered(&server, "ana"));

    let mut charla = Charla::against(&server);
    charla.type_lines(&["1", "ana", "secreto123"]);
    assert_eq!(charla.expect("Tus salas"), "Tus salas: #general.");
    charla.type_lines(&["/join #clase"]);
    charla.expect("Te uniste a #Clase; lo que escribas irá a #Clase.");

    ask(&mut bea, "SEND #clase hola sala", "OK SEND ");
    assert_eq!(untimed(&charla.expect("hola sala")), "[#Clase HH:MM] bea: hola sala");
    ask(&mut bea, "SEND @ana psst", "OK SEND ");
    assert_eq!(untimed(&charla.expect("psst")), "[privado HH:MM] bea: psst");
    ask(&mut bea, "SAY hola lobby", "OK SAY ");
    assert_eq!(untimed(&charla.expect("hola lobby")), "[HH:MM] bea: hola lobby");

    // Another session of the same account.
    let mut ana = server.connect();
    ana.login("ana", "secreto123");
    ask(&mut ana, "SEND @bea te escribo", "OK SEND ");
    assert_eq!(
        untimed(&charla.expect("te escribo")),
        "[privado → bea HH:MM] ana: te escribo"
    );
    ask(&mut ana, "JOIN #Otra", "OK JOIN #Otra");
    assert_eq!(charla.expect("#Otra"), "*** ana entró en #Otra.");
    ask(&mut bea, "PART #Clase", "OK PART #Clase");
    assert_eq!(charla.expect("bea salió"), "*** bea salió de #Clase.");
    // The current room left from elsewhere: back to the lobby.
    ask(&mut ana, "PART #clase", "OK PART #Clase");
    assert_eq!(charla.expect("ana salió"), "*** ana salió de #Clase.");
    assert_eq!(charla.next_line().as_deref(), Some("Ahora escribes en #general."));

    // The room joined elsewhere is known here.
    charla.type_lines(&["/cambiar #otra", "en otra", "/historial @bea"]);
    charla.expect("Ahora escribes en #Otra.");
    charla.expect("Últimos 2 mensajes:");
    assert_eq!(untimed(&charla.next_line().unwrap()), "[privado HH:MM] bea: psst");
    assert_eq!(
        untimed(&charla.next_line().unwrap()),
        "[privado → bea HH:MM] ana: te escribo"
    );
    charla.type_lines(&["salir"]);
    charla.expect("Usuario ana se ha desconectado.");
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");

    // What the client wrote in #Otra reached the account's other session.
    assert_eq!(received(&mut ana), ["POST #Otra ana en otra"]);
}

#[test]
fn rooms_and_private_messages_in_english() {
    let server = TestServer::start();
    let mut bea = registered(&server, "bea");
    ask(&mut bea, "JOIN #Class", "OK JOIN #Class");
    quit(registered(&server, "ana"));

    let mut charla = Charla::start(&server.addr.to_string(), &["--lang", "en"]);
    charla.type_lines(&["1", "ana", "secreto123", "/join #class"]);
    assert_eq!(charla.expect("Your rooms"), "Your rooms: #general.");
    charla.expect(HINT_EN);
    charla.expect("You joined #Class; what you type now goes to #Class.");
    ask(&mut bea, "SEND #Class hi room", "OK SEND ");
    assert_eq!(untimed(&charla.expect("hi room")), "[#Class HH:MM] bea: hi room");
    ask(&mut bea, "SEND @ana psst", "OK SEND ");
    assert_eq!(untimed(&charla.expect("psst")), "[private HH:MM] bea: psst");
    let mut ana = server.connect();
    ana.login("ana", "secreto123");
    ask(&mut ana, "SEND @bea to bea", "OK SEND ");
    assert_eq!(untimed(&charla.expect("to bea")), "[private → bea HH:MM] ana: to bea");
    ask(&mut bea, "PART #Class", "OK PART #Class");
    assert_eq!(charla.expect("bea left"), "*** bea left #Class.");
    ask(&mut bea, "JOIN #Class", "OK JOIN #Class");
    assert_eq!(charla.expect("bea joined"), "*** bea joined #Class.");

    charla.type_lines(&[
        "/who",
        "/part #general",
        "/switch #nowhere",
        "/part",
        "/history #class 1",
    ]);
    charla.expect("Online now in #Class (2):");
    charla.expect("That is not allowed: #general cannot be left.");
    charla.expect("You are not in #nowhere; join it with /join #nowhere.");
    charla.expect("You left #Class.");
    charla.expect("You are now writing in #general.");
    charla.expect("You are not in that room.");
    charla.type_lines(&["/quit"]);
    charla.expect("User ana has disconnected.");
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
}

#[test]
fn every_refusal_gets_a_sentence_in_both_languages() {
    let server = TestServer::start_with(&["--max-rooms-per-account", "1"]);
    let mut juan = registered(&server, "juan");
    ask(&mut juan, "JOIN #Ajena", "OK JOIN #Ajena");
    let typed = [
        "/join #uno",
        "/join #dos",
        "/part #general",
        "/part #Ajena",
        "/who #nada",
        "/who #Ajena",
        "/historial #Ajena",
        "/join sala",
        "/msg b!a hola",
        "/cambiar #Ajena",
        "/historial 0",
        // Last: a message is sent without waiting for its reply, so the
        // refusal could come after what the next lines print.
        "/msg nadie hola",
    ];
    let spanish = [
        "Te uniste a #uno; lo que escribas irá a #uno.",
        "Llegaste al límite de salas; sal de alguna antes de unirte a otra.",
        "Eso no está permitido: de #general no se puede salir.",
        "No estás en esa sala.",
        "Esa sala no existe.",
        "No estás en esa sala.",
        "No estás en esa sala.",
        "El nombre de una sala es # seguido de 1 a 32 caracteres entre letras sin tilde, números, punto, guion y guion bajo.",
        "El nombre de usuario debe tener de 1 a 32 caracteres entre letras sin tilde (A-Z, a-z), números, punto, guion y guion bajo.",
        "No estás en #Ajena; únete con /join #Ajena.",
        "Uso: /historial [#sala|@usuario] [N], con N entre 1 y 1000.",
        "Ese usuario no existe. El mensaje «hola» no se guardó.",
        "Usuario ues se ha desconectado.",
    ];
    let english = [
        "You joined #uno; what you type now goes to #uno.",
        "You reached the room limit; leave a room before joining another.",
        "That is not allowed: #general cannot be left.",
        "You are not in that room.",
        "That room does not exist.",
        "You are not in that room.",
        "You are not in that room.",
        "A room name is # followed by 1 to 32 characters of unaccented letters, digits, dot, hyphen and underscore.",
        "The username must be 1 to 32 characters of unaccented letters (A-Z, a-z), digits, dot, hyphen and underscore.",
        "You are not in #Ajena; join it with /join #Ajena.",
        "Usage: /history [#room|@user] [N], with N from 1 to 1000.",
        "That user does not exist. The message “hola” was not stored.",
        "User uen has disconnected.",
    ];
    for (lang, user, hint, expected) in [
        ("es", "ues", HINT_ES, &spanish[..]),
        ("en", "uen", HINT_EN, &english[..]),
    ] {
        let mut input = vec!["2", "Una Persona", user, "secreto123"];
        input.extend(typed);
        let (status, out, err) = run_piped(&server.addr.to_string(), &["--lang", lang], &input);
        let after_hint = out.iter().position(|line| line == hint).expect("the hint") + 1;
        // Presence lines of the other language's run may come and go.
        let shown: Vec<&str> = out[after_hint..]
            .iter()
            .map(String::as_str)
            .filter(|line| !line.starts_with("*** "))
            .collect();
        assert_eq!(shown, expected, "{lang}; stderr: {err}");
        assert_eq!(status.code(), Some(0), "stderr: {err}");
    }
}

#[test]
fn a_version_1_server_gets_plain_say_and_no_room_commands() {
    let (seen, commands) = mpsc::channel();
    let addr = common::scripted_server(move |line| {
        let _ = seen.send(line.to_string());
        let (tag, rest) = line.split_once(' ')?;
        let verb = rest.split(' ').next()?;
        let reply = match verb {
            "LOGIN" => format!("{tag} OK LOGIN ana Ana Ríos\n"),
            "HISTORY" => format!("{tag} OK HISTORY 0\n"),
            "SAY" => format!("{tag} OK SAY 7 1700000000000\n"),
            "QUIT" => format!("{tag} OK QUIT\n"),
            // A version 1 server knows no other verb.
            _ => format!("{tag} ERR - bad-request malformed command\n"),
        };
        Some(reply.into_bytes())
    });
    let (status, out, err) = run_piped(
        &addr,
        &[],
        &[
            "1",
            "ana",
            "secreto123",
            "/join #sala",
            "/rooms",
            "/msg bea hola",
            "/historial @bea",
            "/cambiar #sala",
            "/cambiar #general",
            "hola",
            "salir",
        ],
    );
    let no_rooms = "Este servidor no tiene salas ni mensajes privados (habla la versión 1 del protocolo).";
    assert_eq!(
        out[3..],
        [
            "Bienvenido Ana Ríos!",
            HINT_ES,
            no_rooms,
            no_rooms,
            no_rooms,
            no_rooms,
            no_rooms,
            "Ahora escribes en #general.",
            "Usuario ana se ha desconectado.",
        ],
        "stderr: {err}"
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    let verbs: Vec<String> = commands
        .try_iter()
        .map(|line| {
            let rest = line.split_once(' ').map_or("", |(_, rest)| rest).to_string();
            if rest.starts_with("LOGIN ") {
                "LOGIN".into()
            } else {
                rest
            }
        })
        .collect();
    assert_eq!(verbs, ["LOGIN", "HISTORY 20", "ROOMS", "SAY hola", "QUIT"]);
}

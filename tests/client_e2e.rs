//! The real `charla` binary, driven through piped stdin against the real
//! server (and, for what a healthy server never does, a scripted fake one),
//! asserting on what a person would read.
//!
//! Every wait is bounded: stdout and stderr are read by threads into
//! channels, and each expected line or exit has [`common::LINE_TIMEOUT`].

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

use common::{Charla, TestServer, run_piped};

const MENU: &str = "¿Deseas (1) Iniciar sesión o (2) Registrarte?:";
const ASK_NAME: &str = "Ingrese su nombre completo:";
const ASK_USER: &str = "Ingrese su nombre de usuario:";
const ASK_PASSWORD: &str = "Ingrese su contraseña:";
const HINT: &str =
    "Escribe un mensaje y pulsa Intro para enviarlo. /ayuda muestra los comandos; salir cierra la sesión.";
/// What an account in no room but the lobby is told after login.
const ONLY_GENERAL: &str = "Tus salas: #general.";

/// The bodies of `HISTORY 50` as `(user, text)`, read with a raw client.
fn stored_messages(server: &TestServer) -> Vec<(String, String)> {
    let mut raw = common::registered(server, "lector");
    raw.send("HISTORY 50");
    let mut messages = Vec::new();
    loop {
        let line = next_non_presence(&mut raw);
        if line.starts_with("OK HISTORY ") {
            return messages;
        }
        let mut fields = line.strip_prefix("MSG ").expect("a MSG line").splitn(4, ' ').skip(2);
        let user = fields.next().expect("user").to_string();
        messages.push((user, fields.next().expect("text").to_string()));
    }
}

/// The next line of a raw client that is not a presence event (`JOIN` /
/// `LEAVE`): when those arrive depends on how fast the server notices the
/// other sessions of a test coming and going, which these tests do not
/// assert on.
fn next_non_presence(raw: &mut common::Client) -> String {
    loop {
        let line = raw.line();
        if !line.starts_with("JOIN ") && !line.starts_with("LEAVE ") {
            return line;
        }
    }
}

/// A raw client quits and waits for the server to close.
fn quit(mut raw: common::Client) {
    raw.send("QUIT");
    assert_eq!(next_non_presence(&mut raw), "OK QUIT");
    raw.expect_eof();
}

/// `charla`'s output without presence lines (`*** ana se ha conectado.`),
/// for exact comparisons in tests where another session of the same test
/// has just ended: whether its LEAVE (or JOIN) reaches `charla` depends on
/// timing.
fn without_presence(out: Vec<String>) -> Vec<String> {
    out.into_iter().filter(|line| !line.starts_with("*** ")).collect()
}

#[test]
fn registers_sends_a_message_and_leaves_with_salir() {
    let server = TestServer::start();
    let (status, out, err) = run_piped(
        &server.addr.to_string(),
        &[],
        &["2", "Ana Ríos", "ana", "secreto123", "hola", "salir"],
    );
    assert_eq!(
        out,
        [
            MENU,
            ASK_NAME,
            ASK_USER,
            ASK_PASSWORD,
            "Registro exitoso. Bienvenido Ana Ríos!",
            ONLY_GENERAL,
            HINT,
            "Usuario ana se ha desconectado.",
        ],
        "stderr: {err}"
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");
    assert_eq!(stored_messages(&server), [("ana".to_string(), "hola".to_string())]);
}

#[test]
fn a_taken_username_gets_the_labs_sentence_and_the_menu_again() {
    let server = TestServer::start();
    quit(common::registered(&server, "ana"));
    let (status, out, err) = run_piped(&server.addr.to_string(), &[], &["2", "Otra Ana", "ana", "secreto123"]);
    assert_eq!(
        out,
        [
            MENU,
            ASK_NAME,
            ASK_USER,
            ASK_PASSWORD,
            "Nombre de usuario ya existe. Intenta con otro nombre de usuario.",
            MENU,
            "Hasta luego.",
        ]
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");
}

#[test]
fn login_with_a_wrong_then_the_right_password_and_end_of_input_leaves() {
    let server = TestServer::start();
    quit(common::registered(&server, "ana"));
    let (status, out, err) = run_piped(
        &server.addr.to_string(),
        &[],
        // Wrong twice: once a valid-looking password (the server says no),
        // once one too short to be anybody's (refused without asking).
        &["1", "ana", "equivocada", "1", "ana", "corta", "1", "ana", "secreto123"],
    );
    let out = without_presence(out);
    let wrong = "Credenciales incorrectas, intente nuevamente.";
    assert_eq!(
        out,
        [
            MENU,
            ASK_USER,
            ASK_PASSWORD,
            wrong,
            MENU,
            ASK_USER,
            ASK_PASSWORD,
            wrong,
            MENU,
            ASK_USER,
            ASK_PASSWORD,
            "Bienvenido ana Apellido!",
            ONLY_GENERAL,
            HINT,
            "Usuario ana se ha desconectado.",
        ],
        "stderr: {err}"
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");
}

#[test]
fn validation_failures_explain_and_return_to_the_menu() {
    let server = TestServer::start();
    let (status, out, err) = run_piped(
        &server.addr.to_string(),
        &[],
        &[
            "3",
            "2",
            "Ana Ríos",
            "ana",
            "corta",
            "2",
            "Ana Ríos",
            "ana maría",
            "2",
            "   ",
        ],
    );
    assert_eq!(
        out,
        [
            MENU,
            "Opción no válida: escribe 1 para iniciar sesión o 2 para registrarte.",
            MENU,
            ASK_NAME,
            ASK_USER,
            ASK_PASSWORD,
            PASSWORD_RULE_ES,
            MENU,
            ASK_NAME,
            ASK_USER,
            "El nombre de usuario debe tener de 1 a 32 caracteres entre letras sin tilde (A-Z, a-z), números, punto, guion y guion bajo.",
            MENU,
            ASK_NAME,
            "El nombre completo debe tener de 1 a 100 caracteres, sin tabuladores ni caracteres de control.",
            MENU,
            "Hasta luego.",
        ]
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(stored_messages(&server).is_empty());
}

/// What the client says of a password that breaks PROTOCOL.md 5.1.
const PASSWORD_RULE_ES: &str = "La contraseña debe tener de 8 a 72 bytes y no puede contener espacios en blanco (espacio, tabulador, espacio de no separación...) ni caracteres de control.";
const PASSWORD_RULE_EN: &str = "The password must be 8 to 72 bytes long and contain no whitespace (space, tab, no-break space...) or control characters.";

#[test]
fn a_password_with_unicode_white_space_is_refused_with_the_reason_in_both_languages() {
    let server = TestServer::start();
    for (lang, rule) in [("es", PASSWORD_RULE_ES), ("en", PASSWORD_RULE_EN)] {
        for password in [
            "clave\u{a0}1234",
            "clave\u{3000}1234",
            "clave\u{b}1234",
            "clave\u{c}1234",
        ] {
            let (status, out, err) = run_piped(
                &server.addr.to_string(),
                &["--lang", lang],
                &["2", "Ana Ríos", "ana", password],
            );
            assert_eq!(
                out.get(4).map(String::as_str),
                Some(rule),
                "{lang} {password:?}: {out:?}"
            );
            assert_eq!(status.code(), Some(0), "stderr: {err}");
        }
    }
    // The server says the same to a client that does not check first.
    let mut raw = server.connect();
    raw.send("REGISTER ana clave\u{a0}1234 Ana");
    raw.expect_prefix("ERR REGISTER invalid-password ");
}

#[test]
fn the_chat_shows_history_others_messages_presence_and_who() {
    let server = TestServer::start();
    quit(common::registered(&server, "ana"));
    let mut juan = common::registered(&server, "juan");
    juan.send("SAY mensaje de antes");
    assert!(next_non_presence(&mut juan).starts_with("OK SAY "));
    quit(juan);

    let mut charla = Charla::against(&server);
    charla.type_lines(&["1", "ana", "secreto123"]);
    charla.expect("Bienvenido ana Apellido!");
    charla.expect("Últimos mensajes:");
    let old = charla.expect("mensaje de antes");
    assert_time_author_text(&old, "juan", "mensaje de antes");
    charla.expect(HINT);

    let mut juan = server.connect();
    juan.login("juan", "secreto123");
    charla.expect("*** juan se ha conectado.");
    juan.send("SAY hola desde juan");
    assert!(next_non_presence(&mut juan).starts_with("OK SAY "));
    let live = charla.expect("hola desde juan");
    assert_time_author_text(&live, "juan", "hola desde juan");

    charla.type_lines(&["/who"]);
    charla.expect("Conectados ahora (2):");
    let mut who = vec![charla.next_line().unwrap(), charla.next_line().unwrap()];
    who.sort();
    assert_eq!(who, ["  ana (ana Apellido)", "  juan (juan Apellido)"]);

    charla.type_lines(&["/nick x", "qué tal, juan"]);
    charla.expect("Comando desconocido: /nick. Escribe /ayuda para ver los comandos.");
    let line = next_non_presence(&mut juan);
    assert!(
        line.starts_with("MSG ") && line.ends_with(" ana qué tal, juan"),
        "{line:?}"
    );

    quit(juan);
    charla.expect("*** juan se ha desconectado.");
    charla.type_lines(&["salir"]);
    charla.expect("Usuario ana se ha desconectado.");
    let (status, rest, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn lang_en_speaks_english() {
    let server = TestServer::start();
    let (status, out, err) = run_piped(
        &server.addr.to_string(),
        &["--lang", "en"],
        &["2", "Ana Ríos", "ana", "secreto123", "/quit"],
    );
    assert_eq!(
        out,
        [
            "Do you want to (1) Log in or (2) Sign up?:",
            "Enter your full name:",
            "Enter your username:",
            "Enter your password:",
            "Sign-up successful. Welcome Ana Ríos!",
            "Your rooms: #general.",
            "Type a message and press Enter to send it. /help lists the commands; /quit (or salir) logs out.",
            "User ana has disconnected.",
        ]
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");
}

#[test]
fn connection_refused_names_the_address() {
    // A port that was just free: nothing listens on it.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").to_string()
    };
    let (status, out, err) = run_piped(&addr, &[], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        err.trim_end(),
        format!("No se pudo conectar con el servidor en {addr} (conexión rechazada). ¿Está en marcha charla-server?")
    );
}

/// With `--reconnect-for 0` a chat does not fail over (tests/client_failover.rs
/// has what happens otherwise).
#[test]
fn a_stopping_server_ends_the_chat_with_a_server_error() {
    let server = TestServer::start();
    quit(common::registered(&server, "ana"));
    let mut charla = Charla::start(&server.addr.to_string(), &["--reconnect-for", "0"]);
    charla.type_lines(&["1", "ana", "secreto123"]);
    charla.expect(HINT);
    server.signal("TERM");
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(3), "stderr: {err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "Error del servidor: el servidor se está apagando. Se cerró la conexión con {}.",
            server.addr
        )
    );
}

#[test]
fn a_vanished_server_is_a_connection_error() {
    let mut server = TestServer::start();
    quit(common::registered(&server, "ana"));
    let mut charla = Charla::start(&server.addr.to_string(), &["--reconnect-for", "0"]);
    charla.type_lines(&["1", "ana", "secreto123"]);
    charla.expect(HINT);
    server.kill9();
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "Error de conexión: se perdió la conexión con el servidor en {}.",
            server.addr
        )
    );
}

/// Checks `[HH:MM] author: text`.
fn assert_time_author_text(line: &str, author: &str, text: &str) {
    let (time, rest) = line.split_once("] ").unwrap_or_else(|| panic!("{line:?}"));
    let time = time.strip_prefix('[').unwrap_or_else(|| panic!("{line:?}"));
    let (hours, minutes) = time.split_once(':').unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        hours.parse::<u8>().is_ok_and(|h| h < 24) && hours.len() == 2,
        "{line:?}"
    );
    assert!(
        minutes.parse::<u8>().is_ok_and(|m| m < 60) && minutes.len() == 2,
        "{line:?}"
    );
    assert_eq!(rest, format!("{author}: {text}"));
}

/// What a healthy server never does (or only in rare cases), played by a
/// scripted one: it answers every command by its tag, refuses SAY with
/// `db-error` (or, for a text ending in "largo", with the untagged reply to
/// an over-long line), and sends a message carrying a terminal escape
/// sequence, twice: live and in the history.
fn misbehaving_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("its address").to_string();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let mut out = stream.try_clone().expect("clone");
        let _ = out.write_all(b"HELLO charla 1 fake\n");
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let (tag, rest) = line.split_once(' ').expect("a tagged command");
            let verb = rest.split(' ').next().expect("a verb");
            let reply = match verb {
                "REGISTER" => format!("{tag} OK REGISTER ana Ana Ríos\n"),
                "HISTORY" => format!(
                    "MSG 7 1700000000000 mallory \x1b[2Jborrado\nMSG 7 1700000000000 mallory \x1b[2Jborrado\n{tag} OK HISTORY 1\n"
                ),
                // What the server answers to a line it could not read: no
                // tag, no verb.
                "SAY" if rest.ends_with("largo") => "ERR - line-too-long line too long\n".to_string(),
                "SAY" => format!("{tag} ERR SAY db-error storage failed, nothing was stored\n"),
                "QUIT" => format!("{tag} OK QUIT\n"),
                _ => format!("{tag} ERR {verb} bad-request malformed command\n"),
            };
            let _ = out.write_all(reply.as_bytes());
            if verb == "QUIT" {
                return;
            }
        }
    });
    addr
}

#[test]
fn database_errors_say_the_message_was_not_stored_and_escapes_are_neutralised() {
    let addr = misbehaving_server();
    let (status, out, err) = run_piped(
        &addr,
        &[],
        &["2", "Ana Ríos", "ana", "secreto123", "hola", "muy largo", "salir"],
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}; stdout: {out:#?}");
    // The live copy and the history copy of message 7 are one message.
    let shown: Vec<&String> = out.iter().filter(|line| line.contains("borrado")).collect();
    assert_eq!(shown.len(), 1, "{out:#?}");
    assert!(!shown[0].contains('\u{1b}'), "{:?}", shown[0]);
    assert!(shown[0].ends_with("mallory: \u{fffd}[2Jborrado"), "{:?}", shown[0]);
    assert!(
        out.contains(
            &"Error de la base de datos: el mensaje «hola» NO se guardó. Puedes volver a enviarlo.".to_string()
        ),
        "{out:#?}"
    );
    assert!(
        out.contains(&"La línea es demasiado larga para el servidor. El mensaje «muy largo» no se guardó.".to_string()),
        "{out:#?}"
    );
    assert_eq!(out.last().map(String::as_str), Some("Usuario ana se ha desconectado."));
}

//! Client failover (PROTOCOL.md 10.3) with whole processes: the real
//! `charla` driven through piped stdin, real servers killed with SIGKILL
//! (or stopped with SIGTERM) and started again on the same port and
//! database, raw protocol sessions playing the others. Checks what the
//! person reads (lost, back, every message once and in order), what is
//! stored (each typed message exactly once) and that the client carries on.
//!
//! Every wait is bounded: lines by `common::LINE_TIMEOUT`, reconnection
//! by the client's own deadline.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{Charla, Client, TestServer, free_port, registered, run_piped};

const HINT: &str =
    "Escribe un mensaje y pulsa Intro para enviarlo. /ayuda muestra los comandos; salir cierra la sesión.";

/// Whether `line` is a final reply (`OK`/`ERR`, tagged or not).
fn is_reply(line: &str) -> bool {
    let untagged = match line.strip_prefix('@') {
        Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest),
        None => line,
    };
    untagged.starts_with("OK ") || untagged.starts_with("ERR ")
}

/// Sends a command on a raw session and returns its reply, skipping the
/// events before it; the reply must start with `prefix`.
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

/// A raw session logged in as `user` (password of [`registered`]).
fn login(server: &TestServer, user: &str) -> Client {
    let mut client = server.connect();
    client.login(user, "secreto123");
    client
}

/// The texts `user` wrote in `target`'s history (`HISTORY TARGET 100`),
/// oldest first. Live lines may come before the body, never inside it, so
/// the body is the last COUNT lines.
fn stored_by(client: &mut Client, target: &str, user: &str) -> Vec<String> {
    client.send(&format!("HISTORY {target} 100"));
    let mut lines: Vec<String> = Vec::new();
    loop {
        let line = client.line();
        if let Some(count) = line.strip_prefix("OK HISTORY ") {
            let count: usize = count.parse().expect("a count");
            let body = lines.split_off(lines.len() - count);
            return body
                .iter()
                .filter_map(|line| {
                    // POST ID TS TARGET USER TEXT
                    let mut fields = line.splitn(6, ' ').skip(4);
                    let author = fields.next()?;
                    (author == user).then(|| fields.next().unwrap_or("").to_string())
                })
                .collect();
        }
        if line.starts_with("POST ") {
            lines.push(line);
        }
    }
}

/// A message line without its time: `[#Clase] bea: hola`, `[] bea: hola`.
fn untimed(line: &str) -> String {
    let Some((label, rest)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
        return line.to_string();
    };
    let place = label.rsplit_once(' ').map_or("", |(place, _)| place);
    format!("[{place}] {rest}")
}

/// Reads the client's output up to the line containing `last`; returns the
/// lines read, without presence lines (`*** ...`).
fn lines_until(charla: &mut Charla, last: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = charla
            .next_line()
            .unwrap_or_else(|| panic!("charla ended before {last:?}; it printed {:#?}", charla.seen));
        let done = line.contains(last);
        if !line.starts_with("*** ") {
            lines.push(line);
        }
        if done {
            return lines;
        }
    }
}

#[test]
fn a_killed_server_that_comes_back_loses_nothing_and_shows_what_was_missed_once_in_order() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = TestServer::start_with(&["--addr", &addr]);
    let mut bea = registered(&server, "bea");
    ask(&mut bea, "JOIN #Clase", "OK JOIN #Clase");
    let mut ana = registered(&server, "ana");
    ask(&mut ana, "JOIN #Clase", "OK JOIN #Clase");
    ask(&mut ana, "QUIT", "OK QUIT");

    let mut charla = Charla::start(&addr, &[]);
    charla.type_lines(&["1", "ana", "secreto123"]);
    assert_eq!(charla.expect("Tus salas"), "Tus salas: #Clase, #general.");
    charla.expect(HINT);
    charla.type_lines(&["/cambiar #clase", "antes"]);
    charla.expect("Ahora escribes en #Clase.");
    let line = loop {
        let line = bea.line_skipping_presence();
        if !line.starts_with("ENTER ") {
            break line;
        }
    };
    assert!(line.ends_with(" #Clase ana antes"), "{line:?}");
    // Received live: the catch-up starts after it.
    ask(&mut bea, "SAY hola antes", "OK SAY ");
    assert_eq!(untimed(&charla.expect("hola antes")), "[] bea: hola antes");

    // A message the server never reads: it is stopped, then killed.
    server.signal("STOP");
    charla.type_lines(&["sin confirmar"]);
    thread::sleep(Duration::from_millis(200));
    server.kill9();
    charla.expect(&format!(
        "Se perdió la conexión con el servidor en {addr}; intentando reconectar (hasta 60 segundos)…"
    ));
    // Typed while there is no server.
    charla.type_lines(&["durante 1", "durante 2"]);

    // Meanwhile the chat goes on elsewhere (the same database, another
    // port the client does not know): what it misses.
    let (dir, db) = server.into_dir();
    let elsewhere = TestServer::start_in(dir, db, &[]);
    let mut bea = login(&elsewhere, "bea");
    ask(&mut bea, "SEND #Clase mientras 1", "OK SEND ");
    ask(&mut bea, "SAY mientras 2", "OK SAY ");
    ask(&mut bea, "SEND @ana mientras 3", "OK SEND ");
    drop(bea);
    let (dir, db) = elsewhere.into_dir();

    // The server comes back where the client looks for it.
    let server = TestServer::start_in(dir, db, &["--addr", &addr]);
    charla.expect(&format!("Conexión recuperada con el servidor en {addr}."));
    let missed: Vec<String> = lines_until(&mut charla, "mientras 3")
        .iter()
        .map(|l| untimed(l))
        .collect();
    assert_eq!(
        missed,
        [
            "[#Clase] bea: mientras 1",
            "[] bea: mientras 2",
            "[privado] bea: mientras 3"
        ]
    );
    // Live again.
    let mut bea = login(&server, "bea");
    ask(&mut bea, "SEND #Clase después", "OK SEND ");
    assert_eq!(untimed(&charla.expect("después")), "[#Clase] bea: después");

    // Each line typed is stored once, in the room it was typed for. The
    // listing comes after the resent messages' replies: they are all in.
    charla.type_lines(&["/who"]);
    charla.expect("Conectados ahora en #Clase (2):");
    assert_eq!(
        stored_by(&mut bea, "#Clase", "ana"),
        ["antes", "sin confirmar", "durante 1", "durante 2"]
    );

    charla.type_lines(&["salir"]);
    charla.expect("Usuario ana se ha desconectado.");
    let seen = charla.seen.clone();
    let (status, rest, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");
    for text in [
        "hola antes",
        "mientras 1",
        "mientras 2",
        "mientras 3",
        "después",
        "antes",
    ] {
        let shown = seen
            .iter()
            .chain(&rest)
            .filter(|line| line.ends_with(&format!(": {text}")))
            .count();
        // What the client itself wrote is never shown back to it.
        let expected = usize::from(text != "antes");
        assert_eq!(shown, expected, "{text:?} in {seen:#?}");
    }
}

#[test]
fn the_first_address_dead_the_second_used_and_back_to_the_first_when_the_second_dies() {
    let first = format!("127.0.0.1:{}", free_port());
    let second = format!("127.0.0.1:{}", free_port());
    let mut server = TestServer::start_with(&["--addr", &second]);

    // Nothing listens at the first address: refused, then the second.
    let mut charla = Charla::start(&format!("{first},{second}"), &["--lang", "en"]);
    charla.type_lines(&["2", "Ana Ríos", "ana", "secreto123", "uno"]);
    charla.expect("Sign-up successful. Welcome Ana Ríos!");
    charla.expect("Your rooms: #general.");

    // The node at the second address dies; the chat's database is served
    // at the first one now.
    server.kill9();
    charla.expect(&format!(
        "The connection to the server at {second} was lost; trying to reconnect (for up to 60 seconds)…"
    ));
    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &["--addr", &first]);
    charla.expect(&format!("Reconnected to the server at {first}."));
    charla.type_lines(&["dos", "/history 5"]);
    charla.expect("The last 2 messages:");
    let listed: Vec<String> = [charla.next_line(), charla.next_line()]
        .into_iter()
        .map(|line| untimed(&line.unwrap_or_default()))
        .collect();
    assert_eq!(listed, ["[] ana: uno", "[] ana: dos"]);
    charla.type_lines(&["/quit"]);
    charla.expect("User ana has disconnected.");
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");
    drop(server);
}

#[test]
fn a_server_shutting_down_is_failed_over_and_the_chat_goes_on() {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = TestServer::start_with(&["--addr", &addr]);
    common::registered(&server, "ana");
    let mut charla = Charla::start(&addr, &[]);
    charla.type_lines(&["1", "ana", "secreto123", "antes"]);
    charla.expect(HINT);
    server.signal("TERM");
    charla.expect(&format!(
        "El servidor en {addr} se está apagando; intentando reconectar (hasta 60 segundos)…"
    ));
    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &["--addr", &addr]);
    charla.expect(&format!("Conexión recuperada con el servidor en {addr}."));
    charla.type_lines(&["después", "/historial"]);
    charla.expect("Últimos 2 mensajes:");
    charla.type_lines(&["salir"]);
    charla.expect("Usuario ana se ha desconectado.");
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    drop(server);
}

#[test]
fn reconnecting_gives_up_in_time_with_the_connection_exit_status() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = TestServer::start_with(&["--addr", &addr]);
    common::registered(&server, "ana");
    let mut charla = Charla::start(&addr, &["--reconnect-for", "2"]);
    charla.type_lines(&["1", "ana", "secreto123"]);
    charla.expect(HINT);
    server.kill9();
    charla.expect("intentando reconectar (hasta 2 segundos)");
    let lost_at = Instant::now();
    charla.type_lines(&["nunca llega"]);
    let (status, _, err) = charla.finish();
    assert!(lost_at.elapsed() < Duration::from_secs(8), "{:?}", lost_at.elapsed());
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err,
        format!(
            "Error de conexión: no se pudo volver a conectar con el servidor ({addr}) en 2 segundos.\n\
             1 mensaje enviado no fue confirmado por el servidor; puede que no se haya guardado.\n"
        )
    );
}

#[test]
fn leaving_while_reconnecting_with_nothing_unsent_is_immediate() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = TestServer::start_with(&["--addr", &addr]);
    common::registered(&server, "ana");
    let mut charla = Charla::start(&addr, &[]);
    charla.type_lines(&["1", "ana", "secreto123"]);
    charla.expect(HINT);
    server.kill9();
    charla.expect("intentando reconectar");
    charla.type_lines(&["salir"]);
    charla.expect("Usuario ana se ha desconectado.");
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
}

#[test]
fn a_failure_before_login_or_with_reconnect_for_0_ends_the_client_as_before() {
    // No address answers at start: each one's failure is told.
    let dead = [free_port(), free_port()].map(|port| format!("127.0.0.1:{port}"));
    let (status, out, err) = run_piped(&dead.join(","), &[], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(out.is_empty(), "{out:?}");
    let told: Vec<&str> = err.lines().collect();
    assert_eq!(told.len(), 2, "{err}");
    for (line, addr) in told.iter().zip(&dead) {
        assert!(line.contains(&format!("{addr} (conexión rechazada)")), "{line}");
    }
}

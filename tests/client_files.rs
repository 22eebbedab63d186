//! Sharing files with the `charla` client (PROTOCOL.md 11, docs/PROTOCOL.md
//! 11.3–11.6): the real binaries, the clients driven through piped stdin,
//! raw protocol sessions and raw sockets playing fake owners and fetchers;
//! a fetcher that cannot reach the owner falling back to the relay.
//! Files are compared byte for byte; what the person reads is asserted in
//! Spanish (and some in English); folders are listed to prove nothing
//! partial was left behind.
//!
//! Every wait is bounded (see [`common::LINE_TIMEOUT`]).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{Charla, Client, TestServer, free_port, registered, wait_for_log, wait_until};
use sha2::{Digest, Sha256};

const HINT: &str =
    "Escribe un mensaje y pulsa Intro para enviarlo. /ayuda muestra los comandos; salir cierra la sesión.";
const HINT_EN: &str = "Type a message and press Enter to send it. /help lists the commands; /quit (or salir) logs out.";

/// `len` bytes that vary (so a shifted or repeated block shows), seeded.
fn varied(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A `charla` registered as `user` and in the chat, with extra `args`.
fn chat(server: &TestServer, user: &str, args: &[&str]) -> Charla {
    let mut charla = Charla::start(&server.addr.to_string(), args);
    charla.type_lines(&["2", &format!("{user} Apellido"), user, "secreto123"]);
    if args.windows(2).any(|pair| pair == ["--lang", "en"]) {
        charla.expect("Sign-up successful");
        charla.expect(HINT_EN);
    } else {
        charla.expect("Registro exitoso");
        charla.expect(HINT);
    }
    charla
}

/// Types `/compartir PATH` and returns the id the client prints.
fn share(charla: &mut Charla, path: &Path) -> String {
    charla.type_lines(&[&format!("/compartir {}", path.display())]);
    let line = charla.expect("con el id ");
    line.split("con el id ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no id in {line:?}"))
        .to_string()
}

/// Waits for `charla` to say the download to `target` is complete, with
/// its size as shown, and checks the bytes on disk are `content`.
fn expect_downloaded(charla: &mut Charla, target: &Path, size: &str, content: &[u8]) {
    assert_eq!(
        charla.expect("Descarga completa"),
        format!(
            "Descarga completa: {} ({size}); la huella SHA-256 coincide.",
            target.display()
        )
    );
    assert!(
        std::fs::read(target).expect("the download") == content,
        "the bytes differ"
    );
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the folder")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A raw session's reply to `line`, skipping events.
fn ask(client: &mut Client, line: &str) -> String {
    client.send(line);
    loop {
        let got = client.line();
        if got.starts_with("OK ") || got.starts_with("ERR ") {
            return got;
        }
    }
}

/// `FETCH id` on a raw session: the ticket and the address.
fn fetch(client: &mut Client, id: &str) -> (String, String) {
    let reply = ask(client, &format!("FETCH {id}"));
    let words: Vec<&str> = reply.split(' ').collect();
    assert!(
        reply.starts_with(&format!("OK FETCH {id} ")) && words.len() == 5,
        "{reply}"
    );
    (words[3].to_string(), words[4].to_string())
}

/// `GET id ticket` on a raw socket to `addr`: everything answered.
fn raw_get(addr: &str, id: &str, ticket: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect to the endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    stream
        .write_all(format!("GET {id} {ticket}\n").as_bytes())
        .expect("send GET");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn two_clients_share_and_download_eight_mebibytes_directly_and_through_the_relay() {
    // The relay logs each transfer at level info.
    let server = TestServer::start_with_env(&[], &[("RUST_LOG", "info")]);
    let owner_dir = tempfile::tempdir().expect("a folder");
    let fetch_dir = tempfile::tempdir().expect("a folder");
    let content = varied(8 * 1024 * 1024, 1);
    let path = owner_dir.path().join("datos.bin");
    std::fs::write(&path, &content).expect("write the file");
    let relayed_path = owner_dir.path().join("por el relé.bin");
    let relayed = varied(8 * 1024 * 1024 + 13, 2);
    std::fs::write(&relayed_path, &relayed).expect("write the file");

    let mut ana = chat(&server, "ana", &[]);
    let mut carla = chat(&server, "carla", &["--share-addr", "none"]);
    let mut bea = chat(&server, "bea", &[]);

    // Direct: ana serves it from her own endpoint.
    let id = share(&mut ana, &path);
    bea.type_lines(&["/archivos"]);
    assert_eq!(bea.expect("archivo"), "1 archivo compartido:");
    let listed = bea.next_line().expect("the file's line");
    assert!(
        listed.contains(&id)
            && listed.contains("8,0 MiB")
            && listed.contains(" ana ")
            && listed.ends_with(" datos.bin"),
        "{listed:?}"
    );
    bea.type_lines(&[&format!("/descargar {id} {}", fetch_dir.path().display())]);
    let target = fetch_dir.path().join("datos.bin");
    assert_eq!(
        bea.expect("Descargando"),
        format!("Descargando «datos.bin» (8,0 MiB) en {}…", target.display())
    );
    // The chat goes on during the transfer.
    bea.type_lines(&["/who"]);
    expect_downloaded(&mut bea, &target, "8,0 MiB", &content);
    ana.expect("Se envió «datos.bin» (8,0 MiB)");

    // Through the relay: carla announced no endpoint.
    let relayed_id = share(&mut carla, &relayed_path);
    let renamed = fetch_dir.path().join("copia.bin");
    bea.type_lines(&[&format!("/descargar {relayed_id} {}", renamed.display())]);
    bea.expect("Descarga completa");
    assert!(
        std::fs::read(&renamed).expect("the download") == relayed,
        "the bytes differ"
    );
    // The relay counts what the owner sent: its header line, then the file.
    let header = format!("OK {} {}\n", relayed.len(), sha_hex(&relayed));
    wait_for_log(
        &server,
        &format!("relay: {} of {} bytes", header.len() + relayed.len(), relayed.len()),
    );
    carla.expect("Se envió «por el relé.bin»");

    // An existing file is never overwritten without asking; with nobody to
    // ask, nothing is downloaded.
    std::fs::write(&target, b"antes").expect("write");
    bea.type_lines(&[&format!("/descargar {id} {}", fetch_dir.path().display())]);
    assert_eq!(
        bea.expect("Ya existe"),
        format!(
            "Ya existe {} y no se sobrescribe: indica otra ruta (/descargar ID RUTA) o bórralo antes.",
            target.display()
        )
    );
    bea.type_lines(&["/quien"]);
    bea.expect("Conectados ahora");
    assert_eq!(std::fs::read(&target).expect("the file"), b"antes");
    assert_eq!(names_in(fetch_dir.path()), ["copia.bin", "datos.bin"]);
}

#[test]
fn commands_tell_what_is_wrong_in_both_languages() {
    let server = TestServer::start_with(&["--max-file-size", "100"]);
    let dir = tempfile::tempdir().expect("a folder");
    let mut ana = chat(&server, "ana", &[]);
    // Too big for this server; a name the protocol refuses.
    let big = dir.path().join("grande.bin");
    std::fs::write(&big, [7u8; 101]).expect("write");
    let tabbed = dir.path().join("con\ttab.txt");
    std::fs::write(&tabbed, b"x").expect("write");
    // One at a time: the name is refused at once, the size only once the
    // file is hashed and offered, which could come before or after.
    ana.type_lines(&[&format!("/compartir {}", tabbed.display())]);
    assert!(
        ana.expect("No se puede compartir")
            .contains("su nombre tiene caracteres que no se pueden compartir"),
        "{:?}",
        ana.seen
    );
    ana.type_lines(&[&format!("/compartir {}", big.display())]);
    ana.expect("El servidor no acepta «grande.bin»: 101 B es más de lo que permite compartir.");
    std::fs::remove_file(&big).expect("remove");
    std::fs::remove_file(&tabbed).expect("remove");
    ana.type_lines(&[
        &format!("/compartir {}", dir.path().join("nada.txt").display()),
        &format!("/share {}", dir.path().display()),
        "/archivos",
        "/descargar fnada123",
        "/dejar",
    ]);
    assert_eq!(
        ana.expect("nada.txt"),
        format!(
            "No se puede compartir {}: no existe.",
            dir.path().join("nada.txt").display()
        )
    );
    assert!(
        ana.expect("No se puede compartir")
            .ends_with("es una carpeta; comparte los archivos de uno en uno.")
    );
    ana.expect("Nadie comparte archivos ahora.");
    ana.expect("Nadie ofrece ahora el archivo fnada123.");
    ana.expect("Uso: /dejar ID");

    // Share, withdraw; another account cannot withdraw it.
    let path = dir.path().join("apuntes.txt");
    std::fs::write(&path, b"tema 1").expect("write");
    let id = share(&mut ana, &path);
    let mut bea = chat(&server, "bea", &["--lang", "en"]);
    bea.type_lines(&["/files apun", &format!("/unshare {id}")]);
    assert_eq!(bea.expect("shared file"), "1 shared file with “apun” in its name:");
    bea.expect(&format!(
        "{id} is not yours: only whoever shares it can stop sharing it."
    ));
    ana.type_lines(&[&format!("/dejar {id}")]);
    ana.expect(&format!("Ya no compartes {id}."));
    let downloads = tempfile::tempdir().expect("a folder");
    bea.type_lines(&["/files", &format!("/get {id} {}", downloads.path().display())]);
    bea.expect("Nobody is sharing files now.");
    bea.expect(&format!("Nobody is offering the file {id} now."));
    assert!(names_in(downloads.path()).is_empty());
}

#[test]
fn the_owners_endpoint_takes_each_ticket_once() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("a folder");
    let content = varied(300_000, 3);
    let path = dir.path().join("x.bin");
    std::fs::write(&path, &content).expect("write");
    let mut ana = chat(&server, "ana", &[]);
    let id = share(&mut ana, &path);
    let mut bea = registered(&server, "bea");
    let (ticket, addr) = fetch(&mut bea, &id);
    assert!(addr.starts_with("127.0.0.1:"), "the endpoint: {addr}");
    let answer = raw_get(&addr, &id, &ticket);
    let header = format!("OK {} {}\n", content.len(), sha_hex(&content));
    assert!(
        answer.starts_with(header.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&answer[..60.min(answer.len())])
    );
    assert!(answer[header.len()..] == content[..]);
    assert_eq!(
        String::from_utf8_lossy(&raw_get(&addr, &id, &ticket)),
        "ERR used the ticket was already used\n"
    );
    let (other, _) = fetch(&mut bea, &id);
    assert_eq!(
        String::from_utf8_lossy(&raw_get(&addr, "fotro", &other)),
        "ERR no-such-file no such file is offered here\n"
    );
    let mut forged = other.into_bytes();
    forged[70] = if forged[70] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex");
    assert_eq!(
        String::from_utf8_lossy(&raw_get(&addr, &id, &forged)),
        "ERR bad-ticket not a ticket for this file\n"
    );
}

/// How a fake owner answers one `GET`.
#[derive(Clone, Copy)]
enum Fake {
    /// The right header, then other bytes of the right size.
    OtherBytes,
    /// The right header, then half the bytes, then it closes.
    Half,
    /// The right header, the bytes, then more.
    More,
    /// Its endpoint is a port nobody listens on.
    Nowhere,
}

/// A raw session that announces an endpoint of its own and offers
/// `content` as `name`, serving `how` to the first `GET`.
fn fake_owner(server: &TestServer, user: &str, name: &str, content: &[u8], how: Fake) -> (Client, String) {
    let mut fake = registered(server, user);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = match how {
        Fake::Nowhere => free_port(),
        _ => listener.local_addr().expect("its address").port(),
    };
    let reply = ask(&mut fake, &format!("ENDPOINT 127.0.0.1:{port}"));
    assert!(reply.starts_with("OK ENDPOINT "), "{reply}");
    let sha = sha_hex(content);
    let reply = ask(&mut fake, &format!("SHARE {} {sha} {name}", content.len()));
    let id = reply
        .strip_prefix("OK SHARE ")
        .unwrap_or_else(|| panic!("{reply}"))
        .to_string();
    let content = content.to_vec();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let mut out = stream;
        let _ = out.write_all(format!("OK {} {sha}\n", content.len()).as_bytes());
        let _ = match how {
            Fake::OtherBytes => out.write_all(&varied(content.len(), 99)),
            Fake::Half => out.write_all(&content[..content.len() / 2]),
            Fake::More => out.write_all(&content).and_then(|()| out.write_all(b"extra")),
            Fake::Nowhere => Ok(()),
        };
        let _ = out.shutdown(Shutdown::Write);
        thread::sleep(Duration::from_millis(500));
    });
    (fake, id)
}

#[test]
fn downloads_that_go_wrong_say_why_and_leave_nothing_behind() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("a folder");
    let content = varied(3 * 1024 * 1024, 4);
    let mut bea = chat(&server, "bea", &[]);
    for (user, how, told) in [
        (
            "mismatch",
            Fake::OtherBytes,
            "lo recibido no coincide con la huella SHA-256 del archivo ofrecido",
        ),
        (
            "half",
            Fake::Half,
            "la transferencia se cortó a medias (1,5 MiB de 3,0 MiB)",
        ),
        ("more", Fake::More, "el otro lado envió más bytes de los anunciados"),
    ] {
        let name = format!("{user}.bin");
        let (_fake, id) = fake_owner(&server, user, &name, &content, how);
        bea.type_lines(&[&format!("/descargar {id} {}", dir.path().display())]);
        let line = bea.expect("No se pudo descargar");
        assert!(
            line.starts_with(&format!(
                "No se pudo descargar {}: {told}",
                dir.path().join(&name).display()
            )) && line.ends_with(". No quedó nada a medias."),
            "{user}: {line:?}"
        );
        assert!(names_in(dir.path()).is_empty(), "{user}: {:?}", names_in(dir.path()));
    }
    // Owners that answered are not asked again through the relay.
    assert!(
        !bea.seen
            .iter()
            .any(|line| line.contains("se intenta a través del servidor")),
        "{:#?}",
        bea.seen
    );
}

/// An address on the loopback where nobody listens: another address than
/// 127.0.0.1, so that no endpoint or relay of a test, which all listen on
/// 127.0.0.1, can take its port meanwhile.
fn nowhere() -> String {
    format!("127.0.0.2:{}", free_port())
}

#[test]
fn a_fetcher_that_cannot_reach_the_owner_gets_the_file_through_the_relay() {
    let server = TestServer::start();
    let owner_dir = tempfile::tempdir().expect("a folder");
    let fetch_dir = tempfile::tempdir().expect("a folder");
    let content = varied(6 * 1024 * 1024 + 7, 6);
    let path = owner_dir.path().join("lejano.bin");
    std::fs::write(&path, &content).expect("write the file");
    // Ana serves at her endpoint but announces an address nobody can
    // reach, as behind a router that forwards nothing.
    let announced = nowhere();
    let mut ana = chat(&server, "ana", &["--share-announce", &announced]);
    let id = share(&mut ana, &path);
    let mut raw = registered(&server, "raw");
    let (_, endpoint) = fetch(&mut raw, &id);
    assert_eq!(endpoint, announced);

    let mut bea = chat(&server, "bea", &[]);
    bea.type_lines(&[&format!("/descargar {id} {}", fetch_dir.path().display())]);
    let target = fetch_dir.path().join("lejano.bin");
    bea.expect("Descargando «lejano.bin»");
    assert_eq!(
        bea.expect("No se pudo llegar"),
        "No se pudo llegar directamente a ana para «lejano.bin»; se intenta a través del servidor…"
    );
    expect_downloaded(&mut bea, &target, "6,0 MiB", &content);
    assert_eq!(names_in(fetch_dir.path()), ["lejano.bin"]);
    ana.expect("Se envió «lejano.bin»");

    // In English, and said once per download.
    let mut carla = chat(&server, "carla", &["--lang", "en"]);
    let other_dir = tempfile::tempdir().expect("a folder");
    carla.type_lines(&[&format!("/get {id} {}", other_dir.path().display())]);
    assert_eq!(
        carla.expect("Could not reach"),
        "Could not reach ana directly for “lejano.bin”; trying through the server…"
    );
    carla.expect("Download complete");
    assert!(
        std::fs::read(other_dir.path().join("lejano.bin")).expect("the download") == content,
        "the bytes differ"
    );
    let told = |charla: &Charla, text: &str| charla.seen.iter().filter(|line| line.contains(text)).count();
    assert_eq!(told(&carla, "Could not reach"), 1);
    assert_eq!(told(&bea, "No se pudo llegar"), 1);
}

#[test]
fn when_the_relay_fails_too_its_failure_is_reported() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("a folder");
    let content = varied(100_000, 7);
    let (mut fake, id) = fake_owner(&server, "lejos", "lejos.bin", &content, Fake::Nowhere);
    let mut bea = chat(&server, "bea", &[]);
    bea.type_lines(&[&format!("/descargar {id} {}", dir.path().display())]);
    // The fake owner is invited to the relay, goes, and cannot read the file.
    let invite = loop {
        let line = fake.line();
        if line.starts_with("RELAY ") {
            break line;
        }
    };
    let words: Vec<&str> = invite.split(' ').collect();
    assert_eq!((words.len(), words[1]), (4, id.as_str()), "{invite}");
    let mut putter = TcpStream::connect(words[3]).expect("the relay");
    putter.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    putter
        .write_all(format!("PUT {id} {}\n", words[2]).as_bytes())
        .expect("PUT");
    let mut ok = [0u8; 3];
    putter.read_exact(&mut ok).expect("the relay's OK");
    assert_eq!(&ok, b"OK\n");
    putter
        .write_all(b"ERR internal the file cannot be read\n")
        .expect("the refusal");
    putter.shutdown(Shutdown::Write).expect("end");
    bea.expect("No se pudo llegar directamente a lejos para «lejos.bin»");
    assert_eq!(
        bea.expect("No se pudo descargar"),
        format!(
            "No se pudo descargar {}: quien lo ofrece no puede leerlo (the file cannot be read). No quedó nada a medias.",
            dir.path().join("lejos.bin").display()
        )
    );
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn a_relay_that_cannot_be_reached_is_not_asked_twice() {
    // The relay announces an address nobody listens on; the owner serves
    // only through it.
    let relay = nowhere();
    let server = TestServer::start_with(&["--relay-announce", &relay]);
    let owner_dir = tempfile::tempdir().expect("a folder");
    let fetch_dir = tempfile::tempdir().expect("a folder");
    let path = owner_dir.path().join("solo-rele.txt");
    std::fs::write(&path, b"por el rele").expect("write");
    let mut ana = chat(&server, "ana", &["--no-direct"]);
    let id = share(&mut ana, &path);
    let mut bea = chat(&server, "bea", &[]);
    bea.type_lines(&[&format!("/descargar {id} {}", fetch_dir.path().display())]);
    let line = bea.expect("No se pudo descargar");
    assert!(
        line.starts_with(&format!(
            "No se pudo descargar {}: no se pudo conectar con quien lo ofrece en {relay} (",
            fetch_dir.path().join("solo-rele.txt").display()
        )),
        "{line:?}"
    );
    // The fallback's answer named the relay that failed: nothing was said
    // about trying it.
    assert!(
        !bea.seen
            .iter()
            .any(|line| line.contains("se intenta a través del servidor")),
        "{:#?}",
        bea.seen
    );
    assert!(names_in(fetch_dir.path()).is_empty());
}

#[test]
fn a_file_changed_after_it_was_shared_is_not_sent() {
    let server = TestServer::start();
    let owner_dir = tempfile::tempdir().expect("a folder");
    let fetch_dir = tempfile::tempdir().expect("a folder");
    let path = owner_dir.path().join("notas.txt");
    std::fs::write(&path, b"version uno").expect("write");
    let mut ana = chat(&server, "ana", &[]);
    let id = share(&mut ana, &path);
    std::fs::write(&path, b"version dos, mas larga").expect("rewrite");
    let mut bea = chat(&server, "bea", &[]);
    bea.type_lines(&[&format!("/descargar {id} {}", fetch_dir.path().display())]);
    assert_eq!(
        bea.expect("No se pudo descargar"),
        format!(
            "No se pudo descargar {}: quien lo ofrece no puede leerlo (the file changed since it was shared). No quedó nada a medias.",
            fetch_dir.path().join("notas.txt").display()
        )
    );
    assert_eq!(
        ana.expect("cambió"),
        format!(
            "«notas.txt» ({id}) cambió desde que lo compartiste y no se envió; vuelve a compartirlo con /compartir (y /dejar {id})."
        )
    );
    assert!(names_in(fetch_dir.path()).is_empty());
}

#[test]
fn offers_end_with_their_session() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("efimero.txt");
    std::fs::write(&path, b"hola").expect("write");
    let mut ana = chat(&server, "ana", &[]);
    share(&mut ana, &path);
    let mut bea = registered(&server, "bea");
    bea.send("FILES");
    assert!(bea.line_skipping_presence().starts_with("FILE "));
    bea.expect("OK FILES 1");
    ana.type_lines(&["salir"]);
    ana.expect("Usuario ana se ha desconectado.");
    assert!(wait_until(Duration::from_secs(5), || ask(&mut bea, "FILES") == "OK FILES 0"));
}

#[test]
fn after_a_failover_the_client_shares_its_files_again_under_new_ids() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = TestServer::start_with(&["--addr", &addr]);
    let dir = tempfile::tempdir().expect("a folder");
    let content = varied(500_000, 5);
    let path = dir.path().join("sigue.bin");
    std::fs::write(&path, &content).expect("write");
    let gone = dir.path().join("cambia.txt");
    std::fs::write(&gone, b"uno").expect("write");
    let mut ana = chat(&server, "ana", &["--reconnect-for", "30"]);
    let old = share(&mut ana, &path);
    let old_gone = share(&mut ana, &gone);
    std::fs::write(&gone, b"dos, otro").expect("rewrite");

    server.kill9();
    let (db_dir, db) = server.into_dir();
    let server = TestServer::start_in(db_dir, db, &["--addr", &addr]);
    ana.expect("Conexión recuperada");
    assert_eq!(
        ana.expect("cambia.txt"),
        format!("Tras reconectar, «cambia.txt» (antes {old_gone}) ya no se comparte: cambió o no se puede leer.")
    );
    let line = ana.expect("se comparte de nuevo");
    let new = line
        .strip_prefix("Tras reconectar, «sigue.bin» se comparte de nuevo con el id ")
        .and_then(|rest| rest.strip_suffix(&format!(" (antes {old}).")))
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    assert_ne!(new, old);

    let mut bea = registered(&server, "bea");
    bea.send("FILES");
    let listed = bea.line_skipping_presence();
    assert_eq!(
        listed,
        format!("FILE {new} {} {} ana sigue.bin", content.len(), sha_hex(&content))
    );
    bea.expect("OK FILES 1");
    // Served directly with the new session's key.
    let (ticket, endpoint) = fetch(&mut bea, &new);
    let answer = raw_get(&endpoint, &new, &ticket);
    let header = format!("OK {} {}\n", content.len(), sha_hex(&content));
    assert!(answer.starts_with(header.as_bytes()) && answer[header.len()..] == content[..]);
}

//! The real `charla` binary on a pseudo-terminal, as a person in a terminal
//! (or tmux) runs it: keys typed ahead of their prompt and pasted blocks of
//! lines must all reach the prompt they were typed for, in order, and a
//! password must never appear on the screen, whatever the timing.
//!
//! The terminal is a real pty (not a pipe), so the client takes its
//! terminal path: raw mode, its own line editor, no echo. Everything the
//! client writes to the terminal is collected from the master side; what it
//! sent is read back from the real server with a raw protocol connection.
//!
//! Bytes written before the client has put the terminal in raw mode would
//! be echoed by the kernel's line discipline, which no program can prevent;
//! so the tests wait until the terminal no longer echoes (the client owns
//! it) and then write everything at once, without reading anything first:
//! the keys arrive long before the prompts they are meant for are drawn.
//!
//! Every wait is bounded, and the child is killed by its handle at the end.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, ExitStatus, MasterPty, PtySize, native_pty_system};

use common::{Msg, TestServer};

/// How long the messages of a test may take to be stored.
const STORE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the client may take to start, and to exit once told to.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// The start of the hint printed once the chat is ready.
const HINT: &str = "Escribe un mensaje y pulsa Intro";

/// A running `charla` on a pseudo-terminal of 24 rows and 100 columns.
struct PtyCharla {
    /// The process.
    child: Box<dyn Child + Send + Sync>,
    /// The master side of the pty, for its terminal settings.
    master: Box<dyn MasterPty + Send>,
    /// Writes to the terminal: what the person types.
    keyboard: Box<dyn Write + Send>,
    /// Everything the client wrote to the terminal so far.
    screen: Arc<Mutex<Vec<u8>>>,
    /// Set when the terminal's output has ended (the client and everything
    /// holding the pty's other side are gone) and all of it was read.
    drained: Arc<std::sync::atomic::AtomicBool>,
}

impl PtyCharla {
    /// `charla` against `server`.
    fn start(server: &TestServer) -> PtyCharla {
        PtyCharla::start_at(&server.addr.to_string())
    }

    /// `charla --server ADDR` on a fresh pty, with `TERM=xterm`.
    fn start_at(addr: &str) -> PtyCharla {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 100,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_charla"));
        command.args(["--server", addr]);
        command.env("TERM", "xterm");
        command.env_remove("RUST_LOG");
        let child = pair.slave.spawn_command(command).expect("charla starts on the pty");
        // Only the child holds the slave now: the master reads EOF once it exits.
        drop(pair.slave);
        let mut output = pair.master.try_clone_reader().expect("the pty's output");
        let keyboard = pair.master.take_writer().expect("the pty's input");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&screen);
        let drained = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ended = Arc::clone(&drained);
        // The pty must be drained all along, or the client blocks writing.
        thread::spawn(move || {
            let mut buf = [0; 4096];
            loop {
                match output.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        ended.store(true, std::sync::atomic::Ordering::Release);
                        return;
                    }
                    Ok(n) => collected.lock().expect("the screen lock").extend_from_slice(&buf[..n]),
                }
            }
        });
        PtyCharla {
            child,
            master: pair.master,
            keyboard,
            screen,
            drained,
        }
    }

    /// Whether the terminal echoes typed keys (the kernel's ECHO flag).
    fn echoes(&self) -> bool {
        let termios = self.master.get_termios().expect("the pty's settings");
        termios.local_flags.bits() & libc::ECHO != 0
    }

    /// Waits until the client has taken the terminal (echo off).
    fn wait_until_raw(&mut self) {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while self.echoes() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "charla exited ({status:?}) before taking the terminal: {}",
                    self.screen()
                );
            }
            assert!(
                Instant::now() < deadline,
                "charla did not take the terminal within {PROCESS_TIMEOUT:?}: {}",
                self.screen()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Types (or pastes) `keys` in one write.
    fn type_keys(&mut self, keys: &str) {
        self.keyboard.write_all(keys.as_bytes()).expect("write to the pty");
        self.keyboard.flush().expect("flush the pty");
    }

    /// Everything on the terminal so far, escape sequences and all.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("the screen lock")).into_owned()
    }

    /// Waits up to `limit` for `text` to appear on the terminal.
    fn wait_for(&self, text: &str, limit: Duration) {
        let found = common::wait_until(limit, || self.screen().contains(text));
        assert!(
            found,
            "no {text:?} on the terminal within {limit:?}: {:?}",
            self.screen()
        );
    }

    /// Waits for the client to exit by itself.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // What it wrote last may still be on its way out of the
                // pty: the screen is whole once the output has ended.
                common::wait_until(PROCESS_TIMEOUT, || {
                    self.drained.load(std::sync::atomic::Ordering::Acquire)
                });
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "charla still runs after {PROCESS_TIMEOUT:?}: {:?}",
                self.screen()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PtyCharla {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A raw connection logged in as a reader of the stored messages.
struct Reader(common::Client);

impl Reader {
    fn new(server: &TestServer) -> Reader {
        Reader(common::registered(server, "lector"))
    }

    /// The texts `user` has stored, oldest first, from `HISTORY 50`. Live
    /// messages may come before the reply's body, never inside it: the body
    /// is the last COUNT message lines.
    fn texts_by(&mut self, user: &str) -> Vec<String> {
        self.0.send("HISTORY 50");
        let mut messages = Vec::new();
        loop {
            let line = self.0.line();
            if let Some(count) = line.strip_prefix("OK HISTORY ") {
                let count: usize = count.parse().expect("a HISTORY count");
                let body = messages.split_off(messages.len() - count);
                return body
                    .into_iter()
                    .filter(|message: &Msg| message.user == user)
                    .map(|message| message.text)
                    .collect();
            }
            if let Some(message) = Msg::parse(&line) {
                messages.push(message);
            }
        }
    }

    /// Waits until `user` has stored at least `count` messages (or the
    /// time is up); returns what is stored.
    fn wait_for(&mut self, user: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + STORE_TIMEOUT;
        loop {
            let texts = self.texts_by(user);
            if texts.len() >= count || Instant::now() >= deadline {
                return texts;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn everything_typed_ahead_from_the_menu_on_reaches_its_prompt() {
    let server = TestServer::start();
    let mut reader = Reader::new(&server);
    let mut charla = PtyCharla::start(&server);
    charla.wait_until_raw();
    let lines: Vec<String> = (1..=20).map(|n| format!("linea {n:02}")).collect();
    let mut keys = String::from("2\rEva Luna\reva\rclave1234\r");
    for line in &lines {
        keys.push_str(line);
        keys.push('\r');
    }
    keys.push_str("salir\r");
    charla.type_keys(&keys);

    let stored = reader.wait_for("eva", lines.len());
    assert_eq!(
        stored,
        lines,
        "stored by eva; the terminal showed {:?}",
        charla.screen()
    );
    let status = charla.wait_exit();
    assert!(status.success(), "{status:?}: {:?}", charla.screen());
    let screen = charla.screen();
    assert!(screen.contains("Registro exitoso. Bienvenido Eva Luna!"), "{screen:?}");
    assert!(screen.contains("Usuario eva se ha desconectado."), "{screen:?}");
    assert!(!screen.contains("clave1234"), "the password was shown: {screen:?}");
}

#[test]
fn a_pasted_block_of_lines_is_sent_whole_and_in_order() {
    let server = TestServer::start();
    let mut reader = Reader::new(&server);
    common::registered(&server, "eva");
    let mut charla = PtyCharla::start(&server);
    // Logging in the slow way: each answer once its prompt is on screen.
    for (prompt, answer) in [
        ("(2) Registrarte?:", "1\r"),
        ("nombre de usuario:", "eva\r"),
        ("contraseña:", "secreto123\r"),
    ] {
        charla.wait_for(prompt, PROCESS_TIMEOUT);
        charla.type_keys(answer);
    }
    charla.wait_for(HINT, PROCESS_TIMEOUT);

    charla.type_keys("uno\rdos\rtres\rcuatro\r");
    let stored = reader.wait_for("eva", 4);
    assert_eq!(stored, ["uno", "dos", "tres", "cuatro"], "{:?}", charla.screen());
    charla.type_keys("salir\r");
    let status = charla.wait_exit();
    assert!(status.success(), "{status:?}: {:?}", charla.screen());
    assert!(!charla.screen().contains("secreto123"), "{:?}", charla.screen());
}

#[test]
fn a_password_typed_before_its_prompt_is_never_shown() {
    let server = TestServer::start();
    let mut raw = server.connect();
    raw.register("eva", "clave5678", "Eva Luna");
    raw.send("QUIT");
    let mut charla = PtyCharla::start(&server);
    charla.wait_until_raw();
    // All at once, before anything is read: the password is on its way
    // before its prompt (or even the menu) is drawn.
    charla.type_keys("1\reva\rclave5678\rsalir\r");

    let status = charla.wait_exit();
    let screen = charla.screen();
    assert!(status.success(), "{status:?}: {screen:?}");
    assert!(screen.contains("Bienvenido Eva Luna!"), "{screen:?}");
    assert!(screen.contains("Usuario eva se ha desconectado."), "{screen:?}");
    assert!(!screen.contains("clave5678"), "the password was shown: {screen:?}");
}

#[test]
fn ctrl_c_at_a_prompt_ends_the_client_and_gives_the_terminal_back() {
    let server = TestServer::start();
    let mut charla = PtyCharla::start(&server);
    charla.wait_until_raw();
    charla.wait_for("(2) Registrarte?:", PROCESS_TIMEOUT);
    charla.type_keys("\u{3}");

    let status = charla.wait_exit();
    assert_eq!(status.exit_code(), 130, "{:?}", charla.screen());
    assert!(charla.echoes(), "the terminal was left without echo");
}

#[test]
fn ctrl_c_while_no_prompt_is_active_ends_the_client() {
    // A server that never answers LOGIN: the client waits for the reply
    // with no prompt on screen (for 30 s before it gives up by itself).
    let (seen, commands) = mpsc::channel();
    let addr = common::scripted_server(move |line| {
        let _ = seen.send(line.to_string());
        Some(Vec::new())
    });
    let mut charla = PtyCharla::start_at(&addr);
    charla.wait_until_raw();
    charla.type_keys("1\reva\rclave1234\r");
    let login = commands.recv_timeout(PROCESS_TIMEOUT).expect("the LOGIN line");
    assert!(login.contains(" LOGIN eva clave1234"), "{login:?}");
    charla.type_keys("\u{3}");

    let status = charla.wait_exit();
    assert_eq!(status.exit_code(), 130, "{status:?} {:?}", charla.screen());
    assert!(
        charla.screen().contains("Sesión interrumpida."),
        "{:?}",
        charla.screen()
    );
    assert!(charla.echoes(), "the terminal was left without echo");
}

#[test]
fn the_prompt_shows_the_current_room_and_follows_it() {
    let server = TestServer::start();
    let mut reader = Reader::new(&server);
    let mut eva = common::registered(&server, "eva");
    let mut charla = PtyCharla::start(&server);
    for (prompt, answer) in [
        ("(2) Registrarte?:", "1\r"),
        ("nombre de usuario:", "eva\r"),
        ("contraseña:", "secreto123\r"),
    ] {
        charla.wait_for(prompt, PROCESS_TIMEOUT);
        charla.type_keys(answer);
    }
    charla.wait_for(HINT, PROCESS_TIMEOUT);
    charla.wait_for("#general> ", PROCESS_TIMEOUT);

    charla.type_keys("/join #Clase\r");
    charla.wait_for("#Clase> ", PROCESS_TIMEOUT);
    // Half a line typed when another session of the account leaves the
    // room: the prompt changes, the line stays, and it goes to the lobby.
    charla.type_keys("hola");
    charla.wait_for("#Clase> hola", PROCESS_TIMEOUT);
    eva.send("PART #Clase");
    charla.wait_for("Ahora escribes en #general.", PROCESS_TIMEOUT);
    charla.wait_for("#general> hola", PROCESS_TIMEOUT);
    charla.type_keys("\r");
    assert_eq!(reader.wait_for("eva", 1), ["hola"], "{:?}", charla.screen());

    charla.type_keys("/cambiar #nada\rsalir\r");
    let status = charla.wait_exit();
    let screen = charla.screen();
    assert!(status.success(), "{status:?}: {screen:?}");
    assert!(screen.contains("No estás en #nada"), "{screen:?}");
}

#[test]
fn on_a_terminal_a_download_asks_before_replacing_and_shows_its_progress() {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    use sha2::{Digest, Sha256};

    let server = TestServer::start();
    // A raw session offers 2 MiB from an endpoint of its own, and serves it
    // in two halves a moment apart, so the bar is drawn mid-way.
    let content: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sha: String = Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let mut owner = common::registered(&server, "ana");
    owner.send(&format!("ENDPOINT 127.0.0.1:{port}"));
    assert!(owner.line_skipping_presence().starts_with("OK ENDPOINT "));
    owner.send(&format!("SHARE {} {sha} datos.bin", content.len()));
    let reply = owner.line_skipping_presence();
    let id = reply
        .strip_prefix("OK SHARE ")
        .unwrap_or_else(|| panic!("{reply}"))
        .to_string();
    let served = content.clone();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let mut line = String::new();
        let _ = BufReader::new(stream.try_clone().expect("clone")).read_line(&mut line);
        let mut out = stream;
        let _ = out.write_all(format!("OK {} {sha}\n", served.len()).as_bytes());
        let _ = out.write_all(&served[..served.len() / 2]);
        thread::sleep(Duration::from_millis(1500));
        let _ = out.write_all(&served[served.len() / 2..]);
    });

    let folder = tempfile::tempdir().expect("a folder");
    let target = folder.path().join("datos.bin");
    std::fs::write(&target, b"antes").expect("write");
    let mut charla = PtyCharla::start(&server);
    charla.wait_until_raw();
    charla.type_keys("2\rBea Ríos\rbea\rsecreto123\r");
    charla.wait_for(HINT, PROCESS_TIMEOUT);
    let get = format!("/descargar {id} {}\r", folder.path().display());
    let question = format!("Ya existe {}. ¿Sobrescribirlo? (s/n):", target.display());
    charla.type_keys(&get);
    charla.wait_for(&question, PROCESS_TIMEOUT);
    charla.type_keys("n\r");
    charla.wait_for("No se descargó nada.", PROCESS_TIMEOUT);
    assert_eq!(std::fs::read(&target).expect("the file"), b"antes");
    // The question is drawn again with each key typed: count its drawings.
    let asked = charla.screen().matches(&question).count();
    charla.type_keys(&get);
    let asked_again = common::wait_until(PROCESS_TIMEOUT, || charla.screen().matches(&question).count() > asked);
    assert!(asked_again, "{:?}", charla.screen());
    charla.type_keys("s\r");
    charla.wait_for("Descarga completa", STORE_TIMEOUT);
    assert!(
        std::fs::read(&target).expect("the download") == content,
        "the bytes differ"
    );
    // The bar (bytes, rate, time left) was drawn above the prompt.
    let screen = charla.screen();
    assert!(
        screen.contains("datos.bin [") && screen.contains(" MiB/2.00 MiB · ") && screen.contains("quedan"),
        "{screen:?}"
    );
    charla.type_keys("salir\r");
    let status = charla.wait_exit();
    assert!(status.success(), "{status:?}: {:?}", charla.screen());
}

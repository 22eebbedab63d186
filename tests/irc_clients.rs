//! The IRC front end (PROTOCOL.md 13) with real IRC clients, whole
//! processes: WeeChat (`weechat-headless`, driven through its FIFO plugin)
//! and irssi (on a pseudo-terminal of its own, driven by typing), each
//! against the real `charla-server` on port 0 and chatting with a charla
//! session on a raw socket: registration (SASL PLAIN as the README sets it
//! up, or `PASS`), joining a room, messages and `/me` both ways, private
//! messages both ways, `/notify` (which polls with `ISON`), and leaving.
//!
//! What a client received is read from its own logs, written into its
//! temporary home: WeeChat's logger (one file per buffer, flushed at once)
//! and irssi's autolog (one file per channel or query) plus one log of
//! every level, where errors such as `421 Unknown command` would show.
//!
//! Needs `weechat-headless` and `irssi` (apt-get install weechat-headless
//! irssi; .ci/run installs them). Every wait is bounded; every client is
//! killed by its handle when its test ends, even on a panic, and its
//! temporary home removed.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

use common::{Client, TestServer, registered, wait_until};

/// How long a client may take to show or send anything expected of it.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Every account's password (`registered` makes them with it).
const PASSWORD: &str = "secreto123";

/// A server with the IRC front end on a free port.
fn server() -> TestServer {
    TestServer::start_with(&["--irc-addr", "127.0.0.1:0"])
}

/// The IRC address of `server`.
fn irc_addr(server: &TestServer) -> SocketAddr {
    server.irc.expect("the server announced its IRC address")
}

/// The path of the client program `name` (on PATH, or in /usr/bin), or a
/// failure that says which Debian package has it.
fn client_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the IRC client tests need {name}: apt-get install {package} \
                 (.ci/run installs it); it is not on PATH nor in /usr/bin"
            )
        })
}

/// A file's text, or nothing if it does not exist (yet).
fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Waits up to [`TIMEOUT`] for the file at `path()` (asked again each
/// time: it may move once it exists) to contain `needle`; `context` says
/// what else to show if it never does.
fn wait_for_text(path: impl Fn() -> PathBuf, needle: &str, context: impl Fn() -> String) {
    let found = wait_until(TIMEOUT, || read(&path()).contains(needle));
    assert!(
        found,
        "{} never showed {needle:?} within {TIMEOUT:?}; it holds:\n{}\n{}",
        path().display(),
        read(&path()),
        context()
    );
}

/// The text of what a terminal program drew, without its escape
/// sequences (CSI and two-byte ones) and blank lines, for failure
/// messages.
fn without_escapes(screen: &str) -> String {
    let mut text = String::new();
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\r' => {}
            c => text.push(c),
        }
    }
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    lines.join("\n")
}

// ----- the charla side ------------------------------------------------------

/// Makes account `user` (password [`PASSWORD`]) through charla's protocol
/// and leaves: it is offline when this returns.
fn account(server: &TestServer, user: &str) {
    let mut client = registered(server, user);
    client.send("QUIT");
    client.expect("OK QUIT");
    client.expect_eof();
}

/// A charla session on a raw socket, the other end of every conversation.
struct Charla(Client);

impl Charla {
    /// Account `user`, made and logged in through charla's own protocol.
    fn new(server: &TestServer, user: &str) -> Charla {
        Charla(registered(server, user))
    }

    /// Sends `command` and expects `reply`.
    fn run(&mut self, command: &str, reply: &str) {
        self.0.send(command);
        self.expect(|line| line == reply, reply);
    }

    /// `SEND target text`, once stored.
    fn say(&mut self, target: &str, text: &str) {
        self.0.send(&format!("SEND {target} {text}"));
        self.expect(|line| line.starts_with("OK SEND "), "OK SEND");
    }

    /// Reads lines (presence events and the like in between) up to the
    /// first that satisfies `wanted`, for at most [`TIMEOUT`] (and one
    /// line's timeout); returns it.
    fn expect(&mut self, wanted: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "the charla session got no {what:?} within {TIMEOUT:?}; it got {seen:#?}"
            );
            let line = self.0.line();
            if wanted(&line) {
                return line;
            }
            seen.push(line);
        }
    }

    /// Expects the stored message `POST ID TS TARGET USER TEXT` (or, in
    /// `#general`, `MSG ID TS USER TEXT`).
    fn expect_message(&mut self, target: &str, user: &str, text: &str) {
        let tail = if target == "#general" {
            format!(" {user} {text}")
        } else {
            format!(" {target} {user} {text}")
        };
        let kind = if target == "#general" { "MSG " } else { "POST " };
        let line = self.expect(
            |line| line.starts_with(kind) && line.ends_with(&tail),
            &format!("{kind}ID TS{tail}"),
        );
        let numbers: Vec<&str> = line[kind.len()..].splitn(3, ' ').take(2).collect();
        assert!(
            numbers.iter().all(|n| n.parse::<i64>().is_ok()),
            "no id and time in {line:?}"
        );
    }
}

// ----- WeeChat ----------------------------------------------------------------

/// A running `weechat-headless` with a temporary home, connected to one
/// server named `charla`.
struct WeeChat {
    /// The process; killed when the test ends.
    child: Child,
    /// The FIFO plugin's pipe, held open for writing so that WeeChat never
    /// sees its end (it would close and reopen it, and could lose a line
    /// written meanwhile).
    fifo: Option<File>,
    /// Its home (`--dir`): configuration, logs, the FIFO.
    dir: tempfile::TempDir,
}

impl WeeChat {
    /// WeeChat with the plugins irc, logger and fifo only, set up as the
    /// README says (`/server add charla HOST/PORT -notls -nicks=... -sasl_...`)
    /// for `nick` with [`PASSWORD`], and connecting. Anti-flood is off so
    /// that commands go at once (WeeChat 3's and 4's spellings both: the
    /// one it does not know is ignored).
    fn start(irc: SocketAddr, nick: &str) -> WeeChat {
        let binary = client_binary("weechat-headless", "weechat-headless");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = format!(
            "/server add charla {}/{} -notls -nicks={nick} -sasl_mechanism=plain -sasl_username={nick} \
             -sasl_password={PASSWORD} -anti_flood_prio_high=0 -anti_flood_prio_low=0 -anti_flood=0",
            irc.ip(),
            irc.port()
        );
        let commands = ["/set logger.file.flush_delay 0", &server, "/connect charla"].join(";");
        let output = File::create(dir.path().join("output.txt")).expect("WeeChat's output file");
        let errors = output.try_clone().expect("WeeChat's output file, again");
        let child = Command::new(binary)
            .arg("--dir")
            .arg(dir.path())
            .args(["--plugins", "irc,logger,fifo", "--run-command", &commands])
            .env("HOME", dir.path())
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .expect("weechat-headless starts");
        let mut weechat = WeeChat { child, fifo: None, dir };
        weechat.fifo = Some(weechat.open_fifo());
        weechat
    }

    /// Opens the FIFO plugin's pipe (`weechat_fifo_PID` in the home) for
    /// writing once WeeChat has made it and reads it.
    fn open_fifo(&mut self) -> File {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("WeeChat exited ({status}) at start: {}", self.context());
            }
            let pipe = std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .find(|path| {
                    path.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("weechat_fifo"))
                });
            // Non-blocking: with no reader yet, opening fails (ENXIO)
            // instead of waiting.
            if let Some(pipe) = pipe
                && let Ok(file) = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&pipe)
            {
                return file;
            }
            assert!(
                Instant::now() < deadline,
                "WeeChat made no FIFO within {TIMEOUT:?}: {}",
                self.context()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `command` (or says `text`) in `buffer`, through the FIFO:
    /// `irc.server.charla` for the server, `irc.charla.#room` for a
    /// channel.
    fn type_in(&mut self, buffer: &str, input: &str) {
        let fifo = self.fifo.as_mut().expect("the FIFO is open");
        fifo.write_all(format!("{buffer} *{input}\n").as_bytes())
            .expect("write to WeeChat's FIFO");
    }

    /// The logger's file of buffer `name` (`server.charla`, `charla.#sala`,
    /// `charla.ana`): `logs/irc.NAME.weechatlog`, lower case.
    fn log(&self, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("logs")
            .join(format!("irc.{}.weechatlog", name.to_lowercase()))
    }

    /// Waits for the log of buffer `name` to contain `needle`.
    fn wait_log(&self, name: &str, needle: &str) {
        wait_for_text(|| self.log(name), needle, || self.context());
    }

    /// The server buffer's log and WeeChat's own, for failure messages.
    fn context(&self) -> String {
        format!(
            "server buffer:\n{}\nweechat.log:\n{}",
            read(&self.log("server.charla")),
            read(&self.dir.path().join("weechat.log"))
        )
    }

    /// Waits up to [`TIMEOUT`] for WeeChat to exit by itself.
    fn wait_exit(&mut self) {
        let child = &mut self.child;
        let exited = wait_until(TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
        assert!(exited, "WeeChat still runs {TIMEOUT:?} after /quit: {}", self.context());
    }
}

impl Drop for WeeChat {
    fn drop(&mut self) {
        self.fifo = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn weechat_logs_in_with_sasl_and_chats_with_a_charla_session() {
    let server = server();
    account(&server, "wee");
    let mut ana = Charla::new(&server, "ana");
    ana.run("JOIN #sala", "OK JOIN #sala");

    let mut weechat = WeeChat::start(irc_addr(&server), "wee");
    weechat.wait_log("server.charla", "SASL authentication successful");
    weechat.wait_log("server.charla", "Welcome to charla, wee");
    ana.expect(|line| line == "JOIN wee", "JOIN wee");
    // wee is a member of no room yet: #general only.
    weechat.wait_log("charla.#general", "wee (wee@charla) has joined #general");

    weechat.type_in("irc.server.charla", "/join #sala");
    ana.expect(|line| line == "ENTER #sala wee", "ENTER #sala wee");
    weechat.wait_log("charla.#sala", "Channel #sala: 2 nicks");

    weechat.type_in("irc.charla.#sala", "hola desde WeeChat, ¿qué tal?");
    ana.expect_message("#sala", "wee", "hola desde WeeChat, ¿qué tal?");
    weechat.type_in("irc.charla.#sala", "/me saluda");
    ana.expect_message("#sala", "wee", "/me saluda");
    ana.say("#sala", "bien, ¿y tú? Soy ana");
    weechat.wait_log("charla.#sala", "ana\tbien, ¿y tú? Soy ana");

    weechat.type_in("irc.server.charla", "/msg ana en privado desde WeeChat");
    ana.expect_message("@ana", "wee", "en privado desde WeeChat");
    ana.say("@wee", "en privado desde charla");
    weechat.wait_log("charla.ana", "ana\ten privado desde charla");

    // /notify asks with ISON, as the server offers no MONITOR.
    weechat.type_in("irc.server.charla", "/notify add ana");
    weechat.wait_log("server.charla", "notify: ana is connected");

    weechat.type_in("irc.server.charla", "/quit");
    ana.expect(|line| line == "LEAVE wee", "LEAVE wee");
    weechat.wait_exit();
    let server_log = read(&weechat.log("server.charla"));
    assert!(
        !server_log.contains("Unknown command"),
        "WeeChat was answered 421: {server_log}"
    );
}

// ----- irssi ------------------------------------------------------------------

/// A running `irssi` on a pseudo-terminal of its own, with a temporary
/// home.
struct Irssi {
    /// The process; killed when the test ends.
    child: Box<dyn portable_pty::Child + Send + Sync>,
    /// The master side of the pty, for its terminal settings.
    master: Box<dyn MasterPty + Send>,
    /// Writes to the terminal: what the person types.
    keyboard: Box<dyn Write + Send>,
    /// Everything irssi drew on the terminal, for failure messages.
    screen: Arc<Mutex<Vec<u8>>>,
    /// Its home (`--home`): the configuration and the logs.
    dir: tempfile::TempDir,
}

impl Irssi {
    /// irssi with `args`, its nick set to `nick` (its default nick is the
    /// system user's name otherwise), commands sent at once (no flood
    /// queue), no paste detection, every channel and query logged to
    /// `logs/TAG/TARGET.log` and everything at every level to `all.log`.
    fn start(nick: &str, args: &[&str]) -> Irssi {
        let binary = client_binary("irssi", "irssi");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = dir.path().display().to_string();
        let config = format!(
            r#"settings = {{
  core = {{ real_name = "{nick}"; user_name = "{nick}"; nick = "{nick}"; }};
  "irc/core" = {{ cmd_queue_speed = "0"; cmds_max_at_once = "1000"; }};
  "fe-common/core" = {{ autolog = "yes"; autolog_path = "{home}/logs/$tag/$0.log"; }};
  "fe-text" = {{ paste_detect_time = "0"; }};
}};
logs = {{ "{home}/all.log" = {{ auto_open = "yes"; level = "ALL"; }}; }};
"#
        );
        std::fs::write(dir.path().join("config"), config).expect("write irssi's configuration");
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(binary);
        command.arg(format!("--home={home}"));
        command.args(args);
        command.cwd(dir.path());
        command.env("HOME", dir.path());
        command.env("TERM", "xterm");
        command.env("LC_ALL", "C.UTF-8");
        let child = pair.slave.spawn_command(command).expect("irssi starts on the pty");
        // Only irssi holds the slave now: the master reads EOF once it exits.
        drop(pair.slave);
        let mut output = pair.master.try_clone_reader().expect("the pty's output");
        let keyboard = pair.master.take_writer().expect("the pty's input");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&screen);
        // The pty must be drained all along, or irssi blocks drawing.
        thread::spawn(move || {
            let mut buf = [0; 4096];
            loop {
                match output.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => collected.lock().expect("the screen lock").extend_from_slice(&buf[..n]),
                }
            }
        });
        let mut irssi = Irssi {
            child,
            master: pair.master,
            keyboard,
            screen,
            dir,
        };
        irssi.wait_until_raw();
        irssi
    }

    /// Waits until irssi has taken the terminal (echo off): keys typed
    /// from then on reach it and are not echoed by the kernel.
    fn wait_until_raw(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let termios = self.master.get_termios().expect("the pty's settings");
            if termios.local_flags.bits() & libc::ECHO == 0 {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("irssi exited ({status:?}) at start: {}", self.context());
            }
            assert!(
                Instant::now() < deadline,
                "irssi did not take the terminal within {TIMEOUT:?}: {}",
                self.context()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `line` and Enter.
    fn type_line(&mut self, line: &str) {
        self.keyboard
            .write_all(format!("{line}\r").as_bytes())
            .expect("type into irssi's terminal");
        self.keyboard.flush().expect("flush irssi's terminal");
    }

    /// The autolog of `target` (`#sala`, `ana`), under whatever tag the
    /// connection has (the network's name, or the address's first word).
    fn log(&self, target: &str) -> PathBuf {
        let logs = self.dir.path().join("logs");
        let name = format!("{}.log", target.to_lowercase());
        std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|tag| tag.path().join(&name))
            .find(|path| path.is_file())
            .unwrap_or_else(|| logs.join("charla").join(&name))
    }

    /// Waits for the autolog of `target` to contain `needle`.
    fn wait_log(&self, target: &str, needle: &str) {
        wait_for_text(|| self.log(target), needle, || self.context());
    }

    /// The log of every level, every window.
    fn all(&self) -> PathBuf {
        self.dir.path().join("all.log")
    }

    /// Waits for the log of every level to contain `needle`.
    fn wait_all(&self, needle: &str) {
        wait_for_text(|| self.all(), needle, || self.context());
    }

    /// The log of every level and the screen, for failure messages.
    fn context(&self) -> String {
        let screen = String::from_utf8_lossy(&self.screen.lock().expect("the screen lock")).into_owned();
        format!(
            "all.log:\n{}\nthe screen's text:\n{}",
            read(&self.all()),
            without_escapes(&screen)
        )
    }

    /// Waits up to [`TIMEOUT`] for irssi to exit by itself.
    fn wait_exit(&mut self) {
        let child = &mut self.child;
        let exited = wait_until(TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
        assert!(exited, "irssi still runs {TIMEOUT:?} after /quit: {}", self.context());
    }

    /// Asserts that irssi was never answered `421`.
    fn assert_no_unknown_command(&self) {
        let all = read(&self.all());
        assert!(!all.contains("Unknown command"), "irssi was answered 421: {all}");
    }
}

impl Drop for Irssi {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn irssi_logs_in_with_sasl_as_the_readme_sets_up_and_chats_with_a_charla_session() {
    let server = server();
    account(&server, "irs");
    let mut ana = Charla::new(&server, "ana");
    ana.run("JOIN #sala", "OK JOIN #sala");

    // A nick other than the account's, as irssi's default (the system
    // user's name) would be: the server makes it the username.
    let mut irssi = Irssi::start("invitado", &[]);
    let irc = irc_addr(&server);
    irssi.type_line(&format!(
        "/network add -sasl_username irs -sasl_password {PASSWORD} -sasl_mechanism PLAIN charla"
    ));
    irssi.type_line(&format!(
        "/server add -auto -network charla {} {}",
        irc.ip(),
        irc.port()
    ));
    irssi.type_line("/connect charla");
    irssi.wait_all("SASL authentication succeeded");
    ana.expect(|line| line == "JOIN irs", "JOIN irs");
    irssi.wait_log("#general", "irs [irs@charla] has joined #general");

    irssi.type_line("/join #sala");
    ana.expect(|line| line == "ENTER #sala irs", "ENTER #sala irs");
    irssi.wait_log("#sala", "irs [irs@charla] has joined #sala");

    irssi.type_line("/msg #sala hola desde irssi, ¿qué tal?");
    ana.expect_message("#sala", "irs", "hola desde irssi, ¿qué tal?");
    irssi.type_line("/action #sala saluda");
    ana.expect_message("#sala", "irs", "/me saluda");
    ana.say("#sala", "bien, ¿y tú? Soy ana");
    irssi.wait_log("#sala", "ana> bien, ¿y tú? Soy ana");

    irssi.type_line("/msg ana en privado desde irssi");
    ana.expect_message("@ana", "irs", "en privado desde irssi");
    ana.say("@irs", "en privado desde charla");
    irssi.wait_log("ana", "<ana> en privado desde charla");

    // /notify asks with ISON, then WHOIS for the details.
    irssi.type_line("/notify ana");
    irssi.wait_all("ana [ana@charla] [ana Apellido] has joined to charla");

    irssi.type_line("/quit adiós");
    ana.expect(|line| line == "LEAVE irs", "LEAVE irs");
    irssi.wait_exit();
    irssi.assert_no_unknown_command();
}

#[test]
fn irssi_logs_in_with_pass_from_the_command_line_as_the_readme_says() {
    let server = server();
    account(&server, "irs");
    let mut ana = Charla::new(&server, "ana");
    let irc = irc_addr(&server);
    let port = irc.port().to_string();
    let ip = irc.ip().to_string();
    let mut irssi = Irssi::start("irs", &["-c", &ip, "-p", &port, "-n", "irs", "-w", PASSWORD]);
    ana.expect(|line| line == "JOIN irs", "JOIN irs");
    irssi.wait_log("#general", "irs [irs@charla] has joined #general");

    irssi.type_line("/msg #general hola a todos, con PASS");
    ana.expect_message("#general", "irs", "hola a todos, con PASS");
    ana.say("#general", "hola, irs");
    irssi.wait_log("#general", "ana> hola, irs");

    irssi.type_line("/quit");
    ana.expect(|line| line == "LEAVE irs", "LEAVE irs");
    irssi.wait_exit();
    irssi.assert_no_unknown_command();
}

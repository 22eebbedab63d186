//! Shared by the whole-process tests: starts the real `charla-server` binary
//! on port 0 against a temporary database and talks to it the way `nc`
//! would, one raw line at a time.

#![allow(dead_code)] // each test binary uses a different part of this

pub mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single expected line may take before a test fails.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `charla-server` and the temporary directory of its database.
pub struct TestServer {
    /// The server process.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves `/health`, when started with `--health-addr`.
    pub health: Option<SocketAddr>,
    /// Where it listens inside TLS, when started with `--tls-addr`.
    pub tls: Option<SocketAddr>,
    /// Where IRC clients connect, when started with `--irc-addr`.
    pub irc: Option<SocketAddr>,
    /// Where IRC clients connect inside TLS, with `--irc-tls-addr`.
    pub irc_tls: Option<SocketAddr>,
    /// Holds the database (and the server's stderr log) until dropped.
    pub dir: tempfile::TempDir,
    /// The database file.
    pub db: PathBuf,
}

impl TestServer {
    /// A server with a fresh database and bcrypt cost 4.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// A server with a fresh database, bcrypt cost 4 and extra arguments.
    pub fn start_with(args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("chat.db");
        TestServer::start_in(dir, db, args)
    }

    /// Starts a server on the database of `dir` (for restarts: pass the
    /// `dir` of a stopped server, taken with [`TestServer::into_dir`]).
    pub fn start_in(dir: tempfile::TempDir, db: PathBuf, args: &[&str]) -> TestServer {
        TestServer::launch(dir, Some(db), args, &[])
    }

    /// A server with a fresh database, extra arguments and extra environment
    /// variables (`RUST_LOG`, say).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("chat.db");
        TestServer::launch(dir, Some(db), args, env)
    }

    /// Starts a server in `dir` as its working directory; without `db` no
    /// `--db` is passed, so the server uses its default (`chat.db` there).
    pub fn launch(dir: tempfile::TempDir, db: Option<PathBuf>, args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .expect("the server log file");
        let mut command = server_command(dir.path());
        // Port 0 unless the test chose an address (to restart on the same
        // port, say).
        if !args.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        if let Some(db) = &db {
            command.arg("--db").arg(db);
        }
        // Tests that flood the server must not be throttled; tests/limits.rs
        // sets the rate itself and so keeps the real default in play.
        if !args.contains(&"--msg-rate") {
            command.args(["--msg-rate", "0"]);
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("charla-server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout);
        let mut health = None;
        let mut tls = None;
        let mut irc = None;
        let mut irc_tls = None;
        let plain = !args.windows(2).any(|w| w == ["--addr", "none"]);
        let first = loop {
            let mut line = String::new();
            if lines.read_line(&mut line).expect("the startup lines") == 0 {
                let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("the server ended before listening; its log:\n{log}");
            }
            if let Some(url) = line.trim().strip_prefix("Salud en http://") {
                health = url.trim_end_matches("/health").parse().ok();
                continue;
            }
            if let Some(listening) = line.trim().strip_suffix(" (IRC, TLS)") {
                irc_tls = listening.rsplit(' ').next().and_then(|a| a.parse().ok());
                continue;
            }
            if let Some(listening) = line.trim().strip_suffix(" (IRC)") {
                irc = listening.rsplit(' ').next().and_then(|a| a.parse().ok());
                continue;
            }
            if let Some(listening) = line.trim().strip_suffix(" (TLS)") {
                tls = listening.rsplit(' ').next().and_then(|a| a.parse().ok());
                if plain {
                    continue;
                }
                break listening.to_string();
            }
            break line;
        };
        let addr = first
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in the startup line {first:?}"));
        assert!(first.contains("Servidor escuchando en"), "startup line: {first:?}");
        let db = db.unwrap_or_else(|| dir.path().join("chat.db"));
        TestServer {
            child,
            addr,
            health,
            tls,
            irc,
            irc_tls,
            dir,
            db,
        }
    }

    /// The server's pid, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Connects and reads the `HELLO` line.
    pub fn connect(&self) -> Client {
        let mut client = self.connect_raw();
        let hello = client.line();
        assert!(hello.starts_with("HELLO charla 1 "), "first line: {hello:?}");
        client
    }

    /// Connects without reading anything.
    pub fn connect_raw(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends a signal with the system's `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// `kill -9`, then waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Gives back the directory (and database) of a server that has exited,
    /// to start another on it.
    pub fn into_dir(mut self) -> (tempfile::TempDir, PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("a temporary directory"));
        (dir, self.db.clone())
    }

    /// Path of a file next to the database.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw protocol connection.
pub struct Client {
    /// Buffered read side.
    reader: BufReader<TcpStream>,
    /// Write side (a clone of the same socket).
    writer: TcpStream,
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the test server");
        stream.set_read_timeout(Some(LINE_TIMEOUT)).expect("read timeout");
        let writer = stream.try_clone().expect("clone the socket");
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Sends `line` followed by `\n`.
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to the server");
    }

    /// Reads one line (without its `\n`); panics on EOF or timeout.
    pub fn line(&mut self) -> String {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => panic!("connection closed while a line was expected"),
            Ok(_) => {}
            Err(e) => panic!("no line within {LINE_TIMEOUT:?}: {e}"),
        }
        assert_eq!(line.pop(), Some(b'\n'), "line without newline: {line:?}");
        String::from_utf8(line).expect("the server sends UTF-8")
    }

    /// Reads one line and checks it exactly.
    pub fn expect(&mut self, exact: &str) {
        let line = self.line();
        assert_eq!(line, exact);
    }

    /// Reads one line, checks its start and returns it.
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        let line = self.line();
        assert!(line.starts_with(prefix), "expected {prefix:?}..., got {line:?}");
        line
    }

    /// Expects the server to close the connection next (after `BYE` or
    /// `OK QUIT`, say), with no further line.
    pub fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "expected EOF, got {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => assert!(rest.is_empty()),
            Err(e) => panic!("expected EOF: {e}"),
        }
    }

    /// Expects no line within `wait` (the connection stays open and quiet).
    pub fn expect_silence(&mut self, wait: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .expect("read timeout");
        let mut line = Vec::new();
        let got = self.reader.read_until(b'\n', &mut line);
        self.reader
            .get_ref()
            .set_read_timeout(Some(LINE_TIMEOUT))
            .expect("read timeout");
        match got {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                assert!(line.is_empty(), "partial line {line:?}")
            }
            other => panic!("expected silence, got {other:?}: {:?}", String::from_utf8_lossy(&line)),
        }
    }

    /// `REGISTER` and expect success.
    pub fn register(&mut self, user: &str, password: &str, name: &str) {
        self.send(&format!("REGISTER {user} {password} {name}"));
        self.expect(&format!("OK REGISTER {user} {name}"));
    }

    /// `LOGIN` and expect success (returns the reply).
    pub fn login(&mut self, user: &str, password: &str) -> String {
        self.send(&format!("LOGIN {user} {password}"));
        self.expect_prefix("OK LOGIN ")
    }

    /// The underlying socket, for half-closes and the like.
    pub fn socket(&self) -> &TcpStream {
        &self.writer
    }

    /// Closes the sending side only (the client's EOF); reading goes on.
    pub fn shutdown_write(&self) {
        self.writer.shutdown(Shutdown::Write).expect("half-close");
    }

    /// Changes how long [`Client::line`] and friends wait.
    pub fn set_timeout(&self, wait: Duration) {
        self.writer.set_read_timeout(Some(wait)).expect("read timeout");
    }

    /// Reads one line, or `None` if the connection ended (EOF or reset) or
    /// nothing came within the timeout; a partial last line is dropped. For
    /// tests that expect the server to go away at some point.
    pub fn next_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                Some(String::from_utf8(line).expect("the server sends UTF-8"))
            }
            _ => None,
        }
    }

    /// Reads everything up to the end of the connection (EOF or reset)
    /// within `limit`: the complete lines, and the bytes of an unfinished
    /// last line. Panics if the connection is still open after `limit`.
    pub fn read_to_close(&mut self, limit: Duration) -> (Vec<String>, Vec<u8>) {
        let deadline = Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the connection is still open after {limit:?}");
            self.set_timeout(left);
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(_) if line.last() == Some(&b'\n') => {
                    line.pop();
                    lines.push(String::from_utf8(line).expect("the server sends UTF-8"));
                }
                Ok(_) => return (lines, line),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (lines, line),
                Err(e) => panic!("the connection is still open after {limit:?}: {e}"),
            }
        }
    }

    /// Reads raw bytes up to the end of the connection (EOF or reset) in
    /// reads of at most `chunk` bytes with `pause` between them, like a
    /// client that reads slowly; panics if it is still open after `limit`.
    pub fn read_slowly_to_close(&mut self, chunk: usize, pause: Duration, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut bytes = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the connection is still open after {limit:?}");
            self.set_timeout(left);
            match self.reader.read(&mut buf) {
                Ok(0) => return bytes,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return bytes,
                Err(e) => panic!("the connection is still open after {limit:?}: {e}"),
            }
            std::thread::sleep(pause);
        }
    }

    /// `SAY text`, expecting `OK SAY ID TS`; returns `(id, ts)`.
    pub fn say(&mut self, text: &str) -> (i64, i64) {
        self.send(&format!("SAY {text}"));
        ok_say(&self.expect_prefix("OK SAY "))
    }

    /// Reads one line that must be a `MSG` event.
    pub fn expect_msg(&mut self) -> Msg {
        let line = self.line();
        Msg::parse(&line).unwrap_or_else(|| panic!("expected MSG, got {line:?}"))
    }

    /// Reads the next line that is not a JOIN or LEAVE event.
    pub fn line_skipping_presence(&mut self) -> String {
        loop {
            let line = self.line();
            if !line.starts_with("JOIN ") && !line.starts_with("LEAVE ") {
                return line;
            }
        }
    }

    /// Sends `HISTORY` with `args` (may be empty) and reads the whole reply,
    /// checking that its count matches the lines. JOIN and LEAVE events
    /// queued before the reply are skipped (none can come inside it); MSG
    /// events cannot be told from the reply's lines, so no message may be
    /// on its way to this session.
    pub fn history(&mut self, args: &str) -> Vec<Msg> {
        if args.is_empty() {
            self.send("HISTORY");
        } else {
            self.send(&format!("HISTORY {args}"));
        }
        let mut messages = Vec::new();
        let mut first = true;
        loop {
            let line = if first {
                self.line_skipping_presence()
            } else {
                self.line()
            };
            first = false;
            if let Some(count) = line.strip_prefix("OK HISTORY ") {
                assert_eq!(count, messages.len().to_string(), "HISTORY count");
                return messages;
            }
            messages.push(Msg::parse(&line).unwrap_or_else(|| panic!("HISTORY body line {line:?}")));
        }
    }

    /// Every stored message, oldest first, paging back 1000 at a time.
    pub fn full_history(&mut self) -> Vec<Msg> {
        let mut all = self.history("1000");
        let mut page_start = all.first().map(|m| m.id);
        for _ in 0..1000 {
            let Some(before) = page_start else { break };
            let mut page = self.history(&format!("1000 {before}"));
            if page.is_empty() {
                break;
            }
            page_start = page.first().map(|m| m.id);
            page.append(&mut all);
            all = page;
        }
        all
    }

    /// Sends `PING token` and returns every line that came before its
    /// `OK PING token`: whatever the server had queued for this session by
    /// the time it read the PING.
    pub fn sync(&mut self, token: &str) -> Vec<String> {
        self.send(&format!("PING {token}"));
        let reply = format!("OK PING {token}");
        let mut before = Vec::new();
        loop {
            let line = self.line();
            if line == reply {
                return before;
            }
            before.push(line);
        }
    }
}

/// A `MSG` line taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Message id.
    pub id: i64,
    /// Milliseconds since the epoch.
    pub ts: i64,
    /// Author.
    pub user: String,
    /// Text.
    pub text: String,
}

impl Msg {
    /// Parses `MSG ID TS USER TEXT`; `None` for any other line.
    pub fn parse(line: &str) -> Option<Msg> {
        let mut fields = line.strip_prefix("MSG ")?.splitn(4, ' ');
        Some(Msg {
            id: fields.next()?.parse().ok()?,
            ts: fields.next()?.parse().ok()?,
            user: fields.next()?.to_string(),
            text: fields.next()?.to_string(),
        })
    }
}

/// The `(id, ts)` of an `[@TAG ]OK SAY ID TS` line.
pub fn ok_say(line: &str) -> (i64, i64) {
    let body = match line.strip_prefix('@') {
        Some(tagged) => tagged.split_once(' ').map_or("", |(_, body)| body),
        None => line,
    };
    let fields: Vec<&str> = body.split(' ').collect();
    match fields.as_slice() {
        ["OK", "SAY", id, ts] => (
            id.parse().unwrap_or_else(|_| panic!("id in {line:?}")),
            ts.parse().unwrap_or_else(|_| panic!("ts in {line:?}")),
        ),
        _ => panic!("expected OK SAY ID TS, got {line:?}"),
    }
}

/// Milliseconds since the Unix epoch now, to check a `TS` is plausible.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit an i64")
}

/// The server binary run in `dir` with no stdin and bcrypt cost 4 (no
/// address: [`TestServer::launch`] adds port 0, startup tests their own).
pub fn server_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_charla-server"));
    command
        .args(["--bcrypt-cost", "4"])
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

/// What a server that was expected to fail at start left behind.
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

/// Runs `command` (from [`server_command`]) expecting it to exit by itself
/// within 10 s; kills it and panics otherwise.
pub fn run_to_exit(mut command: Command) -> Exited {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("charla-server starts");
    let deadline = Instant::now() + LINE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("charla-server was expected to exit but still runs after {LINE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    Exited { status, stdout, stderr }
}

/// A fresh connection, registered as `user` with a standard password.
pub fn registered(server: &TestServer, user: &str) -> Client {
    let mut client = server.connect();
    client.register(user, "secreto123", &format!("{user} Apellido"));
    client
}

/// The path of a file in `dir`.
pub fn file_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A number field of `/proc/<pid>/status` (`VmRSS` in KiB, `Threads`), for
/// tests that watch the server's memory or threads; panics if it is absent.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Waits up to `limit` for `done` to hold, checking every 20 ms; returns
/// whether it did.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to [`LINE_TIMEOUT`] for the server's log to contain `needle`;
/// returns the log.
pub fn wait_for_log(server: &TestServer, needle: &str) -> String {
    let mut log = String::new();
    let found = wait_until(LINE_TIMEOUT, || {
        log = server.log();
        log.contains(needle)
    });
    assert!(found, "the server never logged {needle:?}; its log:\n{log}");
    log
}

/// A stand-in server on 127.0.0.1 for what a real one never does: accepts
/// one connection, sends `HELLO charla 1 fake`, then writes whatever
/// `answer` returns for each line the client sends (without its `\n`), and
/// closes once `answer` returns `None` or the client goes quiet for
/// [`LINE_TIMEOUT`]. Returns the address to point a client at.
pub fn scripted_server(mut answer: impl FnMut(&str) -> Option<Vec<u8>> + Send + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("its address").to_string();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let _ = stream.set_read_timeout(Some(LINE_TIMEOUT));
        let Ok(mut out) = stream.try_clone() else { return };
        let _ = out.write_all(b"HELLO charla 1 fake\n");
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            match answer(&line) {
                Some(bytes) => {
                    let _ = out.write_all(&bytes);
                }
                None => return,
            }
        }
    });
    addr
}

// ----- the charla client, driven through its stdin ------------------------

/// A running `charla`, its stdin held open until closed or dropped.
pub struct Charla {
    /// The process.
    child: Child,
    /// Its stdin; `None` once closed (the client's end of input).
    stdin: Option<ChildStdin>,
    /// Its stdout, line by line.
    stdout: Receiver<String>,
    /// Its stderr, line by line.
    stderr: Receiver<String>,
    /// Every stdout line read so far, for failure messages.
    pub seen: Vec<String>,
}

impl Charla {
    /// `charla --server ADDR` plus `args`.
    pub fn start(addr: &str, args: &[&str]) -> Charla {
        let mut child = Command::new(env!("CARGO_BIN_EXE_charla"))
            .args(["--server", addr])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("charla starts");
        let stdin = child.stdin.take();
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let stderr = lines_of(child.stderr.take().expect("piped stderr"));
        Charla {
            child,
            stdin,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// `charla` against `server`.
    pub fn against(server: &TestServer) -> Charla {
        Charla::start(&server.addr.to_string(), &[])
    }

    /// Types lines (each followed by a newline).
    pub fn type_lines(&mut self, lines: &[&str]) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        for line in lines {
            stdin
                .write_all(format!("{line}\n").as_bytes())
                .expect("write to charla");
        }
        stdin.flush().expect("flush charla's stdin");
    }

    /// Closes stdin: the end of input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, or `None` at the end of output.
    pub fn next_line(&mut self) -> Option<String> {
        match self.stdout.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("charla printed nothing for {LINE_TIMEOUT:?}; so far: {:#?}", self.seen)
            }
        }
    }

    /// Reads stdout up to the first line containing `text`; returns it.
    pub fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while Instant::now() < deadline {
            match self.next_line() {
                Some(line) if line.contains(text) => return line,
                Some(_) => {}
                None => panic!("charla ended without printing {text:?}; it printed {:#?}", self.seen),
            }
        }
        panic!("no {text:?} within {LINE_TIMEOUT:?}; charla printed {:#?}", self.seen)
    }

    /// Waits for the process to exit by itself; returns its status with the
    /// rest of stdout and all of stderr.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("charla still runs after {LINE_TIMEOUT:?}; it printed {:#?}", self.seen);
            }
            thread::sleep(Duration::from_millis(20));
        };
        let mut rest = Vec::new();
        while let Ok(line) = self.stdout.recv_timeout(LINE_TIMEOUT) {
            rest.push(line);
        }
        let mut stderr = String::new();
        while let Ok(line) = self.stderr.recv_timeout(LINE_TIMEOUT) {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        (status, rest, stderr)
    }
}

impl Drop for Charla {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A thread that forwards the lines of `source` until it ends.
pub fn lines_of(source: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Runs `charla` with all of `input` on stdin (then end of input), as
/// `printf ... | charla` does; returns status, stdout lines and stderr.
pub fn run_piped(addr: &str, args: &[&str], input: &[&str]) -> (ExitStatus, Vec<String>, String) {
    let mut charla = Charla::start(addr, args);
    charla.type_lines(input);
    charla.close_stdin();
    charla.finish()
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then released),
/// for a server that must come back on the same address.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A plain HTTP/1.1 `GET` of `path` on `addr`: the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the health port");
    stream.set_read_timeout(Some(LINE_TIMEOUT)).expect("read timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

//! Shared by the whole-process tests: starts the real `charla-server` binary
//! on port 0 against a temporary database and talks to it the way `nc`
//! would, one raw line at a time.

#![allow(dead_code)] // each test binary uses a different part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long any single expected line may take before a test fails.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `charla-server` and the temporary directory of its database.
pub struct TestServer {
    /// The server process.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .expect("the server log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_charla-server"))
            .args(["--addr", "127.0.0.1:0", "--bcrypt-cost", "4", "--db"])
            .arg(&db)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("charla-server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).expect("the startup line");
        let addr = first
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in the startup line {first:?}"));
        assert!(first.contains("Servidor escuchando en"), "startup line: {first:?}");
        TestServer { child, addr, dir, db }
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

//! A private PostgreSQL server for the cluster tests: `initdb` in a
//! temporary directory, started on a free loopback port, stopped when the
//! test ends. PostgreSQL refuses to run as root, so as root it runs as the
//! `postgres` user (`runuser`). The server binaries are looked for in
//! `CHARLA_PG_BIN`, then `/usr/lib/postgresql/*/bin` (Debian's layout).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A PostgreSQL server of one test.
pub struct Postgres {
    /// Holds the data directory.
    dir: tempfile::TempDir,
    /// The server binaries.
    bin: PathBuf,
    /// Where it listens (127.0.0.1).
    pub port: u16,
    /// Whether commands run as the `postgres` user.
    as_postgres: bool,
}

/// The folder of the server binaries.
fn binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHARLA_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "the cluster tests need the PostgreSQL server binaries: apt-get install postgresql, \\
             or set CHARLA_PG_BIN to the folder holding initdb and pg_ctl"
        )
    })
}

/// Whether this process runs as root (PostgreSQL then runs as `postgres`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// Creates and starts a server.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let as_postgres = is_root();
        let mut pg = Postgres {
            bin: binaries(),
            port: super::free_port(),
            as_postgres,
            dir,
        };
        let data = pg.data();
        std::fs::create_dir(&data).expect("the data directory");
        if as_postgres {
            run(Command::new("chmod").args(["755"]).arg(pg.dir.path()));
            run(Command::new("chown").args(["postgres:postgres"]).arg(&data));
        }
        pg.tool("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .map(|s| assert!(s.success(), "initdb failed"))
            .expect("initdb runs");
        // The free port may be taken by someone else before PostgreSQL
        // binds it (other tests run at the same time): try another.
        for _ in 0..5 {
            if pg.try_start() {
                return pg;
            }
            assert!(
                pg.log().contains("could not bind") || pg.log().contains("already in use"),
                "PostgreSQL did not start: {}",
                pg.log()
            );
            pg.port = super::free_port();
        }
        panic!("PostgreSQL found no free port: {}", pg.log());
    }

    /// The data directory.
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command of the server binaries, as the right user.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts the server (again, after [`Postgres::stop`]).
    pub fn start_again(&self) {
        assert!(self.try_start(), "PostgreSQL did not start: {}", self.log());
    }

    /// Starts the server on its port; whether it did.
    fn try_start(&self) -> bool {
        let data = self.data();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
            self.port,
            data.display()
        );
        let status = self
            .tool("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(data.join("server.log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        status.success()
    }

    /// Stops the server (fast: connections are cut).
    pub fn stop(&self) {
        let _ = self
            .tool("pg_ctl")
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .status();
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data().join("server.log")).unwrap_or_default()
    }

    /// Creates database `name` and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let mut admin = postgres::Client::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port),
            postgres::NoTls,
        )
        .expect("connect to the test PostgreSQL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a database");
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A client of database `name`, for checks behind the servers' backs.
    pub fn client(&self, name: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(name), postgres::NoTls).expect("connect to the test database")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["-w", "-t", "20", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command that must succeed.
fn run(command: &mut Command) {
    let status = command.status().expect("the command runs");
    assert!(status.success(), "{command:?} failed");
}

/// Whether `path` exists (for tests that need other tools).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

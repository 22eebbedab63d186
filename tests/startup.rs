//! Starting the server (PROTOCOL.md 7): what it refuses to start on, and
//! the database it creates by default.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::{Exited, TestServer, run_to_exit, server_command};

/// Runs the server in `dir` with `args` (plus port 0 unless `args` has an
/// `--addr`), expecting it to refuse to start.
fn refuses(dir: &Path, args: &[&str]) -> Exited {
    let mut command = server_command(dir);
    if !args.contains(&"--addr") {
        command.args(["--addr", "127.0.0.1:0"]);
    }
    command.args(args);
    let exited = run_to_exit(command);
    assert!(
        !exited.status.success(),
        "started with {args:?}: {}{}",
        exited.stdout,
        exited.stderr
    );
    assert!(
        !exited.stdout.contains("Servidor escuchando"),
        "claimed to listen with {args:?}"
    );
    assert!(!exited.stderr.trim().is_empty(), "no message for {args:?}");
    exited
}

#[test]
fn a_port_in_use_is_refused_with_a_message() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("its address").to_string();
    let db = dir.path().join("chat.db");
    let db = db.to_str().expect("a UTF-8 path");
    let exited = refuses(dir.path(), &["--addr", &addr, "--db", db]);
    assert!(exited.stderr.contains(&addr), "stderr: {}", exited.stderr);
    assert!(
        exited.stderr.to_lowercase().contains("in use"),
        "stderr: {}",
        exited.stderr
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("notes.db");
    let garbage = b"These are my notes, not a database. Please do not overwrite them!\n".repeat(20);
    std::fs::write(&path, &garbage).expect("write the file");
    let shown = path.to_str().expect("a UTF-8 path");
    let exited = refuses(dir.path(), &["--db", shown]);
    assert!(exited.stderr.contains(shown), "stderr: {}", exited.stderr);
    assert!(exited.stderr.contains("not"), "stderr: {}", exited.stderr);
    assert_eq!(std::fs::read(&path).expect("the file is still there"), garbage);
}

#[test]
fn a_database_in_a_missing_directory_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("no-such-dir").join("chat.db");
    let shown = path.to_str().expect("a UTF-8 path");
    let exited = refuses(dir.path(), &["--db", shown]);
    assert!(exited.stderr.contains(shown), "stderr: {}", exited.stderr);
    assert!(!dir.path().join("no-such-dir").exists());
    // A directory where the file should be is refused too.
    let shown = dir.path().to_str().expect("a UTF-8 path");
    refuses(dir.path(), &["--db", shown]);
}

#[test]
fn another_programs_sqlite_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("lab.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create the foreign database");
        conn.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, nombre TEXT);
             INSERT INTO users (nombre) VALUES ('original');",
        )
        .expect("the foreign schema");
    }
    let shown = path.to_str().expect("a UTF-8 path");
    let exited = refuses(dir.path(), &["--db", shown]);
    assert!(exited.stderr.contains(shown), "stderr: {}", exited.stderr);
    let conn = rusqlite::Connection::open(&path).expect("reopen the foreign database");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .expect("list the tables");
    assert_eq!(tables, ["users"], "the server changed another program's database");

    // A charla database from a newer version is refused as well.
    let newer = dir.path().join("newer.db");
    {
        let conn = rusqlite::Connection::open(&newer).expect("create the newer database");
        conn.execute_batch("PRAGMA application_id = 1667787873; PRAGMA user_version = 99;")
            .expect("mark it");
    }
    let shown = newer.to_str().expect("a UTF-8 path");
    let exited = refuses(dir.path(), &["--db", shown]);
    assert!(exited.stderr.contains(shown), "stderr: {}", exited.stderr);
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for args in [
        &["--max-line", "100"][..],
        &["--max-line", "abc"],
        &["--max-clients", "0"],
        &["--login-timeout", "0"],
        &["--node", "bad node"],
        &["--node", ""],
        &["--addr", "not-an-address"],
        &["--no-such-option"],
    ] {
        refuses(dir.path(), args);
    }
    let entries = std::fs::read_dir(dir.path()).expect("the directory").count();
    assert_eq!(entries, 0, "a refused start left files behind");
}

#[test]
fn the_default_database_is_created_with_its_tables() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut server = TestServer::launch(dir, None, &[], &[]);
    assert_eq!(server.db, server.path("chat.db"));
    assert!(server.db.exists(), "no chat.db in the working directory");
    let mut ana = server.connect();
    ana.register("ana", "Zq8-stored-secret", "Ana Ríos");
    let (id, _) = ana.say("hola");
    server.signal("TERM");
    ana.expect("BYE shutting-down server is shutting down");
    assert!(server.wait_exit(Duration::from_secs(10)).success());

    let conn = rusqlite::Connection::open(&server.db).expect("open chat.db");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .expect("list the tables");
    tables.sort();
    assert_eq!(tables, ["memberships", "messages", "rooms", "users"]);
    let (username, full_name, hash): (String, String, String) = conn
        .query_row("SELECT username, full_name, password_hash FROM users", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .expect("one user");
    assert_eq!((username.as_str(), full_name.as_str()), ("ana", "Ana Ríos"));
    assert!(hash.starts_with("$2"), "not a bcrypt hash: {hash}");
    let (msg_id, body): (i64, String) = conn
        .query_row("SELECT id, body FROM messages", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .expect("one message");
    assert_eq!((msg_id, body.as_str()), (id, "hola"));
    drop(conn);
    // The password is stored only as its hash, nowhere in the files.
    for entry in std::fs::read_dir(server.dir.path()).expect("the directory") {
        let path = entry.expect("an entry").path();
        let bytes = std::fs::read(&path).expect("read a file");
        assert!(
            !bytes.windows(8).any(|w| w == b"Zq8-stor"),
            "the password is in {}",
            path.display()
        );
    }
}

#[test]
fn an_empty_file_is_a_new_database() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("empty.db");
    std::fs::write(&db, b"").expect("an empty file");
    let server = TestServer::start_in(dir, db, &[]);
    let mut ana = server.connect();
    ana.register("ana", "secreto123", "Ana");
    ana.say("hola");
}

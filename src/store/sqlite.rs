//! The SQLite backend: `chat.db.sql` applied at start, WAL mode, a small
//! pool of read connections for sessions and one write connection for the
//! journal.
//!
//! Every statement uses bound parameters and is prepared once per
//! connection (`prepare_cached`). This module must never format values into
//! SQL text.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode as SqliteCode, OpenFlags, OptionalExtension, params};

use super::{
    Account, Appended, CreateAccountError, MessageId, Millis, NewAccount, NewMessage, Store, StoreError, StoreWriter,
    StoredMessage,
};

/// The schema, kept at the top of the repository where people look for it.
const SCHEMA: &str = include_str!("../../chat.db.sql");
/// `PRAGMA user_version` of the schema above; bump it with a migration.
pub const SCHEMA_VERSION: i64 = 1;
/// `PRAGMA application_id` marking a file as charla's ("chla").
pub const APPLICATION_ID: i64 = 0x6368_6c61;
/// How long a connection waits for a lock held by another before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle read connections kept for reuse; more are opened under load and
/// closed when returned to a full pool.
const READ_POOL: usize = 8;

/// SQLite's `synchronous` level for the write connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync at every commit: acknowledged messages survive a power cut.
    Full,
    /// fsync at WAL checkpoints only: acknowledged messages survive a crash
    /// or `kill -9` of the server, not a power cut of the machine.
    Normal,
}

/// A charla database in one SQLite file.
pub struct SqliteStore {
    /// The database file.
    path: PathBuf,
    /// `synchronous` level for the writer.
    sync: SyncMode,
    /// Idle read-only connections, taken for one query at a time.
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, checks it is a
    /// charla database and applies the schema.
    ///
    /// # Errors
    /// [`StoreError::NotCharla`] for a file that is not SQLite or holds
    /// another program's tables, [`StoreError::TooNew`] for a newer schema,
    /// [`StoreError::Sqlite`] when the file cannot be opened or written.
    pub fn open(path: &Path, sync: SyncMode) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let shown = path.display().to_string();
        let not_charla = |why: &str| StoreError::NotCharla {
            path: shown.clone(),
            why: why.to_string(),
        };
        let app_id: i64 = match conn.query_row("PRAGMA application_id", [], |r| r.get(0)) {
            Ok(id) => id,
            Err(e) if e.sqlite_error_code() == Some(SqliteCode::NotADatabase) => {
                return Err(not_charla("it is not an SQLite file"));
            }
            Err(e) => return Err(e.into()),
        };
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if app_id == 0 {
            let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            if tables > 0 {
                return Err(not_charla("it holds tables of another program"));
            }
        } else if app_id != APPLICATION_ID {
            return Err(not_charla("it belongs to another application"));
        } else if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: shown,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let mut conn = conn;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            sync,
            readers: Mutex::new(vec![conn]),
        })
    }

    /// Runs `query` on a pooled read connection.
    fn with_reader<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = query(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
        Ok(result?)
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

impl Store for SqliteStore {
    fn find_account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.with_reader(|conn| {
            conn.prepare_cached("SELECT id, username, full_name, password_hash FROM users WHERE username = ?1")?
                .query_row(params![username], |row| {
                    Ok(Account {
                        id: row.get(0)?,
                        username: row.get(1)?,
                        full_name: row.get(2)?,
                        password_hash: row.get(3)?,
                    })
                })
                .optional()
        })
    }

    fn history(&self, limit: u32, before: Option<MessageId>) -> Result<Vec<StoredMessage>, StoreError> {
        let mut messages = self.with_reader(|conn| {
            conn.prepare_cached(
                "SELECT m.id, m.ts_ms, u.username, m.body FROM messages m JOIN users u ON u.id = m.user_id \
                 WHERE m.id < ?1 ORDER BY m.id DESC LIMIT ?2",
            )?
            .query_map(params![before.unwrap_or(MessageId::MAX), limit], |row| {
                Ok(StoredMessage {
                    id: row.get(0)?,
                    ts: row.get(1)?,
                    username: row.get(2)?,
                    body: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        messages.reverse();
        Ok(messages)
    }

    fn open_writer(&self) -> Result<Box<dyn StoreWriter>, StoreError> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let level = match self.sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", level)?;
        Ok(Box::new(SqliteWriter { conn }))
    }
}

/// The write connection.
struct SqliteWriter {
    /// Opened by [`SqliteStore::open_writer`], used only by the journal.
    conn: Connection,
}

impl StoreWriter for SqliteWriter {
    fn create_account(&mut self, account: &NewAccount, now: Millis) -> Result<Account, CreateAccountError> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO users (username, full_name, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![account.username, account.full_name, account.password_hash, now])
            });
        match inserted {
            Ok(_) => Ok(Account {
                id: self.conn.last_insert_rowid(),
                username: account.username.clone(),
                full_name: account.full_name.clone(),
                password_hash: account.password_hash.clone(),
            }),
            Err(e) if e.sqlite_error_code() == Some(SqliteCode::ConstraintViolation) => {
                Err(CreateAccountError::UserExists)
            }
            Err(e) => Err(StoreError::from(e).into()),
        }
    }

    fn append(&mut self, batch: &[NewMessage], ts: Millis) -> Result<Vec<Appended>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut find_tag = tx.prepare_cached("SELECT id, ts_ms FROM messages WHERE user_id = ?1 AND tag = ?2")?;
            let mut insert =
                tx.prepare_cached("INSERT INTO messages (user_id, body, ts_ms, tag) VALUES (?1, ?2, ?3, ?4)")?;
            for message in batch {
                if let Some(tag) = &message.tag {
                    let earlier = find_tag
                        .query_row(params![message.user_id, tag], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()?;
                    if let Some((id, ts)) = earlier {
                        outcomes.push(Appended::Duplicate { id, ts });
                        continue;
                    }
                }
                insert.execute(params![message.user_id, message.body, ts, message.tag])?;
                outcomes.push(Appended::Stored {
                    id: tx.last_insert_rowid(),
                    ts,
                });
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("chat.db"), SyncMode::Normal).unwrap();
        (dir, store)
    }

    fn account(name: &str) -> NewAccount {
        NewAccount {
            username: name.into(),
            full_name: format!("{name} full"),
            password_hash: "$2b$hash".into(),
        }
    }

    #[test]
    fn accounts_are_unique_regardless_of_case() {
        let (_dir, store) = fresh();
        let mut writer = store.open_writer().unwrap();
        let ana = writer.create_account(&account("Ana"), 1).unwrap();
        assert!(matches!(
            writer.create_account(&account("ana"), 2),
            Err(CreateAccountError::UserExists)
        ));
        let found = store.find_account("ANA").unwrap().unwrap();
        assert_eq!(found, ana);
        assert_eq!(found.username, "Ana");
        assert!(store.find_account("nobody").unwrap().is_none());
    }

    #[test]
    fn tags_are_unique_per_account_including_within_a_batch() {
        let (_dir, store) = fresh();
        let mut writer = store.open_writer().unwrap();
        let ana = writer.create_account(&account("ana"), 1).unwrap();
        let juan = writer.create_account(&account("juan"), 1).unwrap();
        let say = |user_id, tag: Option<&str>, body: &str| NewMessage {
            user_id,
            body: body.into(),
            tag: tag.map(Into::into),
        };
        let out = writer
            .append(
                &[
                    say(ana.id, Some("t"), "a"),
                    say(ana.id, Some("t"), "again"),
                    say(juan.id, Some("t"), "j"),
                    say(ana.id, None, "b"),
                ],
                10,
            )
            .unwrap();
        let Appended::Stored { id: first, .. } = out[0] else {
            panic!("first must be stored: {out:?}")
        };
        assert_eq!(out[1], Appended::Duplicate { id: first, ts: 10 });
        assert!(matches!(out[2], Appended::Stored { .. }));
        assert!(matches!(out[3], Appended::Stored { .. }));
        let later = writer.append(&[say(ana.id, Some("t"), "late")], 20).unwrap();
        assert_eq!(later, vec![Appended::Duplicate { id: first, ts: 10 }]);
        let history = store.history(10, None).unwrap();
        let bodies: Vec<_> = history.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["a", "j", "b"]);
    }

    #[test]
    fn history_pages_backwards_oldest_first() {
        let (_dir, store) = fresh();
        let mut writer = store.open_writer().unwrap();
        let ana = writer.create_account(&account("ana"), 1).unwrap();
        let batch: Vec<_> = (0..5)
            .map(|i| NewMessage {
                user_id: ana.id,
                body: format!("m{i}"),
                tag: None,
            })
            .collect();
        writer.append(&batch, 5).unwrap();
        let last2 = store.history(2, None).unwrap();
        assert_eq!(last2.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["m3", "m4"]);
        let before = store.history(2, Some(last2[0].id)).unwrap();
        assert_eq!(before.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
        assert_eq!(before[0].username, "ana");
    }

    #[test]
    fn reopening_keeps_data_and_refuses_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        {
            let store = SqliteStore::open(&path, SyncMode::Full).unwrap();
            store.open_writer().unwrap().create_account(&account("ana"), 1).unwrap();
        }
        let store = SqliteStore::open(&path, SyncMode::Full).unwrap();
        assert!(store.find_account("ana").unwrap().is_some());

        let garbage = dir.path().join("garbage.db");
        std::fs::write(
            &garbage,
            b"this is not sqlite, just text that is long enough to be a header..",
        )
        .unwrap();
        assert!(matches!(
            SqliteStore::open(&garbage, SyncMode::Full),
            Err(StoreError::NotCharla { .. })
        ));

        let foreign = dir.path().join("lab.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE users (id INTEGER, name TEXT)")
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&foreign, SyncMode::Full),
            Err(StoreError::NotCharla { .. })
        ));

        let newer = dir.path().join("newer.db");
        drop(SqliteStore::open(&newer, SyncMode::Full).unwrap());
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&newer, SyncMode::Full),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}

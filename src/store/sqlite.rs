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
    Account, AccountId, Appended, Conversation, CreateAccountError, Destination, Joined, MessageId, Millis, NewAccount,
    NewMessage, Parted, Place, RoomId, Store, StoreError, StoreWriter, StoredMessage, StoredRoom, Window,
};

/// The schema, kept at the top of the repository where people look for it.
const SCHEMA: &str = include_str!("../../chat.db.sql");
/// `PRAGMA user_version` of the schema above; bump it with a migration.
pub const SCHEMA_VERSION: i64 = 2;
/// What turns a database of an older version into one the schema file can
/// complete: `(version reached, statements)`, in order. Only changes that
/// `CREATE ... IF NOT EXISTS` cannot make belong here.
const MIGRATIONS: &[(i64, &str)] = &[(
    2,
    "ALTER TABLE messages ADD COLUMN room_id INTEGER REFERENCES rooms(id);
     ALTER TABLE messages ADD COLUMN to_user INTEGER REFERENCES users(id);",
)];
/// The columns every message query reads, in the order [`message_row`]
/// expects them.
const MESSAGE_COLUMNS: &str = "SELECT m.id, m.ts_ms, m.user_id, u.username, m.body, m.room_id, r.name, m.to_user, \
     t.username FROM messages m JOIN users u ON u.id = m.user_id LEFT JOIN rooms r ON r.id = m.room_id \
     LEFT JOIN users t ON t.id = m.to_user";
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
        // A fresh file (version 0) gets the whole schema at once; an older
        // one is migrated step by step first.
        if version >= 1 {
            for (reached, statements) in MIGRATIONS {
                if version < *reached {
                    tx.execute_batch(statements)?;
                }
            }
        }
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

/// Reads one row of [`MESSAGE_COLUMNS`].
fn message_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let room: Option<RoomId> = row.get(5)?;
    let to_user: Option<AccountId> = row.get(7)?;
    let place = match (room, to_user) {
        (Some(id), _) => Place::Room {
            id,
            name: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
        },
        (None, Some(id)) => Place::Account {
            id,
            username: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
        },
        (None, None) => Place::Lobby,
    };
    Ok(StoredMessage {
        id: row.get(0)?,
        ts: row.get(1)?,
        user_id: row.get(2)?,
        username: row.get(3)?,
        body: row.get(4)?,
        place,
    })
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

    fn find_tag(&self, user_id: AccountId, tag: &str) -> Result<Option<(MessageId, Millis)>, StoreError> {
        self.with_reader(|conn| {
            conn.prepare_cached("SELECT id, ts_ms FROM messages WHERE user_id = ?1 AND tag = ?2")?
                .query_row(params![user_id, tag], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
    }

    fn history_window(
        &self,
        conversation: Conversation,
        limit: u32,
        window: &Window,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let (tail, values) = super::window_query(conversation, limit, window, |n| format!("?{n}"));
        let mut messages = self.with_reader(|conn| {
            conn.prepare_cached(&format!("{MESSAGE_COLUMNS} {tail}"))?
                .query_map(rusqlite::params_from_iter(values), message_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        if window.newest {
            messages.reverse();
        }
        Ok(messages)
    }

    fn sync(&self, reader: AccountId, after: MessageId, limit: u32) -> Result<Vec<StoredMessage>, StoreError> {
        self.with_reader(|conn| {
            let sql = format!(
                "{MESSAGE_COLUMNS} WHERE m.id > ?2 AND ((m.room_id IS NULL AND m.to_user IS NULL) \
                 OR m.room_id IN (SELECT room_id FROM memberships WHERE user_id = ?1) \
                 OR m.to_user = ?1 OR (m.user_id = ?1 AND m.to_user IS NOT NULL)) ORDER BY m.id LIMIT ?3"
            );
            conn.prepare_cached(&sql)?
                .query_map(params![reader, after, limit], message_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    fn last_message_id(&self) -> Result<MessageId, StoreError> {
        self.with_reader(|conn| conn.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |row| row.get(0)))
    }

    fn count_accounts(&self) -> Result<u64, StoreError> {
        let count: i64 = self.with_reader(|conn| conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0)))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn live_rooms(&self) -> Result<Vec<StoredRoom>, StoreError> {
        self.with_reader(|conn| {
            let mut rooms: Vec<StoredRoom> = conn
                .prepare_cached("SELECT id, name FROM rooms WHERE ended_ms IS NULL ORDER BY id")?
                .query_map([], |row| {
                    Ok(StoredRoom {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        members: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut members = conn.prepare_cached(
                "SELECT m.room_id, m.user_id FROM memberships m JOIN rooms r ON r.id = m.room_id \
                 WHERE r.ended_ms IS NULL ORDER BY m.room_id",
            )?;
            let pairs = members.query_map([], |row| Ok((row.get::<_, RoomId>(0)?, row.get::<_, AccountId>(1)?)))?;
            for pair in pairs {
                let (room, user) = pair?;
                if let Ok(i) = rooms.binary_search_by_key(&room, |r| r.id) {
                    rooms[i].members.push(user);
                }
            }
            Ok(rooms)
        })
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
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (user_id, body, ts_ms, tag, room_id, to_user) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
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
                let (room, to_user) = match message.to {
                    Destination::Lobby => (None, None),
                    Destination::Room(room) => (Some(room), None),
                    Destination::Account(account) => (None, Some(account)),
                };
                insert.execute(params![message.user_id, message.body, ts, message.tag, room, to_user])?;
                outcomes.push(Appended::Stored {
                    id: tx.last_insert_rowid(),
                    ts,
                });
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }

    fn join(&mut self, user_id: AccountId, name: &str, ts: Millis, _: u64) -> Result<Joined, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let live = tx
            .prepare_cached("SELECT id, name FROM rooms WHERE name = ?1 COLLATE NOCASE AND ended_ms IS NULL")?
            .query_row(params![name], |row| {
                Ok((row.get::<_, RoomId>(0)?, row.get::<_, String>(1)?))
            })
            .optional()?;
        let (room, name, created) = match live {
            Some((room, name)) => (room, name, false),
            None => {
                tx.prepare_cached("INSERT INTO rooms (name, created_by, created_ms) VALUES (?1, ?2, ?3)")?
                    .execute(params![name, user_id, ts])?;
                (tx.last_insert_rowid(), name.to_string(), true)
            }
        };
        let added = tx
            .prepare_cached("INSERT OR IGNORE INTO memberships (room_id, user_id, joined_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![room, user_id, ts])?;
        tx.commit()?;
        Ok(Joined {
            room,
            name,
            created,
            already: added == 0,
            position: 0,
        })
    }

    fn part(&mut self, user_id: AccountId, room: RoomId, ts: Millis, _: u64) -> Result<Parted, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let removed = tx
            .prepare_cached("DELETE FROM memberships WHERE room_id = ?1 AND user_id = ?2")?
            .execute(params![room, user_id])?;
        if removed == 0 {
            return Ok(Parted::NotMember);
        }
        let left: i64 = tx
            .prepare_cached("SELECT count(*) FROM memberships WHERE room_id = ?1")?
            .query_row(params![room], |row| row.get(0))?;
        let ended = left == 0;
        if ended {
            tx.prepare_cached("UPDATE rooms SET ended_ms = ?2 WHERE id = ?1")?
                .execute(params![room, ts])?;
        }
        tx.commit()?;
        Ok(Parted::Left { ended, position: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Bound;

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
            origin: 0,
            body: body.into(),
            tag: tag.map(Into::into),
            to: Destination::Lobby,
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
        let history = store.history(Conversation::Lobby, 10, None).unwrap();
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
                origin: 0,
                body: format!("m{i}"),
                tag: None,
                to: Destination::Lobby,
            })
            .collect();
        writer.append(&batch, 5).unwrap();
        let last2 = store.history(Conversation::Lobby, 2, None).unwrap();
        assert_eq!(last2.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["m3", "m4"]);
        let before = store.history(Conversation::Lobby, 2, Some(last2[0].id)).unwrap();
        assert_eq!(before.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
        assert_eq!(before[0].username, "ana");
    }

    #[test]
    fn history_windows_take_either_end_of_a_range_by_id_or_time() {
        let (_dir, store) = fresh();
        let mut writer = store.open_writer().unwrap();
        let ana = writer.create_account(&account("ana"), 1).unwrap();
        for (i, ts) in [(0, 100), (1, 200), (2, 200), (3, 300), (4, 400)] {
            let message = NewMessage {
                user_id: ana.id,
                origin: 0,
                body: format!("m{i}"),
                tag: None,
                to: Destination::Lobby,
            };
            writer.append(&[message], ts).unwrap();
        }
        let all = store.history(Conversation::Lobby, 10, None).unwrap();
        let id = |i: usize| all[i].id;
        let read = |after, before, newest, limit| {
            let window = Window { after, before, newest };
            let found = store.history_window(Conversation::Lobby, limit, &window).unwrap();
            found.into_iter().map(|m| m.body).collect::<Vec<_>>()
        };
        assert_eq!(read(Some(Bound::Id(id(1))), None, false, 2), ["m2", "m3"]);
        assert_eq!(read(Some(Bound::Id(id(1))), None, true, 2), ["m3", "m4"]);
        assert_eq!(
            read(Some(Bound::Ts(100)), Some(Bound::Ts(300)), false, 10),
            ["m1", "m2"]
        );
        assert_eq!(read(None, Some(Bound::Ts(300)), true, 1), ["m2"]);
        assert_eq!(
            read(Some(Bound::Id(id(0))), Some(Bound::Id(id(4))), true, 10),
            ["m1", "m2", "m3"]
        );
        assert!(read(Some(Bound::Id(id(4))), None, false, 10).is_empty());
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

    /// charla's schema before rooms (user_version 1), as a database made by
    /// that version holds it.
    const SCHEMA_V1: &str = r#"-- charla's SQLite schema, version 1 (PRAGMA user_version = 1).
-- Applied by charla-server at every start; every statement is idempotent.
-- The table names are the original lab's: users and messages.

CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    -- Unique regardless of case; usernames are ASCII, so NOCASE is exact.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    full_name     TEXT    NOT NULL,
    -- bcrypt hash ($2b$...); the password itself is never stored.
    password_hash TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS messages (
    -- Message ids only grow: rows are never deleted, so the rowid alias
    -- gives strictly increasing ids in storage order.
    id      INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    body    TEXT    NOT NULL,
    -- Milliseconds since the Unix epoch when the message was stored.
    ts_ms   INTEGER NOT NULL,
    -- The client's @TAG, the idempotency token of PROTOCOL.md 5.3.
    tag     TEXT
);

-- One message per (account, tag): the idempotency rule, enforced by SQLite.
CREATE UNIQUE INDEX IF NOT EXISTS messages_user_tag
    ON messages(user_id, tag) WHERE tag IS NOT NULL;
"#;

    fn message(user_id: AccountId, body: &str, to: Destination) -> NewMessage {
        NewMessage {
            user_id,
            origin: 0,
            body: body.into(),
            tag: None,
            to,
        }
    }

    fn bodies(messages: &[StoredMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.body.as_str()).collect()
    }

    #[test]
    fn a_version_1_database_keeps_everything_and_gains_rooms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO users (username, full_name, password_hash, created_ms) VALUES ('ana', 'Ana', '$2b$x', 1);
                 INSERT INTO messages (user_id, body, ts_ms, tag) VALUES (1, 'viejo uno', 2, 't1'), (1, 'viejo dos', 3, NULL);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, SyncMode::Normal).unwrap();
        let version: i64 = store
            .with_reader(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let lobby = store.history(Conversation::Lobby, 10, None).unwrap();
        assert_eq!(bodies(&lobby), ["viejo uno", "viejo dos"]);
        assert!(lobby.iter().all(|m| m.place == Place::Lobby));
        assert_eq!(store.find_tag(1, "t1").unwrap(), Some((1, 2)), "old tags still count");
        let mut writer = store.open_writer().unwrap();
        let joined = writer.join(1, "#Nueva", 5, 0).unwrap();
        assert!(joined.created);
        assert_eq!(store.live_rooms().unwrap().len(), 1);
        // Opening it again changes nothing.
        drop(writer);
        drop(store);
        let store = SqliteStore::open(&path, SyncMode::Normal).unwrap();
        assert_eq!(store.history(Conversation::Lobby, 10, None).unwrap().len(), 2);
        assert_eq!(store.live_rooms().unwrap()[0].members, [1]);
    }

    #[test]
    fn rooms_live_while_they_have_members_and_a_new_one_starts_empty() {
        let (_dir, store) = fresh();
        let mut writer = store.open_writer().unwrap();
        let ana = writer.create_account(&account("ana"), 1).unwrap();
        let bea = writer.create_account(&account("bea"), 1).unwrap();
        let first = writer.join(ana.id, "#Clase", 1, 0).unwrap();
        assert!(first.created && !first.already);
        let again = writer.join(bea.id, "#CLASE", 2, 0).unwrap();
        assert_eq!(
            (again.room, again.name.as_str(), again.created),
            (first.room, "#Clase", false)
        );
        assert!(writer.join(bea.id, "#clase", 3, 0).unwrap().already);
        writer
            .append(&[message(ana.id, "en clase", Destination::Room(first.room))], 4)
            .unwrap();
        assert_eq!(
            writer.part(ana.id, first.room, 5, 0).unwrap(),
            Parted::Left {
                ended: false,
                position: 0
            }
        );
        assert_eq!(writer.part(ana.id, first.room, 5, 0).unwrap(), Parted::NotMember);
        assert_eq!(
            writer.part(bea.id, first.room, 6, 0).unwrap(),
            Parted::Left {
                ended: true,
                position: 0
            }
        );
        assert!(store.live_rooms().unwrap().is_empty());
        let second = writer.join(bea.id, "#clase", 7, 0).unwrap();
        assert!(second.created && second.room != first.room);
        assert_eq!(second.name, "#clase");
        assert!(
            store
                .history(Conversation::Room(second.room), 10, None)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            bodies(&store.history(Conversation::Room(first.room), 10, None).unwrap()),
            ["en clase"]
        );
    }

    #[test]
    fn each_reader_syncs_only_what_it_may_read() {
        let (_dir, store) = fresh();
        let mut writer = store.open_writer().unwrap();
        let ana = writer.create_account(&account("ana"), 1).unwrap();
        let bea = writer.create_account(&account("bea"), 1).unwrap();
        let carla = writer.create_account(&account("carla"), 1).unwrap();
        let room = writer.join(ana.id, "#a", 1, 0).unwrap().room;
        writer
            .append(
                &[
                    message(ana.id, "lobby", Destination::Lobby),
                    message(ana.id, "sala", Destination::Room(room)),
                    message(ana.id, "a bea", Destination::Account(bea.id)),
                    message(bea.id, "a ana", Destination::Account(ana.id)),
                    message(carla.id, "nota", Destination::Account(carla.id)),
                ],
                2,
            )
            .unwrap();
        assert_eq!(
            bodies(&store.sync(ana.id, 0, 100).unwrap()),
            ["lobby", "sala", "a bea", "a ana"]
        );
        assert_eq!(
            bodies(&store.sync(bea.id, 0, 100).unwrap()),
            ["lobby", "a bea", "a ana"]
        );
        assert_eq!(bodies(&store.sync(carla.id, 0, 100).unwrap()), ["lobby", "nota"]);
        assert_eq!(bodies(&store.sync(ana.id, 2, 2).unwrap()), ["a bea", "a ana"]);
        let between = store.history(Conversation::Between(bea.id, ana.id), 10, None).unwrap();
        assert_eq!(bodies(&between), ["a bea", "a ana"]);
        assert_eq!(
            between[0].place,
            Place::Account {
                id: bea.id,
                username: "bea".into()
            }
        );
        let notes = store
            .history(Conversation::Between(carla.id, carla.id), 10, None)
            .unwrap();
        assert_eq!(bodies(&notes), ["nota"]);
        let in_room = store.history(Conversation::Room(room), 10, None).unwrap();
        assert_eq!(
            in_room[0].place,
            Place::Room {
                id: room,
                name: "#a".into()
            }
        );
        // After PART the room's messages are no longer the reader's.
        writer.part(ana.id, room, 3, 0).unwrap();
        assert_eq!(
            bodies(&store.sync(ana.id, 0, 100).unwrap()),
            ["lobby", "a bea", "a ana"]
        );
        assert_eq!(store.count_accounts().unwrap(), 3);
    }
}

//! The PostgreSQL backend: several charla nodes on one database.
//!
//! `chat.pg.sql` is applied at start inside a transaction holding an
//! advisory lock, so nodes starting together wait for each other. Writes
//! that must take their place in the one order of ids (messages, room
//! membership, presence) are single calls to server-side functions that
//! lock the counter row and commit before it is released: ids become
//! visible in the order they were handed out, and no lock is ever held
//! across a network round trip (docs/CLUSTER.md).
//!
//! Every query uses bound parameters. Connections come from a small pool;
//! one that fails is dropped and a new one is made on next use, so the
//! backend recovers by itself when the database comes back. Connecting and
//! every statement are bounded in time, so an unreachable database gives
//! `db-error` within seconds instead of a hang.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Row};

use super::{
    Account, AccountId, Appended, ClusterStore, Conversation, CreateAccountError, Destination, Joined, LogRow, Logged,
    MessageId, Millis, NewAccount, NewMessage, NodeRow, Parted, Place, RoomId, Store, StoreError, StoreWriter,
    StoredMessage, StoredOffer, StoredRoom, Window,
};

/// The schema, kept at the top of the repository beside SQLite's.
const SCHEMA: &str = include_str!("../../chat.pg.sql");
/// The `schema_version` of the schema above.
pub const SCHEMA_VERSION: i32 = 1;
/// The advisory lock taken while the schema is applied ("chla").
const SCHEMA_LOCK: i64 = 0x6368_6c61;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one statement may take (lock waits included): with connecting,
/// a command that needs an unreachable database fails within 5 s.
const STATEMENT_TIMEOUT_MS: u32 = 2500;
/// Idle connections kept for reuse.
const POOL: usize = 8;
/// The notification channel the functions announce new log entries on.
const CHANNEL: &str = "charla_log";
/// How long a node is live after it last showed itself.
const LIVE_FOR: &str = "10 seconds";

/// The columns every message query reads, in the order [`message_row`]
/// expects them.
const MESSAGE_COLUMNS: &str = "SELECT m.id, m.ts_ms, m.user_id, u.username, m.body, m.room_id, r.name, m.to_user, \
     t.username FROM messages m JOIN users u ON u.id = m.user_id LEFT JOIN rooms r ON r.id = m.room_id \
     LEFT JOIN users t ON t.id = m.to_user";

/// Whether `--db` names a PostgreSQL database.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// A charla database on a PostgreSQL server.
pub struct PgStore {
    /// How to connect (from the URL, with charla's timeouts).
    config: postgres::Config,
    /// Idle connections.
    pool: Mutex<Vec<Client>>,
    /// The dedicated connection that listens for log announcements.
    listener: Mutex<Option<Client>>,
    /// This process's node instance, stored with what it writes.
    instance: String,
}

impl PgStore {
    /// Connects to `url`, applies the schema and checks its version.
    /// `instance` identifies this process in what it writes.
    ///
    /// # Errors
    /// [`StoreError::Postgres`] when the database cannot be reached or the
    /// schema cannot be applied; [`StoreError::TooNew`] for a newer schema.
    pub fn open(url: &str, instance: &str) -> Result<PgStore, StoreError> {
        let mut config: postgres::Config = url.parse()?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_user_timeout(Duration::from_secs(3))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .application_name("charla-server")
            .options(&format!(
                "-c statement_timeout={STATEMENT_TIMEOUT_MS} -c client_min_messages=warning"
            ));
        let store = PgStore {
            config,
            pool: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
            instance: instance.to_string(),
        };
        let mut client = store.connect()?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        tx.batch_execute(SCHEMA)?;
        let version: i32 = tx
            .query_one("SELECT schema_version FROM charla_meta WHERE id = 1", &[])?
            .get(0);
        tx.commit()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: "the PostgreSQL database".into(),
                found: i64::from(version),
                supported: i64::from(SCHEMA_VERSION),
            });
        }
        store.pool().push(client);
        Ok(store)
    }

    fn connect(&self) -> Result<Client, StoreError> {
        Ok(self.config.connect(NoTls)?)
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Client>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `work` on a pooled connection. A connection that failed is
    /// dropped rather than returned, so the next call connects afresh.
    fn with_client<T>(&self, work: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T, StoreError> {
        let pooled = self.pool().pop();
        let mut client = match pooled {
            Some(client) if !client.is_closed() => client,
            _ => self.connect()?,
        };
        let result = work(&mut client);
        let healthy = !client.is_closed() && result.as_ref().err().is_none_or(|e| e.as_db_error().is_some());
        if healthy {
            let mut pool = self.pool();
            if pool.len() < POOL {
                pool.push(client);
            }
        }
        Ok(result?)
    }
}

/// Reads one row of [`MESSAGE_COLUMNS`].
fn message_row(row: &Row) -> StoredMessage {
    let room: Option<RoomId> = row.get(5);
    let to_user: Option<AccountId> = row.get(7);
    let place = match (room, to_user) {
        (Some(id), _) => Place::Room {
            id,
            name: row.get::<_, Option<String>>(6).unwrap_or_default(),
        },
        (None, Some(id)) => Place::Account {
            id,
            username: row.get::<_, Option<String>>(8).unwrap_or_default(),
        },
        (None, None) => Place::Lobby,
    };
    StoredMessage {
        id: row.get(0),
        ts: row.get(1),
        user_id: row.get(2),
        username: row.get(3),
        body: row.get(4),
        place,
    }
}

/// A count or position from the database as the unsigned number it is.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A connection id or position as PostgreSQL's bigint.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store for PgStore {
    fn find_account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.with_client(|c| {
            let row = c.query_opt(
                "SELECT id, username, full_name, password_hash FROM users WHERE lower(username) = lower($1)",
                &[&username],
            )?;
            Ok(row.map(|row| Account {
                id: row.get(0),
                username: row.get(1),
                full_name: row.get(2),
                password_hash: row.get(3),
            }))
        })
    }

    fn find_tag(&self, user_id: AccountId, tag: &str) -> Result<Option<(MessageId, Millis)>, StoreError> {
        self.with_client(|c| {
            let row = c.query_opt(
                "SELECT id, ts_ms FROM messages WHERE user_id = $1 AND tag = $2",
                &[&user_id, &tag],
            )?;
            Ok(row.map(|row| (row.get(0), row.get(1))))
        })
    }

    fn history_window(
        &self,
        conversation: Conversation,
        limit: u32,
        window: &Window,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let (tail, values) = super::window_query(conversation, limit, window, |n| format!("${n}"));
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let mut rows = self.with_client(|c| c.query(&format!("{MESSAGE_COLUMNS} {tail}"), &params))?;
        if window.newest {
            rows.reverse();
        }
        Ok(rows.iter().map(message_row).collect())
    }

    fn sync(&self, reader: AccountId, after: MessageId, limit: u32) -> Result<Vec<StoredMessage>, StoreError> {
        let limit = i64::from(limit);
        let rows = self.with_client(|c| {
            c.query(
                &format!(
                    "{MESSAGE_COLUMNS} WHERE m.id > $2 AND ((m.room_id IS NULL AND m.to_user IS NULL) \
                     OR m.room_id IN (SELECT room_id FROM memberships WHERE user_id = $1) \
                     OR m.to_user = $1 OR (m.user_id = $1 AND m.to_user IS NOT NULL)) ORDER BY m.id LIMIT $3"
                ),
                &[&reader, &after, &limit],
            )
        })?;
        Ok(rows.iter().map(message_row).collect())
    }

    fn last_message_id(&self) -> Result<MessageId, StoreError> {
        self.with_client(|c| Ok(c.query_one("SELECT coalesce(max(id), 0) FROM messages", &[])?.get(0)))
    }

    fn count_accounts(&self) -> Result<u64, StoreError> {
        self.with_client(|c| Ok(unsigned(c.query_one("SELECT count(*) FROM users", &[])?.get(0))))
    }

    fn live_rooms(&self) -> Result<Vec<StoredRoom>, StoreError> {
        self.with_client(live_rooms)
    }

    fn open_writer(&self) -> Result<Box<dyn StoreWriter>, StoreError> {
        Ok(Box::new(PgWriter {
            config: self.config.clone(),
            client: Some(self.connect()?),
            instance: self.instance.clone(),
        }))
    }
}

/// The live rooms and their members, on `client`.
fn live_rooms(client: &mut impl postgres::GenericClient) -> Result<Vec<StoredRoom>, postgres::Error> {
    let mut rooms: Vec<StoredRoom> = client
        .query("SELECT id, name FROM rooms WHERE ended_ms IS NULL ORDER BY id", &[])?
        .iter()
        .map(|row| StoredRoom {
            id: row.get(0),
            name: row.get(1),
            members: Vec::new(),
        })
        .collect();
    let members = client.query(
        "SELECT m.room_id, m.user_id FROM memberships m JOIN rooms r ON r.id = m.room_id \
         WHERE r.ended_ms IS NULL ORDER BY m.room_id",
        &[],
    )?;
    for row in members {
        let (room, user): (RoomId, AccountId) = (row.get(0), row.get(1));
        if let Ok(i) = rooms.binary_search_by_key(&room, |r| r.id) {
            rooms[i].members.push(user);
        }
    }
    Ok(rooms)
}

/// The journal's connection.
struct PgWriter {
    /// How to reconnect.
    config: postgres::Config,
    /// The connection, `None` after one failed until the next reconnect.
    client: Option<Client>,
    /// This node instance, stored with every message.
    instance: String,
}

impl PgWriter {
    /// The connection, reconnecting if the last one failed.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.config.connect(NoTls)?);
        }
        self.client.as_mut().ok_or(StoreError::Stopped)
    }

    /// Drops the connection after a failure that was not the database's
    /// answer (it may be broken).
    fn check<T>(&mut self, result: Result<T, postgres::Error>) -> Result<T, StoreError> {
        if let Err(e) = &result
            && e.as_db_error().is_none()
        {
            self.client = None;
        }
        Ok(result?)
    }
}

impl StoreWriter for PgWriter {
    fn create_account(&mut self, account: &NewAccount, now: Millis) -> Result<Account, CreateAccountError> {
        let client = self.client()?;
        let inserted = client.query_one(
            "INSERT INTO users (username, full_name, password_hash, created_ms) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&account.username, &account.full_name, &account.password_hash, &now],
        );
        match inserted {
            Ok(row) => Ok(Account {
                id: row.get(0),
                username: account.username.clone(),
                full_name: account.full_name.clone(),
                password_hash: account.password_hash.clone(),
            }),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(CreateAccountError::UserExists),
            Err(e) => Err(self.check::<()>(Err(e)).map_or_else(CreateAccountError::Store, |()| {
                CreateAccountError::Store(StoreError::Stopped)
            })),
        }
    }

    fn append(&mut self, batch: &[NewMessage], ts: Millis) -> Result<Vec<Appended>, StoreError> {
        // A tag used twice in one batch is stored once: later uses are
        // answered from the first (the function cannot meet one row twice).
        let mut first_of: Vec<Option<usize>> = Vec::with_capacity(batch.len());
        let mut sent: Vec<usize> = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            let earlier = message.tag.as_ref().and_then(|tag| {
                sent.iter().copied().find(|&j| {
                    let other = &batch[j];
                    other.user_id == message.user_id && other.tag.as_ref() == Some(tag)
                })
            });
            if earlier.is_none() {
                sent.push(i);
            }
            first_of.push(earlier);
        }
        let users: Vec<i64> = sent.iter().map(|&i| batch[i].user_id).collect();
        let bodies: Vec<&str> = sent.iter().map(|&i| batch[i].body.as_str()).collect();
        let tags: Vec<Option<&str>> = sent.iter().map(|&i| batch[i].tag.as_deref()).collect();
        let (rooms, to): (Vec<Option<i64>>, Vec<Option<i64>>) = sent
            .iter()
            .map(|&i| match batch[i].to {
                Destination::Lobby => (None, None),
                Destination::Room(room) => (Some(room), None),
                Destination::Account(account) => (None, Some(account)),
            })
            .unzip();
        let conns: Vec<i64> = sent.iter().map(|&i| signed(batch[i].origin)).collect();
        let instance = self.instance.clone();
        let client = self.client()?;
        let rows = client.query(
            "SELECT ord, id, ts_ms, fresh FROM charla_append($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&users, &bodies, &tags, &rooms, &to, &ts, &instance, &conns],
        );
        let rows = self.check(rows)?;
        if rows.len() != sent.len() {
            return Err(StoreError::Incompatible(format!(
                "charla_append answered {} rows for {} messages",
                rows.len(),
                sent.len()
            )));
        }
        let mut fresh = rows.iter().map(|row| {
            let (id, ts, stored): (i64, i64, bool) = (row.get(1), row.get(2), row.get(3));
            if stored {
                Appended::Stored { id, ts }
            } else {
                Appended::Duplicate { id, ts }
            }
        });
        let mut outcomes: Vec<Appended> = Vec::with_capacity(batch.len());
        for earlier in &first_of {
            let outcome = match earlier {
                None => fresh.next().ok_or(StoreError::Stopped)?,
                Some(j) => match outcomes[*j] {
                    Appended::Stored { id, ts } | Appended::Duplicate { id, ts } => Appended::Duplicate { id, ts },
                },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    fn join(&mut self, user_id: AccountId, name: &str, ts: Millis, origin: u64) -> Result<Joined, StoreError> {
        let instance = self.instance.clone();
        let origin = signed(origin);
        let client = self.client()?;
        let row = client.query_one(
            "SELECT room, name, created, already, log_id FROM charla_join($1, $2, $3, $4, $5)",
            &[&user_id, &name, &ts, &instance, &origin],
        );
        let row = self.check(row)?;
        Ok(Joined {
            room: row.get(0),
            name: row.get(1),
            created: row.get(2),
            already: row.get(3),
            position: unsigned(row.get(4)),
        })
    }

    fn part(&mut self, user_id: AccountId, room: RoomId, ts: Millis, origin: u64) -> Result<Parted, StoreError> {
        let instance = self.instance.clone();
        let origin = signed(origin);
        let client = self.client()?;
        let row = client.query_one(
            "SELECT was_member, ended, log_id FROM charla_part($1, $2, $3, $4, $5)",
            &[&user_id, &room, &ts, &instance, &origin],
        );
        let row = self.check(row)?;
        if row.get::<_, bool>(0) {
            Ok(Parted::Left {
                ended: row.get(1),
                position: unsigned(row.get(2)),
            })
        } else {
            Ok(Parted::NotMember)
        }
    }
}

impl ClusterStore for PgStore {
    fn register_node(&self, name: &str, instance: &str) -> Result<bool, StoreError> {
        self.with_client(|c| {
            let claimed = c.query_opt(
                &format!(
                    "INSERT INTO nodes (name, instance, started_at, seen_at) VALUES ($1, $2, now(), now()) \
                     ON CONFLICT (name) DO UPDATE SET instance = EXCLUDED.instance, started_at = now(), seen_at = now(), \
                     stopped = false WHERE nodes.stopped OR nodes.seen_at < now() - interval '{LIVE_FOR}' RETURNING name"
                ),
                &[&name, &instance],
            )?;
            Ok(claimed.is_some())
        })
    }

    fn heartbeat(&self, name: &str, instance: &str) -> Result<bool, StoreError> {
        self.with_client(|c| {
            let updated = c.execute(
                "UPDATE nodes SET seen_at = now() WHERE name = $1 AND instance = $2 AND NOT stopped",
                &[&name, &instance],
            )?;
            Ok(updated == 1)
        })
    }

    fn stop_node(&self, name: &str, instance: &str) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute(
                "UPDATE nodes SET stopped = true WHERE name = $1 AND instance = $2",
                &[&name, &instance],
            )?;
            c.query_one("SELECT charla_sessions_end($1, NULL)", &[&instance])?;
            Ok(())
        })
    }

    fn reap(&self, dead_after: Duration) -> Result<u32, StoreError> {
        let seconds = dead_after.as_secs_f64();
        self.with_client(|c| {
            let ended: i32 = c
                .query_one("SELECT charla_reap(make_interval(secs => $1))", &[&seconds])?
                .get(0);
            Ok(u32::try_from(ended).unwrap_or(0))
        })
    }

    fn live_nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.with_client(|c| {
            let rows = c.query(
                &format!(
                    "SELECT n.name, (SELECT count(*) FROM sessions s WHERE s.instance = n.instance), \
                     greatest(0, (extract(epoch from now() - n.seen_at) * 1000))::bigint \
                     FROM nodes n WHERE NOT n.stopped AND n.seen_at > now() - interval '{LIVE_FOR}' ORDER BY n.name"
                ),
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|row| NodeRow {
                    name: row.get(0),
                    sessions: unsigned(row.get(1)),
                    seen_ms_ago: unsigned(row.get(2)),
                })
                .collect())
        })
    }

    fn session_start(&self, instance: &str, conn: u64, user: AccountId) -> Result<u64, StoreError> {
        let conn = signed(conn);
        self.with_client(|c| {
            let position: i64 = c
                .query_one("SELECT charla_session_start($1, $2, $3)", &[&instance, &conn, &user])?
                .get(0);
            Ok(unsigned(position))
        })
    }

    fn session_end(&self, instance: &str, conn: u64) -> Result<(), StoreError> {
        let conn = signed(conn);
        self.with_client(|c| {
            c.query_one("SELECT charla_sessions_end($1, $2)", &[&instance, &conn])?;
            Ok(())
        })
    }

    fn online(&self, among: Option<&[AccountId]>) -> Result<Vec<(String, String)>, StoreError> {
        let among: Option<Vec<i64>> = among.map(<[i64]>::to_vec);
        self.with_client(|c| {
            let rows = c.query(
                &format!(
                    "SELECT DISTINCT u.username, u.full_name, lower(u.username) FROM sessions s \
                     JOIN users u ON u.id = s.user_id JOIN nodes n ON n.instance = s.instance \
                     WHERE NOT n.stopped AND n.seen_at > now() - interval '{LIVE_FOR}' \
                     AND ($1::bigint[] IS NULL OR s.user_id = ANY($1)) ORDER BY lower(u.username)"
                ),
                &[&among],
            )?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn snapshot(&self) -> Result<(u64, Vec<StoredRoom>), StoreError> {
        self.with_client(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let position: i64 = tx
                .query_one("SELECT last_id FROM charla_meta WHERE id = 1", &[])?
                .get(0);
            let rooms = live_rooms(&mut tx)?;
            tx.commit()?;
            Ok((unsigned(position), rooms))
        })
    }

    fn log_after(&self, after: u64, limit: u32) -> Result<Vec<LogRow>, StoreError> {
        let after = signed(after);
        let limit = i64::from(limit);
        let rows = self.with_client(|c| {
            c.query(
                // Each table's next rows by its primary key first, then the
                // names: the plan stays an index range scan whatever the
                // planner believes of the tables' sizes (with no
                // statistics yet it read all of `messages`, 18 ms a poll
                // at 100,000 messages, three polls per commit).
                "SELECT log.id, log.kind, log.user_id, u.username, log.body, log.ts_ms, log.room_id, r.name, \
                        log.to_user, t.username AS to_name, log.node, log.conn FROM ( \
                   (SELECT id, 'message'::text AS kind, user_id, body, ts_ms, room_id, to_user, node, conn \
                    FROM messages WHERE id > $1 ORDER BY id LIMIT $2) \
                 UNION ALL \
                   (SELECT id, kind, user_id, note, NULL::bigint, room_id, NULL::bigint, node, conn \
                    FROM events WHERE id > $1 ORDER BY id LIMIT $2) \
                 ) AS log JOIN users u ON u.id = log.user_id LEFT JOIN rooms r ON r.id = log.room_id \
                 LEFT JOIN users t ON t.id = log.to_user ORDER BY log.id LIMIT $2",
                &[&after, &limit],
            )
        })?;
        rows.iter().map(log_row).collect()
    }

    fn offer_add(&self, offer: &StoredOffer) -> Result<(), StoreError> {
        let (size, conn) = (signed(offer.size), signed(offer.conn));
        self.with_client(|c| {
            c.execute(
                "INSERT INTO offers (id, instance, conn, owner_id, size, sha256, name, key, endpoint) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &offer.id,
                    &offer.instance,
                    &conn,
                    &offer.owner_id,
                    &size,
                    &offer.sha256,
                    &offer.name,
                    &offer.key,
                    &offer.endpoint,
                ],
            )?;
            Ok(())
        })
    }

    fn offer_get(&self, id: &str) -> Result<Option<StoredOffer>, StoreError> {
        self.with_client(|c| {
            let row = c.query_opt(&format!("{OFFER_COLUMNS} WHERE o.id = $1 AND {LIVE_OFFER}"), &[&id])?;
            Ok(row.as_ref().map(offer_row))
        })
    }

    fn offer_remove(&self, id: &str) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute("DELETE FROM offers WHERE id = $1", &[&id])?;
            Ok(())
        })
    }

    fn offer_search(&self, query: &str, limit: usize) -> Result<Vec<StoredOffer>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pattern = format!(
            "%{}%",
            query
                .to_ascii_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        self.with_client(|c| {
            let rows = c.query(
                &format!(
                    "{OFFER_COLUMNS} WHERE {LIVE_OFFER} AND lower(o.name) LIKE $1 \
                     ORDER BY lower(o.name) COLLATE \"C\", o.id COLLATE \"C\" LIMIT $2"
                ),
                &[&pattern, &limit],
            )?;
            Ok(rows.iter().map(offer_row).collect())
        })
    }

    fn offer_count(&self, instance: &str, conn: u64) -> Result<usize, StoreError> {
        let conn = signed(conn);
        self.with_client(|c| {
            let count: i64 = c
                .query_one(
                    "SELECT count(*) FROM offers WHERE instance = $1 AND conn = $2",
                    &[&instance, &conn],
                )?
                .get(0);
            Ok(usize::try_from(count).unwrap_or(0))
        })
    }

    fn offers_set_endpoint(&self, instance: &str, conn: u64, endpoint: Option<&str>) -> Result<(), StoreError> {
        let conn = signed(conn);
        self.with_client(|c| {
            c.execute(
                "UPDATE offers SET endpoint = $3 WHERE instance = $1 AND conn = $2",
                &[&instance, &conn, &endpoint],
            )?;
            Ok(())
        })
    }

    fn notify_relay(
        &self,
        instance: &str,
        conn: u64,
        owner: AccountId,
        file: &str,
        ticket: &str,
        addr: &str,
    ) -> Result<(), StoreError> {
        let conn = signed(conn);
        let note = format!("{file} {ticket} {addr}");
        self.with_client(|c| {
            c.query_one(
                "SELECT charla_notify_relay($1, $2, $3, $4)",
                &[&instance, &conn, &owner, &note],
            )?;
            Ok(())
        })
    }

    fn wait_for_log(&self, timeout: Duration) -> Result<bool, StoreError> {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.as_ref().is_none_or(Client::is_closed) {
            let mut client = self.connect()?;
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            *listener = Some(client);
        }
        let Some(client) = listener.as_mut() else {
            return Ok(false);
        };
        let mut notifications = client.notifications();
        let mut waited = notifications.timeout_iter(timeout);
        match waited.next() {
            Ok(Some(_)) => {
                // Several announcements may be waiting: one wake-up is enough.
                drop(waited);
                let mut pending = notifications.iter();
                while let Ok(Some(_)) = pending.next() {}
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                drop(waited);
                drop(notifications);
                *listener = None;
                Err(e.into())
            }
        }
    }
}

/// The columns every offer query reads, in the order [`offer_row`] expects.
const OFFER_COLUMNS: &str = "SELECT o.id, o.size, o.sha256, o.name, o.owner_id, u.username, o.key, o.endpoint, \
     o.instance, o.conn FROM offers o JOIN users u ON u.id = o.owner_id";

/// Only offers whose session is on a live node. A node beats every second;
/// three missed beats hide its offers, so that a node's sudden death ends
/// its offers within the 5 s of PROTOCOL.md 11 although the node itself is
/// reaped later.
const LIVE_OFFER: &str = "EXISTS (SELECT 1 FROM nodes n WHERE n.instance = o.instance AND NOT n.stopped \
     AND n.seen_at > now() - interval '3 seconds')";

/// Reads one row of [`OFFER_COLUMNS`].
fn offer_row(row: &Row) -> StoredOffer {
    StoredOffer {
        id: row.get(0),
        size: unsigned(row.get(1)),
        sha256: row.get(2),
        name: row.get(3),
        owner_id: row.get(4),
        owner: row.get(5),
        key: row.get(6),
        endpoint: row.get(7),
        instance: row.get(8),
        conn: unsigned(row.get(9)),
    }
}

/// Reads one row of the log query.
fn log_row(row: &Row) -> Result<LogRow, StoreError> {
    let id: i64 = row.get(0);
    let kind: String = row.get(1);
    let user: AccountId = row.get(2);
    let username: String = row.get(3);
    let node: Option<String> = row.get(10);
    let conn: Option<i64> = row.get(11);
    let origin = node.map(|node| (node, conn.map_or(0, unsigned)));
    let room: Option<RoomId> = row.get(6);
    let room_name: Option<String> = row.get(7);
    let what = match kind.as_str() {
        "message" => {
            let to_user: Option<AccountId> = row.get(8);
            let place = match (room, to_user) {
                (Some(id), _) => Place::Room {
                    id,
                    name: room_name.unwrap_or_default(),
                },
                (None, Some(id)) => Place::Account {
                    id,
                    username: row.get::<_, Option<String>>(9).unwrap_or_default(),
                },
                (None, None) => Place::Lobby,
            };
            Logged::Message(StoredMessage {
                id,
                ts: row.get::<_, Option<i64>>(5).unwrap_or(0),
                user_id: user,
                username,
                body: row.get::<_, Option<String>>(4).unwrap_or_default(),
                place,
            })
        }
        "join" | "part" => Logged::Membership {
            room: room.ok_or_else(|| StoreError::Incompatible(format!("log entry {id}: {kind} without a room")))?,
            room_name: room_name.unwrap_or_default(),
            user,
            username,
            joined: kind == "join",
        },
        "online" | "offline" => Logged::Presence {
            user,
            username,
            online: kind == "online",
        },
        "relay" => {
            let note: String = row.get::<_, Option<String>>(4).unwrap_or_default();
            let mut words = note.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some(file), Some(ticket), Some(addr)) => Logged::Relay {
                    file: file.to_string(),
                    ticket: ticket.to_string(),
                    addr: addr.to_string(),
                },
                _ => {
                    return Err(StoreError::Incompatible(format!(
                        "log entry {id}: a relay note {note:?}"
                    )));
                }
            }
        }
        other => {
            return Err(StoreError::Incompatible(format!(
                "log entry {id} of unknown kind {other}"
            )));
        }
    };
    Ok(LogRow { id, origin, what })
}

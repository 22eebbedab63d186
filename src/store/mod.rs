//! Accounts, rooms, memberships and messages at rest, behind a trait so the
//! SQLite backend of today and a PostgreSQL backend later serve the same
//! server code.
//!
//! Two roles, as the design asks: a [`Store`] is shared by every session for
//! reads (account look-ups, history), and exactly one [`StoreWriter`], owned
//! by the journal thread, performs every write. Nothing here knows about
//! sockets, sessions or the wire format.

pub mod postgres;
pub mod sqlite;

use thiserror::Error;

/// A message id: positive, strictly increasing in storage order.
pub type MessageId = i64;
/// Milliseconds since the Unix epoch.
pub type Millis = i64;
/// An account's row id.
pub type AccountId = i64;
/// A room's row id (a room re-created after it ended gets a new one).
pub type RoomId = i64;

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Row id, the account's identity for presence and tags.
    pub id: i64,
    /// Username with the case it was registered with.
    pub username: String,
    /// Full name, trimmed.
    pub full_name: String,
    /// bcrypt hash of the password.
    pub password_hash: String,
}

/// What REGISTER asks the writer to create (values already validated and
/// the password already hashed).
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// Validated username.
    pub username: String,
    /// Trimmed, validated full name.
    pub full_name: String,
    /// bcrypt hash.
    pub password_hash: String,
}

/// Where a message is sent, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The lobby, `#general` (every version 1 message).
    Lobby,
    /// A room other than the lobby.
    Room(RoomId),
    /// One account: a private message.
    Account(AccountId),
}

/// One message to be stored.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Author's account id.
    pub user_id: AccountId,
    /// The connection that sent it, for backends whose readers deliver
    /// from storage (the sender gets the `OK`, not the event); 0 if none.
    pub origin: u64,
    /// Trimmed, validated text.
    pub body: String,
    /// Idempotency token, if the command was tagged.
    pub tag: Option<String>,
    /// Where it goes.
    pub to: Destination,
}

/// The outcome of storing one [`NewMessage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored: it must be delivered.
    Stored {
        /// Its id.
        id: MessageId,
        /// Its timestamp.
        ts: Millis,
    },
    /// The account already stored a message under this tag: nothing new was
    /// stored, and the original id and time are returned.
    Duplicate {
        /// The original id.
        id: MessageId,
        /// The original timestamp.
        ts: Millis,
    },
}

/// Where a stored message was sent, with the names a reader sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The lobby.
    Lobby,
    /// A room.
    Room {
        /// Its id.
        id: RoomId,
        /// Its name with the case of the JOIN that created it, `#` included.
        name: String,
    },
    /// An account (a private message).
    Account {
        /// Its id.
        id: AccountId,
        /// Its username as registered.
        username: String,
    },
}

/// A stored message as read back, with its author's username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// Its timestamp.
    pub ts: Millis,
    /// Author's account id.
    pub user_id: AccountId,
    /// Author's username as registered.
    pub username: String,
    /// The text.
    pub body: String,
    /// Where it was sent.
    pub place: Place,
}

/// Which messages a `HISTORY` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversation {
    /// The lobby's.
    Lobby,
    /// One room's.
    Room(RoomId),
    /// Those between two accounts, both ways (the same account twice: notes
    /// to oneself).
    Between(AccountId, AccountId),
}

/// One end of a history window: a message id or a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// A message id.
    Id(MessageId),
    /// Milliseconds since the Unix epoch.
    Ts(Millis),
}

/// Which part of a conversation a history read takes: the messages
/// strictly after `after` and strictly before `before` (either open), and
/// of those the newest `limit` (`newest`) or the oldest. Always returned
/// oldest first. IRC's `CHATHISTORY` needs every shape; charla's `HISTORY`
/// only "newest before an id".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Only messages after this one (exclusive).
    pub after: Option<Bound>,
    /// Only messages before this one (exclusive).
    pub before: Option<Bound>,
    /// Take the newest of the range (else the oldest).
    pub newest: bool,
}

impl Window {
    /// The newest messages, before `before` when given: `HISTORY`'s window.
    pub fn latest(before: Option<MessageId>) -> Window {
        Window {
            after: None,
            before: before.map(Bound::Id),
            newest: true,
        }
    }
}

/// The SQL after the column list of a history read of `conversation`
/// through `window`: its `WHERE`, `ORDER BY` and `LIMIT`, with the
/// parameters in order. `placeholder(n)` spells the n-th parameter (1-based)
/// in the database's dialect. Both stores use it, so the two cannot
/// disagree on what a window means.
pub(crate) fn window_query(
    conversation: Conversation,
    limit: u32,
    window: &Window,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<i64>) {
    let mut params: Vec<i64> = Vec::with_capacity(5);
    let next = |value: i64, params: &mut Vec<i64>| {
        params.push(value);
        placeholder(params.len())
    };
    let mut sql = match conversation {
        Conversation::Lobby => "WHERE m.room_id IS NULL AND m.to_user IS NULL".to_string(),
        Conversation::Room(room) => format!("WHERE m.room_id = {}", next(room, &mut params)),
        Conversation::Between(a, b) => {
            let (a, b) = (next(a, &mut params), next(b, &mut params));
            format!("WHERE ((m.user_id = {a} AND m.to_user = {b}) OR (m.user_id = {b} AND m.to_user = {a}))")
        }
    };
    for (bound, op) in [(window.after, '>'), (window.before, '<')] {
        match bound {
            Some(Bound::Id(id)) => sql.push_str(&format!(" AND m.id {op} {}", next(id, &mut params))),
            Some(Bound::Ts(ts)) => sql.push_str(&format!(" AND m.ts_ms {op} {}", next(ts, &mut params))),
            None => {}
        }
    }
    // An id bound in every read, true of every message: without one, a
    // PostgreSQL that has no statistics on the table yet (a young or fast
    // growing chat, before autovacuum's ANALYZE) takes the conversation for
    // a few rows, reads all of it through a bitmap scan and sorts it
    // (130 ms at 100,000 messages) instead of walking the index from the
    // newest end.
    if !matches!(window.after, Some(Bound::Id(_))) && !matches!(window.before, Some(Bound::Id(_))) {
        sql.push_str(" AND m.id > 0");
    }
    let order = if window.newest { "DESC" } else { "ASC" };
    let limit = next(i64::from(limit), &mut params);
    sql.push_str(&format!(" ORDER BY m.id {order} LIMIT {limit}"));
    (sql, params)
}

/// A live room and its members, as the server loads them at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRoom {
    /// Its id.
    pub id: RoomId,
    /// Its name, `#` included, with its creator's case.
    pub name: String,
    /// Its members' account ids.
    pub members: Vec<AccountId>,
}

/// What a JOIN changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The room's id.
    pub room: RoomId,
    /// Its name, `#` included, with its creator's case.
    pub name: String,
    /// The room did not exist: this JOIN created it.
    pub created: bool,
    /// The account was already a member: nothing changed.
    pub already: bool,
    /// Where the change is in the log every node delivers from (0 for a
    /// backend without one, or when nothing changed).
    pub position: u64,
}

/// What a PART changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parted {
    /// The account left; `ended` when it was the last member.
    Left {
        /// The room has no members left and is gone.
        ended: bool,
        /// Where the change is in the log (0 without one).
        position: u64,
    },
    /// The account was not a member (nothing changed).
    NotMember,
}

/// Storage failures. Every one is reported to the client as `db-error` and
/// means nothing was written.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database reported an error (disk full, read-only, locked...).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error or could not be reached.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The database holds something this version cannot use.
    #[error("{0}")]
    Incompatible(String),
    /// The file exists but is not a charla database.
    #[error("{path} is not a charla database ({why})")]
    NotCharla {
        /// The file given with --db.
        path: String,
        /// What gave it away.
        why: String,
    },
    /// The writer has stopped (the server is shutting down).
    #[error("storage has stopped")]
    Stopped,
    /// The database was written by a newer charla.
    #[error("{path} has schema version {found}; this charla understands up to {supported}")]
    TooNew {
        /// The file given with --db.
        path: String,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
}

/// Why REGISTER could not create an account.
#[derive(Debug, Error)]
pub enum CreateAccountError {
    /// The username is taken, regardless of case.
    #[error("username already exists")]
    UserExists,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads shared by all sessions; implementations must be cheap to call
/// concurrently from many threads.
pub trait Store: Send + Sync {
    /// Finds an account by username, regardless of case.
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn find_account(&self, username: &str) -> Result<Option<Account>, StoreError>;

    /// The id and time of the message `user_id` stored under `tag`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn find_tag(&self, user_id: AccountId, tag: &str) -> Result<Option<(MessageId, Millis)>, StoreError>;

    /// The latest `limit` messages of `conversation` with an id below
    /// `before` (when given), oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn history(
        &self,
        conversation: Conversation,
        limit: u32,
        before: Option<MessageId>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.history_window(conversation, limit, &Window::latest(before))
    }

    /// Up to `limit` messages of `conversation` in `window`, oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn history_window(
        &self,
        conversation: Conversation,
        limit: u32,
        window: &Window,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Up to `limit` messages with an id above `after`, oldest first, of
    /// everything `reader` may read now: the lobby, the rooms it is a member
    /// of, and its private conversations.
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn sync(&self, reader: AccountId, after: MessageId, limit: u32) -> Result<Vec<StoredMessage>, StoreError>;

    /// The highest message id stored (0 when there is none).
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn last_message_id(&self) -> Result<MessageId, StoreError>;

    /// How many accounts exist (the lobby's member count).
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn count_accounts(&self) -> Result<u64, StoreError>;

    /// Every live room with its members.
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn live_rooms(&self) -> Result<Vec<StoredRoom>, StoreError>;

    /// Opens the single writer. The server calls this once.
    ///
    /// # Errors
    /// [`StoreError`] when a write connection cannot be opened.
    fn open_writer(&self) -> Result<Box<dyn StoreWriter>, StoreError>;
}

/// The one connection that writes; owned by the journal thread.
pub trait StoreWriter: Send {
    /// Creates an account.
    ///
    /// # Errors
    /// [`CreateAccountError::UserExists`] for a taken name, or a storage
    /// failure (nothing created).
    fn create_account(&mut self, account: &NewAccount, now: Millis) -> Result<Account, CreateAccountError>;

    /// Stores a batch in one transaction, in order, all with timestamp `ts`,
    /// returning one outcome per message. A tag already used by the same
    /// account (earlier, or earlier in this batch) yields
    /// [`Appended::Duplicate`].
    ///
    /// # Errors
    /// [`StoreError`] when the transaction fails; then nothing of the batch
    /// was stored.
    fn append(&mut self, batch: &[NewMessage], ts: Millis) -> Result<Vec<Appended>, StoreError>;

    /// Makes `user_id` a member of the live room called `name` (matched
    /// regardless of case; `#` included), creating the room with this case
    /// if there is none. `origin` is the asking connection, as for
    /// [`NewMessage::origin`].
    ///
    /// # Errors
    /// [`StoreError`] when the change cannot be stored; nothing changed.
    fn join(&mut self, user_id: AccountId, name: &str, ts: Millis, origin: u64) -> Result<Joined, StoreError>;

    /// Ends `user_id`'s membership of room `room`; the room ends with its
    /// last member. `origin` as for [`StoreWriter::join`].
    ///
    /// # Errors
    /// [`StoreError`] when the change cannot be stored; nothing changed.
    fn part(&mut self, user_id: AccountId, room: RoomId, ts: Millis, origin: u64) -> Result<Parted, StoreError>;
}

/// A live node of a cluster, as `/health/nodes` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    /// Its `--node` name.
    pub name: String,
    /// Its logged-in sessions.
    pub sessions: u64,
    /// Milliseconds since it last showed itself to the database.
    pub seen_ms_ago: u64,
}

/// One entry of the log every node of a cluster delivers from, in id
/// order: messages, membership changes and presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    /// Its id in the one sequence.
    pub id: MessageId,
    /// The node instance and connection that caused it, if known.
    pub origin: Option<(String, u64)>,
    /// What happened.
    pub what: Logged,
}

/// What a [`LogRow`] records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logged {
    /// A message was stored.
    Message(StoredMessage),
    /// An account joined (`joined`) or left a room.
    Membership {
        /// The room.
        room: RoomId,
        /// Its name with its creator's case.
        room_name: String,
        /// The account.
        user: AccountId,
        /// Its username.
        username: String,
        /// Joined, or left.
        joined: bool,
    },
    /// An account came online (`online`) or went offline, counting every
    /// node's sessions.
    Presence {
        /// The account.
        user: AccountId,
        /// Its username.
        username: String,
        /// Online, or offline.
        online: bool,
    },
    /// The session the row's origin names is to bring a file to the relay.
    Relay {
        /// The offer's id.
        file: String,
        /// The fetcher's ticket.
        ticket: String,
        /// The relay.
        addr: String,
    },
}

/// A live offer of a file, as a cluster's database holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOffer {
    /// Its id.
    pub id: String,
    /// The file's size.
    pub size: u64,
    /// The file's SHA-256, hex.
    pub sha256: String,
    /// The file's name.
    pub name: String,
    /// The offering account.
    pub owner_id: AccountId,
    /// Its username.
    pub owner: String,
    /// The key its tickets are sealed with, hex.
    pub key: String,
    /// Where the offering client serves it, if it said.
    pub endpoint: Option<String>,
    /// The node instance of the offering session.
    pub instance: String,
    /// The offering session.
    pub conn: u64,
}

/// What several nodes on one database share beyond the [`Store`]: node
/// identity and liveness, sessions on every node, and the log each node
/// tails to deliver what any node stored.
pub trait ClusterStore: Send + Sync {
    /// Claims `name` for this process's `instance`. Returns false when a
    /// live node (seen within the last 10 s and not stopped) holds it.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn register_node(&self, name: &str, instance: &str) -> Result<bool, StoreError>;

    /// Shows the node alive. Returns false when the name is no longer this
    /// instance's (it was declared dead and taken over).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn heartbeat(&self, name: &str, instance: &str) -> Result<bool, StoreError>;

    /// Marks the node stopped (it leaves the list at once) and ends its
    /// sessions.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn stop_node(&self, name: &str, instance: &str) -> Result<(), StoreError>;

    /// Ends the sessions of instances that are not live nodes (dead for
    /// longer than `dead_after`). Returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn reap(&self, dead_after: std::time::Duration) -> Result<u32, StoreError>;

    /// The live nodes.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn live_nodes(&self) -> Result<Vec<NodeRow>, StoreError>;

    /// Records a logged-in session; returns the log position at its login
    /// (it hears of presence changes after it).
    ///
    /// # Errors
    /// [`StoreError`] when it could not be recorded.
    fn session_start(&self, instance: &str, conn: u64, user: AccountId) -> Result<u64, StoreError>;

    /// Forgets a session.
    ///
    /// # Errors
    /// [`StoreError`] when it could not be recorded.
    fn session_end(&self, instance: &str, conn: u64) -> Result<(), StoreError>;

    /// The accounts with a session on any live node (among `among` when
    /// given), as `(username, full name)`, sorted by username regardless of
    /// case.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn online(&self, among: Option<&[AccountId]>) -> Result<Vec<(String, String)>, StoreError>;

    /// The log position and the live rooms as of one moment, so a node
    /// starts its view of the rooms and its tail consistently.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn snapshot(&self) -> Result<(u64, Vec<StoredRoom>), StoreError>;

    /// Up to `limit` log entries with an id above `after`, in id order.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn log_after(&self, after: u64, limit: u32) -> Result<Vec<LogRow>, StoreError>;

    /// Blocks until some node announces new log entries or `timeout`
    /// passes; returns whether an announcement came. Announcements are
    /// only a hint: they can be lost (a reconnecting listener misses them),
    /// so readers also poll.
    ///
    /// # Errors
    /// [`StoreError`] when the listening connection fails.
    fn wait_for_log(&self, timeout: std::time::Duration) -> Result<bool, StoreError>;

    /// Adds an offer.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn offer_add(&self, offer: &StoredOffer) -> Result<(), StoreError>;

    /// The offer with this id, if its session is on a live node.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn offer_get(&self, id: &str) -> Result<Option<StoredOffer>, StoreError>;

    /// Withdraws an offer.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn offer_remove(&self, id: &str) -> Result<(), StoreError>;

    /// The offers of live nodes whose name contains `query` (ASCII
    /// case-insensitive), sorted by name in ASCII lower case then id, at
    /// most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn offer_search(&self, query: &str, limit: usize) -> Result<Vec<StoredOffer>, StoreError>;

    /// How many offers a session holds.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn offer_count(&self, instance: &str, conn: u64) -> Result<usize, StoreError>;

    /// Sets the endpoint of a session's offers.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn offers_set_endpoint(&self, instance: &str, conn: u64, endpoint: Option<&str>) -> Result<(), StoreError>;

    /// Tells session `conn` of node instance `instance` (through that node's
    /// tail) to bring offer `file` to the relay `addr` for `ticket`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn notify_relay(
        &self,
        instance: &str,
        conn: u64,
        owner: AccountId,
        file: &str,
        ticket: &str,
        addr: &str,
    ) -> Result<(), StoreError>;
}

//! Accounts and messages at rest, behind a trait so the SQLite backend of
//! today and a PostgreSQL backend later serve the same server code.
//!
//! Two roles, as the design asks: a [`Store`] is shared by every session for
//! reads (account look-ups, history), and exactly one [`StoreWriter`], owned
//! by the journal thread, performs every write. Nothing here knows about
//! sockets, sessions or the wire format.

pub mod sqlite;

use thiserror::Error;

/// A message id: positive, strictly increasing in storage order.
pub type MessageId = i64;
/// Milliseconds since the Unix epoch.
pub type Millis = i64;

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

/// One SAY to be stored.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Author's account id.
    pub user_id: i64,
    /// Trimmed, validated text.
    pub body: String,
    /// Idempotency token, if the SAY was tagged.
    pub tag: Option<String>,
}

/// The outcome of storing one [`NewMessage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored: it must be broadcast.
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

/// A stored message as read back, with its author's username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// Its timestamp.
    pub ts: Millis,
    /// Author's username as registered.
    pub username: String,
    /// The text.
    pub body: String,
}

/// Storage failures. Every one is reported to the client as `db-error` and
/// means nothing was written.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database reported an error (disk full, read-only, locked...).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

    /// The latest `limit` messages with an id below `before` (when given),
    /// oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn history(&self, limit: u32, before: Option<MessageId>) -> Result<Vec<StoredMessage>, StoreError>;

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
}

//! The chat itself, with no sockets and no wire bytes: commands, accounts,
//! sessions, presence, storage order and delivery.
//!
//! A line travels through it like this (docs/ARCHITECTURE.md has the whole
//! path, with the front ends): a front end turns bytes into a command name
//! and arguments; [`commands`] checks them against the command table and
//! runs the command's function on the connection's [`session::Session`];
//! the function answers with a protocol-neutral [`reply::Reply`], or, for a
//! message, hands it to the [`journal`], which stores it with others in one
//! transaction, acknowledges it and publishes the batch to the [`feed`];
//! the [`fanout`] delivers each batch to the sessions in the [`registry`],
//! encoded once per wire protocol by the [`codec`] of the sessions'
//! [`outbox`]es, which write to their [`transport`].
//!
//! - [`code`]: error codes, and the one mapping from internal errors to them.
//! - [`validate`]: the value rules (usernames, passwords, names, texts).
//! - [`reply`], [`event`]: what sessions are told, as types.
//! - [`codec`]: the seam to the wire protocols; [`transport`]: to the bytes.
//! - [`commands`]: the command table and one function per command.
//! - [`session`]: one connection's state and the order of its replies.
//! - [`registry`]: connections, sessions, presence.
//! - [`rooms`]: which rooms exist and who is in them, as delivered.
//! - [`journal`]: group commit and acknowledgement.
//! - [`feed`]: committed batches on their way to delivery.
//! - [`fanout`]: batches to sessions.
//! - [`outbox`]: a session's bounded queue and writer.
//! - [`auth`], [`limits`]: bcrypt on a pool; flood and brute-force limits.

pub mod auth;
pub mod code;
pub mod codec;
pub mod commands;
pub mod event;
pub mod fanout;
pub mod feed;
pub mod journal;
pub mod limits;
pub mod outbox;
pub mod registry;
pub mod reply;
pub mod rooms;
pub mod session;
pub mod transport;
pub mod validate;

#[cfg(test)]
pub(crate) mod testkit;

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use thiserror::Error;

use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use auth::{AuthError, Hasher};
use fanout::Fanout;
use feed::LocalFeed;
use journal::Journal;
use limits::{Limits, SystemClock};
use registry::Registry;
use rooms::Rooms;

/// Why the core could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The database could not be opened or is not charla's.
    #[error("cannot open the database {path}: {source}")]
    Store {
        /// The file given with --db.
        path: String,
        /// What went wrong.
        source: StoreError,
    },
    /// The password hashing pool could not start.
    #[error("cannot start password hashing: {0}")]
    Auth(#[from] AuthError),
    /// A thread could not start.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Everything the sessions share: the services of one chat server process.
pub struct Core {
    /// The operator's settings.
    pub config: Config,
    /// Connections and logged-in sessions.
    pub registry: Arc<Registry>,
    /// Rooms and their members, as delivered.
    pub rooms: Arc<Rooms>,
    /// Reads: accounts and history.
    pub store: Arc<dyn Store>,
    /// bcrypt, off the session threads' hot path.
    pub hasher: Hasher,
    /// Writes: registrations and messages.
    pub journal: Journal,
    /// Set when the server is stopping.
    pub shutdown: Shutdown,
    /// Rate limits against floods and brute force.
    pub limits: Limits,
}

/// The threads behind a [`Core`], joined when it stops.
pub struct CoreThreads {
    /// The journal thread.
    journal: JoinHandle<()>,
}

impl Core {
    /// Opens storage and starts the hashing pool, the journal and the
    /// fan-out of this process's own commits.
    ///
    /// # Errors
    /// [`StartError::Store`] when the database cannot be opened or is not a
    /// charla database; [`StartError::Auth`] for a bad bcrypt cost;
    /// [`StartError::Io`] when a thread cannot start.
    pub fn start(config: Config, shutdown: Shutdown) -> Result<(Arc<Core>, CoreThreads), StartError> {
        Core::start_with_clock(config, shutdown, Arc::new(SystemClock))
    }

    /// [`Core::start`] with the limiters reading `clock` (tests move time
    /// by hand).
    ///
    /// # Errors
    /// As [`Core::start`].
    pub fn start_with_clock(
        config: Config,
        shutdown: Shutdown,
        clock: Arc<dyn limits::Clock>,
    ) -> Result<(Arc<Core>, CoreThreads), StartError> {
        let store_error = |source| StartError::Store {
            path: config.db.display().to_string(),
            source,
        };
        let store = SqliteStore::open(&config.db, config.sync).map_err(store_error)?;
        let writer = store.open_writer().map_err(store_error)?;
        let rooms = Arc::new(Rooms::new(store.live_rooms().map_err(store_error)?));
        let threads = match config.hash_threads {
            0 => thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let hasher = Hasher::start(config.bcrypt_cost, threads)?;
        let feed = LocalFeed::new();
        let (journal, journal_thread) = Journal::start(writer, Arc::clone(&feed) as Arc<dyn feed::Feed>)?;
        let registry = Arc::new(Registry::new(Arc::new(journal.clone())));
        feed.subscribe(Fanout::new(Arc::clone(&registry), Arc::clone(&rooms)));
        let limits = Limits::new(config.limits.clone(), clock);
        let core = Arc::new(Core {
            config,
            registry,
            rooms,
            store: Arc::new(store),
            hasher,
            journal,
            shutdown,
            limits,
        });
        Ok((
            core,
            CoreThreads {
                journal: journal_thread,
            },
        ))
    }
}

impl CoreThreads {
    /// Stores and acknowledges everything the journal was given, then
    /// waits for it to end. Call once no session can submit more.
    pub fn stop(self, core: &Core) {
        core.journal.stop();
        if self.journal.join().is_err() {
            log::error!("the journal thread panicked");
        }
    }
}

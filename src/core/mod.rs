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
//! - [`files`]: offers of files to share, and their tickets.
//! - [`journal`]: group commit and acknowledgement.
//! - [`feed`]: committed batches on their way to delivery.
//! - [`fanout`]: batches to sessions.
//! - [`outbox`]: a session's bounded queue and writer.
//! - [`presence`]: who is online, in this process or across a cluster.
//! - [`cluster`]: being one node of several: the tail feed, the heartbeat.
//! - [`status`]: what `/health` reports.
//! - [`auth`], [`limits`]: bcrypt on a pool; flood and brute-force limits.

pub mod auth;
pub mod cluster;
pub mod code;
pub mod codec;
pub mod commands;
pub mod event;
pub mod fanout;
pub mod feed;
pub mod files;
pub mod journal;
pub mod limits;
pub mod outbox;
pub mod presence;
pub mod registry;
pub mod reply;
pub mod rooms;
pub mod session;
pub mod status;
pub mod transport;
pub mod validate;

#[cfg(test)]
pub(crate) mod testkit;

use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use thiserror::Error;

use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::store::postgres::{self, PgStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{ClusterStore, Store, StoreError, StoreWriter};
use auth::{AuthError, Hasher};
use cluster::{ClusterFeed, NodeThreads};
use fanout::Fanout;
use feed::{Feed, LocalFeed};
use journal::Journal;
use limits::{Limits, SystemClock};
use presence::{ClusterPresence, LocalPresence, Presence};
use registry::{NoPresenceSink, Registry};
use rooms::Rooms;
use status::NodeStatus;

/// Why the core could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The database could not be opened or is not charla's.
    #[error("cannot open the database {path}: {source}")]
    Store {
        /// The database given with --db (a URL's password is not shown).
        path: String,
        /// What went wrong.
        source: StoreError,
    },
    /// A live node of the cluster already has this name.
    #[error(
        "the node name {0} is taken by a live node on this database (a dead node's name is free again 10 s after it died)"
    )]
    NodeTaken(String),
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
    /// Sessions logging in and out, and who is online (here or everywhere).
    pub presence: Arc<dyn Presence>,
    /// Rooms and their members, as delivered.
    pub rooms: Arc<Rooms>,
    /// For a cluster node: the other nodes' way in.
    pub cluster: Option<ClusterLink>,
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
    /// What `/health` reports.
    pub status: Arc<NodeStatus>,
    /// The live offers of files to share.
    pub offers: Arc<dyn files::OfferIndex>,
}

impl Core {
    /// Asks the session that offers `offer` to bring it to the relay at
    /// `addr` for `ticket`: here when the session is this node's, else
    /// through the cluster's log to the node that holds it. Returns whether
    /// it could be asked.
    pub fn invite_to_relay(&self, offer: &files::Offer, ticket: &str, addr: &str) -> bool {
        match (&offer.node, &self.cluster) {
            (Some(node), Some(cluster)) if *node != cluster.instance => {
                let told = cluster
                    .store
                    .notify_relay(node, offer.conn, offer.owner_id, &offer.id, ticket, addr);
                self.status.db_answered(told.is_ok());
                told.is_ok()
            }
            _ => {
                let event = event::Event::Relay {
                    file: offer.id.clone(),
                    ticket: ticket.to_string(),
                    addr: addr.to_string(),
                };
                self.registry.notify(offer.conn, &event)
            }
        }
    }
}

/// What a cluster node keeps to reach the other nodes.
pub struct ClusterLink {
    /// The shared database.
    pub store: Arc<dyn ClusterStore>,
    /// This process's node instance.
    pub instance: String,
}

/// The threads behind a [`Core`], joined when it stops.
pub struct CoreThreads {
    /// The journal thread.
    journal: JoinHandle<()>,
    /// A cluster node's tail, listener and heartbeat.
    node: Option<NodeThreads>,
}

/// What differs between one process on SQLite and a node of a cluster.
struct Backend {
    store: Arc<dyn Store>,
    writer: Box<dyn StoreWriter>,
    rooms: Rooms,
    status: Arc<NodeStatus>,
    cluster: Option<(Arc<dyn ClusterStore>, String, u64)>,
    /// The cluster's store and this instance, once more, for the core.
    link: Option<(Arc<dyn ClusterStore>, String)>,
}

/// A name for this process's run of node `node`: a restarted node is a new
/// instance, so the others can tell its sessions from those of the one that
/// died.
fn new_instance(node: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{node}-{}-{nanos:x}", std::process::id())
}

/// The database URL without its password, for messages.
fn shown(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &db[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &db[..scheme + 3], &db[at + 1..])
        }
        _ => db.to_string(),
    }
}

impl Core {
    /// Opens storage and starts the hashing pool, the journal and the
    /// fan-out: of this process's own commits on SQLite, or of everything
    /// every node stored on PostgreSQL (`--db postgres://…`).
    ///
    /// # Errors
    /// [`StartError::Store`] when the database cannot be opened or is not a
    /// charla database; [`StartError::NodeTaken`] when a live node has this
    /// node's name; [`StartError::Auth`] for a bad bcrypt cost;
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
        let backend = Core::open_backend(&config)?;
        let threads = match config.hash_threads {
            0 => thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let hasher = Hasher::start(config.bcrypt_cost, threads)?;
        let rooms = Arc::new(backend.rooms);
        let status = backend.status;
        let (core_parts, feed_parts) = match backend.cluster {
            None => {
                let feed = LocalFeed::new();
                let (journal, thread) =
                    Journal::start(backend.writer, Arc::clone(&feed) as Arc<dyn Feed>, Arc::clone(&status))?;
                let registry = Arc::new(Registry::new(Arc::new(journal.clone())));
                feed.subscribe(Fanout::new(Arc::clone(&registry), Arc::clone(&rooms)));
                let presence: Arc<dyn Presence> = Arc::new(LocalPresence::new(Arc::clone(&registry)));
                ((journal, thread, registry, presence), None)
            }
            Some((cluster, instance, position)) => {
                let feed = ClusterFeed::new(Arc::clone(&cluster), instance.clone(), position, Arc::clone(&status));
                let (journal, thread) =
                    Journal::start(backend.writer, Arc::clone(&feed) as Arc<dyn Feed>, Arc::clone(&status))?;
                let registry = Arc::new(Registry::new(Arc::new(NoPresenceSink)));
                feed.subscribe(Fanout::new(Arc::clone(&registry), Arc::clone(&rooms)));
                let presence = Arc::new(ClusterPresence::new(
                    Arc::clone(&registry),
                    Arc::clone(&cluster),
                    instance,
                    Arc::clone(&status),
                ));
                let node = NodeThreads::start(&feed, Arc::clone(&presence), config.node.clone(), Arc::clone(&status))?;
                let presence: Arc<dyn Presence> = presence;
                ((journal, thread, registry, presence), Some(node))
            }
        };
        let (journal, journal_thread, registry, presence) = core_parts;
        let (offers, cluster): (Arc<dyn files::OfferIndex>, Option<ClusterLink>) = match backend.link {
            None => (Arc::new(files::LocalOffers::default()), None),
            Some((store, instance)) => (
                Arc::new(files::ClusterOffers::new(Arc::clone(&store), instance.clone())),
                Some(ClusterLink { store, instance }),
            ),
        };
        let limits = Limits::new(config.limits.clone(), clock);
        let core = Arc::new(Core {
            config,
            registry,
            presence,
            rooms,
            store: backend.store,
            hasher,
            journal,
            shutdown,
            limits,
            status,
            offers,
            cluster,
        });
        Ok((
            core,
            CoreThreads {
                journal: journal_thread,
                node: feed_parts,
            },
        ))
    }

    /// Opens the database the configuration names.
    fn open_backend(config: &Config) -> Result<Backend, StartError> {
        let store_error = |source| StartError::Store {
            path: shown(&config.db),
            source,
        };
        if postgres::is_postgres_url(&config.db) {
            let instance = new_instance(&config.node);
            let store = Arc::new(PgStore::open(&config.db, &instance).map_err(store_error)?);
            if !store.register_node(&config.node, &instance).map_err(store_error)? {
                return Err(StartError::NodeTaken(config.node.clone()));
            }
            let (position, rooms) = store.snapshot().map_err(store_error)?;
            let last_id = store.last_message_id().map_err(store_error)?;
            let writer = store.open_writer().map_err(store_error)?;
            log::info!(
                "node {} (instance {instance}) joined the cluster at log position {position}",
                config.node
            );
            let link: Arc<dyn ClusterStore> = Arc::clone(&store) as Arc<dyn ClusterStore>;
            return Ok(Backend {
                store: Arc::clone(&store) as Arc<dyn Store>,
                writer,
                rooms: Rooms::new(rooms),
                status: Arc::new(NodeStatus::new(last_id)),
                link: Some((link, instance.clone())),
                cluster: Some((store, instance, position)),
            });
        }
        let store = SqliteStore::open(Path::new(&config.db), config.sync).map_err(store_error)?;
        let writer = store.open_writer().map_err(store_error)?;
        let rooms = Rooms::new(store.live_rooms().map_err(store_error)?);
        let last_id = store.last_message_id().map_err(store_error)?;
        Ok(Backend {
            store: Arc::new(store),
            writer,
            rooms,
            status: Arc::new(NodeStatus::new(last_id)),
            cluster: None,
            link: None,
        })
    }
}

impl CoreThreads {
    /// The first step of stopping: a cluster node leaves the list of live
    /// nodes at once, so balancers and the other nodes stop counting on it.
    pub fn leaving(&self) {
        if let Some(node) = &self.node {
            node.leave();
        }
    }

    /// Stores and acknowledges everything the journal was given, then
    /// waits for it (and a cluster node's threads) to end. Call once no
    /// session can submit more.
    pub fn stop(self, core: &Core) {
        core.journal.stop();
        if self.journal.join().is_err() {
            log::error!("the journal thread panicked");
        }
        if let Some(node) = self.node {
            node.leave();
            node.stop();
        }
    }
}

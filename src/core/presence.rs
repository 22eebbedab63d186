//! Who is online, counted over the whole chat: this process alone (one
//! server on SQLite), or every node of a cluster.
//!
//! Logging a session in and out, and `WHO`, go through [`Presence`]. For a
//! single process ([`LocalPresence`]) the registry counts each account's
//! sessions and reports JOIN/LEAVE to the journal, in order with the
//! messages. For a cluster ([`ClusterPresence`]) the sessions of every node
//! are in the database, which decides the first and last session of an
//! account over all nodes and puts JOIN/LEAVE in the log every node
//! delivers from.

use std::sync::{Arc, Mutex};

use super::feed::ConnectionId;
use super::outbox::Outbox;
use super::registry::{Login, Registry};
use super::reply::Person;
use super::status::NodeStatus;
use crate::store::{AccountId, ClusterStore, StoreError};

/// Sessions logging in and out, and who is online.
pub trait Presence: Send + Sync {
    /// Logs connection `conn` in as `login`: from now on it receives
    /// everything for its account (its outbox holds events until its login
    /// reply is queued), and the others hear it came online if it is the
    /// account's first session.
    ///
    /// # Errors
    /// [`StoreError`] when the session cannot be recorded (a cluster whose
    /// database is unreachable); the session is then not logged in.
    fn log_in(&self, conn: ConnectionId, login: &Login, outbox: &Arc<Outbox>) -> Result<(), StoreError>;

    /// Logs connection `conn` out.
    fn log_out(&self, conn: ConnectionId);

    /// The online accounts (among `among`, when given), sorted by username
    /// regardless of case, once per account.
    ///
    /// # Errors
    /// [`StoreError`] when they cannot be read.
    fn who(&self, among: Option<&[AccountId]>) -> Result<Vec<Person>, StoreError>;
}

/// Presence of a server that is the whole chat.
pub struct LocalPresence {
    /// The sessions, which also count each account's.
    registry: Arc<Registry>,
}

impl LocalPresence {
    /// Presence kept by `registry`.
    pub fn new(registry: Arc<Registry>) -> LocalPresence {
        LocalPresence { registry }
    }
}

impl Presence for LocalPresence {
    fn log_in(&self, conn: ConnectionId, login: &Login, outbox: &Arc<Outbox>) -> Result<(), StoreError> {
        self.registry.log_in(conn, login, outbox, None);
        Ok(())
    }

    fn log_out(&self, conn: ConnectionId) {
        self.registry.log_out(conn);
    }

    fn who(&self, among: Option<&[AccountId]>) -> Result<Vec<Person>, StoreError> {
        Ok(match among {
            None => self.registry.who(),
            Some(accounts) => self.registry.who_of(accounts),
        })
    }
}

/// Presence of a node of a cluster: sessions recorded in the database.
pub struct ClusterPresence {
    /// This node's sessions, for delivery.
    registry: Arc<Registry>,
    /// Where every node's sessions are.
    store: Arc<dyn ClusterStore>,
    /// This process's node instance.
    instance: String,
    /// Sessions whose end could not be recorded (the database was down):
    /// retried by the heartbeat, so nobody stays online by mistake.
    unrecorded_ends: Mutex<Vec<ConnectionId>>,
    /// Told when the database fails or answers.
    status: Arc<NodeStatus>,
}

impl ClusterPresence {
    /// Presence of node instance `instance` over `store`.
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<dyn ClusterStore>,
        instance: String,
        status: Arc<NodeStatus>,
    ) -> ClusterPresence {
        ClusterPresence {
            registry,
            store,
            instance,
            unrecorded_ends: Mutex::new(Vec::new()),
            status,
        }
    }

    /// Records the session ends that failed earlier. Called by the
    /// heartbeat.
    pub fn retry_ends(&self) {
        let pending = std::mem::take(&mut *self.unrecorded_ends.lock().unwrap_or_else(|p| p.into_inner()));
        for conn in pending {
            self.end(conn);
        }
    }

    fn end(&self, conn: ConnectionId) {
        let ended = self.store.session_end(&self.instance, conn);
        self.status.db_answered(ended.is_ok());
        if let Err(e) = ended {
            log::warn!("connection {conn}: its logout could not be recorded yet: {e}");
            self.unrecorded_ends
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

impl Presence for ClusterPresence {
    fn log_in(&self, conn: ConnectionId, login: &Login, outbox: &Arc<Outbox>) -> Result<(), StoreError> {
        let since = self.store.session_start(&self.instance, conn, login.account_id);
        self.status.db_answered(since.is_ok());
        self.registry.log_in(conn, login, outbox, Some(since?));
        Ok(())
    }

    fn log_out(&self, conn: ConnectionId) {
        if self.registry.log_out(conn) {
            self.end(conn);
        }
    }

    fn who(&self, among: Option<&[AccountId]>) -> Result<Vec<Person>, StoreError> {
        let online = self.store.online(among);
        self.status.db_answered(online.is_ok());
        Ok(online?
            .into_iter()
            .map(|(username, full_name)| Person { username, full_name })
            .collect())
    }
}

//! Who is connected and who is logged in: the one `Mutex`-guarded map that
//! broadcast, presence (JOIN/LEAVE, WHO) and shutdown read.
//!
//! The lock is held only to change the maps and to queue lines into
//! outboxes (a non-blocking push): never across a socket write, an SQLite
//! call or bcrypt. Fan-out takes a shared snapshot of the members
//! ([`Registry::members`]) and pushes outside the lock. JOIN and LEAVE are
//! handed to the journal under the lock, which keeps them in order with the
//! login and logout that caused them; the journal broadcasts them with the
//! messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::code::ErrorCode;
use crate::journal::Journal;
use crate::outbox::{Outbox, Recipient};
use crate::reply::{self, WireLine};
use crate::store::Account;

/// Identifies one connection for the life of the server process.
pub type ConnectionId = u64;

/// A logged-in session, as broadcast sees it.
#[derive(Clone)]
pub struct Member {
    /// The connection, and when it logged in: a batch leaves out what it
    /// sent itself and presence changes from before its login.
    pub recipient: Recipient,
    /// Where its lines go.
    pub outbox: Arc<Outbox>,
}

/// An account that is online, for WHO and for JOIN/LEAVE on the first and
/// last session.
struct Presence {
    /// Username as registered.
    username: String,
    /// Full name.
    full_name: String,
    /// How many sessions of the account are logged in.
    sessions: usize,
}

/// The maps behind the lock.
#[derive(Default)]
struct Inner {
    /// Every open connection, logged in or not, for shutdown's BYE.
    connections: HashMap<ConnectionId, Arc<Outbox>>,
    /// Logged-in sessions: account id, change number at login, outbox.
    members: HashMap<ConnectionId, (i64, u64, Arc<Outbox>)>,
    /// Counts logins and logouts; orders presence changes against logins.
    changes: u64,
    /// Online accounts by account id.
    presence: HashMap<i64, Presence>,
    /// The members as a shared list, rebuilt on the first fan-out after a
    /// login or logout.
    snapshot: Option<Arc<[Member]>>,
}

/// The server's registry of connections and sessions.
pub struct Registry {
    /// Lock order: taken before an outbox's own lock, never after it; no
    /// other lock is held together with it.
    inner: Mutex<Inner>,
    /// Where JOIN and LEAVE go to be broadcast in batches.
    journal: Journal,
}

impl Registry {
    /// A registry with nobody in it, broadcasting presence through
    /// `journal`.
    pub fn new(journal: Journal) -> Registry {
        Registry {
            inner: Mutex::default(),
            journal,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps half-updated in a way that
        // matters more than stopping the server would, so keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a new connection (not yet logged in).
    pub fn connect(&self, id: ConnectionId, outbox: Arc<Outbox>) {
        self.lock().connections.insert(id, outbox);
    }

    /// Forgets a connection; call [`Registry::log_out`] first if it was
    /// logged in.
    pub fn disconnect(&self, id: ConnectionId) {
        self.lock().connections.remove(&id);
    }

    /// Logs a session in: queues `reply` (its `OK LOGIN`/`OK REGISTER`)
    /// before any event can reach it, adds it to broadcast, and sends
    /// `JOIN` to every other session if this is the account's first.
    pub fn log_in(&self, id: ConnectionId, account: &Account, outbox: &Arc<Outbox>, reply: WireLine) {
        let mut inner = self.lock();
        inner.changes += 1;
        let change = inner.changes;
        inner.members.insert(id, (account.id, change, Arc::clone(outbox)));
        inner.snapshot = None;
        let presence = inner.presence.entry(account.id).or_insert_with(|| Presence {
            username: account.username.clone(),
            full_name: account.full_name.clone(),
            sessions: 0,
        });
        presence.sessions += 1;
        if presence.sessions == 1 {
            self.journal.presence(reply::join(&account.username), id, change);
        }
        // The reply goes out only now, after the JOIN is in the journal's
        // queue: a client told `OK LOGIN` may at once cause a message (or
        // ask someone to), and that message must reach the others after
        // the JOIN. Nothing reaches this session before the reply: fan-out
        // needs this lock to see the new member.
        outbox.reply(reply);
    }

    /// Logs a session out; sends `LEAVE` to every other session if it was
    /// the account's last.
    pub fn log_out(&self, id: ConnectionId) {
        let mut inner = self.lock();
        let Some((account_id, _, _)) = inner.members.remove(&id) else {
            return;
        };
        inner.snapshot = None;
        inner.changes += 1;
        let change = inner.changes;
        let last = match inner.presence.get_mut(&account_id) {
            Some(presence) => {
                presence.sessions -= 1;
                presence.sessions == 0
            }
            None => false,
        };
        if last && let Some(gone) = inner.presence.remove(&account_id) {
            self.journal.presence(reply::leave(&gone.username), id, change);
        }
    }

    /// The logged-in sessions, shared and cheap to take per broadcast.
    pub fn members(&self) -> Arc<[Member]> {
        let mut inner = self.lock();
        if let Some(snapshot) = &inner.snapshot {
            return Arc::clone(snapshot);
        }
        let members: Arc<[Member]> = inner
            .members
            .iter()
            .map(|(&connection, &(_, since, ref outbox))| Member {
                recipient: Recipient { connection, since },
                outbox: Arc::clone(outbox),
            })
            .collect();
        inner.snapshot = Some(Arc::clone(&members));
        members
    }

    /// The online accounts as `(username, full name)`, sorted by username
    /// regardless of case, once per account.
    pub fn who(&self) -> Vec<(String, String)> {
        let mut online: Vec<_> = self
            .lock()
            .presence
            .values()
            .map(|p| (p.username.clone(), p.full_name.clone()))
            .collect();
        online.sort_by_key(|(username, _)| username.to_ascii_lowercase());
        online
    }

    /// How many sessions are logged in.
    pub fn session_count(&self) -> usize {
        self.lock().members.len()
    }

    /// Sends `BYE code` to every connection and stops their readers: the
    /// first step of stopping the server.
    pub fn bye_all(&self, code: ErrorCode) {
        let outboxes: Vec<Arc<Outbox>> = self.lock().connections.values().cloned().collect();
        for outbox in outboxes {
            outbox.bye(code);
        }
    }
}

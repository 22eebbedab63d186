//! Who is connected and who is logged in: the one `Mutex`-guarded map that
//! fan-out, presence (JOIN/LEAVE, WHO) and shutdown read.
//!
//! The lock is held only to change the maps, to take snapshots, and to
//! report presence changes to the [`PresenceSink`] (a non-blocking queue
//! push): never across a socket write, a database call or bcrypt. Fan-out
//! takes a shared snapshot of the members ([`Registry::members`]) and
//! pushes outside the lock. Presence changes are reported under the lock,
//! which keeps each account's JOIN and LEAVE in the order of the logins and
//! logouts that caused them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::code::ErrorCode;
use super::event::Event;
use super::feed::{ConnectionId, PresenceChange, PresenceSink};
use super::outbox::{Outbox, Recipient};
use super::reply::Person;

/// A logged-in session, as fan-out sees it.
#[derive(Clone)]
pub struct Member {
    /// The connection, and when it logged in: a batch leaves out what it
    /// sent itself and presence changes from before its login.
    pub recipient: Recipient,
    /// Where its lines go.
    pub outbox: Arc<Outbox>,
}

/// The account a session logs in as, as the registry needs it.
#[derive(Clone, Debug)]
pub struct Login {
    /// Account id: sessions of one account share presence.
    pub account_id: i64,
    /// Username as registered.
    pub username: Arc<str>,
    /// Full name, for WHO.
    pub full_name: String,
}

/// An account that is online, for WHO and for JOIN/LEAVE on the first and
/// last session.
struct Presence {
    /// Username as registered.
    username: Arc<str>,
    /// Full name.
    full_name: String,
    /// How many sessions of the account are logged in.
    sessions: usize,
}

/// A logged-in session, behind the lock.
struct Session {
    /// Its account.
    account_id: i64,
    /// The change number of its login.
    since: u64,
    /// Where its lines go.
    outbox: Arc<Outbox>,
}

/// The maps behind the lock.
#[derive(Default)]
struct Inner {
    /// Every open connection, logged in or not, for shutdown's BYE.
    connections: HashMap<ConnectionId, Arc<Outbox>>,
    /// Logged-in sessions.
    sessions: HashMap<ConnectionId, Session>,
    /// The logged-in sessions of each account that has any.
    by_account: HashMap<i64, Vec<ConnectionId>>,
    /// Counts logins and logouts; orders presence changes against logins.
    changes: u64,
    /// Online accounts by account id.
    presence: HashMap<i64, Presence>,
    /// The members as a shared list, rebuilt on the first fan-out after a
    /// login or logout.
    snapshot: Option<Arc<[Member]>>,
}

/// A presence sink for a registry whose presence is kept elsewhere (a
/// cluster's database): it reports nothing.
pub struct NoPresenceSink;

impl PresenceSink for NoPresenceSink {
    fn presence(&self, _: PresenceChange) {}
}

/// The server's registry of connections and sessions.
pub struct Registry {
    /// Lock order: taken before an outbox's own lock, never after it; no
    /// other lock is held together with it.
    inner: Mutex<Inner>,
    /// Where JOIN and LEAVE go to be delivered in order with messages.
    presence: Arc<dyn PresenceSink>,
}

impl Registry {
    /// A registry with nobody in it, reporting presence to `presence`.
    pub fn new(presence: Arc<dyn PresenceSink>) -> Registry {
        Registry {
            inner: Mutex::default(),
            presence,
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

    /// Logs a session in: from now on it receives every batch (its outbox
    /// holds them until its login reply is queued), and `JOIN` goes to
    /// every other session if this is the account's first.
    ///
    /// `since` is the position from which the session hears of presence
    /// changes when presence is kept elsewhere (a cluster's database);
    /// `None` when this registry keeps it, numbering its own changes.
    pub fn log_in(&self, id: ConnectionId, login: &Login, outbox: &Arc<Outbox>, since: Option<u64>) {
        let mut inner = self.lock();
        inner.changes += 1;
        let change = inner.changes;
        inner.sessions.insert(
            id,
            Session {
                account_id: login.account_id,
                since: since.unwrap_or(change),
                outbox: Arc::clone(outbox),
            },
        );
        inner.by_account.entry(login.account_id).or_default().push(id);
        inner.snapshot = None;
        let presence = inner.presence.entry(login.account_id).or_insert_with(|| Presence {
            username: Arc::clone(&login.username),
            full_name: login.full_name.clone(),
            sessions: 0,
        });
        presence.sessions += 1;
        if presence.sessions == 1 {
            let event = Event::Online(Arc::clone(&login.username));
            let sessions = inner.sessions.len();
            self.presence.presence(PresenceChange {
                event,
                account: login.account_id,
                origin: id,
                change,
                sessions,
            });
        }
    }

    /// Logs a session out; sends `LEAVE` to every other session if it was
    /// the account's last. Returns whether the session was logged in.
    pub fn log_out(&self, id: ConnectionId) -> bool {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.remove(&id) else {
            return false;
        };
        if let Some(of_account) = inner.by_account.get_mut(&session.account_id) {
            of_account.retain(|&c| c != id);
            if of_account.is_empty() {
                inner.by_account.remove(&session.account_id);
            }
        }
        inner.snapshot = None;
        inner.changes += 1;
        let change = inner.changes;
        let last = match inner.presence.get_mut(&session.account_id) {
            Some(presence) => {
                presence.sessions -= 1;
                presence.sessions == 0
            }
            None => false,
        };
        if last && let Some(gone) = inner.presence.remove(&session.account_id) {
            let sessions = inner.sessions.len();
            self.presence.presence(PresenceChange {
                event: Event::Offline(gone.username),
                account: session.account_id,
                origin: id,
                change,
                sessions,
            });
        }
        true
    }

    /// The logged-in sessions, shared and cheap to take per batch.
    pub fn members(&self) -> Arc<[Member]> {
        let mut inner = self.lock();
        if let Some(snapshot) = &inner.snapshot {
            return Arc::clone(snapshot);
        }
        let members: Arc<[Member]> = inner
            .sessions
            .iter()
            .map(|(&connection, session)| Member {
                recipient: Recipient {
                    connection,
                    since: session.since,
                },
                outbox: Arc::clone(&session.outbox),
            })
            .collect();
        inner.snapshot = Some(Arc::clone(&members));
        members
    }

    /// The logged-in sessions of `accounts` (a fan-out to a room touches
    /// only its members' sessions), appended to `out`.
    pub fn sessions_of(&self, accounts: &[i64], out: &mut Vec<(i64, Member)>) {
        let inner = self.lock();
        for &account in accounts {
            for connection in inner.by_account.get(&account).into_iter().flatten() {
                if let Some(session) = inner.sessions.get(connection) {
                    out.push((
                        account,
                        Member {
                            recipient: Recipient {
                                connection: *connection,
                                since: session.since,
                            },
                            outbox: Arc::clone(&session.outbox),
                        },
                    ));
                }
            }
        }
    }

    /// Logged-in session `connection`, if it still is.
    pub fn member(&self, connection: ConnectionId) -> Option<Member> {
        let inner = self.lock();
        inner.sessions.get(&connection).map(|session| Member {
            recipient: Recipient {
                connection,
                since: session.since,
            },
            outbox: Arc::clone(&session.outbox),
        })
    }

    /// The online accounts, sorted by username regardless of case, once per
    /// account.
    pub fn who(&self) -> Vec<Person> {
        self.who_among(|_| true)
    }

    /// The online accounts among `accounts` (a room's members), sorted as
    /// [`Registry::who`].
    pub fn who_of(&self, accounts: &[i64]) -> Vec<Person> {
        let accounts: HashSet<i64> = accounts.iter().copied().collect();
        self.who_among(|id| accounts.contains(&id))
    }

    fn who_among(&self, wanted: impl Fn(i64) -> bool) -> Vec<Person> {
        let mut online: Vec<Person> = self
            .lock()
            .presence
            .iter()
            .filter(|(id, _)| wanted(**id))
            .map(|(_, p)| Person {
                username: p.username.to_string(),
                full_name: p.full_name.clone(),
            })
            .collect();
        online.sort_by_key(|person| person.username.to_ascii_lowercase());
        online
    }

    /// How many sessions are logged in.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Tells connection `id` of `event`, if it is still here. Returns
    /// whether it was.
    pub fn notify(&self, id: ConnectionId, event: &Event) -> bool {
        let outbox = self.lock().connections.get(&id).cloned();
        outbox.is_some_and(|outbox| outbox.event(event))
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::testkit::{TestCodec, TestConn};

    /// Records what the registry reports.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, u64)>>);

    impl PresenceSink for Recorder {
        fn presence(&self, change: PresenceChange) {
            let what = match change.event {
                Event::Online(user) => format!("JOIN {user}"),
                Event::Offline(user) => format!("LEAVE {user}"),
                other => format!("{other:?}"),
            };
            self.0.lock().unwrap().push((what, change.origin));
        }
    }

    fn login(id: i64, name: &str) -> Login {
        Login {
            account_id: id,
            username: Arc::from(name),
            full_name: format!("{name} full"),
        }
    }

    fn outbox(id: u64) -> Arc<Outbox> {
        TestConn::new(id, TestCodec::new(1), 1024, 1 << 20).outbox
    }

    #[test]
    fn presence_changes_on_an_accounts_first_and_last_session_only() {
        let recorder = Arc::new(Recorder::default());
        let registry = Registry::new(recorder.clone());
        let ana = login(1, "ana");
        registry.log_in(10, &ana, &outbox(10), None);
        registry.log_in(11, &ana, &outbox(11), None);
        registry.log_in(12, &login(2, "Bea"), &outbox(12), None);
        assert_eq!(registry.session_count(), 3);
        let names: Vec<String> = registry.who().into_iter().map(|p| p.username).collect();
        assert_eq!(names, ["ana", "Bea"], "once per account, sorted regardless of case");
        registry.log_out(10);
        registry.log_out(11);
        registry.log_out(11);
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                ("JOIN ana".into(), 10),
                ("JOIN Bea".into(), 12),
                ("LEAVE ana".into(), 11)
            ]
        );
    }

    #[test]
    fn members_are_a_shared_snapshot_rebuilt_after_changes() {
        let registry = Registry::new(Arc::new(Recorder::default()));
        registry.log_in(1, &login(1, "ana"), &outbox(1), None);
        let first = registry.members();
        assert!(Arc::ptr_eq(&first, &registry.members()), "no change, same snapshot");
        registry.log_in(2, &login(2, "bea"), &outbox(2), None);
        let second = registry.members();
        assert_eq!(second.len(), 2);
        let ana = second.iter().find(|m| m.recipient.connection == 1).unwrap();
        let bea = second.iter().find(|m| m.recipient.connection == 2).unwrap();
        assert!(ana.recipient.since < bea.recipient.since, "logins are ordered");
    }
}

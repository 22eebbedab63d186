//! Being one node of several on one PostgreSQL database: the feed that
//! tails what every node stored, and the node's heartbeat.
//!
//! Every node delivers from the same log, in id order, its own messages
//! included, so every node delivers in the same order. The tail reads
//! "id > last delivered" from the database: ids become visible in the
//! order they were handed out (see `chat.pg.sql`), so the tail never skips
//! one. `LISTEN/NOTIFY` only wakes it early: a notification can be lost (a
//! listener that is reconnecting misses it for good), so the tail also
//! polls, and catches up from the table whatever happened. The journal's
//! own commits wake it at once, without the database's round trip.
//!
//! The heartbeat shows the node alive every second, ends the sessions of
//! nodes that stopped showing themselves (so their accounts go offline
//! within 10 s of a node's death), keeps the list of live nodes for
//! `/health/nodes`, and records logouts that failed while the database was
//! down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::event::{Event, Message, Target};
use super::feed::{Committed, Entry, Feed, PresenceChange, Subscriber, Then};
use super::presence::ClusterPresence;
use super::reply::ReplyTo;
use super::rooms::{MembershipChange, RoomRef};
use super::status::NodeStatus;
use crate::store::{ClusterStore, LogRow, Logged, Place, StoreError};

/// How often the tail reads the log when nothing woke it.
const POLL: Duration = Duration::from_millis(500);
/// Most log entries delivered as one batch.
const TAIL_BATCH: u32 = 1024;
/// How long the listener waits for an announcement before it checks
/// whether it should stop.
const LISTEN_WAIT: Duration = Duration::from_secs(1);
/// How often the node shows itself alive and looks for dead nodes.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not seen for this long has its sessions ended by the others: with
/// a heartbeat every second this ends them within 10 s of its death.
const DEAD_AFTER: Duration = Duration::from_secs(8);
/// Longest the tail waits for the journal to publish a batch with echoes.
const HOLD_LIMIT: Duration = Duration::from_secs(5);
/// How long to wait before trying a failed database again.
const RETRY: Duration = Duration::from_millis(500);

/// Delivery up to a position, and what waits for it.
#[derive(Default)]
struct Delivered {
    /// The id of the last log entry delivered.
    position: u64,
    /// What to do once the tail has delivered up to a position.
    waiting: Vec<(u64, Then)>,
}

/// The feed of one node of a cluster: the log of every node, tailed.
pub struct ClusterFeed {
    /// Where the log is.
    store: Arc<dyn ClusterStore>,
    /// This process's node instance: log entries it caused carry it, so the
    /// connection that sent a message is left out of its delivery.
    instance: String,
    /// The fan-out, set once it exists.
    subscriber: OnceLock<Arc<dyn Subscriber>>,
    /// Wakes the tail (the journal committed, or a notification came).
    wake: Sender<()>,
    /// The tail's end of `wake`, taken by the tail thread.
    woken: Mutex<Option<Receiver<()>>>,
    /// How far delivery has come.
    delivered: Mutex<Delivered>,
    /// Told whether the database answers, and the ids delivered.
    status: Arc<NodeStatus>,
    /// The echoes this node's senders asked for, by message id, until the
    /// tail reads their messages back from the log (which knows nothing of
    /// echoes).
    echoes: Mutex<HashMap<i64, ReplyTo>>,
    /// Whether the journal is committing a batch with echoes: the tail
    /// waits for its publication before reading the log.
    held: Mutex<bool>,
    /// Signalled when `held` turns false.
    released: Condvar,
}

impl ClusterFeed {
    /// A feed of node instance `instance` that starts delivering after log
    /// position `position` (the snapshot the node's view of the rooms was
    /// loaded from).
    pub fn new(store: Arc<dyn ClusterStore>, instance: String, position: u64, status: Arc<NodeStatus>) -> Arc<Self> {
        let (wake, woken) = crossbeam_channel::bounded(1);
        Arc::new(ClusterFeed {
            store,
            instance,
            subscriber: OnceLock::new(),
            wake,
            woken: Mutex::new(Some(woken)),
            delivered: Mutex::new(Delivered {
                position,
                waiting: Vec::new(),
            }),
            status,
            echoes: Mutex::new(HashMap::new()),
            held: Mutex::new(false),
            released: Condvar::new(),
        })
    }

    /// Sets the subscriber; a second call is ignored.
    pub fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        let _ = self.subscriber.set(subscriber);
    }

    fn delivered(&self) -> std::sync::MutexGuard<'_, Delivered> {
        self.delivered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads and delivers what the log holds after the last position, batch
    /// after batch. Returns whether the database answered.
    fn catch_up(&self) -> bool {
        loop {
            self.wait_unheld();
            let after = self.delivered().position;
            let rows = match self.store.log_after(after, TAIL_BATCH) {
                Ok(rows) => rows,
                Err(e) => {
                    log::debug!("the log cannot be read: {e}");
                    self.status.db_answered(false);
                    return false;
                }
            };
            self.status.db_answered(true);
            let Some(last) = rows.last().map(|row| row.id) else {
                return true;
            };
            let last = u64::try_from(last).unwrap_or(0);
            let batch = self.committed(rows);
            if let Some(subscriber) = self.subscriber.get() {
                subscriber.deliver(&batch);
            }
            let ready: Vec<Then> = {
                let mut delivered = self.delivered();
                delivered.position = last;
                let (ready, waiting): (Vec<_>, Vec<_>) =
                    delivered.waiting.drain(..).partition(|(position, _)| *position <= last);
                delivered.waiting = waiting;
                ready.into_iter().map(|(_, then)| then).collect()
            };
            for then in ready {
                then();
            }
        }
    }

    /// Waits while the journal commits a batch with echoes (bounded: a
    /// journal that never says it is done does not stop delivery).
    fn wait_unheld(&self) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .released
            .wait_timeout_while(held, HOLD_LIMIT, |held| *held)
            .unwrap_or_else(|p| p.into_inner());
    }

    /// The echoes waiting for their messages.
    fn echoes(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ReplyTo>> {
        self.echoes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Log rows as the fan-out delivers them.
    fn committed(&self, rows: Vec<LogRow>) -> Committed {
        let mut batch = Committed::default();
        for row in rows {
            let origin = match &row.origin {
                Some((instance, conn)) if *instance == self.instance => *conn,
                _ => 0,
            };
            let entry = match row.what {
                Logged::Message(stored) => {
                    self.status.saw_message(stored.id);
                    let target = match stored.place {
                        Place::Lobby => Target::Lobby,
                        Place::Room { id, name } => Target::Room {
                            id,
                            name: Arc::from(name),
                        },
                        Place::Account { id, username } => Target::Account {
                            id,
                            name: Arc::from(username),
                        },
                    };
                    let message = Message {
                        id: stored.id,
                        ts: stored.ts,
                        author_id: stored.user_id,
                        author: Arc::from(stored.username),
                        text: Arc::from(stored.body),
                        target,
                    };
                    let echo = if origin == 0 {
                        None
                    } else {
                        self.echoes().remove(&stored.id)
                    };
                    Entry::Message {
                        message: Arc::new(message),
                        origin,
                        echo,
                    }
                }
                Logged::Membership {
                    room,
                    room_name,
                    user,
                    username,
                    joined,
                } => Entry::Membership {
                    change: MembershipChange {
                        room: RoomRef {
                            id: room,
                            name: Arc::from(room_name),
                        },
                        account: user,
                        username: Arc::from(username),
                        joined,
                    },
                    origin,
                },
                Logged::Relay { file, ticket, addr } => match &row.origin {
                    Some((instance, conn)) if *instance == self.instance => Entry::Notice {
                        to: *conn,
                        event: Event::Relay { file, ticket, addr },
                    },
                    // Another node's session: not ours to tell.
                    _ => continue,
                },
                Logged::Presence { user, username, online } => {
                    let username = Arc::from(username);
                    Entry::Presence(PresenceChange {
                        event: if online {
                            Event::Online(username)
                        } else {
                            Event::Offline(username)
                        },
                        account: user,
                        origin,
                        change: u64::try_from(row.id).unwrap_or(0),
                        sessions: 0,
                    })
                }
            };
            batch.entries.push(entry);
        }
        // An echo whose message has gone by without it (its sender's node
        // restarted the tail, say) will never be wanted.
        let newest = batch
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message { message, .. } => Some(message.id),
                _ => None,
            })
            .max();
        if let Some(newest) = newest {
            let mut echoes = self.echoes();
            if !echoes.is_empty() {
                echoes.retain(|id, _| *id > newest);
            }
        }
        batch
    }
}

impl Feed for ClusterFeed {
    fn hold(&self, held: bool) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
        if !held {
            self.released.notify_all();
        }
    }

    /// Wakes the tail: what the journal just stored is in the log.
    fn publish(&self, batch: Committed) {
        let echoes: Vec<(i64, ReplyTo)> = batch
            .entries
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Message {
                    message,
                    echo: Some(to),
                    ..
                } => Some((message.id, to)),
                _ => None,
            })
            .collect();
        if !echoes.is_empty() {
            self.echoes().extend(echoes);
        }
        let _ = self.wake.try_send(());
    }

    fn when_delivered(&self, position: u64, then: Then) {
        let mut delivered = self.delivered();
        if position <= delivered.position {
            drop(delivered);
            then();
        } else {
            delivered.waiting.push((position, then));
            drop(delivered);
            let _ = self.wake.try_send(());
        }
    }
}

/// The threads of a node: tail, listener, heartbeat.
pub struct NodeThreads {
    /// Tells them to end.
    stop: Arc<AtomicBool>,
    /// Their handles.
    handles: Vec<JoinHandle<()>>,
    /// Where the node is recorded.
    store: Arc<dyn ClusterStore>,
    /// Its name and instance.
    name: String,
    /// Its instance.
    instance: String,
}

impl NodeThreads {
    /// Starts the tail of `feed`, its listener, and the heartbeat of node
    /// `name` (instance `instance`).
    ///
    /// # Errors
    /// When a thread cannot start.
    pub fn start(
        feed: &Arc<ClusterFeed>,
        presence: Arc<ClusterPresence>,
        name: String,
        status: Arc<NodeStatus>,
    ) -> std::io::Result<NodeThreads> {
        let stop = Arc::new(AtomicBool::new(false));
        let store = Arc::clone(&feed.store);
        let instance = feed.instance.clone();
        let woken = feed
            .woken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| std::io::Error::other("the tail was already started"))?;
        let mut handles = Vec::new();
        let tail_feed = Arc::clone(feed);
        let tail_stop = Arc::clone(&stop);
        handles.push(
            thread::Builder::new()
                .name("tail".into())
                .spawn(move || tail(&tail_feed, &woken, &tail_stop))?,
        );
        let listen_store = Arc::clone(&store);
        let wake = feed.wake.clone();
        let listen_stop = Arc::clone(&stop);
        handles.push(
            thread::Builder::new()
                .name("listen".into())
                .spawn(move || listen(listen_store.as_ref(), &wake, &listen_stop))?,
        );
        let beat_store = Arc::clone(&store);
        let beat_stop = Arc::clone(&stop);
        let (beat_name, beat_instance) = (name.clone(), instance.clone());
        handles.push(thread::Builder::new().name("heartbeat".into()).spawn(move || {
            heartbeat(
                beat_store.as_ref(),
                &beat_name,
                &beat_instance,
                &presence,
                &status,
                &beat_stop,
            )
        })?);
        Ok(NodeThreads {
            stop,
            handles,
            store,
            name,
            instance,
        })
    }

    /// Leaves the cluster in order: the node leaves the list of live nodes
    /// at once and its remaining sessions end (LEAVE for their accounts).
    pub fn leave(&self) {
        if let Err(e) = self.store.stop_node(&self.name, &self.instance) {
            log::warn!("could not record this node's stop (the others will notice it is gone): {e}");
        }
    }

    /// Stops the threads and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for handle in self.handles {
            if handle.join().is_err() {
                log::error!("a cluster thread panicked");
            }
        }
    }
}

/// The tail thread: deliver, then wait for a wake-up or the poll interval.
fn tail(feed: &ClusterFeed, woken: &Receiver<()>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let answered = feed.catch_up();
        let wait = if answered { POLL } else { RETRY };
        let _ = woken.recv_timeout(wait);
    }
    // Whatever was stored before the stop is delivered.
    feed.catch_up();
}

/// The listener thread: turns announcements into wake-ups.
fn listen(store: &dyn ClusterStore, wake: &Sender<()>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match store.wait_for_log(LISTEN_WAIT) {
            Ok(true) => {
                let _ = wake.try_send(());
            }
            Ok(false) => {}
            Err(e) => {
                log::debug!("listening for the log failed: {e}");
                thread::sleep(RETRY);
            }
        }
    }
}

/// The heartbeat thread.
fn heartbeat(
    store: &dyn ClusterStore,
    name: &str,
    instance: &str,
    presence: &ClusterPresence,
    status: &NodeStatus,
    stop: &AtomicBool,
) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let beat: Result<(), StoreError> = (|| {
            if !store.heartbeat(name, instance)? {
                log::error!(
                    "node {name}: the database no longer lists this instance as live \
                     (it was silent for over 10 s); claiming the name again"
                );
                store.register_node(name, instance)?;
            }
            let ended = store.reap(DEAD_AFTER)?;
            if ended > 0 {
                log::info!("ended {ended} session(s) of nodes that stopped answering");
            }
            status.set_nodes(store.live_nodes()?);
            Ok(())
        })();
        status.db_answered(beat.is_ok());
        if let Err(e) = beat {
            log::debug!("heartbeat failed: {e}");
        } else {
            presence.retry_ends();
        }
        next += HEARTBEAT;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

//! What this node can say about itself, for `/health` (PROTOCOL.md 10.1):
//! whether its database answers, the highest message id it knows, and the
//! live nodes as last read. Atomics and a short lock only, so a health
//! check never waits for the chat or the database.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::store::NodeRow;

/// The node's own state, shared by the journal, the feed, the heartbeat and
/// the health endpoint.
#[derive(Default)]
pub struct NodeStatus {
    /// The last database operation failed (and none has succeeded since).
    db_down: AtomicBool,
    /// The highest message id this node has stored or delivered.
    last_id: AtomicI64,
    /// The live nodes, as the heartbeat last read them (cluster only).
    nodes: Mutex<Option<Vec<NodeRow>>>,
}

impl NodeStatus {
    /// A status with the database up and `last_id` known.
    pub fn new(last_id: i64) -> NodeStatus {
        NodeStatus {
            last_id: AtomicI64::new(last_id),
            ..NodeStatus::default()
        }
    }

    /// Records whether the last database operation worked. Logs the
    /// changes, not every call.
    pub fn db_answered(&self, ok: bool) {
        let was_down = self.db_down.swap(!ok, Ordering::AcqRel);
        if was_down && ok {
            log::info!("the database answers again");
        } else if !was_down && !ok {
            log::warn!("the database does not answer");
        }
    }

    /// Whether the database answered the last time it was asked.
    pub fn db_ok(&self) -> bool {
        !self.db_down.load(Ordering::Acquire)
    }

    /// Notes message `id` as stored or delivered here.
    pub fn saw_message(&self, id: i64) {
        self.last_id.fetch_max(id, Ordering::AcqRel);
    }

    /// The highest message id this node knows (0 when none).
    pub fn last_id(&self) -> i64 {
        self.last_id.load(Ordering::Acquire)
    }

    /// Keeps the live nodes as just read.
    pub fn set_nodes(&self, nodes: Vec<NodeRow>) {
        *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) = Some(nodes);
    }

    /// The live nodes as last read; `None` for a node alone (no cluster).
    pub fn nodes(&self) -> Option<Vec<NodeRow>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

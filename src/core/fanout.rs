//! Delivering committed batches to this process's sessions.
//!
//! For each batch the fan-out takes a snapshot of the logged-in sessions,
//! encodes the batch once per codec flavor among them (one shared
//! [`EncodedBatch`] per wire protocol in use, not one per recipient), and
//! pushes it to every session's outbox, which leaves out what is not for
//! that session (its own messages, presence from before its login). Pushes
//! never block: a session that cannot keep up is cut off by its own outbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::Flavor;
use super::event::Event;
use super::feed::{Committed, Entry, Subscriber};
use super::outbox::EncodedBatch;
use super::registry::{Member, Registry};

/// A fan-out slower than this is logged at debug level.
const SLOW_FAN_OUT: Duration = Duration::from_millis(20);

/// Delivers committed batches to the sessions in the registry.
pub struct Fanout {
    /// Where the logged-in sessions are.
    registry: Arc<Registry>,
}

impl Fanout {
    /// A fan-out to the sessions of `registry`.
    pub fn new(registry: Arc<Registry>) -> Arc<Fanout> {
        Arc::new(Fanout { registry })
    }
}

impl Subscriber for Fanout {
    fn deliver(&self, batch: &Committed) {
        if batch.entries.is_empty() {
            return;
        }
        let started = Instant::now();
        let members = self.registry.members();
        // Few flavors are ever in use at once: a list beats a map.
        let mut encoded: Vec<(Flavor, Arc<EncodedBatch>)> = Vec::with_capacity(2);
        for member in members.iter() {
            let flavor = member.outbox.codec().flavor();
            let lines = match encoded.iter().find(|(f, _)| *f == flavor) {
                Some((_, lines)) => lines,
                None => {
                    encoded.push((flavor, Arc::new(encode(member, batch))));
                    &encoded[encoded.len() - 1].1
                }
            };
            member.outbox.batch(lines, member.recipient);
        }
        let took = started.elapsed();
        if took > SLOW_FAN_OUT {
            log::debug!("fan-out to {} sessions took {} ms", members.len(), took.as_millis());
        }
    }
}

/// Encodes `batch` with `member`'s codec.
fn encode(member: &Member, batch: &Committed) -> EncodedBatch {
    let codec = member.outbox.codec();
    let mut lines = EncodedBatch::default();
    for entry in &batch.entries {
        match entry {
            Entry::Message { message, origin } => {
                let event = Event::Message(Arc::clone(message));
                lines.append(*origin, 0, |out| codec.event(&event, out));
            }
            Entry::Presence(change) => {
                lines.append(change.origin, change.change, |out| codec.event(&change.event, out));
            }
        }
    }
    lines
}

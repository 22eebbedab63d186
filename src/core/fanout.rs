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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Message;
    use crate::core::feed::{PresenceChange, PresenceSink};
    use crate::core::registry::Login;
    use crate::core::testkit::{TestCodec, TestConn};

    struct Nowhere;

    impl PresenceSink for Nowhere {
        fn presence(&self, _: PresenceChange) {}
    }

    fn message(id: i64, author: &str, origin: u64) -> Entry {
        Entry::Message {
            message: Arc::new(Message {
                id,
                ts: 1,
                author: Arc::from(author),
                text: Arc::from(format!("m{id}")),
            }),
            origin,
        }
    }

    #[test]
    fn a_batch_is_encoded_once_per_flavor_and_reaches_everyone_but_its_author() {
        let registry = Arc::new(Registry::new(Arc::new(Nowhere)));
        let (charla, other) = (TestCodec::new(1), TestCodec::new(2));
        let conns: Vec<TestConn> = [(1, charla.clone()), (2, charla.clone()), (3, other.clone())]
            .into_iter()
            .map(|(id, codec)| TestConn::new(id, codec, 1 << 16, 1 << 20))
            .collect();
        for (i, conn) in conns.iter().enumerate() {
            let id = i as u64 + 1;
            let login = Login {
                account_id: id as i64,
                username: Arc::from(format!("u{id}")),
                full_name: String::new(),
            };
            registry.log_in(id, &login, &conn.outbox);
            conn.outbox.open_events();
        }
        let fanout = Fanout::new(registry);
        fanout.deliver(&Committed {
            entries: vec![message(10, "u1", 1), message(11, "u2", 2)],
        });
        assert_eq!(
            charla.encoded(),
            2,
            "two entries, encoded once for both sessions of flavor 1"
        );
        assert_eq!(other.encoded(), 2);
        assert_eq!(conns[0].lines(1), ["MSG 11 u2 m11"]);
        assert_eq!(conns[1].lines(1), ["MSG 10 u1 m10"]);
        assert_eq!(conns[2].lines(2), ["MSG 10 u1 m10", "MSG 11 u2 m11"]);
    }
}

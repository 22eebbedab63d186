//! Delivering committed batches to this process's sessions.
//!
//! For each batch the fan-out works out who hears of each entry: everyone
//! for lobby messages and presence; a room's members for its messages and
//! membership changes (applied to the [`Rooms`] view here, in commit
//! order); author and addressee for a private message. It encodes the batch
//! once per codec flavor among the recipients (one shared [`EncodedBatch`]
//! per wire protocol in use, not one per recipient) and pushes it to each
//! recipient's outbox, which leaves out what is not for that session. A
//! batch with nothing for everyone touches only the outboxes of the
//! sessions it names: a message to a room of ten costs ten pushes, however
//! many sessions are online. Pushes never block: a session that cannot keep
//! up is cut off by its own outbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::{Codec, Flavor};
use super::event::{Event, Target};
use super::feed::{Committed, ConnectionId, Entry, Subscriber};
use super::outbox::{EncodedBatch, Targeted};
use super::registry::{Member, Registry};
use super::rooms::Rooms;

/// A fan-out slower than this is logged at debug level.
const SLOW_FAN_OUT: Duration = Duration::from_millis(20);

/// Delivers committed batches to the sessions in the registry.
pub struct Fanout {
    /// Where the logged-in sessions are.
    registry: Arc<Registry>,
    /// Who is in which room; changed here, in commit order.
    rooms: Arc<Rooms>,
}

impl Fanout {
    /// A fan-out to the sessions of `registry`, by the membership of
    /// `rooms`.
    pub fn new(registry: Arc<Registry>, rooms: Arc<Rooms>) -> Arc<Fanout> {
        Arc::new(Fanout { registry, rooms })
    }

    /// Who hears of each entry: `None` for everyone, else the accounts.
    /// Membership changes take effect here, in order.
    fn audiences(&self, batch: &Committed) -> Vec<Option<Vec<i64>>> {
        batch
            .entries
            .iter()
            .map(|entry| match entry {
                Entry::Message { message, .. } => match &message.target {
                    Target::Lobby => None,
                    Target::Room { id, .. } => Some(self.rooms.members(*id)),
                    Target::Account { id, .. } if *id == message.author_id => Some(vec![*id]),
                    Target::Account { id, .. } => Some(vec![message.author_id, *id]),
                },
                Entry::Presence(_) => None,
                Entry::Membership { change, .. } => Some(self.rooms.apply(change)),
                // Told directly, outside the batch.
                Entry::Notice { .. } => Some(Vec::new()),
            })
            .collect()
    }

    /// The sessions of the accounts named in `audiences`, and for each the
    /// indexes of the entries it receives (never those it caused).
    fn targets(&self, batch: &Committed, audiences: &[Option<Vec<i64>>]) -> (Targeted, Vec<Member>) {
        let mut accounts: Vec<i64> = audiences.iter().flatten().flatten().copied().collect();
        if accounts.is_empty() {
            return (Targeted::new(), Vec::new());
        }
        accounts.sort_unstable();
        accounts.dedup();
        let mut sessions = Vec::new();
        self.registry.sessions_of(&accounts, &mut sessions);
        let mut by_account: HashMap<i64, Vec<&Member>> = HashMap::new();
        for (account, member) in &sessions {
            by_account.entry(*account).or_default().push(member);
        }
        let mut targeted = Targeted::new();
        let mut touched: Vec<Member> = Vec::new();
        for (i, (entry, audience)) in batch.entries.iter().zip(audiences).enumerate() {
            let Some(audience) = audience else { continue };
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            for member in audience.iter().filter_map(|a| by_account.get(a)).flatten() {
                let connection = member.recipient.connection;
                if connection == origin(entry) {
                    continue;
                }
                let entries = targeted.entry(connection).or_insert_with(|| {
                    touched.push((*member).clone());
                    Vec::new()
                });
                entries.push(index);
            }
        }
        (targeted, touched)
    }
}

/// The connection that caused an entry.
fn origin(entry: &Entry) -> ConnectionId {
    match entry {
        Entry::Message { origin, .. } | Entry::Membership { origin, .. } => *origin,
        Entry::Presence(change) => change.origin,
        Entry::Notice { .. } => 0,
    }
}

impl Subscriber for Fanout {
    fn deliver(&self, batch: &Committed) {
        if batch.entries.is_empty() {
            return;
        }
        let started = Instant::now();
        for entry in &batch.entries {
            if let Entry::Notice { to, event } = entry {
                self.registry.notify(*to, event);
            }
        }
        let audiences = self.audiences(batch);
        let for_everyone = audiences.iter().any(Option::is_none);
        let (targeted, touched) = self.targets(batch, &audiences);
        let targeted = Arc::new(targeted);
        let everyone;
        let recipients: &[Member] = if for_everyone {
            everyone = self.registry.members();
            &everyone
        } else {
            &touched
        };
        // Few flavors are ever in use at once: a list beats a map.
        let mut encoded: Vec<(Flavor, Arc<EncodedBatch>)> = Vec::with_capacity(2);
        for member in recipients {
            let codec = member.outbox.codec();
            let flavor = codec.flavor();
            let lines = match encoded.iter().find(|(f, _)| *f == flavor) {
                Some((_, lines)) => lines,
                None => {
                    let lines = encode(codec.as_ref(), batch, &audiences, Arc::clone(&targeted));
                    encoded.push((flavor, Arc::new(lines)));
                    &encoded[encoded.len() - 1].1
                }
            };
            member.outbox.batch(lines, member.recipient);
        }
        let took = started.elapsed();
        if took > SLOW_FAN_OUT {
            log::debug!("fan-out to {} sessions took {} ms", recipients.len(), took.as_millis());
        }
    }
}

/// Encodes `batch` with `codec`.
fn encode(
    codec: &dyn Codec,
    batch: &Committed,
    audiences: &[Option<Vec<i64>>],
    targeted: Arc<Targeted>,
) -> EncodedBatch {
    let mut lines = EncodedBatch::new(targeted);
    for (entry, audience) in batch.entries.iter().zip(audiences) {
        let event = match entry {
            Entry::Notice { .. } => {
                lines.append_targeted(|_| {});
                continue;
            }
            Entry::Message { message, .. } => Event::Message(Arc::clone(message)),
            Entry::Presence(change) => change.event.clone(),
            Entry::Membership { change, .. } => {
                let (room, user) = (Arc::clone(&change.room.name), Arc::clone(&change.username));
                if change.joined {
                    Event::Enter { room, user }
                } else {
                    Event::Exit { room, user }
                }
            }
        };
        let write = |out: &mut Vec<u8>| codec.event(&event, out);
        match (audience, entry) {
            (Some(_), _) => lines.append_targeted(write),
            (None, Entry::Presence(change)) => lines.append(change.origin, change.change, write),
            (None, entry) => lines.append(origin(entry), 0, write),
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
    use crate::core::rooms::{MembershipChange, RoomRef};
    use crate::core::testkit::{TestCodec, TestConn};

    struct Nowhere;

    impl PresenceSink for Nowhere {
        fn presence(&self, _: PresenceChange) {}
    }

    fn message_of(id: i64, author: &str, author_id: i64) -> Message {
        Message {
            id,
            ts: 1,
            author_id,
            author: Arc::from(author),
            text: Arc::from(format!("m{id}")),
            target: Target::Lobby,
        }
    }

    fn message(id: i64, author: &str, origin: u64) -> Entry {
        Entry::Message {
            message: Arc::new(message_of(id, author, origin as i64)),
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
            registry.log_in(id, &login, &conn.outbox, None);
            conn.outbox.open_events();
        }
        let fanout = Fanout::new(registry, Arc::new(Rooms::new(Vec::new())));
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

    #[test]
    fn a_room_message_touches_only_its_members_outboxes() {
        let registry = Arc::new(Registry::new(Arc::new(Nowhere)));
        let rooms = Arc::new(Rooms::new(Vec::new()));
        let codec = TestCodec::new(1);
        // Accounts 1 and 2 join a room; 3 and 4 are only in the lobby.
        let conns: Vec<TestConn> = (1..=4)
            .map(|id| TestConn::new(id, codec.clone(), 1 << 16, 1 << 20))
            .collect();
        for (i, conn) in conns.iter().enumerate() {
            let id = i as i64 + 1;
            let login = Login {
                account_id: id,
                username: Arc::from(format!("u{id}")),
                full_name: String::new(),
            };
            registry.log_in(id as u64, &login, &conn.outbox, None);
            conn.outbox.open_events();
        }
        let fanout = Fanout::new(registry, Arc::clone(&rooms));
        let room = RoomRef {
            id: 7,
            name: Arc::from("#sala"),
        };
        let enter = |account: i64| Entry::Membership {
            change: MembershipChange {
                room: room.clone(),
                account,
                username: Arc::from(format!("u{account}")),
                joined: true,
            },
            origin: account as u64,
        };
        fanout.deliver(&Committed {
            entries: vec![enter(1), enter(2)],
        });
        let in_room = Entry::Message {
            message: Arc::new(Message {
                target: Target::Room {
                    id: 7,
                    name: Arc::from("#sala"),
                },
                ..message_of(10, "u1", 1)
            }),
            origin: 1,
        };
        let private = Entry::Message {
            message: Arc::new(Message {
                target: Target::Account {
                    id: 4,
                    name: Arc::from("u4"),
                },
                ..message_of(11, "u3", 3)
            }),
            origin: 3,
        };
        fanout.deliver(&Committed {
            entries: vec![in_room, private],
        });
        assert_eq!(conns[0].lines(1), ["ENTER #sala u2"]);
        assert_eq!(conns[1].lines(1), ["POST 10 #sala u1 m10"]);
        assert_eq!(conns[3].lines(1), ["POST 11 @u4 u3 m11"]);
        assert_eq!(
            conns[2].transport.take_output(),
            "",
            "the sender's own session gets no event"
        );
        assert_eq!(conns[0].transport.take_output(), "", "nothing more for u1");
    }
}

//! Delivering committed batches to this process's sessions.
//!
//! For each batch the fan-out works out who hears of each entry: everyone
//! for lobby messages and presence; a room's members for its messages and
//! membership changes (applied to the [`Rooms`] view here, in commit
//! order); author and addressee for a private message. An account coming
//! online is also told, room by room, to the members of its rooms
//! ([`Event::Arrived`]), for front ends whose presence is per room (IRC).
//! It encodes the batch once per codec flavor among the recipients (one
//! shared [`EncodedBatch`] per wire protocol in use, not one per recipient)
//! and pushes it to each recipient's outbox, which leaves out what is not
//! for that session. A batch with nothing for everyone touches only the
//! outboxes of the sessions it names: a message to a room of ten costs ten
//! pushes, however many sessions are online. Pushes never block: a session
//! that cannot keep up is cut off by its own outbox.

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

/// One event of a batch and who hears of it.
struct Delivery {
    /// What they are told.
    event: Event,
    /// `None`: everyone; else these accounts' sessions.
    audience: Option<Vec<i64>>,
    /// For an echo: the one connection told (its audience is empty).
    only: Option<ConnectionId>,
    /// The connection that caused it, which is not told.
    origin: ConnectionId,
    /// For presence, the registry's change number: only sessions logged in
    /// before it are told (0: no such rule).
    change: u64,
}

impl Fanout {
    /// A fan-out to the sessions of `registry`, by the membership of
    /// `rooms`.
    pub fn new(registry: Arc<Registry>, rooms: Arc<Rooms>) -> Arc<Fanout> {
        Arc::new(Fanout { registry, rooms })
    }

    /// The deliveries of `batch`, in order. Membership changes take effect
    /// here, in order; notices are not among them (told directly).
    fn deliveries(&self, batch: &Committed) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(batch.entries.len());
        for entry in &batch.entries {
            match entry {
                Entry::Message { message, origin, echo } => {
                    out.push(Delivery {
                        audience: match &message.target {
                            Target::Lobby => None,
                            Target::Room { id, .. } => Some(self.rooms.members(*id)),
                            Target::Account { id, .. } if *id == message.author_id => Some(vec![*id]),
                            Target::Account { id, .. } => Some(vec![message.author_id, *id]),
                        },
                        event: Event::Message(Arc::clone(message)),
                        origin: *origin,
                        only: None,
                        change: 0,
                    });
                    if let Some(to) = echo {
                        out.push(Delivery {
                            event: Event::Echo {
                                message: Arc::clone(message),
                                to: to.clone(),
                            },
                            audience: Some(Vec::new()),
                            origin: 0,
                            only: Some(*origin),
                            change: 0,
                        });
                    }
                }
                Entry::Presence(change) => {
                    out.push(Delivery {
                        event: change.event.clone(),
                        audience: None,
                        origin: change.origin,
                        only: None,
                        change: change.change,
                    });
                    if let Event::Online(user) = &change.event {
                        for room in self.rooms.rooms_of(change.account) {
                            out.push(Delivery {
                                audience: Some(self.rooms.members(room.id)),
                                event: Event::Arrived {
                                    room: room.name,
                                    user: Arc::clone(user),
                                },
                                origin: change.origin,
                                only: None,
                                change: change.change,
                            });
                        }
                    }
                }
                Entry::Membership { change, origin } => {
                    let audience = self.rooms.apply(change);
                    let (room, user) = (Arc::clone(&change.room.name), Arc::clone(&change.username));
                    out.push(Delivery {
                        event: if change.joined {
                            Event::Enter { room, user }
                        } else {
                            Event::Exit { room, user }
                        },
                        audience: Some(audience),
                        origin: *origin,
                        only: None,
                        change: 0,
                    });
                }
                Entry::Notice { .. } => {}
            }
        }
        out
    }

    /// The sessions of the accounts named in the deliveries' audiences, and
    /// for each the indexes of the deliveries it receives (never those it
    /// caused, nor presence from before its login).
    fn targets(&self, deliveries: &[Delivery]) -> (Targeted, Vec<Member>) {
        let mut accounts: Vec<i64> = deliveries
            .iter()
            .filter_map(|d| d.audience.as_ref())
            .flatten()
            .copied()
            .collect();
        let echoes = deliveries.iter().any(|d| d.only.is_some());
        if accounts.is_empty() && !echoes {
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
        for (i, delivery) in deliveries.iter().enumerate() {
            let Some(audience) = &delivery.audience else { continue };
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(connection) = delivery.only {
                if let Some(member) = self.registry.member(connection) {
                    let entries = targeted.entry(connection).or_insert_with(|| {
                        touched.push(member.clone());
                        Vec::new()
                    });
                    entries.push(index);
                }
                continue;
            }
            for member in audience.iter().filter_map(|a| by_account.get(a)).flatten() {
                let to = member.recipient;
                if to.connection == delivery.origin || (delivery.change != 0 && to.since >= delivery.change) {
                    continue;
                }
                let entries = targeted.entry(to.connection).or_insert_with(|| {
                    touched.push((*member).clone());
                    Vec::new()
                });
                entries.push(index);
            }
        }
        (targeted, touched)
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
        let deliveries = self.deliveries(batch);
        if deliveries.is_empty() {
            return;
        }
        let for_everyone = deliveries.iter().any(|d| d.audience.is_none());
        let (targeted, touched) = self.targets(&deliveries);
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
                    let lines = encode(codec.as_ref(), &deliveries, Arc::clone(&targeted));
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

/// Encodes `deliveries` with `codec`.
fn encode(codec: &dyn Codec, deliveries: &[Delivery], targeted: Arc<Targeted>) -> EncodedBatch {
    let mut lines = EncodedBatch::new(targeted);
    for delivery in deliveries {
        let write = |out: &mut Vec<u8>| codec.event(&delivery.event, out);
        match delivery.audience {
            Some(_) => lines.append_targeted(write),
            None => lines.append(delivery.origin, delivery.change, write),
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
            echo: None,
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
            echo: None,
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
            echo: None,
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

    #[test]
    fn an_account_coming_online_is_told_room_by_room_to_codecs_that_show_it() {
        let registry = Arc::new(Registry::new(Arc::new(Nowhere)));
        let rooms = Arc::new(Rooms::new(Vec::new()));
        let (charla, irc) = (TestCodec::new(1), TestCodec::with_arrivals(2));
        // u2 (IRC) shares #sala with u1; u3 (IRC) and u4 (charla) do not.
        let conns: Vec<TestConn> = [(2, irc.clone()), (3, irc.clone()), (4, charla.clone())]
            .into_iter()
            .map(|(id, codec)| TestConn::new(id, codec, 1 << 16, 1 << 20))
            .collect();
        for (conn, id) in conns.iter().zip(2u64..) {
            let login = Login {
                account_id: id as i64,
                username: Arc::from(format!("u{id}")),
                full_name: String::new(),
            };
            registry.log_in(id, &login, &conn.outbox, None);
            conn.outbox.open_events();
        }
        let fanout = Fanout::new(Arc::clone(&registry), Arc::clone(&rooms));
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
            origin: 99,
        };
        fanout.deliver(&Committed {
            entries: vec![enter(1), enter(2)],
        });
        assert_eq!(conns[0].lines(1), ["ENTER #sala u2"]);
        let online = Entry::Presence(PresenceChange {
            event: Event::Online(Arc::from("u1")),
            account: 1,
            origin: 1,
            change: 100,
            sessions: 3,
        });
        fanout.deliver(&Committed { entries: vec![online] });
        assert_eq!(conns[0].lines(2), ["JOIN u1", "ARRIVED #sala u1"]);
        assert_eq!(conns[1].lines(1), ["JOIN u1"]);
        assert_eq!(conns[2].lines(1), ["JOIN u1"]);
        for conn in &conns {
            assert_eq!(conn.transport.take_output(), "");
        }
        // A session that logged in after the change is told nothing of it.
        let late = Entry::Presence(PresenceChange {
            event: Event::Online(Arc::from("u1")),
            account: 1,
            origin: 1,
            change: 1,
            sessions: 3,
        });
        fanout.deliver(&Committed { entries: vec![late] });
        assert_eq!(conns[0].transport.take_output(), "");
    }

    #[test]
    fn an_echo_reaches_only_its_sender_at_its_place() {
        let registry = Arc::new(Registry::new(Arc::new(Nowhere)));
        let codec = TestCodec::new(1);
        let conns: Vec<TestConn> = (1..=2)
            .map(|id| TestConn::new(id, codec.clone(), 1 << 16, 1 << 20))
            .collect();
        for (conn, id) in conns.iter().zip(1u64..) {
            let login = Login {
                account_id: id as i64,
                username: Arc::from(format!("u{id}")),
                full_name: String::new(),
            };
            registry.log_in(id, &login, &conn.outbox, None);
            conn.outbox.open_events();
        }
        let fanout = Fanout::new(registry, Arc::new(Rooms::new(Vec::new())));
        let mut to = crate::core::reply::ReplyTo::new(None, Some("SEND"));
        to.echo = true;
        let echoed = Entry::Message {
            message: Arc::new(message_of(11, "u1", 1)),
            origin: 1,
            echo: Some(to),
        };
        fanout.deliver(&Committed {
            entries: vec![message(10, "u2", 2), echoed, message(12, "u2", 2)],
        });
        assert_eq!(conns[0].lines(3), ["MSG 10 u2 m10", "ECHO 11", "MSG 12 u2 m12"]);
        assert_eq!(conns[1].lines(1), ["MSG 11 u1 m11"]);
        assert_eq!(conns[1].transport.take_output(), "");
    }
}

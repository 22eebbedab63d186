//! The IRC codec: what the core tells an IRC connection without its
//! asking (stored messages, presence, membership, goodbye), and the replies
//! the journal queues for it later (a `PRIVMSG` once stored), as IRC lines.
//!
//! Events are encoded the same way for every connection with the same
//! message-tag capabilities, so the fan-out encodes each batch once per
//! such flavor. Every other answer an IRC client gets is written by the
//! front end itself ([`super::client`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::core::code::ErrorCode;
use crate::core::codec::{Codec, Flavor};
use crate::core::event::Event;
use crate::core::reply::{Reply, ReplyTo};
use crate::core::rooms::LOBBY;
use crate::proto::irc as wire;

use super::caps::{Cap, Caps};
use super::lines::{Response, message_lines, user_source};

/// IRC flavors are this plus the tag capabilities' bits, apart from
/// charla's own protocol's flavor.
const FLAVOR_BASE: u32 = 0x1000;

/// The capabilities that change how events look.
const TAG_CAPS: u32 = Cap::SERVER_TIME.bit() | Cap::MESSAGE_TAGS.bit();

/// What a `PRIVMSG` or `NOTICE` needs for its reply, which the journal
/// queues once the message is stored (or refused), or for its echo.
#[derive(Debug)]
pub struct Request {
    /// The command's `label` tag, if the client has `labeled-response`.
    pub label: Option<String>,
    /// A `NOTICE`: never answered with an error.
    pub notice: bool,
    /// The target as the client wrote it.
    pub target: String,
}

/// One IRC connection's codec: its server's name, its nick and its
/// capabilities, shared between the connection's thread (which changes
/// them) and whichever thread encodes its lines.
pub struct IrcCodec {
    /// The server's IRC name (the node name).
    server: Arc<str>,
    /// The client's nick: `*` until it has one, the username once
    /// registered.
    nick: RwLock<Arc<str>>,
    /// The enabled capabilities.
    pub caps: Caps,
    /// The last batch id handed out.
    batches: AtomicU64,
}

impl IrcCodec {
    /// The codec of a new connection to server `server`.
    pub fn new(server: &str) -> Arc<IrcCodec> {
        Arc::new(IrcCodec {
            server: Arc::from(server),
            nick: RwLock::new(Arc::from("*")),
            caps: Caps::default(),
            batches: AtomicU64::new(0),
        })
    }

    /// The server's IRC name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The client's nick now.
    pub fn nick(&self) -> Arc<str> {
        Arc::clone(&self.nick.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Changes the client's nick.
    pub fn set_nick(&self, nick: &str) {
        *self.nick.write().unwrap_or_else(PoisonError::into_inner) = Arc::from(nick);
    }

    /// A batch id not used before on this connection.
    pub fn batch_id(&self) -> String {
        format!("b{}", self.batches.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Writes `response` with this connection's capabilities.
    pub fn write(&self, response: Response, label: Option<&str>, group: Option<(&str, &str)>, out: &mut Vec<u8>) {
        response.write(&self.caps, label, &mut || self.batch_id(), group, out);
    }
}

/// Adds to `response` the refusal of a message to `target` for `code`: the
/// numeric IRC has for it, or a `NOTICE` that says why.
pub fn refuse_message(response: &mut Response, code: ErrorCode, target: &str) {
    match code {
        ErrorCode::NoSuchUser | ErrorCode::InvalidUsername => {
            response.numeric("401", &[target, "No such nick/channel"]);
        }
        ErrorCode::NoSuchRoom | ErrorCode::InvalidRoom => response.numeric("403", &[target, "No such channel"]),
        ErrorCode::NotMember => response.numeric("404", &[target, "Cannot send to channel"]),
        ErrorCode::BadRequest => response.numeric("401", &[target, "No such nick/channel"]),
        ErrorCode::RateLimited => {
            response.notice(&format!("Message to {target} not sent: too many messages, slow down"))
        }
        code => response.notice(&format!("Message to {target} not sent: {}", code.default_text())),
    }
}

impl Codec for IrcCodec {
    fn flavor(&self) -> Flavor {
        Flavor(FLAVOR_BASE | (self.caps.bits() & TAG_CAPS))
    }

    fn reply(&self, to: &ReplyTo, reply: &Reply, out: &mut Vec<u8>) {
        let request = to.front::<Request>();
        let nick = self.nick();
        let mut response = Response::new(&self.server, &nick);
        match reply {
            // With echo-message the message itself comes as an event, at
            // its place: the journal queues no reply then.
            Reply::Ok(_) => {}
            Reply::Err(_) if request.is_some_and(|r| r.notice) => {}
            Reply::Err(code) => {
                let target = request.map_or("*", |r| r.target.as_str());
                refuse_message(&mut response, *code, target);
            }
        }
        let label = request.and_then(|r| r.label.as_deref());
        self.write(response, label, None, out);
    }

    fn event(&self, event: &Event, out: &mut Vec<u8>) {
        match event {
            Event::Message(m) => message_lines(m).write(self.caps.bits() & TAG_CAPS, &[], out),
            Event::Echo { message, to } => {
                let label = to.front::<Request>().and_then(|r| r.label.as_deref());
                let extra: Vec<(&str, &str)> = label.map(|l| ("label", l)).into_iter().collect();
                message_lines(message).write(self.caps.bits() & TAG_CAPS, &extra, out);
            }
            Event::Online(user) => join(out, user, LOBBY),
            Event::Arrived { room, user } | Event::Enter { room, user } => join(out, user, room),
            Event::Exit { room, user } => {
                wire::write_line(out, &[], Some(&user_source(user)), "PART", &[room], false);
            }
            Event::Offline(user) => {
                wire::write_line(out, &[], Some(&user_source(user)), "QUIT", &["Quit"], true);
            }
            // Sharing files is for charla's own clients.
            Event::Relay { .. } => {}
            Event::Bye(code) => {
                let text = format!("Closing link: {}", code.default_text());
                wire::write_line(out, &[], None, "ERROR", &[&text], true);
            }
        }
    }
}

/// Writes `user`'s `JOIN` of `channel`.
fn join(out: &mut Vec<u8>, user: &str, channel: &str) {
    wire::write_line(out, &[], Some(&user_source(user)), "JOIN", &[channel], false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Message, Target};
    use crate::core::reply::Answer;

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    fn stored() -> Arc<Message> {
        Arc::new(Message {
            id: 7,
            ts: 0,
            author_id: 1,
            author: Arc::from("ana"),
            text: Arc::from("hola"),
            target: Target::Room {
                id: 3,
                name: Arc::from("#Clase"),
            },
        })
    }

    #[test]
    fn events_look_like_irc_and_flavors_follow_tag_capabilities() {
        let codec = IrcCodec::new("n1");
        let plain = codec.flavor();
        codec.caps.change(Cap::ECHO_MESSAGE.bit() | Cap::BATCH.bit(), 0);
        assert_eq!(codec.flavor(), plain, "echo and batch do not change events");
        let mut out = Vec::new();
        codec.event(&Event::Message(stored()), &mut out);
        codec.event(&Event::Online(Arc::from("bea")), &mut out);
        codec.event(
            &Event::Arrived {
                room: Arc::from("#Clase"),
                user: Arc::from("bea"),
            },
            &mut out,
        );
        codec.event(
            &Event::Exit {
                room: Arc::from("#Clase"),
                user: Arc::from("bea"),
            },
            &mut out,
        );
        codec.event(&Event::Offline(Arc::from("bea")), &mut out);
        codec.event(&Event::Bye(ErrorCode::ShuttingDown), &mut out);
        assert_eq!(
            text(out),
            ":ana!ana@charla PRIVMSG #Clase :hola\r\n\
             :bea!bea@charla JOIN #general\r\n\
             :bea!bea@charla JOIN #Clase\r\n\
             :bea!bea@charla PART #Clase\r\n\
             :bea!bea@charla QUIT :Quit\r\n\
             ERROR :Closing link: server is shutting down\r\n"
        );
        codec.caps.change(Cap::SERVER_TIME.bit(), 0);
        assert_ne!(codec.flavor(), plain);
    }

    #[test]
    fn a_stored_message_is_acknowledged_or_echoed_and_a_refusal_is_a_numeric_unless_a_notice() {
        let codec = IrcCodec::new("n1");
        codec.set_nick("ana");
        let request = |label: Option<&str>, notice| {
            ReplyTo::from_front(
                "SEND",
                Arc::new(Request {
                    label: label.map(str::to_string),
                    notice,
                    target: "#Clase".to_string(),
                }),
            )
        };
        let stored = Reply::Ok(Answer::Stored {
            id: 7,
            ts: 0,
            message: Some(stored()),
        });
        let mut out = Vec::new();
        codec.reply(&request(None, false), &stored, &mut out);
        assert_eq!(text(std::mem::take(&mut out)), "", "no echo-message: nothing");
        codec.caps.change(Cap::LABELED_RESPONSE.bit(), 0);
        codec.reply(&request(Some("l1"), false), &stored, &mut out);
        assert_eq!(text(std::mem::take(&mut out)), "@label=l1 :n1 ACK\r\n");
        // With echo-message the message comes as an event, labelled.
        codec.event(
            &Event::Echo {
                message: super::tests::stored(),
                to: request(Some("l2"), false),
            },
            &mut out,
        );
        assert_eq!(
            text(std::mem::take(&mut out)),
            "@label=l2 :ana!ana@charla PRIVMSG #Clase :hola\r\n"
        );
        let refused = Reply::Err(ErrorCode::NotMember);
        codec.reply(&request(None, false), &refused, &mut out);
        assert_eq!(
            text(std::mem::take(&mut out)),
            ":n1 404 ana #Clase :Cannot send to channel\r\n"
        );
        codec.reply(&request(None, true), &refused, &mut out);
        assert_eq!(text(out), "", "a NOTICE is never answered");
    }
}

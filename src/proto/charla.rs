//! charla's line protocol (docs/PROTOCOL.md): client lines to commands,
//! replies and events to lines, for the server; and server lines to
//! values, for clients.
//!
//! The server side is [`CharlaCodec`], the first wire protocol on the
//! protocol-neutral core, and [`parse_head`], which reads the tag and the
//! command name of a client line (the command table in
//! [`crate::core::commands`] does the rest). The client side is
//! [`ServerLine::parse`]. Both directions live together so the shape of a
//! line is defined once. Nothing here does I/O.

use std::io::Write as _;

use crate::core::code::ErrorCode;
use crate::core::codec::{Codec, Flavor};
use crate::core::event::{Event, Message, Target};
use crate::core::reply::{Answer, Reply, ReplyTo};
use crate::core::validate;

/// Protocol version announced in `HELLO`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The flavor of charla's line protocol: every charla session receives the
/// same bytes for the same events.
pub const FLAVOR: Flavor = Flavor(1);

/// A client line whose tag and command name are readable; its arguments
/// are not yet looked at.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// The `@TAG` without its `@`, echoed on the final reply.
    pub tag: Option<&'a str>,
    /// The command name as sent (ASCII letters, any case).
    pub name: &'a str,
    /// Everything after the single space that follows the name; `None`
    /// when the name ends the line.
    pub rest: Option<&'a str>,
}

/// Why a line has no usable head: it is answered `ERR - bad-request`, with
/// the tag when the tag itself was well formed.
#[derive(Debug, PartialEq, Eq)]
pub struct BadHead<'a> {
    /// The tag, when it was well formed.
    pub tag: Option<&'a str>,
}

/// Reads the tag and command name of a (non-blank, UTF-8) line.
///
/// # Errors
/// [`BadHead`] for a malformed tag (then without a tag) or a missing name
/// or one that is not all ASCII letters.
pub fn parse_head(line: &str) -> Result<Head<'_>, BadHead<'_>> {
    let (tag, body) = match line.strip_prefix('@') {
        Some(tagged) => {
            let (tag, body) = tagged.split_once(' ').unwrap_or((tagged, ""));
            if !validate::is_token(tag) {
                return Err(BadHead { tag: None });
            }
            (Some(tag), body)
        }
        None => (None, line),
    };
    let (name, rest) = match body.split_once(' ') {
        Some((name, rest)) => (name, Some(rest)),
        None => (body, None),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(BadHead { tag });
    }
    Ok(Head { tag, name, rest })
}

/// `HELLO charla 1 NODE`, the first line of every accepted connection.
pub fn hello(node: &str) -> Vec<u8> {
    format!("HELLO charla {PROTOCOL_VERSION} {node}\n").into_bytes()
}

/// charla's line protocol as a codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct CharlaCodec;

impl CharlaCodec {
    /// Writes `[@TAG ]OK VERB` (without the newline).
    fn ok_head(to: &ReplyTo, out: &mut Vec<u8>) {
        tag_prefix(to, out);
        out.extend_from_slice(b"OK ");
        out.extend_from_slice(to.verb.unwrap_or("-").as_bytes());
    }
}

/// Writes `@TAG ` when the command had a tag.
fn tag_prefix(to: &ReplyTo, out: &mut Vec<u8>) {
    if let Some(tag) = &to.tag {
        out.push(b'@');
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
    }
}

/// Appends a stored message: `MSG ID TS USER TEXT\n` for the lobby (as
/// version 1 has it), `POST ID TS TARGET USER TEXT\n` for a room or a
/// private message.
fn push_message(out: &mut Vec<u8>, m: &Message) {
    // Writing to a Vec cannot fail.
    match &m.target {
        Target::Lobby => {
            let _ = write!(out, "MSG {} {} ", m.id, m.ts);
        }
        Target::Room { name, .. } => {
            let _ = write!(out, "POST {} {} {name} ", m.id, m.ts);
        }
        Target::Account { name, .. } => {
            let _ = write!(out, "POST {} {} @{name} ", m.id, m.ts);
        }
    }
    out.extend_from_slice(m.author.as_bytes());
    out.push(b' ');
    out.extend_from_slice(m.text.as_bytes());
    out.push(b'\n');
}

/// Appends `WORD ROOM USER\n`.
fn push_membership(out: &mut Vec<u8>, word: &str, room: &str, user: &str) {
    let _ = writeln!(out, "{word} {room} {user}");
}

impl Codec for CharlaCodec {
    fn flavor(&self) -> Flavor {
        FLAVOR
    }

    fn reply(&self, to: &ReplyTo, reply: &Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Err(code) => {
                tag_prefix(to, out);
                out.extend_from_slice(b"ERR ");
                out.extend_from_slice(to.verb.unwrap_or("-").as_bytes());
                out.push(b' ');
                out.extend_from_slice(code.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(code.default_text().as_bytes());
            }
            Reply::Ok(Answer::Account { username, full_name }) => {
                CharlaCodec::ok_head(to, out);
                out.push(b' ');
                out.extend_from_slice(username.as_bytes());
                out.push(b' ');
                out.extend_from_slice(full_name.as_bytes());
            }
            Reply::Ok(Answer::Stored { id, ts, .. }) => {
                CharlaCodec::ok_head(to, out);
                let _ = write!(out, " {id} {ts}");
            }
            Reply::Ok(Answer::Messages(messages)) => {
                for m in messages {
                    push_message(out, m);
                }
                CharlaCodec::ok_head(to, out);
                let _ = write!(out, " {}", messages.len());
            }
            Reply::Ok(Answer::Room(name)) => {
                CharlaCodec::ok_head(to, out);
                out.push(b' ');
                out.extend_from_slice(name.as_bytes());
            }
            Reply::Ok(Answer::Rooms(rooms)) => {
                for room in rooms {
                    let flag = if room.member { '*' } else { '-' };
                    let _ = writeln!(out, "ROOM {} {} {flag}", room.name, room.members);
                }
                CharlaCodec::ok_head(to, out);
                let _ = write!(out, " {}", rooms.len());
            }
            Reply::Ok(Answer::People(people)) => {
                for person in people {
                    out.extend_from_slice(b"USER ");
                    out.extend_from_slice(person.username.as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(person.full_name.as_bytes());
                    out.push(b'\n');
                }
                CharlaCodec::ok_head(to, out);
                let _ = write!(out, " {}", people.len());
            }
            Reply::Ok(Answer::Pong(token)) => {
                CharlaCodec::ok_head(to, out);
                if let Some(token) = token {
                    out.push(b' ');
                    out.extend_from_slice(token.as_bytes());
                }
            }
            Reply::Ok(Answer::Done) => CharlaCodec::ok_head(to, out),
            Reply::Ok(Answer::Word(word)) => {
                CharlaCodec::ok_head(to, out);
                out.push(b' ');
                out.extend_from_slice(word.as_bytes());
            }
            Reply::Ok(Answer::Endpoint { addr, key }) => {
                CharlaCodec::ok_head(to, out);
                let _ = write!(out, " {addr} {key}");
            }
            Reply::Ok(Answer::Files(offers)) => {
                for offer in offers {
                    let _ = writeln!(
                        out,
                        "FILE {} {} {} {} {}",
                        offer.id, offer.size, offer.sha256, offer.owner, offer.name
                    );
                }
                CharlaCodec::ok_head(to, out);
                let _ = write!(out, " {}", offers.len());
            }
            Reply::Ok(Answer::Fetch { id, ticket, addr }) => {
                CharlaCodec::ok_head(to, out);
                let _ = write!(out, " {id} {ticket} {addr}");
            }
        }
        out.push(b'\n');
    }

    fn event(&self, event: &Event, out: &mut Vec<u8>) {
        match event {
            Event::Message(m) => push_message(out, m),
            // Presence is account-wide here: `JOIN USER` says it all.
            Event::Arrived { .. } => {}
            // charla's senders get `OK SAY`/`OK SEND`; they never ask for this.
            Event::Echo { .. } => {}
            Event::Enter { room, user } => push_membership(out, "ENTER", room, user),
            Event::Exit { room, user } => push_membership(out, "EXIT", room, user),
            Event::Online(user) => {
                out.extend_from_slice(b"JOIN ");
                out.extend_from_slice(user.as_bytes());
                out.push(b'\n');
            }
            Event::Offline(user) => {
                out.extend_from_slice(b"LEAVE ");
                out.extend_from_slice(user.as_bytes());
                out.push(b'\n');
            }
            Event::Relay { file, ticket, addr } => {
                let _ = writeln!(out, "RELAY {file} {ticket} {addr}");
            }
            Event::Bye(code) => {
                let _ = writeln!(out, "BYE {} {}", code.as_str(), code.default_text());
            }
        }
    }
}

/// A stored message, as a client reads it from `MSG` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// The message id: strictly increasing in storage order.
    pub id: i64,
    /// Milliseconds since the Unix epoch when it was stored.
    pub ts: i64,
    /// Author's username as registered.
    pub user: String,
    /// The trimmed text (may contain TAB).
    pub text: String,
}

/// A line received from the server, as a client understands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerLine {
    /// `HELLO charla VERSION NODE`.
    Hello {
        /// Protocol version the server speaks.
        version: String,
        /// Name of the server node.
        node: String,
    },
    /// `[@TAG ]OK VERB[ FIELDS]`.
    Ok {
        /// The tag of the command answered.
        tag: Option<String>,
        /// Canonical verb name.
        verb: String,
        /// Everything after the verb (may be empty).
        fields: String,
    },
    /// `[@TAG ]ERR VERB CODE TEXT`.
    Err {
        /// The tag of the command answered.
        tag: Option<String>,
        /// Canonical verb name or `-`.
        verb: String,
        /// Known code, or `None` for a code from a newer server.
        code: Option<ErrorCode>,
        /// The server's English explanation.
        text: String,
    },
    /// A `MSG` event or HISTORY body line (the lobby).
    Msg(ChatMessage),
    /// A `POST ID TS TARGET USER TEXT` event or body line: a room message
    /// (`TARGET` is `#ROOM`) or a private one (`TARGET` is `@USER`, the
    /// addressee).
    Post {
        /// `#ROOM` or `@USER`.
        target: String,
        /// The message; `user` is its author.
        message: ChatMessage,
    },
    /// `ENTER #ROOM USER`: an account joined a room.
    Enter {
        /// The room.
        room: String,
        /// The account.
        user: String,
    },
    /// `EXIT #ROOM USER`: an account left a room.
    Exit {
        /// The room.
        room: String,
        /// The account.
        user: String,
    },
    /// A `FILES` body line: `FILE FILEID SIZE SHA256 OWNER NAME`.
    File {
        /// The offer's id.
        id: String,
        /// The file's size.
        size: u64,
        /// Its SHA-256, hex.
        sha256: String,
        /// The offering username.
        owner: String,
        /// The file's name (may hold spaces).
        name: String,
    },
    /// `RELAY FILEID TICKET HOST:PORT`: bring that offer to the relay for
    /// that ticket.
    Relay {
        /// The offer's id.
        file: String,
        /// The fetcher's ticket.
        ticket: String,
        /// The relay.
        addr: String,
    },
    /// A `ROOMS` body line: `ROOM #NAME MEMBERS FLAG`.
    Room {
        /// The room.
        name: String,
        /// Its members, online or not.
        members: u64,
        /// Whether this account is one of them.
        member: bool,
    },
    /// A WHO body line: `USER username full name`.
    User {
        /// Username as registered.
        username: String,
        /// Full name.
        full_name: String,
    },
    /// `JOIN USER`.
    Join(String),
    /// `LEAVE USER`.
    Leave(String),
    /// `BYE CODE TEXT`.
    Bye {
        /// Known code, or `None`.
        code: Option<ErrorCode>,
        /// The server's English explanation.
        text: String,
    },
}

impl ServerLine {
    /// Parses one line (without its `\n`).
    ///
    /// # Errors
    /// `Err(())` for a line that is not a protocol-1 server line; the client
    /// reports it as a server fault.
    #[allow(clippy::result_unit_err)]
    pub fn parse(line: &str) -> Result<ServerLine, ()> {
        let (tag, body) = match line.strip_prefix('@') {
            Some(rest) => {
                let (tag, body) = rest.split_once(' ').ok_or(())?;
                (Some(tag.to_string()), body)
            }
            None => (None, line),
        };
        let (kind, rest) = body.split_once(' ').unwrap_or((body, ""));
        let mut fields = rest.splitn(4, ' ');
        let mut next = || fields.next().map(str::to_string).ok_or(());
        match kind {
            "OK" => {
                let (verb, fields) = rest.split_once(' ').unwrap_or((rest, ""));
                if verb.is_empty() {
                    return Err(());
                }
                Ok(ServerLine::Ok {
                    tag,
                    verb: verb.to_string(),
                    fields: fields.to_string(),
                })
            }
            "ERR" => {
                let mut parts = rest.splitn(3, ' ');
                let verb = parts.next().filter(|v| !v.is_empty()).ok_or(())?.to_string();
                let code = parts.next().ok_or(())?;
                let text = parts.next().unwrap_or("").to_string();
                Ok(ServerLine::Err {
                    tag,
                    verb,
                    code: ErrorCode::parse(code),
                    text,
                })
            }
            _ if tag.is_some() => Err(()),
            "HELLO" => {
                let _name = next()?;
                Ok(ServerLine::Hello {
                    version: next()?,
                    node: next()?,
                })
            }
            "MSG" => {
                let mut parts = rest.splitn(4, ' ');
                let id = parts.next().and_then(|s| s.parse().ok()).ok_or(())?;
                let ts = parts.next().and_then(|s| s.parse().ok()).ok_or(())?;
                let user = parts.next().ok_or(())?.to_string();
                let text = parts.next().ok_or(())?.to_string();
                Ok(ServerLine::Msg(ChatMessage { id, ts, user, text }))
            }
            "POST" => {
                let mut parts = rest.splitn(5, ' ');
                let id = parts.next().and_then(|s| s.parse().ok()).ok_or(())?;
                let ts = parts.next().and_then(|s| s.parse().ok()).ok_or(())?;
                let target = parts
                    .next()
                    .filter(|t| t.starts_with(['#', '@']))
                    .ok_or(())?
                    .to_string();
                let user = parts.next().ok_or(())?.to_string();
                let text = parts.next().ok_or(())?.to_string();
                Ok(ServerLine::Post {
                    target,
                    message: ChatMessage { id, ts, user, text },
                })
            }
            "ENTER" | "EXIT" => {
                let (room, user) = rest.split_once(' ').ok_or(())?;
                if !room.starts_with('#') || user.is_empty() || user.contains(' ') {
                    return Err(());
                }
                let (room, user) = (room.to_string(), user.to_string());
                Ok(if kind == "ENTER" {
                    ServerLine::Enter { room, user }
                } else {
                    ServerLine::Exit { room, user }
                })
            }
            "FILE" => {
                let mut parts = rest.splitn(5, ' ');
                let id = parts.next().filter(|i| validate::is_token(i)).ok_or(())?.to_string();
                let size = parts.next().and_then(|s| s.parse().ok()).ok_or(())?;
                let sha256 = parts.next().filter(|h| h.len() == 64).ok_or(())?.to_string();
                let owner = parts.next().filter(|o| !o.is_empty()).ok_or(())?.to_string();
                let name = parts.next().filter(|n| !n.is_empty()).ok_or(())?.to_string();
                Ok(ServerLine::File {
                    id,
                    size,
                    sha256,
                    owner,
                    name,
                })
            }
            "RELAY" => {
                let mut parts = rest.split(' ');
                let (Some(file), Some(ticket), Some(addr), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(());
                };
                if !validate::is_token(file) || ticket.is_empty() || addr.is_empty() {
                    return Err(());
                }
                Ok(ServerLine::Relay {
                    file: file.to_string(),
                    ticket: ticket.to_string(),
                    addr: addr.to_string(),
                })
            }
            "ROOM" => {
                let mut parts = rest.split(' ');
                let name = parts.next().filter(|n| n.starts_with('#')).ok_or(())?.to_string();
                let members = parts.next().and_then(|m| m.parse().ok()).ok_or(())?;
                let member = match parts.next() {
                    Some("*") => true,
                    Some("-") => false,
                    _ => return Err(()),
                };
                if parts.next().is_some() {
                    return Err(());
                }
                Ok(ServerLine::Room { name, members, member })
            }
            "USER" => {
                let (username, full_name) = rest.split_once(' ').ok_or(())?;
                Ok(ServerLine::User {
                    username: username.to_string(),
                    full_name: full_name.to_string(),
                })
            }
            "JOIN" if !rest.is_empty() => Ok(ServerLine::Join(rest.to_string())),
            "LEAVE" if !rest.is_empty() => Ok(ServerLine::Leave(rest.to_string())),
            "BYE" => {
                let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
                Ok(ServerLine::Bye {
                    code: ErrorCode::parse(code),
                    text: text.to_string(),
                })
            }
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::reply::Person;
    use crate::core::rooms::RoomListing;

    fn reply(tag: Option<&str>, verb: Option<&'static str>, reply: Reply) -> String {
        let mut out = Vec::new();
        CharlaCodec.reply(&ReplyTo::new(tag, verb), &reply, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn event(event: Event) -> String {
        let mut out = Vec::new();
        CharlaCodec.event(&event, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn message(id: i64, user: &str, text: &str) -> Message {
        Message {
            id,
            ts: 7,
            author_id: 1,
            author: Arc::from(user),
            text: Arc::from(text),
            target: Target::Lobby,
        }
    }

    #[test]
    fn encodes_the_example_lines() {
        assert_eq!(String::from_utf8(hello("node-1")).unwrap(), "HELLO charla 1 node-1\n");
        assert_eq!(
            reply(
                Some("m1"),
                Some("SAY"),
                Reply::Ok(Answer::Stored {
                    id: 41,
                    ts: 1764000000123,
                    message: None
                })
            ),
            "@m1 OK SAY 41 1764000000123\n"
        );
        assert_eq!(reply(None, Some("QUIT"), Reply::Ok(Answer::Done)), "OK QUIT\n");
        assert_eq!(
            reply(None, Some("LOGIN"), Reply::Err(ErrorCode::AlreadyLoggedIn)),
            "ERR LOGIN already-logged-in you are already logged in\n"
        );
        assert_eq!(
            reply(None, None, Reply::Err(ErrorCode::BadRequest)),
            "ERR - bad-request malformed command\n"
        );
        assert_eq!(
            reply(Some("p"), Some("PING"), Reply::Ok(Answer::Pong(Some("t1".into())))),
            "@p OK PING t1\n"
        );
        assert_eq!(
            event(Event::Message(Arc::new(message(41, "ana", "hola\ta todos")))),
            "MSG 41 7 ana hola\ta todos\n"
        );
        assert_eq!(event(Event::Online(Arc::from("ana"))), "JOIN ana\n");
        assert_eq!(event(Event::Offline(Arc::from("ana"))), "LEAVE ana\n");
        assert_eq!(
            event(Event::Bye(ErrorCode::ShuttingDown)),
            "BYE shutting-down server is shutting down\n"
        );
    }

    #[test]
    fn multi_line_replies_are_one_piece_ending_in_the_ok() {
        let history = Reply::Ok(Answer::Messages(vec![message(1, "ana", "a"), message(2, "juan", "b")]));
        assert_eq!(
            reply(Some("h"), Some("HISTORY"), history),
            "MSG 1 7 ana a\nMSG 2 7 juan b\n@h OK HISTORY 2\n"
        );
        let who = Reply::Ok(Answer::People(vec![Person {
            username: "ana".into(),
            full_name: "Ana María".into(),
        }]));
        assert_eq!(reply(None, Some("WHO"), who), "USER ana Ana María\nOK WHO 1\n");
    }

    #[test]
    fn rooms_and_private_messages_are_post_lines_and_the_lobby_stays_msg() {
        let room = Message {
            target: Target::Room {
                id: 3,
                name: Arc::from("#Clase"),
            },
            ..message(5, "ana", "hola sala")
        };
        let private = Message {
            target: Target::Account {
                id: 2,
                name: Arc::from("Bea"),
            },
            ..message(6, "ana", "hola Bea")
        };
        assert_eq!(
            event(Event::Message(Arc::new(room.clone()))),
            "POST 5 7 #Clase ana hola sala\n"
        );
        assert_eq!(event(Event::Message(Arc::new(private))), "POST 6 7 @Bea ana hola Bea\n");
        assert_eq!(
            reply(
                None,
                Some("HISTORY"),
                Reply::Ok(Answer::Messages(vec![message(4, "bea", "lobby"), room]))
            ),
            "MSG 4 7 bea lobby\nPOST 5 7 #Clase ana hola sala\nOK HISTORY 2\n"
        );
        assert_eq!(
            event(Event::Enter {
                room: Arc::from("#Clase"),
                user: Arc::from("bea")
            }),
            "ENTER #Clase bea\n"
        );
        assert_eq!(
            event(Event::Exit {
                room: Arc::from("#Clase"),
                user: Arc::from("bea")
            }),
            "EXIT #Clase bea\n"
        );
        assert_eq!(
            reply(Some("j"), Some("JOIN"), Reply::Ok(Answer::Room(Arc::from("#Clase")))),
            "@j OK JOIN #Clase\n"
        );
        let rooms = vec![
            RoomListing {
                name: Arc::from("#Clase"),
                members: 2,
                member: false,
            },
            RoomListing {
                name: Arc::from("#general"),
                members: 9,
                member: true,
            },
        ];
        let listed = reply(None, Some("ROOMS"), Reply::Ok(Answer::Rooms(rooms)));
        assert_eq!(listed, "ROOM #Clase 2 -\nROOM #general 9 *\nOK ROOMS 2\n");
        let parsed: Vec<ServerLine> = listed.lines().map(|l| ServerLine::parse(l).unwrap()).collect();
        assert_eq!(
            parsed[0],
            ServerLine::Room {
                name: "#Clase".into(),
                members: 2,
                member: false
            }
        );
        assert_eq!(
            ServerLine::parse("POST 6 7 @Bea ana hola  Bea"),
            Ok(ServerLine::Post {
                target: "@Bea".into(),
                message: ChatMessage {
                    id: 6,
                    ts: 7,
                    user: "ana".into(),
                    text: "hola  Bea".into()
                }
            })
        );
        assert_eq!(
            ServerLine::parse("ENTER #Clase bea"),
            Ok(ServerLine::Enter {
                room: "#Clase".into(),
                user: "bea".into()
            })
        );
        assert!(ServerLine::parse("POST 6 7 sala ana x").is_err());
        assert!(ServerLine::parse("ROOM #a 2 +").is_err());
    }

    #[test]
    fn heads_with_and_without_tags() {
        assert_eq!(
            parse_head("@m1 say hola"),
            Ok(Head {
                tag: Some("m1"),
                name: "say",
                rest: Some("hola")
            })
        );
        assert_eq!(parse_head("Who").map(|h| h.rest), Ok(None));
        assert_eq!(parse_head("@bad.tag PING"), Err(BadHead { tag: None }));
        assert_eq!(parse_head("@ PING"), Err(BadHead { tag: None }));
        assert_eq!(parse_head("@t"), Err(BadHead { tag: Some("t") }));
        assert_eq!(parse_head("SAY1 x"), Err(BadHead { tag: None }));
        assert_eq!(parse_head(" SAY x"), Err(BadHead { tag: None }));
        assert_eq!(parse_head("SAY\tx"), Err(BadHead { tag: None }));
    }

    #[test]
    fn every_encoded_line_parses_back() {
        let cases = vec![
            (
                String::from_utf8(hello("n")).unwrap(),
                ServerLine::Hello {
                    version: "1".into(),
                    node: "n".into(),
                },
            ),
            (event(Event::Online(Arc::from("ana"))), ServerLine::Join("ana".into())),
            (event(Event::Offline(Arc::from("ana"))), ServerLine::Leave("ana".into())),
            (
                event(Event::Bye(ErrorCode::SlowConsumer)),
                ServerLine::Bye {
                    code: Some(ErrorCode::SlowConsumer),
                    text: ErrorCode::SlowConsumer.default_text().into(),
                },
            ),
            (
                event(Event::Message(Arc::new(message(1, "ana", "a  b")))),
                ServerLine::Msg(ChatMessage {
                    id: 1,
                    ts: 7,
                    user: "ana".into(),
                    text: "a  b".into(),
                }),
            ),
            (
                reply(
                    Some("t"),
                    Some("LOGIN"),
                    Reply::Ok(Answer::Account {
                        username: Arc::from("ana"),
                        full_name: "Ana Ríos".into(),
                    }),
                ),
                ServerLine::Ok {
                    tag: Some("t".into()),
                    verb: "LOGIN".into(),
                    fields: "ana Ana Ríos".into(),
                },
            ),
            (
                reply(Some("t"), Some("SAY"), Reply::Err(ErrorCode::DbError)),
                ServerLine::Err {
                    tag: Some("t".into()),
                    verb: "SAY".into(),
                    code: Some(ErrorCode::DbError),
                    text: ErrorCode::DbError.default_text().into(),
                },
            ),
        ];
        for (wire, parsed) in cases {
            let s = wire.trim_end_matches('\n');
            assert_eq!(ServerLine::parse(s), Ok(parsed), "{s}");
        }
        assert_eq!(
            ServerLine::parse("USER ana Ana María"),
            Ok(ServerLine::User {
                username: "ana".into(),
                full_name: "Ana María".into()
            })
        );
        assert!(ServerLine::parse("NONSENSE").is_err());
        assert!(ServerLine::parse("MSG x 1 a b").is_err());
    }
}

//! What the server says: encoding of replies and events into wire lines for
//! the server, and parsing of those lines for clients.
//!
//! Both directions live together so the shape of a server line is defined
//! once. Encoded lines end in `\n` and are handed out as `Arc<[u8]>` so one
//! encoding can be shared by every recipient of a broadcast.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::code::ErrorCode;
use crate::command::Verb;

/// A complete, encoded server line (ending in `\n`), shareable between
/// every session it is delivered to.
pub type WireLine = Arc<[u8]>;

/// Protocol version announced in `HELLO`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A stored message, as a `MSG` event and `HISTORY` line carry it.
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

/// Builds one server line. Fields are joined by single spaces; the caller
/// guarantees they hold no newline (all come from validated values).
fn line(tag: Option<&str>, words: &[&str]) -> WireLine {
    let mut out = String::with_capacity(64);
    if let Some(tag) = tag {
        out.push('@');
        out.push_str(tag);
        out.push(' ');
    }
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.push('\n');
    Arc::from(out.into_bytes())
}

/// `[@TAG ]OK VERB[ FIELDS]`; `fields` is already space-joined (or empty).
pub fn ok(tag: Option<&str>, verb: Verb, fields: &str) -> WireLine {
    if fields.is_empty() {
        line(tag, &["OK", verb.name()])
    } else {
        line(tag, &["OK", verb.name(), fields])
    }
}

/// Appends an `OK` line to `out`, closing a multi-line reply (HISTORY, WHO)
/// that is queued as one piece so no event can come between its lines.
pub fn push_ok(out: &mut String, tag: Option<&str>, verb: Verb, fields: &str) {
    if let Some(tag) = tag {
        out.push('@');
        out.push_str(tag);
        out.push(' ');
    }
    out.push_str("OK ");
    out.push_str(verb.name());
    if !fields.is_empty() {
        out.push(' ');
        out.push_str(fields);
    }
    out.push('\n');
}

/// `[@TAG ]ERR VERB CODE TEXT`; `verb` is `None` for `-`.
pub fn err(tag: Option<&str>, verb: Option<Verb>, code: ErrorCode) -> WireLine {
    let verb = verb.map_or("-", Verb::name);
    line(tag, &["ERR", verb, code.as_str(), code.default_text()])
}

/// `HELLO charla 1 NODE`, the first line of every accepted connection.
pub fn hello(node: &str) -> WireLine {
    line(None, &["HELLO", "charla", &PROTOCOL_VERSION.to_string(), node])
}

/// `BYE CODE TEXT`.
pub fn bye(code: ErrorCode) -> WireLine {
    line(None, &["BYE", code.as_str(), code.default_text()])
}

/// `JOIN USER`.
pub fn join(user: &str) -> WireLine {
    line(None, &["JOIN", user])
}

/// `LEAVE USER`.
pub fn leave(user: &str) -> WireLine {
    line(None, &["LEAVE", user])
}

/// Appends `MSG ID TS USER TEXT\n` to `out` (used for events and for the
/// body of a HISTORY reply).
pub fn push_msg(out: &mut String, id: i64, ts: i64, user: &str, text: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "MSG {id} {ts} {user} {text}");
}

/// A `MSG` event line, encoded once for all recipients.
pub fn msg(id: i64, ts: i64, user: &str, text: &str) -> WireLine {
    let mut out = String::with_capacity(32 + user.len() + text.len());
    push_msg(&mut out, id, ts, user, text);
    Arc::from(out.into_bytes())
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
    /// A `MSG` event or HISTORY body line.
    Msg(ChatMessage),
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
    use super::*;

    fn text(line: &WireLine) -> &str {
        std::str::from_utf8(line).unwrap()
    }

    #[test]
    fn encodes_the_example_lines() {
        assert_eq!(text(&hello("node-1")), "HELLO charla 1 node-1\n");
        assert_eq!(
            text(&ok(Some("m1"), Verb::Say, "41 1764000000123")),
            "@m1 OK SAY 41 1764000000123\n"
        );
        assert_eq!(text(&ok(None, Verb::Quit, "")), "OK QUIT\n");
        assert_eq!(
            text(&err(None, Some(Verb::Login), ErrorCode::AlreadyLoggedIn)),
            "ERR LOGIN already-logged-in you are already logged in\n"
        );
        assert_eq!(
            text(&err(None, None, ErrorCode::BadRequest)),
            "ERR - bad-request malformed command\n"
        );
        assert_eq!(
            text(&msg(41, 7, "ana", "hola\ta todos")),
            "MSG 41 7 ana hola\ta todos\n"
        );
    }

    #[test]
    fn every_encoded_line_parses_back() {
        let cases: Vec<(WireLine, ServerLine)> = vec![
            (
                hello("n"),
                ServerLine::Hello {
                    version: "1".into(),
                    node: "n".into(),
                },
            ),
            (join("ana"), ServerLine::Join("ana".into())),
            (leave("ana"), ServerLine::Leave("ana".into())),
            (
                bye(ErrorCode::SlowConsumer),
                ServerLine::Bye {
                    code: Some(ErrorCode::SlowConsumer),
                    text: ErrorCode::SlowConsumer.default_text().into(),
                },
            ),
            (
                msg(1, 2, "ana", "a  b"),
                ServerLine::Msg(ChatMessage {
                    id: 1,
                    ts: 2,
                    user: "ana".into(),
                    text: "a  b".into(),
                }),
            ),
            (
                ok(Some("t"), Verb::Login, "ana Ana Ríos"),
                ServerLine::Ok {
                    tag: Some("t".into()),
                    verb: "LOGIN".into(),
                    fields: "ana Ana Ríos".into(),
                },
            ),
            (
                err(Some("t"), Some(Verb::Say), ErrorCode::DbError),
                ServerLine::Err {
                    tag: Some("t".into()),
                    verb: "SAY".into(),
                    code: Some(ErrorCode::DbError),
                    text: ErrorCode::DbError.default_text().into(),
                },
            ),
        ];
        for (wire, parsed) in cases {
            let s = text(&wire).trim_end_matches('\n');
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

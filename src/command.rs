//! What a client line asks for: the table of verbs and the parsing of a line
//! into a tag, a verb and typed arguments.
//!
//! Parsing is split the way PROTOCOL.md 2 orders its checks: [`parse_head`]
//! checks the line itself (tag and verb), the session then checks its state
//! against [`Verb::requirement`], and only then [`parse_args`] checks the
//! arguments' syntax. Value rules (5.1, 5.2) are left to [`crate::validate`]
//! and the handlers. Nothing here does I/O.

use crate::code::ErrorCode;
use crate::validate;

/// Largest `N` of `HISTORY N`.
pub const MAX_HISTORY: u32 = 1000;
/// `N` of a bare `HISTORY`.
pub const DEFAULT_HISTORY: u32 = 50;

/// A command verb of protocol version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Create an account and log in.
    Register,
    /// Log in to an existing account.
    Login,
    /// Store and broadcast a message.
    Say,
    /// Read stored messages.
    History,
    /// List the accounts online.
    Who,
    /// Check the connection.
    Ping,
    /// End the session (`QUIT` or `SALIR`).
    Quit,
}

/// In which session state a verb may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Only before login (`already-logged-in` after).
    LoggedOut,
    /// Only after login (`not-logged-in` before).
    LoggedIn,
    /// In every state.
    Any,
}

/// One row of the command table: everything the dispatcher needs to know
/// about a verb before calling its handler.
struct VerbSpec {
    /// How the verb is spelled on the wire (compared case-insensitively).
    name: &'static str,
    /// The verb it stands for (`SALIR` stands for `QUIT`).
    verb: Verb,
}

/// The command table. `Verb::requirement` and `parse_args` hold the other
/// two columns (state and argument shape) so each stays a plain `match`.
const VERBS: &[VerbSpec] = &[
    VerbSpec {
        name: "REGISTER",
        verb: Verb::Register,
    },
    VerbSpec {
        name: "LOGIN",
        verb: Verb::Login,
    },
    VerbSpec {
        name: "SAY",
        verb: Verb::Say,
    },
    VerbSpec {
        name: "HISTORY",
        verb: Verb::History,
    },
    VerbSpec {
        name: "WHO",
        verb: Verb::Who,
    },
    VerbSpec {
        name: "PING",
        verb: Verb::Ping,
    },
    VerbSpec {
        name: "QUIT",
        verb: Verb::Quit,
    },
    VerbSpec {
        name: "SALIR",
        verb: Verb::Quit,
    },
];

impl Verb {
    /// The canonical upper-case name used in replies (`salir` → `QUIT`).
    pub fn name(self) -> &'static str {
        match self {
            Verb::Register => "REGISTER",
            Verb::Login => "LOGIN",
            Verb::Say => "SAY",
            Verb::History => "HISTORY",
            Verb::Who => "WHO",
            Verb::Ping => "PING",
            Verb::Quit => "QUIT",
        }
    }

    /// The session state this verb needs (PROTOCOL.md 3).
    pub fn requirement(self) -> Requirement {
        match self {
            Verb::Register | Verb::Login => Requirement::LoggedOut,
            Verb::Say | Verb::History | Verb::Who => Requirement::LoggedIn,
            Verb::Ping | Verb::Quit => Requirement::Any,
        }
    }

    /// Finds a verb by its wire spelling, ignoring ASCII case.
    pub fn lookup(word: &str) -> Option<Verb> {
        VERBS
            .iter()
            .find(|spec| spec.name.eq_ignore_ascii_case(word))
            .map(|spec| spec.verb)
    }
}

/// A line whose tag and verb are known; its arguments are not yet parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// The `@TAG` without its `@`, echoed on the final reply.
    pub tag: Option<&'a str>,
    /// The command asked for.
    pub verb: Verb,
    /// Everything after the single space that follows the verb; `None` when
    /// the verb ends the line.
    pub rest: Option<&'a str>,
}

/// Why a line has no usable head: it is answered `ERR -` or with the tag.
#[derive(Debug, PartialEq, Eq)]
pub struct BadHead<'a> {
    /// The tag, when the tag itself was well formed (an unknown verb after a
    /// good tag is still answered with the tag).
    pub tag: Option<&'a str>,
}

/// Reads the tag and verb of a (non-blank, UTF-8) line.
///
/// # Errors
/// [`BadHead`] for a malformed tag (then without a tag) or a missing or
/// unknown verb; all are `bad-request` with verb `-`.
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
    let (word, rest) = match body.split_once(' ') {
        Some((word, rest)) => (word, Some(rest)),
        None => (body, None),
    };
    let verb = word
        .bytes()
        .all(|b| b.is_ascii_alphabetic())
        .then(|| Verb::lookup(word))
        .flatten()
        .ok_or(BadHead { tag })?;
    Ok(Head { tag, verb, rest })
}

/// A command with its arguments checked for syntax.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `REGISTER USER PASSWORD FULL NAME`; the name is untrimmed free text.
    Register {
        /// Wanted username, not yet validated.
        username: &'a str,
        /// Chosen password, not yet validated.
        password: &'a str,
        /// Free text, trimmed and validated by the handler.
        full_name: &'a str,
    },
    /// `LOGIN USER PASSWORD`.
    Login {
        /// Username as typed (matched regardless of case).
        username: &'a str,
        /// Password as typed.
        password: &'a str,
    },
    /// `SAY TEXT`; the text is untrimmed free text.
    Say {
        /// Free text, trimmed and validated by the handler.
        text: &'a str,
    },
    /// `HISTORY [N [BEFORE]]`.
    History {
        /// How many messages, 1 to [`MAX_HISTORY`].
        limit: u32,
        /// Only messages with an id below this one.
        before: Option<i64>,
    },
    /// `WHO`.
    Who,
    /// `PING [TOKEN]`.
    Ping {
        /// Echoed back in `OK PING`.
        token: Option<&'a str>,
    },
    /// `QUIT` / `SALIR`, any text after it ignored.
    Quit,
}

/// Parses the arguments of `head` by its verb's shape.
///
/// # Errors
/// `ErrorCode::BadRequest` for missing, extra or empty arguments and for
/// malformed numbers or tokens.
pub fn parse_args<'a>(head: &Head<'a>) -> Result<Command<'a>, ErrorCode> {
    const BAD: ErrorCode = ErrorCode::BadRequest;
    let rest = head.rest;
    match head.verb {
        Verb::Register => {
            let mut parts = rest.ok_or(BAD)?.splitn(3, ' ');
            let username = nonempty(parts.next())?;
            let password = nonempty(parts.next())?;
            let full_name = parts.next().ok_or(BAD)?;
            Ok(Command::Register {
                username,
                password,
                full_name,
            })
        }
        Verb::Login => match words(rest)?.as_slice() {
            [username, password] => Ok(Command::Login { username, password }),
            _ => Err(BAD),
        },
        Verb::Say => Ok(Command::Say { text: rest.ok_or(BAD)? }),
        Verb::History => {
            let (limit, before) = match words(rest)?.as_slice() {
                [] => (DEFAULT_HISTORY, None),
                [n] => (history_limit(n)?, None),
                [n, before] => (history_limit(n)?, Some(message_id(before)?)),
                _ => return Err(BAD),
            };
            Ok(Command::History { limit, before })
        }
        Verb::Who => match rest {
            None => Ok(Command::Who),
            Some(_) => Err(BAD),
        },
        Verb::Ping => match words(rest)?.as_slice() {
            [] => Ok(Command::Ping { token: None }),
            [token] if validate::is_token(token) => Ok(Command::Ping { token: Some(token) }),
            _ => Err(BAD),
        },
        Verb::Quit => Ok(Command::Quit),
    }
}

/// Splits single-space-separated arguments; an empty one is `bad-request`.
fn words(rest: Option<&str>) -> Result<Vec<&str>, ErrorCode> {
    match rest {
        None => Ok(Vec::new()),
        Some(rest) => rest.split(' ').map(|w| nonempty(Some(w))).collect(),
    }
}

fn nonempty(word: Option<&str>) -> Result<&str, ErrorCode> {
    word.filter(|w| !w.is_empty()).ok_or(ErrorCode::BadRequest)
}

/// Decimal digits with a value of 1 to [`MAX_HISTORY`].
fn history_limit(word: &str) -> Result<u32, ErrorCode> {
    match digits(word)? {
        n @ 1..=1000 => Ok(n as u32),
        _ => Err(ErrorCode::BadRequest),
    }
}

/// A positive message id in decimal digits.
fn message_id(word: &str) -> Result<i64, ErrorCode> {
    match digits(word)? {
        n @ 1.. => i64::try_from(n).map_err(|_| ErrorCode::BadRequest),
        _ => Err(ErrorCode::BadRequest),
    }
}

/// Plain decimal digits (no sign, no spaces) that fit a `u64`.
fn digits(word: &str) -> Result<u64, ErrorCode> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorCode::BadRequest);
    }
    word.parse().map_err(|_| ErrorCode::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Command<'_>, ErrorCode> {
        let head = parse_head(line).map_err(|_| ErrorCode::BadRequest)?;
        parse_args(&head)
    }

    #[test]
    fn heads_with_and_without_tags() {
        let head = parse_head("@m1 say hola").unwrap();
        assert_eq!(
            head,
            Head {
                tag: Some("m1"),
                verb: Verb::Say,
                rest: Some("hola")
            }
        );
        assert_eq!(parse_head("salir").unwrap().verb, Verb::Quit);
        assert_eq!(parse_head("Who").unwrap().rest, None);
    }

    #[test]
    fn bad_heads_keep_only_a_good_tag() {
        assert_eq!(parse_head("@bad.tag PING"), Err(BadHead { tag: None }));
        assert_eq!(parse_head("@ PING"), Err(BadHead { tag: None }));
        assert_eq!(parse_head("@t FROB"), Err(BadHead { tag: Some("t") }));
        assert_eq!(parse_head("@t"), Err(BadHead { tag: Some("t") }));
        assert_eq!(parse_head("SAY1 x"), Err(BadHead { tag: None }));
        assert_eq!(parse_head(" SAY x"), Err(BadHead { tag: None }));
        assert_eq!(parse_head("SAY\tx"), Err(BadHead { tag: None }));
    }

    #[test]
    fn register_takes_free_text_name() {
        assert_eq!(
            args("REGISTER ana s3cret-pass Ana María Ríos"),
            Ok(Command::Register {
                username: "ana",
                password: "s3cret-pass",
                full_name: "Ana María Ríos"
            })
        );
        assert_eq!(args("REGISTER ana pass"), Err(ErrorCode::BadRequest));
        assert_eq!(args("REGISTER ana  pass Ana"), Err(ErrorCode::BadRequest));
        assert!(matches!(
            args("REGISTER ana pass "),
            Ok(Command::Register { full_name: "", .. })
        ));
    }

    #[test]
    fn login_takes_exactly_two() {
        assert!(args("LOGIN ana x").is_ok());
        for bad in ["LOGIN", "LOGIN ana", "LOGIN ana x y", "LOGIN ana  x", "LOGIN ana x "] {
            assert_eq!(args(bad), Err(ErrorCode::BadRequest), "{bad}");
        }
    }

    #[test]
    fn say_needs_its_argument_but_not_a_nonempty_one() {
        assert_eq!(args("SAY"), Err(ErrorCode::BadRequest));
        assert_eq!(args("SAY "), Ok(Command::Say { text: "" }));
        assert_eq!(args("SAY  two"), Ok(Command::Say { text: " two" }));
    }

    #[test]
    fn history_numbers() {
        assert_eq!(
            args("HISTORY"),
            Ok(Command::History {
                limit: 50,
                before: None
            })
        );
        assert_eq!(
            args("HISTORY 007 12"),
            Ok(Command::History {
                limit: 7,
                before: Some(12)
            })
        );
        assert_eq!(
            args("HISTORY 1000"),
            Ok(Command::History {
                limit: 1000,
                before: None
            })
        );
        for bad in [
            "HISTORY 0",
            "HISTORY 1001",
            "HISTORY -1",
            "HISTORY +5",
            "HISTORY 5 0",
            "HISTORY x",
            "HISTORY 5 6 7",
            "HISTORY 99999999999999999999999",
            "HISTORY ",
        ] {
            assert_eq!(args(bad), Err(ErrorCode::BadRequest), "{bad}");
        }
    }

    #[test]
    fn who_ping_quit() {
        assert_eq!(args("WHO"), Ok(Command::Who));
        assert_eq!(args("WHO x"), Err(ErrorCode::BadRequest));
        assert_eq!(args("PING"), Ok(Command::Ping { token: None }));
        assert_eq!(args("PING abc-1"), Ok(Command::Ping { token: Some("abc-1") }));
        assert_eq!(args("PING a b"), Err(ErrorCode::BadRequest));
        assert_eq!(args("PING a.b"), Err(ErrorCode::BadRequest));
        assert_eq!(args("QUIT adiós a todos"), Ok(Command::Quit));
        assert_eq!(args("SALIR"), Ok(Command::Quit));
    }

    #[test]
    fn requirements_follow_the_state_table() {
        assert_eq!(Verb::Login.requirement(), Requirement::LoggedOut);
        assert_eq!(Verb::Who.requirement(), Requirement::LoggedIn);
        assert_eq!(Verb::Ping.requirement(), Requirement::Any);
    }
}

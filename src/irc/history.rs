//! `CHATHISTORY` (IRCv3 `draft/chathistory`): a conversation's stored
//! messages before, after, around or between references, or the latest,
//! oldest first, each with the `time` and `msgid` tags of a live message.
//! The reads are the core's ([`commands::read_history`]); this module reads
//! the subcommand and its references, and says `FAIL` in IRCv3's words.

use crate::core::code::ErrorCode;
use crate::core::commands::{self, MAX_HISTORY};
use crate::core::event::Message;
use crate::core::session::Session;
use crate::proto::irc as wire;
use crate::store::{Bound, Window};

use super::lines::{Response, message_lines};

/// A message reference of a subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reference {
    /// `*`: no reference (only `LATEST` takes it).
    Star,
    /// `msgid=ID` or `timestamp=TIME`.
    At(Bound),
}

/// Reads a reference.
fn reference(word: &str) -> Option<Reference> {
    if word == "*" {
        return Some(Reference::Star);
    }
    let (kind, value) = word.split_once('=')?;
    match kind {
        "msgid" => value
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(|id| Reference::At(Bound::Id(id))),
        "timestamp" => wire::parse_server_time(value).map(|ts| Reference::At(Bound::Ts(ts))),
        _ => None,
    }
}

/// A bound, moved to include the message it names (for `AROUND`).
fn including(bound: Bound) -> Bound {
    match bound {
        Bound::Id(id) => Bound::Id(id.saturating_sub(1)),
        Bound::Ts(ts) => Bound::Ts(ts.saturating_sub(1)),
    }
}

/// Whether `a` comes before `b` (references of different kinds cannot be
/// compared; they are taken in the order given).
fn before(a: Bound, b: Bound) -> bool {
    match (a, b) {
        (Bound::Id(a), Bound::Id(b)) | (Bound::Ts(a), Bound::Ts(b)) => a <= b,
        _ => true,
    }
}

/// Adds a `FAIL CHATHISTORY` line.
fn fail(response: &mut Response, code: &str, context: &[&str], text: &str) {
    let mut params = vec!["CHATHISTORY", code];
    params.extend_from_slice(context);
    params.push(text);
    response.line(None, "FAIL", &params, true);
}

/// Runs `CHATHISTORY` with `params` for `session`, adding its lines to
/// `response`; returns the conversation's name when the lines are messages
/// to send in a `chathistory` batch.
pub fn run(session: &mut Session<'_>, params: &[&str], response: &mut Response, caps: u32) -> Option<String> {
    let sub = params.first().map(|s| s.to_ascii_uppercase()).unwrap_or_default();
    let needed = match sub.as_str() {
        "LATEST" | "BEFORE" | "AFTER" | "AROUND" => 4,
        "BETWEEN" => 5,
        "TARGETS" => {
            fail(response, "INVALID_PARAMS", &["TARGETS"], "TARGETS is not offered");
            return None;
        }
        _ => {
            let shown = params.first().copied().unwrap_or("*");
            fail(response, "INVALID_PARAMS", &[shown], "Unknown subcommand");
            return None;
        }
    };
    if params.len() < needed {
        fail(response, "NEED_MORE_PARAMS", &[&sub], "Missing parameters");
        return None;
    }
    let target = params[1];
    let limit = match params[needed - 1].parse::<u32>() {
        Ok(0) => MAX_HISTORY,
        Ok(n) => n.min(MAX_HISTORY),
        Err(_) => {
            fail(response, "INVALID_PARAMS", &[&sub, params[needed - 1]], "Invalid limit");
            return None;
        }
    };
    let first = reference(params[2]);
    let second = if needed == 5 {
        reference(params[3])
    } else {
        Some(Reference::Star)
    };
    let (Some(first), Some(second)) = (first, second) else {
        fail(
            response,
            "INVALID_PARAMS",
            &[&sub, params[2]],
            "Invalid message reference",
        );
        return None;
    };
    let written = if target.starts_with('#') {
        target.to_string()
    } else {
        format!("@{target}")
    };
    let read = |session: &mut Session<'_>, limit: u32, window: Window| {
        commands::read_history(session, &written, limit, &window)
    };
    let result = match (sub.as_str(), first, second) {
        ("LATEST", Reference::Star, _) => read(session, limit, Window::latest(None)),
        ("LATEST", Reference::At(after), _) => read(
            session,
            limit,
            Window {
                after: Some(after),
                before: None,
                newest: true,
            },
        ),
        ("BEFORE", Reference::At(bound), _) => read(
            session,
            limit,
            Window {
                after: None,
                before: Some(bound),
                newest: true,
            },
        ),
        ("AFTER", Reference::At(bound), _) => read(
            session,
            limit,
            Window {
                after: Some(bound),
                before: None,
                newest: false,
            },
        ),
        ("AROUND", Reference::At(bound), _) => around(session, &written, limit, bound),
        ("BETWEEN", Reference::At(a), Reference::At(b)) => {
            let window = if before(a, b) {
                Window {
                    after: Some(a),
                    before: Some(b),
                    newest: false,
                }
            } else {
                Window {
                    after: Some(b),
                    before: Some(a),
                    newest: true,
                }
            };
            read(session, limit, window)
        }
        _ => {
            fail(
                response,
                "INVALID_PARAMS",
                &[&sub, params[2]],
                "Invalid message reference",
            );
            return None;
        }
    };
    match result {
        Ok((name, messages)) => {
            for message in &messages {
                response.message(&message_lines(message), caps);
            }
            Some(name.to_string())
        }
        Err(ErrorCode::DbError | ErrorCode::Internal) => {
            fail(
                response,
                "MESSAGE_ERROR",
                &[&sub, target],
                "Messages could not be retrieved",
            );
            None
        }
        Err(_) => {
            fail(
                response,
                "INVALID_TARGET",
                &[&sub, target],
                "No such conversation for you",
            );
            None
        }
    }
}

/// `AROUND`: up to `limit` messages centred on `bound`: the newest half
/// before it, then it and those after.
fn around(
    session: &mut Session<'_>,
    written: &str,
    limit: u32,
    bound: Bound,
) -> Result<(std::sync::Arc<str>, Vec<Message>), ErrorCode> {
    let earlier = limit / 2;
    let mut messages = Vec::new();
    let mut name = None;
    if earlier > 0 {
        let window = Window {
            after: None,
            before: Some(bound),
            newest: true,
        };
        let (found, before) = commands::read_history(session, written, earlier, &window)?;
        name = Some(found);
        messages = before;
    }
    let later = limit - u32::try_from(messages.len()).unwrap_or(earlier);
    let window = Window {
        after: Some(including(bound)),
        before: None,
        newest: false,
    };
    let (found, after) = commands::read_history(session, written, later.max(1), &window)?;
    messages.extend(after);
    Ok((name.unwrap_or(found), messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_star_msgid_or_timestamp() {
        assert_eq!(reference("*"), Some(Reference::Star));
        assert_eq!(reference("msgid=42"), Some(Reference::At(Bound::Id(42))));
        assert_eq!(
            reference("timestamp=2025-11-24T16:00:00.123Z"),
            Some(Reference::At(Bound::Ts(1_764_000_000_123)))
        );
        for bad in ["msgid=", "msgid=-1", "msgid=x", "time=1", "42", "timestamp=ayer"] {
            assert_eq!(reference(bad), None, "{bad}");
        }
        assert!(before(Bound::Id(1), Bound::Id(2)));
        assert!(!before(Bound::Ts(5), Bound::Ts(2)));
    }
}

//! The lines the IRC front end writes: stored messages as `PRIVMSG`s (with
//! their tags, `/me` as a CTCP `ACTION`, long texts split to fit), server
//! numerics, and the response to one command with the rules of
//! `labeled-response` and `batch`.

use std::sync::Arc;

use crate::core::event::{Message, Target};
use crate::core::rooms::LOBBY;
use crate::proto::irc::{self as wire, MAX_BODY};

use super::caps::{Cap, Caps};

/// The host part of every user's `nick!user@host` source: accounts have no
/// host worth showing (and the peer's address is nobody's business).
pub const USER_HOST: &str = "charla";

/// A user's source: `nick!nick@charla`.
pub fn user_source(nick: &str) -> String {
    format!("{nick}!{nick}@{USER_HOST}")
}

/// A stored message as IRC shows it: one `PRIVMSG` per piece of its text.
pub struct MessageLines {
    /// `author!author@charla`.
    pub source: String,
    /// The channel, or the addressee's nick.
    pub target: Arc<str>,
    /// The text of each line, `ACTION`s already wrapped; at least one.
    pub texts: Vec<String>,
    /// The `time` tag's value.
    pub time: String,
    /// The `msgid` tag's value: the message id in decimal.
    pub msgid: String,
}

/// The IRC form of a stored message. A text that starts with `/me ` is an
/// `ACTION`; a text too long for one line (512 bytes with the source,
/// command and target) is split at character boundaries, and the pieces'
/// texts, concatenated, are the stored text (for an `ACTION`, the pieces'
/// action texts are).
pub fn message_lines(m: &Message) -> MessageLines {
    let source = user_source(&m.author);
    let target: Arc<str> = match &m.target {
        Target::Lobby => Arc::from(LOBBY),
        Target::Room { name, .. } => Arc::clone(name),
        Target::Account { name, .. } => Arc::clone(name),
    };
    // ":" source " PRIVMSG " target " :" text, within MAX_BODY.
    let overhead = 1 + source.len() + " PRIVMSG ".len() + target.len() + " :".len();
    let (action, text) = match m.text.strip_prefix("/me ") {
        Some(rest) => (true, rest),
        None => (false, &*m.text),
    };
    let wrapping = if action { "\u{1}ACTION \u{1}".len() } else { 0 };
    let room = MAX_BODY.saturating_sub(overhead + wrapping).max(16);
    let texts = wire::split_text(text, room)
        .into_iter()
        .map(|piece| {
            if action {
                format!("\u{1}ACTION {piece}\u{1}")
            } else {
                piece.to_string()
            }
        })
        .collect();
    MessageLines {
        source,
        target,
        texts,
        time: wire::server_time(m.ts),
        msgid: m.id.to_string(),
    }
}

impl MessageLines {
    /// Appends the lines, with the tags the client's capabilities `caps`
    /// (bits) allow, and `extra` tags (a label, a batch) on each.
    pub fn write(&self, caps: u32, extra: &[(&str, &str)], out: &mut Vec<u8>) {
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(2 + extra.len());
        if caps & Cap::SERVER_TIME.bit() != 0 {
            tags.push(("time", &self.time));
        }
        if caps & Cap::MESSAGE_TAGS.bit() != 0 {
            tags.push(("msgid", &self.msgid));
        }
        tags.extend_from_slice(extra);
        for text in &self.texts {
            wire::write_line(out, &tags, Some(&self.source), "PRIVMSG", &[&self.target, text], true);
        }
    }
}

/// One line of a response, held until its label and batch are known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    /// Tags of its own (`time`, `msgid`).
    tags: Vec<(&'static str, String)>,
    /// Its source (`None`: none).
    source: Option<String>,
    /// The command or numeric.
    command: String,
    /// The parameters.
    params: Vec<String>,
    /// Whether the last parameter is always written with `:`.
    trailing: bool,
}

/// The response to one command of one client: the lines it gets, written
/// with the command's `label` when the client asked for labeled responses
/// (an `ACK` when there is nothing to say; a `labeled-response` batch when
/// there are several lines and the client has `batch`).
pub struct Response {
    /// The server's IRC name, the source of numerics.
    server: String,
    /// The client's nick (`*` before it has one).
    nick: String,
    /// The lines so far.
    lines: Vec<Line>,
}

impl Response {
    /// An empty response from `server` to `nick`.
    pub fn new(server: &str, nick: &str) -> Response {
        Response {
            server: server.to_string(),
            nick: nick.to_string(),
            lines: Vec::new(),
        }
    }

    /// The client's nick, as numerics name it.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Adds numeric `code` with the nick as first parameter, then `params`;
    /// the last one is written with `:`.
    pub fn numeric(&mut self, code: &str, params: &[&str]) {
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(self.nick.clone());
        all.extend(params.iter().map(|p| (*p).to_string()));
        self.lines.push(Line {
            tags: Vec::new(),
            source: Some(self.server.to_string()),
            command: code.to_string(),
            params: all,
            trailing: true,
        });
    }

    /// Adds a line from `source` (`None`: the server).
    pub fn line(&mut self, source: Option<&str>, command: &str, params: &[&str], trailing: bool) {
        self.lines.push(Line {
            tags: Vec::new(),
            source: Some(source.unwrap_or(&self.server).to_string()),
            command: command.to_string(),
            params: params.iter().map(|p| (*p).to_string()).collect(),
            trailing,
        });
    }

    /// Adds a `NOTICE` from the server to the client.
    pub fn notice(&mut self, text: &str) {
        let nick = self.nick.to_string();
        self.line(None, "NOTICE", &[&nick, text], true);
    }

    /// Adds the lines of a stored message, tagged as `caps` allows.
    pub fn message(&mut self, m: &MessageLines, caps: u32) {
        for text in &m.texts {
            let mut tags = Vec::new();
            if caps & Cap::SERVER_TIME.bit() != 0 {
                tags.push(("time", m.time.clone()));
            }
            if caps & Cap::MESSAGE_TAGS.bit() != 0 {
                tags.push(("msgid", m.msgid.clone()));
            }
            self.lines.push(Line {
                tags,
                source: Some(m.source.clone()),
                command: "PRIVMSG".to_string(),
                params: vec![m.target.to_string(), text.clone()],
                trailing: true,
            });
        }
    }

    /// Writes the answer. `label` is the command's label, used if the
    /// client has `labeled-response`; `batches` makes a fresh batch id when
    /// one is needed; `group` wraps the lines in a batch of that type and
    /// parameter (`chathistory` and its target) whatever the label, when
    /// the client has `batch`.
    pub fn write(
        self,
        caps: &Caps,
        label: Option<&str>,
        batches: &mut dyn FnMut() -> String,
        group: Option<(&str, &str)>,
        out: &mut Vec<u8>,
    ) {
        let label = label.filter(|_| caps.has(Cap::LABELED_RESPONSE));
        let batching = caps.has(Cap::BATCH);
        let server = self.server.as_str();
        if let Some((kind, target)) = group.filter(|_| batching) {
            let id = batches();
            let mut open_tags = Vec::new();
            if let Some(label) = label {
                open_tags.push(("label", label));
            }
            wire::write_line(
                out,
                &open_tags,
                Some(server),
                "BATCH",
                &[&format!("+{id}"), kind, target],
                false,
            );
            for line in &self.lines {
                write(line, &[("batch", &id)], out);
            }
            wire::write_line(out, &[], Some(server), "BATCH", &[&format!("-{id}")], false);
            return;
        }
        match (label, self.lines.len()) {
            (None, _) => self.lines.iter().for_each(|line| write(line, &[], out)),
            (Some(label), 0) => wire::write_line(out, &[("label", label)], Some(server), "ACK", &[], false),
            (Some(label), 1) => write(&self.lines[0], &[("label", label)], out),
            (Some(label), _) if batching => {
                let id = batches();
                wire::write_line(
                    out,
                    &[("label", label)],
                    Some(server),
                    "BATCH",
                    &[&format!("+{id}"), "labeled-response"],
                    false,
                );
                for line in &self.lines {
                    write(line, &[("batch", &id)], out);
                }
                wire::write_line(out, &[], Some(server), "BATCH", &[&format!("-{id}")], false);
            }
            (Some(label), _) => {
                // Without batch the label can only mark the first line.
                write(&self.lines[0], &[("label", label)], out);
                self.lines[1..].iter().for_each(|line| write(line, &[], out));
            }
        }
    }
}

/// Writes one held line with `extra` tags after its own.
fn write(line: &Line, extra: &[(&str, &str)], out: &mut Vec<u8>) {
    let mut tags: Vec<(&str, &str)> = line.tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tags.extend_from_slice(extra);
    let last = line.params.len().saturating_sub(1);
    let fixed: Vec<std::borrow::Cow<'_, str>> = line
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i < last {
                middle(p)
            } else {
                std::borrow::Cow::Borrowed(p.as_str())
            }
        })
        .collect();
    let params: Vec<&str> = fixed.iter().map(|p| p.as_ref()).collect();
    wire::write_line(
        out,
        &tags,
        line.source.as_deref(),
        &line.command,
        &params,
        line.trailing,
    );
}

/// A parameter made fit to be a middle one: numerics echo what a client
/// sent (a channel, a subcommand), which may hold a space or be empty when
/// it came as a trailing parameter; it must not break the line.
fn middle(param: &str) -> std::borrow::Cow<'_, str> {
    if !param.is_empty() && !param.contains(' ') && !param.starts_with(':') {
        return std::borrow::Cow::Borrowed(param);
    }
    let fixed = param.replace(' ', "_");
    let fixed = fixed.trim_start_matches(':');
    std::borrow::Cow::Owned(if fixed.is_empty() {
        "*".to_string()
    } else {
        fixed.to_string()
    })
}

/// Splits `names` into `353` lines for `channel` that fit in one IRC line
/// each, and appends them and the `366` that ends the list.
pub fn names(response: &mut Response, channel: &str, names: &[&str]) {
    // ":" server " 353 " nick " = " channel " :" names
    let overhead = 1 + response.server.len() + 5 + response.nick.len() + 3 + channel.len() + 2;
    let room = MAX_BODY.saturating_sub(overhead).max(64);
    let mut line = String::new();
    for name in names {
        if !line.is_empty() && line.len() + 1 + name.len() > room {
            response.numeric("353", &["=", channel, &line]);
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(name);
    }
    if !line.is_empty() {
        response.numeric("353", &["=", channel, &line]);
    }
    response.numeric("366", &[channel, "End of /NAMES list"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(text: &str, target: Target) -> Message {
        Message {
            id: 42,
            ts: 1_764_000_000_123,
            author_id: 1,
            author: Arc::from("ana"),
            text: Arc::from(text),
            target,
        }
    }

    fn written(f: impl FnOnce(&mut Vec<u8>)) -> Vec<String> {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out)
            .unwrap()
            .split_terminator("\r\n")
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn messages_carry_tags_by_capability_and_me_is_an_action() {
        let m = message_lines(&stored("hola", Target::Lobby));
        assert_eq!(
            written(|out| m.write(0, &[], out)),
            [":ana!ana@charla PRIVMSG #general :hola"]
        );
        let all = Cap::SERVER_TIME.bit() | Cap::MESSAGE_TAGS.bit();
        assert_eq!(
            written(|out| m.write(all, &[], out)),
            ["@time=2025-11-24T16:00:00.123Z;msgid=42 :ana!ana@charla PRIVMSG #general :hola"]
        );
        let private = Target::Account {
            id: 2,
            name: Arc::from("bea"),
        };
        let m = message_lines(&stored("/me saluda", private));
        assert_eq!(
            written(|out| m.write(0, &[], out)),
            [":ana!ana@charla PRIVMSG bea :\u{1}ACTION saluda\u{1}"]
        );
    }

    #[test]
    fn a_long_text_is_split_into_lines_that_fit_and_concatenate_to_it() {
        let text: String = "ñandú ".repeat(300);
        let text = text.trim_end();
        let m = message_lines(&stored(text, Target::Lobby));
        let lines = written(|out| m.write(0, &[], out));
        assert!(lines.len() > 1);
        let mut joined = String::new();
        for line in &lines {
            assert!(line.len() + 2 <= 512, "{} bytes", line.len());
            let (_, piece) = line.split_once(" :").unwrap();
            joined.push_str(piece);
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn answers_follow_labeled_response() {
        let caps = Caps::default();
        let mut next = 0;
        let mut ids = || {
            next += 1;
            format!("b{next}")
        };
        let lines = |answer: Response, caps: &Caps, ids: &mut dyn FnMut() -> String, label| {
            written(|out| answer.write(caps, label, ids, None, out))
        };
        // No labeled-response: labels are ignored.
        let mut a = Response::new("srv", "ana");
        a.numeric("331", &["#a", "No topic is set"]);
        assert_eq!(
            lines(a, &caps, &mut ids, Some("x")),
            [":srv 331 ana #a :No topic is set"]
        );
        caps.change(Cap::LABELED_RESPONSE.bit(), 0);
        assert_eq!(
            lines(Response::new("srv", "ana"), &caps, &mut ids, Some("x")),
            ["@label=x :srv ACK"]
        );
        let mut a = Response::new("srv", "ana");
        a.numeric("305", &["You are no longer marked as being away"]);
        assert_eq!(
            lines(a, &caps, &mut ids, Some("x")),
            ["@label=x :srv 305 ana :You are no longer marked as being away"]
        );
        caps.change(Cap::BATCH.bit(), 0);
        let mut a = Response::new("srv", "ana");
        names(&mut a, "#a", &["ana", "bea"]);
        assert_eq!(
            lines(a, &caps, &mut ids, Some("x")),
            [
                "@label=x :srv BATCH +b1 labeled-response",
                "@batch=b1 :srv 353 ana = #a :ana bea",
                "@batch=b1 :srv 366 ana #a :End of /NAMES list",
                ":srv BATCH -b1"
            ]
        );
    }

    #[test]
    fn long_name_lists_are_split() {
        let many: Vec<String> = (0..200).map(|i| format!("usuario{i:03}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut a = Response::new("srv", "ana");
        names(&mut a, "#general", &refs);
        let lines = written(|out| a.write(&Caps::default(), None, &mut || String::new(), None, out));
        assert!(lines.len() > 3);
        let listed: Vec<&str> = lines[..lines.len() - 1]
            .iter()
            .flat_map(|l| l.rsplit_once(" :").unwrap().1.split(' '))
            .collect();
        assert_eq!(listed, refs);
        assert!(lines.iter().all(|l| l.len() + 2 <= 512));
    }
}

//! The IRCv3 capabilities the front end offers (PROTOCOL.md 13), as a set a
//! connection's codec can read from any thread.

use std::sync::atomic::{AtomicU32, Ordering};

/// One capability, as a bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(u32);

impl Cap {
    /// `sasl`: authentication with `AUTHENTICATE` before registration ends.
    pub const SASL: Cap = Cap(1);
    /// `server-time`: a `time` tag on messages.
    pub const SERVER_TIME: Cap = Cap(1 << 1);
    /// `message-tags`: tags at all, `msgid` among them.
    pub const MESSAGE_TAGS: Cap = Cap(1 << 2);
    /// `echo-message`: a client's own messages come back once stored.
    pub const ECHO_MESSAGE: Cap = Cap(1 << 3);
    /// `labeled-response`: answers carry the `label` of their command.
    pub const LABELED_RESPONSE: Cap = Cap(1 << 4);
    /// `batch`: multi-line answers grouped.
    pub const BATCH: Cap = Cap(1 << 5);
    /// `draft/chathistory` or `chathistory`: history on request.
    pub const CHATHISTORY: Cap = Cap(1 << 6);
}

/// Every capability offered, by the name a client requests, with the value
/// `CAP LS 302` shows. Both names of chathistory enable the same thing.
const OFFERED: &[(&str, Cap, Option<&str>)] = &[
    ("sasl", Cap::SASL, Some("PLAIN")),
    ("server-time", Cap::SERVER_TIME, None),
    ("message-tags", Cap::MESSAGE_TAGS, None),
    ("echo-message", Cap::ECHO_MESSAGE, None),
    ("labeled-response", Cap::LABELED_RESPONSE, None),
    ("batch", Cap::BATCH, None),
    ("draft/chathistory", Cap::CHATHISTORY, None),
    ("chathistory", Cap::CHATHISTORY, None),
];

/// The capability called `name`, if it is offered.
pub fn by_name(name: &str) -> Option<Cap> {
    OFFERED
        .iter()
        .find(|(offered, _, _)| offered.eq_ignore_ascii_case(name))
        .map(|(_, cap, _)| *cap)
}

/// The `CAP LS` list: with values for version 302 and later.
pub fn listing(with_values: bool) -> String {
    let names: Vec<String> = OFFERED
        .iter()
        .map(|(name, _, value)| match value {
            Some(value) if with_values => format!("{name}={value}"),
            _ => (*name).to_string(),
        })
        .collect();
    names.join(" ")
}

/// The set of capabilities one connection has enabled: written by its own
/// thread (`CAP REQ`), read by whichever thread encodes its lines.
#[derive(Debug, Default)]
pub struct Caps(AtomicU32);

impl Caps {
    /// Whether `cap` is enabled.
    pub fn has(&self, cap: Cap) -> bool {
        self.bits() & cap.0 != 0
    }

    /// The enabled set as bits (for the codec's flavor).
    pub fn bits(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    /// Enables `on` and disables `off`, at once.
    pub fn change(&self, on: u32, off: u32) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| Some((bits | on) & !off));
    }

    /// The names of the enabled capabilities, for `CAP LIST`.
    pub fn names(&self) -> String {
        let bits = self.bits();
        let mut names: Vec<&str> = Vec::new();
        for (name, cap, _) in OFFERED {
            // chathistory is listed once, by its draft name.
            if bits & cap.0 != 0 && *name != "chathistory" {
                names.push(name);
            }
        }
        names.join(" ")
    }
}

/// Reads a `CAP REQ` list: the bits to enable and to disable, or `None`
/// if any name is not offered (the whole request is then refused, as
/// capability negotiation says).
pub fn request(list: &str) -> Option<(u32, u32)> {
    let (mut on, mut off) = (0, 0);
    for word in list.split(' ').filter(|w| !w.is_empty()) {
        let (remove, name) = match word.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, word),
        };
        let cap = by_name(name)?;
        if remove {
            off |= cap.0;
        } else {
            on |= cap.0;
        }
    }
    Some((on, off))
}

impl Cap {
    /// The bit.
    pub const fn bit(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_all_or_nothing_and_both_history_names_work() {
        let caps = Caps::default();
        assert_eq!(request("server-time nonsense"), None);
        let (on, off) = request("server-time  echo-message chathistory").unwrap();
        caps.change(on, off);
        assert!(caps.has(Cap::SERVER_TIME) && caps.has(Cap::ECHO_MESSAGE) && caps.has(Cap::CHATHISTORY));
        assert_eq!(caps.names(), "server-time echo-message draft/chathistory");
        let (on, off) = request("-echo-message SASL").unwrap();
        caps.change(on, off);
        assert!(!caps.has(Cap::ECHO_MESSAGE) && caps.has(Cap::SASL));
        assert!(listing(true).starts_with("sasl=PLAIN server-time"));
        assert!(listing(false).starts_with("sasl server-time"));
    }
}

//! Where the person is: the rooms the account is in, as far as this client
//! has heard, and the current room that plain lines go to.
//!
//! Membership lives on the server and lasts across sessions (PROTOCOL.md
//! 9.2); this is the client's copy, kept from the `ROOMS` listing, the
//! replies to `JOIN`/`PART` and the `ENTER`/`EXIT` events that other
//! sessions of the same account cause. It decides nothing the server
//! checks: `/cambiar` uses it only to refuse a room the account is not in
//! without sending anything. Room names are matched regardless of case and
//! kept in the server's case. Pure: no I/O.

use std::collections::BTreeMap;

use crate::core::rooms::{LOBBY, is_lobby};

/// The account's rooms and the current one.
#[derive(Debug)]
pub struct Rooms {
    /// Where plain lines go, in the server's case; [`LOBBY`] at first.
    current: String,
    /// The rooms the account is in besides the lobby: ASCII lower case to
    /// the server's case.
    joined: BTreeMap<String, String>,
}

impl Default for Rooms {
    fn default() -> Rooms {
        Rooms::new()
    }
}

impl Rooms {
    /// In the lobby only.
    pub fn new() -> Rooms {
        Rooms {
            current: LOBBY.to_string(),
            joined: BTreeMap::new(),
        }
    }

    /// The current room, as the server names it.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// The current room when it is not the lobby (lobby lines go as
    /// version 1 `SAY`, so a version 1 server still understands them).
    pub fn current_room(&self) -> Option<&str> {
        (!is_lobby(&self.current)).then_some(self.current.as_str())
    }

    /// Every room the account is in, the lobby included, sorted as `ROOMS`
    /// sorts them (by the name in ASCII lower case).
    pub fn names(&self) -> Vec<&str> {
        let lobby = LOBBY.to_ascii_lowercase();
        let mut names: Vec<(&str, &str)> = self
            .joined
            .iter()
            .map(|(key, name)| (key.as_str(), name.as_str()))
            .collect();
        names.push((&lobby, LOBBY));
        names.sort_unstable();
        names.into_iter().map(|(_, name)| name).collect()
    }

    /// The account is in `room` (named in the server's case).
    pub fn joined(&mut self, room: &str) {
        if !is_lobby(room) {
            self.joined.insert(room.to_ascii_lowercase(), room.to_string());
        }
    }

    /// The account left `room`; true when it was the current room, which is
    /// now the lobby again.
    pub fn parted(&mut self, room: &str) -> bool {
        if is_lobby(room) {
            return false;
        }
        self.joined.remove(&room.to_ascii_lowercase());
        if self.current.eq_ignore_ascii_case(room) {
            self.current = LOBBY.to_string();
            return true;
        }
        false
    }

    /// Makes `room` the current room if the account is in it; returns its
    /// name in the server's case, or `None` (nothing changes).
    pub fn switch(&mut self, room: &str) -> Option<&str> {
        let name = if is_lobby(room) {
            LOBBY.to_string()
        } else {
            self.joined.get(&room.to_ascii_lowercase())?.clone()
        };
        self.current = name;
        Some(&self.current)
    }

    /// The membership as a `ROOMS` listing tells it (the rooms flagged
    /// `*`): replaces what was known. True when the current room is not
    /// among them, and so the current room is the lobby again.
    pub fn listed<'a>(&mut self, rooms: impl IntoIterator<Item = &'a str>) -> bool {
        self.joined.clear();
        for room in rooms {
            self.joined(room);
        }
        let current = self.current.clone();
        !is_lobby(&current) && !self.joined.contains_key(&current.to_ascii_lowercase()) && self.parted(&current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_in_the_lobby() {
        let rooms = Rooms::new();
        assert_eq!(rooms.current(), "#general");
        assert_eq!(rooms.current_room(), None);
        assert_eq!(rooms.names(), ["#general"]);
    }

    #[test]
    fn joining_switching_and_parting() {
        let mut rooms = Rooms::new();
        rooms.joined("#Clase");
        rooms.joined("#abc");
        assert_eq!(rooms.names(), ["#abc", "#Clase", "#general"]);
        assert_eq!(rooms.switch("#clase"), Some("#Clase"));
        assert_eq!(rooms.current_room(), Some("#Clase"));
        assert_eq!(rooms.switch("#otra"), None);
        assert_eq!(rooms.current(), "#Clase", "a refused switch changes nothing");
        assert!(!rooms.parted("#ABC"));
        assert!(rooms.parted("#CLASE"), "parting the current room");
        assert_eq!(rooms.current(), "#general");
        assert_eq!(rooms.names(), ["#general"]);
        assert_eq!(rooms.switch("#GENERAL"), Some("#general"));
        assert!(!rooms.parted("#general"), "the lobby cannot be left");
    }

    #[test]
    fn a_listing_replaces_the_membership() {
        let mut rooms = Rooms::new();
        rooms.joined("#a");
        rooms.joined("#b");
        rooms.switch("#b");
        assert!(!rooms.listed(["#b", "#general", "#c"]));
        assert_eq!(rooms.names(), ["#b", "#c", "#general"]);
        assert_eq!(rooms.current(), "#b");
        assert!(rooms.listed(["#general"]), "the current room is gone");
        assert_eq!(rooms.current(), "#general");
    }
}

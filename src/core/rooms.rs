//! Which rooms exist and who is in them, as this process delivers them.
//!
//! The store holds membership durably; this is the view the fan-out
//! delivers by and the commands check against (`not-member`,
//! `no-such-room`, `WHO #room`, `ROOMS`). It changes only when the fan-out
//! applies a membership change of a committed batch, in commit order, so a
//! room's messages reach exactly the accounts that were members at that
//! point of the order. `#general` is not in it: every account is always a
//! member of the lobby.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::{AccountId, RoomId, StoredRoom};

/// The lobby's name.
pub const LOBBY: &str = "#general";

/// Whether `name` (a valid room name) is the lobby, regardless of case.
pub fn is_lobby(name: &str) -> bool {
    name.eq_ignore_ascii_case(LOBBY)
}

/// A live room, as commands name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRef {
    /// Its id.
    pub id: RoomId,
    /// Its name with its creator's case, `#` included.
    pub name: Arc<str>,
}

/// One line of `ROOMS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomListing {
    /// The room's name.
    pub name: Arc<str>,
    /// Its members, online or not.
    pub members: u64,
    /// Whether the asking account is one of them.
    pub member: bool,
}

/// A change of one account's membership of one room, committed.
#[derive(Clone, Debug)]
pub struct MembershipChange {
    /// The room.
    pub room: RoomRef,
    /// The account.
    pub account: AccountId,
    /// Its username, for `ENTER`/`EXIT`.
    pub username: Arc<str>,
    /// Joined (true) or parted (false).
    pub joined: bool,
}

/// A live room.
struct Room {
    /// Its name with its creator's case.
    name: Arc<str>,
    /// Its members.
    members: HashSet<AccountId>,
}

/// The maps behind the lock.
#[derive(Default)]
struct Inner {
    /// Live rooms by id.
    rooms: HashMap<RoomId, Room>,
    /// Live room ids by lower-case name.
    by_name: HashMap<String, RoomId>,
    /// The rooms each account is in.
    of_account: HashMap<AccountId, HashSet<RoomId>>,
}

/// The rooms and their members.
pub struct Rooms {
    /// Never held while doing anything but reading or changing the maps;
    /// taken after the registry's lock when both are needed, never before.
    inner: Mutex<Inner>,
}

impl Rooms {
    /// The view of the live rooms loaded from the store.
    pub fn new(stored: Vec<StoredRoom>) -> Rooms {
        let mut inner = Inner::default();
        for room in stored {
            inner.by_name.insert(room.name.to_ascii_lowercase(), room.id);
            for &account in &room.members {
                inner.of_account.entry(account).or_default().insert(room.id);
            }
            inner.rooms.insert(
                room.id,
                Room {
                    name: Arc::from(room.name),
                    members: room.members.into_iter().collect(),
                },
            );
        }
        Rooms {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live room called `name`, regardless of case.
    pub fn find(&self, name: &str) -> Option<RoomRef> {
        let inner = self.lock();
        let id = *inner.by_name.get(&name.to_ascii_lowercase())?;
        let room = inner.rooms.get(&id)?;
        Some(RoomRef {
            id,
            name: Arc::clone(&room.name),
        })
    }

    /// Whether `account` is a member of room `room`.
    pub fn is_member(&self, room: RoomId, account: AccountId) -> bool {
        self.lock()
            .rooms
            .get(&room)
            .is_some_and(|r| r.members.contains(&account))
    }

    /// How many rooms besides the lobby `account` is in.
    pub fn count_of(&self, account: AccountId) -> usize {
        self.lock().of_account.get(&account).map_or(0, HashSet::len)
    }

    /// The members of room `room` (none for a room that is gone).
    pub fn members(&self, room: RoomId) -> Vec<AccountId> {
        self.lock()
            .rooms
            .get(&room)
            .map(|r| r.members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The rooms `account` is in, by name (lower case first), without the
    /// lobby.
    pub fn rooms_of(&self, account: AccountId) -> Vec<RoomRef> {
        let inner = self.lock();
        let mut rooms: Vec<RoomRef> = inner
            .of_account
            .get(&account)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                inner.rooms.get(id).map(|r| RoomRef {
                    id: *id,
                    name: Arc::clone(&r.name),
                })
            })
            .collect();
        rooms.sort_by_key(|r| r.name.to_ascii_lowercase());
        rooms
    }

    /// Every live room with its member count and whether `account` is in
    /// it, without the lobby, unsorted.
    pub fn listing(&self, account: AccountId) -> Vec<RoomListing> {
        self.lock()
            .rooms
            .values()
            .map(|room| RoomListing {
                name: Arc::clone(&room.name),
                members: room.members.len() as u64,
                member: room.members.contains(&account),
            })
            .collect()
    }

    /// Applies a committed membership change. Called by the fan-out, in
    /// commit order. Returns the accounts that hear of it: the members after
    /// a join, and the members before a part (the parting account
    /// included).
    pub fn apply(&self, change: &MembershipChange) -> Vec<AccountId> {
        let mut inner = self.lock();
        let Inner {
            rooms,
            by_name,
            of_account,
        } = &mut *inner;
        let id = change.room.id;
        if change.joined {
            let room = rooms.entry(id).or_insert_with(|| Room {
                name: Arc::clone(&change.room.name),
                members: HashSet::new(),
            });
            by_name.insert(change.room.name.to_ascii_lowercase(), id);
            room.members.insert(change.account);
            of_account.entry(change.account).or_default().insert(id);
            room.members.iter().copied().collect()
        } else {
            let Some(room) = rooms.get_mut(&id) else {
                return vec![change.account];
            };
            let told: Vec<AccountId> = room.members.iter().copied().chain([change.account]).collect();
            room.members.remove(&change.account);
            if let Some(mine) = of_account.get_mut(&change.account) {
                mine.remove(&id);
                if mine.is_empty() {
                    of_account.remove(&change.account);
                }
            }
            if room.members.is_empty() {
                rooms.remove(&id);
                if by_name.get(&change.room.name.to_ascii_lowercase()) == Some(&id) {
                    by_name.remove(&change.room.name.to_ascii_lowercase());
                }
            }
            let mut told = told;
            told.sort_unstable();
            told.dedup();
            told
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(room: RoomId, name: &str, account: AccountId, joined: bool) -> MembershipChange {
        MembershipChange {
            room: RoomRef {
                id: room,
                name: Arc::from(name),
            },
            account,
            username: Arc::from(format!("u{account}")),
            joined,
        }
    }

    #[test]
    fn joins_and_parts_change_who_hears_of_the_room() {
        let rooms = Rooms::new(vec![StoredRoom {
            id: 1,
            name: "#Clase".into(),
            members: vec![10],
        }]);
        assert_eq!(rooms.find("#CLASE").map(|r| r.name), Some(Arc::from("#Clase")));
        let mut told = rooms.apply(&change(1, "#Clase", 11, true));
        told.sort_unstable();
        assert_eq!(told, [10, 11]);
        assert!(rooms.is_member(1, 11));
        assert_eq!(rooms.count_of(11), 1);
        assert_eq!(rooms.apply(&change(1, "#Clase", 10, false)), [10, 11]);
        assert!(!rooms.is_member(1, 10));
        assert_eq!(rooms.apply(&change(1, "#Clase", 11, false)), [11]);
        assert!(rooms.find("#clase").is_none(), "a room ends with its last member");
        // A new room of the same name is another room.
        rooms.apply(&change(2, "#clase", 12, true));
        let again = rooms.find("#Clase").unwrap();
        assert_eq!((again.id, &*again.name), (2, "#clase"));
        assert!(rooms.members(1).is_empty());
    }

    #[test]
    fn listing_and_rooms_of_an_account() {
        let rooms = Rooms::new(vec![]);
        rooms.apply(&change(1, "#b", 1, true));
        rooms.apply(&change(2, "#A", 1, true));
        rooms.apply(&change(2, "#A", 2, true));
        let names: Vec<Arc<str>> = rooms.rooms_of(1).into_iter().map(|r| r.name).collect();
        assert_eq!(names, [Arc::from("#A"), Arc::from("#b")]);
        let mut listing = rooms.listing(2);
        listing.sort_by_key(|l| l.name.to_ascii_lowercase());
        assert_eq!(
            listing,
            [
                RoomListing {
                    name: Arc::from("#A"),
                    members: 2,
                    member: true
                },
                RoomListing {
                    name: Arc::from("#b"),
                    members: 1,
                    member: false
                }
            ]
        );
        assert!(is_lobby("#GENERAL"));
    }
}

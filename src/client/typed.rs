//! What a line typed in the chat means: a message, or one of the commands
//! (`/join`, `/msg`, `/who`, `/historial`, `/ayuda`, `salir`...), each with
//! a Spanish and an English spelling, both always accepted.
//!
//! The one table of client commands lives in [`Typed::parse`]. It checks
//! the arguments' syntax and the room and user names against the
//! protocol's rules (PROTOCOL.md 9.1, 5.1), so a name that cannot be right
//! is refused with the server's own sentence without a round trip. Pure: no
//! I/O, no protocol; the chat loop turns a [`Typed`] into wire commands.

use crate::core::code::ErrorCode;
use crate::core::validate;

/// How many messages `/historial` shows when no number is given, and how
/// many are shown right after logging in.
pub const DEFAULT_HISTORY: u32 = 20;

/// The most `/historial N` may ask for (the server's limit, PROTOCOL.md 4).
pub const MAX_HISTORY: u32 = crate::core::commands::MAX_HISTORY;

/// A room or private conversation named in a command, already checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `#ROOM`, `#` included, as typed.
    Room(&'a str),
    /// `@USER`: the conversation with that account; the username without
    /// its `@`, as typed.
    User(&'a str),
}

/// A command typed with the wrong arguments, for the sentence that shows
/// how to use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// `/join #sala`.
    Join,
    /// `/part [#sala]`.
    Part,
    /// `/cambiar #sala`.
    Switch,
    /// `/msg usuario texto`.
    Private,
    /// `/who [#sala]`.
    Who,
    /// `/historial [#sala|@usuario] [N]`.
    History,
    /// `/compartir RUTA`.
    Share,
    /// `/descargar ID [RUTA]`.
    Get,
    /// `/dejar ID`.
    Unshare,
}

/// One typed line, understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typed<'a> {
    /// Nothing but spaces and tabs: ignored, nothing is sent.
    Blank,
    /// A message for the current room, as typed (checked and trimmed before
    /// sending).
    Say(&'a str),
    /// `salir`, `/salir` or `/quit`: leave the chat.
    Quit,
    /// `/who [#sala]` or `/quien`: who is online (in a room; `None`: the
    /// current one).
    Who(Option<&'a str>),
    /// `/historial [#sala|@usuario] [N]` or `/history`: the last `count`
    /// messages of a room or conversation (`None`: the current room).
    History {
        /// Where; `None` for the current room.
        target: Option<Target<'a>>,
        /// How many, 1 to [`MAX_HISTORY`].
        count: u32,
    },
    /// `/join #sala` or `/unirse`: join a room and write in it.
    Join(&'a str),
    /// `/part [#sala]` or `/salir-de`: leave a room (`None`: the current
    /// one).
    Part(Option<&'a str>),
    /// `/rooms` or `/salas`: every room, the account's marked.
    Rooms,
    /// `/msg usuario texto` or `/privado`: a private message.
    Private {
        /// The addressee's username, without `@`.
        to: &'a str,
        /// The text, as typed (checked and trimmed before sending).
        text: &'a str,
    },
    /// `/cambiar #sala` or `/switch`: write in another room the account is
    /// in, without joining anything.
    Switch(&'a str),
    /// `/compartir RUTA` or `/share`: offer a file (the rest of the line is
    /// its path, spaces and all).
    Share(&'a str),
    /// `/archivos [TEXTO]` or `/files`: the files offered (whose name
    /// contains the text).
    Files(&'a str),
    /// `/descargar ID [RUTA]` or `/get`: download an offer (to the current
    /// folder, or to the path: the rest of the line).
    Get {
        /// The offer's id.
        id: &'a str,
        /// Where to, as typed; `None`: the current folder.
        path: Option<&'a str>,
    },
    /// `/dejar ID` or `/unshare`: stop offering a file.
    Unshare(&'a str),
    /// `/ayuda` or `/help`.
    Help,
    /// A command with missing, extra or malformed arguments.
    Usage(Usage),
    /// A room or user name that breaks the protocol's rules: the code the
    /// server would answer (`invalid-room`, `invalid-username`).
    Invalid(ErrorCode),
    /// Any other `/word`: pointed to the help, never sent as a message.
    Unknown(&'a str),
}

impl<'a> Typed<'a> {
    /// Reads one typed line (without its newline).
    ///
    /// `salir` must be the whole line (as in the lab), so a message that
    /// merely contains the word is sent. A line starting with `//` is a
    /// message starting with `/`.
    pub fn parse(line: &'a str) -> Typed<'a> {
        let trimmed = line.trim_matches([' ', '\t']);
        if trimmed.is_empty() {
            return Typed::Blank;
        }
        if trimmed.eq_ignore_ascii_case("salir") {
            return Typed::Quit;
        }
        if trimmed.starts_with("//") {
            return Typed::Say(&trimmed[1..]);
        }
        let Some(command) = trimmed.strip_prefix('/') else {
            return Typed::Say(line);
        };
        let (word, argument) = command.split_once([' ', '\t']).unwrap_or((command, ""));
        let argument = argument.trim_matches([' ', '\t']);
        let words: Vec<&str> = argument.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
        match word.to_ascii_lowercase().as_str() {
            "quit" | "salir" => Typed::Quit,
            "who" | "quien" | "quién" => match words.as_slice() {
                [] => Typed::Who(None),
                [room] => checked_room(room, |room| Typed::Who(Some(room))),
                _ => Typed::Usage(Usage::Who),
            },
            "historial" | "history" => history(&words),
            "join" | "unirse" => match words.as_slice() {
                [room] => checked_room(room, Typed::Join),
                _ => Typed::Usage(Usage::Join),
            },
            "part" | "salir-de" => match words.as_slice() {
                [] => Typed::Part(None),
                [room] => checked_room(room, |room| Typed::Part(Some(room))),
                _ => Typed::Usage(Usage::Part),
            },
            "cambiar" | "switch" => match words.as_slice() {
                [room] => checked_room(room, Typed::Switch),
                _ => Typed::Usage(Usage::Switch),
            },
            "rooms" | "salas" => Typed::Rooms,
            "msg" | "privado" => private(argument),
            "compartir" | "share" if !argument.is_empty() => Typed::Share(argument),
            "compartir" | "share" => Typed::Usage(Usage::Share),
            "archivos" | "files" => Typed::Files(argument),
            "descargar" | "get" => download(argument),
            "dejar" | "unshare" => match words.as_slice() {
                [id] if validate::is_token(id) => Typed::Unshare(id),
                _ => Typed::Usage(Usage::Unshare),
            },
            "ayuda" | "help" => Typed::Help,
            _ => Typed::Unknown(&trimmed[..word.len() + 1]),
        }
    }
}

/// `then(room)` if `room` is a valid room name, else `invalid-room`.
fn checked_room<'a>(room: &'a str, then: impl FnOnce(&'a str) -> Typed<'a>) -> Typed<'a> {
    match validate::room(room) {
        Ok(room) => then(room),
        Err(code) => Typed::Invalid(code),
    }
}

/// The arguments of `/historial`: an optional `#sala` or `@usuario`, then
/// an optional count.
fn history<'a>(words: &[&'a str]) -> Typed<'a> {
    let (target, rest) = match words.split_first() {
        Some((first, rest)) if first.starts_with('#') => match validate::room(first) {
            Ok(room) => (Some(Target::Room(room)), rest),
            Err(code) => return Typed::Invalid(code),
        },
        Some((first, rest)) if first.starts_with('@') => match validate::username(&first[1..]) {
            Ok(user) => (Some(Target::User(user)), rest),
            Err(code) => return Typed::Invalid(code),
        },
        _ => (None, words),
    };
    let count = match rest {
        [] => Some(DEFAULT_HISTORY),
        [count] => history_count(count),
        _ => None,
    };
    match count {
        Some(count) => Typed::History { target, count },
        None => Typed::Usage(Usage::History),
    }
}

/// The arguments of `/msg`: a username (with or without `@`), then the
/// text, which must not be blank.
fn private(argument: &str) -> Typed<'_> {
    let Some((to, text)) = argument.split_once([' ', '\t']) else {
        return Typed::Usage(Usage::Private);
    };
    let to = to.strip_prefix('@').unwrap_or(to);
    match validate::username(to) {
        Ok(to) => Typed::Private { to, text },
        Err(code) => Typed::Invalid(code),
    }
}

/// The arguments of `/descargar`: an offer id, then an optional path (the
/// rest of the line, spaces and all).
fn download(argument: &str) -> Typed<'_> {
    let (id, path) = argument.split_once([' ', '\t']).unwrap_or((argument, ""));
    let path = path.trim_matches([' ', '\t']);
    if !validate::is_token(id) {
        return Typed::Usage(Usage::Get);
    }
    Typed::Get {
        id,
        path: (!path.is_empty()).then_some(path),
    }
}

/// The N of `/historial N`: decimal digits with a value from 1 to
/// [`MAX_HISTORY`].
fn history_count(argument: &str) -> Option<u32> {
    if !argument.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    argument.parse().ok().filter(|count| (1..=MAX_HISTORY).contains(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sent_as_typed() {
        assert_eq!(Typed::parse("hola a todos"), Typed::Say("hola a todos"));
        assert_eq!(Typed::parse("  hola "), Typed::Say("  hola "));
        assert_eq!(Typed::parse("voy a salir ya"), Typed::Say("voy a salir ya"));
        assert_eq!(Typed::parse("//shrug"), Typed::Say("/shrug"));
        assert_eq!(Typed::parse("a/b"), Typed::Say("a/b"));
        assert_eq!(Typed::parse("#sala hola"), Typed::Say("#sala hola"));
        assert_eq!(Typed::parse(" \t "), Typed::Blank);
        assert_eq!(Typed::parse(""), Typed::Blank);
    }

    #[test]
    fn leaving() {
        for line in ["salir", " SALIR ", "Salir", "/quit", "/QUIT", "/salir", "/quit ahora"] {
            assert_eq!(Typed::parse(line), Typed::Quit, "{line:?}");
        }
    }

    #[test]
    fn commands_in_both_languages() {
        assert_eq!(Typed::parse("/who"), Typed::Who(None));
        assert_eq!(Typed::parse("/WHO"), Typed::Who(None));
        assert_eq!(Typed::parse("/quien #sala"), Typed::Who(Some("#sala")));
        assert_eq!(Typed::parse("/ayuda"), Typed::Help);
        assert_eq!(Typed::parse("/help"), Typed::Help);
        assert_eq!(
            Typed::parse("/historial"),
            Typed::History {
                target: None,
                count: DEFAULT_HISTORY
            }
        );
        assert_eq!(Typed::parse("/history 5"), Typed::History { target: None, count: 5 });
        assert_eq!(
            Typed::parse("/historial  1000 "),
            Typed::History {
                target: None,
                count: 1000
            }
        );
        for (es, en) in [
            ("/unirse #Clase", "/join #Clase"),
            ("/salir-de #Clase", "/part #Clase"),
            ("/salas", "/rooms"),
            ("/privado bea hola", "/msg bea hola"),
            ("/cambiar #Clase", "/switch #Clase"),
            ("/historial #Clase 3", "/history #Clase 3"),
            ("/quien", "/who"),
        ] {
            assert_eq!(Typed::parse(es), Typed::parse(en), "{es} / {en}");
            assert!(!matches!(Typed::parse(es), Typed::Unknown(_)), "{es}");
        }
    }

    #[test]
    fn rooms_are_joined_left_and_switched_to() {
        assert_eq!(Typed::parse("/join #Clase"), Typed::Join("#Clase"));
        assert_eq!(Typed::parse(" /JOIN\t#a.b-c_d "), Typed::Join("#a.b-c_d"));
        assert_eq!(Typed::parse("/part"), Typed::Part(None));
        assert_eq!(Typed::parse("/part #general"), Typed::Part(Some("#general")));
        assert_eq!(Typed::parse("/switch #x"), Typed::Switch("#x"));
        assert_eq!(Typed::parse("/rooms"), Typed::Rooms);
    }

    #[test]
    fn room_commands_check_their_arguments() {
        for usage in ["/join", "/join #a #b", "/cambiar", "/switch #a #b"] {
            assert!(matches!(Typed::parse(usage), Typed::Usage(_)), "{usage:?}");
        }
        assert_eq!(Typed::parse("/part #a #b"), Typed::Usage(Usage::Part));
        assert_eq!(Typed::parse("/who #a #b"), Typed::Usage(Usage::Who));
        for invalid in [
            "/join sala",
            "/join #",
            "/join #ñandú",
            "/part sala",
            "/who sala",
            "/cambiar #a/b",
            "/historial #",
        ] {
            assert_eq!(
                Typed::parse(invalid),
                Typed::Invalid(ErrorCode::InvalidRoom),
                "{invalid:?}"
            );
        }
        let long = format!("/join #{}", "a".repeat(33));
        assert_eq!(Typed::parse(&long), Typed::Invalid(ErrorCode::InvalidRoom));
        assert_eq!(
            Typed::parse(&format!("/join #{}", "a".repeat(32))),
            Typed::Join(&long[6..39])
        );
    }

    #[test]
    fn private_messages_name_a_user_and_carry_free_text() {
        assert_eq!(
            Typed::parse("/msg bea hola  qué tal "),
            Typed::Private {
                to: "bea",
                text: "hola  qué tal"
            }
        );
        assert_eq!(
            Typed::parse("/privado @Bea hola"),
            Typed::Private {
                to: "Bea",
                text: "hola"
            }
        );
        assert_eq!(Typed::parse("/msg bea"), Typed::Usage(Usage::Private));
        assert_eq!(Typed::parse("/msg"), Typed::Usage(Usage::Private));
        assert_eq!(
            Typed::parse("/msg be@ hola"),
            Typed::Invalid(ErrorCode::InvalidUsername)
        );
        assert_eq!(Typed::parse("/msg @ hola"), Typed::Invalid(ErrorCode::InvalidUsername));
    }

    #[test]
    fn history_takes_a_room_or_a_user_and_a_count() {
        assert_eq!(
            Typed::parse("/historial #Clase"),
            Typed::History {
                target: Some(Target::Room("#Clase")),
                count: DEFAULT_HISTORY
            }
        );
        assert_eq!(
            Typed::parse("/history @bea 7"),
            Typed::History {
                target: Some(Target::User("bea")),
                count: 7
            }
        );
        assert_eq!(
            Typed::parse("/historial @b+a"),
            Typed::Invalid(ErrorCode::InvalidUsername)
        );
    }

    #[test]
    fn history_counts_are_checked() {
        for bad in [
            "/historial 0",
            "/historial 1001",
            "/historial -3",
            "/historial tres",
            "/history 5 6",
            "/historial #a 5 6",
            "/historial 5 #a",
            "/historial bea",
        ] {
            assert_eq!(Typed::parse(bad), Typed::Usage(Usage::History), "{bad:?}");
        }
        assert_eq!(
            Typed::parse("/historial 99999999999999999999"),
            Typed::Usage(Usage::History)
        );
    }

    #[test]
    fn file_commands_take_ids_and_paths_with_spaces() {
        assert_eq!(
            Typed::parse("/compartir  mis notas/tema 1.pdf "),
            Typed::Share("mis notas/tema 1.pdf")
        );
        assert_eq!(Typed::parse("/share a.txt"), Typed::Share("a.txt"));
        assert_eq!(Typed::parse("/compartir"), Typed::Usage(Usage::Share));
        assert_eq!(Typed::parse("/archivos"), Typed::Files(""));
        assert_eq!(Typed::parse("/files tema 1"), Typed::Files("tema 1"));
        assert_eq!(Typed::parse("/descargar f0a1"), Typed::Get { id: "f0a1", path: None });
        assert_eq!(
            Typed::parse("/get f0a1  ~/Mis descargas/ "),
            Typed::Get {
                id: "f0a1",
                path: Some("~/Mis descargas/")
            }
        );
        for usage in ["/descargar", "/get f/1", "/descargar ../x"] {
            assert_eq!(Typed::parse(usage), Typed::Usage(Usage::Get), "{usage:?}");
        }
        assert_eq!(Typed::parse("/dejar f0a1"), Typed::Unshare("f0a1"));
        for usage in ["/dejar", "/unshare a b", "/unshare a.b"] {
            assert_eq!(Typed::parse(usage), Typed::Usage(Usage::Unshare), "{usage:?}");
        }
        for (es, en) in [
            ("/compartir a.txt", "/share a.txt"),
            ("/archivos x", "/files x"),
            ("/descargar f1 d", "/get f1 d"),
            ("/dejar f1", "/unshare f1"),
        ] {
            assert_eq!(Typed::parse(es), Typed::parse(en), "{es} / {en}");
        }
    }

    #[test]
    fn unknown_commands_are_named() {
        assert_eq!(Typed::parse("/foo bar"), Typed::Unknown("/foo"));
        assert_eq!(Typed::parse("  /Nick ana"), Typed::Unknown("/Nick"));
        assert_eq!(Typed::parse("/"), Typed::Unknown("/"));
        assert_eq!(Typed::parse("/ñ"), Typed::Unknown("/ñ"));
    }
}

//! What a line typed in the chat means: a message, or one of the commands
//! (`/who`, `/historial`, `/ayuda`, `salir`...), in Spanish and English.
//!
//! The one table of client commands lives in [`Typed::parse`]. Pure: no I/O,
//! no protocol; the chat loop turns a [`Typed`] into wire commands.

/// How many messages `/historial` shows when no number is given, and how
/// many are shown right after logging in.
pub const DEFAULT_HISTORY: u32 = 20;

/// The most `/historial N` may ask for (the server's limit, PROTOCOL.md 4).
pub const MAX_HISTORY: u32 = crate::core::commands::MAX_HISTORY;

/// One typed line, understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typed<'a> {
    /// Nothing but spaces and tabs: ignored, nothing is sent.
    Blank,
    /// A message to send as it is (checked and trimmed before sending).
    Say(&'a str),
    /// `salir`, `/salir` or `/quit`: leave the chat.
    Quit,
    /// `/who`: who is online.
    Who,
    /// `/historial [N]` or `/history [N]`.
    History(u32),
    /// `/historial` with an argument that is not 1 to 1000.
    BadHistory,
    /// `/ayuda` or `/help`.
    Help,
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
        match word.to_ascii_lowercase().as_str() {
            "quit" | "salir" => Typed::Quit,
            "who" => Typed::Who,
            "historial" | "history" => match history_count(argument) {
                Some(count) => Typed::History(count),
                None => Typed::BadHistory,
            },
            "ayuda" | "help" => Typed::Help,
            _ => Typed::Unknown(&trimmed[..word.len() + 1]),
        }
    }
}

/// The N of `/historial N`: empty means the default; otherwise decimal
/// digits with a value from 1 to [`MAX_HISTORY`].
fn history_count(argument: &str) -> Option<u32> {
    if argument.is_empty() {
        return Some(DEFAULT_HISTORY);
    }
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
        assert_eq!(Typed::parse("/who"), Typed::Who);
        assert_eq!(Typed::parse("/WHO"), Typed::Who);
        assert_eq!(Typed::parse("/ayuda"), Typed::Help);
        assert_eq!(Typed::parse("/help"), Typed::Help);
        assert_eq!(Typed::parse("/historial"), Typed::History(DEFAULT_HISTORY));
        assert_eq!(Typed::parse("/history 5"), Typed::History(5));
        assert_eq!(Typed::parse("/historial  1000 "), Typed::History(1000));
    }

    #[test]
    fn history_counts_are_checked() {
        for bad in [
            "/historial 0",
            "/historial 1001",
            "/historial -3",
            "/historial tres",
            "/history 5 6",
        ] {
            assert_eq!(Typed::parse(bad), Typed::BadHistory, "{bad:?}");
        }
        assert_eq!(Typed::parse("/historial 99999999999999999999"), Typed::BadHistory);
    }

    #[test]
    fn unknown_commands_are_named() {
        assert_eq!(Typed::parse("/foo bar"), Typed::Unknown("/foo"));
        assert_eq!(Typed::parse("  /Nick ana"), Typed::Unknown("/Nick"));
        assert_eq!(Typed::parse("/"), Typed::Unknown("/"));
        assert_eq!(Typed::parse("/ñ"), Typed::Unknown("/ñ"));
    }
}

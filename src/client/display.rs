//! How chat content from the network looks on screen: `[14:03] ana: hola`
//! in the lobby, `[#sala 14:03] ana: hola` in a room, `[privado 14:03] ana:
//! hola` for a private message, the `/who` lines, and which message ids
//! were already shown.
//!
//! Every string here that came from the network goes through
//! [`validate::for_display`], so a faulty or hostile server cannot send
//! escape sequences to the user's terminal. Pure: the clock is a parameter.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone};

use super::i18n::{self, Lang};
use crate::core::validate;
use crate::proto::charla::ChatMessage;

/// How many message ids [`SeenIds`] remembers; older ones are forgotten, so
/// a long session does not grow without bound.
const REMEMBERED_IDS: usize = 10_000;

/// Where a message was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The lobby, `#general` (a `MSG` line).
    Lobby,
    /// A room, `#` included, in the server's case.
    Room(String),
    /// A private conversation: the message is addressed to this username.
    Private(String),
}

/// A stored message and where it belongs: a `MSG` or `POST` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    /// Where.
    pub place: Place,
    /// The message.
    pub message: ChatMessage,
}

impl Post {
    /// A lobby message (`MSG`).
    pub fn lobby(message: ChatMessage) -> Post {
        Post {
            place: Place::Lobby,
            message,
        }
    }

    /// A `POST` line's message: `target` is `#ROOM` or `@USER`.
    pub fn addressed(target: &str, message: ChatMessage) -> Post {
        let place = match target.strip_prefix('@') {
            Some(user) => Place::Private(user.to_string()),
            None => Place::Room(target.to_string()),
        };
        Post { place, message }
    }
}

/// One message as a line: where, local time, author, text. `me` is this
/// account's username: a private message it wrote (from another session)
/// names its addressee.
///
/// The time is `HH:MM` for a message of the same local day as `now`, and
/// `YYYY-MM-DD HH:MM` otherwise, so old history is not mistaken for today's.
pub fn message_line<Tz: TimeZone>(post: &Post, me: &str, lang: Lang, now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let message = &post.message;
    let time = stamp(message.ts, now);
    let label = match &post.place {
        Place::Lobby => time,
        Place::Room(room) => format!("{} {time}", validate::for_display(room)),
        Place::Private(to) if message.user.eq_ignore_ascii_case(me) => {
            format!("{} → {} {time}", i18n::private_label(lang), validate::for_display(to))
        }
        Place::Private(_) => format!("{} {time}", i18n::private_label(lang)),
    };
    format!(
        "[{label}] {}: {}",
        validate::for_display(&message.user),
        validate::for_display(&message.text)
    )
}

/// The time of a message stored at `ts` (milliseconds since the epoch), in
/// the time zone of `now`.
pub fn stamp<Tz: TimeZone>(ts: i64, now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    match now.timezone().timestamp_millis_opt(ts).single() {
        Some(time) if time.date_naive() == now.date_naive() => time.format("%H:%M").to_string(),
        Some(time) => time.format("%Y-%m-%d %H:%M").to_string(),
        None => "??:??".into(),
    }
}

/// One `/who` entry: `  ana (Ana Ríos)`.
pub fn who_line(username: &str, full_name: &str) -> String {
    format!(
        "  {} ({})",
        validate::for_display(username),
        validate::for_display(full_name)
    )
}

/// A byte count as people read it: `512 B`, `8.0 MiB` (`8,0 MiB` in
/// Spanish), in powers of 1024, one decimal from KiB up.
pub fn human_size(bytes: u64, lang: Lang) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // 1023.96 KiB would read as "1024.0 KiB": say 1.0 MiB instead.
    if format!("{value:.1}") == "1024.0" && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let number = format!("{value:.1}");
    let number = match lang {
        Lang::Es => number.replace('.', ","),
        Lang::En => number,
    };
    format!("{number} {}", UNITS[unit])
}

/// One `/archivos` entry: `  f3a0c11d92e4b7a05   8,0 MiB  ana  apuntes.pdf`.
pub fn file_line(id: &str, size: u64, owner: &str, name: &str, lang: Lang) -> String {
    format!(
        "  {}  {:>10}  {}  {}",
        validate::for_display(id),
        human_size(size, lang),
        validate::for_display(owner),
        validate::for_display(name)
    )
}

/// The start of a message, to name it in an error without repeating a long
/// text: at most `max` characters, with `…` when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = validate::for_display(text);
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The ids of the messages already shown, so one message that arrives both
/// live and in a `HISTORY` reply is shown once (PROTOCOL.md 5.2).
#[derive(Debug, Default)]
pub struct SeenIds {
    /// The most recent [`REMEMBERED_IDS`] ids shown.
    ids: BTreeSet<i64>,
}

impl SeenIds {
    /// Records `id`; true if it had not been shown before.
    pub fn first_time(&mut self, id: i64) -> bool {
        let new = self.ids.insert(id);
        if self.ids.len() > REMEMBERED_IDS {
            self.ids.pop_first();
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn message(ts: i64, user: &str, text: &str) -> Post {
        Post::lobby(ChatMessage {
            id: 1,
            ts,
            user: user.into(),
            text: text.into(),
        })
    }

    /// A line as `ana` sees it, in Spanish.
    fn line(post: &Post, now: &DateTime<Utc>) -> String {
        message_line(post, "ana", Lang::Es, now)
    }

    #[test]
    fn todays_messages_show_the_time_and_older_ones_the_date() {
        let now = Utc.with_ymd_and_hms(2025, 3, 4, 15, 0, 0).unwrap();
        let today = Utc.with_ymd_and_hms(2025, 3, 4, 14, 3, 59).unwrap().timestamp_millis();
        let before = Utc.with_ymd_and_hms(2025, 3, 3, 23, 59, 0).unwrap().timestamp_millis();
        assert_eq!(line(&message(today, "ana", "hola"), &now), "[14:03] ana: hola");
        assert_eq!(
            line(&message(before, "juan", "buenas"), &now),
            "[2025-03-03 23:59] juan: buenas"
        );
        assert_eq!(stamp(i64::MAX, &now), "??:??");
    }

    #[test]
    fn network_text_is_made_safe_to_print() {
        let now = Utc.with_ymd_and_hms(2025, 3, 4, 15, 0, 0).unwrap();
        let shown = line(&message(0, "ana\u{1b}", "a\u{1b}[2Jb\tc"), &now);
        assert!(!shown.contains('\u{1b}') && !shown.contains('\t'), "{shown:?}");
        assert!(shown.ends_with("ana\u{fffd}: a\u{fffd}[2Jb c"), "{shown:?}");
        let hostile = Post::addressed("#a\u{1b}", message(0, "bea", "x").message);
        assert!(!line(&hostile, &now).contains('\u{1b}'));
        let hostile = Post::addressed("@b\u{1b}", message(0, "ana", "x").message);
        assert!(!line(&hostile, &now).contains('\u{1b}'));
        assert_eq!(who_line("ana", "Ana\u{7}Ríos"), "  ana (Ana\u{fffd}Ríos)");
    }

    #[test]
    fn rooms_and_private_messages_say_where_they_belong() {
        let now = Utc.with_ymd_and_hms(2025, 3, 4, 15, 0, 0).unwrap();
        let ts = Utc.with_ymd_and_hms(2025, 3, 4, 10, 42, 0).unwrap().timestamp_millis();
        let room = Post::addressed("#Clase", message(ts, "bea", "hola sala").message);
        assert_eq!(line(&room, &now), "[#Clase 10:42] bea: hola sala");
        let to_me = Post::addressed("@ana", message(ts, "bea", "psst").message);
        assert_eq!(line(&to_me, &now), "[privado 10:42] bea: psst");
        assert_eq!(message_line(&to_me, "ana", Lang::En, &now), "[private 10:42] bea: psst");
        // Written by this account from another session: to whom.
        let mine = Post::addressed("@bea", message(ts, "Ana", "te escribo").message);
        assert_eq!(line(&mine, &now), "[privado → bea 10:42] Ana: te escribo");
        assert_eq!(
            message_line(&mine, "ana", Lang::En, &now),
            "[private → bea 10:42] Ana: te escribo"
        );
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_size(0, Lang::Es), "0 B");
        assert_eq!(human_size(1023, Lang::En), "1023 B");
        assert_eq!(human_size(1024, Lang::En), "1.0 KiB");
        assert_eq!(human_size(1536, Lang::Es), "1,5 KiB");
        assert_eq!(human_size(8 * 1024 * 1024, Lang::Es), "8,0 MiB");
        assert_eq!(human_size(1024 * 1024 - 1, Lang::En), "1.0 MiB");
        assert_eq!(human_size(1 << 32, Lang::En), "4.0 GiB");
        assert_eq!(human_size(u64::MAX, Lang::En), "16.0 EiB");
    }

    #[test]
    fn file_lines_are_safe_and_aligned() {
        assert_eq!(
            file_line("f01", 8 * 1024 * 1024, "ana", "tema 1.pdf", Lang::Es),
            "  f01     8,0 MiB  ana  tema 1.pdf"
        );
        assert!(!file_line("f01", 1, "ana", "a\u{1b}[2J", Lang::En).contains('\u{1b}'));
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("hola", 10), "hola");
        assert_eq!(excerpt("ñandú ñandú", 5), "ñandú…");
        assert_eq!(excerpt("a\u{1b}b", 5), "a\u{fffd}b");
    }

    #[test]
    fn seen_ids_tell_duplicates_and_stay_bounded() {
        let mut seen = SeenIds::default();
        assert!(seen.first_time(41));
        assert!(!seen.first_time(41));
        assert!(seen.first_time(40));
        for id in 100..100 + REMEMBERED_IDS as i64 {
            seen.first_time(id);
        }
        assert_eq!(seen.ids.len(), REMEMBERED_IDS);
        assert!(!seen.ids.contains(&40));
    }
}

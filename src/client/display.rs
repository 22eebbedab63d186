//! How chat content from the network looks on screen: `[14:03] ana: hola`,
//! the `/who` lines, and which message ids were already shown.
//!
//! Every string here that came from the network goes through
//! [`validate::for_display`], so a faulty or hostile server cannot send
//! escape sequences to the user's terminal. Pure: the clock is a parameter.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone};

use crate::core::validate;
use crate::proto::charla::ChatMessage;

/// How many message ids [`SeenIds`] remembers; older ones are forgotten, so
/// a long session does not grow without bound.
const REMEMBERED_IDS: usize = 10_000;

/// One message as a line: local time, author, text.
///
/// The time is `HH:MM` for a message of the same local day as `now`, and
/// `YYYY-MM-DD HH:MM` otherwise, so old history is not mistaken for today's.
pub fn message_line<Tz: TimeZone>(message: &ChatMessage, now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    format!(
        "[{}] {}: {}",
        stamp(message.ts, now),
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

    fn message(ts: i64, user: &str, text: &str) -> ChatMessage {
        ChatMessage {
            id: 1,
            ts,
            user: user.into(),
            text: text.into(),
        }
    }

    #[test]
    fn todays_messages_show_the_time_and_older_ones_the_date() {
        let now = Utc.with_ymd_and_hms(2025, 3, 4, 15, 0, 0).unwrap();
        let today = Utc.with_ymd_and_hms(2025, 3, 4, 14, 3, 59).unwrap().timestamp_millis();
        let before = Utc.with_ymd_and_hms(2025, 3, 3, 23, 59, 0).unwrap().timestamp_millis();
        assert_eq!(message_line(&message(today, "ana", "hola"), &now), "[14:03] ana: hola");
        assert_eq!(
            message_line(&message(before, "juan", "buenas"), &now),
            "[2025-03-03 23:59] juan: buenas"
        );
        assert_eq!(stamp(i64::MAX, &now), "??:??");
    }

    #[test]
    fn network_text_is_made_safe_to_print() {
        let now = Utc.with_ymd_and_hms(2025, 3, 4, 15, 0, 0).unwrap();
        let line = message_line(&message(0, "ana\u{1b}", "a\u{1b}[2Jb\tc"), &now);
        assert!(!line.contains('\u{1b}') && !line.contains('\t'), "{line:?}");
        assert!(line.ends_with("ana\u{fffd}: a\u{fffd}[2Jb c"), "{line:?}");
        assert_eq!(who_line("ana", "Ana\u{7}Ríos"), "  ana (Ana\u{fffd}Ríos)");
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

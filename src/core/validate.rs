//! The value rules of PROTOCOL.md 5.1 and 5.2: usernames, passwords, full
//! names and message texts, plus the display filter the client uses.
//!
//! Pure functions on `&str`, shared by the server (which refuses bad values)
//! and the client (which checks before sending, and strips anything
//! dangerous before printing, as a second line of defence).

use super::code::ErrorCode;

/// Longest username, in characters (all ASCII).
pub const MAX_USERNAME: usize = 32;
/// Shortest password, in bytes.
pub const MIN_PASSWORD: usize = 8;
/// Longest password, in bytes: bcrypt ignores anything past 72.
pub const MAX_PASSWORD: usize = 72;
/// Longest full name, in Unicode scalar values, after trimming.
pub const MAX_FULL_NAME: usize = 100;
/// Longest message text, in Unicode scalar values, after trimming.
pub const MAX_TEXT: usize = 2000;

/// Checks a username: 1 to 32 characters of `[A-Za-z0-9_.-]`.
///
/// # Errors
/// [`ErrorCode::InvalidUsername`] when the rule is broken.
pub fn username(name: &str) -> Result<&str, ErrorCode> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USERNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok { Ok(name) } else { Err(ErrorCode::InvalidUsername) }
}

/// Checks a room name: `#` and 1 to 32 characters of `[A-Za-z0-9_.-]`
/// (PROTOCOL.md 9.1).
///
/// # Errors
/// [`ErrorCode::InvalidRoom`] when the rule is broken.
pub fn room(name: &str) -> Result<&str, ErrorCode> {
    match name.strip_prefix('#') {
        Some(rest) if username(rest).is_ok() => Ok(name),
        _ => Err(ErrorCode::InvalidRoom),
    }
}

/// Checks a password: 8 to 72 bytes of UTF-8 with no whitespace (every
/// character Unicode calls White_Space: space, TAB, VT, FF, U+00A0, U+3000,
/// ...) and none of the characters 5.2 refuses in texts.
///
/// `char::is_whitespace` is exactly Unicode's White_Space property, so a
/// password that looks like two words on one screen, or hides a line break,
/// never becomes an account's secret.
///
/// # Errors
/// [`ErrorCode::InvalidPassword`] when the rule is broken.
pub fn password(password: &str) -> Result<&str, ErrorCode> {
    let ok = (MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len())
        && !password.chars().any(|c| c.is_whitespace() || is_refused(c));
    if ok {
        Ok(password)
    } else {
        Err(ErrorCode::InvalidPassword)
    }
}

/// Whether some account may have this password: the rule of the day an
/// account was made may have been looser than [`password`]'s (before the
/// White_Space rule only space and TAB were refused), so `LOGIN` checks only
/// what every rule ever had in common, and accounts made under an older
/// rule keep working.
pub fn could_be_password(password: &str) -> bool {
    (MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len()) && !password.contains([' ', '\t'])
}

/// Trims and checks a full name: 1 to 100 characters, none refused by 5.2,
/// and no TAB. Returns the trimmed name, which is what is stored.
///
/// # Errors
/// [`ErrorCode::InvalidName`] when the rule is broken.
pub fn full_name(name: &str) -> Result<&str, ErrorCode> {
    let name = trim(name);
    let ok = is_within(name, MAX_FULL_NAME) && !name.chars().any(|c| c == '\t' || is_refused(c));
    if ok { Ok(name) } else { Err(ErrorCode::InvalidName) }
}

/// Trims and checks a message text: 1 to 2000 characters, none refused by
/// 5.2 (TAB is allowed). Returns the trimmed text, which is what is stored.
///
/// # Errors
/// [`ErrorCode::InvalidText`] when the rule is broken.
pub fn text(text: &str) -> Result<&str, ErrorCode> {
    let text = trim(text);
    let ok = is_within(text, MAX_TEXT) && !text.chars().any(is_refused);
    if ok { Ok(text) } else { Err(ErrorCode::InvalidText) }
}

/// Checks a `@TAG` or `PING` token body: 1 to 64 characters of
/// `[A-Za-z0-9_-]`.
pub fn is_token(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether PROTOCOL.md 5.2 refuses this character in names and texts:
/// controls other than TAB, C1 controls, the line and paragraph separators,
/// and the bidirectional overrides and isolates that can disguise a line.
pub fn is_refused(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}'
        | '\u{a}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{2028}' | '\u{2029}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// Makes text from the network safe to print on a terminal: every refused
/// character (escape sequences start with one) becomes U+FFFD and a TAB
/// becomes a space. The server already refuses such text; the client applies
/// this anyway so a faulty or hostile server cannot reach the user's screen.
pub fn for_display(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if is_refused(c) => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// Removes surrounding spaces and tabs (U+0020 and U+0009 only).
fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Whether `s` has between 1 and `max` Unicode scalar values.
fn is_within(s: &str, max: usize) -> bool {
    !s.is_empty() && s.chars().take(max + 1).count() <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(username("ana").is_ok());
        assert!(username("J.Tique_2-x").is_ok());
        assert!(username(&"a".repeat(32)).is_ok());
        for bad in ["", "ana maria", "añá", "a/b", &"a".repeat(33)] {
            assert_eq!(username(bad), Err(ErrorCode::InvalidUsername), "{bad:?}");
        }
    }

    #[test]
    fn passwords_count_bytes() {
        assert!(password("12345678").is_ok());
        assert!(password(&"ñ".repeat(36)).is_ok()); // 72 bytes
        assert!(password(&"ñ".repeat(37)).is_err()); // 74 bytes
        assert!(password("1234567").is_err());
        assert!(password("1234\t5678").is_err());
        assert!(password("1234 5678").is_err());
    }

    #[test]
    fn passwords_refuse_every_unicode_white_space_and_refused_character() {
        // Unicode's White_Space property, every code point of it.
        let white_space = [
            '\u{9}', '\u{a}', '\u{b}', '\u{c}', '\u{d}', '\u{20}', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}',
            '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}',
            '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
        ];
        let refused = ['\u{0}', '\u{1b}', '\u{7f}', '\u{9f}', '\u{202e}', '\u{2066}'];
        for c in white_space.into_iter().chain(refused) {
            let candidate = format!("clave{c}1234");
            assert_eq!(
                password(&candidate),
                Err(ErrorCode::InvalidPassword),
                "U+{:04X}",
                c as u32
            );
        }
        // Not white space, not refused: allowed (zero-width space is not
        // White_Space in Unicode).
        assert!(password("clave\u{200b}1234").is_ok());
        assert!(password("contraseña-ñ").is_ok());
    }

    #[test]
    fn passwords_of_older_accounts_can_still_log_in() {
        assert!(could_be_password("clave\u{a0}1234"));
        assert!(could_be_password("clave\u{b}1234"));
        assert!(!could_be_password("clave 1234"));
        assert!(!could_be_password("corta"));
    }

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(full_name("  Ana María Ríos\t"), Ok("Ana María Ríos"));
        assert!(full_name(&"é".repeat(100)).is_ok());
        assert_eq!(full_name(&"é".repeat(101)), Err(ErrorCode::InvalidName));
        assert_eq!(full_name(" \t "), Err(ErrorCode::InvalidName));
        assert_eq!(full_name("Ana\tRíos"), Err(ErrorCode::InvalidName));
        assert_eq!(full_name("Ana\u{1b}[31m"), Err(ErrorCode::InvalidName));
    }

    #[test]
    fn texts_allow_inner_tabs_and_refuse_controls_and_bidi() {
        assert_eq!(text(" hola\tmundo "), Ok("hola\tmundo"));
        assert!(text(&"x".repeat(2000)).is_ok());
        assert_eq!(text(&"x".repeat(2001)), Err(ErrorCode::InvalidText));
        assert_eq!(text(""), Err(ErrorCode::InvalidText));
        for bad in [
            "a\u{0}",
            "a\u{1b}[2J",
            "a\u{7f}",
            "a\u{85}",
            "a\u{2028}",
            "a\u{202e}",
            "a\u{2067}",
        ] {
            assert_eq!(text(bad), Err(ErrorCode::InvalidText), "{bad:?}");
        }
    }

    #[test]
    fn rooms() {
        assert_eq!(room("#general"), Ok("#general"));
        assert!(room(&format!("#{}", "a".repeat(32))).is_ok());
        for bad in [
            "general",
            "#",
            "##a",
            "#a b",
            "#añá",
            &format!("#{}", "a".repeat(33)),
            "#a\u{202e}",
        ] {
            assert_eq!(room(bad), Err(ErrorCode::InvalidRoom), "{bad:?}");
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token("m1"));
        assert!(is_token(&"a".repeat(64)));
        assert!(!is_token(""));
        assert!(!is_token(&"a".repeat(65)));
        assert!(!is_token("a.b"));
    }

    #[test]
    fn display_filter_neutralises_escapes() {
        assert_eq!(for_display("a\u{1b}[2Jb\tc"), "a\u{fffd}[2Jb c");
        assert_eq!(for_display("hola ñ"), "hola ñ");
    }
}

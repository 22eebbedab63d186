//! Property tests of [`charla::proto::irc`], the IRC codec: nothing panics
//! on any input, and what the server writes, the parser reads back.
//!
//! Runs are deterministic, as in `tests/properties.rs`: a fixed seed unless
//! `PROPTEST_RNG_SEED` gives one. To explore further:
//!
//! ```text
//! PROPTEST_RNG_SEED=$RANDOM PROPTEST_CASES=20000 cargo test --release --test irc_properties
//! ```

use std::borrow::Cow;

use base64::Engine as _;
use charla::proto::irc::{self, Ctcp, MAX_BODY, MAX_SERVER_TIME_MS, MAX_TAGS, MIN_SERVER_TIME_MS, Size};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// proptest's defaults (and its `PROPTEST_*` variables), with a fixed seed
/// unless `PROPTEST_RNG_SEED` gives one.
fn config() -> ProptestConfig {
    let config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
        config
    } else {
        ProptestConfig {
            rng_seed: RngSeed::Fixed(0x00c4_a71a),
            ..config
        }
    }
}

/// Text drawn mostly from the characters that mean something to IRC, so
/// that random lines reach every branch of the parser.
fn ircish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("@"),
        Just(":"),
        Just(" "),
        Just("  "),
        Just(";"),
        Just("="),
        Just("\\"),
        Just("\\s"),
        Just("+"),
        Just("\x01"),
        Just("\x02"),
        Just("\x03"),
        Just("\x0f"),
        Just(","),
        Just("1"),
        Just("12"),
        Just("a"),
        Just("PRIVMSG"),
        Just("ACTION"),
        Just("#c"),
        Just("ñ"),
        Just("🙂"),
        Just("\t"),
        Just("\r"),
        Just("\0"),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Text made of formatting codes, digits and commas, where every rule of
/// colour codes is met many times in one text.
fn formatted() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\x03"),
        Just("\x03"),
        Just("\x02"),
        Just("\x0f"),
        Just("\x16"),
        Just("\x1d"),
        Just("\x1e"),
        Just("\x1f"),
        Just("\x04"),
        Just("0"),
        Just("1"),
        Just("12"),
        Just("345"),
        Just(","),
        Just(","),
        Just("a"),
        Just(" "),
        Just("ñ"),
    ];
    prop::collection::vec(piece, 0..30).prop_map(|pieces| pieces.concat())
}

/// A tag key: optionally client-only, optionally vendored.
fn tag_key() -> impl Strategy<Value = String> {
    "\\+?([a-z0-9.-]{1,8}/)?[A-Za-z0-9-]{1,10}"
}

/// A tag value: anything but NUL (which IRCv3 cannot carry), with the
/// characters that need escaping made likely.
fn tag_value() -> impl Strategy<Value = String> {
    prop_oneof!["[^\\x00]{0,20}", "[;\\\\ \\r\\na=s:]{0,12}"]
}

/// A source: one word without NUL, CR or LF.
fn source() -> impl Strategy<Value = String> {
    "[^\\x00\\r\\n ]{1,16}"
}

/// A command: letters, or a three-digit numeric.
fn command() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z]{1,10}", "[0-9]{3}"]
}

/// A middle parameter: non-empty, no space, not starting with `:`.
fn middle_param() -> impl Strategy<Value = String> {
    "[^\\x00\\r\\n :][^\\x00\\r\\n ]{0,10}"
}

/// A last parameter: anything on one line, `:` and spaces made likely.
fn last_param() -> impl Strategy<Value = String> {
    prop_oneof!["[^\\x00\\r\\n]{0,30}", "[: a]{0,6}", middle_param()]
}

/// The parts of one valid outgoing message.
#[derive(Debug, Clone)]
struct Outgoing {
    /// Tags in order, duplicates possible.
    tags: Vec<(String, String)>,
    /// The source, if any.
    source: Option<String>,
    /// The command.
    command: String,
    /// Middle parameters, then possibly a last one of any form.
    params: Vec<String>,
    /// Whether the last parameter is forced to the trailing form.
    trailing: bool,
}

fn outgoing() -> impl Strategy<Value = Outgoing> {
    (
        prop::collection::vec((tag_key(), tag_value()), 0..5),
        prop::option::of(source()),
        command(),
        prop::collection::vec(middle_param(), 0..18),
        prop::option::of(last_param()),
        any::<bool>(),
    )
        .prop_map(|(tags, source, command, mut params, last, trailing)| {
            params.extend(last);
            Outgoing {
                tags,
                source,
                command,
                params,
                trailing,
            }
        })
}

/// The colour and formatting codes of PROTOCOL.md 13.2, as a second,
/// independent reading of the rule to check `strip_formatting` against.
fn strip_model(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let digits_at = |from: usize| {
        chars[from.min(chars.len())..]
            .iter()
            .take(2)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    while i < chars.len() {
        match chars[i] {
            '\u{2}' | '\u{f}' | '\u{16}' | '\u{1d}' | '\u{1e}' | '\u{1f}' => i += 1,
            '\u{3}' => {
                let foreground = digits_at(i + 1);
                i += 1 + foreground;
                if foreground > 0 && chars.get(i) == Some(&',') && digits_at(i + 1) > 0 {
                    i += 1 + digits_at(i + 1);
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// No input makes any function of the module panic.
    #[test]
    fn nothing_panics_on_any_input(text in prop_oneof![any::<String>(), ircish()], bytes in any::<Vec<u8>>(), n in any::<i64>(), max in 0usize..40) {
        if let Ok(message) = irc::parse(&text) {
            // What parse returns is well formed: a command of one word and
            // middle parameters that could be written again as they are.
            prop_assert!(!message.command.is_empty() && !message.command.contains(' '));
            let middles = message.params.len().saturating_sub(1);
            for param in &message.params[..middles] {
                prop_assert!(!param.is_empty() && !param.contains(' ') && !param.starts_with(':'));
            }
            prop_assert!(message.tags.iter().all(|tag| !tag.key.is_empty()));
            prop_assert!(message.source.is_none_or(|source| !source.is_empty() && !source.contains(' ')));
        }
        irc::check_size(&bytes);
        irc::check_size(text.as_bytes());
        irc::unescape_tag_value(&text);
        irc::strip_formatting(&text);
        irc::ctcp(&text);
        irc::split_text(&text, max);
        irc::parse_server_time(&text);
        irc::server_time(n);
        let _ = irc::sasl_plain(&text);
        let _ = irc::sasl_plain(&base64::engine::general_purpose::STANDARD.encode(&bytes));
    }

    /// What `write_line` writes for a valid message is one line that
    /// `parse` reads back into the same message, tags in order.
    #[test]
    fn written_lines_parse_back(message in outgoing()) {
        let tags: Vec<(&str, &str)> = message.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let params: Vec<&str> = message.params.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        irc::write_line(&mut out, &tags, message.source.as_deref(), &message.command, &params, message.trailing);
        let line = String::from_utf8(out).expect("UTF-8 in, UTF-8 out");
        let body = line.strip_suffix("\r\n").expect("ends with CRLF");
        prop_assert!(!body.contains(['\r', '\n', '\0']));

        let parsed = irc::parse(body).expect("a written line parses");
        let parsed_tags: Vec<(&str, &str)> = parsed.tags.iter().map(|tag| (tag.key, &*tag.value)).collect();
        prop_assert_eq!(parsed_tags, tags);
        prop_assert_eq!(parsed.source, message.source.as_deref());
        prop_assert_eq!(parsed.command, message.command.as_str());
        prop_assert_eq!(parsed.params, params);
        if message.trailing && !message.params.is_empty() {
            prop_assert!(body.contains(" :"));
        }
    }

    /// Any line that parses, written again, parses into the same message:
    /// parse keeps exactly what write_line needs (commands aside, which
    /// write_line only takes as letters and digits).
    #[test]
    fn parsed_lines_write_back(text in prop_oneof![ircish(), any::<String>()]) {
        let Ok(message) = irc::parse(&text) else {
            return Ok(());
        };
        if !message.command.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(());
        }
        let tags: Vec<(&str, &str)> = message.tags.iter().map(|tag| (tag.key, &*tag.value)).collect();
        let mut out = Vec::new();
        irc::write_line(&mut out, &tags, message.source, message.command, &message.params, false);
        let line = String::from_utf8(out).expect("UTF-8 in, UTF-8 out");
        let again = irc::parse(line.strip_suffix("\r\n").expect("ends with CRLF")).expect("a written line parses");
        prop_assert_eq!(again, message);
    }

    /// Escaping and unescaping a tag value gives it back, and the escaped
    /// form holds none of the characters that would end the tag.
    #[test]
    fn tag_values_round_trip(value in tag_value()) {
        let mut escaped = String::new();
        irc::escape_tag_value(&value, &mut escaped);
        prop_assert!(!escaped.contains([';', ' ', '\r', '\n', '\0']));
        prop_assert_eq!(irc::unescape_tag_value(&escaped), value.as_str());
    }

    /// check_size measures tags and body apart, as PROTOCOL.md 13.3 says.
    #[test]
    fn check_size_follows_the_two_limits(tag_data in 0usize..4200, body in 0usize..700, tagged in any::<bool>()) {
        let mut line = Vec::new();
        if tagged {
            line.push(b'@');
            line.extend(std::iter::repeat_n(b'k', tag_data));
            line.push(b' ');
        }
        line.extend(std::iter::repeat_n(b'b', body));
        let fits = (!tagged || tag_data + 2 <= MAX_TAGS) && body <= MAX_BODY;
        prop_assert_eq!(irc::check_size(&line), if fits { Size::Ok } else { Size::TooLong });
    }

    /// strip_formatting agrees with an independent reading of the rule,
    /// leaves no code behind and borrows exactly when nothing was removed.
    #[test]
    fn strip_formatting_follows_the_rule(text in prop_oneof![formatted(), ircish(), any::<String>()]) {
        let stripped = irc::strip_formatting(&text);
        let model = strip_model(&text);
        prop_assert_eq!(&*stripped, model.as_str());
        let codes = ['\u{2}', '\u{3}', '\u{f}', '\u{16}', '\u{1d}', '\u{1e}', '\u{1f}'];
        prop_assert!(!stripped.contains(codes), "a code is left in {:?}", stripped);
        prop_assert_eq!(matches!(stripped, Cow::Borrowed(_)), *stripped == *text);
    }

    /// An action's text is what followed `ACTION `, whatever it holds.
    #[test]
    fn ctcp_action_gives_back_its_text(text in "[^\\x01]{0,30}", closed in any::<bool>()) {
        let line = format!("\x01ACTION {text}{}", if closed { "\x01" } else { "" });
        prop_assert_eq!(irc::ctcp(&line), Ctcp::Action(&text));
        let prefixed = format!("x{line}");
        prop_assert_eq!(irc::ctcp(&prefixed), Ctcp::None);
    }

    /// split_text's pieces are as long as they can be within the limit, end
    /// at char boundaries and concatenate to the text.
    #[test]
    fn split_text_pieces_are_exact(text in any::<String>(), max in 4usize..64) {
        let pieces = irc::split_text(&text, max);
        prop_assert_eq!(pieces.concat(), text.as_str());
        prop_assert!(!pieces.is_empty());
        if text.is_empty() {
            prop_assert_eq!(pieces, vec![""]);
        } else {
            for (i, piece) in pieces.iter().enumerate() {
                prop_assert!(!piece.is_empty() && piece.len() <= max);
                if let Some(next) = pieces.get(i + 1) {
                    let first = next.chars().next().expect("pieces are not empty");
                    prop_assert!(piece.len() + first.len_utf8() > max, "piece {} could be longer", i);
                }
            }
        }
    }

    /// Every instant server-time can write is read back exactly, and any
    /// i64 gives a value that reads back.
    #[test]
    fn server_time_round_trips(ms in MIN_SERVER_TIME_MS..=MAX_SERVER_TIME_MS, any_ms in any::<i64>()) {
        let text = irc::server_time(ms);
        prop_assert_eq!(text.len(), 24);
        prop_assert_eq!(irc::parse_server_time(&text), Some(ms));
        let clamped = any_ms.clamp(MIN_SERVER_TIME_MS, MAX_SERVER_TIME_MS);
        prop_assert_eq!(irc::parse_server_time(&irc::server_time(any_ms)), Some(clamped));
    }

    /// A SASL PLAIN payload made of any three fields gives them back.
    #[test]
    fn sasl_plain_round_trips(authzid in "[^\\x00]{0,10}", authcid in "[^\\x00]{1,10}", password in "[^\\x00]{1,20}") {
        let payload = base64::engine::general_purpose::STANDARD.encode(format!("{authzid}\0{authcid}\0{password}"));
        prop_assert_eq!(irc::sasl_plain(&payload), Ok((authzid, authcid, password)));
    }
}

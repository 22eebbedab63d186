//! IRC's wire format (PROTOCOL.md 13), pure: a received line to a
//! [`Message`] ([`parse`]), an outgoing message to bytes ([`write_line`]),
//! and the small encodings the IRC front end meets on the way: IRCv3 tag
//! escaping, the size limits of a received line ([`check_size`]), formatting
//! codes ([`strip_formatting`]), CTCP actions ([`ctcp`]), long texts over
//! several lines ([`split_text`]), server-time ([`server_time`],
//! [`parse_server_time`]) and SASL PLAIN ([`sasl_plain`]).
//!
//! Lines come from [`crate::proto::frame::LineReader`] with
//! [`MAX_WIRE_LINE`] (it strips the CRLF or bare LF), then [`check_size`],
//! then a UTF-8 check, then [`parse`].
//!
//! It follows the modern IRC client protocol as modern.ircdocs.horse
//! describes it and IRCv3 message-tags, leniently where real clients and
//! servers differ (runs of spaces, unknown escapes, more than 15
//! parameters). It owns the shape of a line and nothing else: it never does
//! I/O and knows nothing of sessions, accounts or rooms; what a command
//! means is the front end's business.

use std::borrow::Cow;

use thiserror::Error;

/// One parsed IRC line, borrowing the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The message tags in the order sent, values unescaped. Duplicates are
    /// kept as sent; IRCv3 says the last one counts, which [`Message::tag`]
    /// honours.
    pub tags: Vec<Tag<'a>>,
    /// The source without its leading `:`; servers ignore it from clients,
    /// but it is parsed so that it is never mistaken for the command.
    pub source: Option<&'a str>,
    /// The command as sent (compare it ignoring ASCII case); any run of
    /// non-space characters, so that an unknown command can be answered
    /// `421` with its name rather than rejected here.
    pub command: &'a str,
    /// The middle parameters, then the trailing one without its `:`; an
    /// empty trailing parameter (`PRIVMSG #a :`) is kept as `""`, because
    /// "present and empty" and "absent" mean different things.
    pub params: Vec<&'a str>,
}

/// One message tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The key as sent, with the leading `+` of a client-only tag, so the
    /// front end can tell client-only tags (never stored or relayed) apart.
    pub key: &'a str,
    /// The unescaped value; `""` when the tag had no value, as IRCv3 treats
    /// `key`, `key=` and an absent value alike. Borrowed unless an escape
    /// had to be undone.
    pub value: Cow<'a, str>,
}

impl<'a> Message<'a> {
    /// The value of tag `key` (compared exactly: tag keys are
    /// case-sensitive), the last one when the tag was sent more than once, as
    /// IRCv3 message-tags says.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().rev().find(|tag| tag.key == key).map(|tag| &*tag.value)
    }

    /// Parameter `i` (0-based), so commands can read optional parameters
    /// without indexing checks.
    pub fn param(&self, i: usize) -> Option<&'a str> {
        self.params.get(i).copied()
    }

    /// Whether the command is `name`, ignoring ASCII case, as IRC commands
    /// are case-insensitive.
    pub fn command_is(&self, name: &str) -> bool {
        self.command.eq_ignore_ascii_case(name)
    }
}

/// Why a line is not a message. What the front end answers is PROTOCOL.md
/// 13's business: a NUL ([`ParseError::ForbiddenByte`]) gets a `NOTICE`,
/// a blank line nothing.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Error)]
pub enum ParseError {
    /// Nothing but spaces: ignored without a reply, like a blank charla line.
    #[error("empty line")]
    Empty,
    /// Tags or a source, but no command after them.
    #[error("no command")]
    NoCommand,
    /// A lone `:` where the source should be: nothing can be said about a
    /// line whose first word is empty.
    #[error("empty source")]
    EmptySource,
    /// A NUL, CR or LF inside the line: IRC forbids them anywhere in a
    /// message, and passing one on could break another peer's framing.
    #[error("NUL, CR or LF inside the line")]
    ForbiddenByte,
}

/// Parses one line without its line ending (CR/LF already stripped).
///
/// The parts are separated by one or more spaces (RFC 1459 says so and
/// real servers send runs of them); leading and trailing spaces are
/// ignored. Tags are `@k=v;k2` with IRCv3 escaping undone (see
/// [`unescape_tag_value`]); empty tag entries (`@;a`, `@=v`) are skipped. A
/// parameter starting with `:` is the trailing one and takes the rest of the
/// line. Parameters beyond the 15 of the RFC are kept as middle parameters:
/// being lenient costs nothing and refusing would help no one.
///
/// # Errors
/// [`ParseError`] for a blank line, a missing command, an empty source or a
/// NUL, CR or LF anywhere.
pub fn parse(line: &str) -> Result<Message<'_>, ParseError> {
    if line.bytes().any(|b| matches!(b, b'\0' | b'\r' | b'\n')) {
        return Err(ParseError::ForbiddenByte);
    }
    let mut rest = line.trim_start_matches(' ');
    if rest.is_empty() {
        return Err(ParseError::Empty);
    }

    let mut tags = Vec::new();
    if let Some(tagged) = rest.strip_prefix('@') {
        let (tag_part, after) = split_word(tagged);
        for entry in tag_part.split(';') {
            let (key, raw) = entry.split_once('=').unwrap_or((entry, ""));
            if !key.is_empty() {
                tags.push(Tag {
                    key,
                    value: unescape_tag_value(raw),
                });
            }
        }
        rest = after;
    }

    let mut source = None;
    if let Some(sourced) = rest.strip_prefix(':') {
        let (word, after) = split_word(sourced);
        if word.is_empty() {
            return Err(ParseError::EmptySource);
        }
        source = Some(word);
        rest = after;
    }

    let (command, mut rest) = split_word(rest);
    if command.is_empty() {
        return Err(ParseError::NoCommand);
    }

    let mut params = Vec::new();
    while !rest.is_empty() {
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        let (param, after) = split_word(rest);
        params.push(param);
        rest = after;
    }

    Ok(Message {
        tags,
        source,
        command,
        params,
    })
}

/// Splits `text` at its first space: the word before it, and what follows
/// with the run of spaces removed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(' ') {
        Some((word, rest)) => (word, rest.trim_start_matches(' ')),
        None => (text, ""),
    }
}

/// Undoes IRCv3 tag-value escaping: `\:` is `;`, `\s` a space, `\\` a
/// backslash, `\r` CR and `\n` LF; any other escaped character stands for
/// itself and a lone backslash at the end is dropped, as message-tags says.
/// Borrowed when there is no backslash, the common case.
pub fn unescape_tag_value(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            // `\\` and unknown escapes alike: the character itself.
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// Appends `value` with IRCv3 tag-value escaping, so that a value can hold
/// `;`, spaces, backslashes, CR and LF without breaking the line. A NUL
/// cannot be represented in a tag value at all and is left out.
pub fn escape_tag_value(value: &str, out: &mut String) {
    escape_pieces(value, |piece| out.push_str(piece));
}

/// The escaping of [`escape_tag_value`], handed out in pieces so that it can
/// write to a `String` or straight into an outgoing line.
fn escape_pieces(value: &str, mut push: impl FnMut(&str)) {
    let mut plain_from = 0;
    for (i, c) in value.char_indices() {
        let escaped = match c {
            ';' => "\\:",
            ' ' => "\\s",
            '\\' => "\\\\",
            '\r' => "\\r",
            '\n' => "\\n",
            '\0' => "",
            _ => continue,
        };
        push(&value[plain_from..i]);
        push(escaped);
        plain_from = i + c.len_utf8();
    }
    push(&value[plain_from..]);
}

/// Appends one outgoing line with its CRLF:
/// `@tags :source COMMAND p1 p2 :last\r\n`.
///
/// Tag values are escaped and a tag with an empty value is written as its
/// bare key. The last parameter is written with `:` when it must be (it is
/// empty, contains a space or starts with `:`) or always when `trailing` is
/// true (and there is a parameter): text-bearing parameters such as
/// `PRIVMSG`'s text then have one form whatever they hold, so clients and
/// scripts matching on ` :` see a consistent line.
///
/// Middle parameters must be non-empty, without spaces and not start with
/// `:`; the source, the command and the tag keys must not contain spaces
/// either. Those are the caller's invariants (checked with `debug_assert!`).
/// A NUL, CR or LF anywhere would end the line early or inject another one,
/// so, beyond the debug check, each is written as a space: whatever the
/// caller passes, exactly one line comes out.
pub fn write_line(
    out: &mut Vec<u8>,
    tags: &[(&str, &str)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
    trailing: bool,
) {
    if !tags.is_empty() {
        out.push(b'@');
        for (i, (key, value)) in tags.iter().enumerate() {
            debug_assert!(
                !key.is_empty() && !key.contains([' ', ';', '=']),
                "tag key {key:?} is not a key"
            );
            if i > 0 {
                out.push(b';');
            }
            push_clean(out, key);
            if !value.is_empty() {
                out.push(b'=');
                escape_pieces(value, |piece| out.extend_from_slice(piece.as_bytes()));
            }
        }
        out.push(b' ');
    }
    if let Some(source) = source {
        debug_assert!(
            !source.is_empty() && !source.contains(' '),
            "source {source:?} is not one word"
        );
        out.push(b':');
        push_clean(out, source);
        out.push(b' ');
    }
    debug_assert!(
        !command.is_empty() && command.bytes().all(|b| b.is_ascii_alphanumeric()),
        "command {command:?} is not a command"
    );
    push_clean(out, command);
    for (i, param) in params.iter().enumerate() {
        out.push(b' ');
        let last = i + 1 == params.len();
        if last && (trailing || param.is_empty() || param.contains(' ') || param.starts_with(':')) {
            out.push(b':');
        } else {
            debug_assert!(
                !param.is_empty() && !param.contains(' ') && !param.starts_with(':'),
                "middle parameter {param:?} would be misread"
            );
        }
        push_clean(out, param);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `text` with every NUL, CR and LF written as a space, so that it
/// stays inside one line.
fn push_clean(out: &mut Vec<u8>, text: &str) {
    debug_assert!(!text.contains(['\0', '\r', '\n']), "{text:?} holds a NUL, CR or LF");
    out.extend(text.bytes().map(inside_line));
}

/// `byte`, or a space for a NUL, CR or LF.
fn inside_line(byte: u8) -> u8 {
    match byte {
        b'\0' | b'\r' | b'\n' => b' ',
        _ => byte,
    }
}

/// The longest body of a received line, without its CRLF: 512 bytes with
/// it (PROTOCOL.md 13.3, RFC 1459). Tags are counted apart, by [`MAX_TAGS`].
pub const MAX_BODY: usize = 510;

/// The most bytes of client tags a received line may carry, counting the
/// leading `@` and the space after them (PROTOCOL.md 13.3; IRCv3
/// message-tags allows clients 4094 bytes of tag data).
pub const MAX_TAGS: usize = 4096;

/// The longest received line with its CRLF, the limit to give
/// [`crate::proto::frame::LineReader`]: it accepts a line whose bytes,
/// counting its `\n` and a `\r` before it, are at most its limit, so a
/// line with [`MAX_TAGS`] bytes of tags and a [`MAX_BODY`]-byte body passes
/// it and [`check_size`] decides. Anything longer is refused while reading,
/// without being buffered.
pub const MAX_WIRE_LINE: usize = MAX_TAGS + MAX_BODY + 2;

/// Whether a received line is within the limits of PROTOCOL.md 13.3; a line
/// that is not is answered `417` and ignored.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Size {
    /// Within both limits.
    Ok,
    /// Its tags are over [`MAX_TAGS`] or its body over [`MAX_BODY`].
    TooLong,
}

/// Whether the raw line's command (after any tags and source) is
/// `command`, ASCII case-insensitively: for lines that cannot be parsed
/// (not UTF-8, a NUL) but whose command still decides how they are
/// refused.
pub fn command_is(line: &[u8], command: &[u8]) -> bool {
    let mut rest = line;
    for marker in [b'@', b':'] {
        if rest.first() == Some(&marker) {
            let Some(space) = rest.iter().position(|&b| b == b' ') else {
                return false;
            };
            rest = &rest[space + 1..];
            while rest.first() == Some(&b' ') {
                rest = &rest[1..];
            }
        }
    }
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    rest[..end].eq_ignore_ascii_case(command)
}

/// Checks the two size limits of PROTOCOL.md 13.3 on the bytes of one
/// received line without its line ending, before it is parsed (or even
/// checked for UTF-8), so that tags cannot be used to send a longer body.
///
/// When the line starts with `@`, its tag part is everything up to and
/// including the first space (a line of tags alone counts as if that space
/// were there), and the body is the rest, any further spaces included.
/// Otherwise the whole line is body. IRC has no leading spaces before tags,
/// so a line that starts with a space is all body: the stricter reading.
pub fn check_size(line_without_crlf: &[u8]) -> Size {
    let (tags_len, body_len) = match line_without_crlf.first() {
        Some(b'@') => match line_without_crlf.iter().position(|&b| b == b' ') {
            Some(space) => (space + 1, line_without_crlf.len() - space - 1),
            None => (line_without_crlf.len() + 1, 0),
        },
        _ => (0, line_without_crlf.len()),
    };
    if tags_len > MAX_TAGS || body_len > MAX_BODY {
        Size::TooLong
    } else {
        Size::Ok
    }
}

/// How many bytes of text fit as the trailing parameter of a line the
/// server sends with this source, command and middle parameters, within
/// the 512 bytes (CRLF included) that clients accept for a body; the tags
/// the server adds have a budget of their own (IRCv3: 8191 bytes), so they
/// do not count. The front end splits longer texts with [`split_text`]
/// (minus 9 bytes for the `\x01ACTION ` and `\x01` of an action). 0 when
/// even an empty text does not fit.
pub fn text_budget(source: Option<&str>, command: &str, middle_params: &[&str]) -> usize {
    let source_len = source.map_or(0, |source| source.len() + 2);
    let middle_len: usize = middle_params.iter().map(|param| param.len() + 1).sum();
    // " :" before the text.
    MAX_BODY.saturating_sub(source_len + command.len() + middle_len + 2)
}

/// Removes IRC formatting codes from a text before the text rules of
/// PROTOCOL.md 5.2 apply (they refuse control characters, and a charla
/// client would show the codes as garbage), exactly as PROTOCOL.md 13.2
/// lists them: U+0002 (bold); U+0003 (colour) with up to two digits after
/// it, and a comma with up to two digits after those only where a digit
/// came first and one follows the comma (`"\x03,5"` keeps `",5"`,
/// `"\x031,x"` keeps `",x"`); U+000F (reset), U+0016 (reverse), U+001D
/// (italics), U+001E (strikethrough) and U+001F (underline). Other
/// control characters stay, for 5.2 to refuse. Borrowed when there is
/// nothing to remove.
pub fn strip_formatting(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| is_format_code(b) || b == COLOUR) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // Every byte skipped is ASCII, so each slice boundary is a char boundary.
    let mut copy_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if is_format_code(byte) {
            out.push_str(&text[copy_from..i]);
            i += 1;
            copy_from = i;
        } else if byte == COLOUR {
            out.push_str(&text[copy_from..i]);
            i += 1;
            let foreground = leading_digits(&bytes[i..]);
            i += foreground;
            if foreground > 0 && bytes.get(i) == Some(&b',') {
                let background = leading_digits(&bytes[i + 1..]);
                if background > 0 {
                    i += 1 + background;
                }
            }
            copy_from = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copy_from..]);
    Cow::Owned(out)
}

/// U+0003, which starts a colour code.
const COLOUR: u8 = 0x03;

/// Whether `byte` is a one-byte formatting code (every code but colour).
fn is_format_code(byte: u8) -> bool {
    matches!(byte, 0x02 | 0x0f | 0x16 | 0x1d | 0x1e | 0x1f)
}

/// How many ASCII digits `bytes` starts with, at most two: a colour number.
fn leading_digits(bytes: &[u8]) -> usize {
    bytes.iter().take(2).take_while(|b| b.is_ascii_digit()).count()
}

/// What a `PRIVMSG` text is as CTCP (PROTOCOL.md 13.2): an action is stored
/// as `/me text`, any other CTCP request is ignored, and a plain text is
/// just a message.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Ctcp<'a> {
    /// Not CTCP: an ordinary text.
    None,
    /// `\x01ACTION text\x01`, what `/me text` sends: the text after
    /// `ACTION` and its space, which may be empty.
    Action(&'a str),
    /// Any other text starting with `\x01` (`VERSION`, `PING`, `DCC`, …).
    Other,
}

/// Classifies a `PRIVMSG` text as CTCP. The closing `\x01` is optional,
/// because some clients omit it (and a text cut at a line's end loses it);
/// the command name is compared ignoring ASCII case, as clients differ.
pub fn ctcp(text: &str) -> Ctcp<'_> {
    let Some(body) = text.strip_prefix('\x01') else {
        return Ctcp::None;
    };
    let body = body.strip_suffix('\x01').unwrap_or(body);
    let (command, argument) = body.split_once(' ').unwrap_or((body, ""));
    if command.eq_ignore_ascii_case("ACTION") {
        Ctcp::Action(argument)
    } else {
        Ctcp::Other
    }
}

/// Splits `text` into pieces of at most `max_bytes` bytes, each ending at a
/// char boundary, so a stored text too long for one IRC line reaches IRC
/// clients over several lines whose texts, concatenated, are the stored
/// text (PROTOCOL.md 13.2). Pieces are as long as they can be; there is at
/// least one (`""` gives `[""]`), and none is empty otherwise. Should
/// `max_bytes` be smaller than a character, that character is a piece of its
/// own (over the limit) rather than lost or looped on.
pub fn split_text(text: &str, max_bytes: usize) -> Vec<&str> {
    let mut pieces = Vec::with_capacity(text.len() / max_bytes.max(1) + 1);
    let mut rest = text;
    while rest.len() > max_bytes {
        let mut cut = max_bytes;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, after) = rest.split_at(cut);
        pieces.push(piece);
        rest = after;
    }
    // With `max_bytes` 0 the loop can use up the text.
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// The earliest instant [`server_time`] writes, 0000-01-01T00:00:00.000Z,
/// in milliseconds since the Unix epoch: earlier ones would need a sign or
/// a fifth digit that server-time's format has no room for.
pub const MIN_SERVER_TIME_MS: i64 = -62_167_219_200_000;

/// The latest instant [`server_time`] writes, 9999-12-31T23:59:59.999Z.
pub const MAX_SERVER_TIME_MS: i64 = 253_402_300_799_999;

/// A message's `TS` (milliseconds since the Unix epoch) as IRCv3
/// server-time, `2026-11-30T12:34:56.789Z`: the value of the `time` tag
/// (PROTOCOL.md 13.2). Instants outside the four-digit years are written as
/// [`MIN_SERVER_TIME_MS`] or [`MAX_SERVER_TIME_MS`], so any input gives a
/// well-formed value that [`parse_server_time`] reads back.
pub fn server_time(ts_ms: i64) -> String {
    use chrono::{Datelike, Timelike};

    let clamped = ts_ms.clamp(MIN_SERVER_TIME_MS, MAX_SERVER_TIME_MS);
    let at = chrono::DateTime::from_timestamp_millis(clamped).expect("years 0000 to 9999 are inside chrono's range");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.timestamp_subsec_millis()
    )
}

/// Reads a server-time value back into milliseconds since the Unix epoch,
/// for the `timestamp=` selectors of `CHATHISTORY`: exactly
/// `YYYY-MM-DDThh:mm:ss` with an optional `.` and one or more fractional
/// digits (beyond three truncated), then `Z`. `None` for anything else: an
/// offset, lowercase `t` or `z`, signs, a date that does not exist (such as
/// 2025-02-29) or second 60, so that a selector is never guessed at.
pub fn parse_server_time(text: &str) -> Option<i64> {
    let (head, tail) = text.as_bytes().split_at_checked(19)?;
    let head: &[u8; 19] = head.try_into().ok()?;
    // YYYY-MM-DDThh:mm:ss
    if [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
        .iter()
        .any(|&(at, separator)| head[at] != separator)
    {
        return None;
    }
    let number = |digits: &[u8]| -> Option<u32> {
        digits.iter().try_fold(0u32, |value, &digit| {
            digit.is_ascii_digit().then(|| value * 10 + u32::from(digit - b'0'))
        })
    };
    let year = number(&head[0..4])?;
    let month = number(&head[5..7])?;
    let day = number(&head[8..10])?;
    let hour = number(&head[11..13])?;
    let minute = number(&head[14..16])?;
    let second = number(&head[17..19])?;

    let fraction = tail.strip_suffix(b"Z")?;
    let millis = match fraction {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            let mut padded = [b'0'; 3];
            for (slot, &digit) in padded.iter_mut().zip(digits) {
                *slot = digit;
            }
            number(&padded)?
        }
        _ => return None,
    };

    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    // chrono refuses second 60 and over; millis are under 1000 here, so its
    // leap-second form (second 59 with millis over 999) cannot arise.
    let time = chrono::NaiveTime::from_hms_milli_opt(hour, minute, second, millis)?;
    Some(date.and_time(time).and_utc().timestamp_millis())
}

/// Why an `AUTHENTICATE` payload for SASL PLAIN is malformed; the front end
/// answers each with `904`, like wrong credentials (PROTOCOL.md 13.1).
#[derive(Debug, PartialEq, Eq, Clone, Copy, Error)]
pub enum SaslError {
    /// Not standard base64 with canonical padding.
    #[error("not standard base64")]
    BadBase64,
    /// Not exactly two NULs, so not `authzid NUL authcid NUL password`.
    #[error("not authzid, authcid and password separated by NULs")]
    WrongFieldCount,
    /// The decoded bytes are not UTF-8, which account names and passwords
    /// are.
    #[error("not UTF-8")]
    NotUtf8,
    /// An empty authcid (user name) or password, which RFC 4616 does not
    /// allow.
    #[error("empty user name or password")]
    EmptyField,
}

/// Decodes a SASL PLAIN payload (RFC 4616): standard base64, with padding,
/// of `authzid NUL authcid NUL password`, returned as (authzid, authcid,
/// password). The authzid may be empty (the usual case: "act as myself");
/// whether a non-empty one is accepted is the front end's decision. The
/// front end joins `AUTHENTICATE` chunks and turns a lone `+` into `""`
/// before calling this.
///
/// # Errors
/// [`SaslError`] for bad base64, a wrong number of NULs, bytes that are not
/// UTF-8, or an empty authcid or password.
pub fn sasl_plain(payload_b64: &str) -> Result<(String, String, String), SaslError> {
    use base64::Engine as _;

    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload_b64)
        .map_err(|_| SaslError::BadBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| SaslError::NotUtf8)?;
    let mut fields = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::WrongFieldCount);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::EmptyField);
    }
    Ok((authzid.to_owned(), authcid.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags<'a>(message: &'a Message<'_>) -> Vec<(&'a str, &'a str)> {
        message.tags.iter().map(|tag| (tag.key, &*tag.value)).collect()
    }

    fn line(tags: &[(&str, &str)], source: Option<&str>, command: &str, params: &[&str], trailing: bool) -> String {
        let mut out = Vec::new();
        write_line(&mut out, tags, source, command, params, trailing);
        String::from_utf8(out).expect("write_line writes UTF-8 for UTF-8 input")
    }

    #[test]
    fn parses_the_parts_of_a_full_line() {
        let message = parse("@time=2026-01-01T00:00:00.000Z;+draft/reply=7 :ana!a@h PRIVMSG #clase :hola a todos")
            .expect("a valid line");
        assert_eq!(
            tags(&message),
            [("time", "2026-01-01T00:00:00.000Z"), ("+draft/reply", "7")]
        );
        assert_eq!(message.source, Some("ana!a@h"));
        assert_eq!(message.command, "PRIVMSG");
        assert_eq!(message.params, ["#clase", "hola a todos"]);
        assert_eq!(message.tag("+draft/reply"), Some("7"));
        assert_eq!(message.tag("msgid"), None);
        assert_eq!(message.param(0), Some("#clase"));
        assert_eq!(message.param(2), None);
        assert!(message.command_is("privmsg"));
        assert!(!message.command_is("NOTICE"));
    }

    #[test]
    fn empty_trailing_is_kept_and_differs_from_none() {
        assert_eq!(parse("PRIVMSG #a :").expect("valid").params, ["#a", ""]);
        assert_eq!(parse("PRIVMSG #a").expect("valid").params, ["#a"]);
        assert_eq!(parse("PRIVMSG #a :  ").expect("valid").params, ["#a", "  "]);
    }

    #[test]
    fn colon_inside_a_middle_param_is_an_ordinary_character() {
        let message = parse("MODE #a:b +k x:y :z :w").expect("valid");
        assert_eq!(message.params, ["#a:b", "+k", "x:y", "z :w"]);
        assert_eq!(parse("foo ::x").expect("valid").params, [":x"]);
    }

    #[test]
    fn runs_of_spaces_separate_like_one() {
        let message = parse("  @a=1   :src   PRIVMSG   #a    b   :  text  ").expect("valid");
        assert_eq!(tags(&message), [("a", "1")]);
        assert_eq!(message.source, Some("src"));
        assert_eq!(message.command, "PRIVMSG");
        assert_eq!(message.params, ["#a", "b", "  text  "]);
        assert_eq!(parse("AWAY   ").expect("valid").params, Vec::<&str>::new());
        // A tab is not a separator.
        assert_eq!(parse("foo a\tb").expect("valid").params, ["a\tb"]);
    }

    #[test]
    fn more_than_fifteen_params_are_all_middle_params() {
        let words: Vec<String> = (1..=20).map(|i| format!("p{i}")).collect();
        let text = format!("CMD {} :last one", words.join(" "));
        let message = parse(&text).expect("valid");
        assert_eq!(message.params.len(), 21);
        assert_eq!(message.params[14], "p15");
        assert_eq!(message.params[19], "p20");
        assert_eq!(message.params[20], "last one");
    }

    #[test]
    fn tags_with_escapes_empty_values_and_duplicates() {
        let message = parse(r"@a=b\\and\nk;c=72\s45;d=gh\:764;e;f=;+g=\r\x\;h=end\ CMD").expect("valid");
        assert_eq!(
            tags(&message),
            [
                ("a", "b\\and\nk"),
                ("c", "72 45"),
                ("d", "gh;764"),
                ("e", ""),
                ("f", ""),
                ("+g", "\rx"),
                ("h", "end"),
            ]
        );
        assert!(matches!(message.tags[4].value, Cow::Borrowed(_)));
        assert!(matches!(message.tags[0].value, Cow::Owned(_)));

        let duplicated = parse("@k=1;j=2;k=3 CMD").expect("valid");
        assert_eq!(duplicated.tag("k"), Some("3"));
        assert_eq!(duplicated.tags.len(), 3);
        // Tag keys are case-sensitive; empty entries are skipped.
        assert_eq!(duplicated.tag("K"), None);
        assert_eq!(tags(&parse("@;a;;=v; CMD").expect("valid")), [("a", "")]);
        assert_eq!(tags(&parse("@ CMD").expect("valid")), []);
    }

    #[test]
    fn errors() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("   "), Err(ParseError::Empty));
        assert_eq!(parse("@a=b"), Err(ParseError::NoCommand));
        assert_eq!(parse("@a=b   "), Err(ParseError::NoCommand));
        assert_eq!(parse(":src"), Err(ParseError::NoCommand));
        assert_eq!(parse("@a :src "), Err(ParseError::NoCommand));
        assert_eq!(parse(": PING"), Err(ParseError::EmptySource));
        assert_eq!(parse("PRIVMSG #a :x\0y"), Err(ParseError::ForbiddenByte));
        assert_eq!(parse("PRIVMSG #a :x\ry"), Err(ParseError::ForbiddenByte));
        assert_eq!(parse("PING\n"), Err(ParseError::ForbiddenByte));
        assert_eq!(parse("@a=\0 PING"), Err(ParseError::ForbiddenByte));
    }

    #[test]
    fn command_is_any_word_so_unknown_ones_can_get_421() {
        assert_eq!(parse("FOO2 x").expect("valid").command, "FOO2");
        assert_eq!(parse("001 ana :Welcome").expect("valid").command, "001");
        assert_eq!(parse("ünïcode").expect("valid").command, "ünïcode");
    }

    #[test]
    fn unescape_and_escape() {
        assert!(matches!(unescape_tag_value("plain"), Cow::Borrowed("plain")));
        assert_eq!(unescape_tag_value(r"a\:b\sc\\d\re\nf"), "a;b c\\d\re\nf");
        assert_eq!(unescape_tag_value(r"\x\1\ä"), "x1ä");
        assert_eq!(unescape_tag_value("end\\"), "end");
        assert_eq!(unescape_tag_value("\\"), "");
        assert_eq!(unescape_tag_value(r"\\\\"), r"\\");

        let mut out = String::new();
        escape_tag_value("a;b c\\d\re\nf\0g ñ", &mut out);
        assert_eq!(out, r"a\:b\sc\\d\re\nfg\sñ");
        let mut out = String::from("kept:");
        escape_tag_value("", &mut out);
        assert_eq!(out, "kept:");
        let mut out = String::new();
        escape_tag_value("x;y", &mut out);
        assert_eq!(unescape_tag_value(&out), "x;y");
    }

    #[test]
    fn writes_tags_source_command_and_params() {
        assert_eq!(line(&[], None, "PING", &["srv"], false), "PING srv\r\n");
        assert_eq!(line(&[], None, "AWAY", &[], true), "AWAY\r\n");
        assert_eq!(
            line(
                &[("time", "2026-01-01T00:00:00.000Z"), ("msgid", "42"), ("+x", "")],
                Some("ana"),
                "PRIVMSG",
                &["#clase", "hola"],
                true
            ),
            "@time=2026-01-01T00:00:00.000Z;msgid=42;+x :ana PRIVMSG #clase :hola\r\n"
        );
        assert_eq!(
            line(&[("a", "b c;d\\")], None, "CMD", &[], false),
            "@a=b\\sc\\:d\\\\ CMD\r\n"
        );
    }

    #[test]
    fn last_param_gets_a_colon_only_when_needed_or_asked() {
        assert_eq!(line(&[], Some("s"), "CMD", &["a", "b"], false), ":s CMD a b\r\n");
        assert_eq!(line(&[], Some("s"), "CMD", &["a", "b"], true), ":s CMD a :b\r\n");
        assert_eq!(line(&[], None, "CMD", &["a", ""], false), "CMD a :\r\n");
        assert_eq!(line(&[], None, "CMD", &["a", "b c"], false), "CMD a :b c\r\n");
        assert_eq!(line(&[], None, "CMD", &[":b"], false), "CMD ::b\r\n");
        assert_eq!(line(&[], None, "CMD", &["a:b"], false), "CMD a:b\r\n");
    }

    #[test]
    fn written_lines_parse_back() {
        let text = line(
            &[("k", "v; \\\r\n"), ("+c", "")],
            Some("ana!a@h"),
            "PRIVMSG",
            &["#a", " :x "],
            false,
        );
        let body = text.strip_suffix("\r\n").expect("CRLF at the end");
        let message = parse(body).expect("valid");
        assert_eq!(tags(&message), [("k", "v; \\\r\n"), ("+c", "")]);
        assert_eq!(message.source, Some("ana!a@h"));
        assert_eq!(message.params, ["#a", " :x "]);
    }

    #[test]
    fn nul_cr_and_lf_become_spaces() {
        let cleaned: Vec<u8> = b"a\0b\rc\nd\te".iter().copied().map(inside_line).collect();
        assert_eq!(cleaned, b"a b c d\te");
    }

    /// Release builds only: in debug builds `write_line` asserts instead.
    #[test]
    #[cfg(not(debug_assertions))]
    fn line_breaks_in_params_cannot_inject_a_line() {
        let text = line(&[], None, "PRIVMSG", &["#a", "x\r\nQUIT :bye\0"], true);
        assert_eq!(text, "PRIVMSG #a :x  QUIT :bye \r\n");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "holds a NUL, CR or LF")]
    fn line_breaks_in_params_are_a_caller_bug() {
        line(&[], None, "PRIVMSG", &["#a", "x\r\nQUIT"], true);
    }

    fn tagged(tag_part_len: usize, body_len: usize) -> Vec<u8> {
        // `@` + data + ` ` is `tag_part_len` bytes.
        let mut line = vec![b'@'];
        line.extend(std::iter::repeat_n(b'a', tag_part_len - 2));
        line.push(b' ');
        line.extend(std::iter::repeat_n(b'b', body_len));
        line
    }

    #[test]
    fn size_limits_exactly_at_their_boundaries() {
        assert_eq!(check_size(&vec![b'x'; 510]), Size::Ok);
        assert_eq!(check_size(&vec![b'x'; 511]), Size::TooLong);
        assert_eq!(check_size(b""), Size::Ok);
        assert_eq!(check_size(&tagged(4096, 510)), Size::Ok);
        assert_eq!(check_size(&tagged(4097, 510)), Size::TooLong);
        assert_eq!(check_size(&tagged(4096, 511)), Size::TooLong);
        assert_eq!(check_size(&tagged(2, 510)), Size::Ok);
        // Tags do not lend their unused bytes to the body.
        assert_eq!(check_size(&tagged(10, 600)), Size::TooLong);
        // Extra spaces after the tags belong to the body.
        let mut spaced = tagged(4096, 0);
        spaced.extend(std::iter::repeat_n(b' ', 510));
        assert_eq!(check_size(&spaced), Size::Ok);
        spaced.push(b' ');
        assert_eq!(check_size(&spaced), Size::TooLong);
        // Tags alone: counted as if the space were there.
        let mut alone = tagged(4096, 0);
        alone.pop();
        assert_eq!(check_size(&alone), Size::Ok);
        alone.push(b'a');
        assert_eq!(check_size(&alone), Size::TooLong);
        // Not starting with `@`: all body.
        let mut late = vec![b' '];
        late.extend(tagged(100, 410));
        assert_eq!(check_size(&late), Size::TooLong);
    }

    #[test]
    fn line_reader_with_max_wire_line_passes_the_longest_line_and_no_longer() {
        use crate::proto::frame::{Frame, LineReader};

        let longest = tagged(MAX_TAGS, MAX_BODY);
        // (what follows the longest line, what the reader then yields,
        // whether check_size accepts that line)
        let cases: [(&[u8], usize, Option<Size>); 5] = [
            (b"\r\n", 0, Some(Size::Ok)),
            (b"\n", 0, Some(Size::Ok)),
            (b"x\n", 1, Some(Size::TooLong)),
            (b"x\r\n", 1, None),
            (b"xx\n", 2, None),
        ];
        for (ending, extra, expected) in cases {
            let mut wire = longest.clone();
            wire.extend_from_slice(ending);
            wire.extend_from_slice(b"PING x\r\n");
            let mut reader = LineReader::new(&wire[..], MAX_WIRE_LINE);
            match (reader.read_frame().expect("in-memory reads cannot fail"), expected) {
                (Frame::Line(line), Some(size)) => {
                    assert_eq!(line.len(), longest.len() + extra);
                    assert_eq!(check_size(line), size, "{ending:?}");
                }
                (Frame::TooLong, None) => {}
                (frame, _) => panic!("{ending:?}: unexpected {frame:?}"),
            }
            assert_eq!(
                reader.read_frame().expect("in-memory reads cannot fail"),
                Frame::Line(b"PING x")
            );
        }
    }

    #[test]
    fn text_budget_leaves_room_for_the_rest_of_the_line() {
        let budget = text_budget(Some("ana"), "PRIVMSG", &["#clase"]);
        let text = "x".repeat(budget);
        let written = line(&[("time", "t")], Some("ana"), "PRIVMSG", &["#clase", &text], true);
        let body = written.split_once(' ').expect("tags").1;
        assert_eq!(body.len(), MAX_BODY + 2);
        assert_eq!(check_size(written.trim_end().as_bytes()), Size::Ok);
        assert_eq!(text_budget(None, "PING", &[]), 510 - 4 - 2);
        assert_eq!(text_budget(Some(&"s".repeat(600)), "PRIVMSG", &["#a"]), 0);
    }

    #[test]
    fn strips_formatting_as_the_spec_lists() {
        let cases = [
            ("plain", "plain"),
            (
                "\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x1estrike\x1e \x16rev\x16 \x0freset",
                "bold italic under strike rev reset",
            ),
            ("\x034red", "red"),
            ("\x0304red", "red"),
            ("\x03123", "3"),
            ("\x0312,34x", "x"),
            ("\x0312,345", "5"),
            ("\x031,2x", "x"),
            ("\x03,5", ",5"),
            ("\x031,x", ",x"),
            ("\x031,", ","),
            ("\x03", ""),
            ("a\x03b", "ab"),
            ("\x03\x03", ""),
            ("\x0312,\x0305y", ",y"),
            ("ñ\x02ü\x0399€", "ñü€"),
            // Not in the list: hex colour (U+0004), monospace (U+0011).
            ("\x04FF0000x\x11y", "\x04FF0000x\x11y"),
        ];
        for (text, expected) in cases {
            assert_eq!(strip_formatting(text), expected, "{text:?}");
        }
        assert!(matches!(strip_formatting("nada que quitar ñ"), Cow::Borrowed(_)));
        assert!(matches!(strip_formatting("\x02x"), Cow::Owned(_)));
    }

    #[test]
    fn ctcp_actions_and_others() {
        assert_eq!(ctcp("\x01ACTION waves\x01"), Ctcp::Action("waves"));
        assert_eq!(ctcp("\x01ACTION waves"), Ctcp::Action("waves"));
        assert_eq!(ctcp("\x01ACTION  two spaces \x01"), Ctcp::Action(" two spaces "));
        assert_eq!(ctcp("\x01ACTION\x01"), Ctcp::Action(""));
        assert_eq!(ctcp("\x01ACTION"), Ctcp::Action(""));
        assert_eq!(ctcp("\x01ACTION \x01"), Ctcp::Action(""));
        assert_eq!(ctcp("\x01action waves\x01"), Ctcp::Action("waves"));
        assert_eq!(ctcp("\x01ACTIONS x\x01"), Ctcp::Other);
        assert_eq!(ctcp("\x01VERSION\x01"), Ctcp::Other);
        assert_eq!(ctcp("\x01"), Ctcp::Other);
        assert_eq!(ctcp("\x01\x01"), Ctcp::Other);
        assert_eq!(ctcp("hola"), Ctcp::None);
        assert_eq!(ctcp(""), Ctcp::None);
        assert_eq!(ctcp(" \x01ACTION x\x01"), Ctcp::None);
    }

    #[test]
    fn split_text_at_char_boundaries() {
        assert_eq!(split_text("", 10), [""]);
        assert_eq!(split_text("", 0), [""]);
        assert_eq!(split_text("abc", 3), ["abc"]);
        assert_eq!(split_text("abcdef", 3), ["abc", "def"]);
        assert_eq!(split_text("abcdefg", 3), ["abc", "def", "g"]);
        // "ñ" is 2 bytes, "€" 3, "🙂" 4.
        assert_eq!(split_text("añb", 2), ["a", "ñ", "b"]);
        assert_eq!(split_text("aañ", 3), ["aa", "ñ"]);
        assert_eq!(split_text("a€€", 4), ["a€", "€"]);
        assert_eq!(split_text("🙂🙂", 5), ["🙂", "🙂"]);
        assert_eq!(split_text("🙂🙂", 8), ["🙂🙂"]);
        assert_eq!(split_text("x🙂", 4), ["x", "🙂"]);
        // Smaller than a character: one character a piece, never stuck.
        assert_eq!(split_text("€ab", 1), ["€", "a", "b"]);
        assert_eq!(split_text("ab", 0), ["a", "b"]);
        let long = "ñandú 🙂 ".repeat(100);
        for max in 1..20 {
            let pieces = split_text(&long, max);
            assert_eq!(pieces.concat(), long);
            assert!(
                pieces
                    .iter()
                    .all(|p| !p.is_empty() && (p.len() <= max || p.chars().count() == 1))
            );
        }
    }

    #[test]
    fn server_time_formats_milliseconds_since_the_epoch() {
        assert_eq!(server_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(server_time(1_796_042_096_789), "2026-11-30T12:34:56.789Z");
        assert_eq!(server_time(-1), "1969-12-31T23:59:59.999Z");
        // Leap days, and the years past 2038 that a 32-bit time_t cannot hold.
        assert_eq!(server_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(server_time(2_147_483_647_000), "2038-01-19T03:14:07.000Z");
        assert_eq!(server_time(2_147_483_648_000), "2038-01-19T03:14:08.000Z");
        assert_eq!(server_time(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(server_time(MIN_SERVER_TIME_MS), "0000-01-01T00:00:00.000Z");
        assert_eq!(server_time(MAX_SERVER_TIME_MS), "9999-12-31T23:59:59.999Z");
        // Out of range: clamped, never a panic.
        assert_eq!(server_time(i64::MIN), server_time(MIN_SERVER_TIME_MS));
        assert_eq!(server_time(i64::MAX), server_time(MAX_SERVER_TIME_MS));
        assert_eq!(server_time(MAX_SERVER_TIME_MS + 1), server_time(MAX_SERVER_TIME_MS));
    }

    #[test]
    fn server_time_limits_are_what_they_say() {
        let instant = |text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .expect("a valid RFC 3339 time")
                .timestamp_millis()
        };
        assert_eq!(MIN_SERVER_TIME_MS, instant("0000-01-01T00:00:00.000Z"));
        assert_eq!(MAX_SERVER_TIME_MS, instant("9999-12-31T23:59:59.999Z"));
    }

    #[test]
    fn server_time_round_trips() {
        let samples = [
            0,
            1,
            -1,
            999,
            1_000,
            951_782_400_000,    // 2000-02-29
            951_868_799_999,    // 2000-02-29T23:59:59.999
            1_709_164_800_000,  // 2024-02-29
            2_147_483_647_999,  // 2038-01-19T03:14:07.999
            2_147_483_648_000,  // one second after
            4_102_444_800_000,  // 2100-01-01 (not a leap year)
            32_503_680_000_000, // 3000-01-01
            -2_208_988_800_000, // 1900-01-01
            MIN_SERVER_TIME_MS,
            MAX_SERVER_TIME_MS,
        ];
        for ms in samples {
            assert_eq!(parse_server_time(&server_time(ms)), Some(ms), "{ms}");
        }
        for ms in (MIN_SERVER_TIME_MS..=MAX_SERVER_TIME_MS).step_by(7_777_777_777_777) {
            assert_eq!(parse_server_time(&server_time(ms)), Some(ms), "{ms}");
        }
    }

    #[test]
    fn parse_server_time_accepts_the_format_and_nothing_else() {
        let at = |text| parse_server_time(text);
        assert_eq!(at("2026-11-30T12:34:56.789Z"), Some(1_796_042_096_789));
        assert_eq!(at("2026-11-30T12:34:56Z"), Some(1_796_042_096_000));
        assert_eq!(at("2026-11-30T12:34:56.7Z"), Some(1_796_042_096_700));
        assert_eq!(at("2026-11-30T12:34:56.78Z"), Some(1_796_042_096_780));
        assert_eq!(at("2026-11-30T12:34:56.789999Z"), Some(1_796_042_096_789));
        assert_eq!(at("2024-02-29T00:00:00.000Z"), Some(1_709_164_800_000));
        assert_eq!(at("1969-12-31T23:59:59.999Z"), Some(-1));
        for bad in [
            "",
            "2026-11-30",
            "2026-11-30T12:34:56",
            "2026-11-30T12:34:56.Z",
            "2026-11-30T12:34:56.789",
            "2026-11-30T12:34:56.789z",
            "2026-11-30t12:34:56.789Z",
            "2026-11-30 12:34:56.789Z",
            "2026-11-30T12:34:56.789+00:00",
            "2026-11-30T12:34:56.78aZ",
            "2026-11-30T12:34:56.789ZZ",
            " 2026-11-30T12:34:56.789Z",
            "+026-11-30T12:34:56.789Z",
            "2026-1-30T12:34:56.789Z",
            "2026-13-01T00:00:00.000Z",
            "2026-00-01T00:00:00.000Z",
            "2025-02-29T00:00:00.000Z",
            "2100-02-29T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-11-30T24:00:00.000Z",
            "2026-11-30T12:60:00.000Z",
            "2026-11-30T12:34:60.000Z",
            "2026-11-30T12:34:5ñ.000Z",
            "timestamp=2026-11-30T12:34:56.789Z",
            "２０２６-11-30T12:34:56.789Z",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sasl_plain_payloads() {
        let ok = |authzid: &str, authcid: &str, password: &str| {
            Ok((authzid.to_owned(), authcid.to_owned(), password.to_owned()))
        };
        assert_eq!(sasl_plain("AGFuYQBzZWNyZXQ="), ok("", "ana", "secret"));
        assert_eq!(sasl_plain("YW5hAGFuYQBzZWNyZXQ="), ok("ana", "ana", "secret"));
        assert_eq!(sasl_plain("AGFuYQBjb250cmFzZcOxYQ=="), ok("", "ana", "contraseña"));
        assert_eq!(sasl_plain("AGFuYQBwPj9+"), ok("", "ana", "p>?~"));
        assert_eq!(sasl_plain("AGFuYQBhIGI="), ok("", "ana", "a b"));

        assert_eq!(sasl_plain(""), Err(SaslError::WrongFieldCount));
        assert_eq!(sasl_plain("YW5hAHNlY3JldA=="), Err(SaslError::WrongFieldCount));
        assert_eq!(sasl_plain("AGFuYQBzZWMAcmV0"), Err(SaslError::WrongFieldCount));
        assert_eq!(sasl_plain("AGFuYQD//g=="), Err(SaslError::NotUtf8));
        assert_eq!(sasl_plain("AABzZWNyZXQ="), Err(SaslError::EmptyField));
        assert_eq!(sasl_plain("AGFuYQA="), Err(SaslError::EmptyField));

        for bad in [
            "AGFuYQBzZWNyZXQ",   // padding missing
            "AGFuYQBzZWNyZXQ==", // too much padding
            "AGFuYQBzZWNyZXR=",  // non-zero trailing bits
            "AGFuYQBzZWNy ZXQ=", // a space
            "AGFuYQBzZWNyZXQ=\n",
            "AGFuYQBwPj9-", // URL-safe alphabet
            "+",            // the empty payload's marker, not base64
            "!!!!",
            "ñ",
        ] {
            assert_eq!(sasl_plain(bad), Err(SaslError::BadBase64), "{bad:?}");
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "would be misread")]
    fn a_middle_param_with_a_space_is_a_caller_bug() {
        line(&[], None, "CMD", &["a b", "c"], false);
    }

    #[test]
    fn the_command_of_a_raw_line_is_found_past_tags_and_source() {
        assert!(command_is(b"NOTICE bob :a\xffb", b"NOTICE"));
        assert!(command_is(b"notice bob :x\0y", b"NOTICE"));
        assert!(command_is(b"@label=1 :me!u@h NOTICE bob :\xff", b"NOTICE"));
        assert!(!command_is(b"PRIVMSG bob :\xff", b"NOTICE"));
        assert!(!command_is(b"NOTICES bob", b"NOTICE"));
        assert!(!command_is(b"@only-tags", b"NOTICE"));
    }
}

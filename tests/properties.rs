//! Property tests of the pure protocol code, against the library's public
//! API: framing ([`charla::proto::frame`]), command parsing
//! ([`charla::proto::charla::parse_head`] and the command table of
//! [`charla::core::commands`]), server lines ([`charla::proto::charla`]) and
//! the display filter ([`charla::core::validate::for_display`]).
//!
//! Runs are deterministic: every property starts from a fixed seed, so CI
//! and a developer see the same cases. To explore further, give a seed and
//! more cases:
//!
//! ```text
//! PROPTEST_RNG_SEED=$RANDOM PROPTEST_CASES=20000 cargo test --release --test properties
//! ```
//!
//! proptest prints the smallest failing input it finds, and keeps it in
//! `tests/properties.proptest-regressions` so it is tried first next time
//! (commit that file if it appears).

use std::io::{self, Read};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use std::sync::Arc;

use charla::core::code::ErrorCode;
use charla::core::codec::Codec;
use charla::core::commands::{self, COMMANDS, DEFAULT_HISTORY, MAX_HISTORY};
use charla::core::event::{Event, Message, Target};
use charla::core::reply::{Answer, Reply, ReplyTo};
use charla::core::validate;
use charla::proto::charla::{self as wire, CharlaCodec, ChatMessage, ServerLine};
use charla::proto::frame::{Frame, LineReader, MIN_MAX_LINE};

/// The configuration of every property: proptest's defaults (and its
/// `PROPTEST_*` variables), with a fixed seed unless `PROPTEST_RNG_SEED`
/// gives one.
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

// ---------------------------------------------------------------- framing

/// A reader that hands out `data` in pieces whose sizes cycle through
/// `chunks`, and checks on every call that the line reader never offers a
/// buffer larger than its line limit: the limit is all it ever holds.
struct Chunked<'a> {
    data: &'a [u8],
    chunks: &'a [usize],
    next: usize,
    limit: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        assert!(
            !out.is_empty() && out.len() <= self.limit,
            "the reader asked for {} bytes with a limit of {}",
            out.len(),
            self.limit
        );
        let chunk = self.chunks[self.next % self.chunks.len()];
        self.next += 1;
        let n = chunk.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A frame, owned.
#[derive(Debug, PartialEq, Eq)]
enum Framed {
    Line(Vec<u8>),
    TooLong,
}

/// Everything a [`LineReader`] with `max_line` yields for `data`, read in
/// `chunks`, up to its `Eof` (which must come within a bounded number of
/// calls).
fn read_all(data: &[u8], chunks: &[usize], max_line: usize) -> Vec<Framed> {
    let limit = max_line.max(MIN_MAX_LINE);
    let source = Chunked {
        data,
        chunks,
        next: 0,
        limit,
    };
    let mut reader = LineReader::new(source, max_line);
    let mut out = Vec::new();
    // Each call consumes at least one byte or ends; one more for the Eof.
    for _ in 0..=data.len() + 1 {
        match reader.read_frame().expect("in-memory reads cannot fail") {
            Frame::Line(line) => {
                assert!(
                    line.len() < limit,
                    "a line of {} bytes with a limit of {limit}",
                    line.len()
                );
                out.push(Framed::Line(line.to_vec()));
            }
            Frame::TooLong => out.push(Framed::TooLong),
            Frame::Eof => return out,
        }
    }
    panic!("no Eof after {} calls", data.len() + 2);
}

/// What PROTOCOL.md 1 says `data` is, line by line: a line of `limit`
/// bytes or more, counting its `\n`, is too long (reported once, even when
/// the input ends before its `\n`); otherwise it comes without its `\n` and
/// without one `\r` before it. An unfinished last line that fits is dropped.
fn model(data: &[u8], max_line: usize) -> Vec<Framed> {
    let limit = max_line.max(MIN_MAX_LINE);
    let mut segments: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let unfinished = segments.pop().expect("split yields at least one piece");
    let mut out: Vec<Framed> = segments
        .into_iter()
        .map(|line| {
            if line.len() >= limit {
                Framed::TooLong
            } else {
                Framed::Line(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
            }
        })
        .collect();
    if unfinished.len() >= limit {
        out.push(Framed::TooLong);
    }
    out
}

/// Bytes that stress framing: short runs of anything with many `\n` and
/// `\r`, and runs of one byte whose lengths straddle the limit.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let noisy = prop::collection::vec(
        prop_oneof![4 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r'), 1 => Just(b' ')],
        0..3000,
    );
    let runs = prop::collection::vec(
        (
            0usize..700,
            prop_oneof![Just(b'a'), Just(b'\r'), Just(b' '), Just(0u8), Just(0xffu8)],
            prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b""[..]), Just(&b"\r"[..])],
        ),
        0..10,
    )
    .prop_map(|runs| {
        let mut data = Vec::new();
        for (len, byte, end) in runs {
            data.extend(std::iter::repeat_n(byte, len));
            data.extend_from_slice(end);
        }
        data
    });
    prop_oneof![noisy, runs]
}

/// Read sizes: from one byte at a time to more than any buffer.
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..8, 1usize..700, 1usize..10_000], 1..16)
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes, read in any pieces, give exactly the model's frames: only
    /// lines under the limit, `TooLong` once per over-long line, then Eof;
    /// and the reader never offers more buffer than the limit.
    #[test]
    fn framing_matches_the_protocol_for_any_bytes(
        data in wire_bytes(),
        chunks in chunking(),
        max_line in prop_oneof![Just(0usize), 100usize..MIN_MAX_LINE, MIN_MAX_LINE..700],
    ) {
        prop_assert_eq!(read_all(&data, &chunks, max_line), model(&data, max_line));
    }

    /// Valid lines (at most `limit - 2` bytes, so even CRLF fits) framed
    /// with `\n` or `\r\n` and split anywhere come back exactly.
    #[test]
    fn valid_lines_round_trip_whatever_the_split(
        lines in prop::collection::vec(
            (prop::collection::vec(any::<u8>().prop_filter("not a line end", |&b| b != b'\n'), 0..300), any::<bool>()),
            0..20,
        ),
        chunks in chunking(),
    ) {
        let max_line = MIN_MAX_LINE + 46;
        let mut data = Vec::new();
        let mut expected = Vec::new();
        for (mut line, crlf) in lines {
            line.truncate(max_line - 2);
            // A CR of its own at the end would be taken for the CRLF's.
            while line.last() == Some(&b'\r') {
                line.pop();
            }
            data.extend_from_slice(&line);
            data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            expected.push(Framed::Line(line));
        }
        prop_assert_eq!(read_all(&data, &chunks, max_line), expected);
    }
}

// ---------------------------------------------------------------- parsing

/// A command with its arguments read as the server reads them before it
/// looks at their values.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    Register {
        username: &'a str,
        password: &'a str,
        full_name: &'a str,
    },
    Login {
        username: &'a str,
        password: &'a str,
    },
    Say {
        text: &'a str,
    },
    History {
        limit: u32,
        before: Option<i64>,
    },
    Who,
    Ping {
        token: Option<&'a str>,
    },
    Quit,
}

/// A parsed line: its tag and command, or its tag (when well formed) and
/// the error code it is answered with.
type Parsed<'a> = Result<(Option<&'a str>, Command<'a>), (Option<&'a str>, ErrorCode)>;

/// Parses a line the way the server does: its head, the command table's
/// row and shape, then each argument's syntax.
fn parse(line: &str) -> Parsed<'_> {
    let head = wire::parse_head(line).map_err(|bad| (bad.tag, ErrorCode::BadRequest))?;
    let tag = head.tag;
    let bad = |code| (tag, code);
    let row = commands::find(head.name).ok_or(bad(ErrorCode::BadRequest))?;
    let args = row.shape.split(head.rest).map_err(bad)?;
    let word = |i| args.word(i).expect("the shape guarantees the word");
    let command = match row.name {
        "REGISTER" => Command::Register {
            username: word(0),
            password: word(1),
            full_name: args.text(),
        },
        "LOGIN" => Command::Login {
            username: word(0),
            password: word(1),
        },
        "SAY" => Command::Say { text: args.text() },
        "HISTORY" => {
            let history = commands::history_args(&args).map_err(bad)?;
            if history.target.is_some() {
                // Version 1.1's targets are not among this test's commands.
                return Err(bad(ErrorCode::BadRequest));
            }
            Command::History {
                limit: history.limit,
                before: history.before,
            }
        }
        "WHO" => Command::Who,
        "PING" => match args.word(0) {
            Some(token) if !validate::is_token(token) => return Err(bad(ErrorCode::BadRequest)),
            token => Command::Ping { token },
        },
        "QUIT" => Command::Quit,
        // Version 1.1's commands: their shapes are checked, their values
        // elsewhere.
        _ => return Err(bad(ErrorCode::BadRequest)),
    };
    Ok((tag, command))
}

/// Lines that look like commands often enough to get past the head.
fn commandish() -> impl Strategy<Value = String> {
    let tag = prop_oneof![Just(String::new()), "@[A-Za-z0-9_.-]{0,66} ", "@[^ ]{0,4} "];
    let verb = prop_oneof![
        "(?i)(register|login|say|history|who|ping|quit|salir)",
        "[A-Za-z]{0,9}",
        "[^ ]{0,6}",
    ];
    let args = prop::collection::vec(
        prop_oneof!["[0-9]{0,25}", "[ -~]{0,12}", "\\PC{0,8}", Just(String::new())],
        0..5,
    );
    (tag, verb, args).prop_map(|(tag, verb, args)| {
        let mut line = tag + &verb;
        for arg in args {
            line.push(' ');
            line.push_str(&arg);
        }
        line
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any text either parses or is refused with a code; nothing panics,
    /// and what parses keeps the protocol's shapes.
    #[test]
    fn any_text_parses_or_is_refused(line in prop_oneof![any::<String>(), commandish()]) {
        match parse(&line) {
            Ok((tag, cmd)) => {
                prop_assert!(tag.is_none_or(validate::is_token));
                match cmd {
                    Command::Register { username, password, .. } | Command::Login { username, password } => {
                        prop_assert!(!username.is_empty() && !username.contains(' '));
                        prop_assert!(!password.is_empty() && !password.contains(' '));
                    }
                    Command::History { limit, before } => {
                        prop_assert!((1..=MAX_HISTORY).contains(&limit));
                        prop_assert!(before.is_none_or(|id| id >= 1));
                    }
                    Command::Ping { token } => prop_assert!(token.is_none_or(validate::is_token)),
                    Command::Say { .. } | Command::Who | Command::Quit => {}
                }
            }
            Err((tag, code)) => {
                prop_assert_eq!(code, ErrorCode::BadRequest);
                prop_assert!(tag.is_none_or(validate::is_token));
            }
        }
    }
}

/// A command built from valid values, owning them.
#[derive(Clone, Debug)]
enum Valid {
    Register {
        username: String,
        password: String,
        full_name: String,
    },
    Login {
        username: String,
        password: String,
    },
    Say {
        text: String,
    },
    History {
        limit: Option<(u32, usize)>,
        before: Option<(i64, usize)>,
    },
    Who,
    Ping {
        token: Option<String>,
    },
    Quit {
        salir: bool,
        rest: Option<String>,
    },
}

impl Valid {
    /// The wire form, with the verb spelled in `case` (one bool per letter:
    /// upper or lower) and numbers padded with leading zeros.
    fn format(&self, tag: Option<&str>, case: &[bool]) -> String {
        let spell = |name: &str| -> String {
            name.chars()
                .zip(case.iter().cycle())
                .map(|(c, &upper)| if upper { c } else { c.to_ascii_lowercase() })
                .collect()
        };
        let body = match self {
            Valid::Register {
                username,
                password,
                full_name,
            } => {
                format!("{} {username} {password} {full_name}", spell("REGISTER"))
            }
            Valid::Login { username, password } => format!("{} {username} {password}", spell("LOGIN")),
            Valid::Say { text } => format!("{} {text}", spell("SAY")),
            Valid::History { limit, before } => {
                let mut line = spell("HISTORY");
                if let Some((n, zeros)) = limit {
                    line += &format!(" {}{n}", "0".repeat(*zeros));
                    if let Some((id, zeros)) = before {
                        line += &format!(" {}{id}", "0".repeat(*zeros));
                    }
                }
                line
            }
            Valid::Who => spell("WHO"),
            Valid::Ping { token } => match token {
                Some(token) => format!("{} {token}", spell("PING")),
                None => spell("PING"),
            },
            Valid::Quit { salir, rest } => {
                let verb = spell(if *salir { "SALIR" } else { "QUIT" });
                match rest {
                    Some(rest) => format!("{verb} {rest}"),
                    None => verb,
                }
            }
        };
        match tag {
            Some(tag) => format!("@{tag} {body}"),
            None => body,
        }
    }

    /// The command the parser must give for it.
    fn expected(&self) -> Command<'_> {
        match self {
            Valid::Register {
                username,
                password,
                full_name,
            } => Command::Register {
                username,
                password,
                full_name,
            },
            Valid::Login { username, password } => Command::Login { username, password },
            Valid::Say { text } => Command::Say { text },
            Valid::History { limit, before } => Command::History {
                limit: limit.map_or(DEFAULT_HISTORY, |(n, _)| n),
                before: limit.and(*before).map(|(id, _)| id),
            },
            Valid::Who => Command::Who,
            Valid::Ping { token } => Command::Ping {
                token: token.as_deref(),
            },
            Valid::Quit { .. } => Command::Quit,
        }
    }
}

fn username() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,32}"
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn password() -> impl Strategy<Value = String> {
    prop_oneof!["[!-~]{8,72}", "[^ \t\r\n]{8,18}"].prop_filter("a valid password", |p| validate::password(p).is_ok())
}

/// Free text of up to `max` characters that `validate` accepts as it is
/// (already trimmed): refused characters and, where `tab` is false, TABs
/// are replaced, and surrounding spaces and tabs removed.
fn free_text(max: usize, tab: bool) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..=max).prop_map(move |chars| {
        let text: String = chars
            .into_iter()
            .map(|c| {
                if validate::is_refused(c) || (c == '\t' && !tab) {
                    'x'
                } else {
                    c
                }
            })
            .collect();
        let text = text.trim_matches([' ', '\t']);
        if text.is_empty() {
            "x".to_string()
        } else {
            text.to_string()
        }
    })
}

fn valid_command() -> impl Strategy<Value = Valid> {
    prop_oneof![
        (username(), password(), free_text(100, false)).prop_map(|(username, password, full_name)| Valid::Register {
            username,
            password,
            full_name
        }),
        (username(), password()).prop_map(|(username, password)| Valid::Login { username, password }),
        prop_oneof![free_text(200, true), "[a-z][a-z \t]{0,3}x{1990,1996}"].prop_map(|text| Valid::Say { text }),
        (
            prop::option::of((1..=MAX_HISTORY, 0usize..3)),
            prop::option::of((1..=i64::MAX, 0usize..3)),
        )
            .prop_map(|(limit, before)| Valid::History { limit, before }),
        Just(Valid::Who),
        prop::option::of(token()).prop_map(|token| Valid::Ping { token }),
        (any::<bool>(), prop::option::of("[^\n]{0,20}")).prop_map(|(salir, rest)| Valid::Quit { salir, rest }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Formatting a command of valid values and parsing it gives the same
    /// command and tag, whatever the verb's case; the free texts come back
    /// as the validators accept them.
    #[test]
    fn valid_commands_round_trip(
        cmd in valid_command(),
        tag in prop::option::of(token()),
        case in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let line = cmd.format(tag.as_deref(), &case);
        let parsed = parse(&line);
        prop_assert_eq!(parsed, Ok((tag.as_deref(), cmd.expected())), "{:?}", line);
        match &cmd {
            Valid::Register { username, password, full_name } => {
                prop_assert_eq!(validate::username(username), Ok(username.as_str()));
                prop_assert_eq!(validate::password(password), Ok(password.as_str()));
                prop_assert_eq!(validate::full_name(full_name), Ok(full_name.as_str()));
            }
            Valid::Say { text } => prop_assert_eq!(validate::text(text), Ok(text.as_str())),
            _ => {}
        }
    }
}

// ----------------------------------------------------------- server lines

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn verb() -> impl Strategy<Value = &'static str> {
    prop::sample::select(COMMANDS.iter().map(|c| c.name).collect::<Vec<_>>())
}

/// A reply to `to`, encoded as charla sends it.
fn encoded_reply(to: &ReplyTo, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    CharlaCodec.reply(to, reply, &mut out);
    out
}

/// An event, encoded as charla sends it.
fn encoded_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    CharlaCodec.event(event, &mut out);
    out
}

/// A one-line success reply and the fields a client reads back from it.
fn one_line_answer() -> impl Strategy<Value = (Answer, String)> {
    prop_oneof![
        Just((Answer::Done, String::new())),
        prop::option::of(token()).prop_map(|token| {
            let fields = token.clone().unwrap_or_default();
            (Answer::Pong(token), fields)
        }),
        (1..=i64::MAX, 0..=i64::MAX)
            .prop_map(|(id, ts)| (Answer::Stored { id, ts, message: None }, format!("{id} {ts}"))),
        (username(), free_text(100, false)).prop_map(|(user, name)| {
            let fields = format!("{user} {name}");
            (
                Answer::Account {
                    username: Arc::from(user.as_str()),
                    full_name: name,
                },
                fields,
            )
        }),
    ]
}

/// Parses an encoded line after checking its framing: one `\n`, at the
/// end, and no refused character (a TAB only where `tab` allows it).
fn parse_wire(wire: &[u8], tab: bool) -> Result<ServerLine, TestCaseError> {
    let text = std::str::from_utf8(wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| TestCaseError::fail("no final newline"))?;
    prop_assert!(!body.contains('\n'), "a newline inside {:?}", body);
    prop_assert!(
        !body.chars().any(|c| validate::is_refused(c) || (c == '\t' && !tab)),
        "a control character in {:?}",
        body
    );
    ServerLine::parse(body).map_err(|()| TestCaseError::fail(format!("{body:?} does not parse")))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ok_lines_parse_back(tag in prop::option::of(token()), verb in verb(), (answer, fields) in one_line_answer()) {
        let wire = encoded_reply(&ReplyTo::new(tag.as_deref(), Some(verb)), &Reply::Ok(answer));
        prop_assert_eq!(
            parse_wire(&wire, false)?,
            ServerLine::Ok { tag, verb: verb.to_string(), fields }
        );
    }

    #[test]
    fn err_lines_parse_back(tag in prop::option::of(token()), verb in prop::option::of(verb()), code in error_code()) {
        let wire = encoded_reply(&ReplyTo::new(tag.as_deref(), verb), &Reply::Err(code));
        prop_assert_eq!(
            parse_wire(&wire, false)?,
            ServerLine::Err {
                tag,
                verb: verb.unwrap_or("-").to_string(),
                code: Some(code),
                text: code.default_text().to_string(),
            }
        );
    }

    #[test]
    fn events_parse_back(user in username(), node in token(), code in error_code()) {
        let name: Arc<str> = Arc::from(user.as_str());
        prop_assert_eq!(parse_wire(&encoded_event(&Event::Online(Arc::clone(&name))), false)?, ServerLine::Join(user.clone()));
        prop_assert_eq!(parse_wire(&encoded_event(&Event::Offline(name)), false)?, ServerLine::Leave(user));
        prop_assert_eq!(
            parse_wire(&wire::hello(&node), false)?,
            ServerLine::Hello { version: wire::PROTOCOL_VERSION.to_string(), node }
        );
        prop_assert_eq!(
            parse_wire(&encoded_event(&Event::Bye(code)), false)?,
            ServerLine::Bye { code: Some(code), text: code.default_text().to_string() }
        );
    }

    #[test]
    fn msg_lines_parse_back(id in 1..=i64::MAX, ts in 0..=i64::MAX, user in username(), text in free_text(300, true)) {
        let message = Message { id, ts, author_id: 1, author: Arc::from(user.as_str()), text: Arc::from(text.as_str()), target: Target::Lobby };
        let wire = encoded_event(&Event::Message(Arc::new(message.clone())));
        prop_assert_eq!(parse_wire(&wire, true)?, ServerLine::Msg(ChatMessage { id, ts, user: user.clone(), text: text.clone() }));
        // A HISTORY body line is the same line.
        let history = encoded_reply(&ReplyTo::new(None, Some("HISTORY")), &Reply::Ok(Answer::Messages(vec![message])));
        prop_assert!(history.starts_with(&wire));
    }

    /// Whatever a server sends, the client's display filter leaves no
    /// refused character (so no escape sequence) and no TAB, changes
    /// nothing else, and keeps one character for each.
    #[test]
    fn the_display_filter_never_lets_a_refused_character_through(
        text in prop_oneof![any::<String>(), "[\\x00-\\x20\\x7f-\\u{a0}\\u{2028}-\\u{202f}\\u{2066}-\\u{2069}a]{0,40}"],
    ) {
        let shown = validate::for_display(&text);
        prop_assert!(!shown.chars().any(|c| refused_by_protocol(c) || c == '\t'), "{:?}", shown);
        prop_assert_eq!(shown.chars().count(), text.chars().count());
        for (before, after) in text.chars().zip(shown.chars()) {
            if before != '\t' && !refused_by_protocol(before) {
                prop_assert_eq!(before, after);
            }
        }
    }
}

/// `validate::is_refused` is exactly PROTOCOL.md 5.2's list, checked for
/// every character there is.
#[test]
fn the_refused_characters_are_the_protocols() {
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        assert_eq!(validate::is_refused(c), refused_by_protocol(c), "{c:?}");
    }
}

/// PROTOCOL.md 5.2's refused characters, written out again here so the
/// properties do not take the code under test as their oracle.
fn refused_by_protocol(c: char) -> bool {
    let c = u32::from(c);
    (c <= 0x1f && c != 0x09)
        || (0x7f..=0x9f).contains(&c)
        || c == 0x2028
        || c == 0x2029
        || (0x202a..=0x202e).contains(&c)
        || (0x2066..=0x2069).contains(&c)
}

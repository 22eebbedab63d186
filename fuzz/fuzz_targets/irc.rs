//! Bytes from an IRC client, as the IRC front end meets them (PROTOCOL.md
//! 13): framed by `charla::proto::frame::LineReader` with
//! `irc::MAX_WIRE_LINE` (read in pieces of fuzzer-chosen sizes), checked
//! with `irc::check_size`, then parsed by `irc::parse`, and each parsed line
//! put through the module's other decoders the way the front end uses them.
//!
//! Input layout: bytes 0..8 pick the read sizes, the rest is the byte
//! stream. Besides "no panic", the target asserts the codec's invariants.

#![no_main]

use std::io::{self, Read};

use charla::proto::frame::{Frame, LineReader};
use charla::proto::irc::{self, Ctcp, Size};
use libfuzzer_sys::fuzz_target;

/// Hands out `data` in pieces whose sizes cycle through `sizes` (1 to 256
/// bytes).
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let size = usize::from(self.sizes[self.next % self.sizes.len()]) + 1;
        self.next += 1;
        let n = size.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 8 {
        return;
    }
    let (sizes, data) = input.split_at(8);
    let mut reader = LineReader::new(Chunked { data, sizes, next: 0 }, irc::MAX_WIRE_LINE);
    // Every call consumes at least one byte or ends the stream.
    for _ in 0..=data.len() + 1 {
        match reader.read_frame().expect("in-memory reads cannot fail") {
            Frame::Line(line) => {
                assert!(line.len() < irc::MAX_WIRE_LINE);
                if irc::check_size(line) == Size::Ok {
                    check_line(line);
                }
            }
            Frame::TooLong => {}
            Frame::Eof => return,
        }
    }
    panic!("no end of input after {} frames", data.len() + 2);
});

fn check_line(line: &[u8]) {
    let Ok(text) = std::str::from_utf8(line) else { return };
    let Ok(message) = irc::parse(text) else { return };
    assert!(!message.command.is_empty() && !message.command.contains(' '));
    assert!(message.tags.iter().all(|tag| !tag.key.is_empty()));

    // Written again, it parses into the same message.
    if message.command.bytes().all(|b| b.is_ascii_alphanumeric()) {
        let tags: Vec<(&str, &str)> = message.tags.iter().map(|tag| (tag.key, &*tag.value)).collect();
        let mut out = Vec::new();
        irc::write_line(&mut out, &tags, message.source, message.command, &message.params, false);
        let written = std::str::from_utf8(&out).expect("UTF-8 in, UTF-8 out");
        let body = written.strip_suffix("\r\n").expect("ends with CRLF");
        assert_eq!(irc::parse(body).as_ref(), Ok(&message));
    }

    if let Some(time) = message.tag("time")
        && let Some(ms) = irc::parse_server_time(time)
    {
        assert_eq!(irc::parse_server_time(&irc::server_time(ms)), Some(ms));
    }
    if message.command_is("AUTHENTICATE")
        && let Some(payload) = message.param(0)
        && let Ok((_, authcid, password)) = irc::sasl_plain(payload)
    {
        assert!(!authcid.is_empty() && !password.is_empty());
    }
    if let Some(text) = message.params.last() {
        let stripped = irc::strip_formatting(text);
        assert!(!stripped.contains(['\u{2}', '\u{3}', '\u{f}', '\u{16}', '\u{1d}', '\u{1e}', '\u{1f}']));
        if let Ctcp::Action(action) = irc::ctcp(&stripped) {
            assert!(stripped.contains(action));
        }
        let budget = irc::text_budget(Some("nick"), "PRIVMSG", &message.params[..message.params.len() - 1]);
        let pieces = irc::split_text(&stripped, budget.max(4));
        assert_eq!(pieces.concat(), *stripped);
        assert!(pieces.iter().all(|piece| piece.len() <= budget.max(4)));
    }
}

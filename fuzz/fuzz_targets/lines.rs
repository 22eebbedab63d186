//! Bytes from a peer, as the server and the client meet them: framed by
//! `charla::proto::frame::LineReader` (read in pieces of fuzzer-chosen
//! sizes, with a fuzzer-chosen line limit), then each line parsed as a
//! client command (`parse_head`, the command table's shape and the argument
//! syntax, what the server does) and as a server line (`ServerLine::parse`,
//! what the client does), and filtered for display.
//!
//! Input layout: byte 0 picks the line limit, bytes 1..=8 the read sizes,
//! the rest is the byte stream. Besides "no panic", the target asserts the
//! protocol's invariants, so the fuzzer reports any input that breaks them.

#![no_main]

use std::io::{self, Read};

use charla::core::commands::{self, MAX_HISTORY};
use charla::core::validate;
use charla::proto::charla::{self as wire, ServerLine};
use charla::proto::frame::{self, Frame, LineReader, MIN_MAX_LINE};
use libfuzzer_sys::fuzz_target;

/// Hands out `data` in pieces whose sizes cycle through `sizes` (1 to 256
/// bytes), checking the reader never offers a buffer over its limit.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
    limit: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        assert!(
            !out.is_empty() && out.len() <= self.limit,
            "buffer of {} over the limit",
            out.len()
        );
        let size = usize::from(self.sizes[self.next % self.sizes.len()]) + 1;
        self.next += 1;
        let n = size.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&limit_byte, rest)) = input.split_first() else {
        return;
    };
    if rest.len() < 8 {
        return;
    }
    let (sizes, data) = rest.split_at(8);
    let max_line = MIN_MAX_LINE + usize::from(limit_byte) * 4;
    let mut reader = LineReader::new(
        Chunked {
            data,
            sizes,
            next: 0,
            limit: max_line,
        },
        max_line,
    );
    // Every call consumes at least one byte or ends the stream.
    for _ in 0..=data.len() + 1 {
        match reader.read_frame().expect("in-memory reads cannot fail") {
            Frame::Line(line) => {
                assert!(
                    line.len() < max_line,
                    "a line of {} bytes passed a limit of {max_line}",
                    line.len()
                );
                check_line(line);
            }
            Frame::TooLong => {}
            Frame::Eof => return,
        }
    }
    panic!("no end of input after {} frames", data.len() + 2);
});

fn check_line(line: &[u8]) {
    if frame::is_blank(line) {
        return;
    }
    let Ok(text) = std::str::from_utf8(line) else { return };
    // As the server reads it.
    match wire::parse_head(text) {
        Ok(head) => {
            assert!(head.tag.is_none_or(validate::is_token));
            assert!(head.name.bytes().all(|b| b.is_ascii_alphabetic()));
            if let Some(row) = commands::find(head.name)
                && let Ok(args) = row.shape.split(head.rest)
            {
                assert!(args.words().iter().all(|w| !w.is_empty() && !w.contains(' ')));
                match row.name {
                    "HISTORY" => {
                        if let Ok(history) = commands::history_args(&args) {
                            assert!((1..=MAX_HISTORY).contains(&history.limit));
                            assert!(history.before.is_none_or(|id| id >= 1));
                            if let Some(Ok(target)) = history.target.map(|t| t.checked()) {
                                match target {
                                    commands::Written::Room(name) => assert!(validate::room(name).is_ok()),
                                    commands::Written::Account(name) => assert!(validate::username(name).is_ok()),
                                }
                            }
                        }
                    }
                    "SYNC" => {
                        if let Ok((after, n)) = commands::sync_args(&args) {
                            assert!(after >= 0 && (1..=MAX_HISTORY).contains(&n));
                        }
                    }
                    "SAY" => {
                        if let Ok(stored) = validate::text(args.text()) {
                            assert!(!stored.chars().any(validate::is_refused));
                        }
                    }
                    "REGISTER" => {
                        if let Ok(stored) = validate::full_name(args.text()) {
                            assert!(!stored.chars().any(|c| c == '\t' || validate::is_refused(c)));
                        }
                    }
                    _ => {}
                }
            }
        }
        Err(bad) => assert!(bad.tag.is_none_or(validate::is_token)),
    }
    // As the client reads it, and shows it.
    let _ = ServerLine::parse(text);
    let shown = validate::for_display(text);
    assert!(!shown.chars().any(|c| c == '\t' || validate::is_refused(c)));
}

//! Splitting a byte stream into protocol lines, with the line limit enforced
//! while reading.
//!
//! [`LineReader`] owns one fixed buffer of exactly `max_line` bytes and never
//! grows it: a line that cannot fit is reported as [`Frame::TooLong`] as soon
//! as that is certain, and its remaining bytes are thrown away as they
//! arrive. A 100 MiB line therefore costs the server `max_line` bytes of
//! memory, not 100 MiB. This module knows nothing of verbs or sessions; it
//! works on any `Read`, so it is unit-tested on byte slices.

use std::io::{self, Read};

/// The smallest line limit the server accepts: room for every command of the
/// protocol with its longest fixed arguments.
pub const MIN_MAX_LINE: usize = 256;

/// One unit of input, as the session must react to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its `\n` and without a single `\r` before it.
    /// It is at most `max_line - 1` bytes long and not yet checked for UTF-8.
    Line(&'a [u8]),
    /// A line longer than the limit was started; it is being discarded up to
    /// and including its `\n`. Reported once per over-long line.
    TooLong,
    /// The peer closed its side (a partial last line is dropped).
    Eof,
}

/// A bounded line splitter over a reader.
pub struct LineReader<R> {
    /// The byte source, normally the session's socket.
    inner: R,
    /// Holds the current partial line and any bytes already read after it;
    /// its length is the line limit, so it is never larger than one line.
    buf: Box<[u8]>,
    /// Start of the bytes not yet handed out.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    /// Where to resume the search for `\n` (bytes before it were searched).
    scanned: usize,
    /// True while skipping the rest of an over-long line.
    discarding: bool,
}

impl<R: Read> LineReader<R> {
    /// Wraps `inner`; lines of more than `max_line` bytes (counting the `\n`
    /// and any `\r`) are too long. `max_line` is raised to [`MIN_MAX_LINE`].
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            buf: vec![0; max_line.max(MIN_MAX_LINE)].into_boxed_slice(),
            start: 0,
            end: 0,
            scanned: 0,
            discarding: false,
        }
    }

    /// The byte source, to adjust it between frames (the session lifts its
    /// login deadline this way).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Whether bytes of an unfinished line or further lines are buffered;
    /// the session uses it to know a command is already waiting.
    pub fn has_buffered(&self) -> bool {
        self.end > self.start
    }

    /// Returns the next frame, reading from the source as needed.
    ///
    /// # Errors
    /// Any error of the underlying reader, including a read timeout
    /// (`WouldBlock`/`TimedOut`); the reader's state is kept, so the call can
    /// simply be repeated after a timeout.
    pub fn read_frame(&mut self) -> io::Result<Frame<'_>> {
        loop {
            if let Some(offset) = self.buf[self.scanned..self.end].iter().position(|&b| b == b'\n') {
                let newline = self.scanned + offset;
                let line_start = self.start;
                self.start = newline + 1;
                self.scanned = self.start;
                if self.discarding {
                    self.discarding = false;
                    continue;
                }
                let mut line_end = newline;
                if line_end > line_start && self.buf[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                return Ok(Frame::Line(&self.buf[line_start..line_end]));
            }
            self.scanned = self.end;
            if self.discarding {
                self.start = 0;
                self.end = 0;
                self.scanned = 0;
            } else if self.end - self.start >= self.buf.len() {
                // `max_line` bytes and no `\n` yet: with the `\n` the line
                // would exceed the limit, whatever comes next.
                self.discarding = true;
                self.start = 0;
                self.end = 0;
                self.scanned = 0;
                return Ok(Frame::TooLong);
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned = self.end;
                self.start = 0;
            }
            let read = self.inner.read(&mut self.buf[self.end..])?;
            if read == 0 {
                self.start = 0;
                self.end = 0;
                self.scanned = 0;
                return Ok(Frame::Eof);
            }
            self.end += read;
        }
    }
}

/// Reads one line from `stream` (without its `\n`, or a `\r` before it)
/// within `limit`, a byte at a time, so that nothing after it is consumed
/// (the peer protocol of file sharing: a file's bytes follow its header),
/// holding at most `max` bytes.
///
/// # Errors
/// `TimedOut` past the deadline, `UnexpectedEof` when the other side
/// closes first, `InvalidData` for a line longer than `max` or not UTF-8,
/// and the socket's own errors.
pub fn read_one_line(mut stream: &std::net::TcpStream, limit: std::time::Duration, max: usize) -> io::Result<String> {
    let deadline = std::time::Instant::now() + limit;
    let mut line = Vec::with_capacity(128);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e),
        }
        if byte[0] == b'\n' {
            break;
        }
        if line.len() >= max {
            return Err(io::ErrorKind::InvalidData.into());
        }
        line.push(byte[0]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| io::ErrorKind::InvalidData.into())
}

/// Whether a line holds nothing but spaces and tabs; such lines are ignored
/// without a reply (PROTOCOL.md 1).
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| b == b' ' || b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its input in fixed-size pieces, to exercise
    /// lines split across reads.
    struct Chunked<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn frames(data: &[u8], max_line: usize, chunk: usize) -> Vec<Result<Vec<u8>, &'static str>> {
        let mut reader = LineReader::new(Chunked { data, chunk }, max_line);
        let mut out = Vec::new();
        loop {
            match reader.read_frame().expect("in-memory reads cannot fail") {
                Frame::Line(line) => out.push(Ok(line.to_vec())),
                Frame::TooLong => out.push(Err("too-long")),
                Frame::Eof => return out,
            }
        }
    }

    #[test]
    fn splits_lines_and_drops_one_cr() {
        for chunk in [1, 2, 3, 7, 4096] {
            let got = frames(b"PING\r\nSAY a\r\r\n\nx", 256, chunk);
            assert_eq!(
                got,
                vec![Ok(b"PING".to_vec()), Ok(b"SAY a\r".to_vec()), Ok(Vec::new())],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn line_of_exactly_the_limit_fits_and_one_more_byte_does_not() {
        let max = 256;
        let fits = [vec![b'a'; max - 1], b"\n".to_vec()].concat();
        assert_eq!(frames(&fits, max, 64), vec![Ok(vec![b'a'; max - 1])]);
        // A CR counts towards the limit.
        let cr = [vec![b'a'; max - 1], b"\r\n".to_vec()].concat();
        assert_eq!(frames(&cr, max, 64), vec![Err("too-long")]);
        let over = [vec![b'a'; max], b"\nPING\n".to_vec()].concat();
        assert_eq!(frames(&over, max, 64), vec![Err("too-long"), Ok(b"PING".to_vec())]);
    }

    #[test]
    fn huge_line_is_reported_once_and_never_buffered() {
        let mut data = vec![b'x'; 1 << 20];
        data.extend_from_slice(b"\nWHO\n");
        for chunk in [1000, 4096, 65536] {
            assert_eq!(frames(&data, 4096, chunk), vec![Err("too-long"), Ok(b"WHO".to_vec())]);
        }
    }

    #[test]
    fn partial_line_at_eof_is_dropped() {
        assert_eq!(frames(b"PING\nSAY unfinished", 256, 5), vec![Ok(b"PING".to_vec())]);
    }

    #[test]
    fn blank_lines_are_spaces_and_tabs_only() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t "));
        assert!(!is_blank(b" x"));
        assert!(!is_blank(b"\r"));
    }
}

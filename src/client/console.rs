//! The person's side of the client: reading answers and chat lines,
//! printing without garbling the line being typed, the terminal's state, and
//! the signals that end the program.
//!
//! Input is read on its own thread, one line per request, so the main thread
//! can wait for the keyboard and the server at once. On a terminal (stdin and
//! stdout both terminals) lines are edited with rustyline, passwords are read
//! with rpassword (not echoed), and everything the main thread prints goes
//! through rustyline's external printer, which redraws the prompt and the
//! half-typed line below the new output. Otherwise (pipes, files) lines are
//! read from stdin, each prompt is printed as a line of its own, and stdout
//! is flushed after every line, so scripts and tests can follow along.
//!
//! This module knows nothing of the protocol and never prints network text
//! itself: callers pass already translated, already filtered sentences.

use std::fmt;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use nix::sys::termios::{self, SetArg, Termios};
use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor, ExternalPrinter};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The longest line read from stdin, newline included; longer lines are
/// skipped while they are read and reported as [`Input::TooLong`].
pub const MAX_INPUT_LINE: usize = 64 * 1024;

/// The prompt in front of chat lines on a terminal.
const CHAT_PROMPT: &str = "> ";

/// What a line is being read for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// An answer in the dialogue (menu choice, name, username).
    Answer,
    /// A password: never echoed on a terminal.
    Secret,
    /// A line of the chat: kept in the line editor's history.
    Chat,
}

/// One result from the input thread.
pub enum Input {
    /// A line, without its newline.
    Line(String),
    /// End of input (Ctrl-D, or the end of a pipe).
    Eof,
    /// Ctrl-C while editing a line.
    Interrupted,
    /// A line longer than [`MAX_INPUT_LINE`]; it was skipped.
    TooLong,
    /// The terminal or stdin failed.
    Failed(io::Error),
}

/// A request to the input thread: read one line.
struct Request {
    /// What the line is for.
    ask: Ask,
    /// The prompt shown in front of it on a terminal.
    prompt: String,
}

/// Where the main thread's lines go.
enum Printer {
    /// rustyline's printer: safe while the input thread edits a line.
    Terminal(Box<dyn ExternalPrinter + Send>),
    /// Plain stdout, flushed after each line.
    Stdout,
}

/// Where the input thread's lines come from.
enum Source {
    /// A line editor on the terminal.
    Editor(Box<DefaultEditor>),
    /// Lines from stdin; passwords from the terminal when stdin is one.
    Lines {
        /// Buffered stdin.
        stdin: BufReader<io::Stdin>,
        /// Whether stdin is a terminal, so passwords must not echo.
        tty: bool,
    },
}

/// The terminal (or pipes) the client talks to a person through.
pub struct Console {
    /// How lines are printed.
    printer: Printer,
    /// Requests to the input thread.
    requests: Sender<Request>,
    /// Its answers.
    input: Receiver<Input>,
    /// SIGINT, SIGTERM and SIGHUP, as they arrive.
    signals: Receiver<i32>,
    /// Whether a request is out: the input thread may then be holding the
    /// terminal, with a prompt on screen.
    waiting: bool,
    /// The terminal's settings at start, put back before leaving even if
    /// the input thread still has it in raw or no-echo mode.
    saved: Option<Termios>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("terminal", &matches!(self.printer, Printer::Terminal(_)))
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Sets up input and output for the way the program was started. Never
    /// fails: without a usable terminal it falls back to plain lines, and
    /// without signal handling Ctrl-C simply ends the process.
    pub fn open() -> Console {
        let stdin_tty = io::stdin().is_terminal();
        let saved = if stdin_tty {
            termios::tcgetattr(io::stdin()).ok()
        } else {
            None
        };
        let (printer, source) = match terminal_editor(stdin_tty && io::stdout().is_terminal()) {
            Some((editor, printer)) => (Printer::Terminal(printer), Source::Editor(editor)),
            None => (
                Printer::Stdout,
                Source::Lines {
                    stdin: BufReader::new(io::stdin()),
                    tty: stdin_tty,
                },
            ),
        };
        let (requests, requested) = crossbeam_channel::bounded(1);
        let (answers, input) = crossbeam_channel::bounded(1);
        let spawned = thread::Builder::new()
            .name("input".into())
            .spawn(move || serve_input(source, &requested, &answers));
        if let Err(error) = spawned {
            // Without the thread every request reads as a failure.
            let (failing, typed_failed) = crossbeam_channel::bounded(1);
            let _ = failing.send(Input::Failed(error));
            return Console {
                printer,
                requests,
                input: typed_failed,
                signals: crossbeam_channel::never(),
                waiting: false,
                saved,
            };
        }
        Console {
            printer,
            requests,
            input,
            signals: watch_signals(),
            waiting: false,
            saved,
        }
    }

    /// Asks for one line. The answer arrives on [`Console::input`]. In plain
    /// mode the prompt (except the chat's) is printed as a line of its own.
    pub fn ask(&mut self, ask: Ask, prompt: &str) {
        if self.waiting {
            return;
        }
        let prompt = match (&self.printer, ask) {
            (Printer::Terminal(_), Ask::Chat) => CHAT_PROMPT.to_string(),
            (Printer::Terminal(_), _) => format!("{prompt} "),
            (Printer::Stdout, Ask::Chat) => String::new(),
            (Printer::Stdout, _) => {
                self.say(prompt);
                String::new()
            }
        };
        self.waiting = self.requests.send(Request { ask, prompt }).is_ok();
    }

    /// Lines read on request, in order.
    pub fn input(&self) -> &Receiver<Input> {
        &self.input
    }

    /// Notes that an answer from [`Console::input`] was taken.
    pub fn answered(&mut self) {
        self.waiting = false;
    }

    /// Signals asking the program to end (Ctrl-C outside the line editor,
    /// `kill`, the terminal closing).
    pub fn signals(&self) -> &Receiver<i32> {
        &self.signals
    }

    /// Prints `text` (one or more lines) on stdout without disturbing the
    /// line being typed.
    pub fn say(&mut self, text: &str) {
        let line = format!("{text}\n");
        if let Printer::Terminal(printer) = &mut self.printer {
            if printer.print(line.clone()).is_ok() {
                return;
            }
            // The editor is gone: plain stdout still reaches the person.
            self.printer = Printer::Stdout;
        }
        let mut stdout = io::stdout().lock();
        // Nowhere left to report a failing stdout; the exit code still tells.
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
    }

    /// Prints a last sentence on stderr, after giving the terminal back its
    /// settings and moving past a prompt left on screen.
    pub fn fail(&mut self, text: &str) {
        self.restore();
        if self.waiting && matches!(self.printer, Printer::Terminal(_)) {
            let mut stdout = io::stdout().lock();
            let _ = stdout.write_all(b"\n");
            let _ = stdout.flush();
        }
        self.waiting = false;
        let mut stderr = io::stderr().lock();
        let _ = writeln!(stderr, "{text}");
        let _ = stderr.flush();
    }

    /// Puts the terminal back as it was at start (echo on, line mode). The
    /// input thread may still be inside the line editor or the password
    /// prompt, which would otherwise leave the shell without echo.
    pub fn restore(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}

/// A line editor and its printer, when both stdin and stdout are a terminal
/// rustyline can drive.
fn terminal_editor(terminal: bool) -> Option<(Box<DefaultEditor>, Box<dyn ExternalPrinter + Send>)> {
    if !terminal {
        return None;
    }
    // Pasted text with several lines is sent line by line, as typed; with
    // bracketed paste it would arrive as one line with newlines inside.
    let config = Config::builder().bracketed_paste(false).build();
    let mut editor = DefaultEditor::with_config(config).ok()?;
    let printer = editor.create_external_printer().ok()?;
    Some((Box::new(editor), Box::new(printer)))
}

/// The input thread: one line per request, until the main thread is gone.
fn serve_input(mut source: Source, requests: &Receiver<Request>, answers: &Sender<Input>) {
    for request in requests {
        let input = source.read(&request);
        if answers.send(input).is_err() {
            return;
        }
    }
}

impl Source {
    fn read(&mut self, request: &Request) -> Input {
        match (self, request.ask) {
            (Source::Editor(_), Ask::Secret) => from_password(rpassword::prompt_password(&request.prompt)),
            (Source::Editor(editor), ask) => match editor.readline(&request.prompt) {
                Ok(line) => {
                    if ask == Ask::Chat && !line.trim().is_empty() {
                        // History is a convenience; failing to keep it is not an error.
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Input::Line(line)
                }
                Err(ReadlineError::Eof) => Input::Eof,
                Err(ReadlineError::Interrupted) => Input::Interrupted,
                Err(ReadlineError::Io(error)) => Input::Failed(error),
                Err(error) => Input::Failed(io::Error::other(error.to_string())),
            },
            (Source::Lines { tty: true, .. }, Ask::Secret) => from_password(rpassword::read_password()),
            (Source::Lines { stdin, .. }, _) => match read_bounded_line(stdin, MAX_INPUT_LINE) {
                Ok(Some(Some(line))) => Input::Line(line),
                Ok(Some(None)) => Input::TooLong,
                Ok(None) => Input::Eof,
                Err(error) => Input::Failed(error),
            },
        }
    }
}

/// rpassword's result as a [`Input`]: it reports Ctrl-D and Ctrl-C as
/// errors.
fn from_password(result: io::Result<String>) -> Input {
    match result {
        Ok(password) => Input::Line(password),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Input::Eof,
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Input::Interrupted,
        Err(error) => Input::Failed(error),
    }
}

/// Reads one line of at most `max` bytes (newline included) without ever
/// holding more than that: `Ok(None)` at the end of input, `Ok(Some(None))`
/// for a longer line (skipped up to its newline), otherwise the line without
/// its newline or a `\r` before it. Invalid UTF-8 becomes U+FFFD. A last line
/// without a newline still counts.
fn read_bounded_line(reader: &mut impl BufRead, max: usize) -> io::Result<Option<Option<String>>> {
    let mut line = Vec::new();
    let mut read_any = false;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            if !read_any {
                return Ok(None);
            }
            break;
        }
        read_any = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        if !too_long {
            // `+ 1` for the newline, counted like the server counts it.
            if line.len() + chunk.len() + 1 > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = newline.map_or(available.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if too_long {
        return Ok(Some(None));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Some(String::from_utf8_lossy(&line).into_owned())))
}

/// Forwards SIGINT, SIGTERM and SIGHUP to a channel, so the main thread can
/// put the terminal back before ending. (While rustyline edits a line it
/// handles SIGINT itself and reports Ctrl-C as [`Input::Interrupted`].)
fn watch_signals() -> Receiver<i32> {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return crossbeam_channel::never();
    };
    let (sender, receiver) = crossbeam_channel::unbounded();
    let spawned = thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            if sender.send(signal).is_err() {
                return;
            }
        }
    });
    match spawned {
        Ok(_) => receiver,
        Err(_) => crossbeam_channel::never(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Option<String>> {
        // A tiny buffer, so lines cross buffer boundaries.
        let mut reader = BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        while let Some(line) = read_bounded_line(&mut reader, max).unwrap() {
            out.push(line);
        }
        out
    }

    #[test]
    fn reads_lines_with_and_without_a_final_newline() {
        assert_eq!(
            lines(b"uno\r\ndos\n\ntres", 100),
            [
                Some("uno".into()),
                Some("dos".into()),
                Some(String::new()),
                Some("tres".into())
            ]
        );
        assert_eq!(lines(b"", 100), Vec::<Option<String>>::new());
    }

    #[test]
    fn skips_over_long_lines_and_goes_on() {
        assert_eq!(
            lines(b"1234567\n123456789\nok\n123456789", 8),
            [Some("1234567".into()), None, Some("ok".into()), None]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(lines(b"a\xffb\n", 100), [Some("a\u{fffd}b".into())]);
    }
}

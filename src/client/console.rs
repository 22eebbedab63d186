//! The person's side of the client: reading answers and chat lines,
//! printing without garbling the line being typed, the terminal's state, and
//! the signals that end the program.
//!
//! # On a terminal (stdin and stdout both terminals)
//!
//! The terminal is put in raw mode, echo off, by [`Console::open`] and
//! stays so until [`Console::restore`], for the whole session. One thread
//! (`keys`) is the only reader of the terminal: it decodes key events with
//! crossterm and queues them. One thread (`terminal`) is the only writer: it
//! owns the line editor ([`super::editor`]), keeps every key in one queue for
//! the program's whole life, and prints what the main thread asks it to.
//! Keys that arrive while no prompt is active are neither shown nor dropped:
//! they wait in the queue and are applied to the next prompt first, and
//! whatever follows an Enter waits for the prompt after it. Ctrl-C ends the
//! session at any time, prompt or not.
//!
//! Why not a line-editing crate per prompt, as before: rustyline wraps the
//! terminal in a fresh buffered reader for every `readline` and drops it on
//! return, so everything read ahead past the first Enter (a paste, answers
//! typed quickly) was lost; rpassword did the same with its own reader; and
//! between two prompts the terminal was back in cooked mode with echo on, so
//! a password typed before its prompt appeared was echoed by the kernel.
//! Hence one reader and one queue for the program's life, and raw mode
//! throughout. Bracketed paste stays off, so a pasted block arrives as keys
//! with an Enter between lines and each line is sent as if typed.
//!
//! The main thread never writes to the terminal itself: [`Console::say`]
//! sends the text to the `terminal` thread, which clears the prompt's row,
//! prints it and draws the prompt and the half-typed line again. In raw mode
//! lines end in `\r\n`.
//!
//! # Otherwise (pipes, files)
//!
//! Lines are read from stdin through one buffered reader for the program's
//! life, each prompt is printed as a line of its own, and stdout is flushed
//! after every line, so scripts and tests can follow along. A password read
//! from a terminal stdin is not echoed.
//!
//! This module knows nothing of the protocol and never prints network text
//! itself: callers pass already translated, already filtered sentences.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use crossterm::cursor::{MoveToColumn, MoveUp};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::queue;
use crossterm::style::Print;
use crossterm::terminal::{self as term, Clear, ClearType};
use nix::sys::signal::{self, Signal};
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use unicode_width::UnicodeWidthChar;

use super::editor::{Action, LineEditor};

/// The longest line read, newline included; longer lines are skipped and
/// reported as [`Input::TooLong`].
pub const MAX_INPUT_LINE: usize = 64 * 1024;

/// What ends the prompt in front of chat lines on a terminal, after the
/// current room: `#general> `.
const CHAT_PROMPT_END: &str = "> ";

/// The width assumed when the terminal does not tell its own.
const DEFAULT_WIDTH: u16 = 80;

/// How long [`Console::restore`] waits for the terminal thread to finish
/// its output before giving the terminal back anyway.
const FINISH_WAIT: Duration = Duration::from_secs(1);

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

/// One result from the input side.
#[derive(Debug)]
pub enum Input {
    /// A line, without its newline.
    Line(String),
    /// End of input (Ctrl-D on an empty line, or the end of a pipe).
    Eof,
    /// Ctrl-C, at a prompt or not.
    Interrupted,
    /// A line longer than [`MAX_INPUT_LINE`]; it was skipped.
    TooLong,
    /// The terminal or stdin failed.
    Failed(io::Error),
}

/// What the main thread asks of the terminal thread.
enum Command {
    /// Show a prompt and read one line for it.
    Ask {
        /// What the line is for.
        ask: Ask,
        /// The prompt, as shown.
        prompt: String,
    },
    /// Print one or more lines above the prompt.
    Say(String),
    /// Change the text of the chat prompt being answered, if one is.
    Retitle(String),
    /// Show (`Some`) or remove (`None`) one status row above the prompt.
    Status {
        /// Which row, from [`StatusRows::row`].
        row: u64,
        /// Its text, one line.
        text: Option<String>,
    },
    /// Move past the prompt, stop drawing, and say so on the channel.
    Finish(Sender<()>),
}

/// How the console reaches the person.
enum Mode {
    /// The terminal thread; `None` once finished by [`Console::restore`].
    Terminal(Option<Sender<Command>>),
    /// The plain input thread: one line per request.
    Plain(Sender<Ask>),
}

/// The terminal (or pipes) the client talks to a person through.
pub struct Console {
    /// How lines are read and printed.
    mode: Mode,
    /// Lines read, in order, and Ctrl-C.
    input: Receiver<Input>,
    /// SIGINT, SIGTERM and SIGHUP, as they arrive.
    signals: Receiver<i32>,
    /// Whether a line was asked for and not yet answered.
    waiting: bool,
    /// The chat prompt last drawn, so a change of room redraws it.
    chat_prompt: String,
    /// The terminal's settings at start, put back before leaving.
    saved: Option<Termios>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("terminal", &matches!(self.mode, Mode::Terminal(_)))
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

/// Status rows above the prompt on a terminal, for progress bars: each
/// user of a row sets its one line of text and removes it when done. The
/// terminal thread draws them between what was printed and the prompt, so
/// a transfer's progress never garbles the line being typed.
#[derive(Clone)]
pub struct StatusRows {
    /// The terminal thread.
    commands: Sender<Command>,
    /// The next row number handed out.
    next: Arc<AtomicU64>,
    /// The terminal's width when the handle was made.
    width: u16,
}

impl fmt::Debug for StatusRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusRows")
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl StatusRows {
    /// A new row; rows are drawn in the order they were handed out.
    pub fn row(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Shows `text` in `row` (`None`: removes the row). A terminal that is
    /// gone is simply not drawn on.
    pub fn set(&self, row: u64, text: Option<String>) {
        let _ = self.commands.send(Command::Status { row, text });
    }

    /// The terminal's width in columns.
    pub fn width(&self) -> u16 {
        self.width
    }
}

impl Console {
    /// Sets up input and output for the way the program was started: on a
    /// terminal, raw mode and the line editor from now until
    /// [`Console::restore`]. Never fails: without a usable terminal it falls
    /// back to plain lines, and without signal handling a signal simply
    /// ends the process.
    pub fn open() -> Console {
        let stdin_tty = io::stdin().is_terminal();
        let saved = if stdin_tty {
            termios::tcgetattr(io::stdin()).ok()
        } else {
            None
        };
        let (answers, input) = crossbeam_channel::unbounded();
        if stdin_tty
            && io::stdout().is_terminal()
            && let Some(commands) = start_terminal(&answers)
        {
            return Console {
                mode: Mode::Terminal(Some(commands)),
                input,
                signals: watch_signals(),
                waiting: false,
                chat_prompt: String::new(),
                saved,
            };
        }
        let (requests, requested) = crossbeam_channel::bounded(1);
        let stdin = BufReader::new(io::stdin());
        let spawned = thread::Builder::new()
            .name("input".into())
            .spawn(move || serve_lines(stdin, stdin_tty, &requested, &answers));
        if let Err(error) = spawned {
            // Without the thread every request reads as a failure.
            let (failing, failed) = crossbeam_channel::bounded(1);
            let _ = failing.send(Input::Failed(error));
            return Console {
                mode: Mode::Plain(requests),
                input: failed,
                signals: crossbeam_channel::never(),
                waiting: false,
                chat_prompt: String::new(),
                saved,
            };
        }
        Console {
            mode: Mode::Plain(requests),
            input,
            signals: watch_signals(),
            waiting: false,
            chat_prompt: String::new(),
            saved,
        }
    }

    /// Asks for one line. The answer arrives on [`Console::input`]. On a
    /// terminal, keys typed before the prompt is drawn are applied to it
    /// first. In plain mode the prompt (except the chat's) is printed as a
    /// line of its own.
    ///
    /// For [`Ask::Chat`], `prompt` is the current room, shown as `#sala> `
    /// on a terminal; asking again with another room while the line is
    /// being typed redraws the prompt with it, keeping what was typed.
    pub fn ask(&mut self, ask: Ask, prompt: &str) {
        if self.waiting {
            if ask == Ask::Chat
                && let Mode::Terminal(Some(commands)) = &self.mode
            {
                let prompt = format!("{prompt}{CHAT_PROMPT_END}");
                if prompt != self.chat_prompt {
                    let _ = commands.send(Command::Retitle(prompt.clone()));
                    self.chat_prompt = prompt;
                }
            }
            return;
        }
        match &self.mode {
            Mode::Terminal(Some(commands)) => {
                let prompt = match ask {
                    Ask::Chat => {
                        self.chat_prompt = format!("{prompt}{CHAT_PROMPT_END}");
                        self.chat_prompt.clone()
                    }
                    _ => format!("{prompt} "),
                };
                self.waiting = commands.send(Command::Ask { ask, prompt }).is_ok();
            }
            // Finished: nothing reads lines any more.
            Mode::Terminal(None) => {}
            Mode::Plain(requests) => {
                let requests = requests.clone();
                if ask != Ask::Chat {
                    self.say(prompt);
                }
                self.waiting = requests.send(ask).is_ok();
            }
        }
    }

    /// Lines read on request, in order, and [`Input::Interrupted`] whenever
    /// Ctrl-C is pressed on a terminal, requested or not.
    pub fn input(&self) -> &Receiver<Input> {
        &self.input
    }

    /// Whether the person is on a terminal (stdin and stdout), where they
    /// can be asked a question in the middle of the chat and see progress
    /// bars; otherwise lines are plain and nothing is asked.
    pub fn is_terminal(&self) -> bool {
        matches!(self.mode, Mode::Terminal(_))
    }

    /// A handle to draw status rows (progress bars) above the prompt from
    /// any thread; `None` when not on a terminal, where none are drawn.
    pub fn status_rows(&self) -> Option<StatusRows> {
        match &self.mode {
            Mode::Terminal(Some(commands)) => Some(StatusRows {
                commands: commands.clone(),
                next: Arc::new(AtomicU64::new(0)),
                width: match term::size() {
                    Ok((width, _)) if width > 0 => width,
                    _ => DEFAULT_WIDTH,
                },
            }),
            _ => None,
        }
    }

    /// Notes that an answer from [`Console::input`] was taken.
    pub fn answered(&mut self) {
        self.waiting = false;
    }

    /// Signals asking the program to end (`kill`, the terminal closing,
    /// Ctrl-C in plain mode).
    pub fn signals(&self) -> &Receiver<i32> {
        &self.signals
    }

    /// Prints `text` (one or more lines) on stdout without disturbing the
    /// line being typed.
    pub fn say(&mut self, text: &str) {
        if let Mode::Terminal(screen) = &mut self.mode {
            if let Some(commands) = screen {
                if commands.send(Command::Say(text.to_string())).is_ok() {
                    return;
                }
                // The terminal thread is gone: plain stdout still reaches the person.
                *screen = None;
            }
            let _ = term::disable_raw_mode();
        }
        let mut stdout = io::stdout().lock();
        // Nowhere left to report a failing stdout; the exit code still tells.
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// Prints a last sentence on stderr, after moving past a prompt left on
    /// screen and giving the terminal back its settings.
    pub fn fail(&mut self, text: &str) {
        self.restore();
        self.waiting = false;
        let mut stderr = io::stderr().lock();
        let _ = writeln!(stderr, "{text}");
        let _ = stderr.flush();
    }

    /// Puts the terminal back as it was at start (echo on, line mode), once
    /// everything said so far is on screen. Safe to call more than once;
    /// also done when the console is dropped, and by a panic hook.
    pub fn restore(&mut self) {
        if let Mode::Terminal(screen) = &mut self.mode {
            if let Some(commands) = screen.take() {
                let (done, finished) = crossbeam_channel::bounded(1);
                if commands.send(Command::Finish(done)).is_ok() {
                    let _ = finished.recv_timeout(FINISH_WAIT);
                }
            }
            let _ = term::disable_raw_mode();
        }
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.restore();
    }
}

// ----- the terminal -------------------------------------------------------

/// Raw mode, the `terminal` and `keys` threads, and a panic hook that gives
/// the terminal back. `None` (and the terminal as it was) if any of it
/// fails before a key is read.
fn start_terminal(answers: &Sender<Input>) -> Option<Sender<Command>> {
    term::enable_raw_mode().ok()?;
    let width = match term::size() {
        Ok((width, _)) if width > 0 => width,
        _ => DEFAULT_WIDTH,
    };
    let (commands, commanded) = crossbeam_channel::unbounded();
    let (events, read) = crossbeam_channel::unbounded();
    let screen = Screen::new(io::stdout(), width, answers.clone(), suspend);
    let started = thread::Builder::new()
        .name("terminal".into())
        .spawn(move || screen.run(&commanded, read));
    if started.is_err() {
        let _ = term::disable_raw_mode();
        return None;
    }
    // Should this fail, `events` is dropped with it and the terminal thread
    // reports the input as ended at the first prompt.
    let _ = thread::Builder::new()
        .name("keys".into())
        .spawn(move || read_keys(&events));
    restore_on_panic();
    Some(commands)
}

/// The `keys` thread: every event the terminal sends, in order, until it
/// fails or nobody listens.
fn read_keys(events: &Sender<io::Result<Event>>) {
    loop {
        let event = crossterm::event::read();
        let failed = event.is_err();
        if events.send(event).is_err() || failed {
            return;
        }
    }
}

/// A panic anywhere first gives the terminal back, so the message (and the
/// shell afterwards) is readable.
fn restore_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = term::disable_raw_mode();
        previous(info);
    }));
}

/// Ctrl-Z: gives the terminal back, stops the process as the shell expects,
/// and takes the terminal again once continued.
fn suspend() {
    let _ = term::disable_raw_mode();
    let _ = signal::raise(Signal::SIGTSTP);
    let _ = term::enable_raw_mode();
}

/// The prompt being answered.
struct Prompt {
    /// What the line is for.
    ask: Ask,
    /// The prompt, as shown.
    text: String,
}

/// The `terminal` thread's state: the only writer to the terminal while it
/// runs, and the owner of the key queue and the line editor.
struct Screen<W: Write> {
    /// The terminal (a buffer in tests).
    out: W,
    /// The terminal's width in columns.
    width: u16,
    /// The line being typed, and the history.
    editor: LineEditor,
    /// Keys not yet applied: typed while no prompt was active, or after
    /// the Enter that ended the last one.
    keys: VecDeque<KeyEvent>,
    /// The prompt being answered, if a line was asked for.
    prompt: Option<Prompt>,
    /// Why the terminal's input ended, told at the next prompt once the
    /// keys before it are used up.
    broken: Option<(io::ErrorKind, String)>,
    /// Where lines (and Ctrl-C) go.
    answers: Sender<Input>,
    /// What Ctrl-Z does.
    suspend: fn(),
    /// The status rows (progress bars) by row number, drawn above the
    /// prompt.
    status: BTreeMap<u64, String>,
    /// How many status rows are on screen above the cursor's row.
    status_drawn: usize,
    /// The prompt row as last drawn, to leave an answered line on screen
    /// when status rows are drawn around it.
    last_row: String,
}

impl<W: Write> Screen<W> {
    fn new(out: W, width: u16, answers: Sender<Input>, suspend: fn()) -> Screen<W> {
        Screen {
            out,
            width,
            editor: LineEditor::new(),
            keys: VecDeque::new(),
            prompt: None,
            broken: None,
            answers,
            suspend,
            status: BTreeMap::new(),
            status_drawn: 0,
            last_row: String::new(),
        }
    }

    /// Serves the main thread's commands and the terminal's events until
    /// told to finish (or the main thread is gone).
    fn run(mut self, commands: &Receiver<Command>, mut events: Receiver<io::Result<Event>>) {
        loop {
            select! {
                recv(commands) -> command => match command {
                    Ok(Command::Ask { ask, prompt }) => self.ask(ask, prompt),
                    Ok(Command::Say(text)) => self.say(&text),
                    Ok(Command::Retitle(text)) => self.retitle(text),
                    Ok(Command::Status { row, text }) => self.set_status(row, text),
                    Ok(Command::Finish(done)) => {
                        self.finish();
                        let _ = done.send(());
                        return;
                    }
                    Err(_) => {
                        self.finish();
                        return;
                    }
                },
                recv(events) -> event => match event {
                    Ok(Ok(event)) => self.event(event),
                    Ok(Err(error)) => self.broke(&error),
                    Err(_) => {
                        events = crossbeam_channel::never();
                        self.broke(&io::Error::other("the terminal's input ended"));
                    }
                },
            }
            // Nowhere to report a failing terminal; the next read tells.
            let _ = self.out.flush();
        }
    }

    /// A line is asked for: draw the prompt, apply the keys queued for it.
    fn ask(&mut self, ask: Ask, text: String) {
        self.prompt = Some(Prompt { ask, text });
        self.apply_keys(true);
    }

    /// The chat prompt on screen gets a new text (the current room changed);
    /// what was typed stays.
    fn retitle(&mut self, text: String) {
        if let Some(prompt) = &mut self.prompt
            && prompt.ask == Ask::Chat
        {
            prompt.text = text;
            self.draw();
        }
    }

    /// One event from the terminal.
    fn event(&mut self, event: Event) {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                if is_ctrl(key, 'c') {
                    self.interrupt();
                } else if is_ctrl(key, 'z') {
                    self.clear_row();
                    let _ = self.out.flush();
                    (self.suspend)();
                    self.draw_status();
                    self.draw();
                } else {
                    self.keys.push_back(key);
                    self.apply_keys(false);
                }
            }
            Event::Resize(width, _) => {
                if width > 0 {
                    self.width = width;
                }
                if !self.status.is_empty() {
                    self.clear_row();
                    self.draw_status();
                }
                self.draw();
            }
            _ => {}
        }
    }

    /// Applies queued keys to the active prompt, up to the Enter that ends
    /// it; the rest stays queued. Draws once at the end (`dirty`: even if no
    /// key changed anything).
    fn apply_keys(&mut self, mut dirty: bool) {
        let Some(ask) = self.prompt.as_ref().map(|prompt| prompt.ask) else {
            return;
        };
        while let Some(key) = self.keys.pop_front() {
            match self.editor.apply(key, ask) {
                Action::Edited => dirty = true,
                Action::Ignored => {}
                Action::Submit => {
                    // The line stays on screen as it was typed (a secret: its prompt only).
                    self.draw();
                    let line = self.editor.take(ask);
                    self.answer(line);
                    return;
                }
                Action::Eof => {
                    self.draw();
                    self.editor.clear();
                    self.answer(Input::Eof);
                    return;
                }
            }
        }
        if let Some((kind, text)) = &self.broken {
            let error = io::Error::new(*kind, text.clone());
            self.draw();
            self.answer(Input::Failed(error));
            return;
        }
        if dirty {
            self.draw();
        }
    }

    /// Ends the active prompt with `input`: the cursor moves to a new line.
    fn answer(&mut self, input: Input) {
        self.leave_prompt();
        let _ = self.answers.send(input);
    }

    /// The prompt is answered: its row stays on screen as it was drawn and
    /// the cursor moves to a new line (below the status rows, which move
    /// down with it).
    fn leave_prompt(&mut self) {
        self.prompt = None;
        if self.status_drawn == 0 {
            let _ = self.out.write_all(b"\r\n");
            return;
        }
        self.clear_row();
        let row = std::mem::take(&mut self.last_row);
        let _ = self.out.write_all(row.as_bytes());
        let _ = self.out.write_all(b"\r\n");
        self.draw_status();
    }

    /// Ctrl-C: whatever was typed is dropped and the session ends.
    fn interrupt(&mut self) {
        self.keys.clear();
        self.editor.clear();
        if self.prompt.is_some() {
            self.leave_prompt();
        }
        let _ = self.answers.send(Input::Interrupted);
    }

    /// Shows, changes or removes one status row.
    fn set_status(&mut self, row: u64, text: Option<String>) {
        let changed = match text {
            Some(text) => self.status.insert(row, text.clone()).as_ref() != Some(&text),
            None => self.status.remove(&row).is_some(),
        };
        if changed {
            self.clear_row();
            self.draw_status();
            self.draw();
        }
    }

    /// Draws the status rows from the cursor's row, which is clear, each
    /// cut to the terminal's width; the cursor ends on the row after them.
    fn draw_status(&mut self) {
        let width = usize::from(self.width.max(2)) - 1;
        for text in self.status.values() {
            let mut used = 0;
            let cut: String = text
                .chars()
                .take_while(|c| {
                    used += c.width().unwrap_or(0);
                    used <= width
                })
                .collect();
            let _ = self.out.write_all(cut.as_bytes());
            let _ = self.out.write_all(b"\r\n");
        }
        self.status_drawn = self.status.len();
    }

    /// The terminal's input ended or failed.
    fn broke(&mut self, error: &io::Error) {
        if self.broken.is_none() {
            self.broken = Some((error.kind(), error.to_string()));
        }
        self.apply_keys(false);
    }

    /// Prints `text` above the status rows and the prompt, then draws them
    /// again.
    fn say(&mut self, text: &str) {
        self.clear_row();
        for line in text.split('\n') {
            let _ = self.out.write_all(line.as_bytes());
            let _ = self.out.write_all(b"\r\n");
        }
        self.draw_status();
        self.draw();
    }

    /// Moves past the prompt, if one is on screen, and removes the status
    /// rows; nothing is drawn after.
    fn finish(&mut self) {
        if !self.status.is_empty() {
            self.status.clear();
            self.clear_row();
            self.draw();
        }
        if self.prompt.take().is_some() {
            let _ = self.out.write_all(b"\r\n");
        }
        let _ = self.out.flush();
    }

    /// Clears the row the cursor is on, and the status rows above it; the
    /// cursor ends at the start of the first row cleared.
    fn clear_row(&mut self) {
        let _ = queue!(self.out, MoveToColumn(0), Clear(ClearType::CurrentLine));
        if self.status_drawn > 0 {
            let up = u16::try_from(self.status_drawn).unwrap_or(u16::MAX);
            let _ = queue!(self.out, MoveUp(up), Clear(ClearType::FromCursorDown));
            self.status_drawn = 0;
        }
    }

    /// Draws the active prompt and its line over the current row.
    fn draw(&mut self) {
        let Some(prompt) = &self.prompt else {
            return;
        };
        let view = self.editor.view(&prompt.text, prompt.ask == Ask::Secret, self.width);
        self.last_row.clone_from(&view.text);
        let _ = queue!(
            self.out,
            MoveToColumn(0),
            Print(&view.text),
            Clear(ClearType::UntilNewLine),
            MoveToColumn(view.cursor)
        );
    }
}

/// Whether `key` is Ctrl and the letter `letter`.
fn is_ctrl(key: KeyEvent, letter: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL)
        && matches!(key.code, KeyCode::Char(c) if c.eq_ignore_ascii_case(&letter))
}

// ----- plain lines ------------------------------------------------------

/// The plain input thread: one line per request, until the main thread is
/// gone. Passwords from a terminal stdin are read without echo.
fn serve_lines(mut stdin: BufReader<io::Stdin>, tty: bool, requests: &Receiver<Ask>, answers: &Sender<Input>) {
    for ask in requests {
        let input = if tty && ask == Ask::Secret {
            read_secret(&mut stdin)
        } else {
            read_line(&mut stdin)
        };
        if answers.send(input).is_err() {
            return;
        }
    }
}

/// One line of stdin as an [`Input`].
fn read_line(stdin: &mut impl BufRead) -> Input {
    match read_bounded_line(stdin, MAX_INPUT_LINE) {
        Ok(Some(Some(line))) => Input::Line(line),
        Ok(Some(None)) => Input::TooLong,
        Ok(None) => Input::Eof,
        Err(error) => Input::Failed(error),
    }
}

/// One line of a terminal stdin with echo off (the newline still echoes).
fn read_secret(stdin: &mut BufReader<io::Stdin>) -> Input {
    let saved = termios::tcgetattr(io::stdin()).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &quiet);
    }
    let input = read_line(stdin);
    if let Some(saved) = &saved {
        let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, saved);
    }
    input
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
/// put the terminal back before ending. (In raw mode Ctrl-C is a key, not
/// SIGINT: the terminal thread reports it as [`Input::Interrupted`].)
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

    // ----- the terminal thread, on a buffer -----

    /// A screen writing to a buffer, and where its answers go.
    fn screen() -> (Screen<Vec<u8>>, Receiver<Input>) {
        let (answers, input) = crossbeam_channel::unbounded();
        (Screen::new(Vec::new(), 40, answers, || {}), input)
    }

    /// Each char of `text` as a key event; `\r` is Enter.
    fn type_keys(screen: &mut Screen<Vec<u8>>, text: &str) {
        for c in text.chars() {
            let code = if c == '\r' { KeyCode::Enter } else { KeyCode::Char(c) };
            screen.event(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        }
    }

    fn ctrl(c: char) -> Event {
        Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
    }

    /// What was written since the last call.
    fn written(screen: &mut Screen<Vec<u8>>) -> String {
        String::from_utf8(std::mem::take(&mut screen.out)).unwrap()
    }

    /// The answers sent so far, as text.
    fn answers(input: &Receiver<Input>) -> Vec<String> {
        input.try_iter().map(|input| format!("{input:?}")).collect()
    }

    #[test]
    fn keys_before_a_prompt_wait_unseen_and_feed_it_first() {
        let (mut screen, input) = screen();
        type_keys(&mut screen, "2\rEva Luna\reva\rclave1234\rhola\r");
        assert_eq!(written(&mut screen), "", "nothing is shown without a prompt");
        assert!(answers(&input).is_empty(), "nothing is answered without a prompt");

        screen.ask(Ask::Answer, "Menú: ".into());
        assert_eq!(answers(&input), [r#"Line("2")"#]);
        let shown = written(&mut screen);
        assert!(shown.contains("Menú: 2") && shown.ends_with("\r\n"), "{shown:?}");
        // The rest waits for the next prompts, one line each.
        screen.ask(Ask::Answer, "Nombre: ".into());
        screen.ask(Ask::Answer, "Usuario: ".into());
        assert_eq!(answers(&input), [r#"Line("Eva Luna")"#, r#"Line("eva")"#]);
        written(&mut screen);
        screen.ask(Ask::Secret, "Contraseña: ".into());
        assert_eq!(answers(&input), [r#"Line("clave1234")"#]);
        let shown = written(&mut screen);
        assert!(shown.contains("Contraseña: ") && !shown.contains("clave"), "{shown:?}");
        screen.ask(Ask::Chat, "> ".into());
        assert_eq!(answers(&input), [r#"Line("hola")"#]);
        // Nothing left: the next prompt waits for keys.
        screen.ask(Ask::Chat, "> ".into());
        assert!(answers(&input).is_empty());
        type_keys(&mut screen, "ad");
        assert!(written(&mut screen).ends_with("> ad\u{1b}[K\u{1b}[5G"));
        type_keys(&mut screen, "\r");
        assert_eq!(answers(&input), [r#"Line("ad")"#]);
    }

    #[test]
    fn typing_at_a_secret_prompt_writes_nothing_of_it() {
        let (mut screen, input) = screen();
        screen.ask(Ask::Secret, "Contraseña: ".into());
        written(&mut screen);
        type_keys(&mut screen, "clave1234");
        let shown = written(&mut screen);
        assert!(!shown.contains('c') && !shown.contains('*'), "{shown:?}");
        type_keys(&mut screen, "\r");
        assert_eq!(answers(&input), [r#"Line("clave1234")"#]);
    }

    #[test]
    fn ctrl_c_interrupts_with_or_without_a_prompt() {
        let (mut screen, input) = screen();
        type_keys(&mut screen, "hola");
        screen.event(ctrl('c'));
        assert_eq!(answers(&input), ["Interrupted"]);
        // What was typed before it is dropped.
        screen.ask(Ask::Chat, "> ".into());
        assert!(answers(&input).is_empty());
        screen.event(ctrl('c'));
        assert_eq!(answers(&input), ["Interrupted"]);
    }

    #[test]
    fn ctrl_d_on_an_empty_line_ends_the_input() {
        let (mut screen, input) = screen();
        screen.event(ctrl('d'));
        assert!(answers(&input).is_empty(), "queued until a prompt");
        screen.ask(Ask::Chat, "> ".into());
        assert_eq!(answers(&input), ["Eof"]);
    }

    #[test]
    fn say_prints_above_the_half_typed_line_and_redraws_it() {
        let (mut screen, _input) = screen();
        screen.ask(Ask::Chat, "> ".into());
        type_keys(&mut screen, "ho");
        written(&mut screen);
        screen.say("[10:00] ana: hola\nsegunda");
        assert_eq!(
            written(&mut screen),
            "\u{1b}[1G\u{1b}[2K[10:00] ana: hola\r\nsegunda\r\n\u{1b}[1G> ho\u{1b}[K\u{1b}[5G"
        );
        // Without a prompt nothing is drawn after the text.
        let (mut screen, _input) = super::tests::screen();
        screen.say("hola");
        assert_eq!(written(&mut screen), "\u{1b}[1G\u{1b}[2Khola\r\n");
    }

    #[test]
    fn a_broken_terminal_is_told_after_the_keys_before_it() {
        let (mut screen, input) = screen();
        type_keys(&mut screen, "uno\r");
        screen.broke(&io::Error::other("gone"));
        screen.ask(Ask::Chat, "> ".into());
        assert_eq!(answers(&input), [r#"Line("uno")"#]);
        screen.ask(Ask::Chat, "> ".into());
        let answered = answers(&input);
        assert!(answered.len() == 1 && answered[0].starts_with("Failed"), "{answered:?}");
    }

    #[test]
    fn a_new_chat_prompt_keeps_the_half_typed_line() {
        let (mut screen, _input) = screen();
        screen.ask(Ask::Chat, "#general> ".into());
        type_keys(&mut screen, "ho");
        written(&mut screen);
        screen.retitle("#sala> ".into());
        assert_eq!(written(&mut screen), "\u{1b}[1G#sala> ho\u{1b}[K\u{1b}[10G");
        // Only a chat prompt changes.
        screen.ask(Ask::Answer, "Usuario: ".into());
        written(&mut screen);
        screen.retitle("#x> ".into());
        assert_eq!(written(&mut screen), "");
    }

    #[test]
    fn status_rows_sit_between_printed_lines_and_the_prompt() {
        let (mut screen, input) = screen();
        screen.ask(Ask::Chat, "> ".into());
        type_keys(&mut screen, "ho");
        written(&mut screen);
        screen.set_status(0, Some("descarga [==>   ] 1 MiB/8 MiB".into()));
        assert_eq!(
            written(&mut screen),
            "\u{1b}[1G\u{1b}[2Kdescarga [==>   ] 1 MiB/8 MiB\r\n\u{1b}[1G> ho\u{1b}[K\u{1b}[5G"
        );
        // A line printed goes above the row, which is drawn again below it.
        screen.say("[10:00] ana: hola");
        assert_eq!(
            written(&mut screen),
            "\u{1b}[1G\u{1b}[2K\u{1b}[1A\u{1b}[J[10:00] ana: hola\r\ndescarga [==>   ] 1 MiB/8 MiB\r\n\u{1b}[1G> ho\u{1b}[K\u{1b}[5G"
        );
        // The same text again draws nothing.
        screen.set_status(0, Some("descarga [==>   ] 1 MiB/8 MiB".into()));
        assert_eq!(written(&mut screen), "");
        // An answered line stays above the row.
        type_keys(&mut screen, "\r");
        assert_eq!(answers(&input), [r#"Line("ho")"#]);
        let shown = written(&mut screen);
        assert!(
            shown.ends_with("> ho\r\ndescarga [==>   ] 1 MiB/8 MiB\r\n"),
            "{shown:?}"
        );
        // Rows are cut to the width, and go when removed.
        screen.set_status(1, Some("x".repeat(100)));
        let shown = written(&mut screen);
        assert!(shown.contains(&format!("{}\r\n", "x".repeat(39))) && !shown.contains(&"x".repeat(40)));
        screen.set_status(0, None);
        screen.set_status(1, None);
        assert_eq!(screen.status_drawn, 0);
    }

    #[test]
    fn a_resize_redraws_the_prompt_at_the_new_width() {
        let (mut screen, _input) = screen();
        screen.ask(Ask::Chat, "> ".into());
        type_keys(&mut screen, "abcdefghijklmnopqrstuvwxyz");
        written(&mut screen);
        screen.event(Event::Resize(10, 5));
        // 9 usable columns: 2 of prompt, the cursor's cell and 6 letters.
        assert_eq!(written(&mut screen), "\u{1b}[1G> uvwxyz\u{1b}[K\u{1b}[9G");
    }
}

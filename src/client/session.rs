//! One session with the server, on the main thread: the lab's menu (log in
//! or register), then the chat until `salir`.
//!
//! The session owns the protocol state of the client: the queue of commands
//! sent and not yet answered (replies come back in order, and each carries
//! the `@TAG` of its command, so the front of the queue is always the command
//! a reply answers), the lines of a multi-line reply being collected, and the
//! ids of the messages already shown. It waits on three channels at once:
//! server lines, typed lines and signals. It never reads the socket or the
//! keyboard itself, and it prints only through the [`Console`].

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Local;
use crossbeam_channel::select;

use super::ClientError;
use super::connection::{Connection, Incoming};
use super::console::{Ask, Console, Input};
use super::display::{self, SeenIds};
use super::i18n::{Lang, Text};
use super::typed::{DEFAULT_HISTORY, Typed};
use crate::core::code::ErrorCode;
use crate::core::validate;
use crate::proto::charla::{ChatMessage, ServerLine};

/// How long a command may wait for its reply before the server counts as
/// gone. Generous: bcrypt on a busy server takes a while.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// After `BYE`, how long to keep reading: a stopping server still sends the
/// `OK SAY` of messages it had already read (PROTOCOL.md 5.6), then closes.
const BYE_GRACE: Duration = Duration::from_secs(3);

/// How many characters of a refused message are quoted in the error.
const EXCERPT: usize = 40;

/// Runs the whole session on an open connection: menu, then chat.
///
/// # Errors
/// Every way a session can end other than the user leaving: see
/// [`ClientError`].
pub fn run(console: &mut Console, connection: Connection, lang: Lang) -> Result<(), ClientError> {
    let mut session = Session::new(console, connection, lang);
    match session.menu()? {
        Some(account) => session.chat(&account),
        None => session.leave_before_login(),
    }
}

/// The account a session logged in as.
struct Account {
    /// The username as registered (case preserved), for the farewell.
    username: String,
}

/// A command sent and not yet answered.
struct Pending {
    /// Its `@TAG`; the reply carries it back.
    tag: String,
    /// What it was.
    command: Sent,
    /// When it was sent, for [`REPLY_TIMEOUT`].
    sent_at: Instant,
}

/// The commands the client sends, with what it needs to handle the reply.
enum Sent {
    /// `REGISTER`: the dialogue waits for it.
    Register,
    /// `LOGIN`: the dialogue waits for it.
    Login,
    /// `SAY`, with the text to name it if it fails (and to resend it after
    /// a reconnection, the tag making that idempotent).
    Say {
        /// The text as sent.
        text: String,
    },
    /// `HISTORY`; the one right after login merges into the chat, an
    /// explicit `/historial` is shown as a listing.
    History {
        /// Whether this is the history sent right after login.
        initial: bool,
    },
    /// `WHO`.
    Who,
    /// `QUIT`: the session ends at its `OK QUIT`.
    Quit,
}

impl Sent {
    /// The verb its reply names (PROTOCOL.md 2).
    fn verb(&self) -> &'static str {
        match self {
            Sent::Register => "REGISTER",
            Sent::Login => "LOGIN",
            Sent::Say { .. } => "SAY",
            Sent::History { .. } => "HISTORY",
            Sent::Who => "WHO",
            Sent::Quit => "QUIT",
        }
    }
}

/// A final reply: `OK` with its fields, or `ERR` with its code and text.
type Reply = Result<String, (Option<ErrorCode>, String)>;

/// A reply the flow waits for, handed back from [`Session::on_incoming`].
enum Done {
    /// The reply to `LOGIN` or `REGISTER`.
    Account(Reply),
    /// The history sent after login has been shown.
    InitialHistory,
    /// `OK QUIT`.
    Quit,
}

/// What woke the main thread.
enum Event {
    /// Something from the reader thread.
    Server(Incoming),
    /// A line (or its absence) from the input thread.
    Input(Input),
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// A reply, or the close after `BYE`, took too long.
    Timeout,
}

/// Makes the `@TAG`s: `c<pid>-<start ms>-<n>`. The server remembers SAY
/// tags for as long as the message is stored and takes a repeated tag for a
/// resend (PROTOCOL.md 5.3); pids are reused, so the start time keeps a new
/// run from repeating an old run's tag and having its message dropped.
struct Tags {
    /// `c<pid>-<start ms>`.
    prefix: String,
    /// The last number handed out.
    last: u64,
}

impl Tags {
    fn new() -> Tags {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        Tags {
            prefix: format!("c{}-{start}", std::process::id()),
            last: 0,
        }
    }

    fn next(&mut self) -> String {
        self.last += 1;
        format!("{}-{}", self.prefix, self.last)
    }
}

/// The state of one session.
struct Session<'c> {
    /// Where sentences are printed and lines are read.
    console: &'c mut Console,
    /// The server.
    connection: Connection,
    /// The language of every sentence.
    lang: Lang,
    /// Makes the tags of the commands.
    tags: Tags,
    /// Commands sent and not yet answered, oldest first.
    pending: VecDeque<Pending>,
    /// `MSG` lines received while a `HISTORY` is the oldest pending command:
    /// its body, possibly preceded by live messages (the two look alike).
    history_lines: Vec<ChatMessage>,
    /// `USER` lines of the `WHO` being answered: (username, full name).
    who_lines: Vec<(String, String)>,
    /// Messages already shown.
    seen: SeenIds,
    /// Set by `BYE`: its code and text, and how long to wait for the close.
    closing: Option<(Option<ErrorCode>, String, Instant)>,
}

impl<'c> Session<'c> {
    fn new(console: &'c mut Console, connection: Connection, lang: Lang) -> Session<'c> {
        Session {
            console,
            connection,
            lang,
            tags: Tags::new(),
            pending: VecDeque::new(),
            history_lines: Vec::new(),
            who_lines: Vec::new(),
            seen: SeenIds::default(),
            closing: None,
        }
    }

    // ----- the lab's dialogue -------------------------------------------

    /// The menu, until the user is logged in (`Some`) or leaves (`None`:
    /// end of input or `salir`).
    fn menu(&mut self) -> Result<Option<Account>, ClientError> {
        loop {
            let Some(choice) = self.ask(Text::MenuPrompt, Ask::Answer)? else {
                return Ok(None);
            };
            let step = match choice.trim() {
                "1" => self.login()?,
                "2" => self.register()?,
                other if other.eq_ignore_ascii_case("salir") => return Ok(None),
                _ => {
                    self.say(Text::InvalidChoice);
                    continue;
                }
            };
            match step {
                Step::LoggedIn(account) => return Ok(Some(account)),
                Step::Menu => {}
                Step::Leave => return Ok(None),
            }
        }
    }

    /// Option 1: username and password, then `LOGIN`.
    fn login(&mut self) -> Result<Step, ClientError> {
        let Some(username) = self.ask(Text::AskUsername, Ask::Answer)? else {
            return Ok(Step::Leave);
        };
        let Some(password) = self.ask(Text::AskPassword, Ask::Secret)? else {
            return Ok(Step::Leave);
        };
        let username = username.trim_matches([' ', '\t']);
        // Values that cannot be valid cannot be right either; saying so is
        // what the server would say (PROTOCOL.md 2), without the round trip.
        if validate::username(username).is_err() || !validate::could_be_password(&password) {
            self.refused(Some(ErrorCode::BadCredentials), "");
            return Ok(Step::Menu);
        }
        let reply = self.request(Sent::Login, &format!("LOGIN {username} {password}"))?;
        self.enter(reply, |full_name| Text::Welcome { full_name })
    }

    /// Option 2: full name, username and password, each checked as soon as
    /// it is typed, then `REGISTER`.
    fn register(&mut self) -> Result<Step, ClientError> {
        let Some(full_name) = self.ask(Text::AskFullName, Ask::Answer)? else {
            return Ok(Step::Leave);
        };
        let full_name = match validate::full_name(&full_name) {
            Ok(full_name) => full_name.to_string(),
            Err(code) => return Ok(self.back_to_menu(code)),
        };
        let Some(username) = self.ask(Text::AskUsername, Ask::Answer)? else {
            return Ok(Step::Leave);
        };
        let username = match validate::username(username.trim_matches([' ', '\t'])) {
            Ok(username) => username.to_string(),
            Err(code) => return Ok(self.back_to_menu(code)),
        };
        let Some(password) = self.ask(Text::AskPassword, Ask::Secret)? else {
            return Ok(Step::Leave);
        };
        if let Err(code) = validate::password(&password) {
            return Ok(self.back_to_menu(code));
        }
        let reply = self.request(Sent::Register, &format!("REGISTER {username} {password} {full_name}"))?;
        self.enter(reply, |full_name| Text::Registered { full_name })
    }

    /// The reply to `LOGIN` or `REGISTER`: `OK VERB USER FULL NAME` greets
    /// the user (with `greeting`) and logs in; `ERR` says why not and goes
    /// back to the menu.
    fn enter(&mut self, reply: Reply, greeting: fn(&str) -> Text<'_>) -> Result<Step, ClientError> {
        match reply {
            Ok(fields) => {
                let Some((username, full_name)) = fields.split_once(' ').filter(|(username, _)| !username.is_empty())
                else {
                    return Err(self.protocol("OK LOGIN/REGISTER without USER FULL NAME"));
                };
                self.say(greeting(&validate::for_display(full_name)));
                Ok(Step::LoggedIn(Account {
                    username: username.to_string(),
                }))
            }
            Err((code, text)) => {
                self.refused(code, &text);
                Ok(Step::Menu)
            }
        }
    }

    /// A value refused before sending: say why, back to the menu.
    fn back_to_menu(&mut self, code: ErrorCode) -> Step {
        self.refused(Some(code), "");
        Step::Menu
    }

    /// The user left at the menu: `QUIT`, wait for `OK QUIT`, goodbye.
    fn leave_before_login(&mut self) -> Result<(), ClientError> {
        self.send(Sent::Quit, "QUIT")?;
        loop {
            if let Done::Quit = self.wait()? {
                self.say(Text::Goodbye);
                return Ok(());
            }
        }
    }

    /// Shows `text` as a prompt and waits for the answer, handling whatever
    /// the server sends meanwhile (before login that can only be `BYE`).
    /// `None` at the end of input.
    fn ask(&mut self, text: Text, ask: Ask) -> Result<Option<String>, ClientError> {
        let prompt = text.render(self.lang);
        self.console.ask(ask, &prompt);
        loop {
            match self.next_event() {
                Event::Input(Input::Line(line)) => return Ok(Some(line)),
                Event::Input(Input::Eof) => return Ok(None),
                Event::Input(Input::TooLong) => {
                    // Too long for any field: answered as an empty value,
                    // which every check refuses with its own sentence.
                    self.say(Text::InputTooLong);
                    return Ok(Some(String::new()));
                }
                Event::Input(Input::Interrupted) | Event::Signal => return Err(ClientError::Interrupted),
                Event::Input(Input::Failed(error)) => return Err(ClientError::Input(error)),
                Event::Server(incoming) => {
                    self.on_incoming(incoming)?;
                }
                Event::Timeout => return Err(self.timed_out()),
            }
        }
    }

    /// Sends `line` and waits for its reply (the dialogue is synchronous).
    fn request(&mut self, command: Sent, line: &str) -> Result<Reply, ClientError> {
        self.send(command, line)?;
        loop {
            if let Done::Account(reply) = self.wait()? {
                return Ok(reply);
            }
        }
    }

    /// Waits for the next reply the flow cares about, with no line being
    /// read meanwhile (keys typed now wait for the next prompt; Ctrl-C
    /// still ends the session).
    fn wait(&mut self) -> Result<Done, ClientError> {
        loop {
            match self.next_event() {
                Event::Server(incoming) => {
                    if let Some(done) = self.on_incoming(incoming)? {
                        return Ok(done);
                    }
                }
                // Ctrl-C on a terminal ends the session even when no line
                // was asked for.
                Event::Input(Input::Interrupted) => return Err(ClientError::Interrupted),
                // No line was asked for, so no other input can come.
                Event::Input(_) => {}
                Event::Signal => return Err(ClientError::Interrupted),
                Event::Timeout => return Err(self.timed_out()),
            }
        }
    }

    // ----- the chat -----------------------------------------------------

    /// The chat: the latest messages, then every typed line, until `salir`
    /// (or the end of input) and the server's `OK QUIT`.
    ///
    /// Messages are pipelined (the next line is read at once), but after
    /// `/who` or `/historial` the next line is read only once the listing is
    /// on screen, so its output is not mixed with what the next line prints;
    /// the same holds for the history shown after login.
    fn chat(&mut self, account: &Account) -> Result<(), ClientError> {
        self.send(Sent::History { initial: true }, &format!("HISTORY {DEFAULT_HISTORY}"))?;
        let mut leaving = false;
        loop {
            if !leaving && !self.listing_pending() {
                self.console.ask(Ask::Chat, "");
            }
            match self.next_event() {
                Event::Server(incoming) => match self.on_incoming(incoming)? {
                    Some(Done::InitialHistory) => self.say(Text::ChatHint),
                    Some(Done::Quit) => {
                        self.say(Text::Disconnected {
                            username: &validate::for_display(&account.username),
                        });
                        return Ok(());
                    }
                    Some(Done::Account(_)) | None => {}
                },
                Event::Input(Input::Line(line)) => leaving = self.typed(&line)?,
                Event::Input(Input::TooLong) => self.say(Text::InputTooLong),
                Event::Input(Input::Eof) => {
                    leaving = true;
                    self.send(Sent::Quit, "QUIT")?;
                }
                Event::Input(Input::Interrupted) | Event::Signal => return Err(ClientError::Interrupted),
                Event::Input(Input::Failed(error)) => return Err(ClientError::Input(error)),
                Event::Timeout => return Err(self.timed_out()),
            }
        }
    }

    /// Whether a `WHO` or `HISTORY` reply is still to be shown.
    fn listing_pending(&self) -> bool {
        self.pending
            .iter()
            .any(|pending| matches!(pending.command, Sent::Who | Sent::History { .. }))
    }

    /// Acts on one typed line; true when it was the order to leave.
    fn typed(&mut self, line: &str) -> Result<bool, ClientError> {
        match Typed::parse(line) {
            Typed::Blank => {}
            Typed::Say(text) => match validate::text(text) {
                Ok(text) => self.send(Sent::Say { text: text.to_string() }, &format!("SAY {text}"))?,
                Err(code) => self.say(Text::SayFailed {
                    code: Some(code),
                    server_text: "",
                    excerpt: &display::excerpt(text.trim_matches([' ', '\t']), EXCERPT),
                }),
            },
            Typed::Quit => {
                self.send(Sent::Quit, "QUIT")?;
                return Ok(true);
            }
            Typed::Who => self.send(Sent::Who, "WHO")?,
            Typed::History(count) => self.send(Sent::History { initial: false }, &format!("HISTORY {count}"))?,
            Typed::BadHistory => self.say(Text::HistoryUsage),
            Typed::Help => self.say(Text::Help),
            Typed::Unknown(command) => self.say(Text::UnknownCommand {
                command: &validate::for_display(command),
            }),
        }
        Ok(false)
    }

    // ----- what the server says ------------------------------------------

    /// Handles one report of the reader thread; a reply the flow waits for
    /// is handed back.
    fn on_incoming(&mut self, incoming: Incoming) -> Result<Option<Done>, ClientError> {
        match incoming {
            Incoming::Line(line) => self.on_line(line),
            Incoming::Unparsable | Incoming::TooLong => {
                self.say(Text::IgnoredServerLine);
                Ok(None)
            }
            Incoming::Closed | Incoming::Failed(_) => Err(self.ended()),
        }
    }

    fn on_line(&mut self, line: ServerLine) -> Result<Option<Done>, ClientError> {
        match line {
            ServerLine::Ok { tag, verb, fields } => self.on_reply(tag, &verb, Ok(fields)),
            ServerLine::Err { tag, verb, code, text } => self.on_reply(tag, &verb, Err((code, text))),
            ServerLine::Msg(message) => {
                if matches!(self.front(), Some(Sent::History { .. })) {
                    self.history_lines.push(message);
                } else {
                    self.show_live(&message);
                }
                Ok(None)
            }
            ServerLine::User { username, full_name } if matches!(self.front(), Some(Sent::Who)) => {
                self.who_lines.push((username, full_name));
                Ok(None)
            }
            ServerLine::Join(username) => {
                self.say(Text::Joined {
                    username: &validate::for_display(&username),
                });
                Ok(None)
            }
            ServerLine::Leave(username) => {
                self.say(Text::Left {
                    username: &validate::for_display(&username),
                });
                Ok(None)
            }
            ServerLine::Bye { code, text } => {
                self.closing = Some((code, text, Instant::now() + BYE_GRACE));
                Ok(None)
            }
            // Rooms and private messages (protocol 1.1): this client does
            // not use them yet, and a version 1 session is never sent them.
            ServerLine::Post { .. } | ServerLine::Enter { .. } | ServerLine::Exit { .. } | ServerLine::Room { .. } => {
                Ok(None)
            }
            ServerLine::User { .. } | ServerLine::Hello { .. } => {
                self.say(Text::IgnoredServerLine);
                Ok(None)
            }
        }
    }

    /// An `OK` or `ERR`: it answers the oldest pending command.
    fn on_reply(&mut self, tag: Option<String>, verb: &str, reply: Reply) -> Result<Option<Done>, ClientError> {
        let Some(pending) = self.pending.pop_front() else {
            return Err(self.protocol("a reply to no command"));
        };
        // A line the server could not read at all (too long, say) is
        // answered with neither tag nor verb (`ERR - ...`); whatever is
        // there must match.
        if tag.is_some_and(|tag| tag != pending.tag) {
            return Err(self.protocol("a reply with another command's tag"));
        }
        if verb != "-" && verb != pending.command.verb() {
            return Err(self.protocol("a reply for another verb"));
        }
        match pending.command {
            Sent::Register | Sent::Login => Ok(Some(Done::Account(reply))),
            Sent::Quit => Ok(Some(Done::Quit)),
            Sent::Say { text } => {
                if let Err((code, server_text)) = reply {
                    self.say(Text::SayFailed {
                        code,
                        server_text: &validate::for_display(&server_text),
                        excerpt: &display::excerpt(&text, EXCERPT),
                    });
                }
                Ok(None)
            }
            Sent::History { initial } => {
                self.show_history(initial, reply);
                Ok(initial.then_some(Done::InitialHistory))
            }
            Sent::Who => {
                let users = std::mem::take(&mut self.who_lines);
                match reply {
                    Ok(_) => {
                        self.say(Text::WhoHeader { count: users.len() });
                        for (username, full_name) in users {
                            self.console.say(&display::who_line(&username, &full_name));
                        }
                    }
                    Err((code, text)) => self.refused(code, &text),
                }
                Ok(None)
            }
        }
    }

    /// The end of a `HISTORY` reply. Its last COUNT collected lines are the
    /// body; any before them were live messages that arrived first. After
    /// login everything merges into the chat by id, each message once; an
    /// explicit `/historial` lists its whole body under a heading.
    fn show_history(&mut self, initial: bool, reply: Reply) {
        let mut lines = std::mem::take(&mut self.history_lines);
        let count = match &reply {
            Ok(fields) => fields.trim().parse::<usize>().unwrap_or(lines.len()).min(lines.len()),
            Err(_) => 0,
        };
        let body = lines.split_off(lines.len() - count);
        if initial {
            lines.extend(body);
            lines.sort_by_key(|message| message.id);
            let now = Local::now();
            let fresh: Vec<String> = lines
                .iter()
                .filter(|message| self.seen.first_time(message.id))
                .map(|message| display::message_line(message, &now))
                .collect();
            if !fresh.is_empty() {
                self.say(Text::RecentMessages);
            }
            for line in fresh {
                self.console.say(&line);
            }
        } else {
            for message in &lines {
                self.show_live(message);
            }
            if reply.is_ok() {
                if body.is_empty() {
                    self.say(Text::NoMessages);
                } else {
                    self.say(Text::HistoryHeader { count: body.len() });
                    let now = Local::now();
                    for message in &body {
                        self.seen.first_time(message.id);
                        self.console.say(&display::message_line(message, &now));
                    }
                }
            }
        }
        if let Err((code, text)) = reply {
            self.refused(code, &text);
        }
    }

    /// Shows a message of the chat unless it was already shown.
    fn show_live(&mut self, message: &ChatMessage) {
        if self.seen.first_time(message.id) {
            let line = display::message_line(message, &Local::now());
            self.console.say(&line);
        }
    }

    // ----- plumbing -----------------------------------------------------

    /// Waits for the next thing to act on.
    fn next_event(&mut self) -> Event {
        let deadline = match &self.closing {
            Some((_, _, until)) => Some(*until),
            None => self.pending.front().map(|pending| pending.sent_at + REPLY_TIMEOUT),
        };
        let timer = deadline.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        let event = select! {
            recv(self.connection.incoming()) -> incoming => Event::Server(incoming.unwrap_or(Incoming::Closed)),
            recv(self.console.input()) -> input => Event::Input(
                input.unwrap_or_else(|_| Input::Failed(std::io::Error::other("the input thread ended")))
            ),
            recv(self.console.signals()) -> _ => Event::Signal,
            recv(timer) -> _ => Event::Timeout,
        };
        if let Event::Input(_) = event {
            self.console.answered();
        }
        event
    }

    /// Sends a command with a fresh tag and queues it for its reply.
    fn send(&mut self, command: Sent, line: &str) -> Result<(), ClientError> {
        let tag = self.tags.next();
        if self.connection.send(&format!("@{tag} {line}")).is_err() {
            return Err(self.ended());
        }
        self.pending.push_back(Pending {
            tag,
            command,
            sent_at: Instant::now(),
        });
        Ok(())
    }

    /// The command the next reply will answer.
    fn front(&self) -> Option<&Sent> {
        self.pending.front().map(|pending| &pending.command)
    }

    /// Messages sent whose `OK SAY` has not come.
    fn unconfirmed(&self) -> usize {
        self.pending
            .iter()
            .filter(|pending| matches!(pending.command, Sent::Say { .. }))
            .count()
    }

    /// Why the connection is over: `BYE` if it was said, lost otherwise.
    fn ended(&mut self) -> ClientError {
        let addr = self.connection.addr().to_string();
        let unconfirmed = self.unconfirmed();
        match self.closing.take() {
            Some((code, text, _)) => ClientError::Closed {
                addr,
                code,
                text,
                unconfirmed,
            },
            None => ClientError::Lost { addr, unconfirmed },
        }
    }

    /// The timer of [`Session::next_event`] fired.
    fn timed_out(&mut self) -> ClientError {
        if self.closing.is_some() {
            return self.ended();
        }
        ClientError::NoReply {
            addr: self.connection.addr().to_string(),
            secs: REPLY_TIMEOUT.as_secs(),
            unconfirmed: self.unconfirmed(),
        }
    }

    fn protocol(&self, detail: &'static str) -> ClientError {
        ClientError::Protocol {
            addr: self.connection.addr().to_string(),
            detail,
        }
    }

    /// Prints one sentence.
    fn say(&mut self, text: Text) {
        let line = text.render(self.lang);
        self.console.say(&line);
    }

    /// Prints a refusal at its level.
    fn refused(&mut self, code: Option<ErrorCode>, server_text: &str) {
        self.say(Text::Refused {
            code,
            server_text: &validate::for_display(server_text),
        });
    }
}

/// Where the dialogue goes after one menu option.
enum Step {
    /// Logged in: on to the chat.
    LoggedIn(Account),
    /// Refused: the menu again.
    Menu,
    /// End of input: leave.
    Leave,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_valid_distinct_and_carry_the_pid() {
        let mut tags = Tags::new();
        let first = tags.next();
        let second = tags.next();
        assert_ne!(first, second);
        for tag in [&first, &second] {
            assert!(validate::is_token(tag), "{tag}");
            assert!(tag.starts_with(&format!("c{}-", std::process::id())));
        }
    }
}

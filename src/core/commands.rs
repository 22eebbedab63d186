//! The command table, and one function per command.
//!
//! Everything about a command is in its row of [`COMMANDS`]: its name (and
//! other spellings), the session state it needs, the shape of its
//! arguments, whether it may run while earlier replies are still owed, and
//! the function that runs it. Adding a command is one row and one function.
//!
//! [`execute`] runs a command in the order of checks of PROTOCOL.md 2: the
//! name (an unknown one is `bad-request` with verb `-`), the session state
//! (`not-logged-in`, `already-logged-in`), the argument shape
//! (`bad-request`), then the command's function, which checks the syntax
//! of each argument, then their values (`invalid-*`), then the rate limits,
//! then does the work. Functions answer with a [`Reply`], never bytes; a
//! front end (charla's line protocol, IRC) decides how they look.

use std::sync::Arc;

use super::code::ErrorCode;
use super::event::{Message, Target};
use super::files;
use super::journal::{self, SayOp};
use super::registry::Login;
use super::reply::{Answer, Reply, ReplyTo};
use super::rooms::{self, RoomListing, RoomRef};
use super::session::{Me, Session};
use super::validate;
use crate::store::{Account, Conversation, Destination, NewAccount, NewMessage, Parted, Place, StoredMessage, Window};

/// Largest `N` of `HISTORY N` and `SYNC AFTER N`.
pub const MAX_HISTORY: u32 = 1000;
/// `N` of a bare `HISTORY`.
pub const DEFAULT_HISTORY: u32 = 50;
/// `N` of a bare `SYNC AFTER`.
pub const DEFAULT_SYNC: u32 = 1000;
/// Most fixed words any command takes.
const MAX_WORDS: usize = 4;

/// In which session state a command may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Only before login (`already-logged-in` after).
    LoggedOut,
    /// Only after login (`not-logged-in` before).
    LoggedIn,
    /// In every state.
    Any,
}

/// How a command's arguments are laid out after its name: words separated
/// by exactly one space, each non-empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Between `min` and `max` words.
    Words {
        /// Fewest words.
        min: usize,
        /// Most words.
        max: usize,
    },
    /// Exactly `words` words, then free text to the end of the line (which
    /// must be present, and may be empty or hold any spaces).
    Text {
        /// Words before the text.
        words: usize,
    },
    /// Optional free text (`FILES [QUERY]`): nothing after the name, or
    /// any text after its space.
    OptionalText,
    /// Anything, ignored (`QUIT adiós`).
    Ignored,
}

/// A command's arguments, split by its [`Shape`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Args<'a> {
    /// The words, in order.
    words: [&'a str; MAX_WORDS],
    /// How many of `words` are there.
    count: usize,
    /// The free text, for [`Shape::Text`].
    text: Option<&'a str>,
}

impl<'a> Args<'a> {
    /// Arguments a front end parsed itself (IRC's parameters): `words`, then
    /// the free text if the command takes one.
    ///
    /// # Errors
    /// `bad-request` for more words than any command takes.
    pub fn from_parts(words: &[&'a str], text: Option<&'a str>) -> Result<Args<'a>, ErrorCode> {
        if words.len() > MAX_WORDS {
            return Err(ErrorCode::BadRequest);
        }
        let mut args = Args {
            text,
            count: words.len(),
            ..Args::default()
        };
        args.words[..words.len()].copy_from_slice(words);
        Ok(args)
    }

    /// The `i`-th word, if there is one.
    pub fn word(&self, i: usize) -> Option<&'a str> {
        self.words[..self.count].get(i).copied()
    }

    /// All the words.
    pub fn words(&self) -> &[&'a str] {
        &self.words[..self.count]
    }

    /// The free text of a [`Shape::Text`] command.
    pub fn text(&self) -> &'a str {
        self.text.unwrap_or("")
    }
}

impl Shape {
    /// Splits `rest` (everything after the single space that follows the
    /// name; `None` when the name ends the line) by this shape.
    ///
    /// # Errors
    /// `bad-request` for too few or too many words, an empty word (two
    /// spaces in a row, a trailing space), or missing free text.
    pub fn split(self, rest: Option<&str>) -> Result<Args<'_>, ErrorCode> {
        const BAD: ErrorCode = ErrorCode::BadRequest;
        let mut args = Args::default();
        match self {
            Shape::Ignored => {}
            Shape::OptionalText => args.text = rest,
            Shape::Words { min, max } => {
                if let Some(rest) = rest {
                    for word in rest.split(' ') {
                        if word.is_empty() || args.count == max.min(MAX_WORDS) {
                            return Err(BAD);
                        }
                        args.words[args.count] = word;
                        args.count += 1;
                    }
                }
                if args.count < min {
                    return Err(BAD);
                }
            }
            Shape::Text { words } => {
                let mut rest = rest.ok_or(BAD)?;
                for _ in 0..words.min(MAX_WORDS) {
                    let (word, after) = rest.split_once(' ').ok_or(BAD)?;
                    if word.is_empty() {
                        return Err(BAD);
                    }
                    args.words[args.count] = word;
                    args.count += 1;
                    rest = after;
                }
                args.text = Some(rest);
            }
        }
        Ok(args)
    }
}

/// What a command that did not fail leads to.
#[derive(Debug)]
pub enum Outcome {
    /// It succeeded: its reply, now.
    Done(Answer),
    /// The journal will queue its reply once the message is stored.
    Deferred,
    /// `QUIT`: reply, then close the connection.
    Quit,
}

/// What a command function returns: its outcome, or the error code of the
/// first check that failed (nothing was changed).
pub type Ran = Result<Outcome, ErrorCode>;

/// One row of the command table.
pub struct Command {
    /// The canonical name, used in replies (compared ignoring ASCII case).
    pub name: &'static str,
    /// Other spellings that mean the same command.
    pub also: &'static [&'static str],
    /// The session state it needs.
    pub state: State,
    /// Its arguments.
    pub shape: Shape,
    /// Whether it may run while the journal still stores this session's
    /// earlier messages: only for the messages themselves. Every other
    /// command first waits, so it sees their effect; `PING` too, so that
    /// its `OK` tells a client (and our tests) that everything it sent
    /// before is stored and delivered.
    pub pipelined: bool,
    /// The function that runs it.
    pub run: for<'s, 'c> fn(&mut Session<'c>, &ReplyTo, &Args<'s>) -> Ran,
}

/// The command table (PROTOCOL.md 4 and 9.2).
pub const COMMANDS: &[Command] = &[
    Command {
        name: "REGISTER",
        also: &[],
        state: State::LoggedOut,
        shape: Shape::Text { words: 2 },
        pipelined: false,
        run: register,
    },
    Command {
        name: "LOGIN",
        also: &[],
        state: State::LoggedOut,
        shape: Shape::Words { min: 2, max: 2 },
        pipelined: false,
        run: login,
    },
    Command {
        name: "SAY",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Text { words: 0 },
        pipelined: true,
        run: say,
    },
    Command {
        name: "SEND",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Text { words: 1 },
        pipelined: true,
        run: send,
    },
    Command {
        name: "HISTORY",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 0, max: 3 },
        pipelined: false,
        run: history,
    },
    Command {
        name: "SYNC",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 1, max: 2 },
        pipelined: false,
        run: sync,
    },
    Command {
        name: "WHO",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 0, max: 1 },
        pipelined: false,
        run: who,
    },
    Command {
        name: "JOIN",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 1, max: 1 },
        pipelined: false,
        run: join,
    },
    Command {
        name: "PART",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 1, max: 1 },
        pipelined: false,
        run: part,
    },
    Command {
        name: "ROOMS",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 0, max: 0 },
        pipelined: false,
        run: list_rooms,
    },
    Command {
        name: "SHARE",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Text { words: 2 },
        pipelined: false,
        run: share,
    },
    Command {
        name: "UNSHARE",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 1, max: 1 },
        pipelined: false,
        run: unshare,
    },
    Command {
        name: "FILES",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::OptionalText,
        pipelined: false,
        run: list_files,
    },
    Command {
        name: "FETCH",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 1, max: 2 },
        pipelined: false,
        run: fetch,
    },
    Command {
        name: "ENDPOINT",
        also: &[],
        state: State::LoggedIn,
        shape: Shape::Words { min: 1, max: 1 },
        pipelined: false,
        run: endpoint,
    },
    Command {
        name: "PING",
        also: &[],
        state: State::Any,
        shape: Shape::Words { min: 0, max: 1 },
        pipelined: false,
        run: ping,
    },
    Command {
        name: "QUIT",
        also: &["SALIR"],
        state: State::Any,
        shape: Shape::Ignored,
        pipelined: false,
        run: quit,
    },
];

/// Finds a command by any of its spellings, ignoring ASCII case.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name) || c.also.iter().any(|a| a.eq_ignore_ascii_case(name)))
}

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// The client asked to leave: close after the reply.
    Quit,
}

/// Runs command `name` with `tag` and its unsplit arguments `rest` on
/// `session`, and queues its reply (now, or when the journal has stored
/// its message).
pub fn execute(session: &mut Session<'_>, tag: Option<&str>, name: &str, rest: Option<&str>) -> Flow {
    let Some(command) = find(name) else {
        session.emit(&ReplyTo::new(tag, None), &Reply::Err(ErrorCode::BadRequest));
        return Flow::Continue;
    };
    let to = ReplyTo::new(tag, Some(command.name));
    let state_error = match (command.state, session.is_logged_in()) {
        (State::LoggedOut, true) => Some(ErrorCode::AlreadyLoggedIn),
        (State::LoggedIn, false) => Some(ErrorCode::NotLoggedIn),
        _ => None,
    };
    let args = match state_error.map_or_else(|| command.shape.split(rest), Err) {
        Ok(args) => args,
        Err(code) => {
            session.emit(&to, &Reply::Err(code));
            return Flow::Continue;
        }
    };
    if !command.pipelined {
        session.settle();
    }
    match (command.run)(session, &to, &args) {
        Ok(Outcome::Done(answer)) => session.emit(&to, &Reply::Ok(answer)),
        Ok(Outcome::Deferred) => session.owe(),
        Ok(Outcome::Quit) => {
            session.emit(&to, &Reply::Ok(Answer::Done));
            return Flow::Quit;
        }
        Err(code) => session.emit(&to, &Reply::Err(code)),
    }
    Flow::Continue
}

/// Runs command `name` with arguments a front end already split, and
/// returns its outcome instead of queuing a reply: for front ends (IRC)
/// whose answer to one of their commands is made of several core commands'
/// results, or looks nothing like a reply. The checks and their order are
/// [`execute`]'s, but for the argument shape, which the front end owns. A
/// [`Outcome::Deferred`] command's reply is still queued by the journal,
/// encoded by the session's codec with `to`.
///
/// # Errors
/// The code of the first check that failed; nothing was changed.
pub fn call(session: &mut Session<'_>, to: &ReplyTo, name: &str, args: &Args<'_>) -> Ran {
    let command = find(name).ok_or(ErrorCode::BadRequest)?;
    match (command.state, session.is_logged_in()) {
        (State::LoggedOut, true) => return Err(ErrorCode::AlreadyLoggedIn),
        (State::LoggedIn, false) => return Err(ErrorCode::NotLoggedIn),
        _ => {}
    }
    if !command.pipelined {
        session.settle();
    }
    let ran = (command.run)(session, to, args);
    if let Ok(Outcome::Deferred) = ran {
        session.owe();
    }
    ran
}

/// Answers a line that never became a command (too long, not UTF-8, a
/// malformed tag): `code` with no verb, after every earlier reply.
pub fn refuse_line(session: &mut Session<'_>, tag: Option<&str>, code: ErrorCode) {
    session.emit(&ReplyTo::new(tag, None), &Reply::Err(code));
}

/// `REGISTER USER PASSWORD FULL NAME`: validate, refuse a taken name before
/// spending bcrypt on it, hash on the pool, create through the journal,
/// log in.
fn register(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let (username, password) = (args.word(0).unwrap_or(""), args.word(1).unwrap_or(""));
    let username = validate::username(username)?;
    let password = validate::password(password)?;
    let full_name = validate::full_name(args.text())?;
    let core = session.core;
    if let Some(addr) = session.limited_address
        && !core.limits.registrations.allows(&addr)
    {
        log::warn!(
            "connection {} from {}: registrations rate-limited",
            session.id,
            session.peer
        );
        return Err(ErrorCode::RateLimited);
    }
    let existing = core
        .store
        .find_account(username)
        .map_err(|e| session.failed("registration", &e))?;
    if existing.is_some() {
        return Err(ErrorCode::UserExists);
    }
    let password_hash = core.hasher.hash(password).map_err(|e| {
        log::error!("connection {}: hashing failed: {e}", session.id);
        ErrorCode::from(&e)
    })?;
    let new = NewAccount {
        username: username.to_string(),
        full_name: full_name.to_string(),
        password_hash,
    };
    let account = core.journal.register(new).map_err(|e| {
        if let crate::store::CreateAccountError::Store(e) = &e {
            log::error!("connection {}: registration failed in storage: {e}", session.id);
        }
        ErrorCode::from(&e)
    })?;
    if let Some(addr) = session.limited_address {
        core.limits.registrations.take(&addr);
    }
    log::info!(
        "connection {} from {}: registered {}",
        session.id,
        session.peer,
        account.username
    );
    Ok(Outcome::Done(enter(session, account)?))
}

/// `LOGIN USER PASSWORD`: any failure is `bad-credentials`, after the same
/// bcrypt work whether or not the account exists.
fn login(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let (username, password) = (args.word(0).unwrap_or(""), args.word(1).unwrap_or(""));
    let core = session.core;
    // Throttles come before any work: a brute force gets its refusal
    // without costing a bcrypt run. Names are counted whether or not
    // the account exists, so the throttle does not tell which exist.
    let name_key = throttle_key(username);
    let limits = &core.limits;
    let throttled = !limits.account_failures.allows(&name_key)
        || session
            .limited_address
            .is_some_and(|addr| !limits.address_failures.allows(&addr));
    if throttled {
        log::warn!("connection {} from {}: login rate-limited", session.id, session.peer);
        return Err(ErrorCode::RateLimited);
    }
    let account = match validate::username(username) {
        Ok(name) => core.store.find_account(name).map_err(|e| session.failed("login", &e))?,
        Err(_) => None,
    };
    let hash = account.as_ref().map(|a| a.password_hash.as_str());
    let plausible = validate::could_be_password(password);
    if !core.hasher.verify(password, hash) || !plausible {
        log::info!("connection {} from {}: failed login", session.id, session.peer);
        limits.account_failures.take(&name_key);
        if let Some(addr) = session.limited_address {
            limits.address_failures.take(&addr);
        }
        return Err(ErrorCode::BadCredentials);
    }
    let Some(account) = account else {
        return Err(ErrorCode::BadCredentials);
    };
    log::info!(
        "connection {} from {}: {} logged in",
        session.id,
        session.peer,
        account.username
    );
    Ok(Outcome::Done(enter(session, account)?))
}

/// Logs `session` in as `account` and says so.
fn enter(session: &mut Session<'_>, account: Account) -> Result<Answer, ErrorCode> {
    let login = Login {
        account_id: account.id,
        username: Arc::from(account.username),
        full_name: account.full_name,
    };
    session.enter(&login)?;
    Ok(Answer::Account {
        username: login.username,
        full_name: login.full_name,
    })
}

/// The account a logged-in session acts as (the table's state check
/// guarantees there is one).
fn me<'s>(session: &'s Session<'_>) -> Result<&'s Me, ErrorCode> {
    session.me.as_ref().ok_or(ErrorCode::NotLoggedIn)
}

/// `SAY TEXT`: a message to the lobby, validated here, stored and
/// acknowledged by the journal.
fn say(session: &mut Session<'_>, to: &ReplyTo, args: &Args<'_>) -> Ran {
    let text = validate::text(args.text())?;
    take_message_token(session)?;
    submit(session, to, text, Resolved::Lobby)
}

/// `SEND TARGET TEXT`: a message to a room or an account (PROTOCOL.md 9.2).
fn send(session: &mut Session<'_>, to: &ReplyTo, args: &Args<'_>) -> Ran {
    let target = Written::parse(args.word(0).unwrap_or(""))?.checked()?;
    let text = validate::text(args.text())?;
    take_message_token(session)?;
    match resolve(session, target) {
        Ok(resolved) => submit(session, to, text, resolved),
        Err(code) => already_stored_or(session, to, code),
    }
}

/// Takes one message from the session's allowance, or `rate-limited`.
fn take_message_token(session: &mut Session<'_>) -> Result<(), ErrorCode> {
    let limits = &session.core.limits;
    if limits.msg_rate.is_enabled() && !session.messages.try_take(limits.msg_rate, limits.clock.now()) {
        return Err(ErrorCode::RateLimited);
    }
    Ok(())
}

/// A message whose target check failed with `code`: if it is tagged and
/// this account already stored a message under the tag, the original is
/// the answer, whatever the target is now (PROTOCOL.md 9.4); otherwise
/// `code`. Earlier messages still being stored are waited for first, so a
/// resend right behind its original is recognised.
fn already_stored_or(session: &mut Session<'_>, to: &ReplyTo, code: ErrorCode) -> Ran {
    let Some(tag) = &to.tag else {
        return Err(code);
    };
    session.settle();
    let account = me(session)?.account_id;
    match session.core.store.find_tag(account, tag) {
        Ok(Some((id, ts))) => Ok(Outcome::Done(Answer::Stored { id, ts, message: None })),
        Ok(None) => Err(code),
        Err(e) => Err(session.failed("tag look-up", &e)),
    }
}

/// Hands a checked message to the journal; its reply is owed from now on.
fn submit(session: &mut Session<'_>, to: &ReplyTo, text: &str, resolved: Resolved) -> Ran {
    let me = me(session)?;
    let (destination, target) = match resolved {
        Resolved::Lobby => (Destination::Lobby, Target::Lobby),
        Resolved::Room(room) => (
            Destination::Room(room.id),
            Target::Room {
                id: room.id,
                name: room.name,
            },
        ),
        Resolved::Account(account) => (
            Destination::Account(account.id),
            Target::Account {
                id: account.id,
                name: Arc::from(account.username),
            },
        ),
    };
    let op = SayOp {
        message: NewMessage {
            user_id: me.account_id,
            origin: session.id,
            body: text.to_string(),
            tag: to.tag.as_deref().map(str::to_string),
            to: destination,
        },
        author: Arc::clone(&me.username),
        target,
        connection: session.id,
        reply_to: to.clone(),
        outbox: Arc::clone(&session.outbox),
        done: session.ack_sender.clone(),
    };
    if session.core.journal.say(op) {
        Ok(Outcome::Deferred)
    } else {
        Err(ErrorCode::DbError)
    }
}

/// A target as written: `#ROOM` or `@USER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written<'a> {
    /// A room name, `#` included.
    Room(&'a str),
    /// A username, without its `@`.
    Account(&'a str),
}

impl<'a> Written<'a> {
    /// Reads a target's syntax: it starts with `#` or `@`.
    ///
    /// # Errors
    /// `bad-request` for anything else.
    pub fn parse(word: &'a str) -> Result<Written<'a>, ErrorCode> {
        if word.starts_with('#') {
            Ok(Written::Room(word))
        } else if let Some(user) = word.strip_prefix('@') {
            Ok(Written::Account(user))
        } else {
            Err(ErrorCode::BadRequest)
        }
    }

    /// Checks the target's value.
    ///
    /// # Errors
    /// `invalid-room` or `invalid-username`.
    pub fn checked(self) -> Result<Written<'a>, ErrorCode> {
        match self {
            Written::Room(name) => validate::room(name).map(Written::Room),
            Written::Account(name) => validate::username(name).map(Written::Account),
        }
    }
}

/// Where a command points, found.
enum Resolved {
    /// The lobby.
    Lobby,
    /// A room the account is in.
    Room(RoomRef),
    /// An existing account.
    Account(Account),
}

/// Finds a checked target, in the order of PROTOCOL.md 9.4: `no-such-room`,
/// then `not-member`, then `no-such-user`.
fn resolve(session: &Session<'_>, target: Written<'_>) -> Result<Resolved, ErrorCode> {
    let account = me(session)?.account_id;
    match target {
        Written::Room(name) if rooms::is_lobby(name) => Ok(Resolved::Lobby),
        Written::Room(name) => {
            let room = session.core.rooms.find(name).ok_or(ErrorCode::NoSuchRoom)?;
            if !session.core.rooms.is_member(room.id, account) {
                return Err(ErrorCode::NotMember);
            }
            Ok(Resolved::Room(room))
        }
        Written::Account(name) => session
            .core
            .store
            .find_account(name)
            .map_err(|e| session.failed("account look-up", &e))?
            .map(Resolved::Account)
            .ok_or(ErrorCode::NoSuchUser),
    }
}

/// The arguments of `HISTORY [TARGET] [N [BEFORE]]`, their syntax
/// checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryArgs<'a> {
    /// The room or conversation; `None` for the lobby (version 1).
    pub target: Option<Written<'a>>,
    /// How many messages, 1 to [`MAX_HISTORY`].
    pub limit: u32,
    /// Only messages with an id below this one.
    pub before: Option<i64>,
}

/// Reads the arguments of `HISTORY`: an optional `#ROOM` or `@USER`, then
/// version 1's numbers.
///
/// # Errors
/// `bad-request` for a first word that is neither a target nor digits, for
/// numbers that are not decimal digits with a value of 1 to
/// [`MAX_HISTORY`] and a positive id, and for too many words.
pub fn history_args<'a>(args: &Args<'a>) -> Result<HistoryArgs<'a>, ErrorCode> {
    let words = args.words();
    let (target, numbers) = match words.first() {
        Some(first) if first.starts_with(['#', '@']) => (Some(Written::parse(first)?), &words[1..]),
        _ => (None, words),
    };
    let (limit, before) = match numbers {
        [] => (DEFAULT_HISTORY, None),
        [n] => (history_limit(n)?, None),
        [n, before] => (history_limit(n)?, Some(message_id(before)?)),
        _ => return Err(ErrorCode::BadRequest),
    };
    Ok(HistoryArgs { target, limit, before })
}

/// `HISTORY [TARGET] [N [BEFORE]]`: the latest messages of the lobby, a
/// room or a conversation, oldest first.
fn history(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let request = history_args(args)?;
    let target = request.target.map(Written::checked).transpose()?;
    let conversation = match target.map(|t| resolve(session, t)).transpose()? {
        None | Some(Resolved::Lobby) => Conversation::Lobby,
        Some(Resolved::Room(room)) => Conversation::Room(room.id),
        Some(Resolved::Account(other)) => Conversation::Between(me(session)?.account_id, other.id),
    };
    let stored = session
        .core
        .store
        .history(conversation, request.limit, request.before)
        .map_err(|e| session.failed("history", &e))?;
    Ok(Outcome::Done(Answer::Messages(
        stored.into_iter().map(message).collect(),
    )))
}

/// A conversation's stored messages for front ends whose history reads are
/// richer than `HISTORY`'s (IRC's `CHATHISTORY`): up to `limit` of those in
/// `window`, oldest first, with the conversation's name as a reader sees it
/// (`#general`, the room's own case, or the other account's username).
/// `target` is written as for `HISTORY`: `#ROOM` (the lobby's `#general`
/// included) or `@USER`; its checks are `HISTORY`'s.
///
/// # Errors
/// `bad-request`, `invalid-room`, `invalid-username`, `no-such-room`,
/// `not-member`, `no-such-user`, or `db-error`.
pub fn read_history(
    session: &mut Session<'_>,
    target: &str,
    limit: u32,
    window: &Window,
) -> Result<(Arc<str>, Vec<Message>), ErrorCode> {
    let target = Written::parse(target)?.checked()?;
    session.settle();
    let (name, conversation) = match resolve(session, target)? {
        Resolved::Lobby => (Arc::from(rooms::LOBBY), Conversation::Lobby),
        Resolved::Room(room) => (room.name, Conversation::Room(room.id)),
        Resolved::Account(other) => (
            Arc::from(other.username),
            Conversation::Between(me(session)?.account_id, other.id),
        ),
    };
    let stored = session
        .core
        .store
        .history_window(conversation, limit.clamp(1, MAX_HISTORY), window)
        .map_err(|e| session.failed("history", &e))?;
    Ok((name, stored.into_iter().map(message).collect()))
}

/// Reads the arguments of `SYNC AFTER [N]`.
///
/// # Errors
/// `bad-request` unless `AFTER` is decimal digits (0 allowed) and `N` as in
/// `HISTORY`.
pub fn sync_args(args: &Args<'_>) -> Result<(i64, u32), ErrorCode> {
    let after = id_digits;
    match args.words() {
        [a] => Ok((after(a)?, DEFAULT_SYNC)),
        [a, n] => Ok((after(a)?, history_limit(n)?)),
        _ => Err(ErrorCode::BadRequest),
    }
}

/// `SYNC AFTER [N]`: everything the account may read now with an id above
/// `AFTER`, oldest first: how a client catches up after reconnecting.
fn sync(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let (after, limit) = sync_args(args)?;
    let account = me(session)?.account_id;
    let stored = session
        .core
        .store
        .sync(account, after, limit)
        .map_err(|e| session.failed("sync", &e))?;
    Ok(Outcome::Done(Answer::Messages(
        stored.into_iter().map(message).collect(),
    )))
}

/// A stored message as sessions are told of it.
fn message(m: StoredMessage) -> Message {
    let target = match m.place {
        Place::Lobby => Target::Lobby,
        Place::Room { id, name } => Target::Room {
            id,
            name: Arc::from(name),
        },
        Place::Account { id, username } => Target::Account {
            id,
            name: Arc::from(username),
        },
    };
    Message {
        id: m.id,
        ts: m.ts,
        author_id: m.user_id,
        author: Arc::from(m.username),
        text: Arc::from(m.body),
        target,
    }
}

/// `JOIN #ROOM`: become a member, creating the room if it has none.
fn join(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let name = validate::room(args.word(0).unwrap_or(""))?;
    let (account, username) = {
        let me = me(session)?;
        (me.account_id, Arc::clone(&me.username))
    };
    if rooms::is_lobby(name) {
        return Ok(Outcome::Done(Answer::Room(Arc::from(rooms::LOBBY))));
    }
    let core = session.core;
    let existing = core.rooms.find(name);
    if let Some(room) = &existing
        && core.rooms.is_member(room.id, account)
    {
        return Ok(Outcome::Done(Answer::Room(Arc::clone(&room.name))));
    }
    let limits = &core.limits;
    let most = limits.config.max_rooms_per_account;
    let creating = existing.is_none();
    if (most > 0 && core.rooms.count_of(account) >= most) || (creating && !limits.room_creations.allows(&account)) {
        return Err(ErrorCode::LimitReached);
    }
    let member = journal::Member {
        account,
        username,
        origin: session.id,
    };
    // The room's messages may be delivered before the reply is queued.
    session.hold_events_until_reply();
    let joined = core
        .journal
        .join(member, name)
        .map_err(|e| session.failed("join", &e))?;
    if joined.created {
        limits.room_creations.take(&account);
    }
    Ok(Outcome::Done(Answer::Room(Arc::from(joined.name))))
}

/// `PART #ROOM`: stop being a member; the room ends with its last member.
fn part(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let name = validate::room(args.word(0).unwrap_or(""))?;
    if rooms::is_lobby(name) {
        return Err(ErrorCode::Forbidden);
    }
    let (account, username) = {
        let me = me(session)?;
        (me.account_id, Arc::clone(&me.username))
    };
    let core = session.core;
    let room = core
        .rooms
        .find(name)
        .filter(|room| core.rooms.is_member(room.id, account))
        .ok_or(ErrorCode::NotMember)?;
    let member = journal::Member {
        account,
        username,
        origin: session.id,
    };
    match core.journal.part(member, room.clone()) {
        Ok(Parted::Left { .. }) => Ok(Outcome::Done(Answer::Room(room.name))),
        Ok(Parted::NotMember) => Err(ErrorCode::NotMember),
        Err(e) => Err(session.failed("part", &e)),
    }
}

/// `ROOMS`: every room with its member count, the lobby included.
fn list_rooms(session: &mut Session<'_>, _: &ReplyTo, _: &Args<'_>) -> Ran {
    let account = me(session)?.account_id;
    let core = session.core;
    let everyone = core.store.count_accounts().map_err(|e| session.failed("rooms", &e))?;
    let mut listing = core.rooms.listing(account);
    listing.push(RoomListing {
        name: Arc::from(rooms::LOBBY),
        members: everyone,
        member: true,
    });
    listing.sort_by_key(|room| room.name.to_ascii_lowercase());
    Ok(Outcome::Done(Answer::Rooms(listing)))
}

/// `SHARE SIZE SHA256 NAME`: offer a file from this session's machine
/// (PROTOCOL.md 11). Its tickets are sealed with the session's key.
fn share(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let core = session.core;
    let size = files::share_size(args.word(0).unwrap_or(""), core.config.files.max_file_size)?;
    let sha256 = files::sha256_hex(args.word(1).unwrap_or(""))?;
    let name = files::file_name(args.text())?;
    let (owner_id, owner) = {
        let me = me(session)?;
        (me.account_id, Arc::clone(&me.username))
    };
    let held = core
        .offers
        .count_of(session.id)
        .map_err(|e| session.failed("share", &e))?;
    if held >= files::MAX_OFFERS_PER_SESSION {
        return Err(ErrorCode::LimitReached);
    }
    let id = format!("f{}", files::random_hex(8)?);
    let key = session.ticket_key()?;
    let offer = files::Offer {
        id: id.clone(),
        size,
        sha256: sha256.to_string(),
        name: name.to_string(),
        owner_id,
        owner,
        key,
        endpoint: core.offers.endpoint_of(session.id),
        conn: session.id,
        node: core.cluster.as_ref().map(|c| c.instance.clone()),
    };
    core.offers.add(offer).map_err(|e| session.failed("share", &e))?;
    log::info!("connection {}: offers {name:?} as {id} ({size} bytes)", session.id);
    Ok(Outcome::Done(Answer::Word(id)))
}

/// The offer `id` names, or `no-such-file`.
fn live_offer(session: &Session<'_>, id: &str) -> Result<files::Offer, ErrorCode> {
    if !validate::is_token(id) {
        return Err(ErrorCode::BadRequest);
    }
    session
        .core
        .offers
        .get(id)
        .map_err(|e| session.failed("offer look-up", &e))?
        .ok_or(ErrorCode::NoSuchFile)
}

/// `UNSHARE FILEID`: withdraw an offer of this account's.
fn unshare(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let id = args.word(0).unwrap_or("");
    let offer = live_offer(session, id)?;
    if offer.owner_id != me(session)?.account_id {
        return Err(ErrorCode::Forbidden);
    }
    session
        .core
        .offers
        .remove(id)
        .map_err(|e| session.failed("unshare", &e))?;
    Ok(Outcome::Done(Answer::Word(id.to_string())))
}

/// `FILES [QUERY]`: the live offers whose name contains the query.
fn list_files(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let query = args.text().trim_matches([' ', '\t']);
    let found = session
        .core
        .offers
        .search(query, files::MAX_LISTED)
        .map_err(|e| session.failed("files", &e))?;
    Ok(Outcome::Done(Answer::Files(found)))
}

/// How a `FETCH` is to reach the offering client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `FETCH FILEID`: at its announced endpoint, or through the relay
    /// when it announced none.
    Announced,
    /// `FETCH FILEID RELAY`: through the relay whatever it announced (the
    /// fetcher could not reach the endpoint).
    Relay,
}

/// `FETCH FILEID [RELAY]`'s words: the id and the route. Any second word
/// but `RELAY` (in any case, like the verb) is a bad request, before the
/// id is looked up.
fn fetch_args<'a>(args: &Args<'a>) -> Result<(&'a str, Route), ErrorCode> {
    let route = match args.word(1) {
        None => Route::Announced,
        Some(word) if word.eq_ignore_ascii_case("RELAY") => Route::Relay,
        Some(_) => return Err(ErrorCode::BadRequest),
    };
    Ok((args.word(0).unwrap_or(""), route))
}

/// `FETCH FILEID [RELAY]`: a single-use ticket and where to use it: the
/// offering client's endpoint, or the relay (which the offering client is
/// then invited to) when it announced none or the fetcher asked for it.
fn fetch(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let (id, route) = fetch_args(args)?;
    let offer = live_offer(session, id)?;
    let fetcher = me(session)?.account_id;
    let ticket = files::mint(&offer.key, &offer.id, fetcher, journal::now_ms())?;
    let addr = match (&offer.endpoint, route) {
        (Some(endpoint), Route::Announced) => endpoint.clone(),
        (_, Route::Announced | Route::Relay) => {
            let addr = relay_address(session).ok_or_else(|| {
                log::error!("connection {}: a relayed fetch, but no relay listens", session.id);
                ErrorCode::Internal
            })?;
            if !session.core.invite_to_relay(&offer, &ticket, &addr) {
                return Err(ErrorCode::NoSuchFile);
            }
            addr
        }
    };
    Ok(Outcome::Done(Answer::Fetch {
        id: offer.id,
        ticket,
        addr,
    }))
}

/// Where this session's client reaches the relay: as announced by the
/// operator, else the relay's own address, with the address the client
/// reached this server at when the relay listens on every address.
fn relay_address(session: &Session<'_>) -> Option<String> {
    let files = &session.core.config.files;
    if let Some(announce) = &files.relay_announce {
        return Some(announce.clone());
    }
    let relay = files.relay?;
    if !relay.ip().is_unspecified() {
        return Some(relay.to_string());
    }
    let ip = session.local.map_or(relay.ip(), |local| local.ip());
    Some(std::net::SocketAddr::new(ip, relay.port()).to_string())
}

/// `ENDPOINT HOST:PORT` or `ENDPOINT NONE`: where this session's client
/// serves its offers (`NONE`: it does not; fetches go through the relay).
/// An endpoint is answered with the session's ticket key, which the client
/// needs to check the tickets fetchers bring it.
fn endpoint(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let word = args.word(0).unwrap_or("");
    let announced = if word.eq_ignore_ascii_case("NONE") {
        None
    } else {
        Some(files::endpoint(word)?)
    };
    session
        .core
        .offers
        .set_endpoint(session.id, announced)
        .map_err(|e| session.failed("endpoint", &e))?;
    Ok(Outcome::Done(match announced {
        Some(addr) => Answer::Endpoint {
            addr: addr.to_string(),
            key: session.ticket_key()?,
        },
        None => Answer::Word("NONE".to_string()),
    }))
}

/// `WHO [#ROOM]`: the accounts online, or a room's members online.
fn who(session: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    let core = session.core;
    let Some(word) = args.word(0) else {
        let online = core.presence.who(None).map_err(|e| session.failed("who", &e))?;
        return Ok(Outcome::Done(Answer::People(online)));
    };
    // Anything but a room is version 1's extra argument.
    if !word.starts_with('#') {
        return Err(ErrorCode::BadRequest);
    }
    let name = validate::room(word)?;
    match resolve(session, Written::Room(name))? {
        Resolved::Room(room) => {
            let members = core.rooms.members(room.id);
            let online = core
                .presence
                .who(Some(&members))
                .map_err(|e| session.failed("who", &e))?;
            Ok(Outcome::Done(Answer::People(online)))
        }
        _ => {
            let online = core.presence.who(None).map_err(|e| session.failed("who", &e))?;
            Ok(Outcome::Done(Answer::People(online)))
        }
    }
}

/// `PING [TOKEN]`.
fn ping(_: &mut Session<'_>, _: &ReplyTo, args: &Args<'_>) -> Ran {
    match args.word(0) {
        None => Ok(Outcome::Done(Answer::Pong(None))),
        Some(token) if validate::is_token(token) => Ok(Outcome::Done(Answer::Pong(Some(token.to_string())))),
        Some(_) => Err(ErrorCode::BadRequest),
    }
}

/// `QUIT` / `SALIR`.
fn quit(_: &mut Session<'_>, _: &ReplyTo, _: &Args<'_>) -> Ran {
    Ok(Outcome::Quit)
}

/// Decimal digits with a value of 1 to [`MAX_HISTORY`].
fn history_limit(word: &str) -> Result<u32, ErrorCode> {
    match digits(word)? {
        n @ 1..=1000 => Ok(n as u32),
        _ => Err(ErrorCode::BadRequest),
    }
}

/// A positive message id in decimal digits, of any length: one past every
/// id this server can store stands for "no limit".
fn message_id(word: &str) -> Result<i64, ErrorCode> {
    match id_digits(word)? {
        0 => Err(ErrorCode::BadRequest),
        n => Ok(n),
    }
}

/// Decimal digits of any length as an id bound, the largest values held
/// at `i64::MAX` (PROTOCOL.md: `AFTER` and `BEFORE` are decimal digits;
/// no stored id comes near the limit).
fn id_digits(word: &str) -> Result<i64, ErrorCode> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorCode::BadRequest);
    }
    Ok(word.parse::<i64>().unwrap_or(i64::MAX))
}

/// Plain decimal digits (no sign, no spaces) that fit a `u64`.
pub fn digits(word: &str) -> Result<u64, ErrorCode> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorCode::BadRequest);
    }
    word.parse().map_err(|_| ErrorCode::BadRequest)
}

/// The key a login name is throttled under: lower case (LOGIN ignores case)
/// and cut to a bounded length, so any string a client sends maps to a
/// small key.
fn throttle_key(username: &str) -> String {
    username
        .chars()
        .take(validate::MAX_USERNAME + 1)
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str, rest: Option<&str>) -> Result<Vec<String>, ErrorCode> {
        let command = find(name).expect("a known command");
        let args = command.shape.split(rest)?;
        let mut out: Vec<String> = args.words().iter().map(|w| w.to_string()).collect();
        if let Some(text) = args.text {
            out.push(format!("text:{text}"));
        }
        Ok(out)
    }

    #[test]
    fn names_are_found_in_any_case_and_by_every_spelling() {
        assert_eq!(find("say").map(|c| c.name), Some("SAY"));
        assert_eq!(find("Salir").map(|c| c.name), Some("QUIT"));
        assert!(find("FROB").is_none());
        assert!(find("").is_none());
    }

    #[test]
    fn register_takes_two_words_and_free_text() {
        assert_eq!(
            split("REGISTER", Some("ana s3cret-pass Ana María Ríos")),
            Ok(vec!["ana".into(), "s3cret-pass".into(), "text:Ana María Ríos".into()])
        );
        assert_eq!(split("REGISTER", Some("ana pass")), Err(ErrorCode::BadRequest));
        assert_eq!(split("REGISTER", Some("ana  pass Ana")), Err(ErrorCode::BadRequest));
        assert_eq!(split("REGISTER", None), Err(ErrorCode::BadRequest));
        assert_eq!(
            split("REGISTER", Some("ana pass ")),
            Ok(vec!["ana".into(), "pass".into(), "text:".into()])
        );
    }

    #[test]
    fn login_takes_exactly_two() {
        assert!(split("LOGIN", Some("ana x")).is_ok());
        for bad in [None, Some("ana"), Some("ana x y"), Some("ana  x"), Some("ana x ")] {
            assert_eq!(split("LOGIN", bad), Err(ErrorCode::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn say_needs_its_text_but_not_a_nonempty_one() {
        assert_eq!(split("SAY", None), Err(ErrorCode::BadRequest));
        assert_eq!(split("SAY", Some("")), Ok(vec!["text:".into()]));
        assert_eq!(split("SAY", Some(" two")), Ok(vec!["text: two".into()]));
    }

    #[test]
    fn history_numbers_and_targets() {
        let args =
            |rest| history_args(&find("HISTORY").unwrap().shape.split(rest)?).map(|a| (a.target, a.limit, a.before));
        assert_eq!(args(None), Ok((None, 50, None)));
        assert_eq!(args(Some("007 12")), Ok((None, 7, Some(12))));
        assert_eq!(args(Some("1000")), Ok((None, 1000, None)));
        assert_eq!(args(Some("#sala")), Ok((Some(Written::Room("#sala")), 50, None)));
        assert_eq!(args(Some("@ana 5 9")), Ok((Some(Written::Account("ana")), 5, Some(9))));
        // Syntax before values: a bad number wins over a bad room name.
        assert_eq!(args(Some("#bad!name 0")), Err(ErrorCode::BadRequest));
        for bad in ["0", "1001", "-1", "+5", "5 0", "x", "5 6 7", "", "sala 5", "#a 5 6 7"] {
            assert_eq!(args(Some(bad)), Err(ErrorCode::BadRequest), "{bad}");
        }
    }

    #[test]
    fn sync_takes_an_id_and_a_count() {
        let args = |rest| sync_args(&find("SYNC").unwrap().shape.split(rest)?);
        assert_eq!(args(Some("0")), Ok((0, 1000)));
        assert_eq!(args(Some("41 7")), Ok((41, 7)));
        // Digits of any length: past every id there is.
        assert_eq!(args(Some("99999999999999999999")), Ok((i64::MAX, 1000)));
        for bad in [None, Some("x"), Some("-1"), Some("1 0"), Some("1 1001"), Some("1 2 3")] {
            assert_eq!(args(bad), Err(ErrorCode::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn fetch_takes_an_id_and_perhaps_relay() {
        let args = |rest| fetch_args(&find("FETCH").unwrap().shape.split(rest)?);
        assert_eq!(args(Some("f1")), Ok(("f1", Route::Announced)));
        assert_eq!(args(Some("f1 RELAY")), Ok(("f1", Route::Relay)));
        assert_eq!(args(Some("f1 relay")), Ok(("f1", Route::Relay)));
        for bad in [
            None,
            Some("f1 NONSENSE"),
            Some("f1 RELAY x"),
            Some("f1  RELAY"),
            Some("f1 "),
        ] {
            assert_eq!(args(bad), Err(ErrorCode::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn targets_are_read_then_checked() {
        assert_eq!(Written::parse("sala"), Err(ErrorCode::BadRequest));
        assert_eq!(
            Written::parse("#x!").and_then(Written::checked),
            Err(ErrorCode::InvalidRoom)
        );
        assert_eq!(
            Written::parse("@a b").and_then(Written::checked),
            Err(ErrorCode::InvalidUsername)
        );
        assert_eq!(
            Written::parse("@").and_then(Written::checked),
            Err(ErrorCode::InvalidUsername)
        );
        assert_eq!(
            Written::parse("@Ana").and_then(Written::checked),
            Ok(Written::Account("Ana"))
        );
    }

    #[test]
    fn who_ping_and_quit_shapes() {
        assert!(split("WHO", None).is_ok());
        assert!(split("WHO", Some("#sala")).is_ok());
        assert_eq!(split("WHO", Some("#a #b")), Err(ErrorCode::BadRequest));
        assert!(split("PING", Some("abc-1")).is_ok());
        assert_eq!(split("PING", Some("a b")), Err(ErrorCode::BadRequest));
        assert_eq!(split("QUIT", Some("adiós a todos")), Ok(vec![]));
    }

    #[test]
    fn the_table_names_each_command_once() {
        let mut names: Vec<&str> = COMMANDS
            .iter()
            .flat_map(|c| std::iter::once(c.name).chain(c.also.iter().copied()))
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
        assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_uppercase())));
    }
}

#[cfg(test)]
mod session_tests {
    //! Commands run on a real core (temporary database, journal, fan-out)
    //! with connections over memory: no sockets.

    use std::time::Duration;

    use super::*;
    use crate::core::testkit::{TestCodec, TestConn, TestCore, peer};

    const ROOM: usize = 1 << 16;

    fn run(session: &mut Session<'_>, line: &str) -> Flow {
        let (tag, line) = match line.strip_prefix('@') {
            Some(tagged) => {
                let (tag, rest) = tagged.split_once(' ').unwrap();
                (Some(tag), rest)
            }
            None => (None, line),
        };
        let (name, rest) = match line.split_once(' ') {
            Some((name, rest)) => (name, Some(rest)),
            None => (line, None),
        };
        execute(session, tag, name, rest)
    }

    #[test]
    fn the_example_session_without_a_socket() {
        let test = TestCore::start(|_| {});
        let codec = TestCodec::new(1);
        let ana_conn = TestConn::new(1, codec.clone(), ROOM, 1 << 20);
        let mut ana = Session::new(&test.core, 1, peer(), None, ana_conn.outbox.clone());
        run(&mut ana, "REGISTER ana s3cret-pass Ana María Ríos");
        assert_eq!(ana_conn.lines(1), ["OK REGISTER ana"]);
        let bea_conn = TestConn::new(2, codec, ROOM, 1 << 20);
        let mut bea = Session::new(&test.core, 2, peer(), None, bea_conn.outbox.clone());
        run(&mut bea, "REGISTER bea s3cret-pass Bea");
        assert_eq!(bea_conn.lines(1), ["OK REGISTER bea"]);
        assert_eq!(ana_conn.lines(1), ["JOIN bea"]);
        run(&mut ana, "@m1 SAY hola a todos");
        run(&mut ana, "HISTORY 2");
        assert_eq!(ana_conn.lines(2), ["@m1 OK SAY 1", "OK HISTORY hola a todos"]);
        assert_eq!(bea_conn.lines(1), ["MSG 1 ana hola a todos"]);
        run(&mut bea, "WHO");
        run(&mut bea, "@p PING tok");
        run(&mut bea, "LOGIN ana x");
        assert_eq!(
            bea_conn.lines(3),
            ["OK WHO ana,bea", "@p OK PING tok", "ERR LOGIN already-logged-in"]
        );
        assert_eq!(run(&mut bea, "salir"), Flow::Quit);
        assert_eq!(bea_conn.lines(1), ["OK QUIT"]);
        bea.close();
        assert_eq!(ana_conn.lines(1), ["LEAVE bea"]);
        ana.close();
    }

    #[test]
    fn states_names_and_shapes_are_checked_in_order() {
        let test = TestCore::start(|_| {});
        let conn = TestConn::new(1, TestCodec::new(1), ROOM, 1 << 20);
        let mut session = Session::new(&test.core, 1, peer(), None, conn.outbox.clone());
        run(&mut session, "@a SAY hola");
        run(&mut session, "@b FROB");
        run(&mut session, "LOGIN ana");
        run(&mut session, "LOGIN nadie secreto123");
        run(&mut session, "PING a.b");
        assert_eq!(
            conn.lines(5),
            [
                "@a ERR SAY not-logged-in",
                "@b ERR - bad-request",
                "ERR LOGIN bad-request",
                "ERR LOGIN bad-credentials",
                "ERR PING bad-request"
            ]
        );
        session.close();
    }

    #[test]
    fn refusals_wait_for_the_replies_the_journal_owes() {
        let test = TestCore::start(|config| {
            config.limits.msg_rate = 1.0;
            config.limits.msg_burst = 3;
        });
        let conn = TestConn::new(1, TestCodec::new(1), ROOM, 1 << 20);
        let mut session = Session::new(&test.core, 1, peer(), None, conn.outbox.clone());
        run(&mut session, "REGISTER ana secreto123 Ana");
        let lines = [
            "@a SAY uno",
            "@b SAY \u{1b}[1m",
            "@c SAY dos",
            "@d SAY",
            "@e SAY tres",
            "@f SAY cuatro",
        ];
        for line in lines {
            run(&mut session, line);
        }
        assert_eq!(
            conn.lines(7),
            [
                "OK REGISTER ana",
                "@a OK SAY 1",
                "@b ERR SAY invalid-text",
                "@c OK SAY 2",
                "@d ERR SAY bad-request",
                "@e OK SAY 3",
                "@f ERR SAY rate-limited"
            ]
        );
        // The allowance refills with the (injected) clock.
        test.clock.advance(Duration::from_secs(1));
        run(&mut session, "@g SAY cinco");
        assert_eq!(conn.lines(1), ["@g OK SAY 4"]);
        session.close();
    }
}

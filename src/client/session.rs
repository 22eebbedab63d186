//! One session with the server, on the main thread: the lab's menu (log in
//! or register), then the chat until `salir`.
//!
//! The session owns the protocol state of the client: the queue of commands
//! sent and not yet answered (replies come back in order, and each carries
//! the `@TAG` of its command, so the front of the queue is always the command
//! a reply answers), the lines of a multi-line reply being collected, the
//! ids of the messages already shown, and the rooms the account is in with
//! the current one ([`Rooms`]). It waits on three channels at once:
//! server lines, typed lines and signals. It never reads the socket or the
//! keyboard itself, and it prints only through the [`Console`].
//!
//! Plain lines go to the current room: `SAY` for the lobby (so a version 1
//! server still understands them), `SEND #sala` elsewhere. After login the
//! client asks `ROOMS`; a version 1 server answers `ERR - bad-request`, and
//! the room commands then say the server has no rooms instead of sending
//! anything.
//!
//! # Failover (PROTOCOL.md 10.3)
//!
//! Once logged in, losing the server does not end the chat: the connection
//! ending without `BYE`, a command left unanswered for [`REPLY_TIMEOUT`],
//! and `BYE shutting-down` (a node of a cluster stopping; a single server
//! restarting) all start a failover. Other `BYE`s (`slow-consumer`, ...)
//! end the chat as before: the server chose to drop this client, and
//! coming straight back would not help. During a failover ([`Link`]):
//!
//! 1. the person is told; every command sent and not answered goes back,
//!    in order and with its tag, to the queue of commands to send, where
//!    lines typed meanwhile join it (typing goes on);
//! 2. the [`failover`] thread tries the addresses in turn with backoff,
//!    for up to `--reconnect-for` seconds from the loss;
//! 3. the client logs in again with the credentials it used (kept in
//!    memory only), says it is back, and resends the queue with the same
//!    tags: the server's idempotency (5.3) stores each message once; then
//!    it catches up with `SYNC` from the highest id it had received, held
//!    live lines merged after it, each message shown once, in id order
//!    ([`Progress`]). The `SYNC` goes after the resent messages, whose
//!    `OK`s mark their ids as this client's own, and before a resent
//!    `QUIT`. Nothing is rejoined: membership lives on the server. The
//!    current room stays.
//!
//! Offers end with their session on the server, so after a failover the
//! client shares again every file it was sharing (unchanged on disk; the
//! others are dropped, and the person told), under new ids, and announces
//! its endpoint again (a new session has a new ticket key). The person is
//! told each new id.
//!
//! # Files (PROTOCOL.md 11)
//!
//! `/compartir` hashes the file on a thread ([`share`]), then opens the
//! endpoint (the first time: `ENDPOINT HOST:PORT`) and sends `SHARE`.
//! `/archivos` sends `FILES`; its `FILE` lines come before `OK FILES n`
//! and are also remembered, as the server's word on each offer's size and
//! SHA-256. `/descargar` looks the id up there (sending `FILES` first when
//! it is not), settles the target (asking before replacing a file, on a
//! terminal only), sends `FETCH`, and hands the ticket to a download
//! thread ([`download`]). Transfers report on channels the main thread
//! waits on with everything else. A download that cannot reach the
//! owner's endpoint at all is asked for again through the relay (`FETCH
//! FILEID RELAY`, docs/PROTOCOL.md 11.4), once, and the person is told;
//! if the relay is where it already failed, or the relayed attempt fails
//! too, the failure is reported as any other.
//!
//! `salir` during a failover leaves at once when nothing typed would be
//! lost; otherwise the client first tries to deliver it. When the time is
//! up the chat ends with the connection level's exit status.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Local;
use crossbeam_channel::{Receiver, Sender, select};

use super::bar::TransferBar;
use super::connection::{Connection, Incoming, TlsConfig};
use super::console::{Ask, Console, Input, StatusRows};
use super::display::{self, Post, SeenIds};
use super::download::{self, DownloadError, Job, Report, TargetError};
use super::failover::{self, Attempt, Backoff, Progress, SYNC_PAGE};
use super::i18n::{FetchFailure, FileText, Interruption, Lang, ShareFailure, Text};
use super::rooms::Rooms;
use super::share::{self, LocalOffer, Notice, ShareAddr, ShareError, Shelf, Uploads};
use super::typed::{DEFAULT_HISTORY, Target, Typed};
use super::{ClientError, Options};
use crate::core::code::ErrorCode;
use crate::core::rooms::{LOBBY, is_lobby};
use crate::core::validate;
use crate::proto::charla::ServerLine;

/// How long a command may wait for its reply before the server counts as
/// gone. Generous: bcrypt on a busy server takes a while.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// After `BYE`, how long to keep reading: a stopping server still sends the
/// `OK SAY` of messages it had already read (PROTOCOL.md 5.6), then closes.
const BYE_GRACE: Duration = Duration::from_secs(3);

/// How many characters of a refused message are quoted in the error.
const EXCERPT: usize = 40;

/// How long after its deadline the reconnect thread is waited for before
/// the chat gives up without its report.
const REPORT_SLACK: Duration = Duration::from_secs(2);

/// Offers remembered from `FILES` listings, at most; past it the oldest
/// knowledge is dropped (a `FILES` brings it back).
const LISTED_KEPT: usize = 10_000;

/// Milliseconds since the Unix epoch by this machine's clock (0 if the
/// clock is before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the whole session on an open connection to `options.servers[server]`:
/// menu, then chat.
///
/// # Errors
/// Every way a session can end other than the user leaving: see
/// [`ClientError`].
pub fn run(console: &mut Console, connection: Connection, server: usize, options: &Options) -> Result<(), ClientError> {
    let mut session = Session::new(console, connection, server, options);
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

/// What the session logged in with, kept in memory (never on disk) to log
/// in again after a failover.
struct Credentials {
    /// The username as registered.
    username: String,
    /// The password as typed.
    password: String,
}

/// A command sent and not yet answered, or waiting to be sent while the
/// client reconnects.
struct Pending {
    /// Its `@TAG`; the reply carries it back, and a resend keeps it.
    tag: String,
    /// What it was.
    command: Sent,
    /// The command line, without its tag, as it is (re)sent.
    line: String,
    /// When it was last sent, for [`REPLY_TIMEOUT`].
    sent_at: Instant,
}

/// The commands the client sends, with what it needs to handle the reply.
enum Sent {
    /// `REGISTER`: the dialogue waits for it.
    Register,
    /// `LOGIN`: the dialogue waits for it.
    Login,
    /// `SAY` (to the lobby) or `SEND` (to a room or a person), with the
    /// text to name it if it fails.
    Message {
        /// `#ROOM` or `@USER` for `SEND`; `None` for `SAY`.
        to: Option<String>,
        /// The text as sent.
        text: String,
    },
    /// `HISTORY`; the one right after login merges into the chat, an
    /// explicit `/historial` is shown as a listing.
    History {
        /// Whether this is the history sent right after login.
        initial: bool,
    },
    /// `WHO` or `WHO #ROOM`.
    Who {
        /// The room asked about; `None` for the lobby (everyone online).
        room: Option<String>,
    },
    /// `ROOMS`; the one right after login tells the account's rooms (or
    /// that the server has none), an explicit `/rooms` lists them all.
    Rooms {
        /// Whether this is the listing sent right after login.
        initial: bool,
    },
    /// `JOIN #ROOM`: the room becomes the current one at its `OK`.
    Join,
    /// `PART #ROOM`.
    Part,
    /// `QUIT`: the session ends at its `OK QUIT`.
    Quit,
    /// `LOGIN` again after a failover.
    Relogin,
    /// The catch-up after a failover: `SYNC AFTER N` (`paged`), or a
    /// version 1 server's `HISTORY N`.
    CatchUp {
        /// Whether this is `SYNC`, which pages.
        paged: bool,
    },
    /// `ENDPOINT HOST:PORT`: its `OK` brings the session's ticket key.
    Endpoint,
    /// `SHARE SIZE SHA256 NAME`.
    Share {
        /// The file offered.
        offer: LocalOffer,
        /// The id it had in the session before a failover, if any.
        replaces: Option<String>,
    },
    /// `UNSHARE FILEID`.
    Unshare {
        /// The offer.
        id: String,
    },
    /// `FILES [QUERY]`: a listing, or the look-up before a download.
    Files {
        /// The text searched for (may be empty).
        query: String,
        /// The download that waits for the listing, if any.
        then: Option<Wanted>,
    },
    /// `FETCH FILEID`, or `FETCH FILEID RELAY` after the owner's endpoint
    /// could not be reached: its `OK` starts the download.
    Fetch {
        /// The offer, as the server lists it.
        offer: Listed,
        /// Where it goes.
        target: PathBuf,
        /// Whether the person agreed to replace the target.
        overwrite: bool,
        /// For `FETCH FILEID RELAY`: how the direct attempt failed, which
        /// is what the person is told if the relay gets no chance.
        unreached: Option<DownloadError>,
    },
}

/// An offer as the server's `FILES` lists it: the word that counts on its
/// size and SHA-256.
#[derive(Clone, Debug)]
struct Listed {
    /// Its id.
    id: String,
    /// Its size.
    size: u64,
    /// Its SHA-256.
    sha256: String,
    /// The offering username.
    owner: String,
    /// Its name.
    name: String,
}

/// A download whose thread has not reported yet: what trying it again
/// through the relay needs.
#[derive(Debug)]
struct Underway {
    /// The offer, as the server lists it.
    offer: Listed,
    /// Where it goes.
    target: PathBuf,
    /// Whether the person agreed to replace the target.
    overwrite: bool,
    /// Whether this is already the attempt through the relay.
    relayed: bool,
}

/// A `/descargar` waiting for a `FILES` listing to know the offer.
#[derive(Clone, Debug)]
struct Wanted {
    /// The id typed.
    id: String,
    /// The path typed, if any.
    path: Option<String>,
}

/// Whether this client serves its offers itself.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// Not yet: it opens when the first file is shared.
    Unopened,
    /// Listening, announced as this `HOST:PORT`.
    Open(String),
    /// None: offers go through the relay.
    Relayed,
}

/// What the session knows and holds for sharing files.
struct Files {
    /// The offers this client made.
    shelf: Shelf,
    /// The endpoint serving them.
    uploads: Arc<Uploads>,
    /// What the hashing and upload threads report.
    notices: Receiver<Notice>,
    /// Where hashing threads report.
    notify: Sender<Notice>,
    /// What download threads report.
    reports: Receiver<Report>,
    /// Where download threads report.
    report: Sender<Report>,
    /// `--share-addr`.
    share_addr: ShareAddr,
    /// `--share-announce`.
    announce: Option<String>,
    /// The endpoint's state.
    endpoint: Endpoint,
    /// Offers from the `FILES` listings seen, by id.
    listed: HashMap<String, Listed>,
    /// `FILE` lines of the `FILES` being answered.
    lines: Vec<Listed>,
    /// A download waiting for the person to say whether to replace its
    /// target.
    question: Option<(Listed, PathBuf)>,
    /// Downloads whose threads have not reported yet, by number.
    underway: HashMap<u64, Underway>,
    /// The number of the last download started.
    started: u64,
    /// The address this client reaches the server from.
    local_ip: Option<IpAddr>,
    /// Where progress bars are drawn (on a terminal only).
    rows: Option<StatusRows>,
}

impl Sent {
    /// The verb its reply names (PROTOCOL.md 2).
    fn verb(&self) -> &'static str {
        match self {
            Sent::Register => "REGISTER",
            Sent::Login => "LOGIN",
            Sent::Message { to: None, .. } => "SAY",
            Sent::Message { to: Some(_), .. } => "SEND",
            Sent::History { .. } => "HISTORY",
            Sent::Who { .. } => "WHO",
            Sent::Rooms { .. } => "ROOMS",
            Sent::Join => "JOIN",
            Sent::Part => "PART",
            Sent::Quit => "QUIT",
            Sent::Relogin => "LOGIN",
            Sent::CatchUp { paged: true } => "SYNC",
            Sent::CatchUp { paged: false } => "HISTORY",
            Sent::Endpoint => "ENDPOINT",
            Sent::Share { .. } => "SHARE",
            Sent::Unshare { .. } => "UNSHARE",
            Sent::Files { .. } => "FILES",
            Sent::Fetch { .. } => "FETCH",
        }
    }

    /// Whether the next typed line waits for this command's reply: a
    /// listing is not mixed with what the next line prints, and a change of
    /// room is in force before the next message is sent.
    fn holds_input(&self) -> bool {
        matches!(
            self,
            Sent::History { .. } | Sent::Who { .. } | Sent::Rooms { .. } | Sent::Join | Sent::Part | Sent::Files { .. }
        )
    }
}

/// A final reply: `OK` with its fields, or `ERR` with its code and text.
type Reply = Result<String, (Option<ErrorCode>, String)>;

/// A reply the flow waits for, handed back from [`Session::on_incoming`].
enum Done {
    /// The reply to `LOGIN` or `REGISTER`.
    Account(Reply),
    /// The history and the rooms sent after login have been shown.
    Ready,
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
    /// A reply, the close after `BYE`, or reconnecting took too long.
    Timeout,
    /// The reconnect thread's report.
    Reconnected(Attempt),
    /// A hashing or upload thread's report.
    Shared(Notice),
    /// A download thread's report.
    Fetched(Report),
}

/// The state of the link to the server.
enum Link {
    /// Connected (and, in the chat, logged in): commands are sent at once.
    Up,
    /// Lost; the reconnect thread is at work. Commands wait.
    Down {
        /// When the client gives up.
        until: Instant,
        /// The thread's report.
        attempt: Receiver<Attempt>,
    },
    /// Connected again, `LOGIN` sent; commands wait for its `OK`.
    Relogging {
        /// When the client gives up.
        until: Instant,
    },
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
    /// The server; `None` while reconnecting.
    connection: Option<Connection>,
    /// Every address given, in the order they are tried.
    servers: Vec<String>,
    /// The TLS settings of every (re)connection; `None` for plain text.
    tls: Option<TlsConfig>,
    /// The index in `servers` of the one connected to (or last lost).
    server: usize,
    /// How long a chat that lost its server keeps trying to reconnect.
    reconnect_for: Duration,
    /// Whether commands can be sent now, or wait for a reconnection.
    link: Link,
    /// Set at login, for logging in again after a failover.
    credentials: Option<Credentials>,
    /// The pauses before reconnecting after a refused `LOGIN`, so a
    /// throttled or failing server is not hammered.
    relogin_backoff: Backoff,
    /// The language of every sentence.
    lang: Lang,
    /// Makes the tags of the commands.
    tags: Tags,
    /// Commands sent and not yet answered, oldest first.
    pending: VecDeque<Pending>,
    /// Commands to send once logged in again, oldest first: those that
    /// were unanswered when the connection was lost, then those typed
    /// meanwhile.
    unsent: VecDeque<Pending>,
    /// Where the client is in the sequence of message ids, for a catch-up.
    progress: Progress,
    /// `MSG` and `POST` lines received while a `HISTORY` or `SYNC` is the
    /// oldest pending command: its body, possibly preceded by live messages
    /// (the two look alike).
    history_lines: Vec<Post>,
    /// `USER` lines of the `WHO` being answered: (username, full name).
    who_lines: Vec<(String, String)>,
    /// `ROOM` lines of the `ROOMS` being answered: (name, members, member).
    room_lines: Vec<(String, u64, bool)>,
    /// Messages already shown, and this session's own messages (the server
    /// never sends a sender its own message, but a catch-up would).
    seen: SeenIds,
    /// The username logged in as (empty before), to tell this account's
    /// own messages and membership changes from others'.
    username: String,
    /// The account's rooms and the current one.
    rooms: Rooms,
    /// False once the server answered `ROOMS` as a version 1 server does.
    has_rooms: bool,
    /// Set by `BYE`: its code and text, and how long to wait for the close.
    closing: Option<(Option<ErrorCode>, String, Instant)>,
    /// Sharing files.
    files: Files,
}

impl<'c> Session<'c> {
    fn new(console: &'c mut Console, connection: Connection, server: usize, options: &Options) -> Session<'c> {
        let (notify, notices) = crossbeam_channel::unbounded();
        let (report, reports) = crossbeam_channel::unbounded();
        let shelf = Shelf::default();
        let files = Files {
            uploads: Uploads::new(shelf.clone(), notify.clone()),
            shelf,
            notices,
            notify,
            reports,
            report,
            share_addr: options.share_addr,
            announce: options.share_announce.clone(),
            endpoint: Endpoint::Unopened,
            listed: HashMap::new(),
            lines: Vec::new(),
            question: None,
            underway: HashMap::new(),
            started: 0,
            local_ip: connection.local_addr().map(|addr| addr.ip()),
            rows: console.status_rows(),
        };
        Session {
            files,
            console,
            connection: Some(connection),
            servers: options.servers.clone(),
            tls: options.tls.clone(),
            server,
            reconnect_for: options.reconnect_for,
            link: Link::Up,
            credentials: None,
            relogin_backoff: Backoff::default(),
            lang: options.lang,
            tags: Tags::new(),
            pending: VecDeque::new(),
            unsent: VecDeque::new(),
            progress: Progress::new(now_ms()),
            history_lines: Vec::new(),
            who_lines: Vec::new(),
            room_lines: Vec::new(),
            seen: SeenIds::default(),
            username: String::new(),
            rooms: Rooms::new(),
            has_rooms: true,
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
        let step = self.enter(reply, |full_name| Text::Welcome { full_name })?;
        self.remember(&step, password);
        Ok(step)
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
        let step = self.enter(reply, |full_name| Text::Registered { full_name })?;
        self.remember(&step, password);
        Ok(step)
    }

    /// Keeps what a successful login used, to log in again after a failover.
    fn remember(&mut self, step: &Step, password: String) {
        if let Step::LoggedIn(account) = step {
            self.credentials = Some(Credentials {
                username: account.username.clone(),
                password,
            });
        }
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
                // Only a chat reconnects.
                Event::Reconnected(_) => {}
                Event::Shared(notice) => self.on_notice(notice)?,
                Event::Fetched(report) => self.on_report(report)?,
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
                Event::Reconnected(_) => {}
                Event::Shared(notice) => self.on_notice(notice)?,
                Event::Fetched(report) => self.on_report(report)?,
            }
        }
    }

    // ----- the chat -----------------------------------------------------

    /// The chat: the latest messages and the account's rooms, then every
    /// typed line, until `salir` (or the end of input) and the server's
    /// `OK QUIT`.
    ///
    /// Messages are pipelined (the next line is read at once), but after a
    /// listing (`/who`, `/historial`, `/rooms`) or a change of room
    /// (`/join`, `/part`) the next line is read only once its reply is in
    /// ([`Sent::holds_input`]); the same holds for what is shown after
    /// login.
    fn chat(&mut self, account: &Account) -> Result<(), ClientError> {
        self.username = account.username.clone();
        self.progress = Progress::new(now_ms());
        let mut leaving = false;
        // Both are queued even if the first write fails: a failover sends
        // them again.
        let history = self.send(Sent::History { initial: true }, &format!("HISTORY {DEFAULT_HISTORY}"));
        let rooms = self.send(Sent::Rooms { initial: true }, "ROOMS");
        if let Err(error) = history.and(rooms) {
            self.fail_over(error)?;
        }
        loop {
            if leaving && !matches!(self.link, Link::Up) && self.unconfirmed() == 0 {
                // Nothing typed would be lost: no need to wait for a server.
                self.farewell(account);
                return Ok(());
            }
            if !leaving && !self.input_held() {
                let room = self.rooms.current().to_string();
                self.console.ask(Ask::Chat, &room);
            }
            let event = self.next_event();
            match self.on_chat_event(event, &mut leaving) {
                Ok(false) => {}
                Ok(true) => {
                    self.farewell(account);
                    return Ok(());
                }
                Err(error) => self.fail_over(error)?,
            }
        }
    }

    /// Acts on one event of the chat; true at `OK QUIT`.
    fn on_chat_event(&mut self, event: Event, leaving: &mut bool) -> Result<bool, ClientError> {
        match event {
            Event::Server(incoming) => match self.on_incoming(incoming)? {
                Some(Done::Ready) => self.say(Text::ChatHint),
                Some(Done::Quit) => return Ok(true),
                Some(Done::Account(_)) | None => {}
            },
            Event::Input(Input::Line(line)) if self.files.question.is_some() => self.overwrite_answer(&line)?,
            Event::Input(Input::Line(line)) => {
                // Leaving even if the `QUIT` cannot be written now.
                *leaving |= Typed::parse(&line) == Typed::Quit;
                self.typed(&line)?;
            }
            Event::Input(Input::TooLong) => self.say(Text::InputTooLong),
            Event::Input(Input::Eof) => {
                *leaving = true;
                self.send(Sent::Quit, "QUIT")?;
            }
            Event::Input(Input::Interrupted) | Event::Signal => return Err(ClientError::Interrupted),
            Event::Input(Input::Failed(error)) => return Err(ClientError::Input(error)),
            Event::Timeout => return Err(self.timed_out()),
            Event::Reconnected(attempt) => self.reconnected(attempt)?,
            Event::Shared(notice) => self.on_notice(notice)?,
            Event::Fetched(report) => self.on_report(report)?,
        }
        Ok(false)
    }

    /// The lab's farewell.
    fn farewell(&mut self, account: &Account) {
        self.say(Text::Disconnected {
            username: &validate::for_display(&account.username),
        });
    }

    /// Whether a reply that holds the next typed line back is still to come.
    fn input_held(&self) -> bool {
        self.files.question.is_some()
            || self
                .pending
                .iter()
                .chain(&self.unsent)
                .any(|pending| pending.command.holds_input())
    }

    /// Acts on one typed line.
    fn typed(&mut self, line: &str) -> Result<(), ClientError> {
        let typed = Typed::parse(line);
        let needs_rooms = match typed {
            Typed::Join(_) | Typed::Part(_) | Typed::Rooms | Typed::Private { .. } => true,
            Typed::Who(Some(room)) | Typed::Switch(room) => !is_lobby(room),
            Typed::History { target, .. } => target.is_some_and(|t| !matches!(t, Target::Room(r) if is_lobby(r))),
            _ => false,
        };
        if needs_rooms && !self.has_rooms {
            self.say(Text::NoRooms);
            return Ok(());
        }
        match typed {
            Typed::Blank => {}
            Typed::Say(text) => {
                let to = self.rooms.current_room().map(str::to_string);
                self.message(to, text)?;
            }
            Typed::Private { to, text } => self.message(Some(format!("@{to}")), text)?,
            Typed::Quit => self.send(Sent::Quit, "QUIT")?,
            Typed::Who(room) => {
                let room = room.or(self.rooms.current_room()).filter(|room| !is_lobby(room));
                let line = room.map_or_else(|| "WHO".to_string(), |room| format!("WHO {room}"));
                let room = room.map(str::to_string);
                self.send(Sent::Who { room }, &line)?;
            }
            Typed::History { target, count } => {
                let target = match target {
                    Some(Target::Room(room)) => Some(room.to_string()),
                    Some(Target::User(user)) => Some(format!("@{user}")),
                    None => self.rooms.current_room().map(str::to_string),
                };
                let line = match target.filter(|target| !is_lobby(target)) {
                    Some(target) => format!("HISTORY {target} {count}"),
                    None => format!("HISTORY {count}"),
                };
                self.send(Sent::History { initial: false }, &line)?;
            }
            Typed::Join(room) => self.send(Sent::Join, &format!("JOIN {room}"))?,
            Typed::Part(room) => {
                let room = room.unwrap_or(self.rooms.current()).to_string();
                self.send(Sent::Part, &format!("PART {room}"))?;
            }
            Typed::Rooms => self.send(Sent::Rooms { initial: false }, "ROOMS")?,
            Typed::Switch(room) => match self.rooms.switch(room) {
                Some(name) => {
                    let room = validate::for_display(name);
                    self.say(Text::NowIn { room: &room });
                }
                None => self.say(Text::NotInRoom { room }),
            },
            Typed::Share(path) => self.share_path(path),
            Typed::Files(query) => {
                let line = if query.is_empty() {
                    "FILES".to_string()
                } else {
                    format!("FILES {query}")
                };
                self.send(
                    Sent::Files {
                        query: query.to_string(),
                        then: None,
                    },
                    &line,
                )?;
            }
            Typed::Get { id, path } => self.get(id, path)?,
            Typed::Unshare(id) => self.send(Sent::Unshare { id: id.to_string() }, &format!("UNSHARE {id}"))?,
            Typed::Help => self.say(Text::Help),
            Typed::Usage(usage) => self.say(Text::Usage(usage)),
            Typed::Invalid(code) => self.refused(Some(code), ""),
            Typed::Unknown(command) => self.say(Text::UnknownCommand {
                command: &validate::for_display(command),
            }),
        }
        Ok(())
    }

    /// Sends a typed message: `SAY` to the lobby (`to` is `None`), `SEND`
    /// to a room or a person; a text that breaks the rules is refused here,
    /// with the server's sentence.
    fn message(&mut self, to: Option<String>, text: &str) -> Result<(), ClientError> {
        match validate::text(text) {
            Ok(text) => {
                let line = match &to {
                    Some(to) => format!("SEND {to} {text}"),
                    None => format!("SAY {text}"),
                };
                self.send(
                    Sent::Message {
                        to,
                        text: text.to_string(),
                    },
                    &line,
                )
            }
            Err(code) => {
                self.say(Text::SayFailed {
                    code: Some(code),
                    server_text: "",
                    excerpt: &display::excerpt(text.trim_matches([' ', '\t']), EXCERPT),
                });
                Ok(())
            }
        }
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
                self.on_post(Post::lobby(message));
                Ok(None)
            }
            ServerLine::Post { target, message } => {
                self.on_post(Post::addressed(&target, message));
                Ok(None)
            }
            ServerLine::User { username, full_name } if matches!(self.front(), Some(Sent::Who { .. })) => {
                self.who_lines.push((username, full_name));
                Ok(None)
            }
            ServerLine::Room { name, members, member } if matches!(self.front(), Some(Sent::Rooms { .. })) => {
                self.room_lines.push((name, members, member));
                Ok(None)
            }
            ServerLine::File {
                id,
                size,
                sha256,
                owner,
                name,
            } if matches!(self.front(), Some(Sent::Files { .. })) => {
                self.files.lines.push(Listed {
                    id,
                    size,
                    sha256,
                    owner,
                    name,
                });
                Ok(None)
            }
            ServerLine::Relay { file, ticket, addr } => {
                self.files.uploads.relay(file, ticket, addr);
                Ok(None)
            }
            ServerLine::Enter { room, user } => {
                if user.eq_ignore_ascii_case(&self.username) {
                    // This account joined from another session.
                    self.rooms.joined(&room);
                }
                self.say(Text::RoomEntered {
                    room: &validate::for_display(&room),
                    username: &validate::for_display(&user),
                });
                Ok(None)
            }
            ServerLine::Exit { room, user } => {
                self.say(Text::RoomExited {
                    room: &validate::for_display(&room),
                    username: &validate::for_display(&user),
                });
                // This account left from another session: nothing typed
                // here may go there any more.
                if user.eq_ignore_ascii_case(&self.username) && self.rooms.parted(&room) {
                    self.say(Text::NowIn { room: LOBBY });
                }
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
            ServerLine::User { .. } | ServerLine::Room { .. } | ServerLine::File { .. } | ServerLine::Hello { .. } => {
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
            Sent::Relogin => match reply {
                Ok(_) => {
                    self.back_up()?;
                    Ok(None)
                }
                Err((code, text)) => {
                    // Try again (elsewhere, after a pause) while time is left.
                    self.refused(code, &text);
                    Err(ClientError::Lost {
                        addr: self.addr().to_string(),
                        unconfirmed: self.unconfirmed(),
                    })
                }
            },
            Sent::CatchUp { paged } => {
                self.caught_up(paged, reply)?;
                Ok(None)
            }
            Sent::Quit => Ok(Some(Done::Quit)),
            Sent::Message { text, .. } => {
                match reply {
                    // `OK SAY ID TS`: this message is never to be shown as
                    // someone else's, should a catch-up bring it back.
                    Ok(fields) => {
                        if let Some(id) = fields.split(' ').next().and_then(|id| id.parse().ok()) {
                            self.seen.first_time(id);
                        }
                    }
                    Err((code, server_text)) => self.say(Text::SayFailed {
                        code,
                        server_text: &validate::for_display(&server_text),
                        excerpt: &display::excerpt(&text, EXCERPT),
                    }),
                }
                Ok(None)
            }
            Sent::History { initial } => {
                self.show_history(initial, reply);
                Ok(None)
            }
            Sent::Who { room } => {
                let users = std::mem::take(&mut self.who_lines);
                match reply {
                    Ok(_) => {
                        let room = room.map(|room| validate::for_display(&room));
                        self.say(Text::WhoHeader {
                            count: users.len(),
                            room: room.as_deref(),
                        });
                        for (username, full_name) in users {
                            self.console.say(&display::who_line(&username, &full_name));
                        }
                    }
                    Err((code, text)) => self.refused(code, &text),
                }
                Ok(None)
            }
            Sent::Rooms { initial } => {
                self.show_rooms(initial, reply);
                Ok(initial.then_some(Done::Ready))
            }
            Sent::Endpoint => {
                self.endpoint_answered(reply);
                Ok(None)
            }
            Sent::Share { offer, replaces } => {
                self.shared(offer, replaces, reply);
                Ok(None)
            }
            Sent::Unshare { id } => {
                self.unshared(&id, reply);
                Ok(None)
            }
            Sent::Files { query, then } => {
                self.listed(&query, then, reply)?;
                Ok(None)
            }
            Sent::Fetch {
                offer,
                target,
                overwrite,
                unreached,
            } => {
                self.fetched(offer, target, overwrite, unreached, reply);
                Ok(None)
            }
            Sent::Join => {
                match reply {
                    Ok(fields) => {
                        let Ok(room) = validate::room(fields.trim_end()) else {
                            return Err(self.protocol("OK JOIN without a room"));
                        };
                        self.rooms.joined(room);
                        self.rooms.switch(room);
                        self.say(Text::RoomJoined {
                            room: &validate::for_display(room),
                        });
                    }
                    Err((code, text)) => self.refused(code, &text),
                }
                Ok(None)
            }
            Sent::Part => {
                match reply {
                    Ok(fields) => {
                        let Ok(room) = validate::room(fields.trim_end()) else {
                            return Err(self.protocol("OK PART without a room"));
                        };
                        let was_current = self.rooms.parted(room);
                        self.say(Text::RoomParted {
                            room: &validate::for_display(room),
                        });
                        if was_current {
                            self.say(Text::NowIn { room: LOBBY });
                        }
                    }
                    Err((code, text)) => self.refused(code, &text),
                }
                Ok(None)
            }
        }
    }

    /// The end of a `ROOMS` reply: the account's rooms are the ones flagged
    /// `*`. After login they are named in one sentence (and a version 1
    /// server's `bad-request` says only that it has no rooms); an explicit
    /// `/rooms` lists every room.
    fn show_rooms(&mut self, initial: bool, reply: Reply) {
        let listed = std::mem::take(&mut self.room_lines);
        match reply {
            Ok(_) => {
                let mine = listed
                    .iter()
                    .filter(|(_, _, member)| *member)
                    .map(|(name, _, _)| name.as_str());
                if self.rooms.listed(mine) {
                    self.say(Text::NowIn { room: LOBBY });
                }
                if initial {
                    let names = validate::for_display(&self.rooms.names().join(", "));
                    self.say(Text::YourRooms { rooms: &names });
                } else {
                    self.say(Text::RoomsHeader { count: listed.len() });
                    for (name, members, member) in &listed {
                        self.say(Text::RoomLine {
                            name: &validate::for_display(name),
                            members: *members,
                            member: *member,
                        });
                    }
                }
            }
            Err((Some(ErrorCode::BadRequest), _)) if initial => self.has_rooms = false,
            Err((code, text)) => self.refused(code, &text),
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
            lines.sort_by_key(|post| post.message.id);
            if !self.progress.catching_up() {
                for post in &lines {
                    self.progress.received(post.message.id);
                }
            }
            let now = Local::now();
            let fresh: Vec<String> = lines
                .iter()
                .filter(|post| self.seen.first_time(post.message.id))
                .map(|post| display::message_line(post, &self.username, self.lang, &now))
                .collect();
            if !fresh.is_empty() {
                self.say(Text::RecentMessages);
            }
            for line in fresh {
                self.console.say(&line);
            }
        } else {
            for post in lines {
                self.live(post);
            }
            if reply.is_ok() {
                if body.is_empty() {
                    self.say(Text::NoMessages);
                } else {
                    self.say(Text::HistoryHeader { count: body.len() });
                    let now = Local::now();
                    for post in &body {
                        self.seen.first_time(post.message.id);
                        let line = display::message_line(post, &self.username, self.lang, &now);
                        self.console.say(&line);
                    }
                }
            }
        }
        if let Err((code, text)) = reply {
            self.refused(code, &text);
        }
    }

    /// A `MSG` or `POST` line: part of the `HISTORY` or `SYNC` being
    /// answered, or a live message.
    fn on_post(&mut self, post: Post) {
        if matches!(self.front(), Some(Sent::History { .. } | Sent::CatchUp { .. })) {
            self.history_lines.push(post);
        } else {
            self.live(post);
        }
    }

    /// A live message: shown now, or held while a catch-up runs.
    fn live(&mut self, post: Post) {
        if let Some(post) = self.progress.live(post) {
            self.show(&post);
        }
    }

    /// Shows a message of the chat unless it was already shown.
    fn show(&mut self, post: &Post) {
        if self.seen.first_time(post.message.id) {
            let line = display::message_line(post, &self.username, self.lang, &Local::now());
            self.console.say(&line);
        }
    }

    // ----- files ----------------------------------------------------------

    /// `/compartir RUTA`: checks the file and hashes it on a thread; the
    /// `SHARE` goes when the hash is ready ([`Session::on_notice`]).
    fn share_path(&mut self, typed: &str) {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let path = download::expand_home(typed, home.as_deref());
        match share::open(&path) {
            Ok((file, offer)) => {
                let bar = if share::hash_bar_wanted(offer.size) {
                    let name = validate::for_display(&offer.name);
                    let size = display::human_size(offer.size, self.lang);
                    self.say(Text::File(FileText::Hashing {
                        name: &name,
                        size: &size,
                    }));
                    TransferBar::new(
                        self.files.rows.as_ref(),
                        offer.size,
                        &format!("SHA-256 {name}"),
                        self.lang,
                    )
                } else {
                    TransferBar::hidden()
                };
                share::hash_in_background(file, offer, bar, self.files.notify.clone());
            }
            Err(error) => self.share_failed(&path, &error),
        }
    }

    /// Tells why `path` cannot be shared.
    fn share_failed(&mut self, path: &Path, error: &ShareError) {
        let os_error;
        let why = match error {
            ShareError::NotFound => ShareFailure::NotFound,
            ShareError::Directory => ShareFailure::Directory,
            ShareError::NotAFile => ShareFailure::NotAFile,
            ShareError::BadName => ShareFailure::BadName,
            ShareError::Changed => ShareFailure::Changed,
            ShareError::Unreadable(error) => {
                os_error = error.to_string();
                ShareFailure::Unreadable(&os_error)
            }
        };
        let path = validate::for_display(&path.display().to_string());
        self.say(Text::File(FileText::ShareFailed { path: &path, why }));
    }

    /// A hashing or upload thread's report.
    fn on_notice(&mut self, notice: Notice) -> Result<(), ClientError> {
        match notice {
            Notice::Hashed(offer) => return self.offer(offer, None),
            Notice::HashFailed { path, error } => self.share_failed(&path, &error),
            Notice::Served { name, size } => {
                let size = display::human_size(size, self.lang);
                let name = validate::for_display(&name);
                self.say(Text::File(FileText::Served {
                    name: &name,
                    size: &size,
                }));
            }
            Notice::Changed { id, name } => {
                let name = validate::for_display(&name);
                self.say(Text::File(FileText::ServeChanged { id: &id, name: &name }));
            }
            Notice::Interrupted { name, reason } => {
                let name = validate::for_display(&name);
                let reason = validate::for_display(&reason);
                self.say(Text::File(FileText::ServeInterrupted {
                    name: &name,
                    reason: &reason,
                }));
            }
            Notice::RelayFailed { id, reason } => {
                let reason = validate::for_display(&reason);
                self.say(Text::File(FileText::RelayFailed {
                    id: &id,
                    reason: &reason,
                }));
            }
        }
        Ok(())
    }

    /// Offers a hashed file: the endpoint first, the first time.
    fn offer(&mut self, offer: LocalOffer, replaces: Option<String>) -> Result<(), ClientError> {
        self.open_endpoint()?;
        let line = format!("SHARE {} {} {}", offer.size, offer.sha256, offer.name);
        self.send(Sent::Share { offer, replaces }, &line)
    }

    /// Opens the endpoint and announces it, unless that was done (or
    /// tried) before or `--share-addr none` says not to. If it cannot be
    /// opened, nothing is announced: the offers go through the relay.
    fn open_endpoint(&mut self) -> Result<(), ClientError> {
        if self.files.endpoint != Endpoint::Unopened {
            return Ok(());
        }
        let local = self.files.local_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let bind = match self.files.share_addr {
            ShareAddr::Relayed => {
                self.files.endpoint = Endpoint::Relayed;
                return Ok(());
            }
            ShareAddr::Auto => SocketAddr::new(local, 0),
            ShareAddr::At(addr) => addr,
        };
        match self.files.uploads.listen(bind) {
            Ok(bound) => {
                let announced = self.files.announce.clone().unwrap_or_else(|| {
                    let ip = if bound.ip().is_unspecified() { local } else { bound.ip() };
                    SocketAddr::new(ip, bound.port()).to_string()
                });
                self.files.endpoint = Endpoint::Open(announced.clone());
                self.send(Sent::Endpoint, &format!("ENDPOINT {announced}"))
            }
            Err(error) => {
                self.files.endpoint = Endpoint::Relayed;
                let error = error.to_string();
                self.say(Text::File(FileText::EndpointFailed {
                    addr: &bind.to_string(),
                    error: &error,
                }));
                Ok(())
            }
        }
    }

    /// `OK ENDPOINT HOST:PORT KEY`: the key checks the tickets fetchers
    /// bring. A refusal leaves the offers to the relay.
    fn endpoint_answered(&mut self, reply: Reply) {
        let key = reply
            .as_ref()
            .ok()
            .and_then(|fields| fields.rsplit(' ').next())
            .filter(|key| key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
        match key {
            Some(key) => self.files.uploads.set_key(Some(key.to_ascii_lowercase())),
            None => {
                self.files.endpoint = Endpoint::Relayed;
                self.say(Text::File(FileText::EndpointRefused));
            }
        }
    }

    /// The reply to `SHARE`.
    fn shared(&mut self, offer: LocalOffer, replaces: Option<String>, reply: Reply) {
        let name = validate::for_display(&offer.name);
        let size = display::human_size(offer.size, self.lang);
        match reply {
            Ok(fields) if validate::is_token(fields.trim()) => {
                let id = fields.trim().to_string();
                self.files.shelf.add(&id, offer);
                match replaces {
                    Some(old) => self.say(Text::File(FileText::Reshared {
                        name: &name,
                        old: &old,
                        new: &id,
                    })),
                    None => self.say(Text::File(FileText::Shared {
                        id: &id,
                        name: &name,
                        size: &size,
                    })),
                }
            }
            Ok(_) => self.say(Text::IgnoredServerLine),
            Err(_) if replaces.is_some() => {
                let old = replaces.unwrap_or_default();
                self.say(Text::File(FileText::ReshareDropped { name: &name, old: &old }));
            }
            // The name and the SHA-256 were checked here: the size is what
            // the server refuses.
            Err((Some(ErrorCode::InvalidFile), _)) => {
                self.say(Text::File(FileText::TooBig {
                    name: &name,
                    size: &size,
                }));
            }
            Err((code, text)) => self.refused(code, &text),
        }
    }

    /// The reply to `UNSHARE`.
    fn unshared(&mut self, id: &str, reply: Reply) {
        match reply {
            Ok(_) => {
                self.files.shelf.remove(id);
                self.say(Text::File(FileText::Unshared { id }));
            }
            Err((Some(ErrorCode::Forbidden), _)) => self.say(Text::File(FileText::NotYours { id })),
            Err((Some(ErrorCode::NoSuchFile), _)) => {
                self.files.shelf.remove(id);
                self.say(Text::File(FileText::UnknownOffer { id, capped: false }));
            }
            Err((code, text)) => self.refused(code, &text),
        }
    }

    /// The end of a `FILES` reply: remembered, then listed, or looked in
    /// for the download that waited for it.
    fn listed(&mut self, query: &str, then: Option<Wanted>, reply: Reply) -> Result<(), ClientError> {
        let lines = std::mem::take(&mut self.files.lines);
        if let Err((code, text)) = reply {
            self.refused(code, &text);
            return Ok(());
        }
        if self.files.listed.len() + lines.len() > LISTED_KEPT {
            self.files.listed.clear();
        }
        for offer in &lines {
            self.files.listed.insert(offer.id.clone(), offer.clone());
        }
        let capped = lines.len() >= crate::core::files::MAX_LISTED;
        if let Some(wanted) = then {
            return match self.files.listed.get(&wanted.id).cloned() {
                Some(offer) => self.prepare_fetch(offer, wanted.path.as_deref()),
                None => {
                    let id = validate::for_display(&wanted.id);
                    self.say(Text::File(FileText::UnknownOffer { id: &id, capped }));
                    Ok(())
                }
            };
        }
        let query = validate::for_display(query.trim_matches([' ', '\t']));
        let query = (!query.is_empty()).then_some(query.as_str());
        if lines.is_empty() {
            self.say(Text::File(FileText::NoFiles { query }));
            return Ok(());
        }
        self.say(Text::File(FileText::FilesHeader {
            count: lines.len(),
            query,
        }));
        for offer in &lines {
            let line = display::file_line(&offer.id, offer.size, &offer.owner, &offer.name, self.lang);
            self.console.say(&line);
        }
        if capped {
            self.say(Text::File(FileText::FilesCapped));
        }
        Ok(())
    }

    /// `/descargar ID [RUTA]`: the offer as the server listed it (asking
    /// `FILES` first when it was never listed), then the target.
    fn get(&mut self, id: &str, path: Option<&str>) -> Result<(), ClientError> {
        if let Some(offer) = self.files.listed.get(id).cloned() {
            return self.prepare_fetch(offer, path);
        }
        let wanted = Wanted {
            id: id.to_string(),
            path: path.map(str::to_string),
        };
        self.send(
            Sent::Files {
                query: String::new(),
                then: Some(wanted),
            },
            "FILES",
        )
    }

    /// Settles where `offer` goes; a file already there is replaced only
    /// if the person says so, on a terminal (elsewhere nothing is
    /// downloaded).
    fn prepare_fetch(&mut self, offer: Listed, path: Option<&str>) -> Result<(), ClientError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let target = match download::resolve(path, &offer.name, &cwd) {
            Ok(target) => target,
            Err(TargetError::UnsafeName(name)) => {
                let name = validate::for_display(&name);
                self.say(Text::File(FileText::UnsafeName { name: &name }));
                return Ok(());
            }
            Err(TargetError::NoFolder(folder)) => {
                let path = validate::for_display(&folder.display().to_string());
                self.say(Text::File(FileText::NoFolder { path: &path }));
                return Ok(());
            }
        };
        if std::fs::symlink_metadata(&target).is_err() {
            return self.fetch(offer, target, false);
        }
        let shown = validate::for_display(&target.display().to_string());
        if self.console.is_terminal() {
            let question = Text::File(FileText::AskOverwrite { path: &shown }).render(self.lang);
            self.files.question = Some((offer, target));
            self.console.ask(Ask::Answer, &question);
        } else {
            self.say(Text::File(FileText::Exists { path: &shown }));
        }
        Ok(())
    }

    /// The answer to "replace it?".
    fn overwrite_answer(&mut self, answer: &str) -> Result<(), ClientError> {
        let Some((offer, target)) = self.files.question.take() else {
            return Ok(());
        };
        let yes = matches!(
            answer.trim_matches([' ', '\t']).to_lowercase().as_str(),
            "s" | "si" | "sí" | "y" | "yes"
        );
        if yes {
            self.fetch(offer, target, true)
        } else {
            self.say(Text::File(FileText::NotOverwritten));
            Ok(())
        }
    }

    /// `FETCH`: a ticket for the download.
    fn fetch(&mut self, offer: Listed, target: PathBuf, overwrite: bool) -> Result<(), ClientError> {
        let line = format!("FETCH {}", offer.id);
        self.send(
            Sent::Fetch {
                offer,
                target,
                overwrite,
                unreached: None,
            },
            &line,
        )
    }

    /// `FETCH FILEID RELAY`: a ticket for the relay, after the direct
    /// attempt of `underway` could not reach the owner (`unreached`).
    fn fetch_through_relay(&mut self, underway: Underway, unreached: DownloadError) -> Result<(), ClientError> {
        let line = format!("FETCH {} RELAY", underway.offer.id);
        self.send(
            Sent::Fetch {
                offer: underway.offer,
                target: underway.target,
                overwrite: underway.overwrite,
                unreached: Some(unreached),
            },
            &line,
        )
    }

    /// `OK FETCH FILEID TICKET HOST:PORT`: the download starts on its own
    /// thread. For `FETCH FILEID RELAY` (`unreached` set), a refusal or an
    /// answer naming the very address that could not be reached (the first
    /// attempt was the relay already) reports the first failure instead.
    fn fetched(
        &mut self,
        offer: Listed,
        target: PathBuf,
        overwrite: bool,
        unreached: Option<DownloadError>,
        reply: Reply,
    ) {
        let fields = match reply {
            Ok(fields) => fields,
            Err((code, text)) => {
                let gone = code == Some(ErrorCode::NoSuchFile);
                if gone {
                    self.files.listed.remove(&offer.id);
                }
                match &unreached {
                    Some(unreached) => self.download_failed(&target, unreached),
                    None if gone => self.say(Text::File(FileText::UnknownOffer {
                        id: &offer.id,
                        capped: false,
                    })),
                    None => self.refused(code, &text),
                }
                return;
            }
        };
        let mut words = fields.split(' ');
        let (Some(id), Some(ticket), Some(addr), None) = (words.next(), words.next(), words.next(), words.next())
        else {
            self.say(Text::IgnoredServerLine);
            return;
        };
        if id != offer.id {
            self.say(Text::IgnoredServerLine);
            return;
        }
        let name = validate::for_display(&offer.name);
        match &unreached {
            Some(unreached @ DownloadError::Unreachable { addr: tried, .. }) if tried == addr => {
                self.download_failed(&target, unreached);
                return;
            }
            Some(_) => {
                let owner = validate::for_display(&offer.owner);
                self.say(Text::File(FileText::ThroughRelay {
                    owner: &owner,
                    name: &name,
                }));
            }
            None => {
                let size = display::human_size(offer.size, self.lang);
                let shown = validate::for_display(&target.display().to_string());
                self.say(Text::File(FileText::Downloading {
                    name: &name,
                    size: &size,
                    path: &shown,
                }));
            }
        }
        let bar = TransferBar::new(self.files.rows.as_ref(), offer.size, &name, self.lang);
        self.files.started += 1;
        let number = self.files.started;
        let job = Job {
            number,
            id: offer.id.clone(),
            ticket: ticket.to_string(),
            addr: addr.to_string(),
            size: offer.size,
            sha256: offer.sha256.clone(),
            target: target.clone(),
            overwrite,
        };
        self.files.underway.insert(
            number,
            Underway {
                offer,
                target,
                overwrite,
                relayed: unreached.is_some(),
            },
        );
        download::spawn(job, bar, self.files.report.clone());
    }

    /// A download thread's report. A direct attempt that never reached its
    /// owner is asked for again through the relay, once.
    fn on_report(&mut self, report: Report) -> Result<(), ClientError> {
        let underway = self.files.underway.remove(&report.number());
        match report {
            Report::Done { path, size, .. } => {
                let path = validate::for_display(&path.display().to_string());
                let size = display::human_size(size, self.lang);
                self.say(Text::File(FileText::Downloaded {
                    path: &path,
                    size: &size,
                }));
            }
            Report::Failed { path, error, .. } => match underway {
                Some(underway) if !underway.relayed && error.never_reached() => {
                    return self.fetch_through_relay(underway, error);
                }
                _ => self.download_failed(&path, &error),
            },
        }
        Ok(())
    }

    /// Tells the person a download to `path` failed, and why.
    fn download_failed(&mut self, path: &Path, error: &DownloadError) {
        let path = validate::for_display(&path.display().to_string());
        let (first, second);
        let why = match error {
            DownloadError::Unreachable { addr, source } => {
                first = validate::for_display(addr);
                second = source.to_string();
                FetchFailure::Unreachable {
                    addr: &first,
                    error: &second,
                }
            }
            DownloadError::Refused { code, text } => {
                first = validate::for_display(code);
                second = validate::for_display(text);
                FetchFailure::Refused {
                    code: &first,
                    text: &second,
                }
            }
            DownloadError::OtherFile => FetchFailure::OtherFile,
            DownloadError::Garbled => FetchFailure::Garbled,
            DownloadError::Closed => FetchFailure::Closed,
            DownloadError::Short { got, size } => {
                first = display::human_size(*got, self.lang);
                second = display::human_size(*size, self.lang);
                FetchFailure::Short {
                    got: &first,
                    size: &second,
                }
            }
            DownloadError::TooLong => FetchFailure::TooLong,
            DownloadError::Stalled => FetchFailure::Stalled,
            DownloadError::Mismatch => FetchFailure::Mismatch,
            DownloadError::Exists(_) => FetchFailure::Exists,
            DownloadError::Write { source, .. } => {
                first = source.to_string();
                FetchFailure::Write(&first)
            }
        };
        self.say(Text::File(FileText::DownloadFailed { path: &path, why }));
    }

    /// After a failover: the new session announces the endpoint again (it
    /// has a new ticket key) and offers again every file still unchanged
    /// on disk, under new ids. Nothing when the person is leaving.
    fn share_again(&mut self) -> Result<(), ClientError> {
        if self.unsent.iter().any(|pending| matches!(pending.command, Sent::Quit)) {
            return Ok(());
        }
        if let Endpoint::Open(announced) = &self.files.endpoint {
            let line = format!("ENDPOINT {announced}");
            self.files.uploads.set_key(None);
            self.send(Sent::Endpoint, &line)?;
        }
        for (old, offer) in self.files.shelf.take_all() {
            let unchanged = std::fs::metadata(&offer.path).is_ok_and(|metadata| offer.unchanged(&metadata));
            if unchanged {
                let line = format!("SHARE {} {} {}", offer.size, offer.sha256, offer.name);
                self.send(
                    Sent::Share {
                        offer,
                        replaces: Some(old),
                    },
                    &line,
                )?;
            } else {
                let name = validate::for_display(&offer.name);
                self.say(Text::File(FileText::ReshareDropped { name: &name, old: &old }));
            }
        }
        Ok(())
    }

    // ----- failover -----------------------------------------------------

    /// A chat error: the start of a failover when the connection was lost
    /// (or the server stopped answering, or is shutting down) and the chat
    /// may reconnect; otherwise the end of the chat, with `error`.
    fn fail_over(&mut self, error: ClientError) -> Result<(), ClientError> {
        let why = match &error {
            ClientError::Lost { .. } => Interruption::Lost,
            ClientError::NoReply { .. } => Interruption::NoReply,
            ClientError::Closed {
                code: Some(ErrorCode::ShuttingDown),
                ..
            } => Interruption::ShuttingDown,
            _ => return Err(error),
        };
        if self.credentials.is_none() || self.reconnect_for.is_zero() {
            return Err(error);
        }
        let until = match &self.link {
            Link::Up => {
                let addr = self.addr().to_string();
                self.say(Text::Reconnecting {
                    addr: &addr,
                    why,
                    secs: self.reconnect_for.as_secs(),
                });
                Instant::now() + self.reconnect_for
            }
            // Lost again while reconnecting: the same deadline.
            Link::Down { until, .. } | Link::Relogging { until } => *until,
        };
        if Instant::now() >= until {
            return Err(self.gave_up(None));
        }
        self.go_down(
            until,
            why == Interruption::Lost && matches!(self.link, Link::Relogging { .. }),
        );
        Ok(())
    }

    /// Drops the connection and starts the reconnect thread; every command
    /// not answered goes back to the queue, in order. `refused`: the last
    /// attempt logged in and was refused, so the next one waits a little.
    fn go_down(&mut self, until: Instant, refused: bool) {
        self.connection = None;
        self.closing = None;
        // Partial replies come again with their resent commands; a
        // catch-up under way starts again from the same id.
        self.history_lines.clear();
        self.who_lines.clear();
        self.room_lines.clear();
        self.files.lines.clear();
        self.progress.abandon();
        let mut queue: VecDeque<Pending> = self
            .pending
            .drain(..)
            .filter(|pending| !matches!(pending.command, Sent::Relogin | Sent::CatchUp { .. }))
            .collect();
        queue.append(&mut self.unsent);
        self.unsent = queue;
        let pause = if refused {
            self.relogin_backoff.next_pause()
        } else {
            Duration::ZERO
        };
        // Another address first: the one lost is the likeliest to be down.
        let first = (self.server + 1) % self.servers.len().max(1);
        self.link = Link::Down {
            until,
            attempt: failover::reconnect(self.servers.clone(), self.tls.clone(), first, until, pause),
        };
    }

    /// The reconnect thread's report: log in on the new connection, or give
    /// up.
    fn reconnected(&mut self, attempt: Attempt) -> Result<(), ClientError> {
        let Link::Down { until, .. } = self.link else {
            return Ok(());
        };
        let (connection, index) = match attempt {
            Ok(opened) => opened,
            Err(cause) => return Err(self.gave_up(cause)),
        };
        let Some(credentials) = &self.credentials else {
            return Err(self.gave_up(None));
        };
        let line = format!("LOGIN {} {}", credentials.username, credentials.password);
        self.files.local_ip = connection.local_addr().map(|addr| addr.ip()).or(self.files.local_ip);
        self.connection = Some(connection);
        self.server = index;
        self.link = Link::Relogging { until };
        let login = Pending {
            tag: self.tags.next(),
            command: Sent::Relogin,
            line,
            sent_at: Instant::now(),
        };
        self.write(login)
    }

    /// Logged in again: say so, resend what waited (with the same tags),
    /// and catch up.
    fn back_up(&mut self) -> Result<(), ClientError> {
        self.link = Link::Up;
        self.relogin_backoff = Backoff::default();
        let addr = self.addr().to_string();
        self.say(Text::Reconnected { addr: &addr });
        let after = self.progress.begin();
        // Messages first: their `OK`s mark their ids as this client's own
        // before the catch-up could show them. `QUIT` last, after the
        // catch-up's reply.
        while let Some(pending) = self.unsent.pop_front() {
            if matches!(pending.command, Sent::Quit) {
                self.unsent.push_front(pending);
                break;
            }
            self.write(pending)?;
        }
        if self.has_rooms {
            self.send(Sent::CatchUp { paged: true }, &format!("SYNC {after} {SYNC_PAGE}"))?;
        } else {
            self.send(Sent::CatchUp { paged: false }, &format!("HISTORY {SYNC_PAGE}"))?;
        }
        self.share_again()?;
        while let Some(pending) = self.unsent.pop_front() {
            self.write(pending)?;
        }
        Ok(())
    }

    /// The end of a catch-up reply: its body shown (what was not shown
    /// before), then the next page, or the live messages held meanwhile.
    fn caught_up(&mut self, paged: bool, reply: Reply) -> Result<(), ClientError> {
        let mut lines = std::mem::take(&mut self.history_lines);
        let count = match &reply {
            Ok(fields) => fields.trim().parse::<usize>().unwrap_or(lines.len()).min(lines.len()),
            Err(_) => 0,
        };
        let body = lines.split_off(lines.len() - count);
        for post in lines {
            self.live(post);
        }
        if let Err((code, text)) = reply {
            self.refused(code, &text);
        } else {
            let page = self.progress.page(body, paged);
            for post in &page.show {
                self.show(post);
            }
            if let Some(after) = page.next {
                return self.send(Sent::CatchUp { paged: true }, &format!("SYNC {after} {SYNC_PAGE}"));
            }
        }
        for post in self.progress.finish() {
            self.show(&post);
        }
        Ok(())
    }

    /// The error that ends a chat that could not reconnect in time, with
    /// the `cause` worth telling (a certificate that did not verify).
    fn gave_up(&self, cause: Option<ClientError>) -> ClientError {
        ClientError::GaveUp {
            addrs: self.servers.join(", "),
            secs: self.reconnect_for.as_secs(),
            unconfirmed: self.unconfirmed(),
            cause: cause.map(Box::new),
        }
    }

    // ----- plumbing -----------------------------------------------------

    /// Waits for the next thing to act on.
    fn next_event(&mut self) -> Event {
        let reply_due = self.pending.front().map(|pending| pending.sent_at + REPLY_TIMEOUT);
        let deadline = match (&self.closing, &self.link) {
            (Some((_, _, until)), _) => Some(*until),
            (None, Link::Up) => reply_due,
            (None, Link::Relogging { until }) => Some(reply_due.map_or(*until, |due| due.min(*until))),
            // The thread reports by then; this is only a safety net.
            (None, Link::Down { until, .. }) => Some(*until + REPORT_SLACK),
        };
        let timer = deadline.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        let incoming = self
            .connection
            .as_ref()
            .map_or_else(crossbeam_channel::never, |connection| connection.incoming().clone());
        let attempt = match &self.link {
            Link::Down { attempt, .. } => attempt.clone(),
            _ => crossbeam_channel::never(),
        };
        let event = select! {
            recv(incoming) -> incoming => Event::Server(incoming.unwrap_or(Incoming::Closed)),
            recv(attempt) -> attempt => Event::Reconnected(attempt.unwrap_or(Err(None))),
            recv(self.console.input()) -> input => Event::Input(
                input.unwrap_or_else(|_| Input::Failed(std::io::Error::other("the input thread ended")))
            ),
            recv(self.console.signals()) -> _ => Event::Signal,
            recv(timer) -> _ => Event::Timeout,
            // The session holds a sender of each: they never disconnect.
            recv(self.files.notices) -> notice => notice.map_or(Event::Timeout, Event::Shared),
            recv(self.files.reports) -> report => report.map_or(Event::Timeout, Event::Fetched),
        };
        if let Event::Input(_) = event {
            self.console.answered();
        }
        event
    }

    /// Sends a command with a fresh tag and queues it for its reply; while
    /// the client reconnects, queues it to be sent once logged in again.
    fn send(&mut self, command: Sent, line: &str) -> Result<(), ClientError> {
        let pending = Pending {
            tag: self.tags.next(),
            command,
            line: line.to_string(),
            sent_at: Instant::now(),
        };
        if matches!(self.link, Link::Up) {
            self.write(pending)
        } else {
            self.unsent.push_back(pending);
            Ok(())
        }
    }

    /// Writes a command (with its tag) and queues it for its reply. It is
    /// queued even when the write fails, so a failover resends it.
    fn write(&mut self, mut pending: Pending) -> Result<(), ClientError> {
        let line = format!("@{} {}", pending.tag, pending.line);
        pending.sent_at = Instant::now();
        self.pending.push_back(pending);
        let written = self
            .connection
            .as_mut()
            .is_some_and(|connection| connection.send(&line).is_ok());
        if written { Ok(()) } else { Err(self.ended()) }
    }

    /// The address connected to (or last lost).
    fn addr(&self) -> &str {
        self.servers.get(self.server).map_or("", String::as_str)
    }

    /// The command the next reply will answer.
    fn front(&self) -> Option<&Sent> {
        self.pending.front().map(|pending| &pending.command)
    }

    /// Messages sent (or waiting to be sent) whose `OK` has not come.
    fn unconfirmed(&self) -> usize {
        self.pending
            .iter()
            .chain(&self.unsent)
            .filter(|pending| matches!(pending.command, Sent::Message { .. }))
            .count()
    }

    /// Why the connection is over: `BYE` if it was said, lost otherwise.
    fn ended(&mut self) -> ClientError {
        let addr = self.addr().to_string();
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
        match &self.link {
            Link::Down { .. } => self.gave_up(None),
            Link::Relogging { until } if Instant::now() >= *until => self.gave_up(None),
            _ => ClientError::NoReply {
                addr: self.addr().to_string(),
                secs: REPLY_TIMEOUT.as_secs(),
                unconfirmed: self.unconfirmed(),
            },
        }
    }

    fn protocol(&self, detail: &'static str) -> ClientError {
        ClientError::Protocol {
            addr: self.addr().to_string(),
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

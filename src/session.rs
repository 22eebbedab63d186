//! One connection, from `HELLO` to close: reads lines, checks them in the
//! protocol's order, runs the command and queues its reply.
//!
//! A session runs on its own thread and owns the read side of its socket.
//! It never writes to the socket (its [`Outbox`] does) and never holds the
//! registry lock while doing anything slow. Replies keep the order of the
//! commands: SAYs go to the journal and are acknowledged from there, so
//! before any other command the session waits until its SAYs in flight are
//! acknowledged.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::code::ErrorCode;
use crate::command::{self, Command, Requirement, Verb};
use crate::frame::{self, Frame, LineReader};
use crate::journal::SayOp;
use crate::limits::TokenBucket;
use crate::outbox::Outbox;
use crate::registry::ConnectionId;
use crate::reply::{self, WireLine};
use crate::server::Shared;
use crate::store::{Account, CreateAccountError, NewAccount, NewMessage};
use crate::validate;

/// What the session loop does after a command.
enum Flow {
    /// Read the next line.
    Continue,
    /// The client asked to leave: close after the reply.
    Quit,
}

/// The account a session is logged in as.
struct LoggedIn {
    /// Account id, for tags and presence.
    account_id: i64,
    /// Username as registered, shared by every `MSG` this session sends.
    username: Arc<str>,
}

/// The socket as the session reads it. While the login deadline is set,
/// every read waits at most until the deadline and fails with `TimedOut`
/// once it has passed: a timeout per read alone would let a client that
/// trickles bytes without ever ending a line stay unlogged forever (the line
/// reader keeps reading until a line is complete).
struct Input<'a> {
    /// The connection.
    socket: &'a TcpStream,
    /// When the connection must be logged in by; `None` once it is.
    login_deadline: Option<Instant>,
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.login_deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // A zero timeout would mean "none": `left` is not zero here.
            self.socket.set_read_timeout(Some(left))?;
        }
        (&*self.socket).read(buf)
    }
}

/// A connection's state while its thread runs.
struct Session<'a> {
    /// Server-wide state.
    shared: &'a Shared,
    /// This connection's id.
    id: ConnectionId,
    /// The peer, for logs.
    peer: SocketAddr,
    /// The connection (the session reads it; its outbox writes it).
    socket: Arc<TcpStream>,
    /// Where replies go.
    outbox: Arc<Outbox>,
    /// `None` until REGISTER or LOGIN succeeds.
    logged_in: Option<LoggedIn>,
    /// SAYs submitted to the journal and not yet acknowledged.
    in_flight: usize,
    /// The journal signals here as it acknowledges each SAY.
    acked: Receiver<()>,
    /// Given to each SAY for the journal to signal on.
    ack_sender: Sender<()>,
    /// This session's message allowance (PROTOCOL.md 5.5).
    messages: TokenBucket,
    /// The peer's address when per-address limits apply to it.
    limited_address: Option<IpAddr>,
}

/// Serves one accepted connection until it closes. Called on the session's
/// own thread; returns when the connection is finished with.
pub fn run(stream: TcpStream, id: ConnectionId, shared: &Shared) {
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(e) => {
            log::debug!("connection {id} gone before it was served: {e}");
            return;
        }
    };
    let socket = Arc::new(stream);
    let _ = socket.set_nodelay(true);
    let outbox = match Outbox::new(Arc::clone(&socket), shared.config.outbox_limit, id) {
        Ok(outbox) => outbox,
        Err(e) => {
            log::error!("connection {id} from {peer}: cannot set up its output: {e}");
            return;
        }
    };
    log::info!("connection {id} from {peer}");
    outbox.reply(reply::hello(&shared.config.node));
    shared.registry.connect(id, Arc::clone(&outbox));
    if shared.shutdown.is_triggered() {
        outbox.bye(ErrorCode::ShuttingDown);
    }
    let (ack_sender, acked) = crossbeam_channel::unbounded();
    let mut session = Session {
        shared,
        id,
        peer,
        socket,
        outbox,
        logged_in: None,
        in_flight: 0,
        acked,
        ack_sender,
        messages: TokenBucket::full(shared.limits.msg_rate, shared.limits.clock.now()),
        limited_address: Some(peer.ip()).filter(|ip| shared.limits.applies_to(*ip)),
    };
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.serve()));
    if served.is_err() {
        log::error!("connection {id}: session thread panicked; closing it");
    }
    session.close();
    log::info!("connection {id} from {peer} closed");
}

impl Session<'_> {
    /// The read loop.
    fn serve(&mut self) {
        let config = &self.shared.config;
        let socket = Arc::clone(&self.socket);
        let login_deadline = Instant::now() + config.login_timeout;
        let input = Input {
            socket: &socket,
            login_deadline: Some(login_deadline),
        };
        let mut reader = LineReader::new(input, config.max_line);
        loop {
            self.outbox.wait_for_room();
            if self.outbox.is_closing() {
                return;
            }
            if self.logged_in.is_none() {
                if Instant::now() >= login_deadline {
                    log::info!("connection {} from {}: login timeout", self.id, self.peer);
                    self.outbox.bye(ErrorCode::LoginTimeout);
                    return;
                }
            } else {
                reader.get_mut().login_deadline = None;
            }
            let flow = match reader.read_frame() {
                Ok(Frame::Line(line)) => self.line(line),
                Ok(Frame::TooLong) => {
                    self.reply(reply::err(None, None, ErrorCode::LineTooLong));
                    Flow::Continue
                }
                Ok(Frame::Eof) => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    Flow::Continue
                }
                Err(e) => {
                    log::debug!("connection {}: read failed: {e}", self.id);
                    return;
                }
            };
            if let Flow::Quit = flow {
                return;
            }
        }
    }

    /// Checks and runs one line, in the order of PROTOCOL.md 2.
    fn line(&mut self, line: &[u8]) -> Flow {
        if frame::is_blank(line) {
            return Flow::Continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            self.reply(reply::err(None, None, ErrorCode::BadEncoding));
            return Flow::Continue;
        };
        let head = match command::parse_head(line) {
            Ok(head) => head,
            Err(bad) => {
                self.reply(reply::err(bad.tag, None, ErrorCode::BadRequest));
                return Flow::Continue;
            }
        };
        let (tag, verb) = (head.tag, head.verb);
        let state_error = match (verb.requirement(), self.logged_in.is_some()) {
            (Requirement::LoggedOut, true) => Some(ErrorCode::AlreadyLoggedIn),
            (Requirement::LoggedIn, false) => Some(ErrorCode::NotLoggedIn),
            _ => None,
        };
        let command = match state_error.map_or_else(|| command::parse_args(&head), Err) {
            Ok(command) => command,
            Err(code) => {
                self.reply(reply::err(tag, Some(verb), code));
                return Flow::Continue;
            }
        };
        if verb != Verb::Say {
            self.await_acks();
        }
        let outcome = match command {
            Command::Register {
                username,
                password,
                full_name,
            } => self.register(tag, username, password, full_name),
            Command::Login { username, password } => self.login(tag, username, password),
            Command::Say { text } => self.say(tag, text),
            Command::History { limit, before } => self.history(tag, limit, before),
            Command::Who => Ok(Some(self.who(tag))),
            Command::Ping { token } => Ok(Some(reply::ok(tag, Verb::Ping, token.unwrap_or("")))),
            Command::Quit => {
                self.reply(reply::ok(tag, Verb::Quit, ""));
                return Flow::Quit;
            }
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(line)) => self.reply(line),
            Err(code) => self.reply(reply::err(tag, Some(verb), code)),
        }
        Flow::Continue
    }

    /// Queues a reply produced on this thread. Every reply still owed by
    /// the journal (the `OK SAY`/`ERR SAY` of messages being stored) is
    /// queued first: this is the one place a session's own replies enter
    /// its outbox, so no reply, refusals included, can overtake an earlier
    /// command's (PROTOCOL.md 1). Accepted SAYs never come through here, so
    /// pipelined SAYs do not wait for each other.
    fn reply(&mut self, line: WireLine) {
        self.await_acks();
        self.outbox.reply(line);
    }

    /// `REGISTER`: validate, refuse a taken name before spending bcrypt on
    /// it, hash on the pool, create through the journal, log in.
    fn register(
        &mut self,
        tag: Option<&str>,
        username: &str,
        password: &str,
        full_name: &str,
    ) -> Result<Option<WireLine>, ErrorCode> {
        let username = validate::username(username)?;
        let password = validate::password(password)?;
        let full_name = validate::full_name(full_name)?;
        let shared = self.shared;
        if let Some(addr) = self.limited_address
            && !shared.limits.registrations.allows(&addr)
        {
            log::warn!("connection {} from {}: registrations rate-limited", self.id, self.peer);
            return Err(ErrorCode::RateLimited);
        }
        if shared
            .store
            .find_account(username)
            .map_err(|e| self.db_error("registration", &e))?
            .is_some()
        {
            return Err(ErrorCode::UserExists);
        }
        let password_hash = shared.hasher.hash(password).map_err(|e| {
            log::error!("connection {}: hashing failed: {e}", self.id);
            ErrorCode::Internal
        })?;
        let new = NewAccount {
            username: username.to_string(),
            full_name: full_name.to_string(),
            password_hash,
        };
        let account = match shared.journal.register(new) {
            Ok(account) => account,
            Err(CreateAccountError::UserExists) => return Err(ErrorCode::UserExists),
            Err(CreateAccountError::Store(e)) => return Err(self.db_error("registration", &e)),
        };
        if let Some(addr) = self.limited_address {
            shared.limits.registrations.take(&addr);
        }
        log::info!(
            "connection {} from {}: registered {}",
            self.id,
            self.peer,
            account.username
        );
        let fields = format!("{} {}", account.username, account.full_name);
        self.enter(&account, reply::ok(tag, Verb::Register, &fields));
        Ok(None)
    }

    /// `LOGIN`: any failure is `bad-credentials`, after the same bcrypt work
    /// whether or not the account exists.
    fn login(&mut self, tag: Option<&str>, username: &str, password: &str) -> Result<Option<WireLine>, ErrorCode> {
        let shared = self.shared;
        // Throttles come before any work: a brute force gets its refusal
        // without costing a bcrypt run. Names are counted whether or not the
        // account exists, so the throttle does not tell which exist.
        let name_key = throttle_key(username);
        let limits = &shared.limits;
        let throttled = !limits.account_failures.allows(&name_key)
            || self
                .limited_address
                .is_some_and(|addr| !limits.address_failures.allows(&addr));
        if throttled {
            log::warn!("connection {} from {}: login rate-limited", self.id, self.peer);
            return Err(ErrorCode::RateLimited);
        }
        let account = match validate::username(username) {
            Ok(name) => shared
                .store
                .find_account(name)
                .map_err(|e| self.db_error("login", &e))?,
            Err(_) => None,
        };
        let hash = account.as_ref().map(|a| a.password_hash.as_str());
        let valid = validate::could_be_password(password);
        if !shared.hasher.verify(password, hash) || !valid {
            log::info!("connection {} from {}: failed login", self.id, self.peer);
            limits.account_failures.take(&name_key);
            if let Some(addr) = self.limited_address {
                limits.address_failures.take(&addr);
            }
            return Err(ErrorCode::BadCredentials);
        }
        let Some(account) = account else {
            return Err(ErrorCode::BadCredentials);
        };
        log::info!(
            "connection {} from {}: {} logged in",
            self.id,
            self.peer,
            account.username
        );
        let fields = format!("{} {}", account.username, account.full_name);
        self.enter(&account, reply::ok(tag, Verb::Login, &fields));
        Ok(None)
    }

    /// Marks the session logged in and queues its reply ahead of any event.
    fn enter(&mut self, account: &Account, reply: WireLine) {
        // The login timeout no longer applies.
        let _ = self.socket.set_read_timeout(None);
        self.shared.registry.log_in(self.id, account, &self.outbox, reply);
        self.logged_in = Some(LoggedIn {
            account_id: account.id,
            username: Arc::from(account.username.as_str()),
        });
    }

    /// `SAY`: validated here, stored and acknowledged by the journal.
    fn say(&mut self, tag: Option<&str>, text: &str) -> Result<Option<WireLine>, ErrorCode> {
        let text = validate::text(text)?;
        let limits = &self.shared.limits;
        if limits.msg_rate.is_enabled() && !self.messages.try_take(limits.msg_rate, limits.clock.now()) {
            return Err(ErrorCode::RateLimited);
        }
        let Some(me) = &self.logged_in else {
            return Err(ErrorCode::NotLoggedIn);
        };
        let op = SayOp {
            message: NewMessage {
                user_id: me.account_id,
                body: text.to_string(),
                tag: tag.map(str::to_string),
            },
            author: Arc::clone(&me.username),
            connection: self.id,
            outbox: Arc::clone(&self.outbox),
            done: self.ack_sender.clone(),
        };
        if !self.shared.journal.say(op) {
            return Err(ErrorCode::DbError);
        }
        self.in_flight += 1;
        // Collect acknowledgements already in, so the count stays small.
        while self.acked.try_recv().is_ok() {
            self.in_flight -= 1;
        }
        Ok(None)
    }

    /// `HISTORY`: one contiguous reply of `MSG` lines and `OK HISTORY`.
    fn history(&self, tag: Option<&str>, limit: u32, before: Option<i64>) -> Result<Option<WireLine>, ErrorCode> {
        let messages = self
            .shared
            .store
            .history(limit, before)
            .map_err(|e| self.db_error("history", &e))?;
        let mut out = String::with_capacity(messages.len() * 64 + 32);
        for m in &messages {
            reply::push_msg(&mut out, m.id, m.ts, &m.username, &m.body);
        }
        reply::push_ok(&mut out, tag, Verb::History, &messages.len().to_string());
        Ok(Some(WireLine::from(out.into_bytes())))
    }

    /// `WHO`: one `USER` line per online account, then `OK WHO`.
    fn who(&self, tag: Option<&str>) -> WireLine {
        let online = self.shared.registry.who();
        let mut out = String::with_capacity(online.len() * 48 + 32);
        for (username, full_name) in &online {
            out.push_str("USER ");
            out.push_str(username);
            out.push(' ');
            out.push_str(full_name);
            out.push('\n');
        }
        reply::push_ok(&mut out, tag, Verb::Who, &online.len().to_string());
        WireLine::from(out.into_bytes())
    }

    /// Waits until every SAY in flight is acknowledged.
    fn await_acks(&mut self) {
        while self.in_flight > 0 {
            if self.acked.recv().is_err() {
                // The journal is gone: its replies will never come.
                self.in_flight = 0;
                return;
            }
            self.in_flight -= 1;
        }
    }

    fn db_error(&self, what: &str, e: &dyn std::fmt::Display) -> ErrorCode {
        log::error!("connection {}: {what} failed in storage: {e}", self.id);
        ErrorCode::DbError
    }

    /// Ends the session: its SAYs are acknowledged first, then it leaves
    /// the registry (LEAVE if it was the account's last session) and the
    /// writer flushes and closes the connection.
    fn close(&mut self) {
        self.await_acks();
        if let Some(me) = self.logged_in.take() {
            log::info!("connection {}: {} left", self.id, me.username);
            self.shared.registry.log_out(self.id);
        }
        self.shared.registry.disconnect(self.id);
        self.outbox.finish();
    }
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

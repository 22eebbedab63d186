//! One IRC client's conversation with the server (PROTOCOL.md 13):
//! registration (capability negotiation, SASL PLAIN or PASS, NICK, USER),
//! then IRC's commands, each mapped onto the core's command table and
//! answered with IRC lines.
//!
//! The connection's thread hands every line to [`IrcClient::line`]. The
//! client never writes to the socket: it encodes its answers and queues
//! them through its session, in command order, as charla's own front end
//! does; messages are stored by the journal before anyone, their sender
//! included, sees them.

use std::sync::Arc;

use crate::core::code::ErrorCode;
use crate::core::commands::{self, Args, Outcome};
use crate::core::reply::{Answer, Person, ReplyTo};
use crate::core::rooms;
use crate::core::session::Session;
use crate::core::validate;
use crate::proto::irc::{self as wire, Ctcp, Size};

use super::caps::{self, Cap};
use super::codec::{IrcCodec, Request, refuse_message};
use super::history;
use super::lines::{self, Response, user_source};

/// SASL failures a connection may have; the last is followed by `ERROR`
/// and the close.
const MAX_SASL_FAILURES: u8 = 3;
/// A SASL payload line this long means more follows.
const SASL_CHUNK: usize = 400;
/// The longest SASL PLAIN payload accepted, base64 (a username, a password
/// and an authorization identity fit many times over).
const MAX_SASL_PAYLOAD: usize = 4 * SASL_CHUNK;
/// Commands that need registration: before it they get `451`, not `421`.
const NEED_REGISTRATION: &[&str] = &[
    "PRIVMSG",
    "JOIN",
    "PART",
    "NAMES",
    "WHO",
    "WHOIS",
    "ISON",
    "USERHOST",
    "LIST",
    "TOPIC",
    "MODE",
    "AWAY",
    "CHATHISTORY",
    "TAGMSG",
    "MOTD",
    // RFC 2812 commands not offered: known all the same, so 451 before
    // registration (421 after, as nothing answers them).
    "WHOWAS",
    "KICK",
    "INVITE",
    "LUSERS",
    "VERSION",
    "STATS",
    "LINKS",
    "TIME",
    "CONNECT",
    "TRACE",
    "ADMIN",
    "INFO",
    "SERVLIST",
    "SQUERY",
    "KILL",
    "REHASH",
    "DIE",
    "RESTART",
    "SUMMON",
    "USERS",
    "WALLOPS",
    "OPER",
    "SERVICE",
    "SQUIT",
];

/// What the connection does after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// Close the connection (after what is queued).
    Close,
}

/// Where registration stands.
#[derive(Debug, Default)]
struct Registration {
    /// `CAP LS` or `CAP REQ` came and `CAP END` has not: registration waits.
    negotiating: bool,
    /// The nick sent, if any.
    nick: Option<String>,
    /// Whether `USER` came.
    user: bool,
    /// The password of `PASS`.
    pass: Option<String>,
    /// The base64 payload so far of an `AUTHENTICATE PLAIN` under way.
    sasl: Option<String>,
    /// SASL failures so far.
    sasl_failures: u8,
    /// The account SASL logged in as.
    authenticated: Option<Arc<str>>,
}

/// One IRC client: its session with the core, its codec, and where its
/// registration stands.
pub struct IrcClient<'c> {
    /// The session, as every front end has.
    session: Session<'c>,
    /// The codec its outbox encodes with: nick and capabilities.
    codec: Arc<IrcCodec>,
    /// `Some` until registration ends.
    registration: Option<Registration>,
    /// Whether the session logged in through SASL (for `907`).
    sasl_account: bool,
}

impl<'c> IrcClient<'c> {
    /// The client of `session`, whose outbox encodes with `codec`.
    pub fn new(session: Session<'c>, codec: Arc<IrcCodec>) -> IrcClient<'c> {
        IrcClient {
            session,
            codec,
            registration: Some(Registration::default()),
            sasl_account: false,
        }
    }

    /// Whether registration has ended (the login deadline no longer
    /// applies).
    pub fn is_registered(&self) -> bool {
        self.registration.is_none()
    }

    /// The connection's id, for logs.
    pub fn session_id(&self) -> crate::core::feed::ConnectionId {
        self.session.id()
    }

    /// Ends the session (its messages acknowledged first).
    pub fn close(&mut self) {
        self.session.close();
    }

    /// Queues bytes as the answer to the current command. Before
    /// registration ends events stay held, even after a SASL login: they
    /// follow the registration burst.
    fn emit(&mut self, bytes: Vec<u8>) {
        if self.registration.is_some() {
            self.session.outbox().raw_reply(bytes);
        } else {
            self.session.emit_raw(bytes);
        }
    }

    /// An empty response: an `ACK` for a labelled command that has nothing
    /// else to say (labeled-response), nothing otherwise.
    fn acknowledge(&mut self, label: Option<&str>) -> Flow {
        if label.is_some() {
            let response = Response::new(self.codec.server(), &self.codec.nick());
            self.send(response, label);
        }
        Flow::Continue
    }

    /// Writes `response` for a command labelled `label`, and queues it.
    fn send(&mut self, response: Response, label: Option<&str>) {
        let mut out = Vec::new();
        self.codec.write(response, label, None, &mut out);
        self.emit(out);
    }

    /// Sends one numeric to the client.
    fn numeric(&mut self, label: Option<&str>, code: &str, params: &[&str]) {
        let nick = self.codec.nick();
        let mut response = Response::new(self.codec.server(), &nick);
        response.numeric(code, params);
        self.send(response, label);
    }

    /// Sends `ERROR` with `text`; the connection closes after it.
    fn error(&mut self, text: &str) -> Flow {
        let mut out = Vec::new();
        wire::write_line(&mut out, &[], None, "ERROR", &[text], true);
        self.emit(out);
        Flow::Close
    }

    /// A line as read from the wire (its line ending removed).
    pub fn line(&mut self, bytes: &[u8]) -> Flow {
        if let Size::TooLong = wire::check_size(bytes) {
            self.numeric(None, "417", &["Input line was too long"]);
            return Flow::Continue;
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Flow::Continue;
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => text,
            // A NOTICE never gets an answer, even to say why it was
            // dropped (PROTOCOL.md 13.2).
            _ if wire::command_is(bytes, b"NOTICE") => return Flow::Continue,
            Ok(_) => return self.notice_and_continue("Line ignored: it holds a NUL byte"),
            Err(_) => return self.notice_and_continue("Line ignored: it is not valid UTF-8"),
        };
        if text.contains('\r') {
            return self.notice_and_continue("Line ignored: it holds a carriage return inside it");
        }
        let Ok(message) = wire::parse(text) else {
            return Flow::Continue;
        };
        let label = message.tag("label").map(str::to_string);
        let command = message.command.to_ascii_uppercase();
        self.command(&command, &message.params, label.as_deref())
    }

    /// A line over the limit while reading (PROTOCOL.md 13.3): `417`, and
    /// the connection stays usable.
    pub fn too_long(&mut self) -> Flow {
        self.numeric(None, "417", &["Input line was too long"]);
        Flow::Continue
    }

    /// Tells the client something in a `NOTICE`.
    fn notice_and_continue(&mut self, text: &str) -> Flow {
        let nick = self.codec.nick();
        let mut response = Response::new(self.codec.server(), &nick);
        response.notice(text);
        self.send(response, None);
        Flow::Continue
    }

    /// Runs one command.
    fn command(&mut self, command: &str, params: &[&str], label: Option<&str>) -> Flow {
        match command {
            "CAP" => self.cap(params, label),
            "AUTHENTICATE" => self.authenticate(params),
            "PASS" => self.pass(params, label),
            "NICK" => self.nick(params, label),
            "USER" => self.user(params, label),
            "PING" => self.ping(params, label),
            "PONG" => self.acknowledge(label),
            "QUIT" => self.error(&format!("Closing link: {} (Quit)", self.codec.nick())),
            // A NOTICE never gets an answer, registered or not.
            "NOTICE" if !self.is_registered() => Flow::Continue,
            _ if !self.is_registered() && NEED_REGISTRATION.contains(&command) => {
                self.numeric(label, "451", &["You have not registered"]);
                Flow::Continue
            }
            "PRIVMSG" => self.message(params, label, false),
            "NOTICE" => self.message(params, label, true),
            "JOIN" => self.join(params, label),
            "PART" => self.part(params, label),
            "NAMES" => self.names(params, label),
            "WHO" => self.who(params, label),
            "WHOIS" => self.whois(params, label),
            "ISON" => self.ison(params, label),
            "USERHOST" => self.userhost(params, label),
            "LIST" => self.list(label),
            "TOPIC" => self.topic(params, label),
            "MODE" => self.mode(params, label),
            "AWAY" => self.away(params, label),
            "MOTD" => self.motd(label),
            "CHATHISTORY" => self.chathistory(params, label),
            // Client-only tags are neither stored nor relayed.
            "TAGMSG" => self.acknowledge(label),
            _ => {
                self.numeric(label, "421", &[command, "Unknown command"]);
                Flow::Continue
            }
        }
    }

    /// `CAP LS|LIST|REQ|END`.
    fn cap(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let nick = self.codec.nick();
        let sub = params.first().map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        let mut response = Response::new(self.codec.server(), &nick);
        match sub.as_str() {
            "LS" => {
                if let Some(registration) = &mut self.registration {
                    registration.negotiating = true;
                }
                let version: u32 = params.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
                response.line(None, "CAP", &[&nick, "LS", &caps::listing(version >= 302)], true);
            }
            "LIST" => response.line(None, "CAP", &[&nick, "LIST", &self.codec.caps.names()], true),
            "REQ" => {
                if let Some(registration) = &mut self.registration {
                    registration.negotiating = true;
                }
                let list = params.get(1).copied().unwrap_or("");
                match caps::request(list) {
                    Some((on, off)) => {
                        self.codec.caps.change(on, off);
                        response.line(None, "CAP", &[&nick, "ACK", list], true);
                    }
                    None => response.line(None, "CAP", &[&nick, "NAK", list], true),
                }
            }
            "END" => {
                let Some(registration) = &mut self.registration else {
                    return self.acknowledge(label);
                };
                registration.negotiating = false;
                if registration.sasl.take().is_some() {
                    self.numeric(None, "906", &["SASL authentication aborted"]);
                }
                return self.try_to_register();
            }
            _ => response.numeric("410", &[params.first().copied().unwrap_or("*"), "Invalid CAP command"]),
        }
        self.send(response, label);
        Flow::Continue
    }

    /// `AUTHENTICATE PLAIN`, then the payload in chunks; `AUTHENTICATE *`
    /// aborts.
    fn authenticate(&mut self, params: &[&str]) -> Flow {
        let Some(registration) = &mut self.registration else {
            if self.sasl_account {
                self.numeric(None, "907", &["You have already authenticated using SASL"]);
            } else {
                self.numeric(None, "462", &["You may not reregister"]);
            }
            return Flow::Continue;
        };
        let Some(&word) = params.first() else {
            self.numeric(None, "461", &["AUTHENTICATE", "Not enough parameters"]);
            return Flow::Continue;
        };
        if registration.authenticated.is_some() {
            self.numeric(None, "907", &["You have already authenticated using SASL"]);
            return Flow::Continue;
        }
        if word == "*" {
            registration.sasl = None;
            self.numeric(None, "906", &["SASL authentication aborted"]);
            return Flow::Continue;
        }
        let Some(payload) = &mut registration.sasl else {
            if word.eq_ignore_ascii_case("PLAIN") {
                registration.sasl = Some(String::new());
                let mut out = Vec::new();
                wire::write_line(&mut out, &[], None, "AUTHENTICATE", &["+"], false);
                self.emit(out);
            } else {
                let nick = self.codec.nick();
                let mut response = Response::new(self.codec.server(), &nick);
                response.numeric("908", &["PLAIN", "are available SASL mechanisms"]);
                response.numeric("904", &["SASL authentication failed"]);
                self.send(response, None);
            }
            return Flow::Continue;
        };
        if word != "+" {
            payload.push_str(word);
        }
        if payload.len() > MAX_SASL_PAYLOAD {
            registration.sasl = None;
            return self.sasl_refused("905", "SASL message too long", true);
        }
        if word.len() == SASL_CHUNK {
            return Flow::Continue;
        }
        let payload = registration.sasl.take().unwrap_or_default();
        let Ok((authzid, authcid, password)) = wire::sasl_plain(&payload) else {
            return self.sasl_failed(true);
        };
        if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(&authcid) {
            return self.sasl_failed(true);
        }
        match self.log_in(&authcid, &password) {
            Ok(username) => {
                let nick = self.codec.nick();
                let mut response = Response::new(self.codec.server(), &nick);
                let mask = user_source(&username);
                response.numeric(
                    "900",
                    &[&mask, &username, &format!("You are now logged in as {username}")],
                );
                response.numeric("903", &["SASL authentication successful"]);
                let mut out = Vec::new();
                self.codec.write(response, None, None, &mut out);
                // Not `emit`: events stay held until registration ends.
                self.session.outbox().raw_reply(out);
                if let Some(registration) = &mut self.registration {
                    registration.authenticated = Some(username);
                }
                Flow::Continue
            }
            Err(code) => self.sasl_failed(!matches!(code, ErrorCode::DbError | ErrorCode::Internal)),
        }
    }

    /// A SASL attempt failed: `904`, and after the last allowed failure
    /// `ERROR` and the close. `counts`: whether it counts as a failure
    /// (a storage fault is not the client's).
    fn sasl_failed(&mut self, counts: bool) -> Flow {
        self.sasl_refused("904", "SASL authentication failed", counts)
    }

    /// A SASL attempt refused with numeric `code` (`904`, or `905` for a
    /// payload too long), counted as [`IrcClient::sasl_failed`] says.
    fn sasl_refused(&mut self, code: &str, text: &str, counts: bool) -> Flow {
        self.numeric(None, code, &[text]);
        let Some(registration) = &mut self.registration else {
            return Flow::Continue;
        };
        registration.sasl = None;
        if counts {
            registration.sasl_failures += 1;
        }
        if registration.sasl_failures >= MAX_SASL_FAILURES {
            return self.error("Closing link: too many failed authentication attempts");
        }
        Flow::Continue
    }

    /// Logs the session in through the core's `LOGIN` (its throttles
    /// included); returns the username as registered.
    fn log_in(&mut self, username: &str, password: &str) -> Result<Arc<str>, ErrorCode> {
        let to = ReplyTo::new(None, Some("LOGIN"));
        let args = Args::from_parts(&[username, password], None)?;
        match commands::call(&mut self.session, &to, "LOGIN", &args)? {
            Outcome::Done(Answer::Account { username, .. }) => Ok(username),
            _ => Err(ErrorCode::Internal),
        }
    }

    /// `PASS password`: checked when registration ends.
    fn pass(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let Some(registration) = &mut self.registration else {
            self.numeric(label, "462", &["You may not reregister"]);
            return Flow::Continue;
        };
        match params.first() {
            Some(pass) => registration.pass = Some((*pass).to_string()),
            None => self.numeric(label, "461", &["PASS", "Not enough parameters"]),
        }
        Flow::Continue
    }

    /// `NICK name`: before registration, the account to log in as (unless
    /// SASL says otherwise); after it, only the username itself, in any
    /// case.
    fn nick(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let Some(&nick) = params.first().filter(|n| !n.is_empty()) else {
            self.numeric(label, "431", &["No nickname given"]);
            return Flow::Continue;
        };
        if !is_nick(nick) {
            self.numeric(label, "432", &[nick, "Erroneous nickname"]);
            return Flow::Continue;
        }
        let Some(registration) = &mut self.registration else {
            let current = self.codec.nick();
            if nick.eq_ignore_ascii_case(&current) {
                return self.acknowledge(label);
            }
            let taken = self
                .session
                .core()
                .store
                .find_account(nick)
                .map(|found| found.is_some())
                .unwrap_or(false);
            if taken {
                self.numeric(label, "433", &[nick, "Nickname is already in use"]);
            } else {
                self.numeric(label, "432", &[nick, "Erroneous nickname: your nick is your username"]);
            }
            return Flow::Continue;
        };
        registration.nick = Some(nick.to_string());
        self.codec.set_nick(nick);
        self.try_to_register()
    }

    /// `USER user mode unused :realname`: required, its values unused (the
    /// account has them).
    fn user(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let Some(registration) = &mut self.registration else {
            self.numeric(label, "462", &["You may not reregister"]);
            return Flow::Continue;
        };
        if params.len() < 4 || params[0].is_empty() {
            self.numeric(label, "461", &["USER", "Not enough parameters"]);
            return Flow::Continue;
        }
        registration.user = true;
        self.try_to_register()
    }

    /// Ends registration once `NICK` and `USER` came and capability
    /// negotiation is over: with the SASL login, or by logging in with
    /// `PASS` and the nick; without valid credentials, `464`, `ERROR` and
    /// the close.
    fn try_to_register(&mut self) -> Flow {
        let Some(registration) = &self.registration else {
            return Flow::Continue;
        };
        if registration.negotiating || !registration.user {
            return Flow::Continue;
        }
        let Some(nick) = registration.nick.clone() else {
            return Flow::Continue;
        };
        let username = match (&registration.authenticated, registration.pass.clone()) {
            (Some(username), _) => {
                self.sasl_account = true;
                Arc::clone(username)
            }
            (None, Some(pass)) => match self.log_in(&nick, &pass) {
                Ok(username) => username,
                Err(_) => return self.bad_password(),
            },
            (None, None) => return self.bad_password(),
        };
        self.registration = None;
        self.welcome(&nick, &username);
        Flow::Continue
    }

    /// Registration without valid credentials.
    fn bad_password(&mut self) -> Flow {
        self.numeric(None, "464", &["Password incorrect"]);
        self.error("Closing link: bad credentials; log in with SASL PLAIN or PASS and your username as NICK")
    }

    /// The registration burst: the nick made the username, `001`–`005`, the
    /// MOTD, and a `JOIN` with its names for `#general` and every room of
    /// the account. Events open right behind it.
    fn welcome(&mut self, sent_nick: &str, username: &str) {
        let mut out = Vec::new();
        if sent_nick != username {
            wire::write_line(&mut out, &[], Some(sent_nick), "NICK", &[username], false);
        }
        self.codec.set_nick(username);
        let server = self.codec.server().to_string();
        let version = format!("charla-{}", env!("CARGO_PKG_VERSION"));
        let mut response = Response::new(&server, username);
        response.numeric("001", &[&format!("Welcome to charla, {username}")]);
        response.numeric("002", &[&format!("Your host is {server}, running {version}")]);
        response.numeric("003", &["This server stores every message before anyone sees it"]);
        response.line(None, "004", &[username, &server, &version, "i", "nt"], false);
        response.numeric(
            "005",
            &[
                "CHANTYPES=#",
                "CASEMAPPING=ascii",
                "NICKLEN=32",
                "CHANNELLEN=33",
                "CHATHISTORY=1000",
                "MSGREFTYPES=msgid,timestamp",
                "CLIENTTAGDENY=*",
                "NETWORK=charla",
                "PREFIX=()",
                "CHANMODES=,,,nt",
                "are supported by this server",
            ],
        );
        motd(&mut response);
        let account = self.session.account().map(|(id, _)| id).unwrap_or(0);
        let mut channels: Vec<Arc<str>> = vec![Arc::from(rooms::LOBBY)];
        channels.extend(self.session.core().rooms.rooms_of(account).into_iter().map(|r| r.name));
        let me = user_source(username);
        for channel in &channels {
            response.line(Some(&me), "JOIN", &[channel], false);
            let online = self.online_in(channel);
            let refs: Vec<&str> = online.iter().map(String::as_str).collect();
            lines::names(&mut response, channel, &refs);
        }
        self.codec.write(response, None, None, &mut out);
        log::info!("connection {}: {username} registered over IRC", self.session.id());
        self.emit(out);
    }

    /// The usernames online in `channel` (everyone's for `#general`),
    /// sorted; empty for a channel that is not a room.
    fn online_in(&mut self, channel: &str) -> Vec<String> {
        self.people_in(channel).into_iter().map(|p| p.username).collect()
    }

    /// The people online in `channel`, with their full names, as
    /// [`IrcClient::online_in`] lists them.
    fn people_in(&mut self, channel: &str) -> Vec<Person> {
        let core = self.session.core();
        let people = if rooms::is_lobby(channel) {
            core.presence.who(None)
        } else {
            match core.rooms.find(channel) {
                Some(room) => core.presence.who(Some(&core.rooms.members(room.id))),
                None => return Vec::new(),
            }
        };
        match people {
            Ok(people) => people,
            Err(e) => {
                log::warn!("connection {}: who failed: {e}", self.session.id());
                Vec::new()
            }
        }
    }

    /// `PING token`.
    fn ping(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let Some(token) = params.first() else {
            self.numeric(label, "409", &["No origin specified"]);
            return Flow::Continue;
        };
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let mut response = Response::new(&server, &nick);
        response.line(None, "PONG", &[&server, token], true);
        self.send(response, label);
        Flow::Continue
    }

    /// `PRIVMSG targets :text` (or `NOTICE`): stored as `SEND` to each
    /// target, echoed once stored if the client has `echo-message`.
    fn message(&mut self, params: &[&str], label: Option<&str>, notice: bool) -> Flow {
        let (Some(&targets), Some(&text)) = (params.first(), params.get(1)) else {
            if !notice {
                let (code, text) = if params.is_empty() {
                    ("411", "No recipient given (PRIVMSG)")
                } else {
                    ("412", "No text to send")
                };
                self.numeric(label, code, &[text]);
            }
            return Flow::Continue;
        };
        let text = match wire::ctcp(text) {
            // An ACTION with nothing to do breaks 5.2 like an empty text:
            // "/me" alone would be stored as an ordinary text.
            Ctcp::Action(action) if wire::strip_formatting(action).trim_matches([' ', '\t']).is_empty() => {
                String::new()
            }
            Ctcp::Action(action) => format!("/me {}", action.trim_start_matches(' ')),
            // Other CTCP requests are ignored and not answered.
            Ctcp::Other => {
                if !notice {
                    self.send(Response::new(self.codec.server(), &self.codec.nick()), label);
                }
                return Flow::Continue;
            }
            Ctcp::None => text.to_string(),
        };
        let text = wire::strip_formatting(&text).into_owned();
        let mut label = label;
        for target in targets.split(',').filter(|t| !t.is_empty()) {
            self.message_to(target, &text, label.take(), notice);
        }
        Flow::Continue
    }

    /// One target of a `PRIVMSG` or `NOTICE`.
    fn message_to(&mut self, target: &str, text: &str, label: Option<&str>, notice: bool) {
        let written = if target.starts_with('#') {
            target.to_string()
        } else {
            format!("@{target}")
        };
        let request = Request {
            label: label
                .filter(|_| self.codec.caps.has(Cap::LABELED_RESPONSE))
                .map(str::to_string),
            notice,
            target: target.to_string(),
        };
        let mut to = ReplyTo::from_front("SEND", Arc::new(request));
        to.echo = self.codec.caps.has(Cap::ECHO_MESSAGE);
        let ran = Args::from_parts(&[&written], Some(text))
            .and_then(|args| commands::call(&mut self.session, &to, "SEND", &args));
        match ran {
            // The journal queues the reply once the message is stored.
            Ok(Outcome::Deferred) => {}
            // A tag's earlier message cannot happen here: IRC sends none.
            Ok(_) => {}
            Err(_) if notice => {
                self.acknowledge(label);
            }
            Err(code) => {
                let nick = self.codec.nick();
                let mut response = Response::new(self.codec.server(), &nick);
                refuse_message(&mut response, code, target);
                self.send(response, label);
            }
        }
    }

    /// `JOIN #a,#b`: section 9's `JOIN`, answered with the `JOIN` and the
    /// names.
    fn join(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let Some(&channels) = params.first() else {
            self.numeric(label, "461", &["JOIN", "Not enough parameters"]);
            return Flow::Continue;
        };
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let mut response = Response::new(&server, &nick);
        for channel in channels.split(',').filter(|c| !c.is_empty()) {
            self.join_one(&mut response, channel);
        }
        self.send(response, label);
        Flow::Continue
    }

    /// One channel of a `JOIN`.
    fn join_one(&mut self, response: &mut Response, channel: &str) {
        if channel == "0" {
            response.notice("JOIN 0 is not supported: leave rooms one by one with PART");
            return;
        }
        if !channel.starts_with('#') {
            response.numeric("403", &[channel, "No such channel"]);
            return;
        }
        let account = self.session.account().map(|(id, _)| id).unwrap_or(0);
        let core = self.session.core();
        // Already in: nothing to say, as IRC servers do.
        if rooms::is_lobby(channel)
            || core
                .rooms
                .find(channel)
                .is_some_and(|r| core.rooms.is_member(r.id, account))
        {
            return;
        }
        let to = ReplyTo::new(None, Some("JOIN"));
        let ran =
            Args::from_parts(&[channel], None).and_then(|args| commands::call(&mut self.session, &to, "JOIN", &args));
        match ran {
            Ok(Outcome::Done(Answer::Room(name))) => {
                response.line(Some(&user_source(response.nick())), "JOIN", &[&name], false);
                let online = self.online_in(&name);
                let refs: Vec<&str> = online.iter().map(String::as_str).collect();
                lines::names(response, &name, &refs);
            }
            Ok(_) => {}
            Err(ErrorCode::InvalidRoom | ErrorCode::BadRequest) => {
                response.numeric("479", &[channel, "Illegal channel name"]);
            }
            Err(ErrorCode::LimitReached) => response.numeric("405", &[channel, "You have joined too many channels"]),
            Err(code) => response.notice(&format!("Cannot join {channel}: {}", code.default_text())),
        }
    }

    /// `PART #a,#b [:reason]`: section 9's `PART`; `#general` cannot be
    /// left.
    fn part(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let Some(&channels) = params.first() else {
            self.numeric(label, "461", &["PART", "Not enough parameters"]);
            return Flow::Continue;
        };
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let mut response = Response::new(&server, &nick);
        for channel in channels.split(',').filter(|c| !c.is_empty()) {
            if rooms::is_lobby(channel) {
                response.notice(&format!("{} cannot be left: everyone is in it", rooms::LOBBY));
                continue;
            }
            if validate::room(channel).is_ok() && self.session_core().rooms.find(channel).is_none() {
                response.numeric("403", &[channel, "No such channel"]);
                continue;
            }
            let to = ReplyTo::new(None, Some("PART"));
            let ran = Args::from_parts(&[channel], None)
                .and_then(|args| commands::call(&mut self.session, &to, "PART", &args));
            match ran {
                Ok(Outcome::Done(Answer::Room(name))) => {
                    response.line(Some(&user_source(&nick)), "PART", &[&name], false);
                }
                Ok(_) => {}
                Err(ErrorCode::NoSuchRoom | ErrorCode::InvalidRoom | ErrorCode::BadRequest) => {
                    response.numeric("403", &[channel, "No such channel"]);
                }
                Err(ErrorCode::NotMember) => response.numeric("442", &[channel, "You're not on that channel"]),
                Err(code) => response.notice(&format!("Cannot leave {channel}: {}", code.default_text())),
            }
        }
        self.send(response, label);
        Flow::Continue
    }

    /// `NAMES #a,#b`: the members online.
    fn names(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let mut response = Response::new(&server, &nick);
        match params.first() {
            None => response.numeric("366", &["*", "End of /NAMES list"]),
            Some(channels) => {
                for channel in channels.split(',').filter(|c| !c.is_empty()) {
                    let name = self.channel_name(channel);
                    let online = self.visible_in(&name);
                    let refs: Vec<&str> = online.iter().map(String::as_str).collect();
                    lines::names(&mut response, &name, &refs);
                }
            }
        }
        self.send(response, label);
        Flow::Continue
    }

    /// A channel's name with the room's own case, or as written if there
    /// is no such room.
    fn channel_name(&self, channel: &str) -> String {
        if rooms::is_lobby(channel) {
            return rooms::LOBBY.to_string();
        }
        let core = self.session_core();
        core.rooms
            .find(channel)
            .map_or_else(|| channel.to_string(), |room| room.name.to_string())
    }

    /// The core, through the session.
    fn session_core(&self) -> &'c crate::core::Core {
        self.session_ref().core()
    }

    /// The session, shared.
    fn session_ref(&self) -> &Session<'c> {
        &self.session
    }

    /// `WHO #room` or `WHO nick`: `352` per person online, then `315`.
    fn who(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let mask = params.first().copied().unwrap_or("*");
        let mut response = Response::new(&server, &nick);
        let (channel, people) = if mask.starts_with('#') {
            let name = self.channel_name(mask);
            let online = if self.can_see(&name) {
                self.people_in(&name)
            } else {
                Vec::new()
            };
            (name, online)
        } else {
            let online = self.people_in(rooms::LOBBY);
            let found: Vec<Person> = online
                .into_iter()
                .filter(|p| p.username.eq_ignore_ascii_case(mask))
                .collect();
            ("*".to_string(), found)
        };
        for Person {
            username: person,
            full_name,
        } in &people
        {
            response.numeric(
                "352",
                &[
                    &channel,
                    person,
                    lines::USER_HOST,
                    &server,
                    person,
                    "H",
                    &format!("0 {full_name}"),
                ],
            );
        }
        response.numeric("315", &[mask, "End of WHO list"]);
        self.send(response, label);
        Flow::Continue
    }

    /// `WHOIS nick`: who an account is.
    fn whois(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let Some(&target) = params.last() else {
            self.numeric(label, "431", &["No nickname given"]);
            return Flow::Continue;
        };
        let mut response = Response::new(&server, &nick);
        match self.session_core().store.find_account(target) {
            Ok(Some(account)) => {
                let name = account.username;
                response.numeric("311", &[&name, &name, lines::USER_HOST, "*", &account.full_name]);
                if self.online_in(rooms::LOBBY).contains(&name) {
                    response.numeric("312", &[&name, &server, "charla"]);
                }
                response.numeric("318", &[&name, "End of /WHOIS list"]);
            }
            _ => {
                response.numeric("401", &[target, "No such nick/channel"]);
                response.numeric("318", &[target, "End of /WHOIS list"]);
            }
        }
        self.send(response, label);
        Flow::Continue
    }

    /// The usernames among `nicks` (each possibly several, space
    /// separated) that are online, in their registered case, in the order
    /// asked; at most `max`.
    fn online_among(&mut self, nicks: &[&str], max: usize) -> Vec<String> {
        let online = self.online_in(rooms::LOBBY);
        nicks
            .iter()
            .flat_map(|param| param.split(' '))
            .filter(|nick| !nick.is_empty())
            .take(max)
            .filter_map(|nick| online.iter().find(|u| u.eq_ignore_ascii_case(nick)).cloned())
            .collect()
    }

    /// `ISON nick...`: `303` with those online (what `/notify` polls, in
    /// irssi and in WeeChat, on a server without `MONITOR`).
    fn ison(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        if params.is_empty() {
            self.numeric(label, "461", &["ISON", "Not enough parameters"]);
            return Flow::Continue;
        }
        let online = self.online_among(params, usize::MAX).join(" ");
        self.numeric(label, "303", &[&online]);
        Flow::Continue
    }

    /// `USERHOST nick...` (up to 5): `302` with `nick=+nick@charla` for
    /// each online (`+`: away is not kept).
    fn userhost(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        if params.is_empty() {
            self.numeric(label, "461", &["USERHOST", "Not enough parameters"]);
            return Flow::Continue;
        }
        let replies: Vec<String> = self
            .online_among(params, 5)
            .iter()
            .map(|name| format!("{name}=+{name}@{}", lines::USER_HOST))
            .collect();
        self.numeric(label, "302", &[&replies.join(" ")]);
        Flow::Continue
    }

    /// The usernames online in `channel` that this client may see: every
    /// room's for its members (and `#general`'s for everyone), nobody's
    /// for a room it is not in (PROTOCOL.md 9.2: a room's WHO needs
    /// membership).
    fn visible_in(&mut self, channel: &str) -> Vec<String> {
        if self.can_see(channel) {
            self.online_in(channel)
        } else {
            Vec::new()
        }
    }

    /// Whether this account may see who is in `channel`: the lobby, or a
    /// room it is a member of.
    fn can_see(&self, channel: &str) -> bool {
        let account = self.session.account().map(|(id, _)| id).unwrap_or(0);
        let core = self.session_core();
        rooms::is_lobby(channel)
            || core
                .rooms
                .find(channel)
                .is_some_and(|room| core.rooms.is_member(room.id, account))
    }

    /// `LIST`: every room with its member count, then `323`.
    fn list(&mut self, label: Option<&str>) -> Flow {
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let mut response = Response::new(&server, &nick);
        let to = ReplyTo::new(None, Some("ROOMS"));
        match commands::call(&mut self.session, &to, "ROOMS", &Args::default()) {
            Ok(Outcome::Done(Answer::Rooms(listing))) => {
                for room in listing {
                    response.numeric("322", &[&room.name, &room.members.to_string(), ""]);
                }
            }
            Ok(_) => {}
            Err(code) => response.notice(&format!("LIST failed: {}", code.default_text())),
        }
        response.numeric("323", &["End of /LIST"]);
        self.send(response, label);
        Flow::Continue
    }

    /// `TOPIC #room`: rooms have no topic.
    fn topic(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let Some(&channel) = params.first() else {
            self.numeric(label, "461", &["TOPIC", "Not enough parameters"]);
            return Flow::Continue;
        };
        if self.is_channel(channel) {
            let name = self.channel_name(channel);
            self.numeric(label, "331", &[&name, "No topic is set"]);
        } else {
            self.numeric(label, "403", &[channel, "No such channel"]);
        }
        Flow::Continue
    }

    /// Whether `channel` names `#general` or a live room.
    fn is_channel(&self, channel: &str) -> bool {
        rooms::is_lobby(channel) || self.session_core().rooms.find(channel).is_some()
    }

    /// `MODE`: queries are answered; nothing changes.
    fn mode(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let Some(&target) = params.first() else {
            self.numeric(label, "461", &["MODE", "Not enough parameters"]);
            return Flow::Continue;
        };
        let nick = self.codec.nick();
        if target.starts_with('#') {
            if !self.is_channel(target) {
                self.numeric(label, "403", &[target, "No such channel"]);
                return Flow::Continue;
            }
            let name = self.channel_name(target);
            match params.get(1).map(|m| m.trim_start_matches('+')) {
                None | Some("") => {
                    let server = self.codec.server().to_string();
                    let mut response = Response::new(&server, &nick);
                    response.line(None, "324", &[&nick, &name, "+nt"], false);
                    self.send(response, label);
                }
                Some("b") => self.numeric(label, "368", &[&name, "End of channel ban list"]),
                Some(_) => self.numeric(
                    label,
                    "482",
                    &[&name, "You're not channel operator: rooms have no modes to change"],
                ),
            }
        } else if target.eq_ignore_ascii_case(&nick) {
            let server = self.codec.server().to_string();
            let mut response = Response::new(&server, &nick);
            response.line(None, "221", &[&nick, "+"], false);
            self.send(response, label);
        } else {
            self.numeric(label, "502", &["Can't change mode for other users"]);
        }
        Flow::Continue
    }

    /// `AWAY [:message]`: accepted.
    fn away(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        if params.first().is_some_and(|m| !m.is_empty()) {
            self.numeric(label, "306", &["You have been marked as being away"]);
        } else {
            self.numeric(label, "305", &["You are no longer marked as being away"]);
        }
        Flow::Continue
    }

    /// `MOTD`.
    fn motd(&mut self, label: Option<&str>) -> Flow {
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let mut response = Response::new(&server, &nick);
        motd(&mut response);
        self.send(response, label);
        Flow::Continue
    }

    /// `CHATHISTORY`: see [`history`].
    fn chathistory(&mut self, params: &[&str], label: Option<&str>) -> Flow {
        let nick = self.codec.nick();
        let server = self.codec.server().to_string();
        let mut response = Response::new(&server, &nick);
        let group = history::run(&mut self.session, params, &mut response, self.codec.caps.bits());
        let mut out = Vec::new();
        let group = group.as_ref().map(|target| ("chathistory", target.as_str()));
        self.codec.write(response, label, group, &mut out);
        self.emit(out);
        Flow::Continue
    }
}

/// The message of the day.
fn motd(response: &mut Response) {
    response.numeric("375", &["- charla Message of the day -"]);
    for line in [
        "- charla: the same rooms and accounts as charla's own clients.",
        "- Every message is stored before anyone sees it.",
        "- Rooms are channels: /join #room; #general is everyone's.",
    ] {
        response.numeric("372", &[line]);
    }
    response.numeric("376", &["End of /MOTD command"]);
}

/// Whether `nick` is usable as an IRC nick at all: not empty, no
/// characters IRC gives a meaning to, not starting like a channel or a
/// trailing parameter.
fn is_nick(nick: &str) -> bool {
    !nick.is_empty()
        && nick.len() <= 64
        && !nick.starts_with(['#', ':', '$', '&'])
        && !nick
            .chars()
            .any(|c| matches!(c, ' ' | ',' | '*' | '?' | '!' | '@') || c.is_control() || validate::is_refused(c))
}

//! The terminal client behind the `charla` binary: the dialogue of the
//! original lab (log in or register), then the chat.
//!
//! # Layout
//!
//! - [`session`]: the main thread's flow: menu, login, registration, chat,
//!   and the matching of the server's replies to the commands sent.
//! - [`connection`]: the socket (plain or TLS), and the reader thread that
//!   parses server lines onto a channel.
//! - [`tls`]: `--tls` and `--ca`: which certificates are trusted, the name
//!   checked, and why a handshake failed.
//! - [`failover`]: what the session needs to survive a lost server
//!   (PROTOCOL.md 10.3): the thread that tries the addresses in turn with
//!   backoff, and where the client is in the sequence of message ids, so a
//!   catch-up with `SYNC` shows every missed message once, in order.
//! - [`console`]: the person's side: on a terminal, raw mode for the whole
//!   session, one thread reading keys into one queue that lives as long as
//!   the program (nothing typed ahead or pasted is lost, no password is ever
//!   echoed) and one thread drawing the prompt and printing above it;
//!   otherwise plain lines from stdin. Also the terminal's settings and
//!   signals.
//! - [`editor`]: the line editor behind the terminal prompt, a pure state
//!   machine from key events to a line and the row that shows it.
//! - [`typed`]: what a typed chat line means (message, `/join`, `/msg`,
//!   `/who`, `salir`...), Spanish and English spellings alike.
//! - [`rooms`]: the rooms the account is in, as far as the client has
//!   heard, and the current room that plain lines go to.
//! - [`display`]: how messages and lists from the network look on screen,
//!   each message saying where it belongs (lobby, `#sala`, `privado`).
//! - [`i18n`]: every sentence, in Spanish and English.
//! - [`share`]: sharing files (PROTOCOL.md 11): the offers this client
//!   made, hashing a file before it is offered, and the endpoint that
//!   serves them directly and through the server's relay.
//! - [`download`]: fetching an offer into a file: where it goes (never
//!   outside the folder asked for), and the thread that brings it,
//!   verified, leaving nothing partial behind.
//! - [`peer`]: the byte protocol between two clients (docs/PROTOCOL.md
//!   11.3–11.4), pure, and its bounded line reader.
//! - [`bar`]: progress bars (indicatif) drawn in the console's status rows.
//!
//! The reader thread only reads the socket; the input side (one plain input
//! thread, or on a terminal the `keys` and `terminal` threads of
//! [`console`]) only reads the keyboard and draws the prompt; the main thread
//! waits on both (and on signals), owns all protocol state and decides
//! everything that is printed. Nothing from the network is printed without
//! [`crate::core::validate::for_display`].
//!
//! Errors are told at the level they happened (PROTOCOL.md 6): connection
//! (refused, lost, no reply), server (`BYE`, `internal`, a broken protocol)
//! or database (`db-error`), and each level ends the program with its own
//! exit code ([`exit`]).
//!
//! Files shared and downloaded travel on threads of their own, between the
//! clients (or through the server's relay), never through the chat's
//! connection; their outcomes reach the main thread on channels and are
//! printed above the prompt like any other event.
//!
//! Once logged in, a lost connection does not end the chat at once: the
//! client reconnects (to any of the `--server` addresses, for up to
//! `--reconnect-for` seconds), logs in again, resends what was not
//! confirmed and catches up ([`session`], [`failover`]). Only when that
//! fails does the connection level end the program.

use std::io;
use std::time::Duration;

use thiserror::Error;

use crate::core::code::ErrorCode;

pub mod bar;
pub mod connection;
pub mod console;
pub mod display;
pub mod download;
pub mod editor;
pub mod failover;
pub mod i18n;
pub mod peer;
pub mod rooms;
pub mod session;
pub mod share;
pub mod tls;
pub mod typed;

use connection::{Connection, TlsConfig};
use console::Console;
use i18n::{ConnectFailure, Lang, Text};
use tls::TlsFailure;

/// The exit codes of `charla`, so scripts can tell what ended it.
pub mod exit {
    /// The user left (`salir`, `/quit`, end of input).
    pub const OK: u8 = 0;
    /// Bad command-line arguments, or the terminal or stdin failed.
    pub const USAGE: u8 = 1;
    /// Connection level: the server could not be reached, the connection
    /// was lost, or the server stopped answering.
    pub const CONNECTION: u8 = 2;
    /// Server level: the server closed the session with `BYE` (shutting
    /// down, full, login timeout, slow consumer) or broke the protocol.
    pub const SERVER: u8 = 3;
    /// Ctrl-C or a signal (SIGINT, SIGTERM, SIGHUP) ended the session.
    pub const INTERRUPTED: u8 = 130;
}

/// How long a chat that lost its server keeps trying to reconnect, unless
/// `--reconnect-for` says otherwise (PROTOCOL.md 10.3).
pub const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// What `charla` was asked to do on its command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// The servers' `HOST:PORT`s, in the order they are tried: nodes of
    /// one chat, or a load balancer in front of them. Never empty.
    pub servers: Vec<String>,
    /// The language of everything printed.
    pub lang: Lang,
    /// How long a chat that lost its server keeps trying to reconnect;
    /// zero ends it at once, as a lost connection always did.
    pub reconnect_for: Duration,
    /// Where this client serves the files it shares (`--share-addr`).
    pub share_addr: share::ShareAddr,
    /// The address other clients are told to fetch from, when it is not
    /// the one listened on (`--share-announce`, behind NAT say).
    pub share_announce: Option<String>,
    /// With `--tls`, the TLS settings every connection (and reconnection)
    /// uses; `None` for plain text.
    pub tls: Option<TlsConfig>,
}

/// Why a session ended other than by the user leaving.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing listens at the address.
    #[error("connection to {addr} refused")]
    Refused {
        /// The address as given.
        addr: String,
    },
    /// The address does not resolve.
    #[error("cannot resolve {addr}")]
    Unresolved {
        /// The address as given.
        addr: String,
    },
    /// The TLS handshake failed: the server's certificate does not verify
    /// (expired, another name, unknown issuer...) or the server does not
    /// speak TLS there.
    #[error("TLS with {addr} failed: {failure:?}")]
    Tls {
        /// The address as given.
        addr: String,
        /// Why.
        failure: TlsFailure,
    },
    /// Connecting failed otherwise (timeout, unreachable network).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address as given.
        addr: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The connection ended without `OK QUIT` or `BYE`.
    #[error("the connection to {addr} was lost")]
    Lost {
        /// The server's address.
        addr: String,
        /// Messages sent whose `OK SAY` never came.
        unconfirmed: usize,
    },
    /// A command got no reply in time.
    #[error("no reply from {addr} within {secs} s")]
    NoReply {
        /// The server's address.
        addr: String,
        /// How long the client waited.
        secs: u64,
        /// Messages sent whose `OK SAY` never came.
        unconfirmed: usize,
    },
    /// The server said `BYE` and closed the connection.
    #[error("the server at {addr} closed the connection: {text}")]
    Closed {
        /// The server's address.
        addr: String,
        /// The `BYE` code, if this client knows it.
        code: Option<ErrorCode>,
        /// The server's English explanation.
        text: String,
        /// Messages sent whose `OK SAY` never came.
        unconfirmed: usize,
    },
    /// The chat lost its server and could not reconnect in time.
    #[error("could not reconnect to {addrs} within {secs} s")]
    GaveUp {
        /// Every address tried, joined with `, `.
        addrs: String,
        /// How long the client kept trying.
        secs: u64,
        /// Messages sent (or typed meanwhile) whose `OK` never came.
        unconfirmed: usize,
        /// The last reconnection refused for a reason the person should
        /// know (a certificate that does not verify), if any.
        cause: Option<Box<ClientError>>,
    },
    /// The server sent something the protocol does not allow here.
    #[error("the server at {addr} broke the protocol: {detail}")]
    Protocol {
        /// The server's address.
        addr: String,
        /// What was wrong, for logs and debugging.
        detail: &'static str,
    },
    /// The server speaks another protocol version.
    #[error("the server at {addr} speaks protocol version {version}")]
    Version {
        /// The server's address.
        addr: String,
        /// The version it announced.
        version: String,
    },
    /// The terminal or stdin failed.
    #[error("cannot read the input: {0}")]
    Input(#[source] io::Error),
    /// Ctrl-C or a signal.
    #[error("interrupted")]
    Interrupted,
}

impl ClientError {
    /// The exit code for this ending (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { .. }
            | ClientError::Unresolved { .. }
            | ClientError::Connect { .. }
            | ClientError::Tls { .. }
            | ClientError::Lost { .. }
            | ClientError::NoReply { .. }
            | ClientError::GaveUp { .. } => exit::CONNECTION,
            ClientError::Closed { .. } | ClientError::Protocol { .. } | ClientError::Version { .. } => exit::SERVER,
            ClientError::Input(_) => exit::USAGE,
            ClientError::Interrupted => exit::INTERRUPTED,
        }
    }

    /// Messages that were sent but never confirmed when the session ended.
    fn unconfirmed(&self) -> usize {
        match self {
            ClientError::Lost { unconfirmed, .. }
            | ClientError::NoReply { unconfirmed, .. }
            | ClientError::GaveUp { unconfirmed, .. }
            | ClientError::Closed { unconfirmed, .. } => *unconfirmed,
            _ => 0,
        }
    }

    /// What the person is told, in `lang`. Network text is filtered here.
    pub fn sentence(&self, lang: Lang) -> String {
        let os_error;
        let server_text;
        let text = match self {
            ClientError::Refused { addr } => Text::ConnectRefused { addr },
            ClientError::Unresolved { addr } => Text::ConnectFailed {
                addr,
                reason: ConnectFailure::Unresolved,
            },
            ClientError::Connect { addr, source } if source.kind() == io::ErrorKind::TimedOut => Text::ConnectFailed {
                addr,
                reason: ConnectFailure::TimedOut,
            },
            ClientError::Connect { addr, source } => {
                os_error = source.to_string();
                Text::ConnectFailed {
                    addr,
                    reason: ConnectFailure::Other(&os_error),
                }
            }
            ClientError::Tls { addr, failure } => Text::TlsFailed { addr, failure },
            ClientError::Lost { addr, .. } => Text::ConnectionLost { addr },
            ClientError::NoReply { addr, secs, .. } => Text::NoReply { addr, secs: *secs },
            ClientError::GaveUp {
                addrs,
                secs,
                cause: Some(cause),
                ..
            } => {
                let gave_up = Text::GaveUp { addrs, secs: *secs }.render(lang);
                return format!("{gave_up}\n{}", cause.sentence(lang));
            }
            ClientError::GaveUp { addrs, secs, .. } => Text::GaveUp { addrs, secs: *secs },
            ClientError::Closed { addr, code, text, .. } => {
                server_text = crate::core::validate::for_display(text);
                Text::ServerClosed {
                    addr,
                    code: *code,
                    server_text: &server_text,
                }
            }
            ClientError::Protocol { addr, .. } => Text::ProtocolViolation { addr },
            ClientError::Version { addr, version } => {
                server_text = crate::core::validate::for_display(version);
                Text::UnsupportedVersion {
                    addr,
                    version: &server_text,
                }
            }
            ClientError::Input(error) => {
                os_error = error.to_string();
                Text::InputFailed { error: &os_error }
            }
            ClientError::Interrupted => Text::Interrupted,
        };
        text.render(lang)
    }
}

/// Runs the client to its end and returns the process's exit code.
///
/// Everything the person needs to know has been printed by then: the
/// farewell on stdout, or the reason for ending on stderr.
pub fn run(options: &Options) -> u8 {
    // Connect before touching the terminal or the signals: until then
    // Ctrl-C simply ends the process and there is nothing to put back.
    // The first address that answers is used; when none does, each one's
    // failure is told.
    let mut failures = Vec::new();
    let mut opened = None;
    for (index, addr) in options.servers.iter().enumerate() {
        match Connection::open(addr, options.tls.as_ref()) {
            Ok(connection) => {
                opened = Some((connection, index));
                break;
            }
            Err(error) => failures.push(error),
        }
    }
    let Some((connection, index)) = opened else {
        for error in &failures {
            eprintln!("{}", error.sentence(options.lang));
        }
        return failures.last().map_or(exit::USAGE, ClientError::exit_code);
    };
    let mut console = Console::open();
    let code = match session::run(&mut console, connection, index, options) {
        Ok(()) => exit::OK,
        Err(error) => {
            console.fail(&error.sentence(options.lang));
            let unconfirmed = error.unconfirmed();
            if unconfirmed > 0 {
                console.fail(&Text::Unconfirmed { count: unconfirmed }.render(options.lang));
            }
            error.exit_code()
        }
    };
    console.restore();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_has_its_exit_code() {
        let addr = || "h:1".to_string();
        assert_eq!(ClientError::Refused { addr: addr() }.exit_code(), exit::CONNECTION);
        assert_eq!(
            ClientError::Lost {
                addr: addr(),
                unconfirmed: 0
            }
            .exit_code(),
            exit::CONNECTION
        );
        let bye = ClientError::Closed {
            addr: addr(),
            code: Some(ErrorCode::ShuttingDown),
            text: "server is shutting down".into(),
            unconfirmed: 2,
        };
        assert_eq!(bye.exit_code(), exit::SERVER);
        assert_eq!(bye.unconfirmed(), 2);
        assert_eq!(ClientError::Interrupted.exit_code(), exit::INTERRUPTED);
        let codes = [exit::OK, exit::USAGE, exit::CONNECTION, exit::SERVER, exit::INTERRUPTED];
        for (i, a) in codes.iter().enumerate() {
            assert!(codes[i + 1..].iter().all(|b| a != b), "exit codes must differ");
        }
    }

    #[test]
    fn sentences_name_the_address_and_filter_server_text() {
        let refused = ClientError::Refused {
            addr: "127.0.0.1:8000".into(),
        };
        assert!(
            refused
                .sentence(Lang::Es)
                .contains("127.0.0.1:8000 (conexión rechazada)")
        );
        let bye = ClientError::Closed {
            addr: "h:1".into(),
            code: None,
            text: "bad\u{1b}[2J".into(),
            unconfirmed: 0,
        };
        let sentence = bye.sentence(Lang::En);
        assert!(!sentence.contains('\u{1b}') && sentence.contains("h:1"), "{sentence:?}");
        let timeout = ClientError::Connect {
            addr: "h:1".into(),
            source: io::Error::from(io::ErrorKind::TimedOut),
        };
        assert!(timeout.sentence(Lang::Es).contains("no respondió a tiempo"));
    }
}

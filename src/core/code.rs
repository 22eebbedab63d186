//! The protocol's error codes (PROTOCOL.md section 6), in one place.
//!
//! Every `ERR` and `BYE` the server sends names one of these codes, and the
//! client translates them for people. This module owns the mapping between
//! codes, their wire spelling, their default English text and the level
//! (client, server or database) a person is told about, and the one mapping
//! from every internal error (storage, hashing) to the code a client is
//! given for it. It does no I/O.

use std::fmt;

use super::auth::AuthError;
use crate::store::{CreateAccountError, StoreError};

/// A stable error word of the wire protocol.
///
/// Kept as an enum so the server cannot send a code the protocol does not
/// define and the client can match on codes instead of strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Unknown verb, missing or extra arguments, malformed tag or number.
    BadRequest,
    /// The line was longer than the server's line limit.
    LineTooLong,
    /// The line was not UTF-8.
    BadEncoding,
    /// The command needs a logged-in session.
    NotLoggedIn,
    /// REGISTER or LOGIN on a session that is already logged in.
    AlreadyLoggedIn,
    /// The username breaks PROTOCOL.md 5.1.
    InvalidUsername,
    /// The password breaks PROTOCOL.md 5.1.
    InvalidPassword,
    /// The full name breaks PROTOCOL.md 5.1.
    InvalidName,
    /// The message text breaks PROTOCOL.md 5.2.
    InvalidText,
    /// A `#` target that breaks the room name rule (PROTOCOL.md 9.1).
    InvalidRoom,
    /// REGISTER of a username that is taken (regardless of case).
    UserExists,
    /// SEND, HISTORY or WHO to a room that has no members.
    NoSuchRoom,
    /// SEND or HISTORY to `@USER` when there is no such account.
    NoSuchUser,
    /// SEND, HISTORY, WHO or PART on a room the account is not in.
    NotMember,
    /// Something nobody may do (`PART #general`).
    Forbidden,
    /// JOIN past the account's room limits, or SHARE past the offers a
    /// session may hold.
    LimitReached,
    /// A SHARE that breaks PROTOCOL.md 11's rules.
    InvalidFile,
    /// An id that is not a live offer.
    NoSuchFile,
    /// LOGIN failed, whatever the cause.
    BadCredentials,
    /// Too many attempts or messages; retry later.
    RateLimited,
    /// The connection limit is reached (sent as `BYE`).
    ServerFull,
    /// The server is stopping (sent as `BYE`).
    ShuttingDown,
    /// The session's outgoing queue overflowed (sent as `BYE`).
    SlowConsumer,
    /// No successful login within the login timeout (sent as `BYE`).
    LoginTimeout,
    /// An unexpected server fault; the session stays usable.
    Internal,
    /// Storage failed; nothing was stored.
    DbError,
}

/// Which of the three levels of the original lab an error belongs to, so a
/// client can tell its user whether the request, the server or the database
/// failed (connection errors never arrive as codes: the client sees them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorLevel {
    /// The request was refused; the user can correct it.
    Client,
    /// The server itself refused or failed.
    Server,
    /// The server's storage failed.
    Database,
}

impl ErrorCode {
    /// Every code, for parsing and for tests that walk the whole table.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::BadRequest,
        ErrorCode::LineTooLong,
        ErrorCode::BadEncoding,
        ErrorCode::NotLoggedIn,
        ErrorCode::AlreadyLoggedIn,
        ErrorCode::InvalidUsername,
        ErrorCode::InvalidPassword,
        ErrorCode::InvalidName,
        ErrorCode::InvalidText,
        ErrorCode::InvalidRoom,
        ErrorCode::UserExists,
        ErrorCode::NoSuchRoom,
        ErrorCode::NoSuchUser,
        ErrorCode::NotMember,
        ErrorCode::Forbidden,
        ErrorCode::LimitReached,
        ErrorCode::InvalidFile,
        ErrorCode::NoSuchFile,
        ErrorCode::BadCredentials,
        ErrorCode::RateLimited,
        ErrorCode::ServerFull,
        ErrorCode::ShuttingDown,
        ErrorCode::SlowConsumer,
        ErrorCode::LoginTimeout,
        ErrorCode::Internal,
        ErrorCode::DbError,
    ];

    /// The code as it is spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::LineTooLong => "line-too-long",
            ErrorCode::BadEncoding => "bad-encoding",
            ErrorCode::NotLoggedIn => "not-logged-in",
            ErrorCode::AlreadyLoggedIn => "already-logged-in",
            ErrorCode::InvalidUsername => "invalid-username",
            ErrorCode::InvalidPassword => "invalid-password",
            ErrorCode::InvalidName => "invalid-name",
            ErrorCode::InvalidText => "invalid-text",
            ErrorCode::InvalidRoom => "invalid-room",
            ErrorCode::UserExists => "user-exists",
            ErrorCode::NoSuchRoom => "no-such-room",
            ErrorCode::NoSuchUser => "no-such-user",
            ErrorCode::NotMember => "not-member",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::LimitReached => "limit-reached",
            ErrorCode::InvalidFile => "invalid-file",
            ErrorCode::NoSuchFile => "no-such-file",
            ErrorCode::BadCredentials => "bad-credentials",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::SlowConsumer => "slow-consumer",
            ErrorCode::LoginTimeout => "login-timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::DbError => "db-error",
        }
    }

    /// The short English text sent after the code. It never contains the
    /// client's bytes (PROTOCOL.md 1: error texts never echo the client).
    pub fn default_text(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "malformed command",
            ErrorCode::LineTooLong => "line too long",
            ErrorCode::BadEncoding => "line is not valid UTF-8",
            ErrorCode::NotLoggedIn => "log in first",
            ErrorCode::AlreadyLoggedIn => "you are already logged in",
            ErrorCode::InvalidUsername => "username must be 1 to 32 characters of A-Z a-z 0-9 _ . -",
            ErrorCode::InvalidPassword => "password must be 8 to 72 bytes without whitespace or control characters",
            ErrorCode::InvalidName => "full name must be 1 to 100 characters without control characters",
            ErrorCode::InvalidText => "text must be 1 to 2000 characters without control characters",
            ErrorCode::InvalidRoom => "room must be # and 1 to 32 characters of A-Z a-z 0-9 _ . -",
            ErrorCode::UserExists => "username already exists",
            ErrorCode::NoSuchRoom => "no such room",
            ErrorCode::NoSuchUser => "no such user",
            ErrorCode::NotMember => "you are not a member of that room",
            ErrorCode::Forbidden => "that is not allowed",
            ErrorCode::LimitReached => "room or offer limit reached",
            ErrorCode::InvalidFile => "size, SHA-256 or file name breaks the sharing rules",
            ErrorCode::NoSuchFile => "no such file is offered",
            ErrorCode::BadCredentials => "wrong username or password",
            ErrorCode::RateLimited => "too many attempts, retry later",
            ErrorCode::ServerFull => "too many connections",
            ErrorCode::ShuttingDown => "server is shutting down",
            ErrorCode::SlowConsumer => "you are not reading fast enough",
            ErrorCode::LoginTimeout => "no login within the time limit",
            ErrorCode::Internal => "internal server error",
            ErrorCode::DbError => "storage failed, nothing was stored",
        }
    }

    /// The level a person is told about (PROTOCOL.md 6).
    pub fn level(self) -> ErrorLevel {
        match self {
            ErrorCode::ServerFull
            | ErrorCode::ShuttingDown
            | ErrorCode::SlowConsumer
            | ErrorCode::LoginTimeout
            | ErrorCode::Internal => ErrorLevel::Server,
            ErrorCode::DbError => ErrorLevel::Database,
            _ => ErrorLevel::Client,
        }
    }

    /// Reads a code from its wire spelling; `None` for a code this version
    /// does not know (a newer server may add codes).
    pub fn parse(word: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == word)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any storage failure: nothing was stored, and the client is told so.
impl From<&StoreError> for ErrorCode {
    fn from(_: &StoreError) -> ErrorCode {
        ErrorCode::DbError
    }
}

/// A taken name is the client's to fix; anything else is storage.
impl From<&CreateAccountError> for ErrorCode {
    fn from(error: &CreateAccountError) -> ErrorCode {
        match error {
            CreateAccountError::UserExists => ErrorCode::UserExists,
            CreateAccountError::Store(e) => ErrorCode::from(e),
        }
    }
}

/// Hashing never fails for a client's reason: the server is at fault.
impl From<&AuthError> for ErrorCode {
    fn from(_: &AuthError) -> ErrorCode {
        ErrorCode::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_spelling() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("no-such-code"), None);
    }

    #[test]
    fn texts_are_single_printable_ascii_lines() {
        for code in ErrorCode::ALL {
            let text = code.default_text();
            assert!(!text.is_empty());
            assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{code}");
        }
    }

    #[test]
    fn levels_follow_the_protocol_table() {
        assert_eq!(ErrorCode::DbError.level(), ErrorLevel::Database);
        assert_eq!(ErrorCode::ShuttingDown.level(), ErrorLevel::Server);
        assert_eq!(ErrorCode::BadCredentials.level(), ErrorLevel::Client);
    }
}

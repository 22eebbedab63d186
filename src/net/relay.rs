//! The relay: for a file whose offering client serves no endpoint, or one
//! its fetcher cannot reach (behind NAT, say), the server pipes its bytes
//! from the offering client to the fetching one (PROTOCOL.md 11; the byte protocol is in docs/PROTOCOL.md).
//!
//! Both peers connect to the relay and say who they are in one line:
//! `GET FILEID TICKET` (the fetcher) and `PUT FILEID TICKET` (the offering
//! client, invited by a `RELAY` event). The relay checks the ticket with
//! the offer's key, pairs the two by ticket, answers `OK` to both, and then
//! copies what the offering client sends to the fetcher, through one fixed
//! buffer: no file is ever held whole, and a transfer costs the same memory
//! whatever its size. Each fetching account has a limit on relayed
//! transfers at once and on their bandwidth together; each line and each
//! wait is bounded in time.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::core::Core;
use crate::core::files::{self, TicketError, UsedTickets};
use crate::core::journal::now_ms;
use crate::store::AccountId;

/// The longest first line.
const MAX_LINE: usize = 256;
/// How long a peer has to send its first line.
const LINE_DEADLINE: Duration = Duration::from_secs(10);
/// How long the first of a pair waits for the other.
const PAIR_WAIT: Duration = Duration::from_secs(30);
/// How long a transfer may stall (nothing to read from the offering client,
/// or nothing accepted by the fetcher) before it is abandoned.
const STALL: Duration = Duration::from_secs(30);
/// The one buffer of a transfer.
const BUFFER: usize = 64 * 1024;
/// Relay connections served at once (waiting or transferring).
const MAX_CONNECTIONS: usize = 512;

/// Which side of a transfer a peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The fetcher: receives.
    Get,
    /// The offering client: sends.
    Put,
}

/// The first of a pair, waiting for the other.
struct Waiting {
    /// Its role.
    role: Role,
    /// Its connection, taken by the second.
    stream: TcpStream,
    /// Tells it the second came and took over, handing it what ends when
    /// the transfer does: the first side's thread stays until then, so
    /// its fetcher's transfer slot and the relay's connection count hold
    /// for the whole transfer, whichever side came first.
    paired: Sender<Receiver<()>>,
}

/// Bandwidth left to one account.
struct Allowance {
    /// Bytes that may go now.
    tokens: f64,
    /// When `tokens` was brought up to date.
    updated: Instant,
}

/// The relay's state, shared by its connection threads.
pub struct Relay {
    /// Offers, limits.
    core: Arc<Core>,
    /// The first of each pair, by ticket.
    waiting: Mutex<HashMap<String, Waiting>>,
    /// Tickets used to fetch.
    used_get: UsedTickets,
    /// Tickets used to offer.
    used_put: UsedTickets,
    /// Relayed transfers per fetching account, waiting or running.
    active: Mutex<HashMap<AccountId, usize>>,
    /// Bandwidth per fetching account.
    bandwidth: Mutex<HashMap<AccountId, Allowance>>,
    /// Connections being served.
    open: Mutex<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves the relay on `listener` until the process ends, on a thread of
/// its own.
///
/// # Errors
/// When the thread cannot start.
pub fn spawn(listener: TcpListener, core: Arc<Core>) -> io::Result<JoinHandle<()>> {
    let relay = Arc::new(Relay {
        core,
        waiting: Mutex::default(),
        used_get: UsedTickets::default(),
        used_put: UsedTickets::default(),
        active: Mutex::default(),
        bandwidth: Mutex::default(),
        open: Mutex::new(0),
    });
    thread::Builder::new().name("relay".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else {
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            {
                let mut open = lock(&relay.open);
                if *open >= MAX_CONNECTIONS {
                    refuse(&stream, "busy", "too many relayed transfers");
                    continue;
                }
                *open += 1;
            }
            let relay = Arc::clone(&relay);
            let spawned = thread::Builder::new()
                .name("relay-conn".into())
                .stack_size(128 * 1024)
                .spawn(move || {
                    relay.serve(stream);
                    *lock(&relay.open) -= 1;
                });
            if spawned.is_err() {
                log::warn!("relay: cannot start a thread");
            }
        }
    })
}

/// Answers `ERR CODE TEXT` and closes.
fn refuse(mut stream: &TcpStream, code: &str, text: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = writeln!(stream, "ERR {code} {text}");
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads the first line, byte by byte (nothing after it is consumed),
/// within [`LINE_DEADLINE`].
fn first_line(stream: &TcpStream) -> io::Result<String> {
    crate::proto::frame::read_one_line(stream, LINE_DEADLINE, MAX_LINE)
}

/// Releases a fetcher's transfer slot when the transfer ends, however.
struct Slot<'a>(&'a Relay, AccountId);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut active = lock(&self.0.active);
        if let Some(count) = active.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                active.remove(&self.1);
            }
        }
    }
}

impl Relay {
    /// One relay connection, from its first line to its end.
    fn serve(&self, stream: TcpStream) {
        let line = match first_line(&stream) {
            Ok(line) => line,
            Err(_) => {
                refuse(
                    &stream,
                    "bad-request",
                    "expected GET FILEID TICKET or PUT FILEID TICKET",
                );
                return;
            }
        };
        let mut words = line.split(' ');
        let (role, file, ticket) = match (words.next(), words.next(), words.next(), words.next()) {
            (Some("GET"), Some(file), Some(ticket), None) => (Role::Get, file, ticket),
            (Some("PUT"), Some(file), Some(ticket), None) => (Role::Put, file, ticket),
            _ => {
                refuse(
                    &stream,
                    "bad-request",
                    "expected GET FILEID TICKET or PUT FILEID TICKET",
                );
                return;
            }
        };
        let offer = match self.core.offers.get(file) {
            // Offers with an endpoint too: a fetcher that cannot reach it
            // asks for the relay (`FETCH FILEID RELAY`).
            Ok(Some(offer)) => offer,
            Ok(None) => {
                refuse(&stream, "no-such-file", "no such file is offered through the relay");
                return;
            }
            Err(e) => {
                log::warn!("relay: offers cannot be read: {e}");
                refuse(&stream, "db-error", "the offers cannot be read now");
                return;
            }
        };
        let now = now_ms();
        let checked = match files::check(&offer.key, file, ticket, now, 0) {
            Ok(checked) => checked,
            Err(TicketError::Expired) => {
                refuse(&stream, "expired", "the ticket has expired");
                return;
            }
            Err(TicketError::Forged) => {
                refuse(&stream, "bad-ticket", "not a ticket for this file");
                return;
            }
        };
        let used = match role {
            Role::Get => &self.used_get,
            Role::Put => &self.used_put,
        };
        if !used.take(file, &checked, now) {
            refuse(&stream, "used", "the ticket was already used");
            return;
        }
        let _slot = match role {
            Role::Get => {
                let limit = self.core.config.files.relay_per_account;
                let mut active = lock(&self.active);
                let count = active.entry(checked.fetcher).or_insert(0);
                if limit > 0 && *count >= limit {
                    drop(active);
                    refuse(&stream, "limit-reached", "too many relayed transfers at once");
                    return;
                }
                *count += 1;
                Some(Slot(self, checked.fetcher))
            }
            Role::Put => None,
        };
        self.pair(role, ticket, stream, checked.fetcher, offer.size);
    }

    /// Pairs this side with the other one of `ticket`: the first waits, the
    /// second runs the transfer. Looking for the other side and, finding
    /// none, taking the waiting place happen under one lock, so two sides
    /// arriving together cannot both wait.
    fn pair(&self, role: Role, ticket: &str, stream: TcpStream, fetcher: AccountId, size: u64) {
        let Ok(kept) = stream.try_clone() else {
            refuse(&stream, "internal", "the connection cannot be kept");
            return;
        };
        let (paired, woken): (Sender<Receiver<()>>, Receiver<Receiver<()>>) = crossbeam_channel::bounded(1);
        let first = {
            let mut waiting = lock(&self.waiting);
            match waiting.remove(ticket) {
                Some(first) if first.role != role => first,
                Some(first) => {
                    // The same side twice cannot happen with single-use
                    // tickets; keep the first.
                    waiting.insert(ticket.to_string(), first);
                    drop(waiting);
                    refuse(&stream, "used", "the ticket was already used");
                    return;
                }
                None => {
                    waiting.insert(ticket.to_string(), Waiting { role, stream, paired });
                    drop(waiting);
                    self.wait_for_other(role, ticket, &kept, &woken);
                    return;
                }
            }
        };
        // Dropped when this function returns, after the transfer.
        let (_transferring, ended) = crossbeam_channel::bounded::<()>(0);
        let _ = first.paired.send(ended);
        let (getter, putter) = match role {
            Role::Get => (stream, first.stream),
            Role::Put => (first.stream, stream),
        };
        let started = Instant::now();
        match self.transfer(&putter, &getter, fetcher) {
            Ok(bytes) => log::info!(
                "relay: {bytes} of {size} bytes for account {fetcher} in {} ms",
                started.elapsed().as_millis()
            ),
            Err(e) => log::info!("relay: a transfer for account {fetcher} ended early: {e}"),
        }
        let _ = getter.shutdown(Shutdown::Both);
        let _ = putter.shutdown(Shutdown::Both);
    }

    /// The first of a pair, its connection in the waiting place: waits for
    /// the second, which takes the connection; on time out, says so (on
    /// `kept`, a handle of the same connection) and closes.
    fn wait_for_other(&self, role: Role, ticket: &str, kept: &TcpStream, woken: &Receiver<Receiver<()>>) {
        if let Ok(ended) = woken.recv_timeout(PAIR_WAIT) {
            // Until the second side's transfer ends (its sender dropped).
            let _ = ended.recv();
            return;
        }
        // Still there: nobody came. Gone: the second took it just now.
        if lock(&self.waiting).remove(ticket).is_some() {
            let other = match role {
                Role::Get => "the offering client",
                Role::Put => "the fetcher",
            };
            refuse(kept, "timeout", &format!("{other} did not come"));
        }
    }

    /// Says `OK` to both, then copies the offering client's bytes to the
    /// fetcher until the offering client ends. Returns the bytes copied.
    fn transfer(&self, putter: &TcpStream, getter: &TcpStream, fetcher: AccountId) -> io::Result<u64> {
        for mut side in [putter, getter] {
            side.set_write_timeout(Some(STALL))?;
            side.write_all(b"OK\n")?;
        }
        putter.set_read_timeout(Some(STALL))?;
        let mut buffer = vec![0u8; BUFFER];
        let mut copied = 0u64;
        let mut reader = putter;
        let mut writer = getter;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.pace(fetcher, n);
            writer.write_all(&buffer[..n])?;
            copied += n as u64;
        }
        writer.flush()?;
        Ok(copied)
    }

    /// Waits as long as `fetcher`'s bandwidth needs before `bytes` more go.
    fn pace(&self, fetcher: AccountId, bytes: usize) {
        let rate = self.core.config.files.relay_rate as f64;
        if rate <= 0.0 {
            return;
        }
        let wait = {
            let mut bandwidth = lock(&self.bandwidth);
            let now = Instant::now();
            bandwidth.retain(|_, a| now.duration_since(a.updated) < Duration::from_secs(60));
            let allowance = bandwidth.entry(fetcher).or_insert(Allowance {
                tokens: rate,
                updated: now,
            });
            let elapsed = now.duration_since(allowance.updated).as_secs_f64();
            allowance.tokens = (allowance.tokens + elapsed * rate).min(rate);
            allowance.updated = now;
            allowance.tokens -= bytes as f64;
            if allowance.tokens < 0.0 {
                Duration::from_secs_f64(-allowance.tokens / rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            thread::sleep(wait);
        }
    }
}

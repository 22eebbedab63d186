//! This client's side as an owner of files (PROTOCOL.md 11; the byte
//! protocol in docs/PROTOCOL.md 11.3–11.4): the offers it made this
//! session ([`Shelf`]), hashing a file before it is offered, and the
//! endpoint that serves them ([`Uploads`]): a listening socket for direct
//! fetchers, and connections to the server's relay when a `RELAY` event
//! invites this client there.
//!
//! Every transfer runs on a thread of its own and reports to the session
//! through a channel of [`Notice`]s; this module prints nothing and sends
//! no protocol line to the server. It never sends a byte of a file before
//! the fetcher's ticket has been checked (sealed for that file with this
//! session's key, not expired, never used) and the file found unchanged
//! since it was shared; and it sends exactly the size it offered or cuts
//! the connection, so the fetcher sees a short transfer rather than other
//! bytes.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::bar::TransferBar;
use super::peer::{self, Refusal};
use crate::core::files::{self, TicketError, UsedTickets};
use crate::core::journal::now_ms;

/// How long past a ticket's expiry it is still taken, for a clock that is
/// not the server's (docs/PROTOCOL.md 11.2).
pub const TICKET_GRACE_MS: i64 = 30_000;

/// Uploads served at once; a fetcher past it gets `limit-reached`.
pub const MAX_UPLOADS: usize = 4;

/// Connections to the endpoint served at once (uploads and fetchers still
/// saying their `GET`); past it a connection is refused at once.
const MAX_CONNECTIONS: usize = 32;

/// How long a connection to the relay may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the relay may take to pair this client with the fetcher (the
/// relay itself waits 30 s).
const PAIR_WAIT: Duration = Duration::from_secs(40);

/// How long a direct fetcher whose ticket arrived before the session's key
/// (the `OK ENDPOINT` is on its way) waits for it.
const KEY_WAIT: Duration = Duration::from_secs(2);

/// The size of the one buffer of a transfer.
const BUFFER: usize = 64 * 1024;

/// Files at least this big show a bar while they are hashed.
const HASH_BAR_FROM: u64 = 8 * 1024 * 1024;

/// Where this client serves its offers (`--share-addr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareAddr {
    /// The address the client reached the server from, a free port: the
    /// server's other clients can reach it if they reach the server the
    /// same way (same machine, same network).
    Auto,
    /// This address (port 0: a free one).
    At(SocketAddr),
    /// No endpoint: every fetch goes through the server's relay.
    Relayed,
}

impl FromStr for ShareAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<ShareAddr, String> {
        match text {
            "auto" => Ok(ShareAddr::Auto),
            "none" => Ok(ShareAddr::Relayed),
            _ => text
                .parse()
                .map(ShareAddr::At)
                .map_err(|_| format!("{text:?} is not auto, none or IP:PORT")),
        }
    }
}

/// One file this client offers: what was checked when it was shared, so a
/// file changed since is never sent as the offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalOffer {
    /// Where it is on disk.
    pub path: PathBuf,
    /// The name offered (the path's last part).
    pub name: String,
    /// Its size when shared.
    pub size: u64,
    /// Its modification time when shared, where the system tells it.
    pub modified: Option<SystemTime>,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

impl LocalOffer {
    /// Whether the file on disk, as `metadata` describes it, is still the
    /// one that was shared: same size, same modification time.
    pub fn unchanged(&self, metadata: &Metadata) -> bool {
        metadata.is_file() && metadata.len() == self.size && metadata.modified().ok() == self.modified
    }
}

/// The offers this client made this session, by id: shared by the session
/// (which adds and removes them) and the upload threads (which look them
/// up).
#[derive(Clone, Debug, Default)]
pub struct Shelf {
    /// Offers by file id.
    offers: Arc<Mutex<HashMap<String, LocalOffer>>>,
}

impl Shelf {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, LocalOffer>> {
        self.offers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers an offer the server accepted as `id`.
    pub fn add(&self, id: &str, offer: LocalOffer) {
        self.lock().insert(id.to_string(), offer);
    }

    /// The offer `id`, if this client made it.
    pub fn get(&self, id: &str) -> Option<LocalOffer> {
        self.lock().get(id).cloned()
    }

    /// Forgets an offer; returns it.
    pub fn remove(&self, id: &str) -> Option<LocalOffer> {
        self.lock().remove(id)
    }

    /// Takes every offer out, sorted by name (a failover shares them again
    /// under new ids).
    pub fn take_all(&self) -> Vec<(String, LocalOffer)> {
        let mut all: Vec<(String, LocalOffer)> = self.lock().drain().collect();
        all.sort_by(|a, b| a.1.name.cmp(&b.1.name).then_with(|| a.0.cmp(&b.0)));
        all
    }

    /// How many offers there are.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Why a file cannot be shared.
#[derive(Debug, Error)]
pub enum ShareError {
    /// Nothing at that path.
    #[error("no such file")]
    NotFound,
    /// A folder.
    #[error("a directory")]
    Directory,
    /// Neither a file nor a folder (a device, a socket...).
    #[error("not a regular file")]
    NotAFile,
    /// It cannot be opened or read.
    #[error("cannot read it: {0}")]
    Unreadable(#[source] io::Error),
    /// Its name is not one the protocol allows (PROTOCOL.md 11: a `/`,
    /// `\`, TAB or control character, more than 255 characters, not
    /// UTF-8).
    #[error("its name cannot be offered")]
    BadName,
    /// It changed while it was being hashed.
    #[error("it changed while it was being read")]
    Changed,
}

/// Checks that `path` can be shared and opens it: a regular file, readable,
/// with a name the protocol allows.
///
/// # Errors
/// [`ShareError`] otherwise.
pub fn open(path: &Path) -> Result<(File, LocalOffer), ShareError> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ShareError::NotFound),
        Err(e) => return Err(ShareError::Unreadable(e)),
    };
    if metadata.is_dir() {
        return Err(ShareError::Directory);
    }
    if !metadata.is_file() {
        return Err(ShareError::NotAFile);
    }
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or(ShareError::BadName)?;
    // The server trims the name; a name it would change is refused here
    // rather than offered under another name.
    if files::file_name(name) != Ok(name) {
        return Err(ShareError::BadName);
    }
    let file = File::open(path).map_err(ShareError::Unreadable)?;
    let metadata = file.metadata().map_err(ShareError::Unreadable)?;
    Ok((
        file,
        LocalOffer {
            path: path.to_path_buf(),
            name: name.to_string(),
            size: metadata.len(),
            modified: metadata.modified().ok(),
            sha256: String::new(),
        },
    ))
}

/// Whether a file of `size` bytes shows a bar while it is hashed.
pub fn hash_bar_wanted(size: u64) -> bool {
    size >= HASH_BAR_FROM
}

/// Hashes the file `open` checked, on a thread of its own, and reports
/// [`Notice::Hashed`] (with the SHA-256 filled in) or
/// [`Notice::HashFailed`].
pub fn hash_in_background(file: File, mut offer: LocalOffer, bar: TransferBar, notices: Sender<Notice>) {
    let spawned = thread::Builder::new().name("hash".into()).spawn({
        let notices = notices.clone();
        let path = offer.path.clone();
        move || {
            let notice = match hash(file, &offer, &bar) {
                Ok(sha256) => {
                    offer.sha256 = sha256;
                    Notice::Hashed(offer)
                }
                Err(error) => Notice::HashFailed { path, error },
            };
            drop(bar);
            let _ = notices.send(notice);
        }
    });
    if let Err(error) = spawned {
        let _ = notices.send(Notice::HashFailed {
            path: PathBuf::new(),
            error: ShareError::Unreadable(error),
        });
    }
}

/// The SHA-256 of exactly `offer.size` bytes of `file`, checking that the
/// file did not change meanwhile.
fn hash(mut file: File, offer: &LocalOffer, bar: &TransferBar) -> Result<String, ShareError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ShareError::Unreadable(e)),
        };
        hasher.update(&buffer[..n]);
        total += n as u64;
        bar.advance(n as u64);
        if total > offer.size {
            return Err(ShareError::Changed);
        }
    }
    let after = fs::metadata(&offer.path).map_err(ShareError::Unreadable)?;
    if total != offer.size || !offer.unchanged(&after) {
        return Err(ShareError::Changed);
    }
    Ok(files::hex(&hasher.finalize()))
}

/// What the owner's threads tell the session, to be told to the person.
#[derive(Debug)]
pub enum Notice {
    /// A file was hashed and can be offered (`SHARE`).
    Hashed(LocalOffer),
    /// A file could not be hashed.
    HashFailed {
        /// The path as given.
        path: PathBuf,
        /// Why.
        error: ShareError,
    },
    /// A file was sent whole.
    Served {
        /// The offer's name.
        name: String,
        /// Its size.
        size: u64,
    },
    /// A fetcher came for a file that changed on disk since it was shared:
    /// it was refused (or cut short), and the offer should be shared again.
    Changed {
        /// The offer's id.
        id: String,
        /// Its name.
        name: String,
    },
    /// A file could not be read, or a fetcher went away mid-transfer.
    Interrupted {
        /// The offer's name.
        name: String,
        /// What happened, in English, for the person.
        reason: String,
    },
    /// The relay could not be reached, or refused this client's side.
    RelayFailed {
        /// The offer's id.
        id: String,
        /// What happened (the relay's code and text, or the socket's
        /// error).
        reason: String,
    },
}

/// How a transfer of one offer ended, for the thread that served it.
enum Served {
    /// Sent whole.
    Whole(LocalOffer),
    /// Refused with `ERR` before any byte of the file.
    Refused(Refusal),
    /// Cut: the file changed or failed while it was read, or the fetcher
    /// went away.
    Cut,
}

/// The endpoint: serves this client's offers to fetchers directly and
/// through the relay. Shared by the session and every upload thread.
pub struct Uploads {
    /// The offers.
    shelf: Shelf,
    /// This session's ticket key (hex), from `OK ENDPOINT`; `None` before.
    key: Mutex<Option<String>>,
    /// Tickets already taken by a direct fetcher.
    used: UsedTickets,
    /// Transfers running.
    active: Mutex<usize>,
    /// Endpoint connections open.
    open: Mutex<usize>,
    /// Where the person is told what happened.
    notices: Sender<Notice>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Releases a counted place (an upload, a connection) when dropped.
struct Place<'a>(&'a Mutex<usize>);

impl<'a> Place<'a> {
    /// Takes one of `max` places, or `None` when all are taken.
    fn take(count: &'a Mutex<usize>, max: usize) -> Option<Place<'a>> {
        let mut taken = lock(count);
        if *taken >= max {
            return None;
        }
        *taken += 1;
        Some(Place(count))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut taken = lock(self.0);
        *taken = taken.saturating_sub(1);
    }
}

impl Uploads {
    /// The endpoint of the offers on `shelf`; nothing listens until
    /// [`Uploads::listen`].
    pub fn new(shelf: Shelf, notices: Sender<Notice>) -> Arc<Uploads> {
        Arc::new(Uploads {
            shelf,
            key: Mutex::new(None),
            used: UsedTickets::default(),
            active: Mutex::new(0),
            open: Mutex::new(0),
            notices,
        })
    }

    /// Sets this session's ticket key (a new session after a failover has
    /// a new one).
    pub fn set_key(&self, key: Option<String>) {
        *lock(&self.key) = key;
    }

    /// Listens on `addr` for direct fetchers, on a thread of its own for
    /// the rest of the program; returns the address bound.
    ///
    /// # Errors
    /// When the address cannot be bound, or the thread cannot start.
    pub fn listen(self: &Arc<Self>, addr: SocketAddr) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let uploads = Arc::clone(self);
        thread::Builder::new().name("endpoint".into()).spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => uploads.accepted(stream),
                    // Out of descriptors, say: do not spin.
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
        })?;
        Ok(bound)
    }

    /// One fetcher connected: served on a thread of its own.
    fn accepted(self: &Arc<Self>, stream: TcpStream) {
        let uploads = Arc::clone(self);
        let spawned = thread::Builder::new().name("upload".into()).spawn(move || {
            let Some(_place) = Place::take(&uploads.open, MAX_CONNECTIONS) else {
                refuse(&stream, Refusal::LimitReached, "too many transfers at once");
                return;
            };
            uploads.serve_direct(&stream);
        });
        if spawned.is_err() {
            log::warn!("endpoint: cannot start a thread");
        }
    }

    /// A direct fetcher: its `GET`, its ticket, then the file.
    fn serve_direct(&self, stream: &TcpStream) {
        let line = match peer::read_line(stream, peer::REQUEST_DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                refuse(stream, Refusal::BadRequest, "expected GET FILEID TICKET within 10 s");
                return;
            }
        };
        let (id, ticket) = match peer::parse_get(&line) {
            Ok(request) => request,
            Err(refusal) => {
                refuse(stream, refusal, "expected GET FILEID TICKET");
                return;
            }
        };
        let Some(offer) = self.shelf.get(id) else {
            refuse(stream, Refusal::NoSuchFile, "no such file is offered here");
            return;
        };
        if let Err((refusal, text)) = self.check_ticket(id, ticket) {
            refuse(stream, refusal, text);
            return;
        }
        self.serve(stream, id, offer);
    }

    /// Checks a direct fetcher's ticket: sealed for `id` with this
    /// session's key, not expired (with [`TICKET_GRACE_MS`]), never used.
    fn check_ticket(&self, id: &str, ticket: &str) -> Result<(), (Refusal, &'static str)> {
        let key = self
            .key_within(KEY_WAIT)
            .ok_or((Refusal::BadTicket, "not a ticket for this file"))?;
        let now = now_ms();
        let checked = match files::check(&key, id, ticket, now, TICKET_GRACE_MS) {
            Ok(checked) => checked,
            Err(TicketError::Forged) => return Err((Refusal::BadTicket, "not a ticket for this file")),
            Err(TicketError::Expired) => return Err((Refusal::Expired, "the ticket has expired")),
        };
        if !self.used.take(id, &checked, now.saturating_sub(TICKET_GRACE_MS)) {
            return Err((Refusal::Used, "the ticket was already used"));
        }
        Ok(())
    }

    /// The session's key, waiting up to `limit` for it to arrive.
    fn key_within(&self, limit: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(key) = lock(&self.key).clone() {
                return Some(key);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `RELAY FILEID TICKET HOST:PORT` event: bring that offer to the
    /// relay, on a thread of its own. The relay checks the ticket.
    pub fn relay(self: &Arc<Self>, id: String, ticket: String, addr: String) {
        let uploads = Arc::clone(self);
        let spawned = thread::Builder::new().name("relay-put".into()).spawn(move || {
            if let Err(reason) = uploads.serve_relayed(&id, &ticket, &addr) {
                let _ = uploads.notices.send(Notice::RelayFailed { id, reason });
            }
        });
        if spawned.is_err() {
            log::warn!("relay: cannot start a thread");
        }
    }

    /// Connects to the relay, says `PUT FILEID TICKET`, waits for `OK`, then
    /// serves as a direct owner.
    fn serve_relayed(&self, id: &str, ticket: &str, addr: &str) -> Result<(), String> {
        let stream = connect(addr).map_err(|e| format!("cannot reach the relay at {addr}: {e}"))?;
        stream.set_write_timeout(Some(peer::STALL)).map_err(|e| e.to_string())?;
        (&stream)
            .write_all(format!("PUT {id} {ticket}\n").as_bytes())
            .map_err(|e| format!("the relay at {addr} went away: {e}"))?;
        match peer::read_line(&stream, PAIR_WAIT).map(|line| peer::parse_header(&line)) {
            Ok(Some(peer::Header::Paired)) => {}
            Ok(Some(peer::Header::Refused { code, text })) => return Err(format!("{code} {text}")),
            Ok(_) => return Err(format!("the relay at {addr} answered something else")),
            Err(e) => return Err(format!("the relay at {addr} did not answer: {e}")),
        }
        match self.shelf.get(id) {
            Some(offer) => self.serve(&stream, id, offer),
            None => refuse(&stream, Refusal::NoSuchFile, "no such file is offered here"),
        }
        Ok(())
    }

    /// Sends `offer` on `stream` (its ticket already checked), telling the
    /// person how it went.
    fn serve(&self, stream: &TcpStream, id: &str, offer: LocalOffer) {
        let name = offer.name.clone();
        match self.send_file(stream, offer) {
            Served::Whole(offer) => {
                let _ = self.notices.send(Notice::Served {
                    name: offer.name,
                    size: offer.size,
                });
            }
            Served::Refused(Refusal::Internal) => {
                let _ = self.notices.send(Notice::Changed {
                    id: id.to_string(),
                    name,
                });
            }
            Served::Refused(_) | Served::Cut => {}
        }
    }

    /// `OK SIZE SHA256` and exactly SIZE bytes, then the end; or `ERR` and
    /// nothing of the file.
    fn send_file(&self, stream: &TcpStream, offer: LocalOffer) -> Served {
        let Some(_upload) = Place::take(&self.active, MAX_UPLOADS) else {
            refuse(stream, Refusal::LimitReached, "too many transfers at once");
            return Served::Refused(Refusal::LimitReached);
        };
        let opened = File::open(&offer.path).and_then(|file| {
            let metadata = file.metadata()?;
            Ok((file, metadata))
        });
        let mut file = match opened {
            Ok((file, metadata)) if offer.unchanged(&metadata) => file,
            Ok(_) => {
                refuse(stream, Refusal::Internal, "the file changed since it was shared");
                return Served::Refused(Refusal::Internal);
            }
            Err(e) => {
                refuse(stream, Refusal::Internal, "the file cannot be read");
                let _ = self.notices.send(Notice::Interrupted {
                    name: offer.name.clone(),
                    reason: format!("the file cannot be read: {e}"),
                });
                return Served::Cut;
            }
        };
        let _ = stream.set_write_timeout(Some(peer::STALL));
        let mut out = stream;
        if out
            .write_all(format!("OK {} {}\n", offer.size, offer.sha256).as_bytes())
            .is_err()
        {
            return Served::Cut;
        }
        let mut buffer = vec![0u8; BUFFER];
        let mut left = offer.size;
        while left > 0 {
            let want = usize::try_from(left).map_or(BUFFER, |left| left.min(BUFFER));
            let n = match file.read(&mut buffer[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                // Shorter than offered: it changed (or failed) since it was
                // shared. Cut, so the fetcher sees a short transfer.
                let _ = stream.shutdown(Shutdown::Both);
                let _ = self.notices.send(Notice::Interrupted {
                    name: offer.name.clone(),
                    reason: "the file became shorter while it was being sent".into(),
                });
                return Served::Cut;
            }
            if let Err(e) = out.write_all(&buffer[..n]) {
                let _ = self.notices.send(Notice::Interrupted {
                    name: offer.name.clone(),
                    reason: format!("the other side went away ({e})"),
                });
                return Served::Cut;
            }
            left -= n as u64;
        }
        let _ = out.flush();
        let _ = stream.shutdown(Shutdown::Write);
        // Let the fetcher read to the end before the socket goes (a close
        // with unread input would reset the connection).
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = io::copy(&mut out.take(4096), &mut io::sink());
        Served::Whole(offer)
    }
}

/// Answers `ERR CODE TEXT` and closes.
fn refuse(mut stream: &TcpStream, refusal: Refusal, text: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.write_all(refusal.line(text).as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

/// Connects to `addr` (`HOST:PORT`), each address it resolves to in turn.
///
/// # Errors
/// The last address's error, or `NotFound` when it resolves to none.
pub fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
    for candidate in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_addresses() {
        assert_eq!("auto".parse(), Ok(ShareAddr::Auto));
        assert_eq!("none".parse(), Ok(ShareAddr::Relayed));
        assert_eq!(
            "0.0.0.0:7000".parse(),
            Ok(ShareAddr::At("0.0.0.0:7000".parse().unwrap()))
        );
        assert!("localhost".parse::<ShareAddr>().is_err());
    }

    #[test]
    fn only_regular_files_with_offerable_names_open() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(open(&dir.path().join("nada")), Err(ShareError::NotFound)));
        assert!(matches!(open(dir.path()), Err(ShareError::Directory)));
        let bad = dir.path().join("a\u{1b}b");
        fs::write(&bad, b"x").unwrap();
        assert!(matches!(open(&bad), Err(ShareError::BadName)));
        let spaced = dir.path().join(" lead");
        fs::write(&spaced, b"x").unwrap();
        assert!(
            matches!(open(&spaced), Err(ShareError::BadName)),
            "the server would trim it"
        );
        let good = dir.path().join("apuntes 1.txt");
        fs::write(&good, b"hola").unwrap();
        let (file, offer) = open(&good).unwrap();
        assert_eq!((offer.name.as_str(), offer.size), ("apuntes 1.txt", 4));
        let sha = hash(file, &offer, &TransferBar::hidden()).unwrap();
        // sha256("hola")
        assert_eq!(sha, "b221d9dbb083a7f33428d7c2a3c3198ae925614d70210e28716ccaa7cd4ddb79");
    }

    #[test]
    fn a_file_that_changes_while_hashed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        fs::write(&path, b"hola").unwrap();
        let (file, offer) = open(&path).unwrap();
        fs::write(&path, b"hola mundo").unwrap();
        assert!(matches!(
            hash(file, &offer, &TransferBar::hidden()),
            Err(ShareError::Changed)
        ));
    }

    /// What [`endpoint`] sets up.
    struct Fixture {
        /// Where it listens.
        addr: SocketAddr,
        /// Its ticket key.
        key: String,
        /// The offer's SHA-256.
        sha: String,
        /// What it tells the person.
        notices: crossbeam_channel::Receiver<Notice>,
        /// Holds the offered file `datos.bin`.
        dir: tempfile::TempDir,
    }

    /// An endpoint with one offer `f1` of `content`.
    fn endpoint(content: &[u8]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("datos.bin");
        fs::write(&path, content).unwrap();
        let (file, mut offer) = open(&path).unwrap();
        offer.sha256 = hash(file, &offer, &TransferBar::hidden()).unwrap();
        let shelf = Shelf::default();
        shelf.add("f1", offer);
        let (notify, notices) = crossbeam_channel::unbounded();
        let uploads = Uploads::new(shelf, notify);
        let key = files::random_hex(32).unwrap();
        uploads.set_key(Some(key.clone()));
        let addr = uploads.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let sha = files::hex(&Sha256::digest(content));
        Fixture {
            addr,
            key,
            sha,
            notices,
            dir,
        }
    }

    /// Sends `line` to the endpoint and reads everything it answers.
    fn get(addr: SocketAddr, line: &str) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    }

    #[test]
    fn the_endpoint_checks_the_ticket_once_before_any_byte() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let Fixture {
            addr,
            key,
            sha,
            dir: _dir,
            ..
        } = endpoint(&content);
        let now = now_ms();
        let ticket = files::mint(&key, "f1", 7, now).unwrap();
        let answer = get(addr, &format!("GET f1 {ticket}"));
        let header = format!("OK {} {sha}\n", content.len());
        assert!(
            answer.starts_with(header.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        );
        assert!(answer[header.len()..] == content[..]);
        let text = |answer: Vec<u8>| String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(
            text(get(addr, &format!("GET f1 {ticket}"))),
            "ERR used the ticket was already used\n"
        );
        let other = files::mint(&files::random_hex(32).unwrap(), "f1", 7, now).unwrap();
        assert_eq!(
            text(get(addr, &format!("GET f1 {other}"))),
            "ERR bad-ticket not a ticket for this file\n"
        );
        let for_other_file = files::mint(&key, "f2", 7, now).unwrap();
        assert!(text(get(addr, &format!("GET f2 {for_other_file}"))).starts_with("ERR no-such-file "));
        // Expired well past the grace: minted 60 s + 30 s + 1 s ago.
        let old = files::mint(&key, "f1", 7, now - 91_000).unwrap();
        assert_eq!(
            text(get(addr, &format!("GET f1 {old}"))),
            "ERR expired the ticket has expired\n"
        );
        // Within the grace it is still good.
        let late = files::mint(&key, "f1", 7, now - 80_000).unwrap();
        assert!(get(addr, &format!("GET f1 {late}")).starts_with(header.as_bytes()));
        assert!(text(get(addr, "HELLO")).starts_with("ERR bad-request "));
    }

    #[test]
    fn a_file_changed_since_it_was_shared_is_refused() {
        let fixture = endpoint(b"contenido original");
        fs::write(fixture.dir.path().join("datos.bin"), b"otro contenido, otro tamano").unwrap();
        let ticket = files::mint(&fixture.key, "f1", 7, now_ms()).unwrap();
        let answer = String::from_utf8(get(fixture.addr, &format!("GET f1 {ticket}"))).unwrap();
        assert_eq!(answer, "ERR internal the file changed since it was shared\n");
        assert!(matches!(
            fixture.notices.recv_timeout(Duration::from_secs(5)),
            Ok(Notice::Changed { id, .. }) if id == "f1"
        ));
    }
}

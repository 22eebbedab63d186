//! Fetching a file another client offers (PROTOCOL.md 11; the byte
//! protocol in docs/PROTOCOL.md 11.3–11.4): where it goes on disk, and the
//! thread that brings it there.
//!
//! The thread connects to the address of `OK FETCH`, says `GET FILEID
//! TICKET`, skips the relay's bare `OK` when there is one, and takes the
//! file only when the owner's `OK SIZE SHA256` names the offer's size and
//! SHA-256 as the server's index lists them (the index is what counts, not
//! the peer). The bytes go to a temporary file beside the target, hashed on
//! the way; the file is kept only if exactly SIZE bytes came and their
//! SHA-256 is the offer's, and then it is moved into place without
//! overwriting anything the person did not agree to overwrite. Whatever
//! goes wrong, nothing partial is left behind.
//!
//! The name comes from the offer, so from another client: it is never
//! trusted to stay inside the target folder ([`resolve`]). This module
//! prints nothing; it reports to the session, which decides what a failure
//! leads to: a direct attempt that never reached its owner
//! ([`DownloadError::never_reached`]) is tried again through the relay.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::bar::TransferBar;
use super::peer::{self, Header};
use super::share;
use crate::core::files;

/// How long the first line may take: through the relay it comes when the
/// owner arrives, which the relay waits 30 s for.
const FIRST_LINE: Duration = Duration::from_secs(40);

/// After the last byte, how long to wait for the owner to close (anything
/// else it sends is more than it announced).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The size of the one buffer of a transfer.
const BUFFER: usize = 64 * 1024;

/// Why a download target cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    /// The offer's name is not a plain file name: it could leave the
    /// folder (`..`, a `/`), or the protocol does not allow it.
    #[error("the offer's name {0:?} is not a safe file name")]
    UnsafeName(String),
    /// The folder the file would go into does not exist.
    #[error("no folder {0}")]
    NoFolder(PathBuf),
}

/// Where a download goes: `path` as typed (`None`: the current folder
/// `cwd`). An existing folder (or a path ending in `/`) gets the file
/// under the offer's `name`; anything else is the file's own path, in a
/// folder that must exist.
///
/// # Errors
/// [`TargetError::UnsafeName`] when `name` is not one plain file name,
/// whatever the path (it would be the name of a file in a folder);
/// [`TargetError::NoFolder`] when the folder does not exist.
pub fn resolve(path: Option<&str>, name: &str, cwd: &Path) -> Result<PathBuf, TargetError> {
    let safe = files::file_name(name) == Ok(name)
        && matches!(
            Path::new(name).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(part)] if *part == name
        );
    if !safe {
        return Err(TargetError::UnsafeName(name.to_string()));
    }
    let Some(typed) = path.map(|p| p.trim_matches([' ', '\t'])).filter(|p| !p.is_empty()) else {
        return Ok(cwd.join(name));
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let given = cwd.join(expand_home(typed, home.as_deref()));
    if typed.ends_with('/') || given.is_dir() {
        if !given.is_dir() {
            return Err(TargetError::NoFolder(given));
        }
        return Ok(given.join(name));
    }
    match given.parent() {
        Some(folder) if folder.is_dir() => Ok(given),
        Some(folder) => Err(TargetError::NoFolder(folder.to_path_buf())),
        None => Err(TargetError::NoFolder(given)),
    }
}

/// A path as typed, with a leading `~` (alone or before `/`) meaning
/// `home`, as a shell would expand it; anything else as it is.
pub fn expand_home(typed: &str, home: Option<&Path>) -> PathBuf {
    match (typed.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_path_buf(),
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(typed),
    }
}

/// One download, as the session starts it after `OK FETCH`.
#[derive(Clone, Debug)]
pub struct Job {
    /// The session's number for it, given back in its [`Report`].
    pub number: u64,
    /// The offer's id.
    pub id: String,
    /// The single-use ticket.
    pub ticket: String,
    /// The owner's endpoint, or the relay.
    pub addr: String,
    /// The offer's size, from the server's index.
    pub size: u64,
    /// The offer's SHA-256, from the server's index.
    pub sha256: String,
    /// Where the file goes.
    pub target: PathBuf,
    /// Whether the person agreed to replace a file already there.
    pub overwrite: bool,
}

/// Why a download failed; nothing of it was left on disk.
#[derive(Debug, Error)]
pub enum DownloadError {
    /// The owner (or the relay) could not be reached: the connection
    /// could not be made, or it ended before the `GET` line went.
    #[error("cannot connect to {addr}: {source}")]
    Unreachable {
        /// The address of `OK FETCH`.
        addr: String,
        /// The socket's error.
        #[source]
        source: io::Error,
    },
    /// The owner or the relay refused: `ERR CODE TEXT`.
    #[error("refused: {code} {text}")]
    Refused {
        /// The code, as sent.
        code: String,
        /// The explanation, as sent.
        text: String,
    },
    /// The owner announced another size or SHA-256 than the offer's.
    #[error("the owner announced another file than the offer")]
    OtherFile,
    /// What came is not the peer protocol, or nothing came in time.
    #[error("the other side does not speak the protocol")]
    Garbled,
    /// The other side closed without answering.
    #[error("the other side closed the connection without answering")]
    Closed,
    /// The connection ended before SIZE bytes.
    #[error("the transfer ended after {got} of {size} bytes")]
    Short {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        size: u64,
    },
    /// More bytes came than SIZE.
    #[error("the other side sent more bytes than announced")]
    TooLong,
    /// Nothing came for [`peer::STALL`].
    #[error("the transfer stalled")]
    Stalled,
    /// The bytes' SHA-256 is not the offer's.
    #[error("the file's SHA-256 is not the offer's")]
    Mismatch,
    /// Someone created the target meanwhile; it was left alone.
    #[error("{0} appeared meanwhile")]
    Exists(PathBuf),
    /// The file cannot be written here.
    #[error("cannot write {path}: {source}")]
    Write {
        /// What could not be written.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl DownloadError {
    /// Whether the other side was never reached, so nothing was said or
    /// sent by it: the one failure worth another attempt through the
    /// relay. An answer (an `ERR`, a wrong header, bytes that do not hash
    /// right) is the owner's word, and the relay would bring the same.
    pub fn never_reached(&self) -> bool {
        matches!(self, DownloadError::Unreachable { .. })
    }
}

/// How a download ended, for the session to tell the person.
#[derive(Debug)]
pub enum Report {
    /// The file is at `path`, verified.
    Done {
        /// The job's number.
        number: u64,
        /// The offer's id.
        id: String,
        /// Where it is.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// It failed; nothing was left behind.
    Failed {
        /// The job's number.
        number: u64,
        /// The offer's id.
        id: String,
        /// Where it would have gone.
        path: PathBuf,
        /// Why.
        error: DownloadError,
    },
}

/// Runs `job` on a thread of its own, with `bar` showing its progress, and
/// reports on `reports`.
pub fn spawn(job: Job, bar: TransferBar, reports: Sender<Report>) {
    let number = job.number;
    let id = job.id.clone();
    let path = job.target.clone();
    let spawned = thread::Builder::new().name("download".into()).spawn({
        let reports = reports.clone();
        move || {
            let report = match run(&job, &bar) {
                Ok(()) => Report::Done {
                    number: job.number,
                    id: job.id.clone(),
                    path: job.target.clone(),
                    size: job.size,
                },
                Err(error) => Report::Failed {
                    number: job.number,
                    id: job.id.clone(),
                    path: job.target.clone(),
                    error,
                },
            };
            drop(bar);
            let _ = reports.send(report);
        }
    });
    if let Err(source) = spawned {
        let _ = reports.send(Report::Failed {
            number,
            id,
            path: path.clone(),
            error: DownloadError::Write { path, source },
        });
    }
}

/// The temporary file being written, removed unless kept.
struct Partial {
    /// Its path.
    path: PathBuf,
    /// Set once it was moved into place.
    kept: bool,
}

impl Report {
    /// The job's number.
    pub fn number(&self) -> u64 {
        match self {
            Report::Done { number, .. } | Report::Failed { number, .. } => *number,
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Tells temporary files of one run apart.
static PARTIALS: AtomicU64 = AtomicU64::new(0);

/// The whole download.
fn run(job: &Job, bar: &TransferBar) -> Result<(), DownloadError> {
    let stream = share::connect(&job.addr).map_err(|source| DownloadError::Unreachable {
        addr: job.addr.clone(),
        source,
    })?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(peer::STALL));
    (&stream)
        .write_all(format!("GET {} {}\n", job.id, job.ticket).as_bytes())
        .map_err(|source| DownloadError::Unreachable {
            addr: job.addr.clone(),
            source,
        })?;
    let mut header = read_header(&stream, FIRST_LINE)?;
    if header == Header::Paired {
        header = read_header(&stream, peer::STALL)?;
    }
    match header {
        Header::File { size, sha256 } if size == job.size && sha256 == job.sha256 => {}
        Header::File { .. } => return Err(DownloadError::OtherFile),
        Header::Refused { code, text } => return Err(DownloadError::Refused { code, text }),
        Header::Paired => return Err(DownloadError::Garbled),
    }
    let (mut partial, file) = create_partial(&job.target)?;
    receive(&stream, file, job, &partial.path, bar)?;
    place(&partial.path, &job.target, job.overwrite)?;
    partial.kept = true;
    Ok(())
}

/// Reads and parses one header line.
fn read_header(stream: &TcpStream, limit: Duration) -> Result<Header, DownloadError> {
    match peer::read_line(stream, limit) {
        Ok(line) => peer::parse_header(&line).ok_or(DownloadError::Garbled),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(DownloadError::Closed),
        Err(_) => Err(DownloadError::Garbled),
    }
}

/// A new temporary file beside `target`: `.NAME.PID-N.charla-part`.
fn create_partial(target: &Path) -> Result<(Partial, File), DownloadError> {
    let folder = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let failed = |path: &Path, source| DownloadError::Write {
        path: path.to_path_buf(),
        source,
    };
    for _ in 0..100 {
        let n = PARTIALS.fetch_add(1, Ordering::Relaxed);
        let path = folder.join(format!(".{name}.{}-{n}.charla-part", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((Partial { path, kept: false }, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(failed(target, e)),
        }
    }
    Err(failed(target, io::ErrorKind::AlreadyExists.into()))
}

/// Exactly `job.size` bytes from `stream` into `file`, hashed on the way,
/// then the owner's close, then the SHA-256 checked.
fn receive(
    stream: &TcpStream,
    mut file: File,
    job: &Job,
    partial: &Path,
    bar: &TransferBar,
) -> Result<(), DownloadError> {
    let written = |source| DownloadError::Write {
        path: partial.to_path_buf(),
        source,
    };
    let _ = stream.set_read_timeout(Some(peer::STALL));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BUFFER];
    let mut got = 0u64;
    let mut input = stream;
    while got < job.size {
        let want = usize::try_from(job.size - got).map_or(BUFFER, |left| left.min(BUFFER));
        let n = match input.read(&mut buffer[..want]) {
            Ok(0) => return Err(DownloadError::Short { got, size: job.size }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(DownloadError::Stalled);
            }
            Err(_) => return Err(DownloadError::Short { got, size: job.size }),
        };
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(written)?;
        got += n as u64;
        bar.advance(n as u64);
    }
    // The owner closes after the last byte; anything more is not the offer.
    let _ = stream.set_read_timeout(Some(CLOSE_WAIT));
    let mut extra = [0u8; 1];
    loop {
        match input.read(&mut extra) {
            Ok(0) => break,
            Ok(_) => return Err(DownloadError::TooLong),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Silent, or reset after the last byte: the bytes are all here
            // and the hash decides.
            Err(_) => break,
        }
    }
    // Done with the other side before the hash and the disk's sync.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    if files::hex(&hasher.finalize()) != job.sha256 {
        return Err(DownloadError::Mismatch);
    }
    file.sync_all().map_err(written)?;
    Ok(())
}

/// Moves the verified file into place: replacing the target only if the
/// person agreed, otherwise failing if it exists (even if it appeared only
/// now).
fn place(partial: &Path, target: &Path, overwrite: bool) -> Result<(), DownloadError> {
    let failed = |source| DownloadError::Write {
        path: target.to_path_buf(),
        source,
    };
    if overwrite {
        return fs::rename(partial, target).map_err(failed);
    }
    // A hard link never replaces anything; where links are not possible,
    // check and rename (a small window, on such file systems only).
    match fs::hard_link(partial, target) {
        Ok(()) => {
            let _ = fs::remove_file(partial);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(DownloadError::Exists(target.to_path_buf())),
        Err(_) if fs::symlink_metadata(target).is_ok() => Err(DownloadError::Exists(target.to_path_buf())),
        Err(_) => fs::rename(partial, target).map_err(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_to_the_current_folder_under_the_offers_name() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        fs::create_dir(cwd.join("bajadas")).unwrap();
        assert_eq!(resolve(None, "a.txt", cwd), Ok(cwd.join("a.txt")));
        assert_eq!(resolve(Some("  "), "a.txt", cwd), Ok(cwd.join("a.txt")));
        assert_eq!(resolve(Some("bajadas"), "a.txt", cwd), Ok(cwd.join("bajadas/a.txt")));
        assert_eq!(resolve(Some("bajadas/"), "a.txt", cwd), Ok(cwd.join("bajadas/a.txt")));
        assert_eq!(
            resolve(Some("bajadas/b.txt"), "a.txt", cwd),
            Ok(cwd.join("bajadas/b.txt"))
        );
        let absolute = cwd.join("bajadas").display().to_string();
        assert_eq!(
            resolve(Some(&absolute), "a b.txt", Path::new("/")),
            Ok(cwd.join("bajadas/a b.txt"))
        );
        assert_eq!(
            resolve(Some("nada/b.txt"), "a.txt", cwd),
            Err(TargetError::NoFolder(cwd.join("nada")))
        );
        assert_eq!(
            resolve(Some("nada/"), "a.txt", cwd),
            Err(TargetError::NoFolder(cwd.join("nada/")))
        );
    }

    #[test]
    fn a_leading_tilde_is_the_home_folder() {
        let home = Path::new("/home/bea");
        assert_eq!(expand_home("~", Some(home)), PathBuf::from("/home/bea"));
        assert_eq!(
            expand_home("~/Descargas", Some(home)),
            PathBuf::from("/home/bea/Descargas")
        );
        assert_eq!(expand_home("~ana/x", Some(home)), PathBuf::from("~ana/x"));
        assert_eq!(expand_home("a/~/b", Some(home)), PathBuf::from("a/~/b"));
        assert_eq!(expand_home("~/x", None), PathBuf::from("~/x"));
    }

    #[test]
    fn offer_names_never_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "..",
            ".",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "",
            " x",
            "a\u{0}b",
            "a\nb",
        ] {
            assert_eq!(
                resolve(None, name, dir.path()),
                Err(TargetError::UnsafeName(name.to_string())),
                "{name:?}"
            );
            assert!(resolve(Some("otro.txt"), name, dir.path()).is_err(), "{name:?}");
        }
        assert!(resolve(None, "..a", dir.path()).is_ok());
        assert!(resolve(None, ".oculto", dir.path()).is_ok());
    }

    #[test]
    fn only_an_owner_never_reached_is_worth_the_relay() {
        let unreachable = |kind: io::ErrorKind| DownloadError::Unreachable {
            addr: "127.0.0.1:9".into(),
            source: kind.into(),
        };
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut,
            io::ErrorKind::HostUnreachable,
            io::ErrorKind::NetworkUnreachable,
            io::ErrorKind::NotFound,
        ] {
            assert!(unreachable(kind).never_reached(), "{kind:?}");
        }
        for answered in [
            DownloadError::Refused {
                code: "limit-reached".into(),
                text: "too many transfers at once".into(),
            },
            DownloadError::OtherFile,
            DownloadError::Garbled,
            DownloadError::Closed,
            DownloadError::Short { got: 1, size: 2 },
            DownloadError::TooLong,
            DownloadError::Stalled,
            DownloadError::Mismatch,
            DownloadError::Exists(PathBuf::from("/t/a")),
            DownloadError::Write {
                path: PathBuf::from("/t/a"),
                source: io::ErrorKind::PermissionDenied.into(),
            },
        ] {
            assert!(!answered.never_reached(), "{answered:?}");
        }
    }

    #[test]
    fn placing_never_replaces_without_consent() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".p");
        let target = dir.path().join("t");
        fs::write(&target, b"antes").unwrap();
        fs::write(&partial, b"nuevo").unwrap();
        assert!(matches!(place(&partial, &target, false), Err(DownloadError::Exists(_))));
        assert_eq!(fs::read(&target).unwrap(), b"antes");
        place(&partial, &target, true).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"nuevo");
        assert!(!partial.exists());
        let (mut partial, mut file) = create_partial(&dir.path().join("otro")).unwrap();
        file.write_all(b"x").unwrap();
        place(&partial.path, &dir.path().join("otro"), false).unwrap();
        partial.kept = true;
        assert!(!partial.path.exists());
        let (partial, _) = create_partial(&dir.path().join("borrado")).unwrap();
        let path = partial.path.clone();
        assert!(path.exists());
        drop(partial);
        assert!(!path.exists(), "an unkept partial is removed");
    }
}

//! TLS (rustls, no OpenSSL) as a [`Transport`], for the server's
//! `--tls-addr` and for the client's `--tls`, and the loading of
//! certificates and keys (PROTOCOL.md 12).
//!
//! One rustls connection is shared by the connection's reader and its
//! writer, so it sits behind a lock held only to decrypt what arrived or to
//! encrypt what is sent, never across a socket read or write. Encrypted
//! bytes wait in an ordered buffer of their own and are written from there,
//! so the outbox keeps its fast path (a send that never blocks) and its
//! slow-consumer rule: the transport takes plaintext only while that buffer
//! is small, and says it holds bytes ([`Transport::pending`]) until they
//! are on the wire.
//!
//! The handshake happens as the reader reads: a peer that never completes
//! it is cut off by the login deadline like one that never logs in, and one
//! that sends garbage gets an error on its read and its connection closed.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use socket2::SockRef;
use thiserror::Error;

use crate::core::transport::Transport;

/// How long a blocked write waits before the writer rechecks whether the
/// session was cut off or is closing (as for plain TCP).
const WRITE_POLL: Duration = Duration::from_millis(250);
/// Encrypted bytes held before the transport stops taking plaintext: the
/// outbox queues (and counts) the rest, so a reader that does not read is
/// still cut off at the outbox's bound.
const HELD_LIMIT: usize = 64 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Send without blocking, and without SIGPIPE on a closed peer.
const SEND_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// Why a certificate or key could not be used.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    /// The file could not be read or holds no PEM item of the right kind.
    #[error("cannot read {what} from {path}: {source}")]
    Pem {
        /// "the certificate" or "the private key".
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no certificate")]
    NoCertificate(String),
    /// rustls refused the pair (a key that does not match, say).
    #[error("the certificate and key cannot be used together: {0}")]
    Rejected(#[from] rustls::Error),
}

/// The certificates of a PEM file, in order.
///
/// # Errors
/// [`TlsSetupError`] when the file cannot be read or holds none.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let shown = path.display().to_string();
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsSetupError::Pem {
            what: "the certificate",
            path: shown.clone(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsSetupError::NoCertificate(shown));
    }
    Ok(certificates)
}

/// The server's TLS settings from a PEM certificate chain and key: TLS 1.2
/// and 1.3 with rustls's safe defaults and the `ring` provider.
///
/// # Errors
/// [`TlsSetupError`] when a file is missing or unreadable, holds no
/// certificate or key, or the key does not match.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let chain = load_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsSetupError::Pem {
        what: "the private key",
        path: key.display().to_string(),
        source,
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// The SHA-256 fingerprint of a certificate, as `AB:CD:…`, the way people
/// compare it with what a browser or `openssl x509 -fingerprint` shows.
pub fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    Sha256::digest(certificate.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A TLS connection over TCP.
pub struct TlsTransport {
    /// The socket; reads happen without any lock held.
    socket: TcpStream,
    /// The TLS state, locked only to decrypt or encrypt.
    tls: Mutex<rustls::Connection>,
    /// Encrypted bytes not yet on the wire, in order. Lock order: `tls`
    /// before `held`, never the other way round.
    held: Mutex<Vec<u8>>,
    /// Bytes read from the socket that rustls had no room for yet: it takes
    /// no more while 16 KiB of plaintext wait to be read, so the reader
    /// hands out what is decrypted before feeding it the rest. Only the
    /// reader locks it, never with another lock held.
    unread: Mutex<Vec<u8>>,
}

impl TlsTransport {
    /// Wraps an accepted connection as the server side of TLS with
    /// `config`.
    ///
    /// # Errors
    /// When the socket cannot be set up or rustls refuses the settings.
    pub fn server(socket: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<TlsTransport> {
        let tls = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        TlsTransport::new(socket, rustls::Connection::Server(tls))
    }

    /// Wraps a connected socket as the client side of TLS to `name`.
    ///
    /// # Errors
    /// When the socket cannot be set up or rustls refuses the settings.
    pub fn client(
        socket: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<TlsTransport> {
        let tls = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        TlsTransport::new(socket, rustls::Connection::Client(tls))
    }

    fn new(socket: TcpStream, tls: rustls::Connection) -> io::Result<TlsTransport> {
        let _ = socket.set_nodelay(true);
        socket.set_write_timeout(Some(WRITE_POLL))?;
        Ok(TlsTransport {
            socket,
            tls: Mutex::new(tls),
            held: Mutex::new(Vec::new()),
            unread: Mutex::new(Vec::new()),
        })
    }

    fn tls(&self) -> MutexGuard<'_, rustls::Connection> {
        self.tls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn held(&self) -> MutexGuard<'_, Vec<u8>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unread(&self) -> MutexGuard<'_, Vec<u8>> {
        self.unread.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves what rustls has encrypted into the held buffer.
    fn take_encrypted(&self, tls: &mut rustls::Connection) -> io::Result<()> {
        let mut held = self.held();
        while tls.wants_write() {
            tls.write_tls(&mut *held)?;
        }
        Ok(())
    }

    /// Writes held bytes without blocking; returns whether any are left.
    fn push_held(&self) -> io::Result<bool> {
        let mut held = self.held();
        while !held.is_empty() {
            match SockRef::from(&self.socket).send_with_flags(&held, SEND_FLAGS) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    held.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Writes held bytes, blocking at most for the socket's write timeout
    /// per write.
    fn write_held(&self) -> io::Result<()> {
        let mut held = self.held();
        while !held.is_empty() {
            match (&self.socket).write(&held) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    held.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Encrypts as much of `bufs` as the held buffer has room for.
    fn take_plaintext(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut tls = self.tls();
        let room = HELD_LIMIT.saturating_sub(self.held().len());
        let mut taken = 0;
        for buf in bufs {
            if taken >= room {
                break;
            }
            let part = &buf[..buf.len().min(room - taken)];
            let n = tls.writer().write(part)?;
            taken += n;
            if n < part.len() {
                break;
            }
        }
        self.take_encrypted(&mut tls)?;
        Ok(taken)
    }
}

impl TlsTransport {
    /// Drives the handshake to its end (for a connection that will be
    /// refused, and is owed its `BYE` inside TLS), reading until `deadline`.
    ///
    /// # Errors
    /// When the handshake fails, the peer goes away or the deadline passes.
    pub fn complete_handshake(&self, deadline: std::time::Instant) -> io::Result<()> {
        let mut raw = [0u8; READ_CHUNK];
        while self.tls().is_handshaking() {
            {
                let mut tls = self.tls();
                self.take_encrypted(&mut tls)?;
            }
            self.write_held()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = (&self.socket).read(&mut raw)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut tls = self.tls();
            let mut arrived = &raw[..n];
            while !arrived.is_empty() {
                tls.read_tls(&mut arrived)?;
                tls.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            self.take_encrypted(&mut tls)?;
            drop(tls);
            self.write_held()?;
        }
        Ok(())
    }
}

impl TlsTransport {
    /// The read timeout last set ([`Transport::set_read_timeout`]).
    ///
    /// # Errors
    /// When the socket cannot say.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.socket.read_timeout()
    }
}

impl Transport for TlsTransport {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut raw = [0u8; READ_CHUNK];
        loop {
            {
                let mut tls = self.tls();
                // What the handshake needs sent first (a client's hello).
                if tls.wants_write() {
                    self.take_encrypted(&mut tls)?;
                }
                drop(tls);
                self.write_held()?;
                let mut tls = self.tls();
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The peer closed without close_notify: the end, all the same.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            // What an earlier read left over comes before anything new.
            let leftover = std::mem::take(&mut *self.unread());
            let arrived = if leftover.is_empty() {
                let n = (&self.socket).read(&mut raw)?;
                if n == 0 {
                    return Ok(0);
                }
                &raw[..n]
            } else {
                &leftover[..]
            };
            let (processed, rest) = {
                let mut tls = self.tls();
                let mut arrived = arrived;
                let mut outcome = Ok(());
                while !arrived.is_empty() && outcome.is_ok() {
                    match tls.read_tls(&mut arrived) {
                        // After close_notify: nothing more is read.
                        Ok(0) => break,
                        Ok(_) => match tls.process_new_packets() {
                            // Hand out the plaintext before feeding more:
                            // rustls refuses ciphertext ("received plaintext
                            // buffer full") while 16 KiB of it wait, which
                            // would end the connection.
                            Ok(state) if state.plaintext_bytes_to_read() > 0 => break,
                            Ok(_) => {}
                            Err(e) => outcome = Err(io::Error::other(e)),
                        },
                        Err(e) => outcome = Err(e),
                    }
                }
                // Handshake answers, or the alert that says why it failed.
                self.take_encrypted(&mut tls)?;
                (outcome, (!arrived.is_empty()).then(|| arrived.to_vec()))
            };
            if let Some(rest) = rest {
                *self.unread() = rest;
            }
            self.write_held()?;
            if let Err(e) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }

    fn send_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.push_held()? && self.held().len() >= HELD_LIMIT {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.take_plaintext(bufs)?;
        self.push_held()?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn send(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_held()?;
        let taken = self.take_plaintext(bufs)?;
        match self.write_held() {
            Ok(()) => Ok(taken),
            // Taken and held: written by the next send or flush.
            Err(e) if taken > 0 && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(taken),
            Err(e) => Err(e),
        }
    }

    fn shutdown(&self, how: Shutdown) {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            let mut tls = self.tls();
            tls.send_close_notify();
            let _ = self.take_encrypted(&mut tls);
            drop(tls);
            let _ = self.push_held();
        }
        let _ = self.socket.shutdown(how);
    }

    fn pending(&self) -> bool {
        !self.held().is_empty()
    }

    fn flush(&self) -> io::Result<()> {
        self.write_held()
    }
}

/// A self-signed certificate and its key, as PEM, for a server without a
/// certificate authority (a classroom): clients trust it with
/// `charla --tls --ca CERT`.
pub struct SelfSigned {
    /// The certificate, PEM.
    pub certificate: String,
    /// The private key, PEM.
    pub key: String,
    /// The certificate's SHA-256 fingerprint, to hand out.
    pub fingerprint: String,
}

/// Why a certificate could not be made.
#[derive(Debug, Error)]
pub enum MakeCertificateError {
    /// A name is neither an IP address nor a host name.
    #[error("{0:?} is neither an IP address nor a host name (letters, digits, '-' and '.')")]
    BadName(String),
    /// rcgen failed.
    #[error("{0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Whether `name` is a host name a certificate can be made for: labels of
/// letters, digits and `-` (not at either end), joined by dots, or a `*.`
/// wildcard in front of such a name.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Makes a self-signed certificate valid for `names` (host names, and IP
/// addresses written as such) for `days` days from yesterday (so a clock
/// slightly behind still accepts it).
///
/// # Errors
/// When a name is not a valid host name or IP address, or the certificate
/// cannot be made.
pub fn self_signed(names: &[String], days: u32) -> Result<SelfSigned, MakeCertificateError> {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
            Err(_) if is_host_name(name) => Ok(rcgen::SanType::DnsName(name.clone().try_into()?)),
            Err(_) => Err(MakeCertificateError::BadName(name.clone())),
        })
        .collect::<Result<_, MakeCertificateError>>()?;
    if let Some(first) = names.first() {
        params.distinguished_name.push(rcgen::DnType::CommonName, first.clone());
    }
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "charla");
    let from = ymd(chrono::Utc::now() - chrono::Duration::days(1));
    let until = ymd(chrono::Utc::now() + chrono::Duration::days(i64::from(days)));
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key = rcgen::KeyPair::generate()?;
    let certificate = params.self_signed(&key)?;
    Ok(SelfSigned {
        fingerprint: fingerprint(certificate.der()),
        certificate: certificate.pem(),
        key: key.serialize_pem(),
    })
}

/// The year, month and day of `day`.
fn ymd(day: chrono::DateTime<chrono::Utc>) -> (i32, u8, u8) {
    use chrono::Datelike;
    // Months and days are 1 to 31: they fit a u8.
    (day.year(), day.month() as u8, day.day() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_loads_and_pairs_with_its_key() {
        let made = self_signed(&["aula.local".to_string(), "192.168.1.10".to_string()], 30).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &made.certificate).unwrap();
        std::fs::write(&key, &made.key).unwrap();
        assert!(server_config(&cert, &key).is_ok());
        let loaded = load_certificates(&cert).unwrap();
        assert_eq!(fingerprint(&loaded[0]), made.fingerprint);
        assert_eq!(made.fingerprint.len(), 32 * 3 - 1);
        assert!(self_signed(&["not a name".to_string()], 30).is_err());
    }

    #[test]
    fn missing_or_wrong_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let error = server_config(&missing, &missing).err().unwrap().to_string();
        assert!(error.contains("none.pem"), "{error}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here").unwrap();
        assert!(matches!(
            load_certificates(&empty),
            Err(TlsSetupError::NoCertificate(_))
        ));
        // A key of another certificate.
        let one = self_signed(&["a.local".to_string()], 1).unwrap();
        let other = self_signed(&["b.local".to_string()], 1).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, &one.certificate).unwrap();
        std::fs::write(&key, &other.key).unwrap();
        assert!(matches!(server_config(&cert, &key), Err(TlsSetupError::Rejected(_))));
    }

    /// A full 16 KiB record followed by small ones, all waiting in the
    /// socket before the reader reads: one socket read completes the big
    /// record and holds the small ones too, more plaintext than rustls
    /// takes at once. Every byte must arrive, in order (before the fix the
    /// read failed with "received plaintext buffer full").
    #[test]
    fn a_burst_past_rustls_plaintext_buffer_arrives_whole() {
        use std::net::TcpListener;
        use std::time::Instant;

        let made = self_signed(&["127.0.0.1".to_string()], 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &made.certificate).unwrap();
        std::fs::write(&key, &made.key).unwrap();
        let server_tls = server_config(&cert, &key).unwrap();
        let client_tls = crate::client::tls::client_config(Some(&cert)).unwrap();

        let mut burst = vec![b'a'; 16 * 1024];
        for i in 0..20u8 {
            burst.extend(std::iter::repeat_n(b'0' + i % 10, 1000));
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let sent = burst.clone();
        let server = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let transport = TlsTransport::server(socket, server_tls).unwrap();
            transport.complete_handshake(deadline).unwrap();
            // One record of 16 KiB, then one record per 1000-byte send.
            let (big, small) = sent.split_at(16 * 1024);
            for part in std::iter::once(big).chain(small.chunks(1000)) {
                let mut left = part;
                while !left.is_empty() {
                    let n = transport.send(&[IoSlice::new(left)]).unwrap();
                    left = &left[n..];
                }
            }
            while transport.pending() {
                transport.flush().unwrap();
            }
            transport
        });
        // A receive buffer that holds the whole burst, so the reads see it
        // all at once rather than as the window lets it through.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(1 << 20).unwrap();
        socket.connect(&addr.into()).unwrap();
        let socket = TcpStream::from(socket);
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let client = TlsTransport::client(socket, client_tls, name).unwrap();
        client.complete_handshake(deadline).unwrap();
        // Everything is in the socket before the first read.
        let server = server.join().unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while received.len() < burst.len() {
            let n = Transport::read(&client, &mut buf).unwrap();
            assert_ne!(n, 0, "closed after {} bytes", received.len());
            received.extend_from_slice(&buf[..n]);
        }
        assert!(received == burst, "the bytes arrived changed or out of order");
        drop(server);
    }
}

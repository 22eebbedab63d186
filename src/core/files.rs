//! Sharing files between users (PROTOCOL.md 11): the index of live offers,
//! the tickets that let one session fetch one file once, and the value
//! rules of `SHARE`.
//!
//! The server never holds a file. An offer is a name, a size and a SHA-256
//! in an index that lives as long as the offering session. A fetch gets a
//! ticket: an expiry, the fetching account and a nonce, sealed with an HMAC
//! under the offering session's key. Whoever holds that key checks a ticket
//! without asking anyone: the offering client for a direct transfer (it got
//! the key in its `OK ENDPOINT`), the relay for a relayed one. Tickets are
//! single use: each checker remembers the ones it accepted until they
//! expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hmac::{Hmac, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;

use super::code::ErrorCode;
use super::feed::ConnectionId;
use super::validate;
use crate::store::{AccountId, ClusterStore, Millis, StoreError, StoredOffer};

/// The largest `SHARE` size by default: 4 GiB, inclusive.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 32;
/// How long a ticket is good for.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);
/// Most offers one `FILES` lists.
pub const MAX_LISTED: usize = 100;
/// Most offers one session may hold at once.
pub const MAX_OFFERS_PER_SESSION: usize = 1000;
/// Longest file name, in characters.
pub const MAX_FILE_NAME: usize = 255;

/// One live offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Its id, `[A-Za-z0-9_-]`, unique on the server.
    pub id: String,
    /// The file's size in bytes.
    pub size: u64,
    /// The file's SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// The file's name (no path).
    pub name: String,
    /// The offering account.
    pub owner_id: AccountId,
    /// Its username as registered.
    pub owner: Arc<str>,
    /// The key that seals this offer's tickets (its session's), hex.
    pub key: String,
    /// Where the offering client serves it (`HOST:PORT`), or `None`: fetches
    /// go through the relay.
    pub endpoint: Option<String>,
    /// The offering session.
    pub conn: ConnectionId,
    /// The node instance of the offering session, in a cluster.
    pub node: Option<String>,
}

/// The index of live offers: one process's, or a cluster's.
pub trait OfferIndex: Send + Sync {
    /// Adds an offer.
    ///
    /// # Errors
    /// [`StoreError`] when a cluster's database cannot be reached.
    fn add(&self, offer: Offer) -> Result<(), StoreError>;

    /// The live offer with this id.
    ///
    /// # Errors
    /// As [`OfferIndex::add`].
    fn get(&self, id: &str) -> Result<Option<Offer>, StoreError>;

    /// Withdraws an offer.
    ///
    /// # Errors
    /// As [`OfferIndex::add`].
    fn remove(&self, id: &str) -> Result<(), StoreError>;

    /// The offers whose name contains `query` (ASCII case-insensitive),
    /// sorted by name in ASCII lower case then id, at most `limit`.
    ///
    /// # Errors
    /// As [`OfferIndex::add`].
    fn search(&self, query: &str, limit: usize) -> Result<Vec<Offer>, StoreError>;

    /// How many offers session `conn` holds.
    ///
    /// # Errors
    /// As [`OfferIndex::add`].
    fn count_of(&self, conn: ConnectionId) -> Result<usize, StoreError>;

    /// Records where session `conn` serves its offers (`None`: it serves
    /// none, use the relay), for its offers now and later.
    ///
    /// # Errors
    /// As [`OfferIndex::add`].
    fn set_endpoint(&self, conn: ConnectionId, endpoint: Option<&str>) -> Result<(), StoreError>;

    /// Where session `conn` serves its offers, as last announced.
    fn endpoint_of(&self, conn: ConnectionId) -> Option<String>;

    /// Forgets session `conn`'s offers and endpoint: it ended.
    fn session_ended(&self, conn: ConnectionId);
}

/// The offers of a server that is the whole chat, in memory: they live as
/// long as their sessions, so they need no storage.
#[derive(Default)]
pub struct LocalOffers {
    /// Offers by id, and endpoints by session.
    inner: Mutex<LocalInner>,
}

/// The maps behind [`LocalOffers`]' lock.
#[derive(Default)]
struct LocalInner {
    /// Offers by id.
    offers: HashMap<String, Offer>,
    /// Announced endpoints by session.
    endpoints: HashMap<ConnectionId, String>,
}

impl LocalOffers {
    fn lock(&self) -> MutexGuard<'_, LocalInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OfferIndex for LocalOffers {
    fn add(&self, offer: Offer) -> Result<(), StoreError> {
        self.lock().offers.insert(offer.id.clone(), offer);
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Offer>, StoreError> {
        Ok(self.lock().offers.get(id).cloned())
    }

    fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.lock().offers.remove(id);
        Ok(())
    }

    fn search(&self, query: &str, limit: usize) -> Result<Vec<Offer>, StoreError> {
        let query = query.to_ascii_lowercase();
        let mut found: Vec<Offer> = self
            .lock()
            .offers
            .values()
            .filter(|offer| offer.name.to_ascii_lowercase().contains(&query))
            .cloned()
            .collect();
        sort_offers(&mut found);
        found.truncate(limit);
        Ok(found)
    }

    fn count_of(&self, conn: ConnectionId) -> Result<usize, StoreError> {
        Ok(self.lock().offers.values().filter(|o| o.conn == conn).count())
    }

    fn set_endpoint(&self, conn: ConnectionId, endpoint: Option<&str>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        match endpoint {
            Some(endpoint) => inner.endpoints.insert(conn, endpoint.to_string()),
            None => inner.endpoints.remove(&conn),
        };
        for offer in inner.offers.values_mut().filter(|o| o.conn == conn) {
            offer.endpoint = endpoint.map(str::to_string);
        }
        Ok(())
    }

    fn endpoint_of(&self, conn: ConnectionId) -> Option<String> {
        self.lock().endpoints.get(&conn).cloned()
    }

    fn session_ended(&self, conn: ConnectionId) {
        let mut inner = self.lock();
        inner.offers.retain(|_, offer| offer.conn != conn);
        inner.endpoints.remove(&conn);
    }
}

/// The offers of a cluster node: in the shared database, so `FILES` on any
/// node lists every node's, and they go with their sessions (and with a
/// dead node's).
pub struct ClusterOffers {
    /// The shared database.
    store: Arc<dyn ClusterStore>,
    /// This process's node instance.
    instance: String,
    /// Announced endpoints of this node's sessions (also stored with their
    /// offers).
    endpoints: Mutex<HashMap<ConnectionId, String>>,
}

impl ClusterOffers {
    /// The offers of node instance `instance` in `store`.
    pub fn new(store: Arc<dyn ClusterStore>, instance: String) -> ClusterOffers {
        ClusterOffers {
            store,
            instance,
            endpoints: Mutex::default(),
        }
    }

    fn endpoints(&self) -> MutexGuard<'_, HashMap<ConnectionId, String>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An offer as the database holds it, as the core uses it.
fn from_stored(offer: StoredOffer) -> Offer {
    Offer {
        id: offer.id,
        size: offer.size,
        sha256: offer.sha256,
        name: offer.name,
        owner_id: offer.owner_id,
        owner: Arc::from(offer.owner),
        key: offer.key,
        endpoint: offer.endpoint,
        conn: offer.conn,
        node: Some(offer.instance),
    }
}

impl OfferIndex for ClusterOffers {
    fn add(&self, offer: Offer) -> Result<(), StoreError> {
        self.store.offer_add(&StoredOffer {
            id: offer.id,
            size: offer.size,
            sha256: offer.sha256,
            name: offer.name,
            owner_id: offer.owner_id,
            owner: offer.owner.to_string(),
            key: offer.key,
            endpoint: offer.endpoint,
            instance: self.instance.clone(),
            conn: offer.conn,
        })
    }

    fn get(&self, id: &str) -> Result<Option<Offer>, StoreError> {
        Ok(self.store.offer_get(id)?.map(from_stored))
    }

    fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.store.offer_remove(id)
    }

    fn search(&self, query: &str, limit: usize) -> Result<Vec<Offer>, StoreError> {
        Ok(self
            .store
            .offer_search(query, limit)?
            .into_iter()
            .map(from_stored)
            .collect())
    }

    fn count_of(&self, conn: ConnectionId) -> Result<usize, StoreError> {
        self.store.offer_count(&self.instance, conn)
    }

    fn set_endpoint(&self, conn: ConnectionId, endpoint: Option<&str>) -> Result<(), StoreError> {
        self.store.offers_set_endpoint(&self.instance, conn, endpoint)?;
        match endpoint {
            Some(endpoint) => self.endpoints().insert(conn, endpoint.to_string()),
            None => self.endpoints().remove(&conn),
        };
        Ok(())
    }

    fn endpoint_of(&self, conn: ConnectionId) -> Option<String> {
        self.endpoints().get(&conn).cloned()
    }

    /// The database forgets the session's offers with the session itself
    /// (when its logout is recorded); this forgets its endpoint.
    fn session_ended(&self, conn: ConnectionId) {
        self.endpoints().remove(&conn);
    }
}

/// Sorts offers as `FILES` lists them: by name in ASCII lower case, then by
/// id as a string.
pub fn sort_offers(offers: &mut [Offer]) {
    fn lower(name: &str) -> impl Iterator<Item = u8> + '_ {
        name.bytes().map(|b| b.to_ascii_lowercase())
    }
    offers.sort_by(|a, b| lower(&a.name).cmp(lower(&b.name)).then_with(|| a.id.cmp(&b.id)));
}

/// Checks `SHARE`'s size: decimal digits (else `bad-request`) of at most
/// `max` (else `invalid-file`).
///
/// # Errors
/// As above.
pub fn share_size(word: &str, max: u64) -> Result<u64, ErrorCode> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorCode::BadRequest);
    }
    // More digits than a u64 holds is still a number, and too big.
    match word.parse::<u64>() {
        Ok(size) if size <= max => Ok(size),
        _ => Err(ErrorCode::InvalidFile),
    }
}

/// Checks a SHA-256: 64 lowercase hex digits.
///
/// # Errors
/// `invalid-file` otherwise.
pub fn sha256_hex(word: &str) -> Result<&str, ErrorCode> {
    let ok = word.len() == 64 && word.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok { Ok(word) } else { Err(ErrorCode::InvalidFile) }
}

/// Trims and checks a file name: 1 to 255 characters, no `/`, `\`, TAB or
/// character 5.2 refuses, and not `.` or `..`. Returns the trimmed name.
///
/// # Errors
/// `invalid-file` otherwise.
pub fn file_name(name: &str) -> Result<&str, ErrorCode> {
    let name = name.trim_matches([' ', '\t']);
    let ok = !name.is_empty()
        && name.chars().take(MAX_FILE_NAME + 1).count() <= MAX_FILE_NAME
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c == '\t' || validate::is_refused(c))
        && name != "."
        && name != "..";
    if ok { Ok(name) } else { Err(ErrorCode::InvalidFile) }
}

/// Checks an endpoint a client announces: `HOST:PORT`, the host an IP
/// address or a host name, the port 1 to 65535.
///
/// # Errors
/// `bad-request` otherwise.
pub fn endpoint(word: &str) -> Result<&str, ErrorCode> {
    if word.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(word);
    }
    let (host, port) = word.rsplit_once(':').ok_or(ErrorCode::BadRequest)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0) && port.bytes().all(|b| b.is_ascii_digit());
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if port_ok && host_ok {
        Ok(word)
    } else {
        Err(ErrorCode::BadRequest)
    }
}

/// Random bytes, hex: offer ids, keys and nonces.
///
/// # Errors
/// When the system's random source fails (then nothing can be shared).
pub fn random_hex(bytes: usize) -> Result<String, ErrorCode> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buf).map_err(|_| ErrorCode::Internal)?;
    Ok(hex(&buf))
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Hex to bytes.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a ticket says, once its seal checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// When it stops being good, in milliseconds since the epoch (the
    /// server's clock).
    pub expires_ms: Millis,
    /// The account it was given to.
    pub fetcher: AccountId,
    /// What makes it unique, for single use.
    pub nonce: u64,
}

/// Why a ticket is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketError {
    /// Not a ticket of this offer (or of any).
    Forged,
    /// Good once, but too late now.
    Expired,
}

/// The MAC of a ticket's fields for file `file` under `key`, before it is
/// finished: [`mint`] seals with it, [`check`] verifies with it.
fn ticket_mac(key: &[u8], file: &str, expires_ms: Millis, fetcher: AccountId, nonce: u64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(file.as_bytes());
    mac.update(&expires_ms.to_be_bytes());
    mac.update(&fetcher.to_be_bytes());
    mac.update(&nonce.to_be_bytes());
    Some(mac)
}

/// The seal of a ticket's fields for file `file` under `key`.
fn seal(key: &[u8], file: &str, expires_ms: Millis, fetcher: AccountId, nonce: u64) -> Option<[u8; 16]> {
    let full = ticket_mac(key, file, expires_ms, fetcher, nonce)?
        .finalize()
        .into_bytes();
    let mut short = [0u8; 16];
    short.copy_from_slice(&full[..16]);
    Some(short)
}

/// A ticket for `fetcher` to fetch file `file` once, good until `now_ms`
/// plus [`TICKET_LIFETIME`]: 80 hex digits.
///
/// # Errors
/// `internal` when the random source or the key fails.
pub fn mint(key_hex: &str, file: &str, fetcher: AccountId, now_ms: Millis) -> Result<String, ErrorCode> {
    let key = unhex(key_hex).ok_or(ErrorCode::Internal)?;
    let mut nonce = [0u8; 8];
    SystemRandom::new().fill(&mut nonce).map_err(|_| ErrorCode::Internal)?;
    let nonce = u64::from_be_bytes(nonce);
    let lifetime = Millis::try_from(TICKET_LIFETIME.as_millis()).unwrap_or(60_000);
    let expires_ms = now_ms.saturating_add(lifetime);
    let mac = seal(&key, file, expires_ms, fetcher, nonce).ok_or(ErrorCode::Internal)?;
    let mut bytes = Vec::with_capacity(40);
    bytes.extend_from_slice(&expires_ms.to_be_bytes());
    bytes.extend_from_slice(&fetcher.to_be_bytes());
    bytes.extend_from_slice(&nonce.to_be_bytes());
    bytes.extend_from_slice(&mac);
    Ok(hex(&bytes))
}

/// Checks a ticket for file `file` under `key_hex` at `now_ms`, allowing
/// `grace` milliseconds past its expiry (for a checker whose clock is not
/// the server's).
///
/// # Errors
/// [`TicketError`] for a ticket that is malformed, sealed for another
/// file or key, or expired.
pub fn check(key_hex: &str, file: &str, ticket: &str, now_ms: Millis, grace: Millis) -> Result<Ticket, TicketError> {
    let key = unhex(key_hex).ok_or(TicketError::Forged)?;
    let bytes = unhex(ticket).filter(|b| b.len() == 40).ok_or(TicketError::Forged)?;
    let field = |at: usize| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&bytes[at..at + 8]);
        eight
    };
    let expires_ms = Millis::from_be_bytes(field(0));
    let fetcher = AccountId::from_be_bytes(field(8));
    let nonce = u64::from_be_bytes(field(16));
    ticket_mac(&key, file, expires_ms, fetcher, nonce)
        .ok_or(TicketError::Forged)?
        .verify_truncated_left(&bytes[24..])
        .map_err(|_| TicketError::Forged)?;
    if now_ms > expires_ms.saturating_add(grace) {
        return Err(TicketError::Expired);
    }
    Ok(Ticket {
        expires_ms,
        fetcher,
        nonce,
    })
}

/// Tickets already used, remembered until they expire, so each is good
/// once.
#[derive(Default)]
pub struct UsedTickets {
    /// `(file, nonce)` → expiry.
    used: Mutex<HashMap<(String, u64), Millis>>,
}

impl UsedTickets {
    /// Marks `ticket` for `file` used; false if it already was.
    pub fn take(&self, file: &str, ticket: &Ticket, now_ms: Millis) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|_, expires| *expires >= now_ms);
        used.insert((file.to_string(), ticket.nonce), ticket.expires_ms)
            .is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, name: &str, conn: ConnectionId) -> Offer {
        Offer {
            id: id.into(),
            size: 1,
            sha256: "0".repeat(64),
            name: name.into(),
            owner_id: 1,
            owner: Arc::from("ana"),
            key: "00".repeat(32),
            endpoint: None,
            conn,
            node: None,
        }
    }

    #[test]
    fn the_share_rules() {
        assert_eq!(share_size("0", 10), Ok(0));
        assert_eq!(share_size("10", 10), Ok(10));
        assert_eq!(share_size("11", 10), Err(ErrorCode::InvalidFile));
        assert_eq!(share_size("99999999999999999999999", 10), Err(ErrorCode::InvalidFile));
        for bad in ["", "-1", "+1", "1e3", "1 "] {
            assert_eq!(share_size(bad, 10), Err(ErrorCode::BadRequest), "{bad:?}");
        }
        assert!(sha256_hex(&"a".repeat(64)).is_ok());
        for bad in ["A".repeat(64), "a".repeat(63), "g".repeat(64), "a".repeat(65)] {
            assert_eq!(sha256_hex(&bad), Err(ErrorCode::InvalidFile));
        }
        assert_eq!(file_name("  apuntes tema 1.pdf\t"), Ok("apuntes tema 1.pdf"));
        assert!(file_name(&"é".repeat(255)).is_ok());
        for bad in ["", "  ", ".", "..", "a/b", "a\\b", "a\tb", "a\u{1b}", &"é".repeat(256)] {
            assert_eq!(file_name(bad), Err(ErrorCode::InvalidFile), "{bad:?}");
        }
        assert!(endpoint("192.168.1.5:9000").is_ok());
        assert!(endpoint("[::1]:9000").is_ok());
        assert!(endpoint("portatil.local:9000").is_ok());
        for bad in ["x", "host:0", "host:70000", ":9000", "a b:1", "host:+1"] {
            assert_eq!(endpoint(bad), Err(ErrorCode::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn tickets_check_once_for_their_file_until_they_expire() {
        let key = random_hex(32).unwrap();
        let ticket = mint(&key, "f1", 7, 1_000).unwrap();
        assert_eq!(ticket.len(), 80);
        // PROTOCOL.md 11: 16 to 128 characters of [A-Za-z0-9_-].
        assert!(ticket.bytes().all(|b| b.is_ascii_hexdigit()));
        let checked = check(&key, "f1", &ticket, 1_000, 0).unwrap();
        assert_eq!((checked.fetcher, checked.expires_ms), (7, 61_000));
        assert_eq!(check(&key, "f2", &ticket, 1_000, 0), Err(TicketError::Forged));
        assert_eq!(
            check(&random_hex(32).unwrap(), "f1", &ticket, 1_000, 0),
            Err(TicketError::Forged)
        );
        assert_eq!(check(&key, "f1", &ticket, 61_001, 0), Err(TicketError::Expired));
        assert!(check(&key, "f1", &ticket, 61_001, 5_000).is_ok());
        let mut tampered = ticket.clone().into_bytes();
        tampered[79] = if tampered[79] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(check(&key, "f1", &tampered, 1_000, 0), Err(TicketError::Forged));
        assert_eq!(check(&key, "f1", "zz", 1_000, 0), Err(TicketError::Forged));
        let used = UsedTickets::default();
        assert!(used.take("f1", &checked, 2_000));
        assert!(!used.take("f1", &checked, 3_000), "single use");
    }

    #[test]
    fn the_local_index_lists_searches_and_forgets_with_the_session() {
        let index = LocalOffers::default();
        index.add(offer("b", "Tema 2.pdf", 1)).unwrap();
        index.add(offer("a", "tema 2.pdf", 2)).unwrap();
        index.add(offer("c", "datos.csv", 1)).unwrap();
        let names = |found: Vec<Offer>| found.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(names(index.search("", 100).unwrap()), ["c", "a", "b"]);
        assert_eq!(names(index.search("TEMA", 100).unwrap()), ["a", "b"]);
        assert_eq!(names(index.search("tema", 1).unwrap()), ["a"]);
        index.set_endpoint(1, Some("10.0.0.5:9000")).unwrap();
        assert_eq!(
            index.get("b").unwrap().unwrap().endpoint.as_deref(),
            Some("10.0.0.5:9000")
        );
        assert_eq!(index.get("a").unwrap().unwrap().endpoint, None);
        assert_eq!(index.count_of(1).unwrap(), 2);
        index.session_ended(1);
        assert_eq!(names(index.search("", 100).unwrap()), ["a"]);
        assert_eq!(index.endpoint_of(1), None);
    }
}

//! What a chat needs to survive losing its server (PROTOCOL.md 10.3): a
//! thread that reconnects, trying each address in turn with backoff until
//! a deadline, and the client's place in the one sequence of message ids,
//! from which it catches up with `SYNC` and merges what it missed with
//! what keeps arriving live.
//!
//! Why this order of things. Every message stored after a session's
//! `OK LOGIN` reaches it live, in increasing id order (PROTOCOL.md 5.2,
//! 9.3), so the highest id received in order tells exactly what a new
//! session must fetch: every message above it. While that catch-up runs,
//! the new session's own live messages already arrive; they are held back
//! and shown after the catch-up, so the person reads everything once (ids
//! already shown are dropped by the session) and in id order.
//!
//! The session decides when to fail over and what to resend; this module
//! owns no protocol state and prints nothing. [`Progress`] is pure; the
//! reconnect thread only opens connections and hands the first one that
//! says `HELLO` back on a channel (each over TLS when the chat uses it,
//! with its own handshake and verification of the certificate).

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::ClientError;
use super::connection::{Connection, TlsConfig};
use super::display::Post;

/// How many messages one `SYNC` asks for; a full page means another
/// follows (PROTOCOL.md 9.2).
pub const SYNC_PAGE: usize = 1000;

/// The pause after the first round of addresses that all failed; it
/// doubles after each round, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest pause between two rounds of addresses.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Before any message was received, a catch-up shows only messages stored
/// at most this long before the chat began by the client's clock: the
/// server's clock may differ from the client's, and a message shown twice
/// is better than one never shown.
const CLOCK_SLACK_MS: i64 = 10 * 60 * 1000;

/// What the reconnect thread hands back: an open connection and the index
/// of its address; or, once the deadline passed, the last refusal worth
/// telling the person (a TLS failure: a certificate that no longer
/// verifies), if any. Refused or unreachable addresses are what failover
/// expects and are not kept.
pub type Attempt = Result<(Connection, usize), Option<ClientError>>;

/// Starts a thread that waits `pause`, then tries `servers` in turn (in TLS
/// with `tls`), from index `first`, until one says `HELLO` or `until`
/// passes, and reports on the channel returned. Between two rounds in which every address failed
/// it waits, longer each time ([`Backoff`]). The thread ends when it
/// reports, even if nobody listens any more.
pub fn reconnect(
    servers: Vec<String>,
    tls: Option<TlsConfig>,
    first: usize,
    until: Instant,
    pause: Duration,
) -> Receiver<Attempt> {
    let (report, attempt) = crossbeam_channel::bounded(1);
    let spawned = thread::Builder::new().name("reconnect".into()).spawn(move || {
        thread::sleep(pause.min(until.saturating_duration_since(Instant::now())));
        let _ = report.send(try_until(&servers, tls.as_ref(), first, until));
    });
    if spawned.is_err() {
        // Without a thread there is no reconnecting: say so at once.
        let (report, attempt) = crossbeam_channel::bounded(1);
        let _ = report.send(Err(None));
        return attempt;
    }
    attempt
}

/// The reconnect thread's work.
fn try_until(servers: &[String], tls: Option<&TlsConfig>, first: usize, until: Instant) -> Attempt {
    let mut backoff = Backoff::default();
    let mut told = None;
    loop {
        for k in 0..servers.len() {
            let index = (first + k) % servers.len();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(told);
            }
            match Connection::open_within(&servers[index], left, tls) {
                Ok(connection) => return Ok((connection, index)),
                Err(error @ ClientError::Tls { .. }) => told = Some(error),
                Err(_) => {}
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || servers.is_empty() {
            return Err(told);
        }
        thread::sleep(backoff.next_pause().min(left));
    }
}

/// The pauses between rounds of reconnection: 250 ms, doubling up to 4 s.
#[derive(Debug, Default)]
pub struct Backoff {
    /// The pause last handed out.
    last: Option<Duration>,
}

impl Backoff {
    /// The next pause.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.last.map_or(FIRST_BACKOFF, |last| (last * 2).min(MAX_BACKOFF));
        self.last = Some(pause);
        pause
    }
}

/// Where the client is in the sequence of message ids, and the live
/// messages it holds back while it catches up.
#[derive(Debug)]
pub struct Progress {
    /// The highest id received in order (live, in the history shown at
    /// login, or by a catch-up): every message the account may read with
    /// an id up to it has reached this client or predates its chat.
    newest: Option<i64>,
    /// When the chat began, in milliseconds since the epoch by the
    /// client's clock, less [`CLOCK_SLACK_MS`].
    since_ms: i64,
    /// While catching up, the catch-up; `None` otherwise.
    catch_up: Option<CatchUp>,
}

/// One catch-up under way.
#[derive(Debug)]
struct CatchUp {
    /// The id it asked for the messages after.
    after: i64,
    /// Live messages that came meanwhile, in the order they came.
    held: Vec<Post>,
    /// Whether it started with nothing received, and so from id 0: then
    /// what was stored before the chat began is not news.
    from_start: bool,
}

/// One page of a catch-up, digested.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// The messages to show now, in id order (the session still drops any
    /// it has shown before).
    pub show: Vec<Post>,
    /// When the page was full: ask again for the messages after this id.
    pub next: Option<i64>,
}

impl Progress {
    /// A chat that began at `now_ms` (milliseconds since the epoch).
    pub fn new(now_ms: i64) -> Progress {
        Progress {
            newest: None,
            since_ms: now_ms.saturating_sub(CLOCK_SLACK_MS),
            catch_up: None,
        }
    }

    /// The message `id` was received in order (shown live, or as part of
    /// the history shown at login).
    pub fn received(&mut self, id: i64) {
        self.newest = Some(self.newest.map_or(id, |newest| newest.max(id)));
    }

    /// Whether a catch-up is under way.
    pub fn catching_up(&self) -> bool {
        self.catch_up.is_some()
    }

    /// A catch-up begins (the client is logged in again); returns the id to
    /// ask for the messages after. Live messages are held from now on.
    pub fn begin(&mut self) -> i64 {
        let after = self.newest.unwrap_or(0);
        self.catch_up = Some(CatchUp {
            after,
            held: Vec::new(),
            from_start: self.newest.is_none(),
        });
        after
    }

    /// A live message: held while catching up (`None`), otherwise handed
    /// back to be shown now, and counted as received.
    pub fn live(&mut self, post: Post) -> Option<Post> {
        match &mut self.catch_up {
            Some(catch_up) => {
                catch_up.held.push(post);
                None
            }
            None => {
                self.received(post.message.id);
                Some(post)
            }
        }
    }

    /// The body of one catch-up reply (oldest first). With `paged`, a
    /// `SYNC` (whose body is all news) that returns [`SYNC_PAGE`] messages
    /// is followed by another; otherwise (a version 1 server's `HISTORY`)
    /// the body may hold messages received before the catch-up, which are
    /// left out.
    pub fn page(&mut self, body: Vec<Post>, paged: bool) -> Page {
        let (after, from_start) = match &self.catch_up {
            Some(catch_up) => (catch_up.after, catch_up.from_start),
            None => (self.newest.unwrap_or(0), false),
        };
        let next = (paged && body.len() >= SYNC_PAGE)
            .then(|| body.last().map(|post| post.message.id))
            .flatten();
        let mut show = Vec::with_capacity(body.len());
        for post in body {
            let id = post.message.id;
            let new = (paged || id > after) && !(from_start && post.message.ts < self.since_ms);
            self.received(id);
            if new {
                show.push(post);
            }
        }
        show.sort_by_key(|post| post.message.id);
        Page { show, next }
    }

    /// The catch-up is over: the live messages held meanwhile, in id
    /// order, to be shown now (each counted as received).
    pub fn finish(&mut self) -> Vec<Post> {
        let mut held = self.catch_up.take().map(|c| c.held).unwrap_or_default();
        held.sort_by_key(|post| post.message.id);
        for post in &held {
            self.received(post.message.id);
        }
        held
    }

    /// The connection was lost again before the catch-up ended: what was
    /// held is dropped, since the next catch-up, from the same id, brings
    /// it again.
    pub fn abandon(&mut self) {
        self.catch_up = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::charla::ChatMessage;

    fn post(id: i64, ts: i64) -> Post {
        Post::lobby(ChatMessage {
            id,
            ts,
            user: "ana".into(),
            text: format!("m{id}"),
        })
    }

    fn ids(posts: &[Post]) -> Vec<i64> {
        posts.iter().map(|post| post.message.id).collect()
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u128> = (0..7).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn a_catch_up_starts_after_the_newest_id_received_in_order() {
        let mut progress = Progress::new(1_000_000_000);
        assert!(progress.live(post(5, 0)).is_some());
        progress.received(3);
        assert_eq!(progress.begin(), 5);
        assert!(progress.catching_up());
    }

    #[test]
    fn live_messages_wait_for_the_catch_up_and_everything_comes_out_in_order() {
        let mut progress = Progress::new(0);
        progress.received(10);
        assert_eq!(progress.begin(), 10);
        // The new session's live messages come while the catch-up runs.
        assert!(progress.live(post(14, 0)).is_none());
        assert!(progress.live(post(15, 0)).is_none());
        let page = progress.page(vec![post(11, 0), post(12, 0), post(14, 0)], true);
        assert_eq!(ids(&page.show), [11, 12, 14]);
        assert_eq!(page.next, None);
        // 14 comes twice: the session shows it once (by id).
        assert_eq!(ids(&progress.finish()), [14, 15]);
        assert!(!progress.catching_up());
        assert_eq!(progress.begin(), 15);
    }

    #[test]
    fn a_full_page_asks_for_the_next() {
        let mut progress = Progress::new(0);
        progress.received(1);
        progress.begin();
        let body: Vec<Post> = (2..2 + SYNC_PAGE as i64).map(|id| post(id, 0)).collect();
        let page = progress.page(body, true);
        assert_eq!(page.next, Some(1 + SYNC_PAGE as i64));
        assert_eq!(page.show.len(), SYNC_PAGE);
        let page = progress.page(vec![post(2000, 0)], true);
        assert_eq!((ids(&page.show), page.next), (vec![2000], None));
    }

    #[test]
    fn a_history_catch_up_leaves_out_what_was_received() {
        let mut progress = Progress::new(0);
        progress.received(7);
        progress.begin();
        let body: Vec<Post> = (5..=9).map(|id| post(id, 0)).collect();
        let page = progress.page(body, false);
        assert_eq!((ids(&page.show), page.next), (vec![8, 9], None));
    }

    #[test]
    fn from_the_start_messages_older_than_the_chat_are_not_news() {
        let chat_began = 100 * CLOCK_SLACK_MS;
        let mut progress = Progress::new(chat_began);
        assert_eq!(progress.begin(), 0);
        let old = chat_began - 2 * CLOCK_SLACK_MS;
        let page = progress.page(vec![post(1, old), post(2, chat_began + 5)], true);
        assert_eq!(ids(&page.show), [2]);
        // The next catch-up starts after both.
        progress.finish();
        assert_eq!(progress.begin(), 2);
    }

    #[test]
    fn an_abandoned_catch_up_drops_what_it_held() {
        let mut progress = Progress::new(0);
        progress.received(3);
        progress.begin();
        assert!(progress.live(post(9, 0)).is_none());
        progress.abandon();
        assert_eq!(progress.begin(), 3, "9 was never shown: the next catch-up brings it");
        assert!(progress.finish().is_empty());
    }

    #[test]
    fn giving_up_when_nothing_answers() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let started = Instant::now();
        let attempt = reconnect(
            vec![format!("127.0.0.1:{port}")],
            None,
            0,
            started + Duration::from_millis(600),
            Duration::from_millis(100),
        );
        let outcome = attempt.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(matches!(outcome, Err(None)));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
}

//! What the core's unit tests share: a codec that writes short readable
//! lines, a core over a temporary database with a hand-moved clock, and
//! connections over in-memory transports. No sockets anywhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::codec::{Codec, Flavor};
use super::event::{Event, Target};
use super::limits::tests::ManualClock;
use super::outbox::Outbox;
use super::reply::{Answer, Reply, ReplyTo};
use super::transport::memory::MemoryTransport;
use super::{Core, CoreThreads};
use crate::config::Config;
use crate::shutdown::Shutdown;

/// A codec that writes one short line per reply or event, and counts the
/// events it encodes (the fan-out must encode once per flavor).
pub(crate) struct TestCodec {
    /// Its flavor.
    pub flavor: Flavor,
    /// Events encoded so far.
    pub events: AtomicUsize,
    /// Whether it shows [`Event::Arrived`] (as IRC does), as `ARRIVED`.
    pub arrivals: bool,
}

impl TestCodec {
    /// A codec of flavor `flavor`.
    pub fn new(flavor: u32) -> Arc<TestCodec> {
        Arc::new(TestCodec {
            flavor: Flavor(flavor),
            events: AtomicUsize::new(0),
            arrivals: false,
        })
    }

    /// A codec of flavor `flavor` that shows per-room presence.
    pub fn with_arrivals(flavor: u32) -> Arc<TestCodec> {
        Arc::new(TestCodec {
            flavor: Flavor(flavor),
            events: AtomicUsize::new(0),
            arrivals: true,
        })
    }

    /// Events encoded so far.
    pub fn encoded(&self) -> usize {
        self.events.load(Ordering::SeqCst)
    }
}

impl Codec for TestCodec {
    fn flavor(&self) -> Flavor {
        self.flavor
    }

    fn reply(&self, to: &ReplyTo, reply: &Reply, out: &mut Vec<u8>) {
        let tag = to.tag.as_deref().map(|t| format!("@{t} ")).unwrap_or_default();
        let verb = to.verb.unwrap_or("-");
        let line = match reply {
            Reply::Err(code) => format!("{tag}ERR {verb} {code}"),
            Reply::Ok(Answer::Account { username, .. }) => format!("{tag}OK {verb} {username}"),
            Reply::Ok(Answer::Stored { id, .. }) => format!("{tag}OK {verb} {id}"),
            Reply::Ok(Answer::Messages(messages)) => {
                let texts: Vec<&str> = messages.iter().map(|m| &*m.text).collect();
                format!("{tag}OK {verb} {}", texts.join(","))
            }
            Reply::Ok(Answer::People(people)) => {
                let names: Vec<&str> = people.iter().map(|p| p.username.as_str()).collect();
                format!("{tag}OK {verb} {}", names.join(","))
            }
            Reply::Ok(Answer::Pong(token)) => format!("{tag}OK {verb} {}", token.as_deref().unwrap_or("")),
            Reply::Ok(Answer::Room(name)) => format!("{tag}OK {verb} {name}"),
            Reply::Ok(Answer::Word(word)) => format!("{tag}OK {verb} {word}"),
            Reply::Ok(Answer::Endpoint { addr, .. }) => format!("{tag}OK {verb} {addr}"),
            Reply::Ok(Answer::Files(offers)) => {
                let names: Vec<&str> = offers.iter().map(|o| o.name.as_str()).collect();
                format!("{tag}OK {verb} {}", names.join(","))
            }
            Reply::Ok(Answer::Fetch { id, addr, .. }) => format!("{tag}OK {verb} {id} {addr}"),
            Reply::Ok(Answer::Rooms(rooms)) => {
                let names: Vec<String> = rooms
                    .iter()
                    .map(|r| format!("{}:{}{}", r.name, r.members, if r.member { "*" } else { "" }))
                    .collect();
                format!("{tag}OK {verb} {}", names.join(","))
            }
            Reply::Ok(Answer::Done) => format!("{tag}OK {verb}"),
        };
        out.extend_from_slice(line.trim_end().as_bytes());
        out.push(b'\n');
    }

    fn event(&self, event: &Event, out: &mut Vec<u8>) {
        self.events.fetch_add(1, Ordering::SeqCst);
        let line = match event {
            Event::Message(m) => match &m.target {
                Target::Lobby => format!("MSG {} {} {}", m.id, m.author, m.text),
                Target::Room { name, .. } => format!("POST {} {name} {} {}", m.id, m.author, m.text),
                Target::Account { name, .. } => format!("POST {} @{name} {} {}", m.id, m.author, m.text),
            },
            Event::Arrived { .. } if !self.arrivals => return,
            Event::Echo { message, .. } => format!("ECHO {}", message.id),
            Event::Arrived { room, user } => format!("ARRIVED {room} {user}"),
            Event::Enter { room, user } => format!("ENTER {room} {user}"),
            Event::Exit { room, user } => format!("EXIT {room} {user}"),
            Event::Online(user) => format!("JOIN {user}"),
            Event::Offline(user) => format!("LEAVE {user}"),
            Event::Relay { file, addr, .. } => format!("RELAY {file} {addr}"),
            Event::Bye(code) => format!("BYE {code}"),
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
}

/// A running core over a temporary database, with its clock.
pub(crate) struct TestCore {
    /// The core.
    pub core: Arc<Core>,
    /// Its threads, stopped on drop.
    threads: Option<CoreThreads>,
    /// The limiters' clock.
    pub clock: Arc<ManualClock>,
    /// Keeps the database's folder alive.
    _dir: tempfile::TempDir,
}

impl TestCore {
    /// A core with `change` applied to the default settings (bcrypt cost 4,
    /// one hashing thread, no message rate limit).
    pub fn start(change: impl FnOnce(&mut Config)) -> TestCore {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config {
            db: dir.path().join("chat.db").display().to_string(),
            bcrypt_cost: 4,
            hash_threads: 1,
            ..Config::default()
        };
        config.limits.msg_rate = 0.0;
        change(&mut config);
        let clock = ManualClock::new();
        let (core, threads) = Core::start_with_clock(config, Shutdown::new(), clock.clone()).expect("the core starts");
        TestCore {
            core,
            threads: Some(threads),
            clock,
            _dir: dir,
        }
    }
}

impl Drop for TestCore {
    fn drop(&mut self) {
        if let Some(threads) = self.threads.take() {
            threads.stop(&self.core);
        }
    }
}

/// A connection's outgoing side over memory: what a session writes is read
/// back from `transport`.
pub(crate) struct TestConn {
    /// The "socket".
    pub transport: Arc<MemoryTransport>,
    /// The outbox writing to it.
    pub outbox: Arc<Outbox>,
}

impl TestConn {
    /// A connection with id `id` whose peer accepts `room` unread bytes,
    /// encoding with `codec`, cut off past `limit` queued bytes.
    pub fn new(id: u64, codec: Arc<dyn Codec>, room: usize, limit: usize) -> TestConn {
        let transport = Arc::new(MemoryTransport::new(room));
        let outbox = Outbox::new(transport.clone(), codec, limit, id);
        TestConn { transport, outbox }
    }

    /// Waits for `n` lines and returns them.
    pub fn lines(&self, n: usize) -> Vec<String> {
        self.transport
            .wait_lines(n, Duration::from_secs(5))
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A made-up peer address (loopback, so per-address limits do not apply).
pub(crate) fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

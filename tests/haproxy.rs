//! Three nodes behind a real HAProxy (PROTOCOL.md 10), with whole
//! processes: a private PostgreSQL, three `charla-server` nodes on fixed
//! free ports, and `haproxy` run with deploy/haproxy.cfg itself, only its
//! addresses changed to the test's ports. Covers: sessions spread by
//! `leastconn` into one chat, the client's real address carried by PROXY v2,
//! the fault-tolerance drill (stop node 1 by SIGTERM, then by `kill -9`;
//! HAProxy marks it down; the chat goes on; restart it; it serves
//! everything), and the real `charla` client failing over through HAProxy
//! (the failover time is printed: `cargo test --test haproxy -- --nocapture`);
//! and that the compose files keep deploy/haproxy.cfg's settings.
//!
//! Needs `haproxy` (apt-get install haproxy; .ci/run installs it) and the
//! PostgreSQL server binaries (tests/common/pg.rs). Every wait is bounded;
//! every process a test starts is killed when the test ends.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::{Charla, Client, LINE_TIMEOUT, Msg, TestServer, free_port, now_ms, ok_say, wait_until};

/// The shipped configuration; the tests change only its addresses.
const DEPLOY_CFG: &str = include_str!("../deploy/haproxy.cfg");
/// Its twin for deploy/compose.yaml (not run here: no Docker engine).
const COMPOSE_CFG: &str = include_str!("../deploy/haproxy.compose.cfg");
/// The compose file.
const COMPOSE: &str = include_str!("../deploy/compose.yaml");
/// Nodes behind HAProxy.
const NODES: usize = 3;
/// Every account's password.
const PASSWORD: &str = "secreto123";
/// What the client says once logged in.
const HINT: &str =
    "Escribe un mensaje y pulsa Intro para enviarlo. /ayuda muestra los comandos; salir cierra la sesión.";

/// The name of node `i` (0-based), as deploy/haproxy.cfg and cluster.sh
/// call it.
fn name(i: usize) -> String {
    format!("node-{}", i + 1)
}

// ----- HAProxy ---------------------------------------------------------------

/// The ports of one test's cluster, all different.
struct Ports {
    /// HAProxy's chat frontend.
    front: u16,
    /// HAProxy's statistics page.
    stats: u16,
    /// Each node's chat port.
    chat: [u16; NODES],
    /// Each node's health port.
    health: [u16; NODES],
}

impl Ports {
    fn pick() -> Ports {
        let mut picked = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < 2 + 2 * NODES {
            let port = free_port();
            if picked.insert(port) {
                order.push(port);
            }
        }
        Ports {
            front: order[0],
            stats: order[1],
            chat: [order[2], order[3], order[4]],
            health: [order[5], order[6], order[7]],
        }
    }
}

/// deploy/haproxy.cfg with the test's ports in place of 8000, 8404,
/// 7001..7003 and 7101..7103; everything else as shipped.
fn haproxy_config(ports: &Ports) -> String {
    fn replace_once(config: &mut String, from: &str, to: &str) {
        assert_eq!(
            config.matches(from).count(),
            1,
            "deploy/haproxy.cfg must contain {from:?} exactly once (tests/haproxy.rs edits it)"
        );
        *config = config.replace(from, to);
    }
    let mut config = DEPLOY_CFG.to_string();
    replace_once(
        &mut config,
        "bind 127.0.0.1:8000",
        &format!("bind 127.0.0.1:{}", ports.front),
    );
    replace_once(
        &mut config,
        "bind 127.0.0.1:8404",
        &format!("bind 127.0.0.1:{}", ports.stats),
    );
    for i in 0..NODES {
        let n = i + 1;
        replace_once(
            &mut config,
            &format!("server node-{n} 127.0.0.1:700{n} port 710{n}"),
            &format!("server node-{n} 127.0.0.1:{} port {}", ports.chat[i], ports.health[i]),
        );
    }
    config
}

/// The `haproxy` binary (`CHARLA_HAPROXY`, else on PATH or in /usr/sbin),
/// or a failure that says how to get it.
fn haproxy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHARLA_HAPROXY") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CHARLA_HAPROXY={} is not a file; the HAProxy tests need haproxy: apt-get install haproxy",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the HAProxy tests need the haproxy binary: apt-get install haproxy \
                 (.ci/run installs it), or set CHARLA_HAPROXY; it is not on PATH nor in /usr/sbin"
            )
        })
}

/// A plain HTTP/1.1 `GET` that asks the server to close (HAProxy's own
/// pages keep connections alive otherwise); `None` when nothing answers.
fn http_close(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Some((status, body))
}

/// A running `haproxy -db` with the test's configuration.
struct Haproxy {
    /// The process.
    child: Child,
    /// Holds the configuration and the log.
    dir: tempfile::TempDir,
    /// The statistics page.
    stats: SocketAddr,
}

impl Haproxy {
    fn start(ports: &Ports) -> Haproxy {
        let binary = haproxy_binary();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(ports)).expect("write the configuration");
        let check = Command::new(&binary)
            .args(["-c", "-q", "-f"])
            .arg(&config)
            .output()
            .expect("haproxy -c runs");
        assert!(
            check.status.success(),
            "HAProxy rejects deploy/haproxy.cfg: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("the log file");
        let child = Command::new(&binary)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        let mut haproxy = Haproxy {
            child,
            dir,
            stats: SocketAddr::from(([127, 0, 0, 1], ports.stats)),
        };
        let mut exited = None;
        let listed = wait_until(LINE_TIMEOUT, || {
            exited = haproxy.child.try_wait().expect("try_wait");
            exited.is_some() || haproxy.states().len() == NODES
        });
        assert!(
            listed && exited.is_none(),
            "HAProxy ({exited:?}) does not list the nodes on its statistics page; its log:\n{}",
            haproxy.log()
        );
        haproxy
    }

    /// What HAProxy logged.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// Each node's state as HAProxy sees it (`UP`, `DOWN`, `UP 1/2`, ...),
    /// from the statistics page's CSV; empty when the page does not answer.
    fn states(&self) -> HashMap<String, String> {
        let Some((200, csv)) = http_close(self.stats, "/;csv") else {
            return HashMap::new();
        };
        // pxname,svname,qcur,qmax,scur,smax,slim,stot,...; status is the 18th.
        csv.lines()
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| fields.len() > 17 && fields[0] == "nodes" && fields[1].starts_with("node-"))
            .map(|fields| (fields[1].to_string(), fields[17].to_string()))
            .collect()
    }

    /// Waits up to 10 s for HAProxy to see `node` in `state`; returns how
    /// long that took.
    fn wait_state(&self, node: &str, state: &str) -> Duration {
        let start = Instant::now();
        let mut seen = HashMap::new();
        let reached = wait_until(Duration::from_secs(10), || {
            seen = self.states();
            seen.get(node).map(String::as_str) == Some(state)
        });
        assert!(
            reached,
            "HAProxy does not see {node} {state} within 10 s: {seen:?}; its log:\n{}",
            self.log()
        );
        start.elapsed()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- the cluster -------------------------------------------------------------

/// PostgreSQL, three nodes and HAProxy. Fields drop in order: HAProxy, the
/// nodes, then the database.
struct Cluster {
    /// The balancer in front.
    haproxy: Haproxy,
    /// The nodes; `None` while one is down.
    nodes: Vec<Option<TestServer>>,
    /// The database behind.
    pg: Postgres,
    /// The database's URL.
    url: String,
    /// Every port.
    ports: Ports,
}

impl Cluster {
    fn start() -> Cluster {
        // Without HAProxy, say so before starting anything.
        haproxy_binary();
        let pg = Postgres::start();
        let url = pg.database("chat");
        let ports = Ports::pick();
        let nodes = (0..NODES).map(|i| Some(launch_node(&url, &ports, i))).collect();
        let haproxy = Haproxy::start(&ports);
        for i in 0..NODES {
            haproxy.wait_state(&name(i), "UP");
        }
        Cluster {
            haproxy,
            nodes,
            pg,
            url,
            ports,
        }
    }

    /// HAProxy's chat address.
    fn front(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.front))
    }

    /// Node `i`'s health address.
    fn health(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.health[i]))
    }

    /// Node `i`, which must be running.
    fn node(&mut self, i: usize) -> &mut TestServer {
        self.nodes[i].as_mut().unwrap_or_else(|| panic!("{} is down", name(i)))
    }

    /// Starts node `i` again: same name, same ports, same database.
    fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "{} still runs", name(i));
        self.nodes[i] = Some(launch_node(&self.url, &self.ports, i));
    }

    /// A connection through HAProxy, and the node its `HELLO` names.
    fn connect(&self) -> (Client, String) {
        let mut client = Client::connect(self.front());
        let hello = client.line();
        let node = hello
            .strip_prefix("HELLO charla 1 ")
            .unwrap_or_else(|| panic!("first line through HAProxy: {hello:?}"))
            .to_string();
        (client, node)
    }

    /// The logged-in sessions node `i`'s `/health` counts; `None` when it
    /// does not answer.
    fn sessions(&self, i: usize) -> Option<u64> {
        let (_, body) = http_close(self.health(i), "/health")?;
        let (_, rest) = body.split_once("\"sessions\":")?;
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    }

    /// Every stored message, in id order, read behind the nodes' backs.
    fn messages(&self) -> Vec<Msg> {
        self.pg
            .client("chat")
            .query(
                "SELECT m.id, m.ts_ms, u.username, m.body FROM messages m JOIN users u ON u.id = m.user_id \
                 ORDER BY m.id",
                &[],
            )
            .expect("read the messages")
            .iter()
            .map(|row| Msg {
                id: row.get(0),
                ts: row.get(1),
                user: row.get(2),
                text: row.get(3),
            })
            .collect()
    }

    /// Waits until node `i`'s name is free again (10 s after a `kill -9`),
    /// as the database sees it; returns how long that took.
    fn wait_name_free(&self, i: usize) -> Duration {
        let start = Instant::now();
        let mut db = self.pg.client("chat");
        let free = wait_until(Duration::from_secs(20), || {
            db.query_one(
                "SELECT stopped OR seen_at < now() - interval '10 seconds' FROM nodes WHERE name = $1",
                &[&name(i)],
            )
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(true)
        });
        assert!(free, "{}'s name is still taken 20 s later", name(i));
        start.elapsed()
    }
}

/// Node `i` of the database at `url`, on its fixed ports, trusting
/// HAProxy's PROXY headers from 127.0.0.1.
fn launch_node(url: &str, ports: &Ports, i: usize) -> TestServer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = name(i);
    let addr = format!("127.0.0.1:{}", ports.chat[i]);
    let health = format!("127.0.0.1:{}", ports.health[i]);
    let args = [
        "--db",
        url,
        "--node",
        &node,
        "--addr",
        &addr,
        "--health-addr",
        &health,
        "--trusted-proxy",
        "127.0.0.1",
    ];
    TestServer::launch(dir, None, &args, &[])
}

// ----- a person on the raw protocol, who fails over by hand ----------------------

/// A logged-in raw session through HAProxy that tags every `SAY`, keeps
/// what it received, and after losing its node reconnects, logs in,
/// catches up with `SYNC` and resends what was not acknowledged.
struct Chatter {
    /// The account.
    user: String,
    /// The connection now.
    client: Client,
    /// The node it is on now.
    node: String,
    /// The highest id of a message from someone else received.
    last_id: i64,
    /// Messages from others, each once, in id order: what a person reads.
    got: Vec<Msg>,
    /// The last id received live on this connection (they must increase).
    live_last: i64,
    /// Tagged lines written whose `OK` has not come, oldest first.
    pending: Vec<(String, String)>,
    /// Every acknowledged tag with its id.
    acked: HashMap<String, i64>,
    /// Tags used.
    tags: usize,
}

impl Chatter {
    /// Registers `user` through HAProxy.
    fn register(cluster: &Cluster, user: &str) -> Chatter {
        let (client, node) = cluster.connect();
        Chatter::registered(client, node, user)
    }

    /// Registers `user` on a connection.
    fn registered(mut client: Client, node: String, user: &str) -> Chatter {
        client.register(user, PASSWORD, &format!("{user} Apellido"));
        Chatter {
            user: user.to_string(),
            client,
            node,
            last_id: 0,
            got: Vec::new(),
            live_last: 0,
            pending: Vec::new(),
            acked: HashMap::new(),
            tags: 0,
        }
    }

    /// Writes `@TAG SAY text` without waiting for the reply.
    fn write(&mut self, text: &str) {
        self.tags += 1;
        let tag = format!("{}-{}", self.user, self.tags);
        self.client.send(&format!("@{tag} SAY {text}"));
        self.pending.push((tag, text.to_string()));
    }

    /// Says `text` and waits for its acknowledgement, reading events meanwhile.
    fn say(&mut self, text: &str) {
        self.write(text);
        self.settle();
    }

    /// Reads until every written line is acknowledged.
    fn settle(&mut self) {
        while !self.pending.is_empty() {
            let line = self.client.line();
            self.take(&line);
        }
    }

    /// Takes one line received live.
    fn take(&mut self, line: &str) {
        if let Some(msg) = Msg::parse(line) {
            assert!(
                msg.id > self.live_last,
                "{} on {}: live MSG {} after {}",
                self.user,
                self.node,
                msg.id,
                self.live_last
            );
            self.live_last = msg.id;
            self.keep(msg);
        } else if let Some(tagged) = line.strip_prefix('@') {
            let (tag, reply) = tagged.split_once(' ').expect("a tagged reply");
            let (id, _) = ok_say(reply);
            self.pending.retain(|(t, _)| t != tag);
            if let Some(before) = self.acked.insert(tag.to_string(), id) {
                assert_eq!(before, id, "{}: tag {tag} acknowledged with two ids", self.user);
            }
        } else {
            assert!(
                line.starts_with("JOIN ") || line.starts_with("LEAVE "),
                "{} on {}: unexpected line {line:?}",
                self.user,
                self.node
            );
        }
    }

    /// Keeps a message from someone else unless it is a repeat (a message
    /// both caught up and received live: dropped by id, as clients must).
    fn keep(&mut self, msg: Msg) {
        if msg.user != self.user && msg.id > self.last_id {
            self.last_id = msg.id;
            self.got.push(msg);
        }
    }

    /// `SYNC after`: keeps what it returns (and the live lines before it);
    /// returns the reply's body.
    fn sync(&mut self, after: i64) -> Vec<Msg> {
        self.client.send(&format!("SYNC {after}"));
        let mut lines = Vec::new();
        let count: usize = loop {
            let line = self.client.line();
            if let Some(count) = line.strip_prefix("OK SYNC ") {
                break count.parse().expect("a count");
            }
            if let Some(msg) = Msg::parse(&line) {
                lines.push(msg);
            } else {
                assert!(line.starts_with("JOIN ") || line.starts_with("LEAVE "), "{line:?}");
            }
        };
        // Live lines may come before the body, never inside it.
        let body = lines.split_off(lines.len() - count);
        assert!(
            body.windows(2).all(|w| w[0].id < w[1].id),
            "SYNC out of order: {body:?}"
        );
        for live in &lines {
            assert!(live.id > self.live_last, "{}: live MSG out of order", self.user);
            self.live_last = live.id;
        }
        let mut merged = lines;
        merged.extend(body.iter().cloned());
        merged.sort_by_key(|m| m.id);
        for msg in merged {
            self.keep(msg);
        }
        body
    }

    /// Reads what is left after the node went away (acknowledgements may
    /// follow `BYE shutting-down`) up to the end of the connection.
    fn expect_lost(&mut self) {
        let start = Instant::now();
        loop {
            match self.client.next_line() {
                None => break,
                Some(line) if line.starts_with("BYE ") => {
                    assert_eq!(line, "BYE shutting-down server is shutting down")
                }
                Some(line) => self.take(&line),
            }
        }
        assert!(
            start.elapsed() < LINE_TIMEOUT,
            "{}: the connection stayed open after its node went away",
            self.user
        );
    }

    /// Connects through HAProxy again, logs in, catches up from the last
    /// id received and resends every unacknowledged line under its tag.
    fn reconnect(&mut self, cluster: &Cluster) {
        let (mut client, node) = cluster.connect();
        client.login(&self.user, PASSWORD);
        self.client = client;
        self.node = node;
        self.live_last = 0;
        self.sync(self.last_id);
        for (tag, text) in self.pending.clone() {
            self.client.send(&format!("@{tag} SAY {text}"));
        }
        self.settle();
    }
}

/// Everyone has every message of the others once, in id order, exactly
/// what the database holds; every tag is stored once under its id.
fn check_everyone(cluster: &Cluster, chatters: &mut [Chatter]) {
    let stored = cluster.messages();
    for chatter in chatters.iter_mut() {
        assert!(chatter.pending.is_empty(), "{}: unacknowledged lines", chatter.user);
        let expected: Vec<Msg> = stored.iter().filter(|m| m.user != chatter.user).cloned().collect();
        while chatter.got.len() < expected.len() {
            let line = chatter.client.line();
            chatter.take(&line);
        }
        assert_eq!(chatter.got, expected, "what {} received", chatter.user);
    }
    let mut db = cluster.pg.client("chat");
    let mut acked = 0;
    for chatter in chatters.iter() {
        for (tag, id) in &chatter.acked {
            let ids: Vec<i64> = db
                .query(
                    "SELECT m.id FROM messages m JOIN users u ON u.id = m.user_id WHERE u.username = $1 AND m.tag = $2",
                    &[&chatter.user, tag],
                )
                .expect("query a tag")
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert_eq!(
                ids,
                [*id],
                "{}'s tag {tag}: stored once, under its acknowledged id",
                chatter.user
            );
            acked += 1;
        }
    }
    assert_eq!(
        stored.len(),
        acked,
        "every stored message was acknowledged to its sender"
    );
}

// ----- the tests ---------------------------------------------------------------------

#[test]
fn sessions_spread_over_the_nodes_make_one_chat_and_nodes_see_each_clients_own_address() {
    let cluster = Cluster::start();
    let mut people: Vec<Chatter> = ["ana", "bea", "carla"]
        .into_iter()
        .map(|user| Chatter::register(&cluster, user))
        .collect();
    let landed: BTreeSet<String> = people.iter().map(|p| p.node.clone()).collect();
    assert_eq!(
        landed,
        (0..NODES).map(name).collect::<BTreeSet<_>>(),
        "leastconn puts three sessions on three nodes"
    );
    for i in 0..NODES {
        assert!(
            wait_until(Duration::from_secs(5), || cluster.sessions(i) == Some(1)),
            "{}'s /health does not count its one session",
            name(i)
        );
    }
    // The node logs the client's own address (its socket's local address),
    // carried by HAProxy's PROXY v2 header: the node's TCP peer is HAProxy.
    for person in &people {
        let local = person.client.socket().local_addr().expect("the client's address");
        let i = (0..NODES).find(|&i| name(i) == person.node).expect("a node");
        let server = cluster.nodes[i].as_ref().expect("running");
        let wanted = format!(" from {local}");
        let mut log = String::new();
        let found = wait_until(LINE_TIMEOUT, || {
            log = server.log();
            log.lines().any(|l| l.contains("connection ") && l.ends_with(&wanted))
        });
        assert!(
            found,
            "{} never logged `connection N from {local}`:\n{log}",
            person.node
        );
        assert!(!log.contains("(a trusted proxy) closed"), "{log}");
    }
    // One chat: each says something, everyone gets the others' lines in the
    // one id order.
    for person in people.iter_mut() {
        let text = format!("hola desde {}", person.node);
        person.say(&text);
    }
    check_everyone(&cluster, &mut people);
    let stored = cluster.messages();
    assert_eq!(stored.len(), 3);
    for person in &people {
        let expected: Vec<i64> = stored.iter().filter(|m| m.user != person.user).map(|m| m.id).collect();
        assert_eq!(person.got.iter().map(|m| m.id).collect::<Vec<_>>(), expected);
    }
}

/// How node 1 goes away in a phase of the drill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: it stops in order.
    Term,
    /// `kill -9` (after SIGSTOP, so a line it never read is in flight).
    Kill,
}

/// One phase of the drill: the chat goes on with node 1 gone, and node 1,
/// restarted, serves everything.
fn drill_phase(cluster: &mut Cluster, chatters: &mut Vec<Chatter>, stop: Stop, round: usize) {
    let on_1 = chatters
        .iter()
        .position(|c| c.node == "node-1")
        .expect("someone is on node-1");
    for c in chatters.iter_mut() {
        let text = format!("r{round} antes, {} en {}", c.user, c.node);
        c.say(&text);
    }
    // A line in flight when node 1 goes away.
    let in_flight = format!("r{round} en vuelo");
    match stop {
        Stop::Term => {
            chatters[on_1].write(&in_flight);
            cluster.node(0).signal("TERM");
            // Draining: /health turns 503 (then the node is gone) at once:
            // the signal is handled on one of its threads a moment later.
            let signalled = Instant::now();
            let health = cluster.health(0);
            assert!(
                wait_until(Duration::from_secs(1), || {
                    http_close(health, "/health").map(|(s, _)| s) != Some(200)
                }),
                "/health still 200 1 s after SIGTERM"
            );
            println!("drill Term: /health not 200 {:?} after SIGTERM", signalled.elapsed());
        }
        Stop::Kill => {
            cluster.node(0).signal("STOP");
            chatters[on_1].write(&in_flight);
            thread::sleep(Duration::from_millis(100));
            cluster.node(0).kill9();
        }
    }
    chatters[on_1].expect_lost();
    if stop == Stop::Term {
        let status = cluster.node(0).wait_exit(Duration::from_secs(10));
        assert!(status.success(), "node-1 after SIGTERM: {status:?}");
    }
    cluster.nodes[0] = None;
    let took = cluster.haproxy.wait_state("node-1", "DOWN");
    println!("drill {stop:?}: HAProxy marked node-1 DOWN {took:?} after its connections ended");
    assert!(
        TcpStream::connect(cluster.health(0)).is_err(),
        "node-1's health port still answers"
    );
    // New connections go to nodes 2 and 3.
    let probes: Vec<(Client, String)> = (0..4).map(|_| cluster.connect()).collect();
    let landed: BTreeSet<&str> = probes.iter().map(|(_, node)| node.as_str()).collect();
    assert_eq!(landed, BTreeSet::from(["node-2", "node-3"]));
    drop(probes);
    // node-1's person comes back through HAProxy on another node: logs in,
    // catches up, resends the line in flight under its tag.
    chatters[on_1].reconnect(cluster);
    assert_ne!(chatters[on_1].node, "node-1");
    // The chat goes on.
    for n in 1..=2 {
        for c in chatters.iter_mut() {
            let text = format!("r{round} durante {n}, {} en {}", c.user, c.node);
            c.say(&text);
        }
    }
    check_everyone(cluster, chatters);
    // node-1 comes back: same name, same ports. After kill -9 its name is
    // taken until 10 s after it last showed itself.
    // After SIGTERM the node freed its name as it stopped (unless it could
    // not reach the database then, on a loaded machine): this returns at
    // once.
    let waited = cluster.wait_name_free(0);
    println!("drill {stop:?}: node-1's name was free again after {waited:?} more");
    cluster.restart(0);
    let took = cluster.haproxy.wait_state("node-1", "UP");
    println!("drill {stop:?}: HAProxy marked node-1 UP {took:?} after it listened");
    // leastconn sends the next session to node 1, the one with none.
    let (client, node) = cluster.connect();
    assert_eq!(node, "node-1", "leastconn sends a new session to the empty node");
    let mut fresh = Chatter::registered(client, node, &format!("v{round}"));
    // It sees the whole history, including everything said while it was down.
    let stored = cluster.messages();
    assert_eq!(fresh.sync(0), stored, "SYNC 0 on the restarted node-1");
    assert_eq!(fresh.client.history("1000"), stored, "HISTORY on the restarted node-1");
    for text in [&in_flight, &format!("r{round} durante 2, {} ", chatters[on_1].user)] {
        assert!(stored.iter().any(|m| m.text.starts_with(text.as_str())), "{text:?}");
    }
    chatters.push(fresh);
    // Everyone, the fresh session included, goes on receiving everything.
    for c in chatters.iter_mut() {
        let text = format!("r{round} después, {} en {}", c.user, c.node);
        c.say(&text);
    }
    check_everyone(cluster, chatters);
}

#[test]
fn drill_stop_node_1_chat_on_nodes_2_and_3_restart_node_1_and_it_serves_everything() {
    let mut cluster = Cluster::start();
    let mut chatters: Vec<Chatter> = ["ana", "bea", "carla"]
        .into_iter()
        .map(|user| Chatter::register(&cluster, user))
        .collect();
    let landed: BTreeSet<&str> = chatters.iter().map(|c| c.node.as_str()).collect();
    assert_eq!(landed, BTreeSet::from(["node-1", "node-2", "node-3"]));
    // Phase 1: node 1 stops in order. Phase 2: it dies (the person on it
    // then is the fresh session of phase 1, on the restarted node 1).
    drill_phase(&mut cluster, &mut chatters, Stop::Term, 1);
    drill_phase(&mut cluster, &mut chatters, Stop::Kill, 2);
    // Every node serves: one session per node at least, all in one chat.
    let nodes: BTreeSet<&str> = chatters.iter().map(|c| c.node.as_str()).collect();
    assert!(nodes.contains("node-1"), "{nodes:?}");
    assert!(
        chatters.iter().all(|c| c.pending.is_empty()),
        "unacknowledged lines at the end"
    );
}

/// The lines `charla` prints for others' messages: `[10:42] bea: hola` to
/// `bea: hola`, in order.
fn others_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest.to_string()))
        .collect()
}

#[test]
fn the_charla_client_fails_over_through_haproxy_when_its_node_is_killed() {
    let mut cluster = Cluster::start();
    let front = cluster.front().to_string();
    {
        let (mut setup, _) = cluster.connect();
        setup.register("ana", PASSWORD, "Ana Ríos");
        setup.send("QUIT");
        setup.expect("OK QUIT");
    }
    let mut charla = Charla::start(&front, &[]);
    charla.type_lines(&["1", "ana", PASSWORD]);
    charla.expect(HINT);
    // The node it landed on: the one whose /health counts a session.
    let mut at = None;
    let found = wait_until(Duration::from_secs(5), || {
        let counts: Vec<Option<u64>> = (0..NODES).map(|i| cluster.sessions(i)).collect();
        at = counts.iter().position(|c| *c == Some(1));
        counts.iter().filter(|c| **c == Some(0)).count() == NODES - 1
    });
    let at = at.filter(|_| found).expect("one node counts charla's session");
    // bea, through HAProxy too, lands on another node (leastconn).
    let (client, bea_node) = cluster.connect();
    assert_ne!(bea_node, name(at), "leastconn put bea with ana");
    let mut bea = Chatter::registered(client, bea_node, "bea");

    charla.type_lines(&["hola 1"]);
    while bea.got.is_empty() {
        let line = bea.client.line();
        bea.take(&line);
    }
    assert_eq!(bea.got[0].text, "hola 1");
    bea.say("b1");
    charla.expect(": b1");

    // A line the node never reads (it is stopped), then kill -9.
    cluster.node(at).signal("STOP");
    charla.type_lines(&["sin confirmar"]);
    thread::sleep(Duration::from_millis(200));
    let killed_ms = now_ms();
    let killed = Instant::now();
    cluster.node(at).kill9();
    cluster.nodes[at] = None;
    charla.expect(&format!(
        "Se perdió la conexión con el servidor en {front}; intentando reconectar (hasta 60 segundos)…"
    ));
    let noticed = killed.elapsed();
    charla.type_lines(&["durante 1"]);
    bea.say("mientras");
    charla.expect(&format!("Conexión recuperada con el servidor en {front}."));
    let back = killed.elapsed();
    // Its unacknowledged line comes first, then what was typed meanwhile.
    while bea.got.len() < 3 {
        let line = bea.client.line();
        bea.take(&line);
    }
    let resent = &bea.got[1];
    assert_eq!(resent.text, "sin confirmar");
    assert_eq!(bea.got[2].text, "durante 1");
    let failover_ms = resent.ts - killed_ms;
    println!(
        "charla failover through HAProxy: kill -9 -> the client said it lost the connection in {noticed:?}, \
         said it was back in {back:?}; kill -9 -> its next acknowledged message stored: {failover_ms} ms"
    );
    assert!(back < Duration::from_secs(15), "failover took {back:?}");
    // The chat goes on both ways.
    bea.say("b2");
    charla.type_lines(&["después"]);
    while bea.got.len() < 4 {
        let line = bea.client.line();
        bea.take(&line);
    }
    let mut seen = charla.seen.clone();
    let mut shown = others_lines(&seen);
    while !shown.iter().any(|l| l == "bea: b2") {
        let line = charla.next_line().expect("charla still runs");
        seen.push(line);
        shown = others_lines(&seen);
    }
    assert_eq!(
        shown,
        ["bea: b1", "bea: mientras", "bea: b2"],
        "charla printed {seen:#?}"
    );

    // Each line ana typed is stored exactly once, in the order typed.
    let ana: Vec<String> = cluster
        .messages()
        .into_iter()
        .filter(|m| m.user == "ana")
        .map(|m| m.text)
        .collect();
    assert_eq!(ana, ["hola 1", "sin confirmar", "durante 1", "después"]);
    // It never exited: it leaves when asked, with status 0.
    charla.type_lines(&["salir"]);
    charla.expect("Usuario ana se ha desconectado.");
    let (status, rest, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");
    assert!(others_lines(&rest).is_empty(), "{rest:?}");
}

/// The settings of an HAProxy configuration: its lines without comments,
/// blank lines, addresses (`bind`, `server`) and `resolvers` sections.
fn settings(config: &str) -> Vec<&str> {
    let mut kept = Vec::new();
    let mut resolvers = false;
    for raw in config.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !raw.starts_with(' ') {
            resolvers = line.starts_with("resolvers ");
        }
        if !resolvers && !line.starts_with("bind ") && !line.starts_with("server ") {
            kept.push(line);
        }
    }
    kept
}

#[test]
fn the_compose_files_use_the_settings_of_deploy_haproxy_cfg() {
    assert_eq!(
        settings(COMPOSE_CFG),
        settings(DEPLOY_CFG),
        "deploy/haproxy.compose.cfg must differ from deploy/haproxy.cfg only in addresses"
    );
    for n in 1..=NODES {
        assert!(
            COMPOSE_CFG.contains(&format!("server node-{n} node-{n}:7000 port 7100 ")),
            "node-{n} in deploy/haproxy.compose.cfg"
        );
        assert!(
            COMPOSE.contains(&format!("--node, node-{n},")),
            "node-{n} in deploy/compose.yaml"
        );
    }
    // The nodes trust HAProxy's fixed address, and only that.
    assert_eq!(COMPOSE.matches("--trusted-proxy, 172.28.0.10]").count(), NODES);
    assert!(COMPOSE.contains("ipv4_address: 172.28.0.10"));
    assert!(COMPOSE.contains("./haproxy.compose.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"));
    // HAProxy accepts it (the node names resolve only inside compose).
    let check = Command::new(haproxy_binary())
        .args(["-c", "-f", "deploy/haproxy.compose.cfg"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("haproxy -c runs");
    assert!(
        check.status.success(),
        "HAProxy rejects deploy/haproxy.compose.cfg: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

//! Several nodes on one PostgreSQL database (PROTOCOL.md 10), against the
//! real binary and a private PostgreSQL server per test: one chat across
//! nodes, one total order with no gap, idempotency across nodes, `kill -9`
//! of a node, a dead node's sessions, restarts, the database going away and
//! coming back, health, node names, nodes starting together.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::{Client, TestServer, http_get, ok_say, registered, wait_until};

/// A node of database `url` named `name`, with health checks.
fn node(url: &str, name: &str, extra: &[&str]) -> TestServer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut args = vec!["--db", url, "--node", name, "--health-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    TestServer::launch(dir, None, &args, &[])
}

/// The `@TAG OK SAY ID TS` of `line`, as `(id, ts)`.
fn acked(line: &str) -> (i64, i64) {
    let (_, reply) = line.split_once(' ').expect("a tagged reply");
    ok_say(reply)
}

/// Reads lines until one satisfies `wanted` (within the line timeout);
/// returns it and the lines before it.
fn until(client: &mut Client, wanted: impl Fn(&str) -> bool) -> (String, Vec<String>) {
    let mut before = Vec::new();
    loop {
        let line = client.line();
        if wanted(&line) {
            return (line, before);
        }
        before.push(line);
    }
}

#[test]
fn three_nodes_make_one_chat() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let nodes: Vec<TestServer> = ["n1", "n2", "n3"].iter().map(|n| node(&url, n, &[])).collect();
    let mut ana = registered(&nodes[0], "ana");
    let mut bea = registered(&nodes[1], "bea");
    until(&mut ana, |l| l == "JOIN bea");
    let mut carla = registered(&nodes[2], "carla");
    until(&mut ana, |l| l == "JOIN carla");
    until(&mut bea, |l| l == "JOIN carla");
    // A message from each node reaches the sessions of the others.
    let (id, _) = bea.say("hola desde n2");
    let (line, _) = until(&mut ana, |l| l.starts_with("MSG "));
    assert!(line.starts_with(&format!("MSG {id} ")) && line.ends_with(" bea hola desde n2"));
    let (line, _) = until(&mut carla, |l| l.starts_with("MSG "));
    assert!(line.starts_with(&format!("MSG {id} ")));
    // WHO counts every node's sessions.
    carla.send("WHO");
    let (ok, users) = until(&mut carla, |l| l.starts_with("OK WHO"));
    assert_eq!(ok, "OK WHO 3");
    assert_eq!(
        users,
        [
            "USER ana ana Apellido",
            "USER bea bea Apellido",
            "USER carla carla Apellido"
        ]
    );
    // Rooms and private messages cross nodes too.
    ana.send("JOIN #sala");
    until(&mut ana, |l| l == "OK JOIN #sala");
    bea.send("JOIN #SALA");
    until(&mut bea, |l| l == "OK JOIN #sala");
    until(&mut ana, |l| l == "ENTER #sala bea");
    bea.send("SEND #sala en la sala");
    until(&mut bea, |l| l.starts_with("OK SEND "));
    let (line, _) = until(&mut ana, |l| l.starts_with("POST "));
    assert!(line.ends_with(" #sala bea en la sala"), "{line}");
    carla.send("SEND @ana privado");
    until(&mut carla, |l| l.starts_with("OK SEND "));
    let (line, _) = until(&mut ana, |l| l.starts_with("POST "));
    assert!(line.ends_with(" @ana carla privado"), "{line}");
    // The last session of an account leaving is seen everywhere.
    drop(carla);
    until(&mut ana, |l| l == "LEAVE carla");
    until(&mut bea, |l| l == "LEAVE carla");
}

#[test]
fn one_total_order_with_no_gap_across_nodes() {
    const SENDERS_PER_NODE: usize = 2;
    const MESSAGES: usize = 150;
    let pg = Postgres::start();
    let url = pg.database("chat");
    let nodes: Vec<TestServer> = ["n1", "n2", "n3"].iter().map(|n| node(&url, n, &[])).collect();
    let mut readers: Vec<Client> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| registered(n, &format!("lector{i}")))
        .collect();
    let senders: Vec<Client> = (0..nodes.len() * SENDERS_PER_NODE)
        .map(|s| registered(&nodes[s % nodes.len()], &format!("s{s}")))
        .collect();
    let start = Arc::new(Barrier::new(senders.len()));
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut client)| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let lines: String = (0..MESSAGES).map(|i| format!("@k{i} SAY m{s}-{i}\n")).collect();
                client.send_raw(lines.as_bytes());
                let mut ids = Vec::new();
                while ids.len() < MESSAGES {
                    let line = client.line();
                    if line.starts_with("@k") {
                        ids.push(acked(&line).0);
                    }
                }
                ids
            })
        })
        .collect();
    let acknowledged: BTreeSet<i64> = handles.into_iter().flat_map(|h| h.join().expect("a sender")).collect();
    assert_eq!(acknowledged.len(), nodes.len() * SENDERS_PER_NODE * MESSAGES);
    let mut streams = Vec::new();
    for reader in readers.iter_mut() {
        let mut ids = Vec::new();
        while ids.len() < acknowledged.len() {
            let line = reader.line();
            if line.starts_with("MSG ") {
                ids.push(
                    line.split(' ')
                        .nth(1)
                        .and_then(|i| i.parse::<i64>().ok())
                        .expect("an id"),
                );
            }
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids out of order on a node");
        assert_eq!(
            ids.iter().copied().collect::<BTreeSet<_>>(),
            acknowledged,
            "a node skipped messages"
        );
        streams.push(ids);
    }
    assert!(
        streams.windows(2).all(|w| w[0] == w[1]),
        "nodes delivered different orders"
    );
    let stored: i64 = pg
        .client("chat")
        .query_one("SELECT count(*) FROM messages", &[])
        .expect("count")
        .get(0);
    assert_eq!(stored as usize, acknowledged.len());
}

#[test]
fn a_tag_seen_by_any_node_is_seen_by_all() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let nodes: Vec<TestServer> = ["n1", "n2", "n3"].iter().map(|n| node(&url, n, &[])).collect();
    let _ana = registered(&nodes[0], "ana");
    for round in 0..5 {
        let start = Arc::new(Barrier::new(2));
        let senders: Vec<_> = (0..2)
            .map(|n| {
                let mut session = nodes[n].connect();
                session.login("ana", "secreto123");
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    session.send(&format!("@mismo{round} SAY a la vez {round}"));
                    until(&mut session, |l| l.starts_with(&format!("@mismo{round} "))).0
                })
            })
            .collect();
        let answers: Vec<String> = senders.into_iter().map(|h| h.join().expect("a sender")).collect();
        assert!(answers[0].contains(" OK SAY "), "{answers:?}");
        assert_eq!(
            answers[0], answers[1],
            "both nodes answer with the one stored id and ts"
        );
        // Later, on a third node: the same answer.
        let mut late = nodes[2].connect();
        late.login("ana", "secreto123");
        late.send(&format!("@mismo{round} SAY otra vez"));
        let (again, _) = until(&mut late, |l| l.starts_with(&format!("@mismo{round} ")));
        assert_eq!(again, answers[0]);
    }
    let stored: i64 = pg
        .client("chat")
        .query_one("SELECT count(*) FROM messages", &[])
        .expect("count")
        .get(0);
    assert_eq!(stored, 5);
}

#[test]
fn killing_a_node_under_tagged_load_loses_nothing_acknowledged() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let mut n1 = node(&url, "n1", &[]);
    let n2 = node(&url, "n2", &[]);
    let senders: Vec<Client> = (0..3).map(|s| registered(&n1, &format!("s{s}"))).collect();
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut client)| {
            thread::spawn(move || {
                let mut acknowledged: HashMap<usize, i64> = HashMap::new();
                let mut written = 0;
                'sending: while written < 5000 {
                    let window: String = (written..written + 8)
                        .map(|i| format!("@k{i} SAY d{s}-{i}\n"))
                        .collect();
                    client.socket().set_write_timeout(Some(Duration::from_secs(2))).ok();
                    if std::io::Write::write_all(&mut client.socket(), window.as_bytes()).is_err() {
                        break;
                    }
                    written += 8;
                    let mut got = 0;
                    while got < 8 {
                        let Some(line) = client.next_line() else { break 'sending };
                        if let Some(tagged) = line.strip_prefix("@k") {
                            let i: usize = tagged
                                .split(' ')
                                .next()
                                .and_then(|i| i.parse().ok())
                                .expect("a tag number");
                            if line.contains(" OK SAY ") {
                                acknowledged.insert(i, acked(&line).0);
                            }
                            got += 1;
                        }
                    }
                }
                (s, written, acknowledged)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(700));
    n1.kill9();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("a sender")).collect();
    assert!(
        results.iter().map(|(_, _, a)| a.len()).sum::<usize>() > 0,
        "nothing was acknowledged before the kill"
    );
    // Every sender resends every tag it wrote to the surviving node.
    for (s, written, acknowledged) in &results {
        let mut client = n2.connect();
        client.login(&format!("s{s}"), "secreto123");
        let lines: String = (0..*written).map(|i| format!("@k{i} SAY d{s}-{i}\n")).collect();
        client.send_raw(lines.as_bytes());
        for i in 0..*written {
            let (line, _) = until(&mut client, |l| l.starts_with("@k"));
            assert!(line.starts_with(&format!("@k{i} OK SAY ")), "{line}");
            if let Some(id) = acknowledged.get(&i) {
                assert_eq!(acked(&line).0, *id, "s{s}'s tag k{i} changed id across nodes");
            }
        }
    }
    let mut db = pg.client("chat");
    for (s, written, _) in &results {
        let count: i64 = db
            .query_one(
                "SELECT count(*) FROM messages m JOIN users u ON u.id = m.user_id WHERE u.username = $1",
                &[&format!("s{s}")],
            )
            .expect("count")
            .get(0);
        assert_eq!(count as usize, *written, "s{s}: every message stored exactly once");
    }
}

#[test]
fn a_dead_nodes_sessions_end_within_10_seconds() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let n1 = node(&url, "n1", &[]);
    let mut n2 = node(&url, "n2", &[]);
    let mut ana = registered(&n1, "ana");
    let _bea = registered(&n2, "bea");
    until(&mut ana, |l| l == "JOIN bea");
    let health = n1.health.expect("a health address");
    assert!(
        wait_until(Duration::from_secs(3), || http_get(health, "/health/nodes")
            .1
            .contains("{\"node\":\"n2\",\"sessions\":1,")),
        "{}",
        http_get(health, "/health/nodes").1
    );
    n2.kill9();
    let died = Instant::now();
    ana.set_timeout(Duration::from_secs(15));
    until(&mut ana, |l| l == "LEAVE bea");
    let took = died.elapsed();
    assert!(
        took <= Duration::from_secs(10),
        "LEAVE bea came {took:?} after the node died"
    );
    ana.send("WHO");
    let (ok, _) = until(&mut ana, |l| l.starts_with("OK WHO"));
    assert_eq!(ok, "OK WHO 1");
    assert!(
        wait_until(Duration::from_secs(15), || !http_get(health, "/health/nodes")
            .1
            .contains("n2")),
        "the dead node stays in /health/nodes"
    );
}

#[test]
fn a_node_name_is_taken_while_its_node_lives_and_free_10_s_after_it_died() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let mut n1 = node(&url, "n1", &[]);
    let mut ana = registered(&n1, "ana");
    ana.say("antes");
    let mut twin = common::server_command(std::env::temp_dir().as_path());
    twin.args(["--addr", "127.0.0.1:0", "--db", &url, "--node", "n1"]);
    let refused = common::run_to_exit(twin);
    assert_eq!(refused.status.code(), Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("n1") && refused.stderr.contains("taken"),
        "{}",
        refused.stderr
    );
    n1.kill9();
    let died = Instant::now();
    // At once, the dead node's name is still taken.
    let mut early = common::server_command(std::env::temp_dir().as_path());
    early.args(["--addr", "127.0.0.1:0", "--db", &url, "--node", "n1"]);
    let early = common::run_to_exit(early);
    assert!(early.stderr.contains("taken"), "{}", early.stderr);
    // Free 10 s after it last showed itself.
    let mut db = pg.client("chat");
    assert!(wait_until(Duration::from_secs(15), || {
        db.query_one(
            "SELECT seen_at < now() - interval '10 seconds' FROM nodes WHERE name = 'n1'",
            &[],
        )
        .map(|row| row.get::<_, bool>(0))
        .unwrap_or(false)
    }));
    assert!(died.elapsed() >= Duration::from_secs(8), "the name was free too soon");
    // Restarted under the same name: a fresh identity that serves the whole
    // history from its first command.
    let restarted = node(&url, "n1", &[]);
    let mut again = restarted.connect();
    again.login("ana", "secreto123");
    let history = again.history("");
    assert_eq!(history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["antes"]);
}

#[test]
fn three_nodes_starting_together_share_one_schema() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let handles: Vec<_> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|name| {
            let url = url.clone();
            thread::spawn(move || node(&url, name, &[]))
        })
        .collect();
    let nodes: Vec<TestServer> = handles.into_iter().map(|h| h.join().expect("a node starts")).collect();
    let mut ana = registered(&nodes[0], "ana");
    let mut bea = registered(&nodes[2], "bea");
    until(&mut ana, |l| l == "JOIN bea");
    let (id, _) = bea.say("hola");
    let (line, _) = until(&mut ana, |l| l.starts_with("MSG "));
    assert!(line.starts_with(&format!("MSG {id} ")));
}

#[test]
fn losing_the_database_gives_db_error_and_the_node_recovers_by_itself() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let n1 = node(&url, "n1", &[]);
    let health = n1.health.expect("a health address");
    let mut ana = registered(&n1, "ana");
    ana.say("antes");
    let mut guest = n1.connect();
    pg.stop();
    for (who, line, verb) in [
        (0, "SAY durante", "SAY"),
        (1, "LOGIN ana secreto123", "LOGIN"),
        (1, "REGISTER otra secreto123 Otra", "REGISTER"),
    ] {
        let client = if who == 0 { &mut ana } else { &mut guest };
        let asked = Instant::now();
        client.send(line);
        let reply = client.line_skipping_presence();
        assert!(reply.starts_with(&format!("ERR {verb} db-error ")), "{line}: {reply}");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{line} took {:?}",
            asked.elapsed()
        );
    }
    // The connection stays usable.
    ana.send("PING");
    ana.expect("OK PING");
    assert!(
        wait_until(Duration::from_secs(5), || http_get(health, "/health").0 == 503),
        "/health stays 200 without a database"
    );
    assert!(http_get(health, "/health").1.contains("\"db\":\"down\""));
    pg.start_again();
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || {
            ana.send("SAY después");
            ana.line_skipping_presence().starts_with("OK SAY ")
        }),
        "the node did not recover within 10 s of the database"
    );
    assert!(back.elapsed() < Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(5), || http_get(health, "/health").0 == 200));
    guest.login("ana", "secreto123");
}

#[test]
fn health_says_what_the_node_knows_and_turns_503_when_it_stops() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let mut n1 = node(&url, "n1", &[]);
    let n2 = node(&url, "n2", &[]);
    let health = n1.health.expect("a health address");
    let mut ana = registered(&n1, "ana");
    let (id, _) = ana.say("hola");
    let (status, body) = http_get(health, "/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "{{\"status\":\"ok\",\"node\":\"n1\",\"db\":\"ok\",\"draining\":false,\"sessions\":1,\"last_id\":{id}}}"
        )
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (_, nodes) = http_get(health, "/health/nodes");
            nodes.starts_with("[{\"node\":\"n1\",\"sessions\":1,") && nodes.contains("{\"node\":\"n2\",\"sessions\":0,")
        }),
        "{}",
        http_get(health, "/health/nodes").1
    );
    assert_eq!(http_get(health, "/health/ping"), (200, "pong".to_string()));
    assert_eq!(http_get(health, "/nada").0, 404);
    // The other node knows the message too.
    let other = n2.health.expect("a health address");
    assert!(wait_until(Duration::from_secs(5), || http_get(other, "/health")
        .1
        .contains(&format!("\"last_id\":{id}"))));
    // SIGTERM: 503 and draining, and the node leaves the list at once.
    n1.signal("TERM");
    assert!(wait_until(Duration::from_secs(2), || {
        let (status, body) = http_get(health, "/health");
        status == 503 && body.contains("\"draining\":true")
    }));
    ana.expect("BYE shutting-down server is shutting down");
    assert!(wait_until(Duration::from_secs(3), || !http_get(other, "/health/nodes")
        .1
        .contains("n1")));
    assert!(n1.wait_exit(Duration::from_secs(10)).success());
}

/// Plays both sides of a relayed transfer of `id` with `ticket` at
/// `relay`: a fetcher and an owner sending the four bytes `test` whose
/// SHA-256 is `sha`. Returns what the fetcher received.
fn through_the_relay(relay: &str, id: &str, ticket: &str, sha: &str) -> String {
    use std::io::{Read, Write};
    let mut getter = std::net::TcpStream::connect(relay).expect("the relay");
    let mut putter = std::net::TcpStream::connect(relay).expect("the relay");
    getter.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    getter
        .write_all(format!("GET {id} {ticket}\n").as_bytes())
        .expect("GET");
    putter
        .write_all(format!("PUT {id} {ticket}\n").as_bytes())
        .expect("PUT");
    putter
        .write_all(format!("OK 4 {sha}\ntest").as_bytes())
        .expect("the file");
    putter.shutdown(std::net::Shutdown::Write).expect("end");
    let mut received = String::new();
    getter.read_to_string(&mut received).expect("through the relay");
    received
}

/// Reads a `FILES` reply: the `FILE` lines and the `OK FILES` line.
fn files(client: &mut Client, query: &str) -> (Vec<String>, String) {
    client.send(format!("FILES {query}").trim_end());
    let (ok, before) = until(client, |l| l.starts_with("OK FILES ") || l.starts_with("ERR "));
    (before.into_iter().filter(|l| l.starts_with("FILE ")).collect(), ok)
}

#[test]
fn offers_are_one_index_across_nodes_relayed_through_the_fetchers_node_and_gone_within_5_s_of_a_node_dying() {
    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let pg = Postgres::start();
    let url = pg.database("chat");
    let mut n1 = node(&url, "n1", &[]);
    let n2 = node(&url, "n2", &[]);
    let mut ana = registered(&n1, "ana");
    let mut bea = registered(&n2, "bea");
    until(&mut ana, |l| l == "JOIN bea");
    // A direct offer and a relayed one, both made on node 1.
    ana.send("ENDPOINT 127.0.0.1:45678");
    let (endpoint_ok, _) = until(&mut ana, |l| l.starts_with("OK ENDPOINT "));
    let key = endpoint_ok.rsplit(' ').next().expect("the key").to_string();
    ana.send(&format!("SHARE 4 {SHA} directo.txt"));
    let (shared, _) = until(&mut ana, |l| l.starts_with("OK SHARE "));
    let direct = shared["OK SHARE ".len()..].to_string();
    let mut relayed_owner = n1.connect();
    relayed_owner.login("ana", "secreto123");
    relayed_owner.send(&format!("SHARE 4 {SHA} relé.txt"));
    let (shared, _) = until(&mut relayed_owner, |l| l.starts_with("OK SHARE "));
    let relayed = shared["OK SHARE ".len()..].to_string();
    // Node 2 lists and fetches them.
    let (listed, ok) = files(&mut bea, "");
    assert_eq!(ok, "OK FILES 2", "{listed:?}");
    assert_eq!(
        listed,
        [
            format!("FILE {direct} 4 {SHA} ana directo.txt"),
            format!("FILE {relayed} 4 {SHA} ana relé.txt")
        ]
    );
    bea.send(&format!("FETCH {direct}"));
    let (reply, _) = until(&mut bea, |l| l.starts_with("OK FETCH ") || l.starts_with("ERR "));
    let words: Vec<&str> = reply.split(' ').collect();
    assert_eq!((words.len(), words[4]), (5, "127.0.0.1:45678"), "{reply}");
    let now = charla::core::journal::now_ms();
    assert!(charla::core::files::check(&key, &direct, words[3], now, 0).is_ok());
    // The relayed one: the ticket is for node 2's relay, and the owner on
    // node 1 is invited there.
    bea.send(&format!("FETCH {relayed}"));
    let (reply, _) = until(&mut bea, |l| l.starts_with("OK FETCH ") || l.starts_with("ERR "));
    let words: Vec<String> = reply.split(' ').map(str::to_string).collect();
    assert_eq!(words.len(), 5, "{reply}");
    let (ticket, relay) = (&words[3], &words[4]);
    relayed_owner.set_timeout(Duration::from_secs(5));
    let (invite, _) = until(&mut relayed_owner, |l| l.starts_with("RELAY "));
    assert_eq!(invite, format!("RELAY {relayed} {ticket} {relay}"));
    assert_eq!(
        through_the_relay(relay, &relayed, ticket, SHA),
        format!("OK\nOK 4 {SHA}\ntest")
    );
    // Asked for through the relay, the direct offer goes the same way: node
    // 2's relay, and ana's session on node 1 is invited although it
    // announced an endpoint.
    bea.send(&format!("FETCH {direct} RELAY"));
    let (reply, _) = until(&mut bea, |l| l.starts_with("OK FETCH ") || l.starts_with("ERR "));
    let words: Vec<String> = reply.split(' ').map(str::to_string).collect();
    assert_eq!((words.len(), &words[4]), (5, relay), "{reply}");
    ana.set_timeout(Duration::from_secs(5));
    let (invite, _) = until(&mut ana, |l| l.starts_with("RELAY "));
    assert_eq!(invite, format!("RELAY {direct} {} {relay}", words[3]));
    assert_eq!(
        through_the_relay(relay, &direct, &words[3], SHA),
        format!("OK\nOK 4 {SHA}\ntest")
    );
    // Another node's session of the same account may withdraw an offer;
    // another account may not.
    let mut ana_on_2 = n2.connect();
    ana_on_2.login("ana", "secreto123");
    bea.send(&format!("UNSHARE {direct}"));
    until(&mut bea, |l| l.starts_with("ERR UNSHARE forbidden"));
    ana_on_2.send(&format!("UNSHARE {direct}"));
    until(&mut ana_on_2, |l| l == format!("OK UNSHARE {direct}"));
    // Node 1 dies: its offers are gone from node 2's index within 5 s.
    n1.kill9();
    let died = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || files(&mut bea, "").1 == "OK FILES 0"),
        "node 1's offers outlived it: {:?}",
        files(&mut bea, "")
    );
    assert!(died.elapsed() <= Duration::from_secs(5));
    bea.send(&format!("FETCH {relayed}"));
    until(&mut bea, |l| l.starts_with("ERR FETCH no-such-file"));
}

#[test]
fn an_irc_sender_on_a_node_gets_its_echoes_in_order_among_another_nodes_messages() {
    use std::io::{BufRead, BufReader, Write};
    let pg = Postgres::start();
    let url = pg.database("chat");
    let n1 = node(&url, "n1", &["--irc-addr", "127.0.0.1:0"]);
    let n2 = node(&url, "n2", &[]);
    let mut ana = registered(&n1, "ana");
    ana.send("QUIT");
    ana.expect("OK QUIT");
    let mut bea = registered(&n2, "bea");
    let stream = std::net::TcpStream::connect(n1.irc.expect("an IRC address")).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut line = || {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a line from the IRC front end");
        line.trim_end().to_string()
    };
    writer
        .write_all(b"CAP REQ :message-tags echo-message\r\nPASS secreto123\r\nNICK ana\r\nUSER a 0 * :a\r\nCAP END\r\n")
        .expect("register");
    while !line().ends_with(" 366 ana #general :End of /NAMES list") {}
    until(&mut bea, |l| l == "JOIN ana");
    const EACH: usize = 60;
    let flood: String = (0..EACH).map(|i| format!("PRIVMSG #general :irc {i}\r\n")).collect();
    writer.write_all(flood.as_bytes()).expect("the messages");
    for i in 0..EACH {
        bea.send(&format!("SAY charla {i}"));
    }
    let mut ids = Vec::new();
    let mut echoes = 0;
    while ids.len() < 2 * EACH {
        let got = line();
        if let Some(rest) = got.strip_prefix("@msgid=") {
            let (id, rest) = rest.split_once(' ').expect("a tagged line");
            ids.push(id.parse::<i64>().expect("a decimal msgid"));
            if rest.starts_with(":ana!") {
                echoes += 1;
            }
        }
    }
    assert_eq!(echoes, EACH, "every message of ana's echoed once");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
}

/// How many times PostgreSQL has read the whole `messages` table, and how
/// many of its pages it has touched in all, as its statistics say.
fn messages_reads(sql: &mut postgres::Client) -> (i64, i64) {
    let row = sql
        .query_one(
            "SELECT coalesce(s.seq_scan, 0), coalesce(io.heap_blks_read, 0) + coalesce(io.heap_blks_hit, 0) \
             FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid) \
             WHERE s.relname = 'messages'",
            &[],
        )
        .expect("the table's statistics");
    (row.get(0), row.get(1))
}

/// A backend reports its statistics at most once a second while busy,
/// and within 10 s once idle: waiting this long sees every read before.
const STATISTICS_FLUSHED: Duration = Duration::from_secs(11);

#[test]
fn reads_of_a_large_young_log_read_only_the_rows_they_need() {
    let pg = Postgres::start();
    let url = pg.database("chat");
    let n1 = node(&url, "n1", &[]);
    let health = n1.health.expect("a health address");
    let mut bea = registered(&n1, "bea");
    bea.send("QUIT");
    bea.expect("OK QUIT");
    // 50,000 lobby messages of bea's written straight into the table,
    // whose statistics do not exist yet and will not (autovacuum off for
    // it): the planner knows nothing of the table, as in a young or
    // fast-growing chat.
    let mut sql = pg.client("chat");
    sql.batch_execute("ALTER TABLE messages SET (autovacuum_enabled = false)")
        .expect("autovacuum off");
    // Ids taken and used in one transaction, as the server does: the
    // counter's row stays locked until the commit, so nothing else (bea's
    // going offline) takes a later id and is read before them.
    let mut tx = sql.transaction().expect("a transaction");
    let filled: i64 = tx
        .query_one(
            "UPDATE charla_meta SET last_id = last_id + 50000 WHERE id = 1 RETURNING last_id",
            &[],
        )
        .expect("room in the log")
        .get(0);
    tx.batch_execute(&format!(
        "INSERT INTO messages (id, user_id, body, ts_ms) \
           SELECT {filled} - 50000 + g, b.id, 'relleno ' || g, 1764000000000 + g \
           FROM users b, generate_series(1, 50000) g WHERE b.username = 'bea'; \
         SELECT pg_notify('charla_log', '');"
    ))
    .expect("the filler messages");
    tx.commit().expect("the filler committed");
    // The node's tail reads past them before anyone is online to get them.
    let last_id = || -> i64 {
        let (_, body) = http_get(health, "/health");
        body.split("\"last_id\":")
            .nth(1)
            .and_then(|rest| rest.trim_end_matches('}').parse().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(20), || last_id() >= filled),
        "the node knows {} of {filled}",
        last_id()
    );
    let mut ana = registered(&n1, "ana");
    let (id, _) = ana.say("después del relleno");
    assert!(id > filled, "{id}");
    thread::sleep(STATISTICS_FLUSHED);
    let (scans, pages) = messages_reads(&mut sql);
    let table_pages: i64 = sql
        .query_one(
            "SELECT pg_relation_size('messages') / current_setting('block_size')::bigint",
            &[],
        )
        .expect("the table's size")
        .get(0);
    // Reads of every kind: the tail's (it polls the log twice a second),
    // history (newest, before an id, a private conversation), SYNC.
    let newest = ana.history("");
    assert_eq!(newest.len(), 50);
    assert_eq!(newest.last().map(|m| m.id), Some(id));
    assert_eq!(ana.history(&format!("2 {id}")).len(), 2);
    ana.send("HISTORY @bea 10");
    ana.expect("OK HISTORY 0");
    // The last two filler messages and ana's.
    ana.send(&format!("SYNC {} 10", filled - 2));
    let (_, synced) = until(&mut ana, |l| l == "OK SYNC 3");
    assert!(synced[2].starts_with(&format!("MSG {id} ")), "{synced:?}");
    let (second, _) = ana.say("otra vez");
    assert!(second > id);
    thread::sleep(STATISTICS_FLUSHED);
    let (scans_after, pages_after) = messages_reads(&mut sql);
    eprintln!(
        "{} sequential scans, {} of the table's {table_pages} pages touched",
        scans_after - scans,
        pages_after - pages
    );
    assert_eq!(
        scans_after - scans,
        0,
        "the messages table was read whole {} times",
        scans_after - scans
    );
    // A few pages per read; reading the lobby whole would touch them all.
    assert!(
        (pages_after - pages) * 2 < table_pages,
        "{} of the table's {table_pages} pages touched for a handful of rows",
        pages_after - pages
    );
}

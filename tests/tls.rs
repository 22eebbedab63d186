//! TLS (PROTOCOL.md 12) against the real binary, with a certificate made by
//! the test: the handshake, one chat across TLS and plain sessions, the
//! login deadline from the TCP accept, garbage instead of a ClientHello,
//! per-address limits, bad certificate files, `--addr none` and the
//! `certificate` command.

mod common;

use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charla::core::transport::Transport;
use charla::net::tls::{self, TlsTransport};
use common::{TestServer, registered};

/// A certificate for `localhost` and 127.0.0.1, written into `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let made = tls::self_signed(&["localhost".to_string(), "127.0.0.1".to_string()], 30).expect("a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.certificate).expect("write the certificate");
    std::fs::write(&key, made.key).expect("write the key");
    (cert, key)
}

/// A server with a TLS listener beside its plain one; the files live in
/// `certs`.
fn tls_server(certs: &Path, extra: &[&str]) -> TestServer {
    let (cert, key) = certificate(certs);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut args = vec!["--tls-addr", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(extra);
    TestServer::start_with(&args)
}

/// A TLS session to `addr` that trusts the certificate in `cert`.
struct TlsClient {
    transport: TlsTransport,
    buffer: Vec<u8>,
}

impl TlsClient {
    fn connect(addr: SocketAddr, cert: &Path) -> std::io::Result<TlsClient> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in tls::load_certificates(cert).expect("the test certificate") {
            roots.add(certificate).expect("a root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let socket = TcpStream::connect(addr)?;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let transport = TlsTransport::client(socket, Arc::new(config), name)?;
        transport.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(TlsClient {
            transport,
            buffer: Vec::new(),
        })
    }

    fn send(&mut self, line: &str) {
        let bytes = format!("{line}\n");
        let mut sent = 0;
        while sent < bytes.len() {
            sent += self
                .transport
                .send(&[IoSlice::new(&bytes.as_bytes()[sent..])])
                .expect("send over TLS");
        }
        self.transport.flush().expect("flush");
    }

    fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = self.transport.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    fn expect(&mut self, exact: &str) {
        assert_eq!(self.line().expect("a line over TLS"), exact);
    }

    fn expect_prefix(&mut self, prefix: &str) -> String {
        let line = self.line().expect("a line over TLS");
        assert!(line.starts_with(prefix), "expected {prefix:?}..., got {line:?}");
        line
    }
}

#[test]
fn a_tls_session_and_a_plain_one_share_one_chat() {
    let certs = tempfile::tempdir().expect("a directory");
    let server = tls_server(certs.path(), &[]);
    let tls_addr = server.tls.expect("a TLS listener");
    let mut secure = TlsClient::connect(tls_addr, &certs.path().join("cert.pem")).expect("a TLS session");
    secure.expect("HELLO charla 1 node-1");
    secure.send("REGISTER ana secreto123 Ana Ríos");
    secure.expect("OK REGISTER ana Ana Ríos");
    let mut plain = registered(&server, "bea");
    secure.expect("JOIN bea");
    let (id, _) = plain.say("hola por texto plano");
    let msg = secure.expect_prefix(&format!("MSG {id} "));
    assert!(msg.ends_with(" bea hola por texto plano"));
    secure.send("@t SAY hola cifrado");
    let ok = secure.expect_prefix("@t OK SAY ");
    let msg = plain.expect_msg();
    assert_eq!((msg.user.as_str(), msg.text.as_str()), ("ana", "hola cifrado"));
    assert!(ok.contains(&msg.id.to_string()));
    // A long history crosses many TLS records intact.
    for i in 0..300 {
        plain.send(&format!("SAY línea {i} {}", "x".repeat(100)));
    }
    for _ in 0..300 {
        plain.expect_prefix("OK SAY ");
    }
    for i in 0..300 {
        let line = secure.expect_prefix("MSG ");
        assert!(line.contains(&format!(" línea {i} ")), "{line}");
    }
    secure.send("HISTORY 1000");
    for _ in 0..302 {
        secure.expect_prefix("MSG ");
    }
    secure.expect("OK HISTORY 302");
    secure.send("QUIT");
    secure.expect("OK QUIT");
}

#[test]
fn a_stalled_handshake_is_cut_off_at_the_login_deadline_from_the_accept() {
    let certs = tempfile::tempdir().expect("a directory");
    let server = tls_server(certs.path(), &["--login-timeout", "1"]);
    let tls_addr = server.tls.expect("a TLS listener");
    let mut stalled = TcpStream::connect(tls_addr).expect("connect");
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Half a ClientHello record header, then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01]).expect("send");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "cut off after {took:?}");
    // Others are served meanwhile and after.
    let mut fine = registered(&server, "ana");
    fine.send("PING");
    fine.expect("OK PING");
}

#[test]
fn garbage_instead_of_a_client_hello_closes_only_that_connection() {
    let certs = tempfile::tempdir().expect("a directory");
    let server = tls_server(certs.path(), &[]);
    let tls_addr = server.tls.expect("a TLS listener");
    let cert = certs.path().join("cert.pem");
    let mut good = TlsClient::connect(tls_addr, &cert).expect("a TLS session");
    good.expect("HELLO charla 1 node-1");
    good.send("REGISTER ana secreto123 Ana");
    good.expect("OK REGISTER ana Ana");
    for garbage in [
        &b"LOGIN ana secreto123\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00],
        &[0xff; 64],
    ] {
        let mut bad = TcpStream::connect(tls_addr).expect("connect");
        bad.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        bad.write_all(garbage).expect("send");
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = bad.read_to_end(&mut answer);
        assert!(started.elapsed() < Duration::from_secs(4), "kept open");
        assert!(!String::from_utf8_lossy(&answer).contains("HELLO"));
    }
    good.send("PING still");
    good.expect("OK PING still");
    assert!(server.log().contains("read failed") || server.log().contains("closed"));
}

#[test]
fn per_address_limits_apply_inside_tls_with_a_bye_after_the_handshake() {
    let certs = tempfile::tempdir().expect("a directory");
    let server = tls_server(
        certs.path(),
        &["--max-connections-per-address", "1", "--limit-loopback"],
    );
    let tls_addr = server.tls.expect("a TLS listener");
    let cert = certs.path().join("cert.pem");
    let mut first = TlsClient::connect(tls_addr, &cert).expect("a TLS session");
    first.expect("HELLO charla 1 node-1");
    let mut second = TlsClient::connect(tls_addr, &cert).expect("a TLS session");
    second.expect("BYE server-full too many connections");
    assert!(second.line().is_err(), "closed after the BYE");
    first.send("PING");
    first.expect("OK PING");
}

#[test]
fn addr_none_serves_tls_only() {
    let certs = tempfile::tempdir().expect("a directory");
    let server = tls_server(certs.path(), &["--addr", "none"]);
    let tls_addr = server.tls.expect("a TLS listener");
    assert_eq!(server.addr, tls_addr);
    let mut secure = TlsClient::connect(tls_addr, &certs.path().join("cert.pem")).expect("a TLS session");
    secure.expect("HELLO charla 1 node-1");
}

#[test]
fn a_client_that_does_not_trust_the_certificate_gets_no_chat() {
    let certs = tempfile::tempdir().expect("a directory");
    let server = tls_server(certs.path(), &[]);
    let tls_addr = server.tls.expect("a TLS listener");
    let other = tempfile::tempdir().expect("a directory");
    let made = tls::self_signed(&["otro.local".to_string()], 30).expect("a certificate");
    let other_cert = other.path().join("otro.pem");
    std::fs::write(&other_cert, made.certificate).expect("write");
    let refused = TlsClient::connect(tls_addr, &other_cert).and_then(|mut c| c.line());
    let error = refused.expect_err("an unknown issuer is refused");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

#[test]
fn bad_certificate_files_stop_the_server_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("a directory");
    let (cert, key) = certificate(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let other = tempfile::tempdir().expect("a directory");
    let (_, other_key) = certificate(other.path());
    let cases: [(&Path, &Path, &str); 4] = [
        (&dir.path().join("missing.pem"), &key, "missing.pem"),
        (&garbage, &key, "holds no certificate"),
        (&cert, &garbage, "private key"),
        (&cert, &other_key, "cannot be used together"),
    ];
    for (cert, key, says) in cases {
        let mut command = common::server_command(dir.path());
        command
            .args(["--addr", "127.0.0.1:0", "--tls-addr", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key);
        let exited = common::run_to_exit(command);
        assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
        assert!(exited.stderr.contains(says), "{says}: {}", exited.stderr);
    }
    let mut half = common::server_command(dir.path());
    half.args(["--tls-addr", "127.0.0.1:0"]);
    let exited = common::run_to_exit(half);
    assert_eq!(
        exited.status.code(),
        Some(2),
        "clap refuses --tls-addr without files: {}",
        exited.stderr
    );
    let mut nothing = common::server_command(dir.path());
    nothing.args(["--addr", "none"]);
    let exited = common::run_to_exit(nothing);
    assert_eq!(exited.status.code(), Some(1));
    assert!(
        exited.stderr.contains("--addr none needs --tls-addr"),
        "{}",
        exited.stderr
    );
}

#[test]
fn the_certificate_command_writes_a_pair_and_prints_its_fingerprint() {
    let dir = tempfile::tempdir().expect("a directory");
    let (cert, key) = (dir.path().join("aula.pem"), dir.path().join("aula.key"));
    let mut command = common::server_command(dir.path());
    command
        .args([
            "certificate",
            "--name",
            "aula.local",
            "--name",
            "192.168.1.10",
            "--cert",
        ])
        .arg(&cert)
        .arg("--key")
        .arg(&key);
    let exited = common::run_to_exit(command);
    assert!(exited.status.success(), "{}", exited.stderr);
    let loaded = tls::load_certificates(&cert).expect("a certificate");
    assert!(
        exited.stdout.contains(&tls::fingerprint(&loaded[0])),
        "{}",
        exited.stdout
    );
    assert!(tls::server_config(&cert, &key).is_ok());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).expect("the key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Existing files are kept unless --force.
    let mut again = common::server_command(dir.path());
    again
        .args(["certificate", "--name", "aula.local", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key);
    let exited = common::run_to_exit(again);
    assert_eq!(exited.status.code(), Some(1));
    assert!(exited.stderr.contains("--force"), "{}", exited.stderr);
}

#[test]
fn irc_clients_connect_inside_tls_and_reach_charla_sessions() {
    let certs = tempfile::tempdir().expect("a temporary directory");
    let (cert, key) = certificate(certs.path());
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let server = TestServer::start_with(&[
        "--irc-tls-addr",
        "127.0.0.1:0",
        "--tls-cert",
        &cert_arg,
        "--tls-key",
        &key_arg,
        "--node",
        "seguro",
    ]);
    let addr = server.irc_tls.expect("the IRC TLS listener is announced as (IRC, TLS)");
    let mut bea = registered(&server, "bea");
    let mut irc = TlsClient::connect(addr, &cert).expect("a TLS connection");
    irc.send("PASS secreto123\r");
    irc.send("NICK bea\r");
    irc.send("USER bea 0 * :Bea\r");
    irc.expect(":seguro 001 bea :Welcome to charla, bea\r");
    loop {
        if irc.line().expect("the burst") == ":seguro 366 bea #general :End of /NAMES list\r" {
            break;
        }
    }
    bea.say("hola por TLS");
    irc.expect(":bea!bea@charla PRIVMSG #general :hola por TLS\r");
    irc.send("PRIVMSG #general :y de vuelta\r");
    let msg = bea.line();
    assert!(msg.ends_with(" bea y de vuelta"), "{msg}");
}

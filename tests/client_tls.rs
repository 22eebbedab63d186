//! `charla --tls` (PROTOCOL.md 12) with whole processes: the real `charla`
//! driven through piped stdin against a real `charla-server` with a TLS
//! listener and a certificate made by the test. A chat over TLS trusting
//! `--ca`; refusals that say why (unknown issuer, another name, expired, a
//! plain-text listener); `--ca` files that cannot be used; failover over
//! TLS, each reconnection with its own handshake; and `charla-bench --tls`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use charla::net::tls;
use common::{Charla, TestServer, free_port, registered, run_piped};

const HINT: &str =
    "Escribe un mensaje y pulsa Intro para enviarlo. /ayuda muestra los comandos; salir cierra la sesión.";

/// A certificate and key for `names`, written into `dir` as `NAME.pem` and
/// `NAME-key.pem`.
fn certificate(dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let names: Vec<String> = names.iter().map(|name| (*name).to_string()).collect();
    let made = tls::self_signed(&names, 30).expect("a certificate");
    write_pair(dir, file, &made.certificate, &made.key)
}

fn write_pair(dir: &Path, file: &str, certificate: &str, key: &str) -> (PathBuf, PathBuf) {
    let (cert_path, key_path) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}-key.pem")));
    std::fs::write(&cert_path, certificate).expect("write the certificate");
    std::fs::write(&key_path, key).expect("write the key");
    (cert_path, key_path)
}

/// A certificate for localhost and 127.0.0.1 that expired in 2021, made
/// with rcgen directly (the library's `self_signed` makes valid ones only).
fn expired_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![
        rcgen::SanType::DnsName("localhost".try_into().expect("a DNS name")),
        rcgen::SanType::IpAddress("127.0.0.1".parse().expect("an address")),
    ];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().expect("a key");
    let made = params.self_signed(&key).expect("a certificate");
    write_pair(dir, "expired", &made.pem(), &key.serialize_pem())
}

/// The arguments of a TLS listener at `addr` with this pair.
fn tls_args(addr: &str, cert: &Path, key: &Path) -> Vec<String> {
    vec![
        "--tls-addr".into(),
        addr.into(),
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]
}

/// A server with a plain listener and a TLS one on port 0.
fn tls_server(cert: &Path, key: &Path) -> TestServer {
    let args = tls_args("127.0.0.1:0", cert, key);
    TestServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The address of `server`'s TLS listener, as `charla --server` takes it.
fn tls_addr(server: &TestServer) -> String {
    server.tls.expect("a TLS listener").to_string()
}

#[test]
fn a_chat_over_tls_trusting_the_ca_reaches_a_plain_session_and_back() {
    let certs = tempfile::tempdir().expect("a directory");
    let (cert, key) = certificate(certs.path(), "charla-cert", &["localhost", "127.0.0.1"]);
    let server = tls_server(&cert, &key);
    let mut bea = registered(&server, "bea");
    // By name: the certificate is checked for the DNS name localhost.
    let port = server.tls.expect("a TLS listener").port();
    let ca = cert.display().to_string();
    let mut charla = Charla::start(&format!("localhost:{port}"), &["--tls", "--ca", &ca]);
    charla.type_lines(&["2", "Ana Ríos", "ana", "secreto123"]);
    charla.expect("Registro exitoso. Bienvenido Ana Ríos!");
    charla.expect(HINT);
    charla.type_lines(&["hola cifrado"]);
    let line = bea.line_skipping_presence();
    assert!(line.ends_with(" ana hola cifrado"), "{line:?}");
    bea.say("hola en claro");
    let shown = charla.expect("hola en claro");
    assert!(shown.ends_with("bea: hola en claro"), "{shown:?}");
    charla.type_lines(&["salir"]);
    charla.expect("Usuario ana se ha desconectado.");
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");
}

#[test]
fn an_untrusted_certificate_is_refused_saying_the_issuer_is_unknown_and_suggesting_ca() {
    let certs = tempfile::tempdir().expect("a directory");
    let (cert, key) = certificate(certs.path(), "charla-cert", &["localhost", "127.0.0.1"]);
    let server = tls_server(&cert, &key);
    let addr = tls_addr(&server);
    // Without --ca only the system's roots are trusted.
    let (status, out, err) = run_piped(&addr, &["--tls"], &["1", "ana", "secreto123"]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        err,
        format!(
            "Error de conexión: el certificado del servidor en {addr} es de un emisor desconocido, así que no se \
             puede comprobar que sea ese servidor. Si usa un certificado propio (autofirmado, como los de \
             charla-server certificate), pide el archivo del certificado y conéctate con --ca ARCHIVO.\n"
        )
    );
    let (status, _, err) = run_piped(&addr, &["--tls", "--lang", "en"], &[]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err,
        format!(
            "Connection error: the certificate of the server at {addr} is from an unknown issuer, so there is no \
             telling it is that server. If it uses a certificate of its own (self-signed, like those of \
             charla-server certificate), get the certificate file and connect with --ca FILE.\n"
        )
    );
    // Another certificate given with --ca (of another issuer) is no better.
    let (other, _) = certificate(certs.path(), "otro", &["otro.local", "127.0.0.1"]);
    let (status, _, err) = run_piped(&addr, &["--tls", "--ca", &other.display().to_string()], &[]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("emisor desconocido"), "{err}");
}

#[test]
fn a_certificate_for_another_name_is_refused_naming_both() {
    let certs = tempfile::tempdir().expect("a directory");
    let (cert, key) = certificate(certs.path(), "otro", &["otro.local"]);
    let server = tls_server(&cert, &key);
    let addr = tls_addr(&server);
    let ca = cert.display().to_string();
    let (status, out, err) = run_piped(&addr, &["--tls", "--ca", &ca], &[]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        err,
        format!(
            "Error de conexión: el certificado del servidor en {addr} no es válido para el nombre 127.0.0.1; \
             sirve para: otro.local. Conéctate con uno de esos nombres en --server, o pide un certificado que \
             incluya 127.0.0.1.\n"
        )
    );
    let (status, _, err) = run_piped(&addr, &["--tls", "--ca", &ca, "--lang", "en"], &[]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains(&format!(
            "the certificate of the server at {addr} is not valid for the name 127.0.0.1; it is for: otro.local."
        )),
        "{err}"
    );
}

#[test]
fn an_expired_certificate_is_refused_saying_when_it_expired() {
    let certs = tempfile::tempdir().expect("a directory");
    let (cert, key) = expired_certificate(certs.path());
    let server = tls_server(&cert, &key);
    let addr = tls_addr(&server);
    let ca = cert.display().to_string();
    let (status, _, err) = run_piped(&addr, &["--tls", "--ca", &ca], &[]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err,
        format!(
            "Error de conexión: el certificado del servidor en {addr} caducó el 2021-01-01. Si la fecha de este \
             equipo es correcta, quien administra el servidor debe renovarlo.\n"
        )
    );
    let (status, _, err) = run_piped(&addr, &["--tls", "--ca", &ca, "--lang", "en"], &[]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains(&format!(
            "the certificate of the server at {addr} expired on 2021-01-01."
        )),
        "{err}"
    );
}

#[test]
fn tls_against_a_plain_listener_says_it_did_not_answer_in_tls() {
    let server = TestServer::start();
    let addr = server.addr.to_string();
    let (status, _, err) = run_piped(&addr, &["--tls"], &[]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(
        err.starts_with(&format!(
            "Error de conexión: el servidor en {addr} no respondió con TLS; puede que en esa dirección escuche sin cifrar"
        )),
        "{err}"
    );
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("a directory");
    let (_, key) = certificate(dir.path(), "charla-cert", &["localhost"]);
    let missing = dir.path().join("nada.pem").display().to_string();
    // Nothing is contacted: the address does not matter.
    let (status, out, err) = run_piped("127.0.0.1:9", &["--tls", "--ca", &missing], &[]);
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(err, format!("No se puede usar --ca {missing}: el archivo no existe.\n"));
    let key = key.display().to_string();
    let (status, _, err) = run_piped("127.0.0.1:9", &["--tls", "--ca", &key, "--lang", "en"], &[]);
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert_eq!(
        err,
        format!(
            "Cannot use --ca {key}: it holds no certificate (PEM, \"-----BEGIN CERTIFICATE-----\"). It takes the \
             server's certificate file (charla-cert.pem), not its key.\n"
        )
    );
    // --ca alone is refused by the argument parser, with the usage status.
    let (status, _, err) = run_piped("127.0.0.1:9", &["--ca", &key], &[]);
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("--tls"), "{err}");
}

#[test]
fn failover_over_tls_verifies_again_on_every_reconnection() {
    let certs = tempfile::tempdir().expect("a directory");
    let (cert, key) = certificate(certs.path(), "charla-cert", &["localhost", "127.0.0.1"]);
    let addr = format!("127.0.0.1:{}", free_port());
    let args = tls_args(&addr, &cert, &key);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = TestServer::start_with(&args);
    registered(&server, "ana");
    let ca = cert.display().to_string();
    let mut charla = Charla::start(&addr, &["--tls", "--ca", &ca]);
    charla.type_lines(&["1", "ana", "secreto123", "antes"]);
    charla.expect(HINT);

    server.kill9();
    charla.expect(&format!(
        "Se perdió la conexión con el servidor en {addr}; intentando reconectar (hasta 60 segundos)…"
    ));
    charla.type_lines(&["durante"]);
    // Back on the same TLS port (the plain one is another): a new
    // handshake, the certificate verified again.
    let (dir, db) = server.into_dir();
    let server = TestServer::start_in(dir, db, &args);
    charla.expect(&format!("Conexión recuperada con el servidor en {addr}."));
    let mut bea = registered(&server, "bea");
    bea.say("después");
    charla.expect("bea: después");
    charla.type_lines(&["/historial"]);
    charla.expect("Últimos 3 mensajes:");
    charla.type_lines(&["salir"]);
    charla.expect("Usuario ana se ha desconectado.");
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");
}

#[test]
fn a_reconnection_to_a_certificate_that_no_longer_verifies_gives_up_saying_why() {
    let certs = tempfile::tempdir().expect("a directory");
    let (cert, key) = certificate(certs.path(), "charla-cert", &["localhost", "127.0.0.1"]);
    let addr = format!("127.0.0.1:{}", free_port());
    let args = tls_args(&addr, &cert, &key);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = TestServer::start_with(&args);
    registered(&server, "ana");
    let ca = cert.display().to_string();
    let mut charla = Charla::start(&addr, &["--tls", "--ca", &ca, "--reconnect-for", "6"]);
    charla.type_lines(&["1", "ana", "secreto123"]);
    charla.expect(HINT);
    server.kill9();
    charla.expect("intentando reconectar (hasta 6 segundos)");
    // The server comes back with a certificate made again for the same
    // names (another key): the client trusts only the one it was given, and
    // never logs in to this one.
    let (other, other_key) = certificate(certs.path(), "otro", &["localhost", "127.0.0.1"]);
    let (dir, db) = server.into_dir();
    let other_args = tls_args(&addr, &other, &other_key);
    let _renewed = TestServer::start_in(dir, db, &other_args.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, _, err) = charla.finish();
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err,
        format!(
            "Error de conexión: no se pudo volver a conectar con el servidor ({addr}) en 6 segundos.\n\
             Error de conexión: el certificado del servidor en {addr} dice venir de un emisor de confianza, pero \
             su firma no coincide. Si el servidor estrenó certificado (uno nuevo de charla-server certificate, por \
             ejemplo), pide el archivo nuevo para --ca; si no, alguien podría estar haciéndose pasar por el \
             servidor.\n"
        )
    );
}

#[test]
fn the_bench_runs_over_tls_trusting_the_ca() {
    let certs = tempfile::tempdir().expect("a directory");
    let (cert, key) = certificate(certs.path(), "charla-cert", &["localhost", "127.0.0.1"]);
    let server = tls_server(&cert, &key);
    let bench = |ca: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_charla-bench"));
        command.args(["--addr", &tls_addr(&server), "--json", "--tls", "--timeout", "30"]);
        if let Some(ca) = ca {
            command.arg("--ca").arg(ca);
        }
        command.args([
            "fanout",
            "--clients",
            "3",
            "--senders",
            "2",
            "--messages",
            "20",
            "--window",
            "2",
        ]);
        command.output().expect("charla-bench runs")
    };
    let run = bench(Some(&cert));
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for field in [
        "\"transport\":\"tls\"",
        "\"deliveries_expected\":80",
        "\"deliveries_lost\":0",
    ] {
        assert!(out.contains(field), "{field} in {out}");
    }
    let refused = bench(None);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[test]
fn a_client_over_tls_serves_the_files_it_shares_from_its_own_address() {
    use std::io::{Read, Write};

    let certs = tempfile::tempdir().expect("a directory");
    let (cert, key) = certificate(certs.path(), "charla-cert", &["localhost", "127.0.0.1"]);
    let server = tls_server(&cert, &key);
    let files = tempfile::tempdir().expect("a directory");
    let path = files.path().join("cifrado.txt");
    std::fs::write(&path, b"el canal al servidor va cifrado").expect("write");
    let ca = cert.display().to_string();
    let mut charla = Charla::start(&tls_addr(&server), &["--tls", "--ca", &ca]);
    charla.type_lines(&["2", "Ana Ríos", "ana", "secreto123"]);
    charla.expect(HINT);
    charla.type_lines(&[&format!("/compartir {}", path.display())]);
    let line = charla.expect("con el id ");
    let id = line
        .split("con el id ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    // A plain session fetches it from the endpoint the client announced:
    // the address its TLS connection to the server comes from.
    let mut bea = registered(&server, "bea");
    bea.send(&format!("FETCH {id}"));
    let reply = bea.line_skipping_presence();
    let words: Vec<&str> = reply.split(' ').collect();
    assert!(reply.starts_with("OK FETCH ") && words.len() == 5, "{reply}");
    assert!(words[4].starts_with("127.0.0.1:"), "{reply}");
    let mut peer = std::net::TcpStream::connect(words[4]).expect("the endpoint");
    peer.set_read_timeout(Some(common::LINE_TIMEOUT)).expect("timeout");
    peer.write_all(format!("GET {id} {}\n", words[3]).as_bytes())
        .expect("GET");
    let mut answer = String::new();
    peer.read_to_string(&mut answer).expect("the file");
    assert!(answer.ends_with("\nel canal al servidor va cifrado"), "{answer:?}");
}

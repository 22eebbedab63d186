//! The client's side of TLS (PROTOCOL.md 12, `charla --tls`): which
//! certificates it trusts, the name a server's certificate must be valid
//! for, and why a handshake failed, in terms a person can act on.
//!
//! The bytes themselves go through [`crate::net::tls::TlsTransport`], the
//! server's transport, used as a client ([`super::connection`]).

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::core::validate;
use crate::net::tls::{TlsSetupError, load_certificates};

/// Why the file given with `--ca` cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaProblem {
    /// There is no such file.
    Missing,
    /// It could not be read, or is not well-formed PEM (the reason, in
    /// English).
    Unreadable(String),
    /// It holds no certificate (a key file, say).
    NoCertificate,
    /// A certificate in it cannot be a root of trust (rustls's reason).
    Rejected(String),
}

/// The client's TLS settings: TLS 1.2 and 1.3 with rustls's safe defaults
/// and the `ring` provider, trusting the certificates in the PEM file `ca`
/// (a classroom's self-signed certificate, or its own authority), or
/// without `ca` the system's roots.
///
/// # Errors
/// [`CaProblem`] when `ca` is missing, unreadable or holds no usable
/// certificate.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, CaProblem> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certificates = load_certificates(path).map_err(|error| match error {
                TlsSetupError::Pem {
                    source: pem::Error::Io(e),
                    ..
                } if e.kind() == io::ErrorKind::NotFound => CaProblem::Missing,
                TlsSetupError::Pem {
                    source: pem::Error::Io(e),
                    ..
                } => CaProblem::Unreadable(e.to_string()),
                TlsSetupError::Pem { source, .. } => CaProblem::Unreadable(source.to_string()),
                TlsSetupError::NoCertificate(_) => CaProblem::NoCertificate,
                TlsSetupError::Rejected(e) => CaProblem::Rejected(e.to_string()),
            })?;
            for certificate in certificates {
                roots.add(certificate).map_err(|e| CaProblem::Rejected(e.to_string()))?;
            }
        }
        None => {
            // Certificates the system's store holds but that cannot be
            // parsed are skipped, as browsers do; with none at all every
            // server is of an unknown issuer, and the client says so.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| CaProblem::Rejected(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the certificate of the server at `addr` (`HOST:PORT`, or
/// `[V6]:PORT`) must be valid for: the host part, an IP address checked as
/// an IP address. `None` when there is no host or it is neither a host name
/// nor an IP address.
pub fn server_name(addr: &str) -> Option<ServerName<'static>> {
    let (host, _port) = addr.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    ServerName::try_from(host.to_string()).ok()
}

/// Why a TLS handshake with a server failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate is no longer valid: its `notAfter`, in seconds since
    /// the Unix epoch, when known.
    Expired {
        /// The end of its validity.
        not_after: Option<u64>,
    },
    /// The certificate is not valid yet (or this machine's clock is
    /// behind): its `notBefore`, when known.
    NotYetValid {
        /// The start of its validity.
        not_before: Option<u64>,
    },
    /// The certificate is not valid for the name the client connected to.
    WrongName {
        /// The name checked (the host part of `--server`).
        expected: String,
        /// The names it is valid for, safe to print.
        presented: Vec<String>,
    },
    /// The certificate was not issued by any certificate trusted (the
    /// system's roots, or `--ca`): a self-signed certificate not given with
    /// `--ca`, say.
    UnknownIssuer,
    /// The certificate names a trusted issuer, which did not sign it: a
    /// classroom's certificate made again (the same names, another key)
    /// while the client still trusts the old one, or an impostor.
    BadSignature,
    /// The certificate does not verify for another reason (rustls's words).
    BadCertificate(String),
    /// What came back is not TLS: most likely a plain-text listener.
    NotTls,
    /// The handshake failed otherwise (rustls's words).
    Handshake(String),
}

impl TlsFailure {
    /// What `error`, from a handshake, means to the person.
    pub fn of(error: &rustls::Error) -> TlsFailure {
        match error {
            rustls::Error::InvalidCertificate(certificate) => TlsFailure::of_certificate(certificate),
            rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
            other => TlsFailure::Handshake(validate::for_display(&other.to_string())),
        }
    }

    fn of_certificate(error: &CertificateError) -> TlsFailure {
        match error {
            CertificateError::Expired => TlsFailure::Expired { not_after: None },
            CertificateError::ExpiredContext { not_after, .. } => TlsFailure::Expired {
                not_after: Some(not_after.as_secs()),
            },
            CertificateError::NotValidYet => TlsFailure::NotYetValid { not_before: None },
            CertificateError::NotValidYetContext { not_before, .. } => TlsFailure::NotYetValid {
                not_before: Some(not_before.as_secs()),
            },
            CertificateError::NotValidForName => TlsFailure::WrongName {
                expected: String::new(),
                presented: Vec::new(),
            },
            CertificateError::NotValidForNameContext { expected, presented } => TlsFailure::WrongName {
                expected: validate::for_display(&expected.to_str()),
                presented: presented
                    .iter()
                    .filter_map(|name| usable_name(name))
                    .map(validate::for_display)
                    .collect(),
            },
            CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
            CertificateError::BadSignature => TlsFailure::BadSignature,
            other => TlsFailure::BadCertificate(validate::for_display(&other.to_string())),
        }
    }

    /// The rustls error inside an I/O error from a handshake, if any.
    pub fn in_io(error: &io::Error) -> Option<TlsFailure> {
        let inner = error.get_ref()?;
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(TlsFailure::of(tls));
        }
        inner.downcast_ref::<io::Error>().and_then(TlsFailure::in_io)
    }
}

/// A name a certificate is valid for, as the verifier lists it
/// (`DnsName("aula.local")`, `IpAddress(192.168.1.10)`), without the
/// wrapping; `None` for entries that are no name to connect to.
fn usable_name(listed: &str) -> Option<&str> {
    if let Some(name) = listed.strip_prefix("DnsName(\"") {
        return name.strip_suffix("\")");
    }
    if let Some(ip) = listed.strip_prefix("IpAddress(") {
        return ip.strip_suffix(')');
    }
    let wrapped = ["DirectoryName", "UniformResourceIdentifier(", "Unsupported("];
    (!wrapped.iter().any(|prefix| listed.starts_with(prefix))).then_some(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;
    use std::time::Duration;

    #[test]
    fn the_name_is_the_host_part_and_an_ip_address_stays_one() {
        assert!(matches!(server_name("aula.local:8443"), Some(ServerName::DnsName(n)) if n.as_ref() == "aula.local"));
        assert!(matches!(server_name("127.0.0.1:8443"), Some(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]:8443"), Some(ServerName::IpAddress(_))));
        assert!(server_name("no port here").is_none());
        assert!(server_name(":8443").is_none());
        assert!(server_name("bad name!:8443").is_none());
    }

    #[test]
    fn verification_errors_are_told_apart() {
        let certificate = |e| TlsFailure::of(&rustls::Error::InvalidCertificate(e));
        assert_eq!(certificate(CertificateError::UnknownIssuer), TlsFailure::UnknownIssuer);
        assert_eq!(
            certificate(CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(200)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(100)),
            }),
            TlsFailure::Expired { not_after: Some(100) }
        );
        assert_eq!(
            certificate(CertificateError::NotValidYet),
            TlsFailure::NotYetValid { not_before: None }
        );
        assert_eq!(
            certificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec![
                    "DnsName(\"otro.local\")".into(),
                    "IpAddress(10.0.0.1)".into(),
                    "DirectoryName".into(),
                    "DnsName(\"evil\u{1b}[2J\")".into(),
                ],
            }),
            TlsFailure::WrongName {
                expected: "127.0.0.1".into(),
                presented: vec![
                    "otro.local".into(),
                    "10.0.0.1".into(),
                    validate::for_display("evil\u{1b}[2J"),
                ],
            }
        );
        assert_eq!(certificate(CertificateError::BadSignature), TlsFailure::BadSignature);
        assert!(matches!(
            certificate(CertificateError::Revoked),
            TlsFailure::BadCertificate(_)
        ));
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            io::Error::other(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        );
        assert_eq!(TlsFailure::in_io(&wrapped), Some(TlsFailure::UnknownIssuer));
        assert_eq!(TlsFailure::in_io(&io::Error::from(io::ErrorKind::TimedOut)), None);
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_told() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            client_config(Some(&dir.path().join("none.pem"))).err(),
            Some(CaProblem::Missing)
        );
        let made = crate::net::tls::self_signed(&["aula.local".to_string()], 1).unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, made.key).unwrap();
        assert_eq!(client_config(Some(&key)).err(), Some(CaProblem::NoCertificate));
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, made.certificate).unwrap();
        assert!(client_config(Some(&cert)).is_ok());
        assert!(client_config(None).is_ok());
    }
}

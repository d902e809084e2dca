//! TLS to the server, as libpq does it: `sslmode`, `sslrootcert`, `sslcert` and `sslkey` in the
//! connection string.
//!
//! `tokio-postgres` knows `sslmode=disable|prefer|require` and no root certificates; an operator used
//! to libpq writes `?sslmode=verify-full&sslrootcert=/etc/tamma/ca.pem`. This module takes both
//! parameters out of the connection string (URL or `key=value` form), hands the rest to the driver,
//! and builds a rustls connector that verifies what libpq would:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (default) | when the server offers it | only with `sslrootcert` (chain) |
//! | `require` | always | only with `sslrootcert` (chain) |
//! | `verify-ca` | always | chain, against `sslrootcert` or the system's roots |
//! | `verify-full` | always | chain and host name, against `sslrootcert` or the system's roots |
//!
//! `sslrootcert=system` names the system's trust store, as in libpq 16. Where libpq reads
//! `~/.postgresql/root.crt` by default, verifying modes here use the system's roots.
//!
//! `sslcert` and `sslkey` (PEM files, given together) are the client certificate presented to a server
//! that asks for one (`ssl_ca_file` set; `cert` authentication in `pg_hba.conf`). As libpq does, the
//! key is refused when others may read it; unlike libpq, nothing is read from `~/.postgresql/` when they
//! are not given, and an encrypted key (`sslpassword`) is not supported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values this store accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Never encrypted.
    Disable,
    /// Encrypted when the server offers it.
    Prefer,
    /// Always encrypted.
    Require,
    /// Encrypted, the certificate chain verified.
    VerifyCa,
    /// Encrypted, the chain and the host name verified.
    VerifyFull,
}

/// Where trusted root certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Roots {
    /// A PEM file (`sslrootcert=/path`).
    File(PathBuf),
    /// The system's trust store (`sslrootcert=system`).
    System,
}

/// A client certificate and its private key (`sslcert`, `sslkey`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientCert {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// The TLS parameters of a connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsParams {
    pub(crate) mode: Mode,
    pub(crate) roots: Option<Roots>,
    pub(crate) client: Option<ClientCert>,
}

/// The parameters this module takes out of a connection string.
const OURS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// The values of [`OURS`] found in a connection string, in that order.
type Found = [Option<String>; 4];

/// Where and how to connect: the driver's settings and the TLS connector that goes with them.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
}

/// Splits `conn` into the connection string without `sslmode`, `sslrootcert`, `sslcert`, `sslkey`
/// and their values. `Err` names the parameter that is wrong.
pub(crate) fn split(conn: &str) -> Result<(String, TlsParams), String> {
    let (rest, [mode, root, cert, key]) =
        if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
            split_url(conn)
        } else {
            split_key_value(conn)?
        };
    let mode = match mode.as_deref() {
        None | Some("prefer") => Mode::Prefer,
        Some("disable") => Mode::Disable,
        Some("require") => Mode::Require,
        Some("verify-ca") => Mode::VerifyCa,
        Some("verify-full") => Mode::VerifyFull,
        Some(other) => {
            return Err(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    let roots = match root.as_deref() {
        None => None,
        Some("") => return Err("sslrootcert is empty".to_owned()),
        Some("system") => Some(Roots::System),
        Some(path) => Some(Roots::File(PathBuf::from(path))),
    };
    let client = match (cert, key) {
        (None, None) => None,
        (Some(_), None) => return Err("sslcert is set without sslkey".to_owned()),
        (None, Some(_)) => return Err("sslkey is set without sslcert".to_owned()),
        (Some(c), _) if c.is_empty() => return Err("sslcert is empty".to_owned()),
        (_, Some(k)) if k.is_empty() => return Err("sslkey is empty".to_owned()),
        (Some(cert), Some(key)) => Some(ClientCert {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        }),
    };
    if mode == Mode::Disable {
        if roots.is_some() {
            return Err("sslrootcert is set but sslmode is disable".to_owned());
        }
        if client.is_some() {
            return Err("sslcert is set but sslmode is disable".to_owned());
        }
    }
    Ok((
        rest,
        TlsParams {
            mode,
            roots,
            client,
        },
    ))
}

/// Where [`OURS`] goes in [`Found`].
fn slot(key: &str) -> Option<usize> {
    OURS.iter().position(|k| *k == key)
}

/// The URL form: the parameters are in the query (percent-encoded).
fn split_url(conn: &str) -> (String, Found) {
    let mut found = Found::default();
    let Some((base, query)) = conn.split_once('?') else {
        return (conn.to_owned(), found);
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match slot(k) {
                Some(i) => {
                    found[i] = Some(percent_decode(v));
                    false
                }
                None => true,
            }
        })
        .collect();
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, found)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits make at most 255.
            out.push(u8::try_from(h * 16 + l).unwrap_or(u8::MAX));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `key=value` form, with libpq's quoting (`key = 'a value'`, backslash escapes): the other pairs
/// are written back quoted.
fn split_key_value(conn: &str) -> Result<(String, Found), String> {
    let mut chars = conn.chars().peekable();
    let mut found = Found::default();
    let mut kept = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            // Not the text itself: it may be a password written without its key.
            return Err(format!(
                "parameter {} of the connection string has no '='",
                kept.len() + found.iter().flatten().count() + 1
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of {key:?} has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        match slot(&key) {
            Some(i) => found[i] = Some(value),
            None => kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    Ok((kept.join(" "), found))
}

impl TlsParams {
    /// The driver's mode for these parameters.
    pub(crate) fn driver_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The rustls connector: it verifies what libpq would for these parameters. `Err` says why the
    /// root certificates cannot be used (naming the file).
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up: {e}"))?;
        let roots = match (&self.roots, self.mode) {
            (Some(r), _) => Some(load_roots(r)?),
            (None, Mode::VerifyCa | Mode::VerifyFull) => Some(load_roots(&Roots::System)?),
            (None, _) => None,
        };
        let chain = match roots {
            None => None,
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("sslrootcert cannot be used: {e}"))?,
            ),
        };
        let verifier = Arc::new(Verifier {
            algorithms: provider.signature_verification_algorithms,
            chain,
            names: self.mode == Mode::VerifyFull,
        });
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some(client) => {
                let (certs, key) = client.load()?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    let (cert, key) = (client.cert.display(), client.key.display());
                    if e.to_string().contains("UnsupportedCertVersion") {
                        // What `openssl x509 -req` makes without `-extfile`; OpenSSL takes it, rustls
                        // does not.
                        format!(
                            "sslcert {cert} is an X.509 version 1 certificate; only version 3 is supported (issue it with extensions, e.g. openssl x509 -req … -extfile)"
                        )
                    } else {
                        format!("sslcert {cert} and sslkey {key} cannot be used together: {e}")
                    }
                })?
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

impl ClientCert {
    /// The certificate chain and the key. `Err` names the file that cannot be used and why.
    fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| format!("sslcert {} cannot be read: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "sslcert {} holds no certificate",
                self.cert.display()
            ));
        }
        check_key_access(&self.key)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            let encrypted = std::fs::read_to_string(&self.key)
                .is_ok_and(|text| text.contains("ENCRYPTED"));
            if encrypted {
                format!(
                    "sslkey {} is encrypted; tamma reads unencrypted keys only (PKCS#8, PKCS#1 or SEC1 PEM)",
                    self.key.display()
                )
            } else {
                format!("sslkey {} cannot be read: {e}", self.key.display())
            }
        })?;
        Ok((certs, key))
    }
}

/// libpq's rule for a private key file: nobody but its owner (and the owner's group, read only) may
/// reach it. A key others can read is refused, not used.
fn check_key_access(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("sslkey {} cannot be read: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o027 != 0 {
            return Err(format!(
                "sslkey {} has group or world access (mode {mode:04o}); it must be 0600 or 0640",
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("sslrootcert {} cannot be read: {e}", path.display()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {} holds no usable certificate",
                    path.display()
                ));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("the system's trust store holds no usable certificate".to_owned());
            }
        }
    }
    Ok(store)
}

/// What a connection checks of the server's certificate. The handshake's signatures are always
/// checked; the chain only with roots (`chain`), the host name only in `verify-full` (`names`).
#[derive(Debug)]
struct Verifier {
    algorithms: WebPkiSupportedAlgorithms,
    /// The chain's check against the trusted roots; `None` accepts any certificate (libpq's `prefer`
    /// and `require` without `sslrootcert`: encrypted against listeners, not against a man in the
    /// middle).
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the certificate must be for the host connected to (`verify-full`).
    names: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, p) = split(
            "postgres://u:p%40ss@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%40ss@h:5432/db?application_name=x&connect_timeout=3"
        );
        assert_eq!(p.mode, Mode::VerifyFull);
        assert_eq!(p.roots, Some(Roots::File("/etc/ca.pem".into())));
        let (rest, p) = split("postgresql://h/db?sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), p.mode, p.roots),
            ("postgresql://h/db", Mode::Require, None)
        );
        let (rest, p) = split("postgres://h1,h2/db").unwrap();
        assert_eq!(
            (rest.as_str(), p.mode),
            ("postgres://h1,h2/db", Mode::Prefer)
        );
    }

    #[test]
    fn key_value_parameters_are_taken_out_and_the_rest_requoted() {
        let (rest, p) = split(
            "host=h  user = 'o\\'brien' sslmode=verify-ca sslrootcert='/ca dir/ca.pem' dbname=db",
        )
        .unwrap();
        assert_eq!(rest, "host='h' user='o\\'brien' dbname='db'");
        assert_eq!(p.mode, Mode::VerifyCa);
        assert_eq!(p.roots, Some(Roots::File("/ca dir/ca.pem".into())));
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_user(), Some("o'brien"));
        let (_, p) = split("host=h sslrootcert=system").unwrap();
        assert_eq!((p.mode, p.roots), (Mode::Prefer, Some(Roots::System)));
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = split("postgres://h/db?sslmode=allowish").unwrap_err();
        assert!(e.contains("sslmode \"allowish\" is not one of"), "{e}");
        let e = split("host=h sslmode='require").unwrap_err();
        assert!(e.contains("\"sslmode\" has no closing quote"), "{e}");
        let e = split("host=h sslmode=disable sslrootcert=/ca.pem").unwrap_err();
        assert!(
            e.contains("sslrootcert is set but sslmode is disable"),
            "{e}"
        );
        let e = split("host=h s3cret").unwrap_err();
        assert_eq!(e, "parameter 2 of the connection string has no '='");
    }

    #[test]
    fn client_certificate_parameters_are_taken_out_in_both_forms() {
        let (rest, p) = split(
            "postgres://h/db?sslcert=%2Fetc%2Ftamma%2Fclient.crt&sslmode=require&sslkey=%2Fetc%2Ftamma%2Fclient.key",
        )
        .unwrap();
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(
            p.client,
            Some(ClientCert {
                cert: "/etc/tamma/client.crt".into(),
                key: "/etc/tamma/client.key".into(),
            })
        );
        let (rest, p) = split("host=h sslcert='/a b/c.crt' sslkey=/k.pem user=u").unwrap();
        assert_eq!(rest, "host='h' user='u'");
        assert_eq!(p.mode, Mode::Prefer);
        assert_eq!(
            p.client.map(|c| (c.cert, c.key)),
            Some(("/a b/c.crt".into(), "/k.pem".into()))
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_tls() {
        let e = split("postgres://h/db?sslcert=/c.crt").unwrap_err();
        assert_eq!(e, "sslcert is set without sslkey");
        let e = split("host=h sslkey=/k.pem").unwrap_err();
        assert_eq!(e, "sslkey is set without sslcert");
        let e = split("host=h sslkey=/k.pem sslcert=''").unwrap_err();
        assert_eq!(e, "sslcert is empty");
        let e = split("postgres://h/db?sslmode=disable&sslcert=/c.crt&sslkey=/k.pem").unwrap_err();
        assert_eq!(e, "sslcert is set but sslmode is disable");
    }

    #[test]
    fn client_certificate_files_that_cannot_be_used_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let params = |cert: &Path, key: &Path| TlsParams {
            mode: Mode::Require,
            roots: None,
            client: Some(ClientCert {
                cert: cert.to_owned(),
                key: key.to_owned(),
            }),
        };
        let missing = dir.path().join("missing.crt");
        let e = params(&missing, &missing).connector().err().unwrap();
        assert!(
            e.starts_with(&format!("sslcert {} cannot be read", missing.display())),
            "{e}"
        );
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = params(&empty, &missing).connector().err().unwrap();
        assert_eq!(
            e,
            format!("sslcert {} holds no certificate", empty.display())
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_key_access(&key).unwrap_err();
        assert_eq!(
            e,
            format!(
                "sslkey {} has group or world access (mode 0644); it must be 0600 or 0640",
                key.display()
            )
        );
        for mode in [0o600, 0o640, 0o400] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            check_key_access(&key).unwrap();
        }
    }

    #[test]
    fn a_root_file_that_cannot_be_used_is_named() {
        let p = TlsParams {
            mode: Mode::VerifyFull,
            roots: Some(Roots::File("/nonexistent/ca.pem".into())),
            client: None,
        };
        let e = p.connector().err().unwrap();
        assert!(
            e.starts_with("sslrootcert /nonexistent/ca.pem cannot be read"),
            "{e}"
        );
    }
}

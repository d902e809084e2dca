//! TLS to the server, as libpq does it: `sslmode` and `sslrootcert` in the connection string.
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

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
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

/// The TLS parameters of a connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsParams {
    pub(crate) mode: Mode,
    pub(crate) roots: Option<Roots>,
}

/// Where and how to connect: the driver's settings and the TLS connector that goes with them.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
}

/// Splits `conn` into the connection string without `sslmode`/`sslrootcert` and their values.
/// `Err` names the parameter that is wrong.
pub(crate) fn split(conn: &str) -> Result<(String, TlsParams), String> {
    let (rest, mode, root) = if conn.starts_with("postgres://") || conn.starts_with("postgresql://")
    {
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
    if mode == Mode::Disable && roots.is_some() {
        return Err("sslrootcert is set but sslmode is disable".to_owned());
    }
    Ok((rest, TlsParams { mode, roots }))
}

type Split = (String, Option<String>, Option<String>);

/// The URL form: `sslmode` and `sslrootcert` are query parameters (percent-encoded).
fn split_url(conn: &str) -> Split {
    let Some((base, query)) = conn.split_once('?') else {
        return (conn.to_owned(), None, None);
    };
    let (mut mode, mut root) = (None, None);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => mode = Some(percent_decode(v)),
                "sslrootcert" => root = Some(percent_decode(v)),
                _ => return true,
            }
            false
        })
        .collect();
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, mode, root)
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
fn split_key_value(conn: &str) -> Result<Split, String> {
    let mut chars = conn.chars().peekable();
    let (mut mode, mut root) = (None, None);
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
                kept.len() + usize::from(mode.is_some()) + usize::from(root.is_some()) + 1
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
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    Ok((kept.join(" "), mode, root))
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
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
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
    fn a_root_file_that_cannot_be_used_is_named() {
        let p = TlsParams {
            mode: Mode::VerifyFull,
            roots: Some(Roots::File("/nonexistent/ca.pem".into())),
        };
        let e = p.connector().err().unwrap();
        assert!(
            e.starts_with("sslrootcert /nonexistent/ca.pem cannot be read"),
            "{e}"
        );
    }
}

//! TLS to the real server, set as libpq sets it: `sslmode`, `sslrootcert`, `sslcert` and `sslkey` in
//! `database.url`. Debian's PostgreSQL serves TLS with its "snakeoil" certificate (`ssl = on`) and
//! trusts a test CA for client certificates (`ssl_ca_file`); `.ci/run` keeps it so.

use std::path::{Path, PathBuf};
use std::process::Command;

use futures::TryStreamExt;
use tamma_events::{Event, EventStore, Limits, Query, ReadOptions};
use tamma_events_postgres::{PostgresConfig, PostgresStore};

use crate::TestDb;

/// The server's certificate file and a DNS name it is valid for.
async fn server_certificate() -> (PathBuf, String) {
    let client = crate::support::connect("test").await;
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(
        ssl, "on",
        "PostgreSQL at 127.0.0.1:5432 serves no TLS (ssl = off); these tests need it (.ci/run turns it on)"
    );
    let file: String = client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-subject",
            "-in",
            &file,
        ])
        .output()
        .expect("the openssl command runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = text
        .split([',', '\n', ' '])
        .find_map(|w| w.trim().strip_prefix("DNS:"))
        .or_else(|| {
            text.split("CN = ")
                .nth(1)
                .map(|r| r.lines().next().unwrap_or(""))
        })
        .unwrap_or_else(|| panic!("no name in the server certificate {file}: {text}"))
        .trim()
        .to_owned();
    (PathBuf::from(file), name)
}

/// Sessions of the store in `db`: (encrypted, in plain).
async fn sessions(db: &TestDb) -> (i64, i64) {
    let row = crate::support::connect("test")
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
               FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.datname = $1 AND a.application_name LIKE 'tamma-events%'",
            &[&db.name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn config(url: String) -> PostgresConfig {
    PostgresConfig {
        pool_size: 2,
        ..PostgresConfig::with_url(url)
    }
}

/// Appends, reads back and opens a subscription, so the writer's, a pooled and the listening
/// connection are all open.
async fn exercise(store: &PostgresStore, db: &TestDb) {
    let r = store
        .append(vec![Event::new("TLS.CHECKED").tag("tls:1")], None)
        .await
        .unwrap();
    let read: Vec<_> = store
        .read(Query::all(), ReadOptions::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read.last().map(|e| e.position), Some(r.last_position()));
    let mut live = store.subscribe(Query::all(), 0);
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), live.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.position, 1);
    // The listening connection opens with the subscription: wait until the server shows it.
    let admin = crate::support::connect("test").await;
    for _ in 0..100 {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = $1 AND application_name = 'tamma-events-listen'",
                &[&db.name],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(live);
}

async fn open(url: String) -> Result<PostgresStore, String> {
    PostgresStore::connect(&config(url), Limits::default())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn require_encrypts_every_connection_of_the_store() {
    server_certificate().await;
    let db = TestDb::create().await;
    let store = open(format!("{}?sslmode=require", db.url())).await.unwrap();
    exercise(&store, &db).await;
    let (encrypted, plain) = sessions(&db).await;
    assert!(encrypted >= 2, "{encrypted} encrypted sessions");
    assert_eq!(plain, 0, "no session in plain");
}

#[tokio::test(flavor = "multi_thread")]
async fn disable_connects_in_plain() {
    let db = TestDb::create().await;
    let store = open(format!("{}?sslmode=disable", db.url())).await.unwrap();
    exercise(&store, &db).await;
    let (encrypted, plain) = sessions(&db).await;
    assert_eq!(encrypted, 0);
    assert!(plain >= 2, "{plain} sessions in plain");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_checks_the_chain_and_the_host_name() {
    let (cert, name) = server_certificate().await;
    let db = TestDb::create().await;
    let root = cert.display();
    // The name the certificate is for, reached at the server's address (libpq's hostaddr).
    let store = open(format!(
        "postgres://postgres@{name}:5432/{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={root}",
        db.name
    ))
    .await
    .unwrap();
    exercise(&store, &db).await;
    assert_eq!(sessions(&db).await.1, 0);
    drop(store);

    // The same server by its address: the certificate is not for that name.
    let e = open(format!(
        "{}?sslmode=verify-full&sslrootcert={root}",
        db.url()
    ))
    .await
    .unwrap_err();
    assert!(e.starts_with("cannot connect to PostgreSQL"), "{e}");
    assert!(e.contains("not valid for name"), "{e}");

    // verify-ca checks the chain only: the address is fine.
    let store = open(format!("{}?sslmode=verify-ca&sslrootcert={root}", db.url()))
        .await
        .unwrap();
    exercise(&store, &db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_that_did_not_sign_the_server_certificate_is_refused() {
    let (_, name) = server_certificate().await;
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let other = other_root(dir.path());
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = open(format!(
            "postgres://postgres@{name}:5432/{}?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}",
            db.name,
            other.display()
        ))
        .await
        .unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{mode}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tls_settings_are_named_before_connecting() {
    let db = TestDb::create().await;
    let e = open(format!("{}?sslmode=verify", db.url()))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        "invalid PostgreSQL event store settings: url: sslmode \"verify\" is not one of disable, prefer, require, verify-ca, verify-full"
    );
    let e = open(format!(
        "{}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        db.url()
    ))
    .await
    .unwrap_err();
    assert!(
        e.starts_with("invalid PostgreSQL event store settings: url: sslrootcert /nonexistent/ca.pem cannot be read"),
        "{e}"
    );
}

/// A self-signed CA of its own, made with the openssl command.
fn other_root(dir: &Path) -> PathBuf {
    let cert = dir.join("other-ca.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=not-the-server-ca"])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command runs");
    assert!(status.status.success(), "{status:?}");
    cert
}

/// The CA the server trusts for client certificates (`ssl_ca_file`) and its key, kept beside it
/// (`ca.key`) so these tests can sign client certificates. `.ci/run` sets both up, with role
/// `tamma_cert` allowed in by certificate only (`hostssl all tamma_cert 127.0.0.1/32 cert`).
async fn client_ca() -> (PathBuf, PathBuf) {
    let client = crate::support::connect("test").await;
    let file: String = client
        .query_one("SHOW ssl_ca_file", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !file.is_empty(),
        "PostgreSQL at 127.0.0.1:5432 trusts no CA for client certificates (ssl_ca_file is empty); .ci/run sets one up"
    );
    let key = Path::new(&file).with_file_name("ca.key");
    assert!(
        key.is_file(),
        "no key {} beside the server's client CA {file}; .ci/run makes both",
        key.display()
    );
    (PathBuf::from(file), key)
}

/// `base` with `sslmode=require` and the client certificate `cert` with its `key`.
fn client_url(base: &str, cert: &Path, key: &Path) -> String {
    format!(
        "{base}?sslmode=require&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    )
}

/// A client certificate for `name` and its key (mode 0600), signed by `ca` (certificate, key), or
/// self-signed. X.509 version 3 (with a `clientAuth` extension), as certificates are issued today.
fn client_certificate(
    dir: &Path,
    name: &str,
    ca: Option<&(PathBuf, PathBuf)>,
) -> (PathBuf, PathBuf) {
    issue(dir, name, ca, true)
}

/// As [`client_certificate`]; `v3: false` signs a CA-issued one without extensions (X.509 version 1,
/// what `openssl x509 -req` makes by default).
fn issue(dir: &Path, name: &str, ca: Option<&(PathBuf, PathBuf)>, v3: bool) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("the openssl command runs");
        assert!(out.status.success(), "{out:?}");
    };
    let subject = format!("/CN={name}");
    let mut req = Command::new("openssl");
    req.args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
    ])
    .args(["-nodes", "-subj", &subject, "-keyout"])
    .arg(&key);
    match ca {
        None => run(req.args(["-x509", "-days", "2", "-out"]).arg(&cert)),
        Some((ca_cert, ca_key)) => {
            let csr = dir.join(format!("{name}.csr"));
            run(req.arg("-out").arg(&csr));
            let serial = format!("0x{}", uuid::Uuid::new_v4().simple());
            let mut sign = Command::new("openssl");
            sign.args(["x509", "-req", "-days", "2", "-set_serial", &serial]);
            if v3 {
                let ext = dir.join(format!("{name}.ext"));
                std::fs::write(
                    &ext,
                    "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
                )
                .unwrap();
                sign.arg("-extfile").arg(ext);
            }
            run(sign
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(ca_cert)
                .arg("-CAkey")
                .arg(ca_key)
                .arg("-out")
                .arg(&cert));
        }
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_logs_in_where_the_server_requires_one() {
    let ca = client_ca().await;
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = client_certificate(dir.path(), "tamma_cert", Some(&ca));
    let base = format!("postgres://tamma_cert@127.0.0.1:5432/{}", db.name);
    let store = open(client_url(&base, &cert, &key)).await.unwrap();
    exercise(&store, &db).await;
    // Every session of the store presented the certificate, and the server took it as the login.
    let row = crate::support::connect("test")
        .await
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.client_dn = '/CN=tamma_cert' AND a.usename = 'tamma_cert')
               FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.datname = $1 AND a.application_name LIKE 'tamma-events%'",
            &[&db.name],
        )
        .await
        .unwrap();
    let (all, by_certificate): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 2, "{all} sessions");
    assert_eq!(by_certificate, all, "sessions logged in by the certificate");
    drop(store);

    // Without a certificate this role is turned away.
    let e = open(format!("{base}?sslmode=require")).await.unwrap_err();
    assert!(e.starts_with("cannot connect to PostgreSQL"), "{e}");
    assert!(e.contains("requires a valid client certificate"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_the_server_does_not_trust_is_refused() {
    client_ca().await;
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = client_certificate(dir.path(), "tamma_cert", None);
    let e = open(client_url(
        &format!("postgres://tamma_cert@127.0.0.1:5432/{}", db.name),
        &cert,
        &key,
    ))
    .await
    .unwrap_err();
    assert!(e.starts_with("cannot connect to PostgreSQL"), "{e}");
    assert!(e.contains("UnknownCA"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_1_client_certificate_is_named_as_such() {
    let ca = client_ca().await;
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = issue(dir.path(), "tamma_cert", Some(&ca), false);
    let e = open(client_url(&db.url(), &cert, &key)).await.unwrap_err();
    assert!(
        e.contains(&format!(
            "sslcert {} is an X.509 version 1 certificate; only version 3 is supported",
            cert.display()
        )),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_key_others_can_read_stops_the_start_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let ca = client_ca().await;
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = client_certificate(dir.path(), "tamma_cert", Some(&ca));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = open(client_url(&db.url(), &cert, &key)).await.unwrap_err();
    assert_eq!(
        e,
        format!(
            "invalid PostgreSQL event store settings: url: sslkey {} has group or world access (mode 0644); it must be 0600 or 0640",
            key.display()
        )
    );
}

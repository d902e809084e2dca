//! Syslog output: RFC 5424 over UDP and TCP, accepted by an independent parser (`syslog_loose`).

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use syslog_loose::{Protocol, SyslogFacility, SyslogSeverity, Variant};
use tamma_telemetry::{Facility, LoggingConfig, OutputConfig, SyslogOutputConfig, SyslogTransport};

fn config(transport: SyslogTransport, address: String) -> LoggingConfig {
    LoggingConfig {
        outputs: vec![OutputConfig::Syslog(SyslogOutputConfig {
            transport,
            address,
            facility: Facility::Local3,
            app_name: "tamma-test".into(),
            ..SyslogOutputConfig::default()
        })],
        ..LoggingConfig::default()
    }
}

fn check(msg: &str, i: usize) {
    let m = syslog_loose::parse_message(msg, Variant::RFC5424);
    assert_eq!(m.protocol, Protocol::RFC5424(1), "{msg}");
    assert_eq!(m.facility, Some(SyslogFacility::LOG_LOCAL3));
    assert_eq!(
        m.severity,
        Some(if i.is_multiple_of(2) {
            SyslogSeverity::SEV_WARNING
        } else {
            SyslogSeverity::SEV_ERR
        })
    );
    assert_eq!(m.hostname, Some("testhost"));
    assert_eq!(m.appname, Some("tamma-test"));
    assert!(m.timestamp.is_some());
    let v: serde_json::Value = serde_json::from_str(m.msg).expect("MSG is our JSON line");
    assert_eq!(v["meta"]["i"], i);
}

fn emit(t: &tamma_telemetry::Telemetry, n: usize) {
    tracing::dispatcher::with_default(t.dispatch(), || {
        for i in 0..n {
            if i.is_multiple_of(2) {
                tracing::warn!(i, "syslog line");
            } else {
                tracing::error!(i, "syslog line");
            }
        }
    });
}

#[test]
fn udp_messages_are_rfc5424() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let logging = config(SyslogTransport::Udp, sock.local_addr().unwrap().to_string());
    let t = crate::builder(&logging, std::path::Path::new("."))
        .build()
        .unwrap();
    emit(&t, 10);
    assert!(t.handle().shutdown(Duration::from_secs(5)).is_clean());
    let mut buf = vec![0u8; 65536];
    for i in 0..10 {
        let n = sock.recv(&mut buf).expect("a datagram per line");
        check(std::str::from_utf8(&buf[..n]).unwrap(), i);
    }
}

#[test]
fn tcp_messages_are_octet_counted_rfc5424() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let logging = config(
        SyslogTransport::Tcp,
        listener.local_addr().unwrap().to_string(),
    );
    let t = crate::builder(&logging, std::path::Path::new("."))
        .build()
        .unwrap();
    emit(&t, 10);
    let (mut conn, _) = listener.accept().unwrap();
    assert!(t.handle().shutdown(Duration::from_secs(5)).is_clean());
    drop(t);
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut data = Vec::new();
    // The sink keeps its connection until the telemetry is dropped; read what arrived.
    let mut buf = [0u8; 8192];
    while !frames_complete(&data, 10) {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early");
        data.extend_from_slice(&buf[..n]);
    }
    let mut rest: &[u8] = &data;
    for i in 0..10 {
        let sp = rest.iter().position(|b| *b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        let msg = std::str::from_utf8(&rest[sp + 1..sp + 1 + len]).unwrap();
        check(msg, i);
        rest = &rest[sp + 1 + len..];
    }
    assert!(rest.is_empty());
}

fn frames_complete(mut data: &[u8], n: usize) -> bool {
    for _ in 0..n {
        let Some(sp) = data.iter().position(|b| *b == b' ') else {
            return false;
        };
        let Ok(len) = std::str::from_utf8(&data[..sp])
            .unwrap_or("x")
            .parse::<usize>()
        else {
            return false;
        };
        if data.len() < sp + 1 + len {
            return false;
        }
        data = &data[sp + 1 + len..];
    }
    true
}

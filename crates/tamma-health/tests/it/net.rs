//! `http` and `tcp` checks against real listeners on 127.0.0.1.

use std::net::SocketAddr;

use tamma_core::{Check, CheckStatus};
use tamma_health::{
    HttpCheck, HttpCheckConfig, HttpMethod, StatusRange, TcpCheck, TcpCheckConfig, http_client,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A tiny HTTP/1.1 server: `/ok` answers 200 with a body, `/fail` 500, `/moved` 302.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let request = String::from_utf8_lossy(&buf[..len]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = match path.as_str() {
                    "/ok" => ("200 OK", "{\"status\":\"ready\"}"),
                    "/moved" => ("302 Found", ""),
                    _ => ("500 Internal Server Error", "oops"),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

fn http(addr: SocketAddr, path: &str) -> HttpCheckConfig {
    serde_json::from_value(serde_json::json!({ "url": format!("http://{addr}{path}") })).unwrap()
}

#[tokio::test]
async fn http_check_status_range_and_body() {
    let addr = server().await;
    let client = http_client().unwrap();
    let check = |cfg: HttpCheckConfig| HttpCheck::new("api", cfg, client.clone()).unwrap();

    let ok = check(http(addr, "/ok")).check().await;
    assert_eq!(ok.status, CheckStatus::Healthy, "{ok:?}");
    assert_eq!(ok.observed_unit.as_deref(), Some("ms"));
    assert_eq!(ok.details["statusCode"], 200);

    let body = check(HttpCheckConfig {
        body_contains: Some("\"ready\"".into()),
        ..http(addr, "/ok")
    })
    .check()
    .await;
    assert_eq!(body.status, CheckStatus::Healthy, "{body:?}");
    let missing = check(HttpCheckConfig {
        body_contains: Some("green".into()),
        ..http(addr, "/ok")
    })
    .check()
    .await;
    assert_eq!(missing.status, CheckStatus::Unhealthy);
    assert!(
        missing
            .output
            .unwrap()
            .contains("does not contain \"green\"")
    );

    let fail = check(http(addr, "/fail")).check().await;
    assert_eq!(fail.status, CheckStatus::Unhealthy);
    assert_eq!(
        fail.output.as_deref(),
        Some("status 500 is outside 200–299")
    );
    let accepted = check(HttpCheckConfig {
        expect_status: StatusRange { min: 500, max: 599 },
        method: HttpMethod::Post,
        ..http(addr, "/fail")
    })
    .check()
    .await;
    assert_eq!(accepted.status, CheckStatus::Healthy);

    let moved = check(http(addr, "/moved")).check().await;
    assert_eq!(
        moved.output.as_deref(),
        Some("status 302 is outside 200–299"),
        "redirects are not followed"
    );
}

async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test]
async fn http_check_connection_refused() {
    let addr = closed_port().await;
    let r = HttpCheck::new("api", http(addr, "/ok"), http_client().unwrap())
        .unwrap()
        .check()
        .await;
    assert_eq!(r.status, CheckStatus::Unhealthy);
    assert!(r.output.unwrap().starts_with("request failed: "));
}

#[tokio::test]
async fn tcp_check_connects_or_reports_why_not() {
    let addr = server().await;
    let up = TcpCheck::new(
        "nats",
        &TcpCheckConfig {
            address: addr.to_string(),
        },
    )
    .check()
    .await;
    assert_eq!(up.status, CheckStatus::Healthy);
    assert_eq!(up.details["address"], addr.to_string());
    let closed = closed_port().await;
    let down = TcpCheck::new(
        "nats",
        &TcpCheckConfig {
            address: closed.to_string(),
        },
    )
    .check()
    .await;
    assert_eq!(down.status, CheckStatus::Unhealthy);
    assert!(
        down.output
            .unwrap()
            .contains(&format!("connect to {closed} failed"))
    );
}

//! A node over real sockets: /health/live, /v1/config with sources and no secrets.

use tamma_config::{CliSetting, Env};
use tamma_runtime::{ConfigArgs, Node, builder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_serves_live_and_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let args = ConfigArgs {
        file: None,
        settings: vec![
            CliSetting::flag("--listen", "server.listen", "127.0.0.1:0"),
            CliSetting::flag("--data-dir", "dataDir", dir.path().to_str().unwrap()),
        ],
    };
    let env = Env::from_pairs([(
        "TAMMA_SECURITY__AUTHENTICATION__JWT__SECRET",
        "super-secret-value-1234567890abcdef",
    )]);
    let config = builder(&args, env).build().unwrap();
    let node = Node::start(config, None).await.unwrap();
    let addr = node.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(node.run_until(async {
        let _ = rx.await;
    }));
    let base = format!("http://{addr}");
    let live = reqwest::get(format!("{base}/health/live")).await.unwrap();
    assert_eq!(live.status(), 200);
    assert!(live.headers().contains_key("x-request-id"));
    let text = reqwest::get(format!("{base}/v1/config"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("super-secret-value"), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        doc["config"]["security"]["authentication"]["jwt"]["secret"],
        "[REDACTED]"
    );
    assert_eq!(
        doc["sources"]["security.authentication.jwt.secret"],
        "env TAMMA_SECURITY__AUTHENTICATION__JWT__SECRET"
    );
    assert_eq!(doc["sources"]["server.listen"], "cli --listen");
    assert_eq!(doc["sources"]["mode"], "default");
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn address_in_use_is_reported_plainly() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let args = ConfigArgs {
        file: None,
        settings: vec![
            CliSetting::flag("--listen", "server.listen", addr.clone()),
            CliSetting::flag("--data-dir", "dataDir", dir.path().to_str().unwrap()),
        ],
    };
    let config = builder(&args, Env::default()).build().unwrap();
    let e = Node::start(config, None).await.unwrap_err();
    assert_eq!(e.summary(), format!("address {addr} already in use"));
}

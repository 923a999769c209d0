//! The `meshscope` binary as a user runs it: flags, SIGTERM flushes and exits 0.

mod common;

use std::process::Stdio;
use std::time::Duration;

use testkit::sim::{self, Generator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_everything_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (grpc, http) = (common::free_port(), common::free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(["serve", "--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-addr", "127.0.0.1:0"])
        .env("MESHSCOPE_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("MESHSCOPE__AGGREGATOR__FLUSH_INTERVAL", "1h")
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn meshscope");
    common::wait_healthy(&format!("http://127.0.0.1:{http}")).await;
    let mut g = Generator::new(21);
    let now = common::now_nanos();
    let hops: Vec<_> = (0..20)
        .flat_map(|i| g.user_request(now - 120_000_000_000 + i * 1_000_000))
        .collect();
    sim::send_all(&format!("http://127.0.0.1:{grpc}"), &g.mesh, &hops)
        .await
        .expect("send");
    let details_calls = hops
        .iter()
        .filter(|h| g.mesh.server_name(h) == "details.default")
        .count() as u64;

    // The flush interval is an hour: only the shutdown flush can have written the data.
    common::sigterm(&child).await;
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exit in time")
        .expect("wait");
    assert!(exit.success(), "exit status {exit:?}");

    let stack = common::start(common::config(dir.path())).await;
    let services = stack.ok("/api/v1/services").await;
    let details = services["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "details.default")
        .cloned()
        .expect("details");
    assert_eq!(details["calls"].as_u64(), Some(details_calls));
    stack.stop().await;
}

/// Runs `cmd` to its end: it must fail (within 30 s) and name `key` on stderr.
async fn refused_naming(cmd: &mut tokio::process::Command, key: &str) {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.kill_on_drop(true).output())
        .await
        .expect("refused at once, not serving")
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(key), "{stderr}");
}

#[tokio::test]
async fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[store]\nretention_dayz = 3\n").expect("write");
    refused_naming(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
            .args(["serve", "--config"])
            .arg(&file),
        "retention_dayz",
    )
    .await;
}

#[tokio::test]
async fn a_flag_mends_a_bad_value_from_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("stale.toml");
    std::fs::write(
        &file,
        "[store]\nbackend = \"clickhouse\"\n[clickhouse]\nurl = \"clickhouse:8123\"\n",
    )
    .expect("write");
    let serve = |extra: &[String]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"));
        cmd.args(["serve", "--grpc-addr", "127.0.0.1:0"])
            .args(["--otlp-http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&file)
            .args(extra)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    };

    // The file alone: its url is not ClickHouse's HTTP interface, refused with the key named.
    refused_naming(
        &mut serve(&["--http-addr".into(), "127.0.0.1:0".into()]),
        "clickhouse.url",
    )
    .await;

    // The flag overrides it: the process starts (no ClickHouse listens there; the store
    // retries in the background and the API is up).
    let http = common::free_port();
    let mut child = serve(&[
        "--http-addr".into(),
        format!("127.0.0.1:{http}"),
        "--clickhouse-url".into(),
        format!("http://127.0.0.1:{}", common::free_port()),
    ])
    .spawn()
    .expect("spawn");
    common::wait_healthy(&format!("http://127.0.0.1:{http}")).await;
    child.kill().await.expect("kill");
}

/// `meshscope config` prints the configuration `serve` would use, from every source, with
/// the ClickHouse password redacted and the token files only as paths; a bad value fails
/// as `serve` would.
#[tokio::test]
async fn config_prints_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("read-tokens");
    std::fs::write(&tokens, "read-token-value-7f3a\n").expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(["config", "--clickhouse-password", "hunter2-flag"])
        .arg("--read-tokens-file")
        .arg(&tokens)
        .env("MESHSCOPE__AGGREGATOR__FLUSH_INTERVAL", "7s")
        .env("MESHSCOPE_CLICKHOUSE_USER", "writer")
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for secret in ["hunter2", "read-token-value"] {
        assert!(!stdout.contains(secret), "{stdout}");
    }
    for line in [
        "password = \"<redacted>\"",
        "user = \"writer\"",
        "flush_interval = \"7s\"",
        &format!("read_tokens_file = \"{}\"", tokens.display()),
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    refused_naming(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope")).args([
            "config",
            "--tls-cert",
            "/nowhere/tls.crt",
        ]),
        "key",
    )
    .await;
}

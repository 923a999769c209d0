//! TLS and tokens on every listener, with real clients: a tonic TLS client sending ALS
//! with, without and with a wrong token; reqwest over TLS with Bearer and Basic auth on
//! the JSON and Prometheus APIs; a plain-text client against a TLS port; client
//! certificates; token rotation without a restart. The figures are exactly those of the
//! authenticated traffic.

mod common;

use std::time::Duration;

use common::tls::{Pki, pki};
use common::truth::{check_topology, expected, scenario};
use serde_json::Value;
use testkit::sim;

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// `--ingest-tokens-file INGEST --read-tokens-file READ --data-dir DATA`.
fn token_and_data_args(
    ingest: &std::path::Path,
    read: &std::path::Path,
    data: &std::path::Path,
) -> Vec<std::ffi::OsString> {
    [
        ("--ingest-tokens-file", ingest),
        ("--read-tokens-file", read),
        ("--data-dir", data),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [flag.into(), path.as_os_str().to_owned()])
    .collect()
}

/// TLS on the ingest listeners and an ingest token: only the authenticated scenario
/// counts; the others are refused `UNAUTHENTICATED` and counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_needs_tls_and_a_token_and_counts_only_what_passed() {
    let pki = pki();
    let data = tempfile::tempdir().expect("tempdir");
    let tokens = pki.dir.path().join("ingest");
    write(
        &tokens,
        "# rolled out on Monday\nsecret-ingest-1\nsecret-ingest-2\n",
    );
    let mut config = common::config(data.path());
    config.tls.grpc.cert_file = Some(pki.cert.clone());
    config.tls.grpc.key_file = Some(pki.key.clone());
    config.tls.otlp_http.cert_file = Some(pki.cert.clone());
    config.tls.otlp_http.key_file = Some(pki.key.clone());
    config.auth.ingest_tokens_file = Some(tokens);
    let stack = common::start(config).await;
    let endpoint = format!("https://127.0.0.1:{}", stack.app.grpc_addr.port());

    let (mesh, hops, start) = scenario(41, 120);
    sim::send_all(pki.peer(&endpoint, Some("secret-ingest-2")), &mesh, &hops)
        .await
        .expect("an authenticated sender is served");
    let (other_mesh, other_hops, _) = scenario(42, 60);
    let refused = sim::send_all(pki.peer(&endpoint, None), &other_mesh, &other_hops)
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let refused = sim::send_all(
        pki.peer(&endpoint, Some("secret-ingest-3")),
        &other_mesh,
        &other_hops,
    )
    .await
    .expect_err("wrong token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    // Plain text against the TLS port: no stream is served.
    let plain = sim::send_all(stack.grpc.as_str(), &other_mesh, &other_hops).await;
    assert!(plain.is_err(), "plain text was served on a TLS port");

    // OTLP/HTTP over TLS: a token is needed there too.
    let client = Pki::reqwest(&pki.ca_pem);
    let otlp = format!(
        "https://127.0.0.1:{}/v1/traces",
        stack.app.otlp_http_addr.port()
    );
    let post = |token: Option<&'static str>| {
        let mut request = client
            .post(&otlp)
            .header("content-type", "application/json")
            .body("{}");
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move { request.send().await.expect("post").status().as_u16() }
    };
    assert_eq!(post(None).await, 401);
    assert_eq!(post(Some("nope")).await, 401);
    assert_eq!(post(Some("secret-ingest-1")).await, 200);

    stack.flush().await;
    let (edges, _, _) = expected(&mesh, &hops);
    check_topology(&stack, &edges, start).await;
    let text = stack.metrics().await;
    let failures = |listener: &str, reason: &str| {
        common::metric_value(
            &text,
            &format!(
                "meshscope_auth_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
            ),
        )
    };
    // The refused senders announce first: one refusal each, then they stop.
    assert_eq!(failures("grpc", "missing"), 1.0, "{text}");
    assert_eq!(failures("grpc", "invalid"), 1.0, "{text}");
    assert!(failures("grpc", "tls") >= 1.0, "{text}");
    assert_eq!(failures("otlp_http", "missing"), 1.0, "{text}");
    assert_eq!(failures("otlp_http", "invalid"), 1.0, "{text}");
    stack.stop().await;
}

/// TLS on the API, read and admin tokens: Bearer and Basic both work, `/healthz` stays
/// open, a read token cannot flush, refusals have the API's shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_takes_read_and_admin_tokens_over_tls() {
    let pki = pki();
    let data = tempfile::tempdir().expect("tempdir");
    let (read, admin) = (pki.dir.path().join("read"), pki.dir.path().join("admin"));
    write(&read, "grafana-token\n");
    write(&admin, "ops-token\n");
    let mut config = common::config(data.path());
    config.tls.cert_file = Some(pki.cert.clone());
    config.tls.key_file = Some(pki.key.clone());
    config.auth.read_tokens_file = Some(read);
    config.auth.admin_tokens_file = Some(admin);
    config.api.enable_admin_api = true;
    let stack = common::start(config).await;
    let base = format!("https://127.0.0.1:{}", stack.app.http_addr.port());
    let client = Pki::reqwest(&pki.ca_pem);
    let get = |path: &str, auth: Option<(&'static str, &'static str)>| {
        let mut request = client.get(format!("{base}{path}"));
        match auth {
            Some(("bearer", t)) => request = request.bearer_auth(t),
            Some((user, t)) => request = request.basic_auth(user, Some(t)),
            None => {}
        }
        async move {
            let response = request.send().await.expect("get");
            let status = response.status().as_u16();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap_or_default().to_string());
            let body = response.text().await.expect("body");
            (status, challenge, body)
        }
    };
    assert_eq!(get("/healthz", None).await.0, 200);
    let (status, challenge, body) = get("/api/v1/services", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.is_some_and(|c| c.contains("Bearer")));
    assert!(serde_json::from_str::<Value>(&body).expect("json")["error"].is_string());
    assert_eq!(
        get("/api/v1/services", Some(("bearer", "nope"))).await.0,
        401
    );
    assert_eq!(
        get("/api/v1/services", Some(("bearer", "grafana-token")))
            .await
            .0,
        200
    );
    assert_eq!(
        get("/api/v1/services", Some(("grafana", "grafana-token")))
            .await
            .0,
        200
    );
    assert_eq!(
        get("/api/v1/services", Some(("bearer", "ops-token")))
            .await
            .0,
        200
    );
    let (status, _, body) = get("/prometheus/api/v1/query?query=vector(1)", None).await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "unauthorized");
    let (status, _, body) = get(
        "/prometheus/api/v1/query?query=vector(1)",
        Some(("promtool", "grafana-token")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get("/metrics", None).await.0, 401);

    let flush = |token: &'static str| {
        let request = client
            .post(format!("{base}/api/v1/admin/flush"))
            .bearer_auth(token);
        async move { request.send().await.expect("post").status().as_u16() }
    };
    assert_eq!(flush("grafana-token").await, 403);
    assert_eq!(flush("ops-token").await, 200);

    // Plain HTTP against the TLS port gets no answer.
    assert!(
        reqwest::get(format!("{}/healthz", stack.http))
            .await
            .is_err()
    );

    let (status, _, text) = get("/metrics", Some(("bearer", "grafana-token"))).await;
    assert_eq!(status, 200);
    let failures = |reason: &str| {
        common::metric_value(
            &text,
            &format!("meshscope_auth_failures_total{{listener=\"api\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(failures("missing"), 3.0, "{text}");
    assert_eq!(failures("invalid"), 1.0, "{text}");
    assert_eq!(failures("forbidden"), 1.0, "{text}");
    assert!(failures("tls") >= 1.0, "{text}");
    assert!(!text.contains("grafana-token") && !text.contains("ops-token"));
    stack.stop().await;
}

/// Client certificates: one the configured CA signed is served, one from another CA and
/// none at all are refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_must_come_from_the_configured_ca() {
    let pki = pki();
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(data.path());
    config.tls.cert_file = Some(pki.cert.clone());
    config.tls.key_file = Some(pki.key.clone());
    config.tls.client_ca_file = Some(pki.ca.clone());
    let stack = common::start(config).await;
    let endpoint = format!("https://127.0.0.1:{}", stack.app.grpc_addr.port());
    let (mesh, hops, start) = scenario(43, 80);
    let mut peer = pki.peer(&endpoint, None);
    peer.identity = Some((
        pki.client.0.clone().into_bytes(),
        pki.client.1.clone().into_bytes(),
    ));
    sim::send_all(&peer, &mesh, &hops)
        .await
        .expect("a client certificate from the CA is served");
    let (other_mesh, other_hops, _) = scenario(44, 40);
    peer.identity = Some((
        pki.stranger.0.clone().into_bytes(),
        pki.stranger.1.clone().into_bytes(),
    ));
    assert!(
        sim::send_all(&peer, &other_mesh, &other_hops)
            .await
            .is_err()
    );
    peer.identity = None;
    assert!(
        sim::send_all(&peer, &other_mesh, &other_hops)
            .await
            .is_err()
    );
    stack.flush().await;
    // The API has no client CA of its own ([tls.api]): a client without a certificate reads.
    let client = Pki::reqwest(&pki.ca_pem);
    let base = format!("https://127.0.0.1:{}", stack.app.http_addr.port());
    let topo: Value = client
        .get(format!(
            "{base}/api/v1/topology?{}",
            common::truth::window(start)
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let (edges, _, _) = expected(&mesh, &hops);
    let calls: u64 = topo["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["calls"].as_u64().expect("calls"))
        .sum();
    assert_eq!(
        calls,
        edges.values().map(|e| e.calls).sum::<u64>(),
        "{topo}"
    );
    stack.stop().await;
}

/// A token file rewritten while the server runs: within the reload interval the new
/// token is taken and the old one refused, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_without_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let tokens = data.path().join("ingest-tokens");
    write(&tokens, "first\n");
    let mut config = common::config(data.path());
    config.auth.ingest_tokens_file = Some(tokens.clone());
    config.auth.reload_interval = Duration::from_millis(200);
    let stack = common::start(config).await;
    let peer = |token: &str| sim::Peer {
        endpoint: stack.grpc.clone(),
        token: Some(token.to_string()),
        ..Default::default()
    };
    let mesh = sim::bookinfo();
    sim::announce(peer("first"), &mesh, [0])
        .await
        .expect("first token");
    // Both during the roll-out, then only the new one.
    write(&tokens, "first\nsecond\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sim::announce(peer("second"), &mesh, [0]).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new token was not taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim::announce(peer("first"), &mesh, [0])
        .await
        .expect("still during the roll-out");
    write(&tokens, "second\n");
    while sim::announce(peer("first"), &mesh, [0]).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old token stayed valid"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mesh, hops, start) = scenario(45, 50);
    sim::send_all(peer("second"), &mesh, &hops)
        .await
        .expect("second token");
    stack.flush().await;
    let (edges, _, _) = expected(&mesh, &hops);
    check_topology(&stack, &edges, start).await;
    stack.stop().await;
}

/// The certificate files are rotated while an ALS stream is open: the stream goes on
/// over its connection and every entry counts; new connections get the new certificate
/// (a client that trusts only the old CA is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_dropping_open_streams() {
    use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
    use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
    let pki = pki();
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(data.path());
    config.tls.grpc.cert_file = Some(pki.cert.clone());
    config.tls.grpc.key_file = Some(pki.key.clone());
    config.tls.reload_interval = Duration::from_millis(200);
    let stack = common::start(config).await;
    let endpoint = format!("https://127.0.0.1:{}", stack.app.grpc_addr.port());
    let (mesh, hops, _) = scenario(46, 200);
    let (_, messages) = sim::encode(&mesh, &hops)
        .into_iter()
        .max_by_key(|(_, m)| m.len())
        .expect("a stream");
    assert!(messages.len() >= 2, "{} messages", messages.len());
    let entries: usize = messages
        .iter()
        .map(|m| match &m.log_entries {
            Some(LogEntries::HttpLogs(h)) => h.log_entry.len(),
            Some(LogEntries::TcpLogs(t)) => t.log_entry.len(),
            None => 0,
        })
        .sum();

    let (tx, rx) = tokio::sync::mpsc::channel(messages.len());
    let channel = pki.peer(&endpoint, None).channel().await.expect("connect");
    let stream = tokio::spawn(async move {
        AccessLogServiceClient::new(channel)
            .stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let half = messages.len() / 2;
    let mut messages = messages.into_iter();
    for m in messages.by_ref().take(half) {
        tx.send(m).await.expect("send");
    }
    let new_ca = pki.rotate();
    stack
        .wait_metric(
            "meshscope_tls_reloads_total{listener=\"grpc\",result=\"ok\"}",
            |v| v >= 1.0,
        )
        .await;
    for m in messages {
        tx.send(m).await.expect("send on the open stream");
    }
    drop(tx);
    stream.await.expect("task").expect("the stream ended OK");
    let text = stack.metrics().await;
    assert_eq!(
        common::metric_value(&text, "meshscope_als_entries_received_total"),
        entries as f64,
        "{text}"
    );
    // New connections: the old CA no longer verifies the server, the new one does.
    let mesh = sim::bookinfo();
    assert!(
        sim::announce(pki.peer(&endpoint, None), &mesh, [0])
            .await
            .is_err()
    );
    let mut renewed = pki.peer(&endpoint, None);
    renewed.ca_pem = Some(new_ca.into_bytes());
    sim::announce(renewed, &mesh, [0])
        .await
        .expect("the new certificate");
    stack.stop().await;
}

/// Debian's promtool (2.42) over TLS: the read token as the Basic-auth password in the
/// URL, the test CA through `SSL_CERT_FILE` (which Go reads); a wrong token fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_queries_over_tls_with_the_token_in_the_url() {
    let pki = pki();
    let data = tempfile::tempdir().expect("tempdir");
    let read = pki.dir.path().join("read");
    write(&read, "promtool-token\n");
    let mut config = common::config(data.path());
    config.tls.api.cert_file = Some(pki.cert.clone());
    config.tls.api.key_file = Some(pki.key.clone());
    config.auth.read_tokens_file = Some(read);
    let stack = common::start(config).await;
    let port = stack.app.http_addr.port();
    let ca = pki.ca.clone();
    let run = move |token: &'static str| {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("promtool")
                .args([
                    "query",
                    "instant",
                    &format!("https://grafana:{token}@127.0.0.1:{port}/prometheus"),
                    "vector(42)",
                ])
                .env("SSL_CERT_FILE", &ca)
                .output()
                .expect("promtool runs (Debian package `prometheus`; `.ci/deps` installs it)")
        })
    };
    let ok = run("promtool-token").await.expect("task");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("=> 42 @"), "{stdout}");
    let refused = run("not-the-token").await.expect("task");
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("401") || text.contains("unauthorized"),
        "{text}"
    );
    stack.stop().await;
}

/// The binary as a user runs it, with token files from the flags: requests with good,
/// wrong and no tokens, a token file rewritten; its whole log holds no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_the_log() {
    let data = tempfile::tempdir().expect("tempdir");
    let (ingest, read) = (data.path().join("ingest"), data.path().join("read"));
    write(&ingest, "ingest-SECRET-1\n");
    write(&read, "read-SECRET-1\n");
    let (grpc, http) = (common::free_port(), common::free_port());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(["serve", "--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-addr", "127.0.0.1:0"])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .args(token_and_data_args(&ingest, &read, data.path()))
        .env("RUST_LOG", "debug")
        .env("MESHSCOPE__AUTH__RELOAD_INTERVAL", "200ms")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn meshscope");
    common::wait_healthy(&format!("http://127.0.0.1:{http}")).await;
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let peer = |token: Option<&str>| sim::Peer {
        endpoint: endpoint.clone(),
        token: token.map(str::to_string),
        ..Default::default()
    };
    let mesh = sim::bookinfo();
    sim::announce(peer(Some("ingest-SECRET-1")), &mesh, [0])
        .await
        .expect("good token");
    assert!(
        sim::announce(peer(Some("ingest-WRONG-9")), &mesh, [0])
            .await
            .is_err()
    );
    assert!(sim::announce(peer(None), &mesh, [0]).await.is_err());
    let client = reqwest::Client::new();
    for token in ["read-SECRET-1", "read-WRONG-9"] {
        let _ = client
            .get(format!("http://127.0.0.1:{http}/api/v1/services"))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
    }
    write(&ingest, "ingest-SECRET-2\n");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sim::announce(peer(Some("ingest-SECRET-2")), &mesh, [0])
        .await
        .expect("the new token");
    common::sigterm(&child).await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exit in time")
        .expect("output");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("tokens re-read"),
        "the rotation was not logged: {log}"
    );
    for secret in ["SECRET", "WRONG"] {
        assert!(!log.contains(secret), "a token reached the log: {log}");
    }
}

/// The real `opentelemetry-otlp` exporter over TLS with the token in its headers, over
/// gRPC, HTTP protobuf and HTTP JSON: each process's spans count exactly; an exporter
/// without the token is refused and nothing of it counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exporters_send_over_tls_with_their_token() {
    use common::otel::{self, Transport};
    use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
    let pki = pki();
    let data = tempfile::tempdir().expect("tempdir");
    let tokens = pki.dir.path().join("ingest");
    write(&tokens, "otel-token\n");
    let mut config = common::config(data.path());
    config.tls.grpc.cert_file = Some(pki.cert.clone());
    config.tls.grpc.key_file = Some(pki.key.clone());
    config.tls.otlp_http.cert_file = Some(pki.cert.clone());
    config.tls.otlp_http.key_file = Some(pki.key.clone());
    config.auth.ingest_tokens_file = Some(tokens);
    let stack = common::start(config).await;
    let target = otel::Target {
        grpc: format!("https://127.0.0.1:{}", stack.app.grpc_addr.port()),
        otlp_http: format!("https://127.0.0.1:{}", stack.app.otlp_http_addr.port()),
        ca_pem: Some(pki.ca_pem.clone()),
        token: Some("otel-token".into()),
    };
    let t0 = (common::now_nanos() / 60_000_000_000 - 2) * 60_000_000_000;
    let roots = |provider: &opentelemetry_sdk::trace::SdkTracerProvider, n: i64| {
        let tracer = provider.tracer("security-test");
        for k in 0..n {
            let mut span = tracer
                .span_builder("GET /")
                .with_kind(SpanKind::Server)
                .with_start_time(otel::at(t0 + k * 1_000_000))
                .start(&tracer);
            span.end_with_timestamp(otel::at(t0 + k * 1_000_000 + 500_000));
        }
    };
    let mut want = std::collections::BTreeMap::new();
    let mut providers = Vec::new();
    for (transport, name, n) in [
        (Transport::Grpc, "web-grpc", 30),
        (Transport::HttpProtobuf, "web-proto", 20),
        (Transport::HttpJson, "web-json", 10),
    ] {
        let provider = otel::provider_to(&target, transport, name, "shop", "pod-0");
        roots(&provider, n);
        want.insert(format!("{name}.shop"), n as u64);
        providers.push(provider);
    }
    otel::finish(providers).await;
    // Without the token: the export fails and is counted as refused.
    let anonymous = otel::Target {
        token: None,
        ..target.clone()
    };
    let provider = otel::provider_to(&anonymous, Transport::Grpc, "web-anon", "shop", "pod-1");
    roots(&provider, 5);
    let flushed = tokio::task::spawn_blocking(move || {
        let flushed = provider.force_flush();
        let _ = provider.shutdown();
        flushed
    })
    .await
    .expect("exporter thread");
    assert!(flushed.is_err(), "an export without a token was taken");

    stack.flush().await;
    let start = t0 / 1_000_000_000 - 60;
    let list = stack
        .ok(&format!(
            "/api/v1/services?start={start}&end={}",
            start + 600
        ))
        .await;
    let got = common::service_calls(&list);
    assert_eq!(got, want, "{list}");
    let text = stack.metrics().await;
    assert!(
        common::metric_value(
            &text,
            "meshscope_auth_failures_total{listener=\"grpc\",reason=\"missing\"}"
        ) >= 1.0,
        "{text}"
    );
    stack.stop().await;
}

/// `meshscope demo` on a secured server: its simulated proxies and exporters trust the
/// given CA and send the first ingest token, so its traffic is counted and nothing is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_against_a_secured_server() {
    let pki = pki();
    let data = tempfile::tempdir().expect("tempdir");
    let (ingest, read) = (data.path().join("ingest"), data.path().join("read"));
    write(
        &ingest,
        "# the demo sends the first token\ningest-demo-1\ningest-demo-2\n",
    );
    write(&read, "read-demo-1\n");
    let (grpc, http) = (common::free_port(), common::free_port());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(["demo", "--rate", "40"])
        .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-addr", "127.0.0.1:0"])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .arg("--tls-cert")
        .arg(&pki.cert)
        .arg("--tls-key")
        .arg(&pki.key)
        .arg("--demo-ca")
        .arg(&pki.ca)
        .args(token_and_data_args(&ingest, &read, data.path()))
        .env("MESHSCOPE__AGGREGATOR__FLUSH_INTERVAL", "1s")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn meshscope demo");
    let client = Pki::reqwest(&pki.ca_pem);
    let api = format!("https://localhost:{http}");
    let get = |path: &str| {
        client
            .get(format!("{api}{path}"))
            .bearer_auth("read-demo-1")
            .send()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let services = loop {
        if let Ok(resp) = get("/api/v1/services").await
            && resp.status().is_success()
        {
            let body: Value = resp.json().await.expect("json");
            let calls = common::service_calls(&body);
            // Both kinds of traffic: bookinfo over ALS, the traced shop over OTLP.
            let has = |name: &str| calls.keys().any(|k| k.starts_with(name));
            if has("productpage") && has("storefront") {
                break calls;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo's traffic never showed up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(services.values().all(|c| *c > 0), "{services:?}");
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        common::metric_value(&metrics, "meshscope_auth_failures_total"),
        0.0,
        "{metrics}"
    );
    assert!(common::metric_value(&metrics, "meshscope_als_entries_decoded_total") > 0.0);
    assert!(common::metric_value(&metrics, "meshscope_otlp_spans_received_total") > 0.0);
    common::sigterm(&child).await;
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exit in time")
        .expect("wait");
    assert!(exit.status.success(), "{exit:?}");
}

/// `bench als` and `bench otlp` against a plain and a secured server in one run: each
/// fails unless its server decoded everything sent and refused nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmarks_run_against_a_secured_server() {
    for args in [
        ["als", "--entries", "20000", "--streams", "2"],
        ["otlp", "--spans", "20000", "--connections", "2"],
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
            .arg("bench")
            .args(args)
            .args(["--security", "both"])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run the bench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in ["-- plain text", "-- TLS + tokens", "TLS + tokens cost"] {
            assert!(stdout.contains(line), "{args:?}: {stdout}");
        }
    }
}

/// The Grafana provisioning snippet (`docs/snippets/grafana-datasource-tls.yaml`), read as
/// Grafana reads it: its `url`, Basic auth from `basicAuthUser` and
/// `secureJsonData.basicAuthPassword`, and the CA from `tlsCACert` (with `$__file{…}`
/// expanded from the files Grafana's pod would mount). Grafana's health check and a
/// dashboard query succeed; a wrong token in the mounted file gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_provisioning_snippet_reads_over_tls() {
    #[derive(serde::Deserialize)]
    struct Provisioning {
        datasources: Vec<Datasource>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Datasource {
        uid: String,
        url: String,
        #[serde(default)]
        basic_auth: bool,
        basic_auth_user: Option<String>,
        json_data: JsonData,
        secure_json_data: Option<SecureJsonData>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct JsonData {
        #[serde(default, rename = "tlsAuthWithCACert")]
        tls_auth_with_ca_cert: bool,
        http_method: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SecureJsonData {
        basic_auth_password: String,
        #[serde(rename = "tlsCACert")]
        tls_ca_cert: String,
    }

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/snippets/grafana-datasource-tls.yaml");
    let text = std::fs::read_to_string(&path).expect("the snippet");
    let provisioning: Provisioning = serde_yaml_ng::from_str(&text).expect("YAML");
    let source = provisioning
        .datasources
        .into_iter()
        .find(|d| d.uid == "meshscope")
        .expect("the meshscope data source");
    let secure = source.secure_json_data.expect("secureJsonData");
    assert!(source.basic_auth && source.json_data.tls_auth_with_ca_cert);
    assert_eq!(source.json_data.http_method.as_deref(), Some("POST"));

    // What Grafana's pod mounts: the read token and meshscope's CA, in a temp dir standing
    // for /etc/grafana/meshscope.
    let pki = pki();
    let mounted = tempfile::tempdir().expect("tempdir");
    write(&mounted.path().join("read-token"), "grafana-read-0c1d\n");
    write(&mounted.path().join("ca.crt"), &pki.ca_pem);
    // Grafana's `$__file{path}`: the file's content, trimmed.
    let expand = |value: &str| -> String {
        let path = value
            .strip_prefix("$__file{")
            .and_then(|v| v.strip_suffix('}'))
            .unwrap_or_else(|| panic!("expected $__file{{…}}, got {value}"));
        let local = path
            .strip_prefix("/etc/grafana/meshscope/")
            .unwrap_or_else(|| panic!("unexpected mount path {path}"));
        std::fs::read_to_string(mounted.path().join(local))
            .expect("mounted file")
            .trim()
            .to_string()
    };
    let password = expand(&secure.basic_auth_password);
    let ca = expand(&secure.tls_ca_cert);

    let data = tempfile::tempdir().expect("tempdir");
    let tokens = data.path().join("read");
    write(&tokens, "grafana-read-0c1d\n");
    let mut config = common::config(data.path());
    config.tls.cert_file = Some(pki.cert.clone());
    config.tls.key_file = Some(pki.key.clone());
    config.auth.read_tokens_file = Some(tokens);
    let stack = common::start(config).await;
    let grpc = format!("https://localhost:{}", stack.app.grpc_addr.port());
    let (mesh, hops, start) = scenario(44, 60);
    sim::send_all(pki.peer(&grpc, None), &mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;

    // The snippet's URL with the test server's address in place of the Service's.
    let url = reqwest::Url::parse(&source.url).expect("url");
    let url = format!(
        "https://localhost:{}{}",
        stack.app.http_addr.port(),
        url.path()
    );
    let client = Pki::reqwest(&ca);
    let user = source.basic_auth_user.clone().expect("basicAuthUser");
    let query = |password: String, form: Vec<(&'static str, String)>| {
        client
            .post(format!("{url}/api/v1/query"))
            .basic_auth(user.clone(), Some(password))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).expect("form"))
            .send()
    };
    // Grafana's "Save & test" for a Prometheus data source runs `1+1`.
    let health = query(password.clone(), vec![("query", "1+1".into())])
        .await
        .expect("health check");
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.expect("json");
    assert_eq!(body["data"]["result"][1], "2", "{body}");
    // A dashboard query: the scenario's edges are there.
    let (edges, _, _) = expected(&mesh, &hops);
    let answer: Value = query(
        password.clone(),
        vec![
            (
                "query",
                "sum by (client, server) (increase(traces_service_graph_request_total[15m]))"
                    .into(),
            ),
            ("time", (start + 600).to_string()),
        ],
    )
    .await
    .expect("query")
    .json()
    .await
    .expect("json");
    let got: std::collections::BTreeSet<(String, String)> = answer["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            let label = |k: &str| s["metric"][k].as_str().expect("label").to_string();
            (label("client"), label("server"))
        })
        .collect();
    let want: std::collections::BTreeSet<(String, String)> = edges
        .keys()
        .map(|(c, s, _)| (c.clone(), s.clone()))
        .collect();
    assert_eq!(got, want, "{answer}");
    // A token that is not the server's (the mounted file out of date): 401.
    let refused = query("grafana-read-stale".into(), vec![("query", "1+1".into())])
        .await
        .expect("query");
    assert_eq!(refused.status(), 401);
    stack.stop().await;
}
